//! The client's address, which the per-address sign-in limit and audit records key on.
//!
//! Invariants:
//! - With no trusted proxies configured (the default), it is the TCP peer's address, whatever
//!   the request's headers say: a header is something any client can write.
//! - `X-Forwarded-For` is read only when the peer itself is a trusted proxy. Its hops are read
//!   from right to left (the right-most was appended by the proxy that connected to us); each hop
//!   that is a trusted proxy is skipped, and the first one that is not is the client.
//! - A hop that is not an IP address ("unknown", an obfuscated name, garbage, bytes that are not
//!   text) ends the walk at the last trusted hop reached: nothing written left of it can be
//!   vouched for. Hops are split on the raw bytes, so a bad hop a client wrote cannot spoil the
//!   hops a proxy appended to the same line. Empty items (`a,,b`, a trailing comma) are skipped,
//!   as HTTP's list syntax says.
//! - When every hop is a trusted proxy, the left-most one is the client.
//! - IPv4-mapped IPv6 peers (`::ffff:10.0.0.1`, a dual-stack listener) compare as IPv4.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use portcullis_egress::addr::Cidr;

use crate::App;

/// The client's address as text, or `unknown` when the server runs without connection info.
pub struct ClientAddr(pub String);

impl FromRequestParts<App> for ClientAddr {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let Some(peer) = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
        else {
            return Ok(Self("unknown".into()));
        };
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|v| v.as_bytes());
        Ok(Self(
            resolve(peer, forwarded, &app.trusted_proxies).to_string(),
        ))
    }
}

/// The client's address from the peer's and the `X-Forwarded-For` values, in header order.
pub fn resolve<'a>(
    peer: IpAddr,
    forwarded_for: impl Iterator<Item = &'a [u8]>,
    trusted: &[Cidr],
) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    let mut client = peer.to_canonical();
    if !is_trusted(client) {
        return client;
    }
    let hops: Vec<&[u8]> = forwarded_for
        .flat_map(|v| v.split(|b| *b == b','))
        .filter(|h| !h.trim_ascii().is_empty())
        .collect();
    for hop in hops.iter().rev() {
        let Some(ip) = hop_addr(hop) else {
            return client;
        };
        client = ip;
        if !is_trusted(ip) {
            return ip;
        }
    }
    client
}

/// One hop: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]` or
/// `[2001:db8::1]:4711`.
fn hop_addr(hop: &[u8]) -> Option<IpAddr> {
    let hop = std::str::from_utf8(hop.trim_ascii()).ok()?;
    let bare = hop
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(hop);
    bare.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
}

/// Parses `trusted_proxies`: comma-separated CIDR blocks or single addresses.
pub fn parse_trusted(text: &str) -> Result<Vec<Cidr>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let c = if s.contains('/') {
                Cidr::parse(s)?
            } else {
                let addr = s
                    .parse::<IpAddr>()
                    .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?;
                Cidr {
                    addr,
                    prefix: if addr.is_ipv4() { 32 } else { 128 },
                }
            };
            // Peers and hops compare in their IPv4 form, so a mapped block would never match.
            if c.addr.is_ipv6() && c.addr.to_canonical().is_ipv4() {
                return Err(format!(
                    "{s:?} is an IPv4-mapped block: write it in IPv4 form"
                ));
            }
            Ok(c)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn client(peer: &str, xff: &[&str], trusted: &str) -> IpAddr {
        resolve(
            ip(peer),
            xff.iter().map(|h| h.as_bytes()),
            &parse_trusted(trusted).unwrap(),
        )
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        assert_eq!(client("10.0.0.5", &["203.0.113.7"], ""), ip("10.0.0.5"));
        // A peer outside the trusted blocks cannot speak for anyone else either.
        assert_eq!(
            client("198.51.100.9", &["203.0.113.7"], "10.0.0.0/8"),
            ip("198.51.100.9")
        );
    }

    #[test]
    fn the_first_untrusted_hop_from_the_right_is_the_client() {
        let t = "10.0.0.0/8, 192.168.1.1";
        assert_eq!(client("10.0.0.5", &["203.0.113.7"], t), ip("203.0.113.7"));
        // The client wrote a hop of its own on the left: it is not believed.
        assert_eq!(
            client("10.0.0.5", &["1.2.3.4, 203.0.113.7, 192.168.1.1"], t),
            ip("203.0.113.7")
        );
        // Several header lines read as one list, in order.
        assert_eq!(
            client("10.0.0.5", &["1.2.3.4, 203.0.113.7", "10.1.1.1"], t),
            ip("203.0.113.7")
        );
        // Ports and IPv6 forms.
        assert_eq!(
            client("10.0.0.5", &["203.0.113.7:4711"], t),
            ip("203.0.113.7")
        );
        assert_eq!(
            client("10.0.0.5", &["[2001:db8::7]:4711"], t),
            ip("2001:db8::7")
        );
        assert_eq!(
            client("fd00::1", &["2001:db8::7"], "fd00::/8"),
            ip("2001:db8::7")
        );
    }

    #[test]
    fn a_hop_that_is_not_an_address_ends_the_walk() {
        let t = "10.0.0.0/8";
        assert_eq!(
            client("10.0.0.5", &["203.0.113.7, unknown, 10.2.2.2"], t),
            ip("10.2.2.2")
        );
        assert_eq!(client("10.0.0.5", &["garbage"], t), ip("10.0.0.5"));
        assert_eq!(client("10.0.0.5", &[""], t), ip("10.0.0.5"));
        assert_eq!(client("10.0.0.5", &[], t), ip("10.0.0.5"));
    }

    #[test]
    fn a_client_cannot_spoil_the_hops_a_proxy_appended() {
        let t = parse_trusted("10.0.0.0/8").unwrap();
        // The proxy appended the real address to the line the client sent, which holds bytes
        // that are not text: only the client's own hop is unreadable.
        let line: &[u8] = b"\xff\xfe, 203.0.113.7";
        assert_eq!(
            resolve(ip("10.0.0.5"), [line].into_iter(), &t),
            ip("203.0.113.7")
        );
        // Empty items and blank lines are skipped, not taken for the end of the list.
        assert_eq!(
            client(
                "10.0.0.5",
                &["203.0.113.7,", " ", "10.1.1.1, ,"],
                "10.0.0.0/8"
            ),
            ip("203.0.113.7")
        );
        // Bracketed IPv6 without a port, and mapped IPv4 inside the header.
        assert_eq!(
            client("10.0.0.5", &["[2001:db8::7]"], "10.0.0.0/8"),
            ip("2001:db8::7")
        );
        assert_eq!(
            client("10.0.0.5", &["::ffff:203.0.113.7"], "10.0.0.0/8"),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn all_trusted_gives_the_left_most_hop() {
        assert_eq!(
            client("10.0.0.5", &["10.9.9.9, 10.8.8.8"], "10.0.0.0/8"),
            ip("10.9.9.9")
        );
    }

    #[test]
    fn mapped_ipv4_peers_compare_as_ipv4() {
        assert_eq!(
            client("::ffff:10.0.0.5", &["203.0.113.7"], "10.0.0.0/8"),
            ip("203.0.113.7")
        );
        assert_eq!(client("::ffff:10.0.0.5", &[], ""), ip("10.0.0.5"));
    }

    #[test]
    fn trusted_proxies_parse_or_say_what_is_wrong() {
        assert_eq!(parse_trusted("").unwrap(), vec![]);
        assert_eq!(parse_trusted(" 10.0.0.0/8 , ::1 ").unwrap().len(), 2);
        assert!(
            parse_trusted("proxy.internal")
                .unwrap_err()
                .contains("proxy.internal")
        );
        assert!(
            parse_trusted("10.0.0.1/8")
                .unwrap_err()
                .contains("host bits")
        );
        assert!(
            parse_trusted("::ffff:10.0.0.0/104")
                .unwrap_err()
                .contains("IPv4 form")
        );
    }
}

//! The decision for one outbound URL: which rule allows it, or why it is refused, for every
//! address the name resolves to. Pure: resolution happens before, connection after.

use std::net::IpAddr;

use serde::Serialize;

use crate::addr::special;
use crate::policy::{Policy, Purpose, Rule, Scheme};

/// Where a URL points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    pub scheme: Scheme,
    /// Lower-case DNS name, or the IP literal as text.
    pub host: String,
    pub port: u16,
    /// Set when the URL names an address instead of a name.
    pub ip: Option<IpAddr>,
}

impl Target {
    pub fn parse(url: &str) -> Result<(reqwest::Url, Self), String> {
        let u = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        let scheme = match u.scheme() {
            "https" => Scheme::Https,
            "http" => Scheme::Http,
            s => {
                return Err(format!(
                    "scheme {s:?} is not allowed (https, or http where a rule says so)"
                ));
            }
        };
        if !u.username().is_empty() || u.password().is_some() {
            return Err("URLs with credentials are refused".into());
        }
        let (host, ip) = match u.host() {
            Some(url::Host::Domain(d)) => (d.trim_end_matches('.').to_ascii_lowercase(), None),
            Some(url::Host::Ipv4(a)) => (a.to_string(), Some(IpAddr::V4(a))),
            Some(url::Host::Ipv6(a)) => (a.to_string(), Some(IpAddr::V6(a))),
            None => return Err(format!("{url:?} has no host")),
        };
        let port = u.port_or_known_default().unwrap_or(scheme.default_port());
        Ok((
            u,
            Self {
                scheme,
                host,
                port,
                ip,
            },
        ))
    }

    pub fn display(&self) -> String {
        format!("{}://{}:{}", self.scheme.as_str(), self.host, self.port)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddressDecision {
    pub address: IpAddr,
    /// The rule that allows this address, or none.
    pub allowed_by: Option<String>,
    /// Why it is refused.
    pub refused: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub target: Target,
    pub purpose: Purpose,
    pub allowed: bool,
    pub addresses: Vec<AddressDecision>,
    /// The first reason for a refusal, naming what a rule would have to allow.
    pub refusal: Option<String>,
}

/// The rules that could allow `target` for `purpose`, before any address is known.
fn candidates<'a>(policy: &'a Policy, target: &Target, purpose: Purpose) -> Vec<&'a Rule> {
    policy
        .rules
        .iter()
        .filter(|r| {
            r.scheme == target.scheme
                && r.effective_port() == target.port
                && r.purposes.contains(&purpose)
                // A host rule names DNS names; an IP literal is reached only through a CIDR rule.
                && (r.host.is_none() || (target.ip.is_none() && r.host_matches(&target.host)))
        })
        .collect()
}

/// Whether any rule could allow `target` for `purpose`. When none can, the gate refuses without
/// resolving the name: in an isolated network a DNS query is traffic too.
pub fn covered(policy: &Policy, target: &Target, purpose: Purpose) -> bool {
    !candidates(policy, target, purpose).is_empty()
}

/// Decides for `target` reached at `addresses` for `purpose`. Every address must be allowed:
/// a name that resolves to a public and a private address is refused.
pub fn decide(
    policy: &Policy,
    target: &Target,
    purpose: Purpose,
    addresses: &[IpAddr],
) -> Decision {
    let candidates = candidates(policy, target, purpose);
    // Built only for a refusal: this runs on every outbound request.
    let missing = || {
        format!(
            "no rule allows {} for {} (a rule needs scheme {}, host {}, port {} and purpose {})",
            target.display(),
            purpose.as_str(),
            target.scheme.as_str(),
            target.host,
            target.port,
            purpose.as_str()
        )
    };
    let per: Vec<AddressDecision> = addresses
        .iter()
        .map(|&a| {
            let class = special(a);
            let by = candidates.iter().find(|r| match r.cidr {
                Some(c) => c.contains(a),
                None => class.is_none(),
            });
            let refused = match (by, class) {
                (Some(_), _) => None,
                (None, _) if candidates.is_empty() => Some(missing()),
                (None, Some(c)) => Some(format!(
                    "{a} is a {c} address: only a rule naming it by CIDR allows it"
                )),
                (None, None) => Some(format!(
                    "{a} is outside the CIDR blocks of every rule for {}",
                    target.display()
                )),
            };
            AddressDecision {
                address: a,
                allowed_by: by.map(|r| r.id.clone()),
                refused,
            }
        })
        .collect();
    let refusal = if candidates.is_empty() {
        Some(missing())
    } else if addresses.is_empty() {
        Some(format!("{} does not resolve to any address", target.host))
    } else {
        per.iter().find_map(|d| d.refused.clone())
    };
    Decision {
        target: target.clone(),
        purpose,
        allowed: refusal.is_none(),
        addresses: per,
        refusal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse;

    fn ips(s: &[&str]) -> Vec<IpAddr> {
        s.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn every_address_must_pass() {
        let p = parse(r#"{"rules":[{"id":"idp","host":"idp.example.com","purposes":["jwks_fetch"]},
                                  {"id":"lo","scheme":"http","cidr":"127.0.0.0/8","port":9000,"purposes":["webhook"]}]}"#)
        .unwrap();
        let (_, t) = Target::parse("https://idp.example.com/jwks").unwrap();
        let ok = decide(&p, &t, Purpose::JwksFetch, &ips(&["93.184.216.34"]));
        assert!(ok.allowed);
        assert_eq!(ok.addresses[0].allowed_by.as_deref(), Some("idp"));
        let mixed = decide(
            &p,
            &t,
            Purpose::JwksFetch,
            &ips(&["93.184.216.34", "10.0.0.5"]),
        );
        assert!(!mixed.allowed);
        assert!(
            mixed
                .refusal
                .unwrap()
                .contains("10.0.0.5 is a private address")
        );
        let wrong_purpose = decide(&p, &t, Purpose::Webhook, &ips(&["93.184.216.34"]));
        assert!(
            wrong_purpose
                .refusal
                .unwrap()
                .contains("no rule allows https://idp.example.com:443 for webhook")
        );
        let (_, lo) = Target::parse("http://127.0.0.1:9000/hook").unwrap();
        assert!(decide(&p, &lo, Purpose::Webhook, &ips(&["127.0.0.1"])).allowed);
        let (_, mapped) = Target::parse("http://[::ffff:127.0.0.1]:9000/hook").unwrap();
        assert!(!decide(&p, &mapped, Purpose::Webhook, &ips(&["::ffff:127.0.0.1"])).allowed);
        assert!(Target::parse("ftp://x/").is_err());
        assert!(Target::parse("https://u:p@x/").is_err());
    }
}

//! Address classes the gate refuses unless a rule names them by CIDR, and CIDR blocks.
//!
//! Special addresses: loopback, unspecified, link-local (which holds the cloud metadata services
//! at 169.254.169.254 and fd00:ec2::254), private (RFC 1918), shared CGNAT space (RFC 6598),
//! unique-local (RFC 4193), multicast, broadcast, documentation and benchmarking ranges, and any
//! IPv4-mapped or IPv4-compatible IPv6 address (classified by the IPv4 address inside, and
//! always special: a mapped address is a way to reach an IPv4 host that a rule has not named).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// Why an address is special, or `None` for an ordinary public address.
pub fn special(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return Some(special_v4(v4).unwrap_or("IPv4-mapped IPv6"));
            }
            let s = v6.segments();
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
                Some("metadata service")
            } else if s[0] & 0xfe00 == 0xfc00 {
                Some("unique-local")
            } else if s[0] & 0xff00 == 0xff00 {
                Some("multicast")
            } else if s[0] == 0 && s[1] == 0 && s[2] == 0 && s[3] == 0 && s[4] == 0 && s[5] == 0 {
                Some("IPv4-compatible IPv6")
            } else if s[0] == 0x2001 && s[1] == 0x0db8 {
                Some("documentation")
            } else if s[0] == 0x0064 && s[1] == 0xff9b {
                Some("NAT64")
            } else {
                None
            }
        }
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip == Ipv4Addr::new(169, 254, 169, 254) {
        Some("metadata service")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() || o[0] == 0 {
        Some("unspecified")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if ip.is_private() {
        Some("private")
    } else if o[0] == 100 && (64..128).contains(&o[1]) {
        Some("shared address space")
    } else if ip.is_broadcast() {
        Some("broadcast")
    } else if ip.is_multicast() || o[0] >= 240 {
        Some("multicast or reserved")
    } else if ip.is_documentation() || (o[0] == 198 && (o[1] == 18 || o[1] == 19)) {
        Some("documentation or benchmarking")
    } else {
        None
    }
}

/// An IP block, `10.0.0.0/8` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR block (address/prefix)"))?;
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{a:?} is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|n| *n <= max)
            .ok_or_else(|| format!("prefix /{p} is out of range 0..={max}"))?;
        let c = Self { addr, prefix };
        if c.network() != addr {
            return Err(format!(
                "{s} has host bits set; write it as {}/{prefix}",
                c.network()
            ));
        }
        Ok(c)
    }

    fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(v) => IpAddr::V4(Ipv4Addr::from(u32::from(v) & mask32(self.prefix))),
            IpAddr::V6(v) => IpAddr::V6(Ipv6Addr::from(u128::from(v) & mask128(self.prefix))),
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => u32::from(a) & mask32(self.prefix) == u32::from(n),
            (IpAddr::V6(n), IpAddr::V6(a)) => u128::from(a) & mask128(self.prefix) == u128::from(n),
            _ => false,
        }
    }
}

fn mask32(p: u8) -> u32 {
    if p == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(p))
    }
}

fn mask128(p: u8) -> u128 {
    if p == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(p))
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn special_addresses() {
        for (a, why) in [
            ("127.0.0.1", "loopback"),
            ("169.254.169.254", "metadata service"),
            ("169.254.1.1", "link-local"),
            ("10.1.2.3", "private"),
            ("192.168.0.1", "private"),
            ("0.0.0.0", "unspecified"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:8.8.8.8", "IPv4-mapped IPv6"),
            ("fd12::1", "unique-local"),
            ("fe80::1", "link-local"),
            ("fd00:ec2::254", "metadata service"),
            ("::", "unspecified"),
        ] {
            assert_eq!(special(ip(a)), Some(why), "{a}");
        }
        assert_eq!(special(ip("93.184.216.34")), None);
        assert_eq!(special(ip("2606:4700::1111")), None);
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("127.0.0.0/8").unwrap();
        assert!(
            c.contains(ip("127.9.9.9")) && !c.contains(ip("128.0.0.1")) && !c.contains(ip("::1"))
        );
        assert!(Cidr::parse("10.0.0.1/8").is_err(), "host bits");
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nope/8").is_err());
        assert!(Cidr::parse("::/0").unwrap().contains(ip("2001:db8::1")));
    }
}

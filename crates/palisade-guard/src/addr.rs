//! IP address helpers: which IP a multiaddr connects from, which subnet an IP counts toward,
//! and allowlist CIDR ranges.
//!
//! Subnets are /24 for IPv4 and /64 for IPv6: the smallest blocks a single operator typically
//! gets (a home IPv6 link is one /64, so counting /128s would let one host look like 2^64
//! hosts). IPv4-mapped IPv6 addresses are folded to IPv4 so one host cannot dodge its cap by
//! switching notation.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;

/// The IP address a multiaddr starts with, canonicalised (IPv4-mapped IPv6 → IPv4).
pub fn multiaddr_ip(addr: &Multiaddr) -> Option<IpAddr> {
    match addr.iter().next()? {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(canonical_ip(IpAddr::V6(ip))),
        _ => None,
    }
}

/// Folds IPv4-mapped IPv6 addresses to IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// The subnet an address is counted in: its /24 (IPv4) or /64 (IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subnet {
    /// The first three octets of an IPv4 address.
    V4([u8; 3]),
    /// The first eight bytes of an IPv6 address.
    V6([u8; 8]),
}

impl Subnet {
    /// The subnet of `ip`.
    pub fn of(ip: IpAddr) -> Subnet {
        match canonical_ip(ip) {
            IpAddr::V4(v4) => {
                let [a, b, c, _] = v4.octets();
                Subnet::V4([a, b, c])
            }
            IpAddr::V6(v6) => {
                let [a, b, c, d, e, f, g, h, ..] = v6.octets();
                Subnet::V6([a, b, c, d, e, f, g, h])
            }
        }
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subnet::V4([a, b, c]) => write!(f, "{a}.{b}.{c}.0/24"),
            Subnet::V6(b) => {
                let mut full = [0u8; 16];
                for (dst, src) in full.iter_mut().zip(b.iter()) {
                    *dst = *src;
                }
                write!(f, "{}/64", Ipv6Addr::from(full))
            }
        }
    }
}

/// An address range `addr/prefix`, or one address (`/32`, `/128`) when written without a
/// prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix_bits: u8,
}

impl Cidr {
    /// Whether `ip` lies in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical_ip(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(u32::from(net).into(), u32::from(ip).into(), self.prefix_bits, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(u128::from(net), u128::from(ip), self.prefix_bits, 128)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, prefix_bits: u8, width: u32) -> bool {
    let prefix = u32::from(prefix_bits).min(width);
    if prefix == 0 {
        return true;
    }
    let shift = width - prefix;
    a.checked_shr(shift).unwrap_or(0) == b.checked_shr(shift).unwrap_or(0)
}

/// A CIDR string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadCidr;

impl FromStr for Cidr {
    type Err = BadCidr;

    fn from_str(s: &str) -> Result<Cidr, BadCidr> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network = canonical_ip(addr.trim().parse::<IpAddr>().map_err(|_| BadCidr)?);
        let width = if network.is_ipv4() { 32 } else { 128 };
        let prefix_bits = match prefix {
            Some(p) => p.trim().parse::<u8>().map_err(|_| BadCidr)?,
            None => width,
        };
        if u32::from(prefix_bits) > u32::from(width) {
            return Err(BadCidr);
        }
        Ok(Cidr { network, prefix_bits })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_group_v4_by_24_and_v6_by_64() {
        let a: IpAddr = "10.1.2.3".parse().unwrap();
        let b: IpAddr = "10.1.2.200".parse().unwrap();
        let c: IpAddr = "10.1.3.3".parse().unwrap();
        assert_eq!(Subnet::of(a), Subnet::of(b));
        assert_ne!(Subnet::of(a), Subnet::of(c));
        let x: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let y: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let z: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Subnet::of(x), Subnet::of(y));
        assert_ne!(Subnet::of(x), Subnet::of(z));
        // IPv4-mapped IPv6 counts as the IPv4 address.
        let mapped: IpAddr = "::ffff:10.1.2.9".parse().unwrap();
        assert_eq!(Subnet::of(mapped), Subnet::of(a));
        assert_eq!(Subnet::of(a).to_string(), "10.1.2.0/24");
        assert_eq!(Subnet::of(x).to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn cidr_contains() {
        let c: Cidr = "192.168.0.0/16".parse().unwrap();
        assert!(c.contains("192.168.5.1".parse().unwrap()));
        assert!(!c.contains("192.169.0.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        let one: Cidr = "127.0.0.2".parse().unwrap();
        assert!(one.contains("127.0.0.2".parse().unwrap()));
        assert!(!one.contains("127.0.0.1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
    }

    #[test]
    fn multiaddr_ips() {
        let a: Multiaddr = "/ip4/127.0.0.2/tcp/4001".parse().unwrap();
        assert_eq!(multiaddr_ip(&a), Some("127.0.0.2".parse().unwrap()));
        let b: Multiaddr = "/ip6/::ffff:1.2.3.4/tcp/1".parse().unwrap();
        assert_eq!(multiaddr_ip(&b), Some("1.2.3.4".parse().unwrap()));
        let c: Multiaddr = "/dns4/example.com/tcp/1".parse().unwrap();
        assert_eq!(multiaddr_ip(&c), None);
    }
}

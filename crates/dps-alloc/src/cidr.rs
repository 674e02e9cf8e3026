//! Source regions by client address: a longest-prefix-match table from CIDR blocks to region
//! names, for the lowest-latency policy's [`Request::source_region`](crate::Request).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A CIDR block such as `10.0.0.0/8` or `2001:db8::/32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The network address, with the host bits cleared.
    net: u128,
    /// Prefix length in bits of the IPv6 form (IPv4 blocks are kept as IPv4-mapped IPv6).
    len: u8,
}

/// A CIDR block that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CIDR block {0:?} (expected e.g. 10.0.0.0/8 or 2001:db8::/32)")]
pub struct CidrError(String);

impl Cidr {
    /// The block of `addr` with a prefix of `len` bits (of its own family); `None` when `len`
    /// is longer than the address.
    pub fn new(addr: IpAddr, len: u8) -> Option<Self> {
        let (bits, len) = match addr {
            IpAddr::V4(a) if len <= 32 => (mapped(a), len + 96),
            IpAddr::V6(a) if len <= 128 => (u128::from(a), len),
            _ => return None,
        };
        let mask = if len == 0 {
            0
        } else {
            u128::MAX << (128 - len)
        };
        Some(Self {
            net: bits & mask,
            len,
        })
    }

    /// Whether `addr` is inside the block (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, addr: IpAddr) -> bool {
        let bits = match addr {
            IpAddr::V4(a) => mapped(a),
            IpAddr::V6(a) => u128::from(a),
        };
        let mask = if self.len == 0 {
            0
        } else {
            u128::MAX << (128 - self.len)
        };
        bits & mask == self.net
    }
}

fn mapped(a: Ipv4Addr) -> u128 {
    u128::from(a.to_ipv6_mapped())
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// Parses `address/prefix`; a bare address is a single host.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || CidrError(s.to_owned());
        let (addr, len) = match s.trim().split_once('/') {
            Some((a, l)) => (a, Some(l.parse::<u8>().map_err(|_| bad())?)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let len = len.unwrap_or(if addr.is_ipv4() { 32 } else { 128 });
        Self::new(addr, len).ok_or_else(bad)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v6 = Ipv6Addr::from(self.net);
        match v6.to_ipv4_mapped() {
            Some(v4) if self.len >= 96 => write!(f, "{v4}/{}", self.len - 96),
            _ => write!(f, "{v6}/{}", self.len),
        }
    }
}

/// Client address → source region, by the longest matching prefix.
///
/// Deployments configure it from their network plan (`10.1.0.0/16` is the Amsterdam site, …);
/// addresses that match no block have no source region, and lowest latency then measures from
/// this node's region. Lookups scan the blocks from the longest prefix down: tables are small.
///
/// ```
/// use dps_alloc::SourceRegions;
///
/// let mut t = SourceRegions::new();
/// t.insert("10.0.0.0/8".parse().unwrap(), "westeurope");
/// t.insert("10.9.0.0/16".parse().unwrap(), "eastus");
/// assert_eq!(t.region_of("10.9.1.2".parse().unwrap()), Some("eastus"));
/// assert_eq!(t.region_of("10.1.1.2".parse().unwrap()), Some("westeurope"));
/// assert_eq!(t.region_of("::ffff:10.1.1.2".parse().unwrap()), Some("westeurope"));
/// assert_eq!(t.region_of("192.0.2.1".parse().unwrap()), None);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceRegions {
    /// Longest prefix first; among equal prefixes, the later insertion replaces the earlier.
    blocks: Vec<(Cidr, String)>,
}

impl SourceRegions {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps `block` to `region` (replacing an earlier mapping of the same block).
    pub fn insert(&mut self, block: Cidr, region: impl Into<String>) {
        let region = region.into();
        match self.blocks.iter_mut().find(|(b, _)| *b == block) {
            Some((_, r)) => *r = region,
            None => {
                let at = self.blocks.partition_point(|(b, _)| b.len >= block.len);
                self.blocks.insert(at, (block, region));
            }
        }
    }

    /// The region of the most specific block holding `addr`.
    pub fn region_of(&self, addr: IpAddr) -> Option<&str> {
        self.blocks
            .iter()
            .find(|(b, _)| b.contains(addr))
            .map(|(_, r)| r.as_str())
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// The blocks and their regions, longest prefix first.
    pub fn iter(&self) -> impl Iterator<Item = (&Cidr, &str)> {
        self.blocks.iter().map(|(b, r)| (b, r.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|_| panic!("{s}"))
    }

    #[test]
    fn blocks_parse_print_and_match() {
        let b: Cidr = "10.1.2.3/8".parse().expect("valid");
        assert_eq!(b.to_string(), "10.0.0.0/8");
        assert!(b.contains(ip("10.255.0.1")) && !b.contains(ip("11.0.0.1")));
        let h: Cidr = "192.0.2.7".parse().expect("host");
        assert!(h.contains(ip("192.0.2.7")) && !h.contains(ip("192.0.2.8")));
        let v6: Cidr = "2001:db8::/32".parse().expect("v6");
        assert_eq!(v6.to_string(), "2001:db8::/32");
        assert!(v6.contains(ip("2001:db8:1::1")) && !v6.contains(ip("10.0.0.1")));
        let all: Cidr = "0.0.0.0/0".parse().expect("all v4");
        assert!(all.contains(ip("203.0.113.9")) && !all.contains(ip("2001:db8::1")));
        for bad in [
            "10.0.0.0/33",
            "10.0.0/8",
            "x/1",
            "::/129",
            "10.0.0.0/-1",
            "",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_longest_prefix_wins_whatever_the_insertion_order() {
        let mut t = SourceRegions::new();
        t.insert("10.9.0.0/16".parse().expect("v"), "b");
        t.insert("0.0.0.0/0".parse().expect("v"), "default");
        t.insert("10.0.0.0/8".parse().expect("v"), "a");
        t.insert("10.9.9.0/24".parse().expect("v"), "c");
        assert_eq!(t.region_of(ip("10.9.9.1")), Some("c"));
        assert_eq!(t.region_of(ip("10.9.8.1")), Some("b"));
        assert_eq!(t.region_of(ip("10.8.8.1")), Some("a"));
        assert_eq!(t.region_of(ip("8.8.8.8")), Some("default"));
        assert_eq!(t.region_of(ip("2001:db8::1")), None);
        t.insert("10.0.0.0/8".parse().expect("v"), "a2");
        assert_eq!(t.region_of(ip("10.8.8.1")), Some("a2"));
        assert_eq!(t.iter().count(), 4);
    }
}

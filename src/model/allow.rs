//! Per-route client allowlists, checked against the real client address.
//!
//! The configured CIDRs are compiled into sorted, merged, disjoint address
//! ranges per family, so a check is one binary search (or a flag test for the
//! common "everyone" list) and never allocates.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net};

/// A compiled client-CIDR allowlist. An empty list denies everyone.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AllowList {
    /// Inclusive `(first, last)` ranges, sorted, disjoint and non-adjacent.
    /// `Arc` so that routes sharing `defaults.allow` clone it without allocating.
    v4: Arc<[(u32, u32)]>,
    v6: Arc<[(u128, u128)]>,
}

impl AllowList {
    /// Compiles `nets`. Host bits are ignored (`10.0.0.1/8` is `10.0.0.0/8`);
    /// IPv4-mapped IPv6 networks (`::ffff:10.0.0.0/104`) count as IPv4.
    pub fn new(nets: &[IpNet]) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for net in nets {
            match canonical_net(*net) {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
                IpNet::V6(n) => v6.push((u128::from(n.network()), u128::from(n.broadcast()))),
            }
        }
        AllowList {
            v4: merge(v4).into(),
            v6: merge(v6).into(),
        }
    }

    /// `0.0.0.0/0` and `::/0`.
    pub fn everyone() -> Self {
        AllowList {
            v4: Arc::from([(0, u32::MAX)]),
            v6: Arc::from([(0, u128::MAX)]),
        }
    }

    /// Whether `ip` may use the route. IPv4-mapped IPv6 addresses
    /// (`::ffff:a.b.c.d`, as a dual-stack socket reports IPv4 peers) are
    /// checked as the IPv4 address they carry.
    #[inline]
    pub fn allows(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(a) => contains(&self.v4, u32::from(a)),
            IpAddr::V6(a) => contains(&self.v6, u128::from(a)),
        }
    }

    /// True when every IPv4 and every IPv6 address is allowed.
    pub fn allows_everyone(&self) -> bool {
        matches!(*self.v4, [(0, u32::MAX)]) && matches!(*self.v6, [(0, u128::MAX)])
    }

    /// True when nobody is allowed.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// The list as a minimal set of CIDRs (for display, e.g. the admin `/routes`).
    pub fn to_nets(&self) -> Vec<IpNet> {
        let mut out = Vec::new();
        for &(first, last) in self.v4.iter() {
            let (first, last) = (Ipv4Addr::from(first), Ipv4Addr::from(last));
            out.extend(ipnet::Ipv4Subnets::new(first, last, 0).map(IpNet::V4));
        }
        for &(first, last) in self.v6.iter() {
            let (first, last) = (Ipv6Addr::from(first), Ipv6Addr::from(last));
            out.extend(ipnet::Ipv6Subnets::new(first, last, 0).map(IpNet::V6));
        }
        out
    }
}

/// A CIDR, or a bare address meaning that one host (`192.0.2.7` is `192.0.2.7/32`): how
/// allowlists are written in configuration and CHI annotations.
pub fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .ok()
}

/// Maps `::ffff:0:0/96`-contained networks to IPv4 and drops host bits.
fn canonical_net(net: IpNet) -> IpNet {
    match net.trunc() {
        IpNet::V6(n) if n.prefix_len() >= 96 => match n.network().to_ipv4_mapped() {
            Some(v4) => match Ipv4Net::new(v4, n.prefix_len() - 96) {
                Ok(v4net) => IpNet::V4(v4net),
                Err(_) => IpNet::V6(n),
            },
            None => IpNet::V6(n),
        },
        other => other,
    }
}

/// Sorts and merges overlapping or adjacent inclusive ranges.
fn merge<T: Copy + Ord + Step>(mut ranges: Vec<(T, T)>) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (first, last) in ranges {
        match out.last_mut() {
            Some(prev) if prev.1.next().is_none_or(|n| first <= n) => {
                if last > prev.1 {
                    prev.1 = last;
                }
            }
            _ => out.push((first, last)),
        }
    }
    out
}

#[inline]
fn contains<T: Copy + Ord>(ranges: &[(T, T)], x: T) -> bool {
    // The last range starting at or before `x` is the only candidate.
    let i = ranges.partition_point(|r| r.0 <= x);
    i > 0 && ranges.get(i - 1).is_some_and(|r| x <= r.1)
}

trait Step: Sized {
    fn next(self) -> Option<Self>;
}
impl Step for u32 {
    fn next(self) -> Option<Self> {
        self.checked_add(1)
    }
}
impl Step for u128 {
    fn next(self) -> Option<Self> {
        self.checked_add(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(nets: &[&str]) -> AllowList {
        let nets: Vec<IpNet> = nets.iter().map(|n| n.parse().unwrap()).collect();
        AllowList::new(&nets)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v4_ranges() {
        let l = list(&["10.0.0.0/8", "192.168.1.0/24"]);
        assert!(l.allows(ip("10.1.2.3")));
        assert!(l.allows(ip("10.255.255.255")));
        assert!(l.allows(ip("192.168.1.77")));
        assert!(!l.allows(ip("192.168.2.1")));
        assert!(!l.allows(ip("11.0.0.0")));
        assert!(!l.allows(ip("9.255.255.255")));
        assert!(!l.allows(ip("::1")), "a v4-only list denies v6 clients");
    }

    #[test]
    fn v6_ranges() {
        let l = list(&["2001:db8::/32", "::1/128"]);
        assert!(l.allows(ip("2001:db8:1::5")));
        assert!(l.allows(ip("::1")));
        assert!(!l.allows(ip("2001:db9::1")));
        assert!(!l.allows(ip("127.0.0.1")));
    }

    #[test]
    fn mapped_clients_are_checked_as_v4() {
        let l = list(&["203.0.113.0/24"]);
        assert!(l.allows(ip("::ffff:203.0.113.9")));
        assert!(!l.allows(ip("::ffff:203.0.114.9")));
        // A mapped CIDR in the config is the IPv4 network it carries.
        let m = list(&["::ffff:10.0.0.0/104"]);
        assert!(m.allows(ip("10.9.9.9")));
        assert!(m.allows(ip("::ffff:10.9.9.9")));
        assert!(!m.allows(ip("11.0.0.1")));
    }

    #[test]
    fn empty_list_denies_everyone() {
        let l = AllowList::new(&[]);
        assert!(l.is_empty());
        for a in [
            "0.0.0.0",
            "10.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:1.2.3.4",
        ] {
            assert!(!l.allows(ip(a)), "{a}");
        }
    }

    #[test]
    fn everyone_fast_path() {
        let l = list(&["0.0.0.0/0", "::/0"]);
        assert!(l.allows_everyone());
        assert_eq!(l, AllowList::everyone());
        assert!(l.allows(ip("1.2.3.4")) && l.allows(ip("ffff::1")));
        assert!(!list(&["0.0.0.0/0"]).allows_everyone());
        assert!(!list(&["0.0.0.0/0"]).allows(ip("::2")));
    }

    #[test]
    fn host_bits_ignored_and_ranges_merged() {
        let l = list(&["10.0.0.1/8", "11.0.0.0/8", "10.5.0.0/16"]);
        assert_eq!(l.to_nets(), vec!["10.0.0.0/7".parse::<IpNet>().unwrap()]);
        assert!(l.allows(ip("11.200.0.1")));
        assert!(!l.allows(ip("12.0.0.0")));
    }

    #[test]
    fn edges_of_the_address_space() {
        let l = list(&[
            "255.255.255.255/32",
            "0.0.0.0/32",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128",
        ]);
        assert!(l.allows(ip("255.255.255.255")));
        assert!(l.allows(ip("0.0.0.0")));
        assert!(!l.allows(ip("0.0.0.1")));
        assert!(l.allows(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
    }
}

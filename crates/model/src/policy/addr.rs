//! Address sets: unions of pod addresses and CIDRs minus their `except` blocks, kept as
//! sorted, merged, inclusive ranges so that equal sets compare equal (and are rendered as one
//! nft set) however they were written.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::Serialize;

/// An inclusive range of addresses of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct AddrRange {
    /// The first address.
    pub first: IpAddr,
    /// The last address (same family as `first`, not below it).
    pub last: IpAddr,
}

/// A set of addresses: sorted (IPv4 first), non-overlapping, non-adjacent ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct AddrSet {
    /// The ranges, in address order.
    pub ranges: Vec<AddrRange>,
}

/// A range as numbers: (is IPv6, first, last).
type Span = (bool, u128, u128);

/// Collects spans, then normalizes them into an [`AddrSet`].
#[derive(Debug, Default)]
pub(crate) struct AddrSetBuilder {
    spans: Vec<Span>,
}

// === impl AddrSetBuilder ===

impl AddrSetBuilder {
    /// Adds one address.
    pub(crate) fn add_ip(&mut self, ip: IpAddr) {
        let (v6, n) = to_num(ip);
        self.spans.push((v6, n, n));
    }

    /// Adds `cidr` minus every block of `except` (an `ipBlock`).
    pub(crate) fn add_block(&mut self, cidr: IpNet, except: &[IpNet]) {
        let mut pieces = vec![span_of(cidr)];
        for ex in except {
            let (ev6, elo, ehi) = span_of(*ex);
            pieces = pieces
                .into_iter()
                .flat_map(|(v6, lo, hi)| {
                    let mut out = Vec::with_capacity(2);
                    if v6 != ev6 || ehi < lo || elo > hi {
                        out.push((v6, lo, hi));
                        return out;
                    }
                    if elo > lo {
                        out.push((v6, lo, elo - 1));
                    }
                    if ehi < hi {
                        out.push((v6, ehi + 1, hi));
                    }
                    out
                })
                .collect();
        }
        self.spans.extend(pieces);
    }

    /// The normalized set.
    pub(crate) fn build(mut self) -> AddrSet {
        self.spans.sort_unstable();
        let mut merged: Vec<Span> = Vec::with_capacity(self.spans.len());
        for (v6, lo, hi) in self.spans {
            match merged.last_mut() {
                Some(last) if last.0 == v6 && lo <= last.2.saturating_add(1) => {
                    last.2 = last.2.max(hi);
                }
                _ => merged.push((v6, lo, hi)),
            }
        }
        AddrSet {
            ranges: merged
                .into_iter()
                .map(|(v6, lo, hi)| AddrRange {
                    first: from_num(v6, lo),
                    last: from_num(v6, hi),
                })
                .collect(),
        }
    }
}

// === impl AddrSet ===

impl AddrSet {
    /// Whether `ip` is in the set.
    pub fn contains(&self, ip: IpAddr) -> bool {
        // Ranges are sorted and disjoint: the candidate is the last one starting at or before ip.
        let idx = self.ranges.partition_point(|r| r.first <= ip);
        idx > 0 && self.ranges[idx - 1].last >= ip && same_family(self.ranges[idx - 1].first, ip)
    }

    /// Whether the set holds no address.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The ranges of one family (`v6` false: IPv4).
    pub fn family(&self, v6: bool) -> impl Iterator<Item = &AddrRange> {
        self.ranges.iter().filter(move |r| r.first.is_ipv6() == v6)
    }
}

// === impl AddrRange ===

impl AddrRange {
    /// Whether the range is one address.
    pub fn is_single(&self) -> bool {
        self.first == self.last
    }

    /// The range as numbers, first and last: IPv4 addresses as their `u32` value.
    pub(crate) fn span(&self) -> (u128, u128) {
        (to_num(self.first).1, to_num(self.last).1)
    }

    /// The range `first..=last` of one family, as numbers ([`span`](Self::span)'s inverse).
    pub(crate) fn from_span(v6: bool, first: u128, last: u128) -> AddrRange {
        AddrRange {
            first: from_num(v6, first),
            last: from_num(v6, last),
        }
    }
}

impl fmt::Display for AddrRange {
    /// nft's spelling: `10.0.0.1`, `10.0.0.0/24` when the range is a prefix, else
    /// `10.0.0.1-10.0.0.9`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_single() {
            return write!(f, "{}", self.first);
        }
        let (v6, lo) = to_num(self.first);
        let (_, hi) = to_num(self.last);
        let bits = if v6 { 128 } else { 32 };
        let size = hi - lo; // one less than the count: no overflow for ::/0
        if (size & size.wrapping_add(1)) == 0 && lo & size == 0 {
            let prefix = bits - (128 - size.leading_zeros());
            return write!(f, "{}/{prefix}", self.first);
        }
        write!(f, "{}-{}", self.first, self.last)
    }
}

fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv6() == b.is_ipv6()
}

fn to_num(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(v4) => (false, u128::from(u32::from(v4))),
        IpAddr::V6(v6) => (true, u128::from(v6)),
    }
}

fn from_num(v6: bool, n: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(n))
    } else {
        // Only ever built from u32 values, so the truncation keeps every bit.
        IpAddr::V4(Ipv4Addr::from(u32::try_from(n).unwrap_or(u32::MAX)))
    }
}

fn span_of(net: IpNet) -> Span {
    let (v6, lo) = to_num(net.network());
    let (_, hi) = to_num(net.broadcast());
    (v6, lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(f: impl FnOnce(&mut AddrSetBuilder)) -> AddrSet {
        let mut b = AddrSetBuilder::default();
        f(&mut b);
        b.build()
    }

    #[test]
    fn blocks_minus_excepts_are_exact_ranges() {
        let s = set(|b| {
            b.add_block(
                "10.0.0.0/24".parse().unwrap(),
                &["10.0.0.16/28".parse().unwrap()],
            )
        });
        let text: Vec<String> = s.ranges.iter().map(ToString::to_string).collect();
        assert_eq!(text, ["10.0.0.0/28", "10.0.0.32-10.0.0.255"]);
        assert!(s.contains("10.0.0.15".parse().unwrap()));
        assert!(!s.contains("10.0.0.16".parse().unwrap()));
        assert!(!s.contains("10.0.0.31".parse().unwrap()));
        assert!(s.contains("10.0.0.32".parse().unwrap()));
        assert!(!s.contains("::a00:20".parse().unwrap()));
    }

    #[test]
    fn adjacent_and_overlapping_pieces_merge() {
        let a = set(|b| {
            b.add_ip("10.0.0.1".parse().unwrap());
            b.add_ip("10.0.0.0".parse().unwrap());
            b.add_block("10.0.0.2/31".parse().unwrap(), &[]);
            b.add_ip("fd00::1".parse().unwrap());
        });
        let b = set(|b| {
            b.add_ip("fd00::1".parse().unwrap());
            b.add_block("10.0.0.0/30".parse().unwrap(), &[]);
        });
        assert_eq!(a, b);
        assert_eq!(a.ranges[0].to_string(), "10.0.0.0/30");
        assert_eq!(a.ranges[1].to_string(), "fd00::1");
    }

    #[test]
    fn whole_address_spaces_print_as_prefixes() {
        let s = set(|b| {
            b.add_block("0.0.0.0/0".parse().unwrap(), &[]);
            b.add_block("::/0".parse().unwrap(), &[]);
        });
        let text: Vec<String> = s.ranges.iter().map(ToString::to_string).collect();
        assert_eq!(text, ["0.0.0.0/0", "::/0"]);
    }
}

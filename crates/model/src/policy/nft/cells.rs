//! A tier's rules over one address family cut into disjoint lookup elements: for every
//! (address, protocol, port) some rule matches, the outcome of the first one.

use std::collections::{BTreeSet, HashMap};

use super::Outcome;
use crate::policy::addr::AddrRange;
use crate::policy::state::{Peers, PolicyState, Ports, Rule};
use crate::service::Protocol;

/// The port lookups' key after the address, and the selector building it after `ip saddr`.
pub(super) const PORT_KEY: &str = " . inet_proto . inet_service";
pub(super) const PORT_SELECTOR: &str = " . meta l4proto . th dport";

/// An inclusive range of addresses of one family, as numbers.
type Span = (u128, u128);

/// Disjoint address ranges in order, each with the outcome its traffic gets.
type Segments = Vec<(Span, Outcome)>;

/// One tier's rules over one address family as disjoint lookup elements.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct TierCells {
    /// (protocol, ports, the addresses and their verdicts), by protocol and port: what
    /// TCP, UDP and SCTP traffic gets.
    ports: Vec<(Protocol, (u16, u16), Segments)>,
    /// The addresses rules matching any protocol cover, with the first one's verdict.
    any: Segments,
}

impl TierCells {
    /// `rules` in precedence order (a union: all with the same outcome), over addresses of
    /// one family (`v6`). The address lookup answers for the rules matching any protocol; the
    /// port lookup holds what the first matching rule of all says where that differs.
    pub(super) fn build(state: &PolicyState, rules: &[(&Rule, Outcome)], v6: bool) -> TierCells {
        let spans: Vec<Vec<Span>> = rules
            .iter()
            .map(|(r, _)| peer_spans(state, r.peers, v6))
            .collect();
        let any_rules: Vec<(&[Span], Outcome)> = rules
            .iter()
            .zip(&spans)
            .filter(|((r, _), _)| r.ports == Ports::Any)
            .map(|((_, outcome), s)| (s.as_slice(), *outcome))
            .collect();
        let any = first_match(&any_rules);
        // Per set of rules covering a port cell: the addresses the port lookup must decide.
        let mut residuals: HashMap<Vec<usize>, Segments> = HashMap::new();
        let mut residual = |covering: Vec<usize>| {
            residuals
                .entry(covering)
                .or_insert_with_key(|covering| {
                    let ordered: Vec<(&[Span], Outcome)> = covering
                        .iter()
                        .map(|i| (spans[*i].as_slice(), rules[*i].1))
                        .collect();
                    let mut segments = first_match(&ordered);
                    segments.retain(|s| !decided_alike(&any, *s));
                    segments
                })
                .clone()
        };

        let mut ports = Vec::new();
        for protocol in [Protocol::Tcp, Protocol::Udp, Protocol::Sctp] {
            let ranges: Vec<Vec<(u16, u16)>> = rules
                .iter()
                .map(|(r, _)| match &r.ports {
                    Ports::Any => vec![(0, u16::MAX)],
                    Ports::Only(list) => list
                        .iter()
                        .filter(|m| m.protocol == protocol)
                        .map(|m| m.ports.unwrap_or((0, u16::MAX)))
                        .collect(),
                })
                .collect();
            // The ports where the rules matching change cut the port space into cells.
            let mut bounds: BTreeSet<u32> = BTreeSet::from([0, 1 << 16]);
            for (first, last) in ranges.iter().flatten() {
                bounds.insert(u32::from(*first));
                bounds.insert(u32::from(*last) + 1);
            }
            let bounds: Vec<u32> = bounds.into_iter().collect();
            let mut cells: Vec<((u16, u16), Segments)> = Vec::new();
            for pair in bounds.windows(2) {
                let (Ok(first), Ok(last)) = (u16::try_from(pair[0]), u16::try_from(pair[1] - 1))
                else {
                    continue;
                };
                let covering: Vec<usize> = (0..rules.len())
                    .filter(|i| !spans[*i].is_empty())
                    .filter(|i| ranges[*i].iter().any(|(a, b)| *a <= first && first <= *b))
                    .collect();
                let segments = residual(covering);
                if segments.is_empty() {
                    continue;
                }
                match cells.last_mut() {
                    // Neighbouring cells decided alike become one port range.
                    Some((range, prev))
                        if range.1.checked_add(1) == Some(first) && *prev == segments =>
                    {
                        range.1 = last;
                    }
                    _ => cells.push(((first, last), segments)),
                }
            }
            ports.extend(
                cells
                    .into_iter()
                    .map(|(range, segments)| (protocol, range, segments)),
            );
        }
        TierCells { ports, any }
    }

    /// `addr . proto . ports[ : verdict]` for every element of the port lookup.
    pub(super) fn port_elements(
        &self,
        v6: bool,
        verdict: impl Fn(Outcome) -> String,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for (protocol, (first, last), segments) in &self.ports {
            let ports = if first == last {
                first.to_string()
            } else {
                format!("{first}-{last}")
            };
            for ((lo, hi), outcome) in segments {
                let addr = AddrRange::from_span(v6, *lo, *hi);
                out.push(with_verdict(
                    format!("{addr} . {} . {ports}", protocol.nft_name()),
                    &verdict(*outcome),
                ));
            }
        }
        out
    }

    /// `addr[ : verdict]` for every element of the address lookup.
    pub(super) fn any_elements(
        &self,
        v6: bool,
        verdict: impl Fn(Outcome) -> String,
    ) -> Vec<String> {
        self.any
            .iter()
            .map(|((lo, hi), outcome)| {
                let addr = AddrRange::from_span(v6, *lo, *hi);
                with_verdict(addr.to_string(), &verdict(*outcome))
            })
            .collect()
    }
}

fn with_verdict(key: String, verdict: &str) -> String {
    if verdict.is_empty() {
        key
    } else {
        format!("{key} : {verdict}")
    }
}

/// Whether the address lookup (`any`: sorted, disjoint, neighbours with the same outcome
/// merged) already gives every address of `segment` its outcome.
fn decided_alike(any: &[(Span, Outcome)], segment: (Span, Outcome)) -> bool {
    let ((lo, hi), outcome) = segment;
    let idx = any.partition_point(|((first, _), _)| *first <= lo);
    idx > 0 && {
        let ((_, last), o) = any[idx - 1];
        last >= hi && o == outcome
    }
}

/// The addresses of one family a rule's peers cover.
fn peer_spans(state: &PolicyState, peers: Peers, v6: bool) -> Vec<Span> {
    match peers {
        Peers::Any => vec![(0, if v6 { u128::MAX } else { u128::from(u32::MAX) })],
        Peers::Set(id) => state
            .peer_sets
            .get(id.0)
            .map(|s| s.family(v6).map(AddrRange::span).collect())
            .unwrap_or_default(),
    }
}

/// Cuts the address space where the rules covering it change: for every address some rule
/// covers, the first such rule's outcome, as disjoint ranges (neighbours with the same
/// outcome merged). Each rule's spans must be disjoint and not adjacent (an `AddrSet`'s are).
fn first_match(rules: &[(&[Span], Outcome)]) -> Segments {
    // (position, starts, rule): a rule ends at the address after its span, sorted first.
    let mut events: Vec<(u128, bool, usize)> = Vec::new();
    for (rank, (spans, _)) in rules.iter().enumerate() {
        for (lo, hi) in spans.iter() {
            events.push((*lo, true, rank));
            if let Some(end) = hi.checked_add(1) {
                events.push((end, false, rank));
            }
        }
    }
    events.sort_unstable();
    let mut active = BTreeSet::new();
    let mut out: Segments = Vec::new();
    let mut i = 0;
    while i < events.len() {
        let pos = events[i].0;
        while let Some((_, starts, rank)) = events.get(i).filter(|e| e.0 == pos) {
            if *starts {
                active.insert(*rank);
            } else {
                active.remove(rank);
            }
            i += 1;
        }
        let Some(first) = active.first() else {
            continue;
        };
        // Only a span reaching the end of the IPv6 space has no end event.
        let end = events.get(i).map_or(u128::MAX, |e| e.0 - 1);
        let outcome = rules[*first].1;
        match out.last_mut() {
            Some(((_, last), o)) if *o == outcome && last.checked_add(1) == Some(pos) => {
                *last = end;
            }
            _ => out.push(((pos, end), outcome)),
        }
    }
    out
}

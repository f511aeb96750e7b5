//! Answers from the compiled state: may this connection be opened, and the pods × pods
//! reachability table `podnet lab check` predicts. The nft renderer encodes exactly this
//! decision procedure (see `nft.rs`), so these answers are what the kernel does.

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use super::cnp::RuleAction;
use super::state::{
    Denial, DeniedBy, Direction, DirectionPolicy, Peers, PolicyState, Ports, Rule, Verdict,
};
use crate::service::Protocol;

/// Whether `src` may open a connection to `dst` on `protocol`/`port` (the destination port
/// after Service translation). Egress is decided at the source pod, then ingress at the
/// destination pod; an address that is no pod's has no policy of its own. Traffic from the
/// destination pod's own node (`status.hostIPs`) always comes in.
pub fn allows(
    state: &PolicyState,
    src: IpAddr,
    dst: IpAddr,
    protocol: Protocol,
    port: u16,
) -> Verdict {
    let pod = |ip: IpAddr| state.by_ip.get(&ip).map(|i| &state.pods[*i]);
    if let Some(source) = pod(src)
        && let Some(by) = decide(state, &source.egress, dst, protocol, port)
    {
        return Verdict::Deny(Denial {
            direction: Direction::Egress,
            by,
        });
    }
    if let Some(dest) = pod(dst)
        && !dest.host_ips.contains(&src)
        && let Some(by) = decide(state, &dest.ingress, src, protocol, port)
    {
        return Verdict::Deny(Denial {
            direction: Direction::Ingress,
            by,
        });
    }
    Verdict::Allow
}

/// The tiers in order for one direction: `None` when allowed, else what denied.
fn decide(
    state: &PolicyState,
    dir: &DirectionPolicy,
    remote: IpAddr,
    protocol: Protocol,
    port: u16,
) -> Option<DeniedBy> {
    let hit = |r: &Rule| rule_matches(state, r, remote, protocol, port);
    for rule in &dir.admin {
        if hit(&rule.matches) {
            match rule.action {
                RuleAction::Accept => return None,
                RuleAction::Deny => return Some(DeniedBy::Admin(rule.origin.clone())),
                RuleAction::Pass => break,
            }
        }
    }
    if dir.isolated {
        return if dir.allow.iter().any(hit) {
            None
        } else {
            Some(DeniedBy::NetworkPolicy)
        };
    }
    for rule in &dir.baseline {
        if hit(&rule.matches) {
            return match rule.action {
                RuleAction::Accept | RuleAction::Pass => None,
                RuleAction::Deny => Some(DeniedBy::Baseline(rule.origin.clone())),
            };
        }
    }
    None
}

/// Whether `rule` matches traffic with this remote address, protocol and port.
pub(crate) fn rule_matches(
    state: &PolicyState,
    rule: &Rule,
    remote: IpAddr,
    protocol: Protocol,
    port: u16,
) -> bool {
    let peer_ok = match rule.peers {
        Peers::Any => true,
        Peers::Set(id) => state
            .peer_sets
            .get(id.0)
            .is_some_and(|s| s.contains(remote)),
    };
    peer_ok
        && match &rule.ports {
            Ports::Any => true,
            Ports::Only(list) => list.iter().any(|m| {
                m.protocol == protocol
                    && m.ports
                        .is_none_or(|(first, last)| first <= port && port <= last)
            }),
        }
}

/// A pods × pods table of predicted connectivity on one protocol and port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reachability {
    /// `namespace/name` of every pod, in the state's order: rows (sources) and columns
    /// (destinations).
    pub pods: Vec<String>,
    /// `allowed[from][to]`. The diagonal is computed like any cell (a pod reaching itself
    /// through a Service is subject to policy); upstream's tests ignore it.
    pub allowed: Vec<Vec<bool>>,
}

/// Predicts, for every pair of pods, whether a connection on `protocol`/`port` is allowed.
/// Each pair uses the destination's first address and the source's address of the same
/// family; a source without one cannot connect (false).
pub fn reachability(state: &PolicyState, protocol: Protocol, port: u16) -> Reachability {
    let allowed = state
        .pods
        .iter()
        .map(|from| {
            state
                .pods
                .iter()
                .map(|to| {
                    let Some(dst) = to.ips.first() else {
                        return false;
                    };
                    from.ips
                        .iter()
                        .find(|ip| ip.is_ipv6() == dst.is_ipv6())
                        .is_some_and(|src| allows(state, *src, *dst, protocol, port).is_allowed())
                })
                .collect()
        })
        .collect();
    Reachability {
        pods: state.pods.iter().map(|p| p.id()).collect(),
        allowed,
    }
}

impl fmt::Display for Reachability {
    /// Upstream's truth-table layout (`test/e2e/network/netpol/truthtable.go`): a header of
    /// destinations, one row per source, `.` allowed and `X` blocked.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.pods.iter().map(String::len).max().unwrap_or(1);
        let line = |first: &str, cells: Vec<&str>| {
            let mut out = format!("{first:<width$}");
            for cell in cells {
                out.push_str(&format!(" {cell:<width$}"));
            }
            out.trim_end().to_owned()
        };
        let header = self.pods.iter().map(String::as_str).collect();
        writeln!(f, "{}", line("-", header))?;
        for (pod, row) in self.pods.iter().zip(&self.allowed) {
            let cells = row.iter().map(|c| if *c { "." } else { "X" }).collect();
            writeln!(f, "{}", line(pod, cells))?;
        }
        Ok(())
    }
}

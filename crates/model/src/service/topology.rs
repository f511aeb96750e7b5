//! Which endpoints a Service port uses on this node: kube-proxy's `CategorizeEndpoints`
//! (pkg/proxy/topology.go), rewritten.
//!
//! - Cluster policy uses the *ready* endpoints, filtered by topology hints when the hints
//!   allow it; when none is ready anywhere, the *serving and terminating* ones (without
//!   topology: that fallback is a best effort to not drop connections).
//! - Local policy uses this node's ready endpoints, else this node's serving and terminating
//!   ones, decided independently of the cluster set. Topology never applies to it.
//! - Topology comes from the EndpointSlice hints alone, as in current kube-proxy: the
//!   EndpointSlice controller writes `forNodes` + `forZones` for `trafficDistribution:
//!   PreferSameNode` and `forZones` for `PreferSameZone` (and its alias `PreferClose`), and
//!   kube-proxy trusts them. `PreferSameNode` applies when *every* ready endpoint has a node
//!   hint and one names this node; otherwise `PreferSameZone` when every ready endpoint has
//!   a zone hint and one names this node's zone; otherwise no filtering. So a node with no
//!   nearby endpoint falls back to the zone, then to the whole cluster.

use super::input::RawEndpoint;
use super::state::{Endpoint, TopologyMode};

/// An endpoint of one Service port (its port resolved) with its slice facts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate<'a> {
    pub(crate) endpoint: Endpoint,
    pub(crate) raw: &'a RawEndpoint,
}

/// The endpoint sets of one Service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Categorized {
    /// Cluster-policy endpoints (empty when the port never uses Cluster policy).
    pub(crate) cluster: Vec<Endpoint>,
    /// Local-policy endpoints (empty when the port never uses Local policy).
    pub(crate) local: Vec<Endpoint>,
    /// Whether the Service has a usable endpoint anywhere in the cluster, even if none is
    /// in the sets above.
    pub(crate) has_any: bool,
    /// The topology filter applied to `cluster`.
    pub(crate) topology: TopologyMode,
}

/// Sorts a port's candidates into its Cluster and Local endpoint sets.
pub(crate) fn categorize(
    candidates: &[Candidate<'_>],
    uses_cluster: bool,
    uses_local: bool,
    node_name: &str,
    zone: &str,
) -> Categorized {
    let mut out = Categorized {
        cluster: Vec::new(),
        local: Vec::new(),
        has_any: false,
        topology: TopologyMode::None,
    };
    if uses_cluster {
        let mode = topology_mode(candidates, node_name, zone);
        out.topology = mode;
        out.cluster = pick(candidates, |c| {
            c.raw.ready && available_for_topology(c.raw, mode, node_name, zone)
        });
        // The topology mode is only chosen when it leaves a ready endpoint, so an empty set
        // here means nothing is ready anywhere: fall back to serving-terminating endpoints.
        if out.cluster.is_empty() {
            out.cluster = pick(candidates, |c| c.raw.serving && c.raw.terminating);
        }
        out.has_any = !out.cluster.is_empty();
    }
    if !uses_local {
        return out;
    }
    let mut local_ready = false;
    let mut local_terminating = false;
    for c in candidates {
        if c.raw.ready {
            out.has_any = true;
            local_ready |= c.raw.is_local;
        } else if c.raw.serving && c.raw.terminating {
            out.has_any = true;
            local_terminating |= c.raw.is_local;
        }
    }
    if local_ready {
        out.local = pick(candidates, |c| c.raw.is_local && c.raw.ready);
    } else if local_terminating {
        out.local = pick(candidates, |c| {
            c.raw.is_local && c.raw.serving && c.raw.terminating
        });
    }
    out
}

/// The topology filter the hints allow (see the module docs).
fn topology_mode(candidates: &[Candidate<'_>], node_name: &str, zone: &str) -> TopologyMode {
    let mut any_ready = false;
    let mut all_node_hints = true;
    let mut hinted_for_node = false;
    let mut all_zone_hints = true;
    let mut hinted_for_zone = false;
    for c in candidates.iter().filter(|c| c.raw.ready) {
        any_ready = true;
        if c.raw.node_hints.is_empty() {
            all_node_hints = false;
        } else if c.raw.node_hints.iter().any(|n| n == node_name) {
            hinted_for_node = true;
        }
        if c.raw.zone_hints.is_empty() {
            all_zone_hints = false;
        } else if c.raw.zone_hints.iter().any(|z| z == zone) {
            hinted_for_zone = true;
        }
    }
    if !any_ready {
        TopologyMode::None
    } else if all_node_hints && hinted_for_node {
        TopologyMode::PreferSameNode
    } else if all_zone_hints && hinted_for_zone {
        TopologyMode::PreferSameZone
    } else {
        TopologyMode::None
    }
}

fn available_for_topology(
    raw: &RawEndpoint,
    mode: TopologyMode,
    node_name: &str,
    zone: &str,
) -> bool {
    match mode {
        TopologyMode::None => true,
        TopologyMode::PreferSameNode => raw.node_hints.iter().any(|n| n == node_name),
        TopologyMode::PreferSameZone => raw.zone_hints.iter().any(|z| z == zone),
    }
}

fn pick(candidates: &[Candidate<'_>], keep: impl Fn(&Candidate<'_>) -> bool) -> Vec<Endpoint> {
    let mut out: Vec<Endpoint> = candidates
        .iter()
        .filter(|c| keep(c))
        .map(|c| c.endpoint)
        .collect();
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests;

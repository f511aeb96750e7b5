//! Rendering a [`ServiceState`] as nft scripts for `nft -f -`: the service proxy's tables,
//! built the way kube-proxy's nftables mode builds its own (KEP-3866).
//!
//! Two tables, `ip podnet_services` and `ip6 podnet_services`, one per family, as kube-proxy
//! has one per proxier: a family's maps are keyed by that family's addresses and its chains
//! DNAT to that family's endpoints, so nothing in one table ever refers to the other, and
//! names and rules need no family suffix. (An `inet` table would need a v4 and a v6 copy of
//! every map, and family-suffixed chains, to say the same.) Both are written in one script,
//! so one `nft -f` applies them in one atomic transaction.
//!
//! Per table:
//! - base chains at kube-proxy's priorities (see `layout::BASE_CHAINS`);
//! - verdict maps for O(1) dispatch whatever the Service count: `service-ips`
//!   (`addr . proto . port`: ClusterIPs, externalIPs, load-balancer IPs) and
//!   `service-nodeports` (`proto . port`, on addresses in `nodeport-ips`), each element a
//!   `goto` to the port's chain;
//! - per Service port: `service-…` (Cluster policy) and `local-…` (Local policy) chains
//!   choosing an endpoint at random, after the affinity checks, with a cascade of
//!   `numgen random mod k == 0 goto endpoint-…` rules rather than kube-proxy's anonymous
//!   `numgen … vmap` (see `service::PortWriter::policy_rules` for why: load time);
//!   `external-…` for NodePort/externalIP/LB traffic (masquerade, or eTP Local's
//!   short-circuits); `firewall-…` for `loadBalancerSourceRanges`;
//! - per endpoint: `endpoint-…` (hairpin masquerade mark, affinity update, `dnat to`) and,
//!   with ClientIP affinity, a dynamic set `affinity-…` with a timeout;
//! - `no-endpoint-services` / `no-endpoint-nodeports` verdict maps (`drop`, or `goto
//!   reject-chain`) checked after DNAT in the filter chains, `cluster-ips` for undefined
//!   ports, the Service CIDRs for unallocated cluster IPs;
//! - masquerade as kube-proxy does it: `mark-for-masquerade` sets bit 0x4000,
//!   `masquerading` (postrouting) masquerades marked packets and clears the bit.
//!
//! [`render_full`] declares everything and replaces the contents in one transaction (it also
//! adopts a table a previous run left: nothing is deleted before its replacement exists, so
//! traffic never sees a gap). [`render_diff`] changes only what differs between two states:
//! map elements added and removed one by one, chains of changed Service ports rewritten,
//! removed chains deleted after the elements and rules that referred to them. That needs
//! kernel ≥ 6.2 (older kernels notice unreferenced chains late; kube-proxy defers the
//! deletion there).

mod layout;
mod names;
mod objects;
mod script;
mod service;

use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt::Write as _;

use super::state::{IpFamily, ServiceState};
use layout::{
    BASE_CHAINS, CLUSTER_IPS, FIREWALL_IPS, NO_ENDPOINT_NODEPORTS, NO_ENDPOINT_SERVICES,
    NODEPORT_IPS, SERVICE_IPS, SERVICE_NODEPORTS, fixed_objects,
};
use objects::{Objects, Phases};
use script::{addr_type, family};
use service::service_objects;

/// The name of both tables (`ip podnet_services`, `ip6 podnet_services`).
pub const TABLE: &str = "podnet_services";

/// The whole ruleset: declares both tables, empties them and fills them again, in one
/// transaction. Applied over a table a previous run (of any state) left, the result is the
/// new state plus, at most, empty chains and affinity sets of Services gone since; see
/// [`render_prune`].
pub fn render_full(state: &ServiceState) -> String {
    // About 600 bytes per Service port and 450 per endpoint (its chain, its rules and its
    // line in the policy chain): one allocation for most scripts.
    let (ports, endpoints) = state.ports().fold((0, 0), |(p, e), port| {
        (
            p + 1,
            e + port.cluster_endpoints.len() + port.local_endpoints.len(),
        )
    });
    let mut out = String::with_capacity(8192 + ports * 600 + endpoints * 450);
    for f in IpFamily::ALL {
        write_table_frame(&mut out, f);
    }
    let fixed = fixed_objects(&state.node);
    let base: HashSet<&str> = BASE_CHAINS.iter().map(|b| b.0).collect();
    for chain in fixed
        .chains
        .iter()
        .filter(|c| !base.contains(c.name.as_str()))
    {
        script::command(&mut out, "add", "chain", chain.family, &chain.name);
    }
    for chain in &fixed.chains {
        for rule in &chain.rules {
            script::add_rule(&mut out, chain.family, &chain.name, rule);
        }
    }
    for element in &fixed.elements {
        element.write_add(&mut out);
    }
    for entry in &state.services {
        service_objects(entry, &state.node).write_add(&mut out);
    }
    out
}

/// The transaction turning a table that holds `old` into one that holds `new`, touching
/// only what differs. Empty when nothing does.
pub fn render_diff(old: &ServiceState, new: &ServiceState) -> String {
    let mut phases = Phases::default();
    let node_changed = old.node != new.node;
    if node_changed {
        phases.diff(&fixed_objects(&old.node), &fixed_objects(&new.node));
    }
    // Both lists are sorted by name: walk them together.
    let (mut i, mut j) = (0, 0);
    let empty = Objects::default();
    loop {
        match (old.services.get(i), new.services.get(j)) {
            (None, None) => break,
            (Some(o), None) => {
                phases.diff(&service_objects(o, &old.node), &empty);
                i += 1;
            }
            (None, Some(n)) => {
                phases.diff(&empty, &service_objects(n, &new.node));
                j += 1;
            }
            (Some(o), Some(n)) => match o.name.cmp(&n.name) {
                Ordering::Less => {
                    phases.diff(&service_objects(o, &old.node), &empty);
                    i += 1;
                }
                Ordering::Greater => {
                    phases.diff(&empty, &service_objects(n, &new.node));
                    j += 1;
                }
                Ordering::Equal => {
                    if node_changed || o != n {
                        phases.diff(
                            &service_objects(o, &old.node),
                            &service_objects(n, &new.node),
                        );
                    }
                    i += 1;
                    j += 1;
                }
            },
        }
    }
    phases.finish()
}

/// Deletes the per-Service chains and affinity sets a table holds that `state` does not:
/// leftovers of Services removed while no diff ran (before a restart). `chains` and `sets`
/// are the table's current names in `family` (`nft -j list table`); fixed chains are never
/// deleted. Run it after [`render_full`], which leaves those leftovers unreferenced.
pub fn render_prune(
    state: &ServiceState,
    family: IpFamily,
    chains: &[String],
    sets: &[String],
) -> String {
    let mut wanted_chains = HashSet::new();
    let mut wanted_sets = HashSet::new();
    for entry in &state.services {
        let objects = service_objects(entry, &state.node);
        wanted_chains.extend(
            objects
                .chains
                .into_iter()
                .filter(|c| c.family == family)
                .map(|c| c.name),
        );
        wanted_sets.extend(
            objects
                .sets
                .into_iter()
                .filter(|s| s.family == family)
                .map(|s| s.name),
        );
    }
    let mut out = String::new();
    let stale_chains: Vec<&String> = chains
        .iter()
        .filter(|c| names::is_service_chain(c) && !wanted_chains.contains(*c))
        .collect();
    for chain in &stale_chains {
        script::command(&mut out, "flush", "chain", family, chain);
    }
    for chain in &stale_chains {
        script::command(&mut out, "delete", "chain", family, chain);
    }
    for set in sets {
        if names::is_affinity_set(set) && !wanted_sets.contains(set) {
            script::command(&mut out, "delete", "set", family, set);
        }
    }
    out
}

/// Declares a table with its base chains, sets and maps, and empties it: rules of every
/// chain and elements of the fixed sets and maps. Affinity sets keep their elements, so
/// clients keep their endpoints across a full sync or a restart.
fn write_table_frame(out: &mut String, f: IpFamily) {
    let fam = family(f);
    let addr = addr_type(f);
    let _ = writeln!(out, "add table {fam} {TABLE}");
    let _ = writeln!(out, "flush table {fam} {TABLE}");
    for (name, kind, hook, priority) in BASE_CHAINS {
        // Deleted and re-added so that a base chain left with other properties (a
        // previous version's priority) is recreated rather than failing the transaction.
        script::command(out, "add", "chain", f, name);
        script::command(out, "delete", "chain", f, name);
        script::command(
            out,
            "add",
            "chain",
            f,
            &format!("{name} {{ type {kind} hook {hook} priority {priority} ; }}"),
        );
    }
    for set in [CLUSTER_IPS, NODEPORT_IPS] {
        script::command(out, "add", "set", f, &format!("{set} {{ type {addr} ; }}"));
        script::command(out, "flush", "set", f, set);
    }
    let maps = [
        (SERVICE_IPS, true),
        (SERVICE_NODEPORTS, false),
        (NO_ENDPOINT_SERVICES, true),
        (NO_ENDPOINT_NODEPORTS, false),
        (FIREWALL_IPS, true),
    ];
    for (map, keyed_by_address) in maps {
        let key = if keyed_by_address {
            format!("{addr} . inet_proto . inet_service")
        } else {
            "inet_proto . inet_service".to_owned()
        };
        script::command(
            out,
            "add",
            "map",
            f,
            &format!("{map} {{ type {key} : verdict ; }}"),
        );
        script::command(out, "flush", "map", f, map);
    }
}

#[cfg(test)]
mod tests;

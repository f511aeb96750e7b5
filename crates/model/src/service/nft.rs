//! Rendering a [`ServiceState`] as nftables changes: the service proxy's tables, laid out
//! the way kube-proxy's nftables mode lays out its own (KEP-3866), except that most Service
//! ports are data rather than chains.
//!
//! Two tables, `ip podnet_services` and `ip6 podnet_services`, one per family, as kube-proxy
//! has one per proxier: a family's maps are keyed by that family's addresses and its chains
//! DNAT to that family's endpoints, so nothing in one table ever refers to the other, and
//! names and rules need no family suffix.
//!
//! Per table:
//! - base chains at kube-proxy's priorities (see `layout::BASE_CHAINS`);
//! - hash lookups whatever the Service count, keyed by `addr . proto . port` (ClusterIPs,
//!   externalIPs, load-balancer IPs) or `proto . port` (NodePorts, on addresses in
//!   `nodeport-ips`), leading to the chain that picks the endpoint;
//! - for most ports that chain is a shared group chain (`lb-<kind>-<proto>-<endpoints>`,
//!   see `groups`) DNATing through the `backends-<proto>` / `nodeport-backends-<proto>`
//!   maps (`frontend . port . numgen random mod n : endpoint . port`), with the `hairpin`
//!   set for pods reaching themselves: a Service is then only elements, its frontends
//!   members of the group's set, which a `service-groups` rule sends to the group chain
//!   (no `goto` element, which would make the kernel validate the whole table);
//! - the verdict maps `service-ips` and `service-nodeports` for the other ports, each
//!   element a `goto` to the port's chain (kube-proxy's dispatch);
//! - ports with ClientIP affinity, `loadBalancerSourceRanges` or `externalTrafficPolicy:
//!   Local` keep kube-proxy's chains of their own: `service-…` (Cluster policy) and
//!   `local-…` (Local policy) choosing an endpoint after the affinity checks, with a
//!   cascade of `numgen random mod k == 0 goto endpoint-…` rules rather than kube-proxy's
//!   anonymous `numgen … vmap` (see `service::PortWriter::policy_rules` for why: load time);
//!   `external-…` for NodePort/externalIP/LB traffic (masquerade, or eTP Local's
//!   short-circuits); `firewall-…` for `loadBalancerSourceRanges`; per endpoint
//!   `endpoint-…` (hairpin masquerade mark, affinity update, `dnat to`) and a dynamic set
//!   `affinity-…` with a timeout;
//! - `no-endpoint-services` / `no-endpoint-nodeports` verdict maps (`drop`, or `goto
//!   reject-chain`) checked after DNAT in the filter chains, `cluster-ips` for undefined
//!   ports, the Service CIDRs for unallocated cluster IPs;
//! - masquerade as kube-proxy does it: `mark-for-masquerade` sets bit 0x4000,
//!   `masquerading` (postrouting) masquerades marked packets and clears the bit.
//!
//! A sync is a [`Transaction`] of three atomic steps: an `nft -f` script (declarations and
//! rules), the element changes (sent as netlink messages by the agent: at 30k Services
//! they are 600k elements, which `nft` would spend seconds parsing), and an `nft -f`
//! cleanup. [`render_full`] declares everything and replaces the contents (it also adopts
//! a table a previous run left: nothing is deleted before its replacement exists, so
//! traffic never sees a gap). [`render_diff`] changes only what differs between two states:
//! map elements added and removed one by one, chains of changed Service ports rewritten,
//! removed chains deleted after the elements and rules that referred to them. That needs
//! kernel ≥ 6.2 (older kernels notice unreferenced chains late; kube-proxy defers the
//! deletion there).

mod elements;
mod groups;
mod layout;
mod names;
mod objects;
mod script;
mod service;

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;

use super::state::{IpFamily, NodeView, Protocol, ServiceEntry, ServiceName, ServiceState};
pub use elements::{Element, ElementChange, Field, MapVerdict, Value, encode_fields};
use groups::{Group, backends_map, nodeport_backends_map, port_groups};
use layout::{
    BASE_CHAINS, CLUSTER_IPS, FIREWALL_IPS, HAIRPIN, NO_ENDPOINT_NODEPORTS, NO_ENDPOINT_SERVICES,
    NODEPORT_IPS, SERVICE_GROUPS, SERVICE_IPS, SERVICE_NODEPORTS, fixed_objects,
};
use objects::Phases;
use script::{addr_type, family};
use service::service_objects;

/// The name of both tables (`ip podnet_services`, `ip6 podnet_services`).
pub const TABLE: &str = "podnet_services";

/// One sync's changes, in three steps applied in order: `script` (an `nft -f` transaction:
/// tables, chains, rules, set declarations), then `elements` (one transaction, through
/// netlink or as nft text), then `cleanup` (`nft -f`: chains and sets nothing refers to any
/// more). Each step is atomic, and every state between them serves traffic as well as the
/// state before or after: the script only adds or rewrites what the new elements need, the
/// cleanup only removes what the old elements needed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transaction {
    /// Declarations and rules.
    pub script: String,
    /// Set and map element changes.
    pub elements: Vec<ElementChange>,
    /// Removals.
    pub cleanup: String,
}

impl Transaction {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.script.is_empty() && self.elements.is_empty() && self.cleanup.is_empty()
    }

    /// The whole transaction as one nft script (for `nft -f`, `nft -c` and tests).
    pub fn to_script(&self) -> String {
        let mut out = String::with_capacity(
            self.script.len() + self.cleanup.len() + self.elements.len() * 96,
        );
        out.push_str(&self.script);
        for change in &self.elements {
            change.write_nft(&mut out);
        }
        out.push_str(&self.cleanup);
        out
    }
}

/// The whole ruleset: declares both tables and every chain, empties and refills the chains,
/// then empties and refills every set and map (affinity sets keep their clients). Applied
/// over a table a previous run (of any state) left, the result is the new state plus, at
/// most, chains and affinity sets nothing uses any more; see [`render_prune`].
pub fn render_full(state: &ServiceState) -> Transaction {
    let mut script = String::with_capacity(16384);
    for f in IpFamily::ALL {
        write_table_frame(&mut script, f);
    }
    let fixed = fixed_objects(&state.node);
    let base: HashSet<&str> = BASE_CHAINS.iter().map(|b| b.0).collect();
    for chain in fixed
        .chains
        .iter()
        .filter(|c| !base.contains(c.name.as_str()))
    {
        chain.write_declare(&mut script);
    }
    for chain in &fixed.chains {
        chain.write_rules(&mut script);
    }
    let ports = state.ports().count();
    let groups = all_groups(state);
    let mut elements = Vec::with_capacity(ports * 16);
    for f in IpFamily::ALL {
        for set in managed_sets() {
            elements.push(ElementChange::Flush { family: f, set });
        }
    }
    for group in &groups {
        if let Some(set) = group.member_set() {
            elements.push(ElementChange::Flush {
                family: group.family,
                set,
            });
        }
    }
    elements.extend(fixed.elements.into_iter().map(ElementChange::Add));
    for entry in &state.services {
        service_objects(entry, &state.node).write_add(&mut script, &mut elements);
    }
    for group in &groups {
        if let Some(set) = group.member_set_declaration() {
            script::command(&mut script, "add", "set", group.family, &set);
        }
        let chain = group.chain(&state.node);
        chain.write_declare(&mut script);
        chain.write_rules(&mut script);
    }
    write_service_groups(&mut script, &groups);
    Transaction {
        script,
        elements,
        cleanup: String::new(),
    }
}

/// The transaction turning a table that holds `old` into one that holds `new`, touching
/// only what differs. Empty when nothing does.
pub fn render_diff(old: &ServiceState, new: &ServiceState) -> Transaction {
    let node_changed = old.node != new.node;
    let mut changes = Vec::new();
    // Both lists are sorted by name: walk them together.
    let (mut i, mut j) = (0, 0);
    loop {
        match (old.services.get(i), new.services.get(j)) {
            (None, None) => break,
            (Some(o), None) => {
                changes.push((Some(o), None));
                i += 1;
            }
            (None, Some(n)) => {
                changes.push((None, Some(n)));
                j += 1;
            }
            (Some(o), Some(n)) => match o.name.cmp(&n.name) {
                Ordering::Less => {
                    changes.push((Some(o), None));
                    i += 1;
                }
                Ordering::Greater => {
                    changes.push((None, Some(n)));
                    j += 1;
                }
                Ordering::Equal => {
                    if node_changed || o != n {
                        changes.push((Some(o), Some(n)));
                    }
                    i += 1;
                    j += 1;
                }
            },
        }
    }
    let before = Before {
        node: &old.node,
        groups_used: &|g: &Group| groups::used(old.ports(), g),
        all_groups: &|| all_groups(old),
    };
    render_entry_changes(&before, new, &changes)
}

/// The transaction for the Services a [`ServiceTracker`](super::ServiceTracker) reports
/// changed: each Service's entry before (`None`: it is new) and its name. `old_node` is the
/// node view before. Cheaper than [`render_diff`], which compares every Service.
pub fn render_changes(
    old_node: &NodeView,
    new: &ServiceState,
    changed: &[(ServiceName, Option<ServiceEntry>)],
) -> Transaction {
    let names: HashSet<&ServiceName> = changed.iter().map(|(name, _)| name).collect();
    let changes: Vec<(Option<&ServiceEntry>, Option<&ServiceEntry>)> = changed
        .iter()
        .map(|(name, old)| {
            let new_entry = new
                .services
                .binary_search_by(|e| e.name.cmp(name))
                .ok()
                .map(|i| &new.services[i]);
            (old.as_ref(), new_entry)
        })
        .collect();
    // The ports of the old state: the changed Services' old entries and everything else.
    let unchanged = || {
        new.services
            .iter()
            .filter(|e| !names.contains(&e.name))
            .flat_map(|e| e.ports.iter())
    };
    let old_changed = || {
        changed
            .iter()
            .filter_map(|(_, old)| old.as_ref())
            .flat_map(|e| e.ports.iter())
    };
    let before = Before {
        node: old_node,
        groups_used: &|g: &Group| groups::used(unchanged().chain(old_changed()), g),
        all_groups: &|| {
            unchanged()
                .chain(old_changed())
                .flat_map(port_groups)
                .collect()
        },
    };
    render_entry_changes(&before, new, &changes)
}

/// What the renderer needs to know of the state before a change.
struct Before<'a> {
    node: &'a NodeView,
    /// Whether any port used a group chain.
    groups_used: &'a dyn Fn(&Group) -> bool,
    /// Every group chain in use.
    all_groups: &'a dyn Fn() -> BTreeSet<Group>,
}

fn render_entry_changes(
    before: &Before<'_>,
    new: &ServiceState,
    changes: &[(Option<&ServiceEntry>, Option<&ServiceEntry>)],
) -> Transaction {
    let mut phases = Phases::default();
    let node_changed = *before.node != new.node;
    if node_changed {
        phases.diff(&fixed_objects(before.node), &fixed_objects(&new.node));
    }
    // Groups the changed Services leave and join.
    let mut left = BTreeSet::new();
    let mut joined = BTreeSet::new();
    for (o, n) in changes {
        let o = o
            .map(|e| service_objects(e, before.node))
            .unwrap_or_default();
        let n = n.map(|e| service_objects(e, &new.node)).unwrap_or_default();
        left.extend(o.groups.iter().filter(|g| !n.groups.contains(g)).copied());
        joined.extend(n.groups.iter().filter(|g| !o.groups.contains(g)).copied());
        phases.diff(&o, &n);
    }
    if node_changed {
        // Group chains' rules depend on the node: rewrite every one in use.
        joined.extend(all_groups(new));
        left.extend((before.all_groups)());
    }
    // `service-groups` changes when a group with a member set comes or goes.
    let mut dispatch_changed = node_changed;
    for group in &joined {
        if node_changed || !(before.groups_used)(group) {
            if let Some(set) = group.member_set_declaration() {
                script::command(&mut phases.add_sets, "add", "set", group.family, &set);
                dispatch_changed = true;
            }
            let chain = group.chain(&new.node);
            chain.write_declare(&mut phases.add_chains);
            chain.write_rules(&mut phases.write_rules);
        }
    }
    let mut gone = Vec::new();
    for group in &left {
        if !groups::used(new.ports(), group) {
            script::command(
                &mut phases.delete_chains,
                "delete",
                "chain",
                group.family,
                &group.chain_name(),
            );
            if let Some(set) = group.member_set() {
                script::command(&mut phases.delete_sets, "delete", "set", group.family, set);
                gone.push(*group);
            }
        }
    }
    if dispatch_changed || !gone.is_empty() {
        let groups = all_groups(new);
        // Until the element changes have run, the groups that go still have members:
        // their rules go in the cleanup, before their chains and sets.
        if dispatch_changed {
            write_service_groups(&mut phases.write_rules, groups.iter().chain(&gone));
        }
        if !gone.is_empty() {
            write_service_groups(&mut phases.flush_removed, &groups);
        }
    }
    phases.finish()
}

/// Empties `service-groups` in both tables and writes one rule per group with a member set.
fn write_service_groups<'a>(out: &mut String, groups: impl IntoIterator<Item = &'a Group>) {
    for f in IpFamily::ALL {
        script::command(out, "flush", "chain", f, SERVICE_GROUPS);
    }
    for group in groups {
        if let Some(rule) = group.dispatch_rule() {
            script::add_rule(out, group.family, SERVICE_GROUPS, &rule);
        }
    }
}

/// Every group the state's ports use.
fn all_groups(state: &ServiceState) -> BTreeSet<Group> {
    state.ports().flat_map(port_groups).collect()
}

/// The sets and maps whose elements the renderer owns (every one but the affinity sets).
fn managed_sets() -> impl Iterator<Item = &'static str> {
    let fixed = [
        CLUSTER_IPS,
        NODEPORT_IPS,
        HAIRPIN,
        SERVICE_IPS,
        SERVICE_NODEPORTS,
        NO_ENDPOINT_SERVICES,
        NO_ENDPOINT_NODEPORTS,
        FIREWALL_IPS,
    ];
    let per_protocol = Protocol::ALL
        .into_iter()
        .flat_map(|p| [backends_map(p), nodeport_backends_map(p)]);
    fixed.into_iter().chain(per_protocol)
}

/// Deletes the per-Service chains, group chains and affinity sets a table holds that
/// `state` does not: leftovers of Services removed while no diff ran (before a restart).
/// `chains` and `sets` are the table's current names in `family` (`nft -j list table`);
/// fixed chains are never deleted. Run it after [`render_full`], which leaves those
/// leftovers unreferenced.
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
                .groups
                .iter()
                .filter(|g| g.family == family)
                .map(Group::chain_name),
        );
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
        .filter(|c| {
            (names::is_service_chain(c) || c.starts_with(groups::GROUP_PREFIX))
                && !wanted_chains.contains(*c)
        })
        .collect();
    for chain in &stale_chains {
        script::command(&mut out, "flush", "chain", family, chain);
    }
    for chain in &stale_chains {
        script::command(&mut out, "delete", "chain", family, chain);
    }
    for set in sets {
        let stale_group = set.starts_with(groups::GROUP_PREFIX) && !wanted_chains.contains(set);
        if stale_group || (names::is_affinity_set(set) && !wanted_sets.contains(set)) {
            script::command(&mut out, "delete", "set", family, set);
        }
    }
    out
}

/// Declares a table with its base chains, sets and maps. The base chains are recreated
/// empty; regular chains, sets and maps keep their contents until the rest of the sync
/// replaces them, so traffic keeps flowing through the old ones meanwhile.
fn write_table_frame(out: &mut String, f: IpFamily) {
    let fam = family(f);
    let addr = addr_type(f);
    let _ = writeln!(out, "add table {fam} {TABLE}");
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
    }
    script::command(
        out,
        "add",
        "set",
        f,
        &format!("{HAIRPIN} {{ type {addr} . {addr} . {addr} ; }}"),
    );
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
    }
    for p in Protocol::ALL {
        let proto = p.nft_name();
        let target = format!("{fam} daddr . {proto} dport");
        script::command(
            out,
            "add",
            "map",
            f,
            &format!(
                "{} {{ typeof {fam} daddr . {proto} dport . numgen random mod 1 : {target} ; }}",
                backends_map(p)
            ),
        );
        script::command(
            out,
            "add",
            "map",
            f,
            &format!(
                "{} {{ typeof {proto} dport . numgen random mod 1 : {target} ; }}",
                nodeport_backends_map(p)
            ),
        );
    }
}

#[cfg(test)]
mod tests;

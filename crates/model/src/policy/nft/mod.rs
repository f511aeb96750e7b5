//! Rendering a [`PolicyState`] as the `inet podnet_policy` table, for `nft -f -`: one atomic
//! transaction that replaces the whole table, or that changes the table the kernel has into
//! this one ([`PolicyTable::changes_from`]: per-pod lookups make a policy change mostly
//! element additions and deletions).
//!
//! ```text
//! forward (filter hook, priority filter; after Service DNAT, so real pod ports)
//!   ct state established,related accept     replies of allowed connections
//!   ct state invalid drop
//!   icmpv6 type { nd-neighbor-… } accept    IPv6 neighbour discovery (IPv4's ARP is not IP)
//!   ip saddr @node-ips accept               this node's own addresses (probes)
//!   ip saddr vmap @egress-pods-v4           local source pod → jump egress-<ns>/<pod>
//!   ip daddr vmap @ingress-pods-v4          local destination pod → goto ingress-<ns>/<pod>
//!   (and the same with ip6)
//! input (filter hook): established accept, then the egress dispatch again, so a pod's
//!   egress policy also governs what it sends to this node's own addresses.
//! ```
//!
//! A per-pod chain is the decision procedure of [`allows`](super::allows) as a few lookups,
//! however many policies select the pod: a packet costs the same with 5 or 500.
//!
//! ```text
//! chain ingress-x/a                      (egress-…: daddr, and `return` for allowed)
//!   ip saddr . meta l4proto . th dport vmap @ingress-x/a/admin-v4   Admin tier, TCP/UDP/SCTP
//!   ip saddr vmap @ingress-x/a/admin-any-v4                         Admin tier, any protocol
//!   ip saddr . meta l4proto . th dport @ingress-x/a/allow-v4 accept NetworkPolicy ports
//!   ip saddr @ingress-x/a/allow-any-v4 accept                       NetworkPolicy, any protocol
//!   drop                                  (not isolated: the Baseline maps, then accept)
//!   (and the same with ip6 where the pod's rules have IPv6 peers)
//! set ingress-x/a/allow-v4   type ipv4_addr . inet_proto . inet_service; flags interval
//!   elements = { 10.0.2.1-10.0.2.3 . tcp . 80, 10.0.3.0/24 . tcp . 8000-8080, … }
//! ```
//!
//! A tier whose first matching rule decides (Admin, Baseline) becomes verdict maps holding,
//! for every (address, protocol, port) some rule matches, the first one's verdict: Accept →
//! allowed, Deny → `drop`, Pass → `goto` the pod's `…/pass` chain, which holds the rest (in
//! Baseline, Pass is allowed). The NetworkPolicy rules, a union, become sets and an allow.
//! "Allowed" is `accept` in ingress chains and `return` in egress chains: an egress chain is
//! jumped to, so an allowed packet goes on to the destination's ingress check. The address
//! lookup holds the rules matching any protocol (ICMP too); the port lookup, consulted
//! first, holds only what it must decide otherwise, so a TCP, UDP or SCTP packet it misses
//! gets the address lookup's answer. Elements never overlap (the kernel refuses that), so a
//! tier's rules are cut where the rules matching change, first match kept, neighbours
//! decided alike merged. Pods with nothing restricting a direction have no chain and no map
//! element; empty lookups are left out.
//!
//! Host traffic (Kubernetes leaves it undefined): the node's own addresses reach its pods
//! whatever the policy (the API's rule for the pod's node, and what kubelet probes need);
//! pods reaching this node's addresses are subject to their egress policy, as with
//! kube-network-policies and Calico's default, so `ipBlock`/`nodes` peers must allow it.

mod cells;
mod table;

use std::collections::BTreeSet;
use std::net::IpAddr;

use self::cells::{PORT_KEY, PORT_SELECTOR, TierCells};
use self::table::Object;
use super::cnp::RuleAction;
use super::state::{Direction, DirectionPolicy, PodPolicy, PolicyState, Rule};

pub use self::table::PolicyTable;

/// The table's name (family `inet`).
pub const TABLE: &str = "podnet_policy";

/// The longest object name the kernel accepts (`NFT_NAME_MAXLEN` minus the NUL).
const NAME_MAX: usize = 255;

/// What the renderer needs to know about the node it renders for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeView {
    /// Addresses of the pods running on this node: only their chains are rendered.
    pub local_pod_ips: BTreeSet<IpAddr>,
    /// The node's own addresses: traffic from them to local pods always passes.
    pub node_ips: Vec<IpAddr>,
}

// === impl NodeView ===

impl NodeView {
    /// The view of the node with these addresses: its pods are those whose
    /// `status.hostIPs` include one of them.
    pub fn for_node_ips(state: &PolicyState, node_ips: &[IpAddr]) -> NodeView {
        NodeView {
            local_pod_ips: state
                .pods
                .iter()
                .filter(|p| p.host_ips.iter().any(|h| node_ips.contains(h)))
                .flat_map(|p| p.ips.iter().copied())
                .collect(),
            node_ips: node_ips.to_vec(),
        }
    }
}

/// The whole table as one script: [`render`], [`PolicyTable::script`].
pub fn render_full(state: &PolicyState, node: &NodeView) -> String {
    render(state, node).script()
}

/// The table for `node`: its pods' lookups and chains, the dispatch to them, the hooks.
pub fn render(state: &PolicyState, node: &NodeView) -> PolicyTable {
    let mut pods = PolicyTable::default();
    let mut dispatch: [Vec<String>; 4] = Default::default(); // ingress v4/v6, egress v4/v6
    let local = state
        .pods
        .iter()
        .filter(|p| p.ips.iter().any(|ip| node.local_pod_ips.contains(ip)));
    for pod in local {
        for (direction, policy) in [
            (Direction::Ingress, &pod.ingress),
            (Direction::Egress, &pod.egress),
        ] {
            if policy.is_open() {
                continue;
            }
            let name = pod_object_name(direction, pod, "");
            let verb = match direction {
                Direction::Ingress => "goto",
                Direction::Egress => "jump",
            };
            for ip in pod.ips.iter().filter(|ip| node.local_pod_ips.contains(ip)) {
                let slot =
                    usize::from(direction == Direction::Egress) * 2 + usize::from(ip.is_ipv6());
                dispatch[slot].push(format!("{ip} : {verb} {name}"));
            }
            write_pod(&mut pods, state, pod, direction, policy);
        }
    }

    let mut table = PolicyTable::default();
    for v6 in [false, true] {
        table.push(Object::Lookup {
            kind: "set",
            name: format!("node-ips-{}", fam_suffix(v6)),
            declaration: vec![format!("type {}", addr_type(v6))],
            elements: node
                .node_ips
                .iter()
                .filter(|ip| ip.is_ipv6() == v6)
                .map(ToString::to_string)
                .collect(),
        });
    }
    for (slot, map) in ["ingress-pods", "egress-pods"].iter().enumerate() {
        for v6 in [false, true] {
            table.push(Object::Lookup {
                kind: "map",
                name: format!("{map}-{}", fam_suffix(v6)),
                declaration: vec![format!("type {} : verdict", addr_type(v6))],
                elements: std::mem::take(&mut dispatch[slot * 2 + usize::from(v6)]),
            });
        }
    }
    let base = |name: &str, hook: &'static str, rules: &[&str]| Object::Chain {
        name: name.to_owned(),
        hook: Some(hook),
        rules: rules.iter().map(|r| (*r).to_owned()).collect(),
    };
    table.push(base(
        "forward",
        "type filter hook forward priority filter; policy accept;",
        &[
            "ct state established,related accept",
            "ct state invalid drop",
            "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept",
            "ip saddr @node-ips-v4 accept",
            "ip6 saddr @node-ips-v6 accept",
            "ip saddr vmap @egress-pods-v4",
            "ip6 saddr vmap @egress-pods-v6",
            "ip daddr vmap @ingress-pods-v4",
            "ip6 daddr vmap @ingress-pods-v6",
        ],
    ));
    table.push(base(
        "input",
        "type filter hook input priority filter; policy accept;",
        &[
            "ct state established,related accept",
            "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept",
            "ip saddr vmap @egress-pods-v4",
            "ip6 saddr vmap @egress-pods-v6",
        ],
    ));
    table.extend(pods);
    table
}

/// The lookups and chain(s) of one direction of one pod.
fn write_pod(
    out: &mut PolicyTable,
    state: &PolicyState,
    pod: &PodPolicy,
    direction: Direction,
    policy: &DirectionPolicy,
) {
    let allow = match direction {
        Direction::Ingress => "accept",
        Direction::Egress => "return",
    };
    let pass_chain = pod_object_name(direction, pod, "/pass");
    let mut w = LookupWriter {
        out,
        state,
        direction,
        pod,
        allow,
        pass_chain: &pass_chain,
    };
    let admin: Vec<(&Rule, Outcome)> = policy
        .admin
        .iter()
        .map(|r| {
            let outcome = match r.action {
                RuleAction::Accept => Outcome::Allow,
                RuleAction::Deny => Outcome::Drop,
                RuleAction::Pass => Outcome::Pass,
            };
            (&r.matches, outcome)
        })
        .collect();
    let admin_lines = w.tier("admin", &admin, true);
    let rest = if policy.isolated {
        let allowed: Vec<(&Rule, Outcome)> =
            policy.allow.iter().map(|r| (r, Outcome::Allow)).collect();
        let mut lines = w.tier("allow", &allowed, false);
        lines.push("drop".to_owned());
        lines
    } else {
        let baseline: Vec<(&Rule, Outcome)> = policy
            .baseline
            .iter()
            .map(|r| {
                // Pass in the last tier leaves the decision to the default: allowed.
                let outcome = match r.action {
                    RuleAction::Accept | RuleAction::Pass => Outcome::Allow,
                    RuleAction::Deny => Outcome::Drop,
                };
                (&r.matches, outcome)
            })
            .collect();
        let mut lines = w.tier("baseline", &baseline, true);
        lines.push(allow.to_owned());
        lines
    };
    let pass = policy.admin.iter().any(|r| r.action == RuleAction::Pass);
    out.push(Object::Chain {
        name: pod_object_name(direction, pod, ""),
        hook: None,
        rules: admin_lines
            .into_iter()
            .chain(rest.iter().cloned())
            .collect(),
    });
    if pass {
        out.push(Object::Chain {
            name: pass_chain,
            hook: None,
            rules: rest,
        });
    }
}

/// What a tier does with the traffic one of its rules matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// `accept` (ingress) or `return` (egress).
    Allow,
    /// `drop`.
    Drop,
    /// `goto` the pod's `…/pass` chain: the rest of the evaluation.
    Pass,
}

/// Declares one pod's sets and maps (one direction) and returns the rules that consult them.
struct LookupWriter<'a> {
    out: &'a mut PolicyTable,
    state: &'a PolicyState,
    direction: Direction,
    pod: &'a PodPolicy,
    allow: &'a str,
    pass_chain: &'a str,
}

impl LookupWriter<'_> {
    /// One tier's lookups and the rules consulting them, per family: keyed by address .
    /// protocol . port, then by address alone (see [`TierCells`]). `ordered`: the first matching
    /// rule decides (verdict maps); otherwise the rules are a union of allows (sets).
    fn tier(&mut self, tier: &str, rules: &[(&Rule, Outcome)], ordered: bool) -> Vec<String> {
        let mut lines = Vec::new();
        for v6 in [false, true] {
            let lookup = TierCells::build(self.state, rules, v6);
            let verdict = |o: Outcome| {
                if ordered {
                    self.verdict(o)
                } else {
                    String::new()
                }
            };
            let ports = lookup.port_elements(v6, verdict);
            let any = lookup.any_elements(v6, verdict);
            let fam = fam_suffix(v6);
            for (elements, suffix, key, selector) in [
                (ports, format!("/{tier}-{fam}"), PORT_KEY, PORT_SELECTOR),
                (any, format!("/{tier}-any-{fam}"), "", ""),
            ] {
                if elements.is_empty() {
                    continue;
                }
                let name = self.name(&suffix);
                let value = if ordered { " : verdict" } else { "" };
                self.out.push(Object::Lookup {
                    kind: if ordered { "map" } else { "set" },
                    name: name.clone(),
                    // Always intervals: addresses are ranges, ports too.
                    declaration: vec![
                        format!("type {}{key}{value}", addr_type(v6)),
                        "flags interval".to_owned(),
                    ],
                    elements,
                });
                let field = self.field(v6);
                lines.push(if ordered {
                    format!("{field}{selector} vmap @{name}")
                } else {
                    format!("{field}{selector} @{name} {}", self.allow)
                });
            }
        }
        lines
    }

    fn name(&self, suffix: &str) -> String {
        pod_object_name(self.direction, self.pod, suffix)
    }

    /// `ip saddr` (ingress: the remote is the source) or `ip6 daddr` …
    fn field(&self, v6: bool) -> String {
        let fam = if v6 { "ip6" } else { "ip" };
        match self.direction {
            Direction::Ingress => format!("{fam} saddr"),
            Direction::Egress => format!("{fam} daddr"),
        }
    }

    fn verdict(&self, outcome: Outcome) -> String {
        match outcome {
            Outcome::Allow => self.allow.to_owned(),
            Outcome::Drop => "drop".to_owned(),
            Outcome::Pass => format!("goto {}", self.pass_chain),
        }
    }
}

fn addr_type(v6: bool) -> &'static str {
    if v6 { "ipv6_addr" } else { "ipv4_addr" }
}

fn fam_suffix(v6: bool) -> &'static str {
    if v6 { "v6" } else { "v4" }
}

/// `ingress-<ns>/<pod><suffix>` (or `egress-…`): names are DNS names (checked when read) and
/// `/` separates them, so no two pods share a chain. When that is too long for nft, the
/// `<ns>/<pod>` part becomes its 64-bit FNV-1a hash.
fn pod_object_name(direction: Direction, pod: &PodPolicy, suffix: &str) -> String {
    let name = format!("{direction}-{}/{}{suffix}", pod.namespace, pod.name);
    if name.len() <= NAME_MAX {
        return name;
    }
    let pod_id = format!("{}/{}", pod.namespace, pod.name);
    let hash = pod_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    // nft names start with a letter: the direction stays in front, the pod becomes a hash.
    format!("{direction}-{hash:016x}{suffix}")
}

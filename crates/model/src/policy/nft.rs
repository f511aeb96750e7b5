//! Rendering a [`PolicyState`] as the `inet podnet_policy` table, for `nft -f -` (one atomic
//! transaction that replaces the whole table).
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
//! A per-pod chain is the decision procedure of [`allows`](super::allows) as rules: the
//! Admin-tier rules in order (Accept → allowed, Deny → `drop`, Pass → `goto` the pod's
//! `…/pass` chain, which holds the rest), then either the NetworkPolicy allows and `drop`
//! (isolated) or the Baseline-tier rules and a final allow. "Allowed" is `accept` in ingress
//! chains and `return` in egress chains: an egress chain is jumped to, so an allowed packet
//! goes on to the destination's ingress check. Pods with nothing restricting a direction have
//! no chain and no map element. Peer sets are shared by every rule naming the same
//! addresses, one nft set per family (`flags interval` when they hold ranges).
//!
//! Host traffic (Kubernetes leaves it undefined): the node's own addresses reach its pods
//! whatever the policy (the API's rule for the pod's node, and what kubelet probes need);
//! pods reaching this node's addresses are subject to their egress policy, as with
//! kube-network-policies and Calico's default, so `ipBlock`/`nodes` peers must allow it.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::IpAddr;

use super::cnp::RuleAction;
use super::state::{
    Direction, DirectionPolicy, PeerSetId, Peers, PodPolicy, PolicyState, Ports, Rule, TierRule,
};

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

/// The whole table: created if missing, deleted and declared again in one transaction.
pub fn render_full(state: &PolicyState, node: &NodeView) -> String {
    let local: Vec<&PodPolicy> = state
        .pods
        .iter()
        .filter(|p| p.ips.iter().any(|ip| node.local_pod_ips.contains(ip)))
        .collect();
    let mut chains = String::new();
    let mut used_sets = BTreeSet::new();
    let mut elements: [Vec<String>; 4] = Default::default(); // ingress v4/v6, egress v4/v6
    for pod in &local {
        for (direction, policy) in [
            (Direction::Ingress, &pod.ingress),
            (Direction::Egress, &pod.egress),
        ] {
            if policy.is_open() {
                continue;
            }
            let name = chain_name(direction, pod, "");
            let verb = match direction {
                Direction::Ingress => "goto",
                Direction::Egress => "jump",
            };
            for ip in pod.ips.iter().filter(|ip| node.local_pod_ips.contains(ip)) {
                let slot =
                    usize::from(direction == Direction::Egress) * 2 + usize::from(ip.is_ipv6());
                elements[slot].push(format!("{ip} : {verb} {name}"));
            }
            write_pod_chains(&mut chains, state, pod, direction, policy, &mut used_sets);
        }
    }

    let mut out = String::with_capacity(chains.len() + 2048);
    let _ = writeln!(out, "table inet {TABLE} {{}}");
    let _ = writeln!(out, "delete table inet {TABLE}");
    let _ = writeln!(out, "table inet {TABLE} {{");
    for id in &used_sets {
        let Some(set) = state.peer_sets.get(id.0) else {
            continue;
        };
        for v6 in [false, true] {
            let ranges: Vec<String> = set.family(v6).map(ToString::to_string).collect();
            if ranges.is_empty() {
                continue;
            }
            let interval = set.family(v6).any(|r| !r.is_single());
            write_set(&mut out, &set_name(*id, v6), v6, interval, &ranges);
        }
    }
    for v6 in [false, true] {
        let ips: Vec<String> = node
            .node_ips
            .iter()
            .filter(|ip| ip.is_ipv6() == v6)
            .map(ToString::to_string)
            .collect();
        write_set(&mut out, fam_name("node-ips", v6), v6, false, &ips);
    }
    for (slot, map) in ["ingress-pods", "egress-pods"].iter().enumerate() {
        for v6 in [false, true] {
            let _ = writeln!(out, "\tmap {} {{", fam_name(map, v6));
            let _ = writeln!(out, "\t\ttype {} : verdict", addr_type(v6));
            write_elements(&mut out, &elements[slot * 2 + usize::from(v6)]);
            out.push_str("\t}\n");
        }
    }
    out.push_str(
        "\tchain forward {\n\
         \t\ttype filter hook forward priority filter; policy accept;\n\
         \t\tct state established,related accept\n\
         \t\tct state invalid drop\n\
         \t\ticmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept\n\
         \t\tip saddr @node-ips-v4 accept\n\
         \t\tip6 saddr @node-ips-v6 accept\n\
         \t\tip saddr vmap @egress-pods-v4\n\
         \t\tip6 saddr vmap @egress-pods-v6\n\
         \t\tip daddr vmap @ingress-pods-v4\n\
         \t\tip6 daddr vmap @ingress-pods-v6\n\
         \t}\n\
         \tchain input {\n\
         \t\ttype filter hook input priority filter; policy accept;\n\
         \t\tct state established,related accept\n\
         \t\ticmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept\n\
         \t\tip saddr vmap @egress-pods-v4\n\
         \t\tip6 saddr vmap @egress-pods-v6\n\
         \t}\n",
    );
    out.push_str(&chains);
    out.push_str("}\n");
    out
}

/// The chain(s) of one direction of one pod.
fn write_pod_chains(
    out: &mut String,
    state: &PolicyState,
    pod: &PodPolicy,
    direction: Direction,
    policy: &DirectionPolicy,
    used: &mut BTreeSet<PeerSetId>,
) {
    let allow = match direction {
        Direction::Ingress => "accept",
        Direction::Egress => "return",
    };
    let pass_chain = chain_name(direction, pod, "/pass");
    let mut w = RuleWriter {
        state,
        direction,
        used,
        lines: Vec::new(),
    };
    for rule in &policy.admin {
        let verdict = match rule.action {
            RuleAction::Accept => allow.to_owned(),
            RuleAction::Deny => "drop".to_owned(),
            RuleAction::Pass => format!("goto {pass_chain}"),
        };
        w.tier_rule(rule, "admin", &verdict);
    }
    let admin_lines = std::mem::take(&mut w.lines);
    if policy.isolated {
        for rule in &policy.allow {
            w.rule(rule, allow, None);
        }
        w.lines.push("drop".to_owned());
    } else {
        for rule in &policy.baseline {
            let verdict = match rule.action {
                // Pass in the last tier leaves the decision to the default: allowed.
                RuleAction::Accept | RuleAction::Pass => allow,
                RuleAction::Deny => "drop",
            };
            w.tier_rule(rule, "baseline", verdict);
        }
        w.lines.push(allow.to_owned());
    }
    let rest = w.lines;
    write_chain(
        out,
        &chain_name(direction, pod, ""),
        admin_lines.iter().chain(&rest),
    );
    if policy.admin.iter().any(|r| r.action == RuleAction::Pass) {
        write_chain(out, &pass_chain, rest.iter());
    }
}

/// Turns rules into nft rule lines, noting the peer sets they use.
struct RuleWriter<'a> {
    state: &'a PolicyState,
    direction: Direction,
    used: &'a mut BTreeSet<PeerSetId>,
    lines: Vec<String>,
}

impl RuleWriter<'_> {
    fn tier_rule(&mut self, rule: &TierRule, tier: &str, verdict: &str) {
        let comment = format!(
            "{tier} {}/{}",
            sanitize(&rule.origin.policy),
            sanitize(&rule.origin.rule)
        );
        self.rule(&rule.matches, verdict, Some(&comment));
    }

    /// One line per (address family, port entry) the rule needs.
    fn rule(&mut self, rule: &Rule, verdict: &str, comment: Option<&str>) {
        let field = match self.direction {
            Direction::Ingress => "saddr",
            Direction::Egress => "daddr",
        };
        let addrs: Vec<String> = match rule.peers {
            Peers::Any => vec![String::new()],
            Peers::Set(id) => {
                self.used.insert(id);
                let set = self.state.peer_sets.get(id.0);
                [false, true]
                    .into_iter()
                    .filter(|v6| set.is_some_and(|s| s.family(*v6).next().is_some()))
                    .map(|v6| {
                        let fam = if v6 { "ip6" } else { "ip" };
                        format!("{fam} {field} @{} ", set_name(id, v6))
                    })
                    .collect()
            }
        };
        let ports: Vec<String> = match &rule.ports {
            Ports::Any => vec![String::new()],
            Ports::Only(list) => list
                .iter()
                .map(|m| {
                    let proto = m.protocol.nft_name();
                    match m.ports {
                        None => format!("meta l4proto {proto} "),
                        Some((a, b)) if a == b => format!("{proto} dport {a} "),
                        Some((a, b)) => format!("{proto} dport {a}-{b} "),
                    }
                })
                .collect(),
        };
        let comment = comment
            .map(|c| format!(" comment \"{c}\""))
            .unwrap_or_default();
        for a in &addrs {
            for p in &ports {
                self.lines.push(format!("{a}{p}{verdict}{comment}"));
            }
        }
    }
}

fn write_chain<'a>(out: &mut String, name: &str, lines: impl Iterator<Item = &'a String>) {
    let _ = writeln!(out, "\tchain {name} {{");
    for line in lines {
        let _ = writeln!(out, "\t\t{line}");
    }
    out.push_str("\t}\n");
}

fn write_set(out: &mut String, name: &str, v6: bool, interval: bool, elements: &[String]) {
    let _ = writeln!(out, "\tset {name} {{");
    let _ = writeln!(out, "\t\ttype {}", addr_type(v6));
    if interval {
        out.push_str("\t\tflags interval\n");
    }
    write_elements(out, elements);
    out.push_str("\t}\n");
}

fn write_elements(out: &mut String, elements: &[String]) {
    if !elements.is_empty() {
        let _ = writeln!(out, "\t\telements = {{ {} }}", elements.join(", "));
    }
}

fn addr_type(v6: bool) -> &'static str {
    if v6 { "ipv6_addr" } else { "ipv4_addr" }
}

fn fam_name(base: &str, v6: bool) -> &'static str {
    match (base, v6) {
        ("node-ips", false) => "node-ips-v4",
        ("node-ips", true) => "node-ips-v6",
        ("ingress-pods", false) => "ingress-pods-v4",
        ("ingress-pods", true) => "ingress-pods-v6",
        ("egress-pods", false) => "egress-pods-v4",
        _ => "egress-pods-v6",
    }
}

fn set_name(id: PeerSetId, v6: bool) -> String {
    format!("peers-{}-{}", id.0, if v6 { "v6" } else { "v4" })
}

/// `ingress-<ns>/<pod><suffix>` (or `egress-…`): names are DNS names (checked when read) and
/// `/` separates them, so no two pods share a chain. When that is too long for nft, the
/// `<ns>/<pod>` part becomes its 64-bit FNV-1a hash.
fn chain_name(direction: Direction, pod: &PodPolicy, suffix: &str) -> String {
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

/// Characters safe inside an nft comment string.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_./[]".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

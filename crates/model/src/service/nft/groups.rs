//! Shared load-balancing chains: how most Service ports need no chain of their own.
//!
//! A Service port without session affinity, source ranges or `externalTrafficPolicy: Local`
//! is only data: its frontends are members of the set of a group chain shared by every
//! port with the same protocol, endpoint count and kind of frontend, and that chain DNATs
//! through a map keyed by the frontend and a random slot:
//!
//! ```text
//! service-groups:   ip daddr . meta l4proto . th dport @lb-cluster-tcp-2 goto lb-cluster-tcp-2
//! lb-cluster-tcp-2: 172.30.0.41 . tcp . 80                     (the set)
//! lb-cluster-tcp-2: ip saddr != 10.0.0.0/8 jump mark-for-masquerade      (the chain)
//!                   dnat ip to ip daddr . tcp dport . numgen random mod 2 map @backends-tcp
//! backends-tcp:     172.30.0.41 . 80 . 0 : 10.180.0.1 . 8080
//!                   172.30.0.41 . 80 . 1 : 10.180.2.1 . 8080
//! ```
//!
//! So the ruleset holds a few dozen rules whatever the Service count, adding a Service or
//! an endpoint is adding elements (no rule, no chain), and a packet does the same lookups
//! at 30k Services as at 10. (kube-proxy gives every Service and endpoint a chain:
//! 440k objects at 10k Services, 17 s to load here.) A pod reaching itself through its own
//! Service is masqueraded in postrouting through the `hairpin` set
//! (`endpoint . endpoint . cluster IP`: nft cannot compare a packet's source with its
//! destination, but it can look the pair up), for endpoints that may run on this node:
//! a pod elsewhere has its own node's proxy DNAT it (kube-proxy gives every endpoint its
//! `ip saddr <endpoint>` rule; most of those can never match).
//!
//! Why member sets rather than `service-ips` elements that `goto` the group chain (one
//! verdict-map lookup, as kube-proxy dispatches): the kernel validates the whole table at
//! the end of every transaction that adds a `goto` element, walking every element of every
//! verdict map (`nft_table_validate`; 14 ms at 30k Services on 6.18), while an element of a
//! plain set needs no validation. A new Service is then programmed in well under a
//! millisecond of kernel time. The price is one set lookup per group in use for a new
//! connection's first packet, so only ports with up to [`MAX_SET_ENDPOINTS`] endpoints
//! take it (the common counts: at most that many lookups per kind and protocol); ports with
//! more are `service-ips` elements that `goto` their group chain.
//!
//! Group chains are shared, so a diff creates one when the first port needs it and deletes
//! it when the last one leaves (found by scanning the state, which stops at the first
//! user); `service-groups` is rewritten then.

use std::sync::OnceLock;

use super::super::state::{IpFamily, NodeView, Protocol, ServicePortState};
use super::layout::{MARK_MASQ, NODEPORT_IPS, cidr_set};
use super::objects::ChainDef;
use super::script::{addr_type, family};

/// Prefix of every group chain (and member set).
pub(super) const GROUP_PREFIX: &str = "lb-";

/// Ports with up to this many endpoints are found through their group's member set, the
/// others through `service-ips` (see the module's doc).
pub(super) const MAX_SET_ENDPOINTS: usize = 16;

/// Which frontends lead to a group chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum GroupKind {
    /// ClusterIPs: masquerade only traffic from outside the cluster CIDRs.
    Cluster,
    /// externalIPs and load-balancer IPs (`externalTrafficPolicy: Cluster`): masquerade all.
    External,
    /// NodePorts (`externalTrafficPolicy: Cluster`): masquerade all, keyed by port alone.
    NodePort,
}

/// A group chain: its family, kind, protocol and endpoint count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Group {
    pub(super) family: IpFamily,
    pub(super) kind: GroupKind,
    pub(super) protocol: Protocol,
    pub(super) endpoints: usize,
}

impl GroupKind {
    const ALL: [GroupKind; 3] = [GroupKind::Cluster, GroupKind::External, GroupKind::NodePort];

    fn name(self) -> &'static str {
        match self {
            GroupKind::Cluster => "cluster",
            GroupKind::External => "external",
            GroupKind::NodePort => "nodeport",
        }
    }
}

impl Group {
    /// `lb-<kind>-<proto>-<endpoints>`.
    pub(super) fn chain_name(&self) -> String {
        name(self.kind, self.protocol, self.endpoints)
    }

    /// The set of the frontends that lead to this group, named as its chain; `None` for
    /// groups of more than [`MAX_SET_ENDPOINTS`] endpoints, reached through `service-ips`.
    /// (`&'static`, as every set name an element carries: the names are made once.)
    pub(super) fn member_set(&self) -> Option<&'static str> {
        static NAMES: OnceLock<Vec<String>> = OnceLock::new();
        if self.endpoints == 0 || self.endpoints > MAX_SET_ENDPOINTS {
            return None;
        }
        let names = NAMES.get_or_init(|| {
            let mut names = Vec::new();
            for kind in GroupKind::ALL {
                for protocol in Protocol::ALL {
                    for n in 1..=MAX_SET_ENDPOINTS {
                        names.push(name(kind, protocol, n));
                    }
                }
            }
            names
        });
        let kind = GroupKind::ALL.iter().position(|k| *k == self.kind)?;
        let protocol = Protocol::ALL.iter().position(|p| *p == self.protocol)?;
        let index =
            (kind * Protocol::ALL.len() + protocol) * MAX_SET_ENDPOINTS + (self.endpoints - 1);
        names.get(index).map(String::as_str)
    }

    /// The member set's declaration (after `add set <family> <table>`), if it has one.
    pub(super) fn member_set_declaration(&self) -> Option<String> {
        let set = self.member_set()?;
        Some(match self.kind {
            GroupKind::NodePort => format!("{set} {{ type inet_proto . inet_service ; }}"),
            _ => format!(
                "{set} {{ type {} . inet_proto . inet_service ; }}",
                addr_type(self.family)
            ),
        })
    }

    /// The `service-groups` rule that sends the member set's frontends to the chain.
    pub(super) fn dispatch_rule(&self) -> Option<String> {
        let set = self.member_set()?;
        let fam = family(self.family);
        Some(match self.kind {
            GroupKind::NodePort => {
                format!("{fam} daddr @{NODEPORT_IPS} meta l4proto . th dport @{set} goto {set}")
            }
            _ => format!("{fam} daddr . meta l4proto . th dport @{set} goto {set}"),
        })
    }

    /// The chain with its rules (which depend on the node's cluster CIDRs).
    pub(super) fn chain(&self, node: &NodeView) -> ChainDef {
        let fam = family(self.family);
        let proto = self.protocol.nft_name();
        let n = self.endpoints;
        let mut rules = Vec::with_capacity(2);
        match self.kind {
            GroupKind::Cluster => {
                if let Some(cidrs) = cidr_set(&node.cluster_cidrs, self.family) {
                    rules.push(format!("{fam} saddr != {cidrs} jump {MARK_MASQ}"));
                }
            }
            GroupKind::External | GroupKind::NodePort => rules.push(format!("jump {MARK_MASQ}")),
        }
        rules.push(match self.kind {
            GroupKind::NodePort => format!(
                "dnat {fam} to {proto} dport . numgen random mod {n} map @{}",
                nodeport_backends_map(self.protocol)
            ),
            _ => format!(
                "dnat {fam} to {fam} daddr . {proto} dport . numgen random mod {n} map @{}",
                backends_map(self.protocol)
            ),
        });
        ChainDef {
            family: self.family,
            name: self.chain_name(),
            rules,
        }
    }
}

fn name(kind: GroupKind, protocol: Protocol, endpoints: usize) -> String {
    format!(
        "{GROUP_PREFIX}{}-{}-{endpoints}",
        kind.name(),
        protocol.nft_name()
    )
}

/// `frontend address . port . slot : endpoint address . port`, per protocol (one map for
/// all would need `th dport` in its type, which nft 1.0.6 cannot reload).
pub(super) fn backends_map(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "backends-tcp",
        Protocol::Udp => "backends-udp",
        Protocol::Sctp => "backends-sctp",
    }
}

/// `node port . slot : endpoint address . port`, per protocol.
pub(super) fn nodeport_backends_map(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "nodeport-backends-tcp",
        Protocol::Udp => "nodeport-backends-udp",
        Protocol::Sctp => "nodeport-backends-sctp",
    }
}

/// Whether a port is only data (group chains) rather than chains of its own: no affinity
/// (per-endpoint sets), no source ranges (a firewall chain) and no Local external policy
/// (short-circuits and a Local endpoint set).
pub(super) fn is_grouped(p: &ServicePortState) -> bool {
    p.affinity_timeout.is_none()
        && (p.load_balancer_ips.is_empty() || p.load_balancer_source_ranges.is_empty())
        && p.external.is_none_or(|e| e.masquerade)
}

/// The groups a grouped port's frontends lead to.
pub(super) fn port_groups(p: &ServicePortState) -> impl Iterator<Item = Group> + '_ {
    let group = |kind, to| {
        let n = p.endpoints_for(to).len();
        (n > 0).then_some(Group {
            family: p.family,
            kind,
            protocol: p.name.protocol,
            endpoints: n,
        })
    };
    let grouped = is_grouped(p);
    let internal = grouped
        .then(|| group(GroupKind::Cluster, p.internal.to))
        .flatten();
    let external = p.external.filter(|_| grouped);
    let ips = external
        .filter(|_| !p.external_ips.is_empty() || !p.load_balancer_ips.is_empty())
        .and_then(|e| group(GroupKind::External, e.to));
    let node_port = external
        .filter(|_| p.node_port.is_some())
        .and_then(|e| group(GroupKind::NodePort, e.to));
    internal.into_iter().chain(ips).chain(node_port)
}

/// Whether any port of `ports` uses `group`.
pub(super) fn used<'a>(
    mut ports: impl Iterator<Item = &'a ServicePortState>,
    group: &Group,
) -> bool {
    ports.any(|p| {
        p.family == group.family
            && p.name.protocol == group.protocol
            && port_groups(p).any(|g| g == *group)
    })
}

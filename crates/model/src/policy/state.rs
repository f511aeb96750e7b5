//! The compiled policy state: plain data saying, per pod, which traffic its policies let in
//! and out. Produced by [`compile`](super::compile), read by [`allows`](super::allows), the
//! reachability table and the nft renderer. Everything is sorted, so two compiles of the
//! same objects are equal and serialize identically.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use super::addr::AddrSet;
use super::cnp::RuleAction;
use crate::service::Protocol;

/// Everything policy decides, for every pod of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PolicyState {
    /// Pods with addresses, sorted by namespace and name (host-network and finished pods are
    /// not here: their addresses are the node's or nobody's).
    pub pods: Vec<PodPolicy>,
    /// The peer address sets rules refer to by [`PeerSetId`]; equal sets are stored once.
    pub peer_sets: Vec<AddrSet>,
    /// Pod address → index into `pods`.
    pub by_ip: BTreeMap<IpAddr, usize>,
    /// What was wrong with the objects, sorted.
    pub warnings: Vec<PolicyWarning>,
}

/// One pod's policy, both directions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodPolicy {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `status.podIPs`.
    pub ips: Vec<IpAddr>,
    /// `status.hostIPs`: traffic from the pod's own node always comes in (kubelet probes).
    pub host_ips: Vec<IpAddr>,
    /// Traffic to the pod; the remote address is the source.
    pub ingress: DirectionPolicy,
    /// Traffic from the pod; the remote address is the destination.
    pub egress: DirectionPolicy,
}

/// What one direction of one pod allows, as the three tiers in evaluation order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DirectionPolicy {
    /// Admin-tier ClusterNetworkPolicy rules, in precedence order: the first match decides.
    pub admin: Vec<TierRule>,
    /// Whether a NetworkPolicy isolates the pod in this direction: then only `allow` lets
    /// traffic through (after `admin`), and `baseline` is never consulted.
    pub isolated: bool,
    /// NetworkPolicy allow rules (their union), named ports resolved. Sorted, no duplicates.
    pub allow: Vec<Rule>,
    /// Baseline-tier rules, in precedence order, for when `isolated` is false.
    pub baseline: Vec<TierRule>,
}

/// Traffic a rule matches: a remote peer and a protocol/port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Rule {
    /// The remote addresses.
    pub peers: Peers,
    /// The protocols and destination ports.
    pub ports: Ports,
}

/// A ClusterNetworkPolicy rule, compiled for one pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TierRule {
    /// What matching traffic gets.
    pub action: RuleAction,
    /// The traffic it matches.
    pub matches: Rule,
    /// Which policy and rule this is.
    pub origin: RuleOrigin,
}

/// A ClusterNetworkPolicy rule's identity, for verdicts and nft comments.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct RuleOrigin {
    /// `metadata.name` of the ClusterNetworkPolicy.
    pub policy: String,
    /// The rule's `name`, or `ingress[i]` / `egress[i]` when it has none.
    pub rule: String,
}

/// The remote side of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Peers {
    /// Any address (no `from`/`to`).
    Any,
    /// The addresses of `PolicyState::peer_sets[id]`.
    Set(PeerSetId),
}

/// An index into [`PolicyState::peer_sets`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct PeerSetId(pub usize);

/// The protocols and ports of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Ports {
    /// Any protocol, any port (no `ports`, or an empty port entry).
    Any,
    /// Any of these (never empty: a rule whose ports all failed to resolve is dropped).
    Only(Vec<PortMatch>),
}

/// One protocol, optionally limited to a port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct PortMatch {
    /// TCP, UDP or SCTP: never one for another.
    pub protocol: Protocol,
    /// Inclusive destination port range; `None`: every port of the protocol.
    pub ports: Option<(u16, u16)>,
}

/// The answer to "may this connection be opened?".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Verdict {
    /// Allowed in both directions (replies then pass as part of the connection).
    Allow,
    /// Dropped; says where and by what.
    Deny(Denial),
}

/// Why a connection is dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Denial {
    /// Egress at the source pod, or ingress at the destination pod.
    pub direction: Direction,
    /// The tier that decided.
    pub by: DeniedBy,
}

/// A direction of traffic relative to a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Direction {
    /// Into the pod.
    Ingress,
    /// Out of the pod.
    Egress,
}

/// The tier whose decision dropped a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum DeniedBy {
    /// An Admin-tier `Deny` rule.
    Admin(RuleOrigin),
    /// NetworkPolicy isolates the pod and none of its rules allows the traffic.
    NetworkPolicy,
    /// A Baseline-tier `Deny` rule.
    Baseline(RuleOrigin),
}

/// A problem in an input object. The bad part is skipped, failing closed where that is
/// possible: a broken rule is dropped but its policy still isolates.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, thiserror::Error)]
pub enum PolicyWarning {
    /// The whole object is ignored.
    #[error("{kind} {object}: {problem}; ignored")]
    Skipped {
        /// `Pod`, `NetworkPolicy`, `ClusterNetworkPolicy`, `Node`.
        kind: &'static str,
        /// `namespace/name` or `name`.
        object: String,
        /// What is wrong: the field and its value.
        problem: String,
    },
    /// One rule (or peer) is dropped or replaced; the rest of the object applies.
    #[error("{kind} {object}: {problem}")]
    Field {
        /// `NetworkPolicy`, `ClusterNetworkPolicy`.
        kind: &'static str,
        /// `namespace/name` or `name`.
        object: String,
        /// What is wrong and what was done instead.
        problem: String,
    },
}

// === impl Verdict ===

impl Verdict {
    /// Whether the connection is allowed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Verdict::Allow)
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        })
    }
}

// === impl PodPolicy ===

impl PodPolicy {
    /// `namespace/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

// === impl DirectionPolicy ===

impl DirectionPolicy {
    /// Whether nothing restricts this direction (no rule of any tier, not isolated): no nft
    /// chain is needed.
    pub fn is_open(&self) -> bool {
        self.admin.is_empty() && !self.isolated && self.baseline.is_empty()
    }
}

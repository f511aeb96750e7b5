//! Who may talk to whom: NetworkPolicy (`networking.k8s.io/v1`) and ClusterNetworkPolicy
//! (`policy.networking.k8s.io/v1alpha2`) compiled into per-pod allow rules, answered from
//! that data, checked against a reference evaluator, and rendered to nftables.
//!
//! ```text
//! NetworkPolicy, ClusterNetworkPolicy,  ┐
//! Pod, Namespace, Node (PolicyInputs)   ┴─▶ compile ─▶ PolicyState ─┬─▶ allows / reachability
//!                                                      (plain data) └─▶ render (nft table: whole, or changes)
//! PolicyInputs ─▶ reference_allows  (the oracle the property tests hold `allows` to)
//! ```
//!
//! # Semantics followed
//!
//! NetworkPolicy: the API reference (k8s.io/api `networking/v1/types.go`) and the concepts
//! page (website `network-policies.md`), as the upstream e2e suite
//! (kubernetes/kubernetes `test/e2e/network/netpol`) tests them:
//! - a pod is isolated in a direction once any policy selecting it (same namespace,
//!   `podSelector`, empty = all) has that type in its defaulted `policyTypes` (`Ingress`
//!   always; `Egress` when an `egress` section exists); allowed traffic is then the union of
//!   those policies' rules; a connection needs egress allowed at the source and ingress
//!   allowed at the destination; replies pass (conntrack);
//! - peers: `podSelector` alone = the policy's namespace; `namespaceSelector` alone = all
//!   pods there; both in one peer = AND; separate peers = OR; `ipBlock` minus `except`
//!   matches any address in it, pod addresses included (as upstream's "…in CIDR block"
//!   tests expect);
//! - ports: protocol defaults to TCP, so an empty entry `{}` is every TCP port (the API's
//!   defaulting; `ports` missing or empty is any traffic); a named port is resolved on the
//!   *destination* pod's container ports with the entry's protocol (per pod: two pods may
//!   give one name different numbers; a pod without it does not match); `endPort` ranges;
//!   TCP, UDP and SCTP are never confused;
//! - traffic from the destination pod's own node (`status.hostIPs`, and the renderer's
//!   node addresses) always comes in;
//! - host-network pods are neither subjects nor pod peers (their address is the node's: an
//!   `ipBlock` or `nodes` peer reaches them); finished pods are ignored.
//!
//! ClusterNetworkPolicy (kubernetes-sigs/network-policy-api `apis/v1alpha2`, API overview):
//! each direction is decided on its own: Admin tier (priority ascending, then name — upstream
//! leaves equal priorities undefined — rules in written order; first match decides: Accept
//! = allowed, NetworkPolicy skipped; Deny = dropped; Pass = skip the rest of the tier), then
//! NetworkPolicy if it isolates the pod, else the Baseline tier the same way (Pass = the
//! default), else allowed. `destinationNamedPort` resolves on the destination pod with that
//! container port's protocol. Unusable peers fail closed as upstream prescribes (see
//! `cluster.rs`); `domainNames` is not supported and fails closed.
//!
//! Not covered: loopback (a pod reaching its own address never leaves it, and no rule sees
//! it), ICMP specifics (a rule with ports matches only TCP/UDP/SCTP).

mod addr;
mod cluster;
mod cnp;
mod compile;
mod eval;
mod input;
mod netpol;
mod nft;
mod reference;
mod selector;
mod spec;
mod state;

#[cfg(test)]
mod tests;

pub use addr::{AddrRange, AddrSet};
pub use cnp::{
    CNP_API_VERSION, CNP_KIND, ClusterNetworkPolicy, ClusterNetworkPolicyEgressPeer,
    ClusterNetworkPolicyEgressRule, ClusterNetworkPolicyIngressPeer,
    ClusterNetworkPolicyIngressRule, ClusterNetworkPolicyProtocol, ClusterNetworkPolicySpec,
    ClusterNetworkPolicySubject, NamespacedPod, Port, PortRange, ProtocolPort, RuleAction, Tier,
};
pub use compile::compile;
pub use eval::{Reachability, allows, reachability};
pub use input::{NAMESPACE_NAME_LABEL, PolicyInputs};
pub use nft::{NodeView, PolicyTable, TABLE, render, render_full};
pub use reference::reference_allows;
pub use state::{
    Denial, DeniedBy, Direction, DirectionPolicy, PeerSetId, Peers, PodPolicy, PolicyState,
    PolicyWarning, PortMatch, Ports, Rule, RuleOrigin, TierRule, Verdict,
};

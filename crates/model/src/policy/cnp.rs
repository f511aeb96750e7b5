//! The `policy.networking.k8s.io/v1alpha2` ClusterNetworkPolicy, as serde types: k8s-openapi
//! does not have it. Field for field the upstream Go types
//! (kubernetes-sigs/network-policy-api `apis/v1alpha2/clusternetworkpolicy_types.go`), JSON
//! names included. Enums reject unknown values with an error naming the field and the value.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::{Deserialize, Deserializer, Serialize};

/// The API group and version.
pub const CNP_API_VERSION: &str = "policy.networking.k8s.io/v1alpha2";
/// The kind.
pub const CNP_KIND: &str = "ClusterNetworkPolicy";

/// A cluster-wide network policy (cluster-scoped: no namespace).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicy {
    /// `policy.networking.k8s.io/v1alpha2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `ClusterNetworkPolicy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The name identifies the policy (and breaks ties between equal priorities).
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// What the policy does.
    pub spec: ClusterNetworkPolicySpec,
}

/// `spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicySpec {
    /// Admin (before NetworkPolicy) or Baseline (after it).
    pub tier: Tier,
    /// 0–1000; lower is evaluated first within the tier.
    pub priority: i32,
    /// The pods the policy applies to.
    pub subject: ClusterNetworkPolicySubject,
    /// Ingress rules, in precedence order. None: the policy does not affect ingress.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<ClusterNetworkPolicyIngressRule>,
    /// Egress rules, in precedence order. None: the policy does not affect egress.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<ClusterNetworkPolicyEgressRule>,
}

/// A policy tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Tier {
    /// Evaluated before NetworkPolicy; its Accept and Deny are final.
    #[default]
    Admin,
    /// Evaluated for pods NetworkPolicy does not isolate (in that direction).
    Baseline,
}

/// `spec.subject`: exactly one field is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicySubject {
    /// Every pod in the namespaces this selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<LabelSelector>,
    /// Pods selected by namespace AND pod selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<NamespacedPod>,
}

/// Pods chosen by a namespace selector and a pod selector together (empty selects all).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespacedPod {
    /// Selects namespaces; empty: all.
    #[serde(default)]
    pub namespace_selector: LabelSelector,
    /// Selects pods in those namespaces; empty: all.
    #[serde(default)]
    pub pod_selector: LabelSelector,
}

/// An ingress rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicyIngressRule {
    /// Optional name, for observability.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// What matching traffic gets.
    pub action: RuleAction,
    /// Sources; any one matching is enough.
    #[serde(default)]
    pub from: Vec<ClusterNetworkPolicyIngressPeer>,
    /// Protocols and ports; none: any traffic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protocols: Vec<ClusterNetworkPolicyProtocol>,
}

/// An egress rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicyEgressRule {
    /// Optional name, for observability.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// What matching traffic gets.
    pub action: RuleAction,
    /// Destinations; any one matching is enough.
    #[serde(default)]
    pub to: Vec<ClusterNetworkPolicyEgressPeer>,
    /// Protocols and ports; none: any traffic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protocols: Vec<ClusterNetworkPolicyProtocol>,
}

/// A rule's action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum RuleAction {
    /// Allowed; no further rules of this direction (egress: the destination's ingress still
    /// applies).
    #[default]
    Accept,
    /// Dropped; nothing further is evaluated.
    Deny,
    /// Skips the rest of this tier: from Admin to NetworkPolicy, from Baseline to the default
    /// (allow).
    Pass,
}

/// An ingress peer: exactly one field is set. None set (a field of a newer API version this
/// one does not know): the rule fails closed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicyIngressPeer {
    /// Every pod in the selected namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<LabelSelector>,
    /// Pods by namespace AND pod selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<NamespacedPod>,
}

/// An egress peer: exactly one field is set (see [`ClusterNetworkPolicyIngressPeer`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicyEgressPeer {
    /// Every pod in the selected namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<LabelSelector>,
    /// Pods by namespace AND pod selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<NamespacedPod>,
    /// The addresses (`status.addresses`) of the selected nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<LabelSelector>,
    /// CIDRs (pod addresses inside them match too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<Vec<String>>,
    /// Domain names (Accept only). Not supported by podnet: such a peer matches nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_names: Option<Vec<String>>,
}

/// A protocol match: exactly one field is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicyProtocol {
    /// TCP, optionally on a port or range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<ProtocolPort>,
    /// UDP, optionally on a port or range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp: Option<ProtocolPort>,
    /// SCTP, optionally on a port or range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sctp: Option<ProtocolPort>,
    /// A destination pod's container port by name (with that port's protocol).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_named_port: Option<String>,
}

/// Upstream's `ClusterNetworkPolicyProtocol{TCP,UDP,SCTP}` (one shape for all three).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProtocolPort {
    /// The destination port; none: every port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_port: Option<Port>,
}

/// A port number or a range: exactly one field is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    /// One port, 1–65535.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<i32>,
    /// An inclusive range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<PortRange>,
}

/// An inclusive port range, `start < end`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRange {
    /// The first port.
    pub start: i32,
    /// The last port.
    pub end: i32,
}

// === impl Tier ===

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tier::Admin => "Admin",
            Tier::Baseline => "Baseline",
        })
    }
}

impl<'de> Deserialize<'de> for Tier {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = String::deserialize(d)?;
        match value.as_str() {
            "Admin" => Ok(Tier::Admin),
            "Baseline" => Ok(Tier::Baseline),
            _ => Err(serde::de::Error::custom(format!(
                "spec.tier {value:?} is not Admin or Baseline"
            ))),
        }
    }
}

// === impl RuleAction ===

impl fmt::Display for RuleAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RuleAction::Accept => "Accept",
            RuleAction::Deny => "Deny",
            RuleAction::Pass => "Pass",
        })
    }
}

impl<'de> Deserialize<'de> for RuleAction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = String::deserialize(d)?;
        match value.as_str() {
            "Accept" => Ok(RuleAction::Accept),
            "Deny" => Ok(RuleAction::Deny),
            "Pass" => Ok(RuleAction::Pass),
            _ => Err(serde::de::Error::custom(format!(
                "rule action {value:?} is not Accept, Deny or Pass"
            ))),
        }
    }
}

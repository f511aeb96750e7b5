//! Rules as both policy kinds say them, before they meet pods: NetworkPolicy and
//! ClusterNetworkPolicy rules are read (and checked) into these, and `compile` resolves them
//! against the pods into [`Rule`](super::Rule)s.

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::service::Protocol;

/// A rule's peers and ports.
#[derive(Debug, Clone)]
pub(crate) struct RuleSpec {
    /// `None`: any peer (no `from`/`to`, or an empty list). Any one of them matching is enough.
    pub(crate) peers: Option<Vec<PeerSpec>>,
    /// `None`: any traffic. Any one of them matching is enough.
    pub(crate) ports: Option<Vec<PortSpec>>,
}

/// One peer.
#[derive(Debug, Clone)]
pub(crate) enum PeerSpec {
    /// Pods in some namespaces, optionally narrowed by a pod selector (both = AND).
    Pods {
        namespaces: NamespaceScope,
        /// `None`: every pod of those namespaces.
        pods: Option<LabelSelector>,
    },
    /// A CIDR minus its `except` blocks; pod addresses inside count too.
    Block { cidr: IpNet, except: Vec<IpNet> },
    /// The addresses of the nodes a selector selects.
    Nodes(LabelSelector),
}

/// Which namespaces a pod peer looks in.
#[derive(Debug, Clone)]
pub(crate) enum NamespaceScope {
    /// Only this one (a NetworkPolicy peer with a pod selector alone: the policy's own).
    Named(String),
    /// Those a selector selects.
    Selector(LabelSelector),
}

/// One port entry.
#[derive(Debug, Clone)]
pub(crate) enum PortSpec {
    /// A protocol, on a port range or (`None`) every port.
    Numbers {
        protocol: Protocol,
        range: Option<(u16, u16)>,
    },
    /// A container port by name, on the destination pod: with the protocol given, or
    /// (`None`) with the container port's own.
    Named {
        name: String,
        protocol: Option<Protocol>,
    },
}

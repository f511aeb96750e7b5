//! The inputs of `compile` and the reference evaluator: the objects, and checked views of
//! pods, namespaces and nodes. Reading checks every field policy uses and reports what is
//! wrong as a [`PolicyWarning`] instead of failing.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;

use super::cnp::ClusterNetworkPolicy;
use super::state::PolicyWarning;
use crate::service::Protocol;

/// The label the API server puts on every namespace: its own name (so policies can select a
/// namespace by name).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Everything policy reads: the cluster's objects (any order).
#[derive(Debug, Clone, Copy, Default)]
pub struct PolicyInputs<'a> {
    /// `networking.k8s.io/v1` NetworkPolicies.
    pub network_policies: &'a [NetworkPolicy],
    /// `policy.networking.k8s.io/v1alpha2` ClusterNetworkPolicies.
    pub cluster_network_policies: &'a [ClusterNetworkPolicy],
    /// Pods, with `status.podIPs`, `status.hostIPs`, labels and container ports.
    pub pods: &'a [Pod],
    /// Namespaces, for their labels.
    pub namespaces: &'a [Namespace],
    /// Nodes, for ClusterNetworkPolicy `nodes` peers (labels and `status.addresses`).
    pub nodes: &'a [Node],
}

/// A pod policy can see: one with addresses of its own.
#[derive(Debug, Clone)]
pub(crate) struct PodView {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) ips: Vec<IpAddr>,
    pub(crate) host_ips: Vec<IpAddr>,
    /// Named container ports: (name, protocol, number).
    pub(crate) named_ports: Vec<(String, Protocol, u16)>,
}

/// A node's labels and addresses.
#[derive(Debug, Clone)]
pub(crate) struct NodeView {
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) ips: Vec<IpAddr>,
}

/// Reads the pods policy applies to, sorted by namespace and name. Host-network pods (their
/// address is the node's), finished pods (their address may be reused) and pods without an
/// address yet are left out silently: that is their normal state, not an error.
pub(crate) fn read_pods(pods: &[Pod], warnings: &mut Vec<PolicyWarning>) -> Vec<PodView> {
    let mut out: Vec<PodView> = pods.iter().filter_map(|p| read_pod(p, warnings)).collect();
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out.dedup_by(|b, a| {
        let dup = a.namespace == b.namespace && a.name == b.name;
        if dup {
            warnings.push(PolicyWarning::Skipped {
                kind: "Pod",
                object: format!("{}/{}", b.namespace, b.name),
                problem: "a second Pod object with this namespace and name".to_owned(),
            });
        }
        dup
    });
    // Two live pods never share an address; if the objects say so, the first by name
    // keeps it (one address must lead to one pod's chain).
    let mut owners: BTreeMap<IpAddr, String> = BTreeMap::new();
    out.retain_mut(|pod| {
        let id = format!("{}/{}", pod.namespace, pod.name);
        pod.ips.retain(|ip| match owners.get(ip) {
            Some(owner) => {
                warnings.push(PolicyWarning::Skipped {
                    kind: "Pod",
                    object: id.clone(),
                    problem: format!("status.podIPs {ip} is also {owner}'s"),
                });
                false
            }
            None => {
                owners.insert(*ip, id.clone());
                true
            }
        });
        !pod.ips.is_empty()
    });
    out
}

fn read_pod(pod: &Pod, warnings: &mut Vec<PolicyWarning>) -> Option<PodView> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let spec = pod.spec.as_ref()?;
    let status = pod.status.as_ref()?;
    if spec.host_network == Some(true)
        || matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"))
    {
        return None;
    }
    let mut skip = |problem: String| {
        warnings.push(PolicyWarning::Skipped {
            kind: "Pod",
            object: format!("{namespace}/{name}"),
            problem,
        });
    };
    // Both end up in nft chain names: only what the API allows gets there.
    if !is_dns_name(&namespace, 63) {
        skip(format!(
            "metadata.namespace {namespace:?} is not a DNS label"
        ));
        return None;
    }
    if !is_dns_name(&name, 253) {
        skip(format!("metadata.name {name:?} is not a DNS subdomain"));
        return None;
    }
    let raw_ips: Vec<&str> = match status.pod_ips.as_deref() {
        Some(ips) if !ips.is_empty() => ips.iter().map(|p| p.ip.as_str()).collect(),
        _ => status.pod_ip.as_deref().into_iter().collect(),
    };
    let mut ips = Vec::new();
    for raw in raw_ips {
        match raw.parse::<IpAddr>() {
            Ok(ip) if !ips.contains(&ip) => ips.push(ip),
            Ok(_) => {}
            Err(_) => skip(format!("status.podIPs entry {raw:?} is not an IP address")),
        }
    }
    if ips.is_empty() {
        return None;
    }
    let raw_hosts: Vec<&str> = match status.host_ips.as_deref() {
        Some(ips) if !ips.is_empty() => ips.iter().map(|p| p.ip.as_str()).collect(),
        _ => status.host_ip.as_deref().into_iter().collect(),
    };
    let host_ips = raw_hosts
        .into_iter()
        .filter_map(|h| h.parse().ok())
        .collect();
    let mut named_ports = Vec::new();
    for (c, container) in spec.containers.iter().enumerate() {
        for (i, port) in container.ports.iter().flatten().enumerate() {
            let Some(port_name) = port.name.as_deref().filter(|n| !n.is_empty()) else {
                continue;
            };
            let field = format!("spec.containers[{c}].ports[{i}]");
            let Some(protocol) = Protocol::from_api(port.protocol.as_deref()) else {
                skip(format!(
                    "{field}.protocol {:?} is not TCP, UDP or SCTP",
                    port.protocol.as_deref().unwrap_or_default()
                ));
                return None;
            };
            let Some(number) = u16::try_from(port.container_port).ok().filter(|n| *n > 0) else {
                skip(format!(
                    "{field}.containerPort {} is not in 1-65535",
                    port.container_port
                ));
                return None;
            };
            named_ports.push((port_name.to_owned(), protocol, number));
        }
    }
    Some(PodView {
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        namespace,
        name,
        ips,
        host_ips,
        named_ports,
    })
}

/// Namespace labels by name, each with [`NAMESPACE_NAME_LABEL`] set as the API server sets
/// it. Namespaces of `pods` without an object get only that label.
pub(crate) fn namespace_labels(
    namespaces: &[Namespace],
    pods: &[PodView],
) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for ns in namespaces {
        let Some(name) = ns.metadata.name.clone() else {
            continue;
        };
        let mut labels = ns.metadata.labels.clone().unwrap_or_default();
        labels.insert(NAMESPACE_NAME_LABEL.to_owned(), name.clone());
        out.insert(name, labels);
    }
    for pod in pods {
        out.entry(pod.namespace.clone()).or_insert_with(|| {
            BTreeMap::from([(NAMESPACE_NAME_LABEL.to_owned(), pod.namespace.clone())])
        });
    }
    out
}

/// Nodes with their labels and every address in `status.addresses` that is an IP.
pub(crate) fn read_nodes(nodes: &[Node]) -> Vec<NodeView> {
    nodes
        .iter()
        .map(|n| NodeView {
            labels: n.metadata.labels.clone().unwrap_or_default(),
            ips: n
                .status
                .iter()
                .flat_map(|s| s.addresses.iter().flatten())
                .filter_map(|a| a.address.parse().ok())
                .collect(),
        })
        .collect()
}

/// The numbers a named port has on `pod`: with `protocol`, only that protocol's (a
/// NetworkPolicy port names its protocol); without, the port's own protocol
/// (ClusterNetworkPolicy `destinationNamedPort`).
pub(crate) fn resolve_named_port(
    pod: &PodView,
    name: &str,
    protocol: Option<Protocol>,
) -> Vec<(Protocol, u16)> {
    pod.named_ports
        .iter()
        .filter(|(n, p, _)| n == name && protocol.is_none_or(|want| want == *p))
        .map(|(_, p, number)| (*p, *number))
        .collect()
}

/// Lowercase letters, digits, `-` and `.`, at most `max` long, not empty: what a DNS label
/// or subdomain may hold (enough to keep names safe in nft).
fn is_dns_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

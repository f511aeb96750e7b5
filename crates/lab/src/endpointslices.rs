//! The EndpointSlice controller's desired state, pure: for a Service with a selector, the slices
//! kube-controller-manager would keep (k8s.io/endpointslice: `reconciler.go`, `utils.go`,
//! `trafficdist/`), computed from the Service, the Pods and the Nodes.
//!
//! - Pods: in the Service's namespace, matching its selector, with an IP, not Succeeded or
//!   Failed, on a Node that exists. Terminating pods stay in, marked.
//! - Conditions: `serving` is the pod's Ready condition, `terminating` its deletionTimestamp,
//!   `ready` is serving and not terminating (or true with `publishNotReadyAddresses`).
//! - Ports are resolved per pod: a named targetPort is looked up in the pod's container ports
//!   (same name and protocol); a port a pod cannot resolve is left out of that pod's port list.
//!   Pods are grouped by their resolved port list, one slice (of at most 100 endpoints) per group.
//!   With no endpoints at all, one empty placeholder slice.
//! - Hints: with `trafficDistribution` PreferClose / PreferSameZone every ready endpoint gets a
//!   hint for its own zone (PreferSameNode also for its own node), as `trafficdist` does.
//!
//! The controller names slices `<service>-<5 characters>` from the API server's `generateName`;
//! here the characters come from a hash of the Service, its address type and the slice's
//! ordinal (port groups in order, then chunks), so the same inputs give the same slices, an
//! unchanged slice is never rewritten, and the placeholder and the first slice with endpoints
//! are one object updated in place.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointHints, EndpointPort, EndpointSlice, ForNode, ForZone,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sha2::{Digest, Sha256};

/// The label naming a slice's Service.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// The label naming a slice's manager.
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// The EndpointSlice controller's name, the value of [`LABEL_MANAGED_BY`] on its slices.
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// The label on slices of headless Services.
const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";
/// The Node label giving its zone.
const LABEL_ZONE: &str = "topology.kubernetes.io/zone";
/// The controller's default `--max-endpoints-per-slice`.
const MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// The characters the API server's `generateName` suffixes use (no vowels, no look-alikes).
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A slice's ports as a sortable key: (name, port, protocol, appProtocol) in the Service's order.
type PortKey = Vec<(String, i32, String, Option<String>)>;

/// The slices the EndpointSlice controller keeps for `service`, or `None` when it keeps none:
/// an ExternalName Service, or one without a selector (its slices are made by hand).
pub fn desired(service: &Service, pods: &[Pod], nodes: &[Node]) -> Option<Vec<EndpointSlice>> {
    let spec = service.spec.as_ref()?;
    let selector = spec.selector.as_ref().filter(|s| !s.is_empty())?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    let namespace = service.metadata.namespace.as_deref().unwrap_or("default");
    let zones: BTreeMap<&str, Option<&str>> = nodes
        .iter()
        .filter_map(|n| {
            let zone = n
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_ZONE))
                .map(String::as_str)
                .filter(|z| !z.is_empty());
            Some((n.metadata.name.as_deref()?, zone))
        })
        .collect();
    let selected: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.metadata.namespace.as_deref().unwrap_or("default") == namespace)
        .filter(|p| {
            let labels = p.metadata.labels.clone().unwrap_or_default();
            selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        })
        .filter(|p| should_be_in_endpoints(p))
        .collect();

    let mut slices = Vec::new();
    for address_type in address_types(service) {
        let mut groups: BTreeMap<PortKey, Vec<Endpoint>> = BTreeMap::new();
        for pod in &selected {
            // A pod on a Node that does not exist (yet, or any more) waits outside.
            let Some(zone) = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .and_then(|n| zones.get(n))
            else {
                continue;
            };
            let endpoint = pod_to_endpoint(pod, *zone, service, address_type);
            if endpoint.addresses.is_empty() {
                continue;
            }
            groups
                .entry(endpoint_ports(service, pod))
                .or_default()
                .push(endpoint);
        }
        if groups.is_empty() {
            slices.push(new_slice(service, address_type, &Vec::new(), 0, Vec::new()));
            continue;
        }
        let mut ordinal = 0;
        for (ports, mut endpoints) in groups {
            endpoints.sort_by_key(endpoint_order);
            set_hints(spec.traffic_distribution.as_deref(), &mut endpoints);
            for part in endpoints.chunks(MAX_ENDPOINTS_PER_SLICE) {
                slices.push(new_slice(
                    service,
                    address_type,
                    &ports,
                    ordinal,
                    part.to_vec(),
                ));
                ordinal += 1;
            }
        }
    }
    Some(slices)
}

/// Whether a slice is one this controller manages (the others are users').
pub fn is_managed(slice: &EndpointSlice) -> bool {
    slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_MANAGED_BY))
        .is_some_and(|m| m == CONTROLLER_NAME)
}

/// `ShouldPodBeInEndpoints(pod, includeTerminating: true)`: not Succeeded or Failed, with an IP.
fn should_be_in_endpoints(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return false;
    }
    status.is_some_and(|s| {
        s.pod_ip.as_ref().is_some_and(|ip| !ip.is_empty())
            || s.pod_ips.as_ref().is_some_and(|ips| !ips.is_empty())
    })
}

/// The Pod's Ready condition.
fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The address types a Service's slices have, from its `ipFamilies` (IPv4 when unset).
fn address_types(service: &Service) -> Vec<&'static str> {
    let families = service
        .spec
        .as_ref()
        .and_then(|s| s.ip_families.clone())
        .unwrap_or_default();
    let mut types: Vec<&'static str> = families
        .iter()
        .filter_map(|f| match f.as_str() {
            "IPv4" => Some("IPv4"),
            "IPv6" => Some("IPv6"),
            _ => None,
        })
        .collect();
    if types.is_empty() {
        types.push("IPv4");
    }
    types
}

/// `podToEndpoint`.
fn pod_to_endpoint(
    pod: &Pod,
    zone: Option<&str>,
    service: &Service,
    address_type: &str,
) -> Endpoint {
    let spec = service.spec.as_ref();
    let serving = pod_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let publish_not_ready = spec.and_then(|s| s.publish_not_ready_addresses) == Some(true);
    let ready = publish_not_ready || (serving && !terminating);
    let status = pod.status.as_ref();
    let mut ips: Vec<String> = status
        .and_then(|s| s.pod_ips.as_ref())
        .map(|ips| ips.iter().map(|i| i.ip.clone()).collect())
        .unwrap_or_default();
    if ips.is_empty()
        && let Some(ip) = status.and_then(|s| s.pod_ip.clone())
    {
        ips.push(ip);
    }
    let addresses = ips
        .iter()
        .filter_map(|ip| ip.parse::<std::net::IpAddr>().ok())
        .filter(|ip| match address_type {
            "IPv6" => ip.is_ipv6(),
            _ => ip.is_ipv4(),
        })
        .map(|ip| ip.to_string())
        .collect();
    let pod_spec = pod.spec.as_ref();
    let hostname = pod_spec
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .filter(|_| {
            pod_spec.and_then(|s| s.subdomain.as_deref()) == service.metadata.name.as_deref()
        });
    Endpoint {
        addresses,
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname,
        node_name: pod_spec
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        }),
        zone: zone.map(str::to_owned),
        ..Default::default()
    }
}

/// `getEndpointPorts`: the Service's ports as this pod serves them; a port the pod cannot
/// resolve is left out.
fn endpoint_ports(service: &Service, pod: &Pod) -> PortKey {
    let Some(spec) = service.spec.as_ref() else {
        return Vec::new();
    };
    spec.ports
        .iter()
        .flatten()
        .filter_map(|port| {
            let number = find_port(pod, port)?;
            Some((
                port.name.clone().unwrap_or_default(),
                number,
                port.protocol.clone().unwrap_or_else(|| "TCP".into()),
                port.app_protocol.clone(),
            ))
        })
        .collect()
}

/// `FindPort`: a numeric targetPort is itself; a named one is the container port of that name
/// and protocol (in the pod's containers, then its restartable init containers).
fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    match port
        .target_port
        .clone()
        .unwrap_or(IntOrString::Int(port.port))
    {
        IntOrString::Int(n) => Some(n),
        IntOrString::String(name) => {
            let spec = pod.spec.as_ref()?;
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

/// Endpoints in a stable order: by pod, then address.
fn endpoint_order(e: &Endpoint) -> (Option<String>, Vec<String>) {
    (
        e.target_ref.as_ref().and_then(|r| r.name.clone()),
        e.addresses.clone(),
    )
}

/// `trafficdist.ReconcileHints`: with a "close" traffic distribution, each ready endpoint is
/// hinted for its own zone (and with PreferSameNode, its own node); otherwise no hints.
fn set_hints(traffic_distribution: Option<&str>, endpoints: &mut [Endpoint]) {
    let close = matches!(
        traffic_distribution,
        Some("PreferClose" | "PreferSameZone" | "PreferSameNode")
    );
    let same_node = traffic_distribution == Some("PreferSameNode");
    for e in endpoints {
        let ready = e.conditions.as_ref().and_then(|c| c.ready) == Some(true);
        if !close || !ready {
            e.hints = None;
            continue;
        }
        let for_zones = e.zone.clone().map(|name| vec![ForZone { name }]);
        let for_nodes = e
            .node_name
            .clone()
            .filter(|_| same_node)
            .map(|name| vec![ForNode { name }]);
        e.hints = (for_zones.is_some() || for_nodes.is_some()).then_some(EndpointHints {
            for_zones,
            for_nodes,
        });
    }
}

/// `newEndpointSlice`, with a name from a hash rather than `generateName`.
fn new_slice(
    service: &Service,
    address_type: &str,
    ports: &PortKey,
    ordinal: usize,
    endpoints: Vec<Endpoint>,
) -> EndpointSlice {
    let name = service.metadata.name.clone().unwrap_or_default();
    let spec = service.spec.as_ref();
    let mut labels: BTreeMap<String, String> = service
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| {
            ![LABEL_SERVICE_NAME, LABEL_MANAGED_BY, LABEL_HEADLESS].contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let cluster_ip = spec.and_then(|s| s.cluster_ip.as_deref()).unwrap_or("");
    if cluster_ip.is_empty() || cluster_ip == "None" {
        labels.insert(LABEL_HEADLESS.into(), String::new());
    }
    labels.insert(LABEL_SERVICE_NAME.into(), name.clone());
    labels.insert(LABEL_MANAGED_BY.into(), CONTROLLER_NAME.into());
    let digest = Sha256::digest(format!(
        "{name}\0{address_type}\0{ordinal}\0{}",
        service.metadata.uid.as_deref().unwrap_or_default()
    ));
    let suffix: String = digest
        .iter()
        .take(5)
        .map(|b| char::from(NAME_ALPHABET[usize::from(*b) % NAME_ALPHABET.len()]))
        .collect();
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(format!("{name}-{suffix}")),
            namespace: service.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Service".into(),
                name,
                uid: service.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        address_type: address_type.into(),
        endpoints: Some(endpoints),
        ports: Some(
            ports
                .iter()
                .map(|(name, port, protocol, app_protocol)| EndpointPort {
                    name: Some(name.clone()),
                    port: Some(*port),
                    protocol: Some(protocol.clone()),
                    app_protocol: app_protocol.clone(),
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests;

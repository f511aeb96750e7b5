//! The inputs of `compile`: the node's facts, and checked views of the Kubernetes objects.
//!
//! Reading an object checks every field the proxy uses, the way the API server would have
//! (so a hand-written object in the lab store cannot smuggle text into an nft rule), and
//! reports what is wrong as a [`CompileWarning`] instead of failing.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::Serialize;

use super::state::{IpFamily, Protocol, ServiceName};
use super::warning::CompileWarning;

/// What `compile` needs to know about the node it compiles for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NodeFacts {
    /// The node's name: endpoints whose `nodeName` is this are local.
    pub name: String,
    /// The node's `topology.kubernetes.io/zone` label, for zone hints.
    pub zone: Option<String>,
    /// The addresses that accept NodePort traffic (kube-proxy's `--nodeport-addresses`,
    /// resolved to addresses; its nftables default is the node's primary IPs). Loopback
    /// addresses are ignored: localhost NodePorts are not supported, as in kube-proxy's
    /// nftables mode.
    pub node_ips: Vec<IpAddr>,
    /// The cluster's pod CIDRs (kube-proxy's `--cluster-cidr` local-traffic detector):
    /// sources inside are "in the cluster" and are not masqueraded.
    pub cluster_cidrs: Vec<IpNet>,
    /// The Service CIDRs (kube-proxy's ServiceCIDRs): traffic to an unallocated address
    /// inside them is dropped rather than sent on to nowhere. Empty: no such rule.
    pub service_cidrs: Vec<IpNet>,
}

/// The well-known label naming the Service an EndpointSlice belongs to.
const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// Services with this label belong to another proxy (KEP-2447); kube-proxy skips them.
const LABEL_SERVICE_PROXY_NAME: &str = "service.kubernetes.io/service-proxy-name";
/// EndpointSlices of headless Services carry this label; kube-proxy never watches them.
const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";
/// The API server's default `sessionAffinityConfig.clientIP.timeoutSeconds` (3 hours).
const DEFAULT_AFFINITY_TIMEOUT: u32 = 10800;
/// The API's largest allowed affinity timeout (one day).
const MAX_AFFINITY_TIMEOUT: u32 = 86400;

/// A Service, checked: only what the proxy uses.
#[derive(Debug, Clone)]
pub(crate) struct ServiceView {
    pub(crate) name: ServiceName,
    /// At most one per family, in `spec.clusterIPs` order.
    pub(crate) cluster_ips: Vec<IpAddr>,
    pub(crate) ports: Vec<PortView>,
    pub(crate) external_ips: Vec<IpAddr>,
    pub(crate) load_balancer_ips: Vec<IpAddr>,
    pub(crate) source_ranges: Vec<IpNet>,
    pub(crate) affinity_timeout: Option<u32>,
    pub(crate) internal_local: bool,
    /// `externalTrafficPolicy: Local` on a NodePort or LoadBalancer Service (the API
    /// ignores it on other types, and so does kube-proxy).
    pub(crate) external_local: bool,
    pub(crate) health_check_node_port: Option<u16>,
}

/// A Service port, checked.
#[derive(Debug, Clone)]
pub(crate) struct PortView {
    pub(crate) name: String,
    pub(crate) protocol: Protocol,
    pub(crate) port: u16,
    pub(crate) node_port: Option<u16>,
}

/// An EndpointSlice, checked.
#[derive(Debug, Clone)]
pub(crate) struct SliceView {
    pub(crate) namespace: String,
    pub(crate) service: String,
    pub(crate) family: IpFamily,
    pub(crate) ports: Vec<SlicePort>,
    pub(crate) endpoints: Vec<RawEndpoint>,
}

/// An EndpointSlice port, checked.
#[derive(Debug, Clone)]
pub(crate) struct SlicePort {
    pub(crate) name: String,
    pub(crate) protocol: Protocol,
    pub(crate) port: u16,
}

/// An endpoint of a slice with its conditions and hints, before any policy.
#[derive(Debug, Clone)]
pub(crate) struct RawEndpoint {
    pub(crate) ip: IpAddr,
    pub(crate) is_local: bool,
    pub(crate) node_known: bool,
    pub(crate) ready: bool,
    pub(crate) serving: bool,
    pub(crate) terminating: bool,
    pub(crate) zone_hints: Vec<String>,
    pub(crate) node_hints: Vec<String>,
}

/// Reads a Service; `None` when it is not proxied (headless, ExternalName, another proxy's,
/// or broken: then a warning says why).
pub(crate) fn read_service(
    svc: &Service,
    warnings: &mut Vec<CompileWarning>,
) -> Option<ServiceView> {
    let namespace = svc.metadata.namespace.as_deref().unwrap_or_default();
    let name = svc.metadata.name.as_deref().unwrap_or_default();
    let id = format!("{namespace}/{name}");
    let skip = |warnings: &mut Vec<CompileWarning>, problem: String| {
        warnings.push(CompileWarning::ServiceSkipped {
            service: id.clone(),
            problem,
        });
    };
    // Namespace and name end up in nft chain names: only what the API allows gets there.
    if !is_dns_label(namespace) {
        skip(
            warnings,
            format!("metadata.namespace {namespace:?} is not a DNS label"),
        );
        return None;
    }
    if !is_dns_label(name) {
        skip(
            warnings,
            format!("metadata.name {name:?} is not a DNS label"),
        );
        return None;
    }
    let labels = svc.metadata.labels.as_ref();
    if labels.is_some_and(|l| l.contains_key(LABEL_SERVICE_PROXY_NAME)) {
        return None;
    }
    let Some(spec) = svc.spec.as_ref() else {
        skip(warnings, "no spec".to_owned());
        return None;
    };
    let mut field = |problem: String| {
        warnings.push(CompileWarning::ServiceField {
            service: id.clone(),
            problem,
        });
    };

    let service_type = spec.type_.as_deref().unwrap_or("ClusterIP");
    match service_type {
        "ExternalName" => return None,
        "ClusterIP" | "NodePort" | "LoadBalancer" => {}
        other => field(format!(
            "spec.type {other:?} is not ClusterIP, NodePort, LoadBalancer or ExternalName (treated as ClusterIP)"
        )),
    }
    let exposes_node_ports = matches!(service_type, "NodePort" | "LoadBalancer");

    // spec.clusterIPs holds one address per family (the first is spec.clusterIP); older
    // objects have only spec.clusterIP.
    let raw_ips: Vec<&str> = match spec.cluster_ips.as_deref() {
        Some(ips) if !ips.is_empty() => ips.iter().map(String::as_str).collect(),
        _ => spec.cluster_ip.as_deref().into_iter().collect(),
    };
    let raw_ips: Vec<&str> = raw_ips.into_iter().filter(|ip| !ip.is_empty()).collect();
    if raw_ips.first().is_some_and(|ip| *ip == "None") {
        return None; // headless: DNS only
    }
    let mut cluster_ips: Vec<IpAddr> = Vec::new();
    for raw in &raw_ips {
        match raw.parse::<IpAddr>() {
            Ok(ip)
                if !cluster_ips
                    .iter()
                    .any(|c| IpFamily::of(*c) == IpFamily::of(ip)) =>
            {
                cluster_ips.push(ip);
            }
            Ok(ip) => field(format!(
                "spec.clusterIPs has a second {} address {ip}",
                IpFamily::of(ip)
            )),
            Err(_) => field(format!(
                "spec.clusterIPs entry {raw:?} is not an IP address"
            )),
        }
    }
    if cluster_ips.is_empty() {
        warnings.push(CompileWarning::ServiceSkipped {
            service: id.clone(),
            problem: "no cluster IP allocated (spec.clusterIP is empty)".to_owned(),
        });
        return None;
    }

    let mut ports: Vec<PortView> = Vec::new();
    for (i, p) in spec.ports.iter().flatten().enumerate() {
        let port_name = p.name.clone().unwrap_or_default();
        if !port_name.is_empty() && !is_dns_label(&port_name) {
            field(format!(
                "spec.ports[{i}].name {port_name:?} is not a DNS label"
            ));
            continue;
        }
        let Some(protocol) = Protocol::from_api(p.protocol.as_deref()) else {
            field(format!(
                "spec.ports[{i}].protocol {:?} is not TCP, UDP or SCTP",
                p.protocol.as_deref().unwrap_or_default()
            ));
            continue;
        };
        let Some(port) = port_number(p.port) else {
            field(format!("spec.ports[{i}].port {} is not in 1-65535", p.port));
            continue;
        };
        let node_port = match p.node_port {
            None | Some(0) => None,
            Some(n) if !exposes_node_ports => {
                field(format!(
                    "spec.ports[{i}].nodePort {n} on a {service_type} Service (only NodePort and LoadBalancer have node ports)"
                ));
                None
            }
            Some(n) => match port_number(n) {
                Some(n) => Some(n),
                None => {
                    field(format!("spec.ports[{i}].nodePort {n} is not in 1-65535"));
                    None
                }
            },
        };
        if ports
            .iter()
            .any(|q| q.name == port_name && q.protocol == protocol)
        {
            field(format!(
                "spec.ports[{i}] repeats the name {port_name:?} for {protocol}"
            ));
            continue;
        }
        ports.push(PortView {
            name: port_name,
            protocol,
            port,
            node_port,
        });
    }

    let mut external_ips = Vec::new();
    for raw in spec.external_ips.iter().flatten() {
        match raw.trim().parse::<IpAddr>() {
            Ok(ip) if !external_ips.contains(&ip) => external_ips.push(ip),
            Ok(_) => {}
            Err(_) => field(format!(
                "spec.externalIPs entry {raw:?} is not an IP address"
            )),
        }
    }

    let mut load_balancer_ips = Vec::new();
    let ingress = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    for ing in ingress.into_iter().flatten() {
        let Some(raw) = ing.ip.as_deref().filter(|ip| !ip.is_empty()) else {
            continue; // hostname-only ingress: nothing for the proxy to bind
        };
        // ipMode Proxy: the load balancer proxies to the node itself; only VIP-mode
        // addresses are captured (KEP-1860).
        if ing.ip_mode.as_deref().is_some_and(|m| m != "VIP") {
            continue;
        }
        match raw.parse::<IpAddr>() {
            Ok(ip) if !load_balancer_ips.contains(&ip) => load_balancer_ips.push(ip),
            Ok(_) => {}
            Err(_) => field(format!(
                "status.loadBalancer.ingress ip {raw:?} is not an IP address"
            )),
        }
    }

    let mut source_ranges = Vec::new();
    for raw in spec.load_balancer_source_ranges.iter().flatten() {
        // The API's validation lets whitespace through; kube-proxy trims it.
        match raw.trim().parse::<IpNet>() {
            Ok(net) => {
                let net = net.trunc();
                if !source_ranges.contains(&net) {
                    source_ranges.push(net);
                }
            }
            Err(_) => field(format!(
                "spec.loadBalancerSourceRanges entry {raw:?} is not a CIDR"
            )),
        }
    }

    let affinity_timeout = match spec.session_affinity.as_deref() {
        None | Some("None") => None,
        Some("ClientIP") => {
            let timeout = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds);
            match timeout {
                None => Some(DEFAULT_AFFINITY_TIMEOUT),
                Some(t) => match u32::try_from(t) {
                    Ok(t) if (1..=MAX_AFFINITY_TIMEOUT).contains(&t) => Some(t),
                    _ => {
                        field(format!(
                            "spec.sessionAffinityConfig.clientIP.timeoutSeconds {t} is not in 1-86400 (using {DEFAULT_AFFINITY_TIMEOUT})"
                        ));
                        Some(DEFAULT_AFFINITY_TIMEOUT)
                    }
                },
            }
        }
        Some(other) => {
            field(format!(
                "spec.sessionAffinity {other:?} is not None or ClientIP"
            ));
            None
        }
    };

    let internal_local = match spec.internal_traffic_policy.as_deref() {
        None | Some("Cluster") => false,
        Some("Local") => true,
        Some(other) => {
            field(format!(
                "spec.internalTrafficPolicy {other:?} is not Cluster or Local (using Cluster)"
            ));
            false
        }
    };
    let external_local = match spec.external_traffic_policy.as_deref() {
        None | Some("Cluster") => false,
        Some("Local") => exposes_node_ports,
        Some(other) => {
            field(format!(
                "spec.externalTrafficPolicy {other:?} is not Cluster or Local (using Cluster)"
            ));
            false
        }
    };

    // kube-proxy serves a health check only for Local LoadBalancer Services.
    let health_check_node_port = if service_type == "LoadBalancer" && external_local {
        match spec.health_check_node_port.and_then(port_number) {
            Some(p) => Some(p),
            None => {
                field(format!(
                    "spec.healthCheckNodePort {:?} is not in 1-65535 on a Local LoadBalancer Service (no health check)",
                    spec.health_check_node_port
                ));
                None
            }
        }
    } else {
        None
    };

    Some(ServiceView {
        name: ServiceName::new(namespace, name),
        cluster_ips,
        ports,
        external_ips,
        load_balancer_ips,
        source_ranges,
        affinity_timeout,
        internal_local,
        external_local,
        health_check_node_port,
    })
}

/// Reads an EndpointSlice; `None` when it carries nothing for this proxy (FQDN, headless)
/// or is broken (with a warning).
pub(crate) fn read_slice(
    slice: &EndpointSlice,
    node_name: &str,
    warnings: &mut Vec<CompileWarning>,
) -> Option<SliceView> {
    let namespace = slice.metadata.namespace.as_deref().unwrap_or_default();
    let name = slice.metadata.name.as_deref().unwrap_or_default();
    let id = format!("{namespace}/{name}");
    let skip = |warnings: &mut Vec<CompileWarning>, problem: String| {
        warnings.push(CompileWarning::SliceSkipped {
            slice: id.clone(),
            problem,
        });
    };
    let labels: Option<&BTreeMap<String, String>> = slice.metadata.labels.as_ref();
    if labels.is_some_and(|l| l.contains_key(LABEL_HEADLESS)) {
        return None;
    }
    let family = match slice.address_type.as_str() {
        "IPv4" => IpFamily::V4,
        "IPv6" => IpFamily::V6,
        "FQDN" => return None, // not for proxies
        other => {
            skip(
                warnings,
                format!("addressType {other:?} is not IPv4, IPv6 or FQDN"),
            );
            return None;
        }
    };
    if namespace.is_empty() || name.is_empty() {
        skip(
            warnings,
            "metadata.namespace or metadata.name is empty".to_owned(),
        );
        return None;
    }
    let Some(service) = labels
        .and_then(|l| l.get(LABEL_SERVICE_NAME))
        .filter(|s| !s.is_empty())
    else {
        skip(warnings, format!("no {LABEL_SERVICE_NAME} label"));
        return None;
    };
    let mut field = |problem: String| {
        warnings.push(CompileWarning::SliceField {
            slice: id.clone(),
            problem,
        });
    };

    let mut ports = Vec::new();
    for (i, p) in slice.ports.iter().flatten().enumerate() {
        // kube-proxy ignores unnamed ports: the name is what ties it to a Service port.
        let Some(port_name) = p.name.clone() else {
            field(format!("ports[{i}] has no name"));
            continue;
        };
        let Some(protocol) = Protocol::from_api(p.protocol.as_deref()) else {
            field(format!(
                "ports[{i}].protocol {:?} is not TCP, UDP or SCTP",
                p.protocol.as_deref().unwrap_or_default()
            ));
            continue;
        };
        let Some(port) = p.port.and_then(port_number) else {
            field(format!("ports[{i}].port {:?} is not in 1-65535", p.port));
            continue;
        };
        ports.push(SlicePort {
            name: port_name,
            protocol,
            port,
        });
    }

    let mut endpoints = Vec::new();
    for (i, ep) in slice.endpoints.iter().flatten().enumerate() {
        // Only the first address counts: the API says the others are ignored by consumers.
        let Some(raw) = ep.addresses.first() else {
            field(format!("endpoints[{i}] has no addresses"));
            continue;
        };
        let ip = match raw.parse::<IpAddr>() {
            Ok(ip) if IpFamily::of(ip) == family => ip,
            Ok(ip) => {
                field(format!(
                    "endpoints[{i}] address {ip} is not {family} (addressType {})",
                    slice.address_type
                ));
                continue;
            }
            Err(_) => {
                field(format!(
                    "endpoints[{i}] address {raw:?} is not an IP address"
                ));
                continue;
            }
        };
        let conditions = ep.conditions.as_ref();
        let hints = ep.hints.as_ref();
        endpoints.push(RawEndpoint {
            ip,
            is_local: !node_name.is_empty() && ep.node_name.as_deref() == Some(node_name),
            node_known: ep.node_name.as_deref().is_some_and(|n| !n.is_empty()),
            // Unset conditions mean ready and serving, and not terminating (API docs).
            ready: conditions.and_then(|c| c.ready).unwrap_or(true),
            serving: conditions.and_then(|c| c.serving).unwrap_or(true),
            terminating: conditions.and_then(|c| c.terminating).unwrap_or(false),
            zone_hints: hints
                .and_then(|h| h.for_zones.as_ref())
                .map(|z| z.iter().map(|z| z.name.clone()).collect())
                .unwrap_or_default(),
            node_hints: hints
                .and_then(|h| h.for_nodes.as_ref())
                .map(|n| n.iter().map(|n| n.name.clone()).collect())
                .unwrap_or_default(),
        });
    }

    Some(SliceView {
        namespace: namespace.to_owned(),
        service: service.clone(),
        family,
        ports,
        endpoints,
    })
}

/// The node facts the rules use: loopback NodePort addresses dropped (with a warning),
/// everything sorted and deduplicated, CIDR host bits cleared.
pub(crate) fn read_node(node: &NodeFacts, warnings: &mut Vec<CompileWarning>) -> NodeFactsView {
    let mut nodeport_ips = Vec::new();
    let mut seen = HashSet::new();
    for ip in &node.node_ips {
        if ip.is_loopback() || ip.is_unspecified() {
            warnings.push(CompileWarning::Node {
                node: node.name.clone(),
                problem: format!(
                    "NodePort address {ip} is loopback or unspecified (localhost NodePorts are not supported)"
                ),
            });
            continue;
        }
        if seen.insert(*ip) {
            nodeport_ips.push(*ip);
        }
    }
    nodeport_ips.sort_unstable();
    NodeFactsView {
        nodeport_ips,
        cluster_cidrs: clean_cidrs(&node.cluster_cidrs),
        service_cidrs: clean_cidrs(&node.service_cidrs),
    }
}

/// [`read_node`]'s result (the same fields as the state's `NodeView`).
pub(crate) type NodeFactsView = super::state::NodeView;

fn clean_cidrs(cidrs: &[IpNet]) -> Vec<IpNet> {
    let mut out: Vec<IpNet> = cidrs.iter().map(IpNet::trunc).collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// A port number from the API's `int32`, if it is one (1-65535).
fn port_number(value: i32) -> Option<u16> {
    u16::try_from(value).ok().filter(|p| *p != 0)
}

/// An RFC 1123 label: what the API allows for namespaces, Service and port names, and what
/// nft allows in a chain name.
pub(crate) fn is_dns_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(|b| *b != b'-')
        && bytes.last().is_some_and(|b| *b != b'-')
}

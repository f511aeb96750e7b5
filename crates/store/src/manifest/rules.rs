//! What the API server would refuse in one object, checked before it reaches the lab. Not all of
//! Kubernetes' validation: the fields the lab and the networking code rely on — names, container
//! lists, selectors, ports, IPs and CIDRs.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Node, PodSpec, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{
    IPBlock, IngressBackend, IngressSpec, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::names::{self, DNS1035_LABEL, DNS1123_LABEL, DNS1123_SUBDOMAIN, IANA_SVC_NAME};
use super::{DocRef, ManifestError};
use crate::labels::{format_labels, format_selector, selector_is_empty, selector_matches};
use crate::object::{Kind, Object};

const PORT_RANGE: &str = "a port number from 1 to 65535";
const PROTOCOLS: &[&str] = &["TCP", "UDP", "SCTP"];
const PROTOCOL: &str = "TCP, UDP or SCTP";

/// One thing wrong with an object; the caller adds which document it is.
#[derive(Debug)]
pub(super) enum Problem {
    Missing {
        field: String,
        expected: String,
    },
    Invalid {
        field: String,
        value: String,
        expected: String,
    },
}

impl Problem {
    pub(super) fn into_error(self, doc: Box<DocRef>) -> ManifestError {
        match self {
            Problem::Missing { field, expected } => ManifestError::Missing {
                doc,
                field,
                expected,
            },
            Problem::Invalid {
                field,
                value,
                expected,
            } => ManifestError::Invalid {
                doc,
                field,
                value,
                expected,
            },
        }
    }
}

type Checked = Result<(), Problem>;

fn missing(field: impl Into<String>, expected: impl Into<String>) -> Problem {
    Problem::Missing {
        field: field.into(),
        expected: expected.into(),
    }
}

/// A string value, quoted in the message.
fn invalid(field: impl Into<String>, value: &str, expected: impl Into<String>) -> Problem {
    Problem::Invalid {
        field: field.into(),
        value: format!("{value:?}"),
        expected: expected.into(),
    }
}

/// A number, bare in the message.
fn invalid_number(field: impl Into<String>, value: i64, expected: impl Into<String>) -> Problem {
    Problem::Invalid {
        field: field.into(),
        value: value.to_string(),
        expected: expected.into(),
    }
}

/// `prefix["key"]`: map keys hold dots and slashes, so they are quoted in paths.
fn keyed(prefix: &str, key: &str) -> String {
    format!("{prefix}[{key:?}]")
}

/// Checks one decoded object.
pub(super) fn check(obj: &Object) -> Checked {
    check_metadata(obj.kind(), obj.metadata())?;
    match obj {
        Object::Namespace(_) => Ok(()),
        Object::Node(node) => check_node(node),
        Object::Pod(pod) => check_pod_spec(pod.spec.as_ref(), "spec"),
        Object::Deployment(d) => check_deployment(d),
        Object::Service(service) => check_service(service),
        Object::EndpointSlice(slice) => check_endpoint_slice(slice),
        Object::NetworkPolicy(policy) => check_network_policy(policy),
        Object::Ingress(ingress) => match &ingress.spec {
            Some(spec) => check_ingress(spec),
            None => Ok(()),
        },
        Object::ConfigMap(cm) => check_config_map(cm),
        // Its semantics are checked where it is compiled (bad rules fail closed, with a
        // warning naming the field).
        Object::ClusterNetworkPolicy(_) => Ok(()),
    }
}

fn check_metadata(kind: Kind, meta: &ObjectMeta) -> Checked {
    let name = meta.name.as_deref().unwrap_or("");
    if name.is_empty() {
        return Err(missing("metadata.name", format!("a name for the {kind}")));
    }
    let (valid, expected) = match kind {
        Kind::Namespace => (names::is_dns1123_label(name), DNS1123_LABEL),
        Kind::Service => (names::is_dns1035_label(name), DNS1035_LABEL),
        _ => (names::is_dns1123_subdomain(name), DNS1123_SUBDOMAIN),
    };
    if !valid {
        return Err(invalid("metadata.name", name, expected));
    }
    if let Some(namespace) = meta.namespace.as_deref().filter(|ns| !ns.is_empty())
        && !names::is_dns1123_label(namespace)
    {
        return Err(invalid("metadata.namespace", namespace, DNS1123_LABEL));
    }
    check_labels(meta.labels.as_ref(), "metadata.labels")?;
    for key in meta.annotations.iter().flatten().map(|(k, _)| k) {
        if !names::is_qualified_name(key) {
            return Err(invalid("metadata.annotations", key, names::QUALIFIED_NAME));
        }
    }
    Ok(())
}

fn check_labels(labels: Option<&BTreeMap<String, String>>, field: &str) -> Checked {
    for (key, value) in labels.iter().copied().flatten() {
        if !names::is_qualified_name(key) {
            return Err(invalid(field, key, names::QUALIFIED_NAME));
        }
        if !names::is_label_value(value) {
            return Err(invalid(keyed(field, key), value, names::LABEL_VALUE));
        }
    }
    Ok(())
}

fn check_selector(selector: &LabelSelector, field: &str) -> Checked {
    check_labels(
        selector.match_labels.as_ref(),
        &format!("{field}.matchLabels"),
    )?;
    for (i, req) in selector.match_expressions.iter().flatten().enumerate() {
        let at = format!("{field}.matchExpressions[{i}]");
        let has_values = req.values.as_ref().is_some_and(|v| !v.is_empty());
        match req.operator.as_str() {
            "In" | "NotIn" if !has_values => {
                return Err(missing(
                    format!("{at}.values"),
                    format!("at least one value for operator {}", req.operator),
                ));
            }
            "Exists" | "DoesNotExist" if has_values => {
                return Err(Problem::Invalid {
                    field: format!("{at}.values"),
                    value: format!("{:?}", req.values.as_deref().unwrap_or_default()),
                    expected: format!("no values for operator {}", req.operator),
                });
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => {
                return Err(invalid(
                    format!("{at}.operator"),
                    other,
                    "In, NotIn, Exists or DoesNotExist",
                ));
            }
        }
        if !names::is_qualified_name(&req.key) {
            return Err(invalid(
                format!("{at}.key"),
                &req.key,
                names::QUALIFIED_NAME,
            ));
        }
    }
    Ok(())
}

fn check_port_number(field: impl Into<String>, port: i32) -> Checked {
    if (1..=65535).contains(&port) {
        Ok(())
    } else {
        Err(invalid_number(field, port.into(), PORT_RANGE))
    }
}

fn check_protocol(field: impl Into<String>, protocol: Option<&str>) -> Checked {
    match protocol {
        Some(p) if !PROTOCOLS.contains(&p) => Err(invalid(field, p, PROTOCOL)),
        _ => Ok(()),
    }
}

/// A port given as a number or as the name of a container port.
fn check_port_or_name(field: &str, port: &IntOrString) -> Checked {
    match port {
        IntOrString::Int(n) => check_port_number(field, *n),
        IntOrString::String(name) if names::is_iana_svc_name(name) => Ok(()),
        IntOrString::String(name) => Err(invalid(
            field,
            name,
            format!("{PORT_RANGE}, or {IANA_SVC_NAME}"),
        )),
    }
}

/// A pod's spec, at `prefix` (`spec`, or `spec.template.spec` in a Deployment).
fn check_pod_spec(spec: Option<&PodSpec>, prefix: &str) -> Checked {
    let Some(spec) = spec else {
        return Err(missing(prefix, "a pod spec with at least one container"));
    };
    if spec.containers.is_empty() {
        return Err(missing(
            format!("{prefix}.containers"),
            "at least one container, each with a name and an image",
        ));
    }
    let mut seen: BTreeMap<&str, String> = BTreeMap::new();
    let lists = [
        (
            "initContainers",
            spec.init_containers.as_deref().unwrap_or_default(),
        ),
        ("containers", spec.containers.as_slice()),
    ];
    for (list, containers) in lists {
        for (i, c) in containers.iter().enumerate() {
            let at = format!("{prefix}.{list}[{i}]");
            if c.name.is_empty() {
                return Err(missing(
                    format!("{at}.name"),
                    format!("a container name, {DNS1123_LABEL}"),
                ));
            }
            if !names::is_dns1123_label(&c.name) {
                return Err(invalid(format!("{at}.name"), &c.name, DNS1123_LABEL));
            }
            if let Some(first) = seen.get(c.name.as_str()) {
                return Err(invalid(
                    format!("{at}.name"),
                    &c.name,
                    format!("a name no other container of the pod has ({first} has it)"),
                ));
            }
            seen.insert(&c.name, at.clone());
            if c.image.as_deref().is_none_or(str::is_empty) {
                return Err(missing(
                    format!("{at}.image"),
                    "the container's image, e.g. registry.k8s.io/e2e-test-images/agnhost:2.53",
                ));
            }
            for (j, port) in c.ports.iter().flatten().enumerate() {
                let at = format!("{at}.ports[{j}]");
                check_port_number(format!("{at}.containerPort"), port.container_port)?;
                if let Some(host_port) = port.host_port
                    && !(0..=65535).contains(&host_port)
                {
                    return Err(invalid_number(
                        format!("{at}.hostPort"),
                        host_port.into(),
                        "a port number from 1 to 65535, or 0 for none",
                    ));
                }
                check_protocol(format!("{at}.protocol"), port.protocol.as_deref())?;
                if let Some(name) = port.name.as_deref()
                    && !names::is_iana_svc_name(name)
                {
                    return Err(invalid(format!("{at}.name"), name, IANA_SVC_NAME));
                }
            }
        }
    }
    if let Some(policy) = spec.restart_policy.as_deref()
        && !["Always", "OnFailure", "Never"].contains(&policy)
    {
        return Err(invalid(
            format!("{prefix}.restartPolicy"),
            policy,
            "Always, OnFailure or Never",
        ));
    }
    if let Some(node) = spec.node_name.as_deref().filter(|n| !n.is_empty())
        && !names::is_dns1123_subdomain(node)
    {
        return Err(invalid(
            format!("{prefix}.nodeName"),
            node,
            DNS1123_SUBDOMAIN,
        ));
    }
    Ok(())
}

fn check_deployment(d: &Deployment) -> Checked {
    let spec = &d.spec;
    if let Some(replicas) = spec.replicas
        && replicas < 0
    {
        return Err(invalid_number(
            "spec.replicas",
            replicas.into(),
            "0 or more",
        ));
    }
    if selector_is_empty(&spec.selector) {
        return Err(missing(
            "spec.selector",
            "a label selector matching spec.template.metadata.labels (apps/v1 requires one)",
        ));
    }
    check_selector(&spec.selector, "spec.selector")?;
    let template = &spec.template;
    if template.metadata.is_none() && template.spec.is_none() {
        return Err(missing(
            "spec.template",
            "a pod template: metadata.labels and a spec with containers",
        ));
    }
    let labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    check_labels(Some(&labels), "spec.template.metadata.labels")?;
    if !selector_matches(&spec.selector, &labels) {
        let have = if labels.is_empty() {
            "which has none".to_owned()
        } else {
            format_labels(&labels)
        };
        return Err(invalid(
            "spec.selector",
            &format_selector(&spec.selector),
            format!("a selector that matches spec.template.metadata.labels ({have})"),
        ));
    }
    check_pod_spec(template.spec.as_ref(), "spec.template.spec")?;
    if let Some(policy) = template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        && policy != "Always"
    {
        return Err(invalid(
            "spec.template.spec.restartPolicy",
            policy,
            "Always: a Deployment's pods are always restarted",
        ));
    }
    Ok(())
}

/// A Service's cluster IP: an address, `None` (headless), or empty (allocate one).
fn check_cluster_ip(field: &str, ip: &str) -> Checked {
    if ip.is_empty() || ip == "None" || ip.parse::<IpAddr>().is_ok() {
        Ok(())
    } else {
        Err(invalid(
            field,
            ip,
            "an IP address, \"None\" for a headless Service, or empty to have one allocated",
        ))
    }
}

fn check_service(service: &Service) -> Checked {
    let Some(spec) = &service.spec else {
        return Ok(());
    };
    let service_type = spec.type_.as_deref().unwrap_or("ClusterIP");
    if !["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"].contains(&service_type) {
        return Err(invalid(
            "spec.type",
            service_type,
            "ClusterIP, NodePort, LoadBalancer or ExternalName",
        ));
    }
    if service_type == "ExternalName" && spec.external_name.as_deref().is_none_or(str::is_empty) {
        return Err(missing(
            "spec.externalName",
            "the DNS name an ExternalName Service points at",
        ));
    }
    let cluster_ip = spec.cluster_ip.as_deref().unwrap_or("");
    check_cluster_ip("spec.clusterIP", cluster_ip)?;
    let cluster_ips = spec.cluster_ips.as_deref().unwrap_or_default();
    for (i, ip) in cluster_ips.iter().enumerate() {
        check_cluster_ip(&format!("spec.clusterIPs[{i}]"), ip)?;
    }
    if let Some(first) = cluster_ips.first()
        && !cluster_ip.is_empty()
        && first != cluster_ip
    {
        return Err(invalid(
            "spec.clusterIPs[0]",
            first,
            format!("the same address as spec.clusterIP ({cluster_ip})"),
        ));
    }
    for (i, ip) in spec.external_ips.iter().flatten().enumerate() {
        if ip.parse::<IpAddr>().is_err() {
            return Err(invalid(
                format!("spec.externalIPs[{i}]"),
                ip,
                "an IP address",
            ));
        }
    }
    let ports = spec.ports.as_deref().unwrap_or_default();
    let mut names_seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, port) in ports.iter().enumerate() {
        let at = format!("spec.ports[{i}]");
        check_port_number(format!("{at}.port"), port.port)?;
        if let Some(target) = &port.target_port {
            check_port_or_name(&format!("{at}.targetPort"), target)?;
        }
        if let Some(node_port) = port.node_port.filter(|&p| p != 0) {
            check_port_number(format!("{at}.nodePort"), node_port)?;
            if !["NodePort", "LoadBalancer"].contains(&service_type) {
                return Err(invalid_number(
                    format!("{at}.nodePort"),
                    node_port.into(),
                    format!(
                        "no nodePort: a {service_type} Service has none (type NodePort or LoadBalancer do)"
                    ),
                ));
            }
        }
        check_protocol(format!("{at}.protocol"), port.protocol.as_deref())?;
        match port.name.as_deref().filter(|n| !n.is_empty()) {
            None if ports.len() > 1 => {
                return Err(missing(
                    format!("{at}.name"),
                    "a name: a Service with several ports must name each one",
                ));
            }
            None => {}
            Some(name) if !names::is_dns1123_label(name) => {
                return Err(invalid(format!("{at}.name"), name, DNS1123_LABEL));
            }
            Some(name) => {
                if let Some(first) = names_seen.insert(name, i) {
                    return Err(invalid(
                        format!("{at}.name"),
                        name,
                        format!("a name no other port has (spec.ports[{first}] has it)"),
                    ));
                }
            }
        }
    }
    Ok(())
}

fn parse_cidr(field: &str, cidr: &str) -> Result<IpNet, Problem> {
    cidr.parse::<IpNet>().map_err(|_| {
        invalid(
            field,
            cidr,
            "a CIDR: an IP address and a prefix length, e.g. 10.244.1.0/24 or fd00:10:244:1::/64",
        )
    })
}

fn check_node(node: &Node) -> Checked {
    let Some(spec) = &node.spec else {
        return Ok(());
    };
    let pod_cidr = spec.pod_cidr.as_deref().filter(|c| !c.is_empty());
    if let Some(cidr) = pod_cidr {
        parse_cidr("spec.podCIDR", cidr)?;
    }
    let cidrs = spec.pod_cidrs.as_deref().unwrap_or_default();
    let mut parsed = Vec::new();
    for (i, cidr) in cidrs.iter().enumerate() {
        parsed.push(parse_cidr(&format!("spec.podCIDRs[{i}]"), cidr)?);
    }
    if cidrs.len() > 2 {
        return Err(Problem::Invalid {
            field: "spec.podCIDRs".to_owned(),
            value: format!("{cidrs:?}"),
            expected: "at most two CIDRs, one IPv4 and one IPv6".to_owned(),
        });
    }
    if let [a, b] = parsed.as_slice()
        && a.addr().is_ipv4() == b.addr().is_ipv4()
    {
        return Err(invalid(
            "spec.podCIDRs[1]",
            &cidrs[1],
            format!(
                "a CIDR of the other IP family than spec.podCIDRs[0] ({})",
                cidrs[0]
            ),
        ));
    }
    if let (Some(cidr), Some(first)) = (pod_cidr, cidrs.first())
        && first != cidr
    {
        return Err(invalid(
            "spec.podCIDRs[0]",
            first,
            format!("the same CIDR as spec.podCIDR ({cidr})"),
        ));
    }
    Ok(())
}

fn check_network_policy(policy: &NetworkPolicy) -> Checked {
    let Some(spec) = &policy.spec else {
        return Ok(());
    };
    if let Some(selector) = &spec.pod_selector {
        check_selector(selector, "spec.podSelector")?;
    }
    for (i, policy_type) in spec.policy_types.iter().flatten().enumerate() {
        if policy_type != "Ingress" && policy_type != "Egress" {
            return Err(invalid(
                format!("spec.policyTypes[{i}]"),
                policy_type,
                "Ingress or Egress",
            ));
        }
    }
    for (i, rule) in spec.ingress.iter().flatten().enumerate() {
        for (j, peer) in rule.from.iter().flatten().enumerate() {
            check_peer(peer, &format!("spec.ingress[{i}].from[{j}]"))?;
        }
        for (j, port) in rule.ports.iter().flatten().enumerate() {
            check_policy_port(port, &format!("spec.ingress[{i}].ports[{j}]"))?;
        }
    }
    for (i, rule) in spec.egress.iter().flatten().enumerate() {
        for (j, peer) in rule.to.iter().flatten().enumerate() {
            check_peer(peer, &format!("spec.egress[{i}].to[{j}]"))?;
        }
        for (j, port) in rule.ports.iter().flatten().enumerate() {
            check_policy_port(port, &format!("spec.egress[{i}].ports[{j}]"))?;
        }
    }
    Ok(())
}

fn check_peer(peer: &NetworkPolicyPeer, at: &str) -> Checked {
    let selectors = peer.pod_selector.is_some() || peer.namespace_selector.is_some();
    match &peer.ip_block {
        None if !selectors => Err(missing(
            at,
            "one of podSelector, namespaceSelector (or both) or ipBlock",
        )),
        None => {
            if let Some(selector) = &peer.pod_selector {
                check_selector(selector, &format!("{at}.podSelector"))?;
            }
            if let Some(selector) = &peer.namespace_selector {
                check_selector(selector, &format!("{at}.namespaceSelector"))?;
            }
            Ok(())
        }
        Some(block) if selectors => Err(invalid(
            format!("{at}.ipBlock"),
            &block.cidr,
            "an ipBlock alone: it may not be combined with podSelector or namespaceSelector",
        )),
        Some(block) => check_ip_block(block, &format!("{at}.ipBlock")),
    }
}

fn check_ip_block(block: &IPBlock, at: &str) -> Checked {
    let cidr = parse_cidr(&format!("{at}.cidr"), &block.cidr)?;
    for (k, except) in block.except.iter().flatten().enumerate() {
        let field = format!("{at}.except[{k}]");
        let inner = parse_cidr(&field, except)?;
        // As the API server: the except block's network address inside cidr, and a longer prefix.
        let strict_subset = cidr.trunc().contains(&inner.network())
            && inner.prefix_len() > cidr.prefix_len()
            && inner.addr().is_ipv4() == cidr.addr().is_ipv4();
        if !strict_subset {
            return Err(invalid(
                field,
                except,
                format!("a CIDR strictly inside {at}.cidr ({})", block.cidr),
            ));
        }
    }
    Ok(())
}

fn check_policy_port(port: &NetworkPolicyPort, at: &str) -> Checked {
    check_protocol(format!("{at}.protocol"), port.protocol.as_deref())?;
    if let Some(p) = &port.port {
        check_port_or_name(&format!("{at}.port"), p)?;
    }
    let Some(end) = port.end_port else {
        return Ok(());
    };
    let field = format!("{at}.endPort");
    match &port.port {
        Some(IntOrString::Int(start)) => {
            check_port_number(field.as_str(), end)?;
            if end < *start {
                return Err(invalid_number(
                    field,
                    end.into(),
                    format!("a port at or above port ({start})"),
                ));
            }
            Ok(())
        }
        _ => Err(invalid_number(
            field,
            end.into(),
            "no endPort unless port is a number: a range needs a numeric start",
        )),
    }
}

fn check_endpoint_slice(slice: &EndpointSlice) -> Checked {
    let address_type = slice.address_type.as_str();
    let (valid, expected): (fn(&str) -> bool, &str) = match address_type {
        "IPv4" => (
            |a| a.parse::<Ipv4Addr>().is_ok(),
            "an IPv4 address (addressType is IPv4)",
        ),
        "IPv6" => (
            |a| a.parse::<Ipv6Addr>().is_ok(),
            "an IPv6 address (addressType is IPv6)",
        ),
        "FQDN" => (
            names::is_dns1123_subdomain,
            "a DNS name (addressType is FQDN)",
        ),
        other => return Err(invalid("addressType", other, "IPv4, IPv6 or FQDN")),
    };
    for (i, endpoint) in slice.endpoints.iter().flatten().enumerate() {
        if endpoint.addresses.is_empty() {
            return Err(missing(
                format!("endpoints[{i}].addresses"),
                "at least one address",
            ));
        }
        for (j, address) in endpoint.addresses.iter().enumerate() {
            if !valid(address) {
                return Err(invalid(
                    format!("endpoints[{i}].addresses[{j}]"),
                    address,
                    expected,
                ));
            }
        }
    }
    for (i, port) in slice.ports.iter().flatten().enumerate() {
        if let Some(number) = port.port {
            check_port_number(format!("ports[{i}].port"), number)?;
        }
        check_protocol(format!("ports[{i}].protocol"), port.protocol.as_deref())?;
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty())
            && !names::is_dns1123_label(name)
        {
            return Err(invalid(format!("ports[{i}].name"), name, DNS1123_LABEL));
        }
    }
    Ok(())
}

fn check_ingress(spec: &IngressSpec) -> Checked {
    if let Some(backend) = &spec.default_backend {
        check_backend(backend, "spec.defaultBackend")?;
    }
    for (i, rule) in spec.rules.iter().flatten().enumerate() {
        if let Some(host) = rule.host.as_deref().filter(|h| !h.is_empty()) {
            let name = host.strip_prefix("*.").unwrap_or(host);
            if host.parse::<IpAddr>().is_ok() || !names::is_dns1123_subdomain(name) {
                return Err(invalid(
                    format!("spec.rules[{i}].host"),
                    host,
                    format!(
                        "a DNS name, not an IP address, optionally starting with \"*.\": {DNS1123_SUBDOMAIN}"
                    ),
                ));
            }
        }
        let paths = rule
            .http
            .as_ref()
            .map(|h| h.paths.as_slice())
            .unwrap_or_default();
        for (j, path) in paths.iter().enumerate() {
            let at = format!("spec.rules[{i}].http.paths[{j}]");
            let path_type = path.path_type.as_str();
            if !["Exact", "Prefix", "ImplementationSpecific"].contains(&path_type) {
                return Err(invalid(
                    format!("{at}.pathType"),
                    path_type,
                    "Exact, Prefix or ImplementationSpecific",
                ));
            }
            if let Some(p) = path.path.as_deref()
                && path_type != "ImplementationSpecific"
                && !p.starts_with('/')
            {
                return Err(invalid(
                    format!("{at}.path"),
                    p,
                    "an absolute path, starting with '/'",
                ));
            }
            check_backend(&path.backend, &format!("{at}.backend"))?;
        }
    }
    Ok(())
}

fn check_backend(backend: &IngressBackend, at: &str) -> Checked {
    let Some(service) = &backend.service else {
        if backend.resource.is_some() {
            return Ok(());
        }
        return Err(missing(
            format!("{at}.service"),
            "a service backend (name and port) or a resource backend",
        ));
    };
    if !names::is_dns1035_label(&service.name) {
        return Err(invalid(
            format!("{at}.service.name"),
            &service.name,
            DNS1035_LABEL,
        ));
    }
    let field = format!("{at}.service.port");
    match &service.port {
        None => Err(missing(field, "the Service port, as number or name")),
        Some(port) => match (port.number, port.name.as_deref().filter(|n| !n.is_empty())) {
            (Some(n), None) => check_port_number(format!("{field}.number"), n),
            (None, Some(name)) if names::is_iana_svc_name(name) => Ok(()),
            (None, Some(name)) => Err(invalid(format!("{field}.name"), name, IANA_SVC_NAME)),
            (Some(n), Some(_)) => Err(invalid_number(
                format!("{field}.number"),
                n.into(),
                "either a number or a name, not both",
            )),
            (None, None) => Err(missing(field, "the Service port, as number or name")),
        },
    }
}

fn check_config_map(cm: &ConfigMap) -> Checked {
    let data = cm.data.iter().flatten().map(|(k, _)| ("data", k));
    let binary = cm
        .binary_data
        .iter()
        .flatten()
        .map(|(k, _)| ("binaryData", k));
    for (field, key) in data.chain(binary) {
        if !names::is_config_key(key) {
            return Err(invalid(field, key, names::CONFIG_KEY));
        }
    }
    if let (Some(data), Some(binary)) = (&cm.data, &cm.binary_data)
        && let Some(key) = binary.keys().find(|k| data.contains_key(*k))
    {
        return Err(invalid("binaryData", key, "a key not also in data"));
    }
    Ok(())
}

//! Reading `networking.k8s.io/v1` NetworkPolicies into checked rules, with the API's
//! defaulting applied (k8s.io/api `networking/v1/types.go`):
//!
//! - `policyTypes` unset: `Ingress`, plus `Egress` when the policy has an `egress` section;
//! - `from`/`to` missing or empty: any peer; `ports` missing or empty: any traffic;
//! - a port entry's `protocol` unset: TCP, so an empty entry `{}` is every TCP port;
//! - a peer with `podSelector` alone: pods of the policy's namespace; `namespaceSelector`
//!   alone: every pod of the selected namespaces; both: AND.
//!
//! A broken peer or port drops its rule (the policy still isolates: fail closed); a broken
//! `podSelector` or `policyTypes` drops the policy.

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::selector;
use super::spec::{NamespaceScope, PeerSpec, PortSpec, RuleSpec};
use super::state::PolicyWarning;
use crate::service::Protocol;

/// A NetworkPolicy, checked.
#[derive(Debug, Clone)]
pub(crate) struct NpView {
    pub(crate) namespace: String,
    pub(crate) pod_selector: LabelSelector,
    /// `None`: the policy does not have the `Ingress` type.
    pub(crate) ingress: Option<Vec<RuleSpec>>,
    /// `None`: the policy does not have the `Egress` type.
    pub(crate) egress: Option<Vec<RuleSpec>>,
}

/// Reads a NetworkPolicy; `None` (with a warning) when it cannot be used at all.
pub(crate) fn read_network_policy(
    policy: &NetworkPolicy,
    warnings: &mut Vec<PolicyWarning>,
) -> Option<NpView> {
    let namespace = policy.metadata.namespace.clone().unwrap_or_default();
    let id = format!(
        "{namespace}/{}",
        policy.metadata.name.as_deref().unwrap_or_default()
    );
    let skip = |warnings: &mut Vec<PolicyWarning>, problem: String| {
        warnings.push(PolicyWarning::Skipped {
            kind: "NetworkPolicy",
            object: id.clone(),
            problem,
        });
    };
    let Some(spec) = policy.spec.as_ref() else {
        skip(warnings, "no spec".to_owned());
        return None;
    };
    let pod_selector = spec.pod_selector.clone().unwrap_or_default();
    if let Err(problem) = selector::check(&pod_selector, "spec.podSelector") {
        skip(warnings, problem);
        return None;
    }
    let (mut has_ingress, mut has_egress) = (true, spec.egress.is_some());
    if let Some(types) = spec.policy_types.as_ref().filter(|t| !t.is_empty()) {
        (has_ingress, has_egress) = (false, false);
        for (i, t) in types.iter().enumerate() {
            match t.as_str() {
                "Ingress" => has_ingress = true,
                "Egress" => has_egress = true,
                other => {
                    skip(
                        warnings,
                        format!("spec.policyTypes[{i}] {other:?} is not Ingress or Egress"),
                    );
                    return None;
                }
            }
        }
    }
    let mut rules =
        |direction: &str, peer_field: &str, list: Vec<(Option<&Vec<_>>, Option<&Vec<_>>)>| {
            let mut out = Vec::new();
            for (i, (peers, ports)) in list.into_iter().enumerate() {
                let at = format!("spec.{direction}[{i}]");
                match read_rule(&namespace, peers, ports, &at, peer_field) {
                    Ok(rule) => out.push(rule),
                    Err(problem) => warnings.push(PolicyWarning::Field {
                        kind: "NetworkPolicy",
                        object: id.clone(),
                        problem: format!("{problem}; the rule is dropped"),
                    }),
                }
            }
            out
        };
    let ingress = has_ingress.then(|| {
        let list = spec.ingress.iter().flatten();
        rules(
            "ingress",
            "from",
            list.map(|r| (r.from.as_ref(), r.ports.as_ref())).collect(),
        )
    });
    let egress = has_egress.then(|| {
        let list = spec.egress.iter().flatten();
        rules(
            "egress",
            "to",
            list.map(|r| (r.to.as_ref(), r.ports.as_ref())).collect(),
        )
    });
    Some(NpView {
        namespace,
        pod_selector,
        ingress,
        egress,
    })
}

fn read_rule(
    namespace: &str,
    peers: Option<&Vec<NetworkPolicyPeer>>,
    ports: Option<&Vec<NetworkPolicyPort>>,
    at: &str,
    peer_field: &str,
) -> Result<RuleSpec, String> {
    let peers = match peers.filter(|p| !p.is_empty()) {
        None => None,
        Some(list) => Some(
            list.iter()
                .enumerate()
                .map(|(j, p)| read_peer(namespace, p, &format!("{at}.{peer_field}[{j}]")))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let ports = match ports.filter(|p| !p.is_empty()) {
        None => None,
        Some(list) => Some(
            list.iter()
                .enumerate()
                .map(|(j, p)| read_port(p, &format!("{at}.ports[{j}]")))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    Ok(RuleSpec { peers, ports })
}

fn read_peer(namespace: &str, peer: &NetworkPolicyPeer, at: &str) -> Result<PeerSpec, String> {
    if let Some(block) = &peer.ip_block {
        if peer.pod_selector.is_some() || peer.namespace_selector.is_some() {
            return Err(format!(
                "{at}.ipBlock may not be combined with podSelector or namespaceSelector"
            ));
        }
        let cidr = parse_cidr(&block.cidr, &format!("{at}.ipBlock.cidr"))?;
        let except = block
            .except
            .iter()
            .flatten()
            .enumerate()
            .map(|(k, e)| parse_cidr(e, &format!("{at}.ipBlock.except[{k}]")))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(PeerSpec::Block { cidr, except });
    }
    if let Some(sel) = &peer.pod_selector {
        selector::check(sel, &format!("{at}.podSelector"))?;
    }
    let namespaces = match &peer.namespace_selector {
        Some(sel) => {
            selector::check(sel, &format!("{at}.namespaceSelector"))?;
            NamespaceScope::Selector(sel.clone())
        }
        None if peer.pod_selector.is_some() => NamespaceScope::Named(namespace.to_owned()),
        None => {
            return Err(format!(
                "{at} has none of podSelector, namespaceSelector, ipBlock"
            ));
        }
    };
    Ok(PeerSpec::Pods {
        namespaces,
        pods: peer.pod_selector.clone(),
    })
}

fn read_port(port: &NetworkPolicyPort, at: &str) -> Result<PortSpec, String> {
    let protocol = Protocol::from_api(port.protocol.as_deref()).ok_or_else(|| {
        format!(
            "{at}.protocol {:?} is not TCP, UDP or SCTP",
            port.protocol.as_deref().unwrap_or_default()
        )
    })?;
    match (&port.port, port.end_port) {
        (None, None) => Ok(PortSpec::Numbers {
            protocol,
            range: None,
        }),
        (Some(IntOrString::Int(start)), end) => {
            let first = port_number(*start, &format!("{at}.port"))?;
            let last = match end {
                Some(end) => port_number(end, &format!("{at}.endPort"))?,
                None => first,
            };
            if last < first {
                return Err(format!("{at}.endPort {last} is below port {first}"));
            }
            Ok(PortSpec::Numbers {
                protocol,
                range: Some((first, last)),
            })
        }
        (Some(IntOrString::String(name)), None) => Ok(PortSpec::Named {
            name: name.clone(),
            protocol: Some(protocol),
        }),
        (_, Some(end)) => Err(format!(
            "{at}.endPort {end} needs a numeric port to start the range"
        )),
    }
}

fn port_number(n: i32, field: &str) -> Result<u16, String> {
    u16::try_from(n)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{field} {n} is not in 1-65535"))
}

/// Parses a CIDR, naming the field when it is not one.
pub(crate) fn parse_cidr(raw: &str, field: &str) -> Result<IpNet, String> {
    raw.parse::<IpNet>()
        .map_err(|_| format!("{field} {raw:?} is not a CIDR"))
}

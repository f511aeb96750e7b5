//! Reading ClusterNetworkPolicies into checked rules.
//!
//! Upstream (kubernetes-sigs/network-policy-api `apis/v1alpha2`) says a peer with no field
//! set comes from an API version this code does not know, and must fail closed: an `Accept`
//! rule then matches nothing, a `Deny` or `Pass` rule becomes "deny all". podnet treats every
//! peer or protocol entry it cannot use the same way (none or several fields set, an empty
//! `from`/`to`, `domainNames`, a bad CIDR or port) and warns.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::cnp::{
    ClusterNetworkPolicy, ClusterNetworkPolicyEgressPeer, ClusterNetworkPolicyIngressPeer,
    ClusterNetworkPolicyProtocol, NamespacedPod, Port, ProtocolPort, RuleAction, Tier,
};
use super::netpol::parse_cidr;
use super::selector;
use super::spec::{NamespaceScope, PeerSpec, PortSpec, RuleSpec};
use super::state::{PolicyWarning, RuleOrigin};
use crate::service::Protocol;

/// The highest priority the API allows.
const MAX_PRIORITY: i32 = 1000;

/// A ClusterNetworkPolicy, checked.
#[derive(Debug, Clone)]
pub(crate) struct CnpView {
    pub(crate) name: String,
    pub(crate) tier: Tier,
    pub(crate) priority: i32,
    pub(crate) subject: Subject,
    pub(crate) ingress: Vec<CnpRule>,
    pub(crate) egress: Vec<CnpRule>,
}

/// The pods a ClusterNetworkPolicy applies to.
#[derive(Debug, Clone)]
pub(crate) enum Subject {
    /// Every pod of the selected namespaces.
    Namespaces(LabelSelector),
    /// Pods selected by both.
    Pods {
        namespaces: LabelSelector,
        pods: LabelSelector,
    },
}

/// One rule, checked (a rule failing closed as "deny all" has action Deny and no limits).
#[derive(Debug, Clone)]
pub(crate) struct CnpRule {
    pub(crate) origin: RuleOrigin,
    pub(crate) action: RuleAction,
    pub(crate) spec: RuleSpec,
}

/// Reads a ClusterNetworkPolicy; `None` (with a warning) when it cannot be used at all.
pub(crate) fn read_cluster_policy(
    policy: &ClusterNetworkPolicy,
    warnings: &mut Vec<PolicyWarning>,
) -> Option<CnpView> {
    let name = policy.metadata.name.clone().unwrap_or_default();
    let spec = &policy.spec;
    let mut skip = |problem: String| {
        warnings.push(PolicyWarning::Skipped {
            kind: "ClusterNetworkPolicy",
            object: name.clone(),
            problem,
        });
    };
    if !(0..=MAX_PRIORITY).contains(&spec.priority) {
        skip(format!("spec.priority {} is not in 0-1000", spec.priority));
        return None;
    }
    let subject = match (&spec.subject.namespaces, &spec.subject.pods) {
        (Some(ns), None) => {
            selector::check(ns, "spec.subject.namespaces").map(|()| Subject::Namespaces(ns.clone()))
        }
        (None, Some(p)) => check_namespaced(p, "spec.subject.pods").map(|()| Subject::Pods {
            namespaces: p.namespace_selector.clone(),
            pods: p.pod_selector.clone(),
        }),
        _ => Err("spec.subject must set exactly one of namespaces, pods".to_owned()),
    };
    let subject = match subject {
        Ok(s) => s,
        Err(problem) => {
            skip(problem);
            return None;
        }
    };
    let mut read = |direction: &str, rules: Vec<(&str, RuleAction, Result<RuleSpec, String>)>| {
        let mut out = Vec::new();
        for (i, (rule_name, action, spec)) in rules.into_iter().enumerate() {
            let origin = RuleOrigin {
                policy: name.clone(),
                rule: if rule_name.is_empty() {
                    format!("{direction}[{i}]")
                } else {
                    rule_name.to_owned()
                },
            };
            let spec = match spec {
                Ok(spec) => spec,
                Err(problem) => {
                    let failed = if action == RuleAction::Accept {
                        "the Accept rule matches nothing"
                    } else {
                        "the rule denies all traffic"
                    };
                    warnings.push(PolicyWarning::Field {
                        kind: "ClusterNetworkPolicy",
                        object: name.clone(),
                        problem: format!("spec.{direction}[{i}]: {problem}; {failed}"),
                    });
                    if action == RuleAction::Accept {
                        continue;
                    }
                    out.push(CnpRule {
                        origin,
                        action: RuleAction::Deny,
                        spec: RuleSpec {
                            peers: None,
                            ports: None,
                        },
                    });
                    continue;
                }
            };
            out.push(CnpRule {
                origin,
                action,
                spec,
            });
        }
        out
    };
    let ingress = read(
        "ingress",
        spec.ingress
            .iter()
            .map(|r| {
                let peers = r.from.iter().enumerate().map(|(j, p)| ingress_peer(p, j));
                (
                    r.name.as_str(),
                    r.action,
                    rule_spec(peers, &r.protocols, "from"),
                )
            })
            .collect(),
    );
    let egress = read(
        "egress",
        spec.egress
            .iter()
            .map(|r| {
                let peers = r.to.iter().enumerate().map(|(j, p)| egress_peer(p, j));
                (
                    r.name.as_str(),
                    r.action,
                    rule_spec(peers, &r.protocols, "to"),
                )
            })
            .collect(),
    );
    Some(CnpView {
        name: name.clone(),
        tier: spec.tier,
        priority: spec.priority,
        subject,
        ingress,
        egress,
    })
}

fn rule_spec(
    peers: impl Iterator<Item = Result<Vec<PeerSpec>, String>>,
    protocols: &[ClusterNetworkPolicyProtocol],
    peer_field: &str,
) -> Result<RuleSpec, String> {
    let mut all = Vec::new();
    for p in peers {
        all.extend(p?);
    }
    if all.is_empty() {
        return Err(format!("{peer_field} is empty"));
    }
    let ports = if protocols.is_empty() {
        None
    } else {
        Some(
            protocols
                .iter()
                .enumerate()
                .map(|(k, p)| protocol(p, k))
                .collect::<Result<Vec<_>, _>>()?,
        )
    };
    Ok(RuleSpec {
        peers: Some(all),
        ports,
    })
}

fn check_namespaced(p: &NamespacedPod, at: &str) -> Result<(), String> {
    selector::check(&p.namespace_selector, &format!("{at}.namespaceSelector"))?;
    selector::check(&p.pod_selector, &format!("{at}.podSelector"))
}

fn pods_peer(p: &NamespacedPod) -> PeerSpec {
    PeerSpec::Pods {
        namespaces: NamespaceScope::Selector(p.namespace_selector.clone()),
        pods: Some(p.pod_selector.clone()),
    }
}

fn ingress_peer(p: &ClusterNetworkPolicyIngressPeer, j: usize) -> Result<Vec<PeerSpec>, String> {
    let at = format!("from[{j}]");
    match (&p.namespaces, &p.pods) {
        (Some(ns), None) => {
            selector::check(ns, &format!("{at}.namespaces"))?;
            Ok(vec![PeerSpec::Pods {
                namespaces: NamespaceScope::Selector(ns.clone()),
                pods: None,
            }])
        }
        (None, Some(pods)) => {
            check_namespaced(pods, &format!("{at}.pods"))?;
            Ok(vec![pods_peer(pods)])
        }
        _ => Err(format!(
            "{at} must set exactly one of namespaces, pods (a field of a newer API?)"
        )),
    }
}

fn egress_peer(p: &ClusterNetworkPolicyEgressPeer, j: usize) -> Result<Vec<PeerSpec>, String> {
    let at = format!("to[{j}]");
    let set = usize::from(p.namespaces.is_some())
        + usize::from(p.pods.is_some())
        + usize::from(p.nodes.is_some())
        + usize::from(p.networks.is_some())
        + usize::from(p.domain_names.is_some());
    if set != 1 {
        return Err(format!(
            "{at} must set exactly one of namespaces, pods, nodes, networks, domainNames"
        ));
    }
    if let Some(ns) = &p.namespaces {
        selector::check(ns, &format!("{at}.namespaces"))?;
        return Ok(vec![PeerSpec::Pods {
            namespaces: NamespaceScope::Selector(ns.clone()),
            pods: None,
        }]);
    }
    if let Some(pods) = &p.pods {
        check_namespaced(pods, &format!("{at}.pods"))?;
        return Ok(vec![pods_peer(pods)]);
    }
    if let Some(nodes) = &p.nodes {
        selector::check(nodes, &format!("{at}.nodes"))?;
        return Ok(vec![PeerSpec::Nodes(nodes.clone())]);
    }
    if let Some(networks) = p.networks.as_ref().filter(|n| !n.is_empty()) {
        return networks
            .iter()
            .enumerate()
            .map(|(k, n)| {
                parse_cidr(n, &format!("{at}.networks[{k}]")).map(|cidr| PeerSpec::Block {
                    cidr,
                    except: Vec::new(),
                })
            })
            .collect();
    }
    Err(format!(
        "{at}: domainNames (or an empty networks) is not supported by podnet"
    ))
}

fn protocol(p: &ClusterNetworkPolicyProtocol, k: usize) -> Result<PortSpec, String> {
    let at = format!("protocols[{k}]");
    let entries: [(Option<&ProtocolPort>, Protocol, &str); 3] = [
        (p.tcp.as_ref(), Protocol::Tcp, "tcp"),
        (p.udp.as_ref(), Protocol::Udp, "udp"),
        (p.sctp.as_ref(), Protocol::Sctp, "sctp"),
    ];
    let set = entries.iter().filter(|e| e.0.is_some()).count()
        + usize::from(p.destination_named_port.is_some());
    if set != 1 {
        return Err(format!(
            "{at} must set exactly one of tcp, udp, sctp, destinationNamedPort"
        ));
    }
    if let Some(name) = &p.destination_named_port {
        return Ok(PortSpec::Named {
            name: name.clone(),
            protocol: None,
        });
    }
    for (port, protocol, field) in entries {
        if let Some(port) = port {
            let range = port
                .destination_port
                .as_ref()
                .map(|d| port_range(d, &format!("{at}.{field}.destinationPort")))
                .transpose()?;
            return Ok(PortSpec::Numbers { protocol, range });
        }
    }
    Err(format!("{at} is empty"))
}

fn port_range(port: &Port, at: &str) -> Result<(u16, u16), String> {
    let number = |n: i32, field: &str| {
        u16::try_from(n)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{at}.{field} {n} is not in 1-65535"))
    };
    match (port.number, port.range) {
        (Some(n), None) => number(n, "number").map(|n| (n, n)),
        (None, Some(r)) => {
            let (start, end) = (number(r.start, "range.start")?, number(r.end, "range.end")?);
            if end < start {
                return Err(format!("{at}.range.end {end} is below start {start}"));
            }
            Ok((start, end))
        }
        _ => Err(format!("{at} must set exactly one of number, range")),
    }
}

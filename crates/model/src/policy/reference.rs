//! The reference evaluator: the same question as [`allows`](super::allows), answered
//! straight from the objects, one connection at a time, written to be obviously the API's
//! text rather than fast. Property tests hold the compiled state (and so the nft rules) to
//! it. It assumes objects the API server would accept (it does not repeat `compile`'s
//! checks and fail-closed handling of broken ones).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::{NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::cnp::{
    ClusterNetworkPolicy, ClusterNetworkPolicyProtocol, NamespacedPod, RuleAction, Tier,
};
use super::input::{NodeView, PodView, PolicyInputs, namespace_labels, read_nodes, read_pods};
use super::selector::matches;
use super::state::{Denial, DeniedBy, Direction, RuleOrigin, Verdict};
use crate::service::Protocol;

/// What the policies say of a connection from `src` to `dst` on `protocol`/`port`, read
/// directly from `inputs` (see the module docs).
pub fn reference_allows(
    inputs: &PolicyInputs<'_>,
    src: IpAddr,
    dst: IpAddr,
    protocol: Protocol,
    port: u16,
) -> Verdict {
    let pods = read_pods(inputs.pods, &mut Vec::new());
    let cluster = Cluster {
        inputs,
        ns: namespace_labels(inputs.namespaces, &pods),
        nodes: read_nodes(inputs.nodes),
        pods: &pods,
    };
    let conn = Conn {
        protocol,
        port,
        src_pod: cluster.pod(src),
        dst_pod: cluster.pod(dst),
    };
    if let Some(pod) = conn.src_pod
        && let Some(by) = cluster.decide(pod, Direction::Egress, dst, &conn)
    {
        return Verdict::Deny(Denial {
            direction: Direction::Egress,
            by,
        });
    }
    if let Some(pod) = conn.dst_pod
        && !pod.host_ips.contains(&src)
        && let Some(by) = cluster.decide(pod, Direction::Ingress, src, &conn)
    {
        return Verdict::Deny(Denial {
            direction: Direction::Ingress,
            by,
        });
    }
    Verdict::Allow
}

/// A NetworkPolicy rule's peers and ports, either direction.
type NpRuleRef<'a> = (
    Option<&'a Vec<NetworkPolicyPeer>>,
    Option<&'a Vec<NetworkPolicyPort>>,
);

struct Cluster<'a> {
    inputs: &'a PolicyInputs<'a>,
    ns: BTreeMap<String, BTreeMap<String, String>>,
    nodes: Vec<NodeView>,
    pods: &'a [PodView],
}

struct Conn<'a> {
    protocol: Protocol,
    port: u16,
    src_pod: Option<&'a PodView>,
    dst_pod: Option<&'a PodView>,
}

impl<'a> Cluster<'a> {
    fn pod(&self, ip: IpAddr) -> Option<&'a PodView> {
        self.pods.iter().find(|p| p.ips.contains(&ip))
    }

    fn ns_labels(&self, ns: &str) -> BTreeMap<String, String> {
        self.ns.get(ns).cloned().unwrap_or_default()
    }

    /// Admin tier, then NetworkPolicy, then Baseline, for `pod` in `dir` with `remote` the
    /// other end.
    fn decide(
        &self,
        pod: &PodView,
        dir: Direction,
        remote: IpAddr,
        conn: &Conn<'_>,
    ) -> Option<DeniedBy> {
        match self.tier(Tier::Admin, pod, dir, remote, conn) {
            Some((RuleAction::Accept, _)) => return None,
            Some((RuleAction::Deny, origin)) => return Some(DeniedBy::Admin(origin)),
            Some((RuleAction::Pass, _)) | None => {}
        }
        let mut isolated = false;
        let mut allowed = false;
        for np in self.inputs.network_policies {
            let Some(spec) = &np.spec else { continue };
            if np.metadata.namespace.as_deref() != Some(pod.namespace.as_str())
                || !matches(&spec.pod_selector.clone().unwrap_or_default(), &pod.labels)
            {
                continue;
            }
            let types: Vec<&str> = match spec.policy_types.as_ref().filter(|t| !t.is_empty()) {
                Some(t) => t.iter().map(String::as_str).collect(),
                None if spec.egress.is_some() => vec!["Ingress", "Egress"],
                None => vec!["Ingress"],
            };
            let rules: Vec<NpRuleRef<'_>> = match dir {
                Direction::Ingress if types.contains(&"Ingress") => spec
                    .ingress
                    .iter()
                    .flatten()
                    .map(|r| (r.from.as_ref(), r.ports.as_ref()))
                    .collect(),
                Direction::Egress if types.contains(&"Egress") => spec
                    .egress
                    .iter()
                    .flatten()
                    .map(|r| (r.to.as_ref(), r.ports.as_ref()))
                    .collect(),
                _ => continue,
            };
            isolated = true;
            for (peers, ports) in rules {
                let peer_ok = match peers.filter(|p| !p.is_empty()) {
                    None => true,
                    Some(list) => list
                        .iter()
                        .any(|p| self.np_peer_matches(p, &pod.namespace, remote, conn, dir)),
                };
                let port_ok = match ports.filter(|p| !p.is_empty()) {
                    None => true,
                    Some(list) => list.iter().any(|p| np_port_matches(p, conn, dir, pod)),
                };
                allowed |= peer_ok && port_ok;
            }
        }
        if isolated {
            return (!allowed).then_some(DeniedBy::NetworkPolicy);
        }
        match self.tier(Tier::Baseline, pod, dir, remote, conn) {
            Some((RuleAction::Deny, origin)) => Some(DeniedBy::Baseline(origin)),
            _ => None,
        }
    }

    fn np_peer_matches(
        &self,
        peer: &NetworkPolicyPeer,
        policy_ns: &str,
        remote: IpAddr,
        conn: &Conn<'_>,
        dir: Direction,
    ) -> bool {
        if let Some(block) = &peer.ip_block {
            let inside = |cidr: &str| cidr.parse::<IpNet>().is_ok_and(|n| n.contains(&remote));
            return inside(&block.cidr) && !block.except.iter().flatten().any(|e| inside(e));
        }
        let Some(other) = remote_pod(conn, dir) else {
            return false;
        };
        let ns_ok = match &peer.namespace_selector {
            Some(sel) => matches(sel, &self.ns_labels(&other.namespace)),
            None => other.namespace == policy_ns,
        };
        let pod_ok = peer
            .pod_selector
            .as_ref()
            .is_none_or(|sel| matches(sel, &other.labels));
        ns_ok && pod_ok
    }

    /// The first matching rule of the tier's policies selecting `pod`, by priority then name.
    fn tier(
        &self,
        tier: Tier,
        pod: &PodView,
        dir: Direction,
        remote: IpAddr,
        conn: &Conn<'_>,
    ) -> Option<(RuleAction, RuleOrigin)> {
        let mut policies: Vec<&ClusterNetworkPolicy> = self
            .inputs
            .cluster_network_policies
            .iter()
            .filter(|p| p.spec.tier == tier)
            .collect();
        policies.sort_by_key(|p| (p.spec.priority, p.metadata.name.clone()));
        let ns_labels = self.ns_labels(&pod.namespace);
        for policy in policies {
            let subject = &policy.spec.subject;
            let selected = match (&subject.namespaces, &subject.pods) {
                (Some(ns), None) => matches(ns, &ns_labels),
                (None, Some(p)) => {
                    matches(&p.namespace_selector, &ns_labels)
                        && matches(&p.pod_selector, &pod.labels)
                }
                _ => false,
            };
            if !selected {
                continue;
            }
            let name = policy.metadata.name.clone().unwrap_or_default();
            // Either direction's peers are namespaces or pods; egress peers may also be
            // nodes or networks.
            let pod_peer = |ns: Option<&LabelSelector>, pods: Option<&NamespacedPod>| {
                let other = remote_pod(conn, dir);
                ns.is_some_and(|ns| {
                    other.is_some_and(|o| matches(ns, &self.ns_labels(&o.namespace)))
                }) || pods.is_some_and(|np| {
                    other.is_some_and(|o| {
                        matches(&np.namespace_selector, &self.ns_labels(&o.namespace))
                            && matches(&np.pod_selector, &o.labels)
                    })
                })
            };
            let rules: Vec<(&str, RuleAction, bool, &[ClusterNetworkPolicyProtocol])> = match dir {
                Direction::Ingress => policy
                    .spec
                    .ingress
                    .iter()
                    .map(|r| {
                        let peer = r
                            .from
                            .iter()
                            .any(|p| pod_peer(p.namespaces.as_ref(), p.pods.as_ref()));
                        (r.name.as_str(), r.action, peer, r.protocols.as_slice())
                    })
                    .collect(),
                Direction::Egress => policy
                    .spec
                    .egress
                    .iter()
                    .map(|r| {
                        let peer = r.to.iter().any(|p| {
                            pod_peer(p.namespaces.as_ref(), p.pods.as_ref())
                                || p.nodes.as_ref().is_some_and(|sel| {
                                    self.nodes
                                        .iter()
                                        .any(|n| matches(sel, &n.labels) && n.ips.contains(&remote))
                                })
                                || p.networks.iter().flatten().any(|cidr| {
                                    cidr.parse::<IpNet>().is_ok_and(|n| n.contains(&remote))
                                })
                        });
                        (r.name.as_str(), r.action, peer, r.protocols.as_slice())
                    })
                    .collect(),
            };
            for (i, (rule_name, action, peer_ok, protocols)) in rules.into_iter().enumerate() {
                let port_ok = protocols.is_empty()
                    || protocols
                        .iter()
                        .any(|p| cnp_protocol_matches(p, conn, dir, pod));
                if peer_ok && port_ok {
                    let rule = if rule_name.is_empty() {
                        format!("{dir}[{i}]")
                    } else {
                        rule_name.to_owned()
                    };
                    return Some((action, RuleOrigin { policy: name, rule }));
                }
            }
        }
        None
    }
}

/// The pod at the other end of the connection, seen from a pod in `dir`.
fn remote_pod<'a>(conn: &Conn<'a>, dir: Direction) -> Option<&'a PodView> {
    match dir {
        Direction::Ingress => conn.src_pod,
        Direction::Egress => conn.dst_pod,
    }
}

/// The pod whose container ports a named port refers to: the destination.
fn destination<'a>(conn: &Conn<'a>, dir: Direction, pod: &'a PodView) -> Option<&'a PodView> {
    match dir {
        Direction::Ingress => Some(pod),
        Direction::Egress => conn.dst_pod,
    }
}

fn np_port_matches(p: &NetworkPolicyPort, conn: &Conn<'_>, dir: Direction, pod: &PodView) -> bool {
    let protocol = Protocol::from_api(p.protocol.as_deref());
    if protocol != Some(conn.protocol) {
        return false;
    }
    match &p.port {
        None => true,
        Some(IntOrString::Int(n)) => {
            let port = i32::from(conn.port);
            *n <= port && port <= p.end_port.unwrap_or(*n)
        }
        Some(IntOrString::String(name)) => destination(conn, dir, pod).is_some_and(|d| {
            d.named_ports
                .iter()
                .any(|(n, pr, number)| n == name && *pr == conn.protocol && *number == conn.port)
        }),
    }
}

fn cnp_protocol_matches(
    p: &ClusterNetworkPolicyProtocol,
    conn: &Conn<'_>,
    dir: Direction,
    pod: &PodView,
) -> bool {
    if let Some(name) = &p.destination_named_port {
        return destination(conn, dir, pod).is_some_and(|d| {
            d.named_ports
                .iter()
                .any(|(n, pr, number)| n == name && *pr == conn.protocol && *number == conn.port)
        });
    }
    let (entry, protocol) = match (&p.tcp, &p.udp, &p.sctp) {
        (Some(e), _, _) => (e, Protocol::Tcp),
        (_, Some(e), _) => (e, Protocol::Udp),
        (_, _, Some(e)) => (e, Protocol::Sctp),
        _ => return false,
    };
    let port = i32::from(conn.port);
    protocol == conn.protocol
        && entry.destination_port.as_ref().is_none_or(|d| {
            d.number == Some(port) || d.range.is_some_and(|r| r.start <= port && port <= r.end)
        })
}

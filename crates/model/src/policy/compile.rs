//! NetworkPolicies + ClusterNetworkPolicies + pods, namespaces, nodes → [`PolicyState`]: for
//! every pod, what each tier does with its traffic in each direction, named ports resolved
//! and peers turned into shared address sets.
//!
//! Every rule's peers (and, for egress, its named ports) do not depend on the pod the rule
//! applies to, so each rule is resolved against the pods once ([`Prepared`]); only ingress
//! named ports are resolved per subject pod. Cost: O(rules × pods) to prepare, then
//! O(pods × selecting rules).

use std::collections::{BTreeMap, HashMap};

use super::addr::{AddrSet, AddrSetBuilder};
use super::cluster::{CnpRule, CnpView, Subject, read_cluster_policy};
use super::cnp::Tier;
use super::input::{
    NodeView, PodView, PolicyInputs, namespace_labels, read_nodes, read_pods, resolve_named_port,
};
use super::netpol::{NpView, read_network_policy};
use super::selector;
use super::spec::{NamespaceScope, PeerSpec, PortSpec, RuleSpec};
use super::state::{
    DirectionPolicy, PeerSetId, Peers, PodPolicy, PolicyState, PortMatch, Ports, Rule, TierRule,
};
use crate::service::Protocol;

/// Compiles what policy allows for every pod. Never fails: a bad object (or part of one) is
/// skipped, failing closed where it can, and reported in [`PolicyState::warnings`].
pub fn compile(inputs: &PolicyInputs<'_>) -> PolicyState {
    let mut warnings = Vec::new();
    let pods = read_pods(inputs.pods, &mut warnings);
    let ns_labels = namespace_labels(inputs.namespaces, &pods);
    let nodes = read_nodes(inputs.nodes);

    let mut nps: Vec<(String, NpView)> = inputs
        .network_policies
        .iter()
        .filter_map(|p| {
            let view = read_network_policy(p, &mut warnings)?;
            Some((p.metadata.name.clone().unwrap_or_default(), view))
        })
        .collect();
    nps.sort_by(|a, b| (&a.1.namespace, &a.0).cmp(&(&b.1.namespace, &b.0)));

    // Tier, then priority, then name: upstream leaves equal priorities' order undefined;
    // podnet makes it the name order, so the result never depends on the input order.
    let mut cnps: Vec<CnpView> = inputs
        .cluster_network_policies
        .iter()
        .filter_map(|p| read_cluster_policy(p, &mut warnings))
        .collect();
    cnps.sort_by(|a, b| (a.tier, a.priority, &a.name).cmp(&(b.tier, b.priority, &b.name)));

    let mut resolver = Resolver {
        pods: &pods,
        ns_labels: &ns_labels,
        nodes: &nodes,
        sets: Vec::new(),
        index: HashMap::new(),
    };
    let np_rules: Vec<(Option<PreparedRules>, Option<PreparedRules>)> = nps
        .iter()
        .map(|(_, np)| {
            (
                np.ingress.as_ref().map(|r| resolver.prepare_all(r, false)),
                np.egress.as_ref().map(|r| resolver.prepare_all(r, true)),
            )
        })
        .collect();
    let cnp_rules: Vec<(Vec<Prepared>, Vec<Prepared>)> = cnps
        .iter()
        .map(|c| {
            let specs =
                |rules: &[CnpRule]| rules.iter().map(|r| r.spec.clone()).collect::<Vec<_>>();
            (
                resolver.prepare_all(&specs(&c.ingress), false),
                resolver.prepare_all(&specs(&c.egress), true),
            )
        })
        .collect();

    let mut out = Vec::with_capacity(pods.len());
    for pod in &pods {
        let mut ingress = DirectionPolicy::default();
        let mut egress = DirectionPolicy::default();
        let pod_ns = ns_labels.get(&pod.namespace);
        for ((_, np), (ing, eg)) in nps.iter().zip(&np_rules) {
            if np.namespace != pod.namespace || !selector::matches(&np.pod_selector, &pod.labels) {
                continue;
            }
            for (dir, rules) in [(&mut ingress, ing), (&mut egress, eg)] {
                if let Some(rules) = rules {
                    dir.isolated = true;
                    for r in rules {
                        dir.allow.extend(r.rules_for(pod));
                    }
                }
            }
        }
        for (cnp, (ing, eg)) in cnps.iter().zip(&cnp_rules) {
            if !subject_selects(&cnp.subject, pod, pod_ns) {
                continue;
            }
            for (dir, views, prepared) in [
                (&mut ingress, &cnp.ingress, ing),
                (&mut egress, &cnp.egress, eg),
            ] {
                let tier = match cnp.tier {
                    Tier::Admin => &mut dir.admin,
                    Tier::Baseline => &mut dir.baseline,
                };
                for (view, prep) in views.iter().zip(prepared) {
                    tier.extend(prep.rules_for(pod).into_iter().map(|matches| TierRule {
                        action: view.action,
                        matches,
                        origin: view.origin.clone(),
                    }));
                }
            }
        }
        for dir in [&mut ingress, &mut egress] {
            dir.allow.sort();
            dir.allow.dedup();
        }
        out.push(PodPolicy {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            ips: pod.ips.clone(),
            host_ips: pod.host_ips.clone(),
            ingress,
            egress,
        });
    }

    // Addresses are unique across pods (`read_pods` saw to it).
    let by_ip = out
        .iter()
        .enumerate()
        .flat_map(|(i, pod)| pod.ips.iter().map(move |ip| (*ip, i)))
        .collect();
    warnings.sort();
    warnings.dedup();
    PolicyState {
        pods: out,
        peer_sets: resolver.sets,
        by_ip,
        warnings,
    }
}

/// Whether a ClusterNetworkPolicy subject selects `pod`.
pub(crate) fn subject_selects(
    subject: &Subject,
    pod: &PodView,
    ns_labels: Option<&BTreeMap<String, String>>,
) -> bool {
    let empty = BTreeMap::new();
    let ns_labels = ns_labels.unwrap_or(&empty);
    match subject {
        Subject::Namespaces(ns) => selector::matches(ns, ns_labels),
        Subject::Pods { namespaces, pods } => {
            selector::matches(namespaces, ns_labels) && selector::matches(pods, &pod.labels)
        }
    }
}

/// One direction's rules of one policy, prepared.
type PreparedRules = Vec<Prepared>;

/// A rule resolved against the pods, waiting for its subject pod.
#[derive(Debug)]
struct Prepared {
    /// `None`: the peers match no address, so the rule matches nothing.
    peers: Option<Peers>,
    /// `None`: any traffic. Otherwise the numeric entries.
    numbers: Option<Vec<PortMatch>>,
    /// Ingress named ports, resolved on each subject pod.
    named: Vec<(String, Option<Protocol>)>,
    /// Egress named ports, already resolved on the destination pods.
    egress_named: Vec<Rule>,
}

/// Resolves peers against the cluster and interns address sets.
struct Resolver<'a> {
    pods: &'a [PodView],
    ns_labels: &'a BTreeMap<String, BTreeMap<String, String>>,
    nodes: &'a [NodeView],
    sets: Vec<AddrSet>,
    index: HashMap<AddrSet, usize>,
}

// === impl Resolver ===

impl Resolver<'_> {
    fn prepare_all(&mut self, rules: &[RuleSpec], egress: bool) -> Vec<Prepared> {
        rules.iter().map(|r| self.prepare(r, egress)).collect()
    }

    fn prepare(&mut self, rule: &RuleSpec, egress: bool) -> Prepared {
        let set = rule.peers.as_ref().map(|p| self.addresses(p));
        let peers = match &set {
            None => Some(Peers::Any),
            Some(s) if s.is_empty() => None,
            Some(s) => Some(Peers::Set(self.intern(s.clone()))),
        };
        let mut prepared = Prepared {
            peers,
            numbers: None,
            named: Vec::new(),
            egress_named: Vec::new(),
        };
        let Some(ports) = &rule.ports else {
            return prepared;
        };
        let mut numbers = Vec::new();
        for port in ports {
            match port {
                PortSpec::Numbers { protocol, range } => numbers.push(PortMatch {
                    protocol: *protocol,
                    ports: *range,
                }),
                PortSpec::Named { name, protocol } => {
                    prepared.named.push((name.clone(), *protocol));
                }
            }
        }
        numbers.sort();
        numbers.dedup();
        prepared.numbers = Some(numbers);
        if egress && prepared.peers.is_some() {
            let named = std::mem::take(&mut prepared.named);
            prepared.egress_named = self.egress_named(&named, set.as_ref());
        }
        prepared
    }

    /// Named ports of an egress rule, resolved on each destination pod inside `set` (`None`:
    /// any pod): one rule per distinct (protocol, number), over the addresses having it.
    fn egress_named(
        &mut self,
        named: &[(String, Option<Protocol>)],
        set: Option<&AddrSet>,
    ) -> Vec<Rule> {
        let mut groups: BTreeMap<(Protocol, u16), AddrSetBuilder> = BTreeMap::new();
        for pod in self.pods {
            for (name, protocol) in named {
                for resolved in resolve_named_port(pod, name, *protocol) {
                    for ip in &pod.ips {
                        if set.is_none_or(|s| s.contains(*ip)) {
                            groups.entry(resolved).or_default().add_ip(*ip);
                        }
                    }
                }
            }
        }
        groups
            .into_iter()
            .map(|((protocol, port), builder)| Rule {
                peers: Peers::Set(self.intern(builder.build())),
                ports: Ports::Only(vec![PortMatch {
                    protocol,
                    ports: Some((port, port)),
                }]),
            })
            .collect()
    }

    /// The addresses a list of peers matches.
    fn addresses(&self, peers: &[PeerSpec]) -> AddrSet {
        let mut b = AddrSetBuilder::default();
        for peer in peers {
            match peer {
                PeerSpec::Pods { namespaces, pods } => {
                    for pod in self.pods {
                        let ns_ok = match namespaces {
                            NamespaceScope::Named(ns) => *ns == pod.namespace,
                            NamespaceScope::Selector(sel) => self
                                .ns_labels
                                .get(&pod.namespace)
                                .is_some_and(|l| selector::matches(sel, l)),
                        };
                        if ns_ok
                            && pods
                                .as_ref()
                                .is_none_or(|s| selector::matches(s, &pod.labels))
                        {
                            pod.ips.iter().for_each(|ip| b.add_ip(*ip));
                        }
                    }
                }
                PeerSpec::Block { cidr, except } => b.add_block(*cidr, except),
                PeerSpec::Nodes(sel) => {
                    for node in self
                        .nodes
                        .iter()
                        .filter(|n| selector::matches(sel, &n.labels))
                    {
                        node.ips.iter().for_each(|ip| b.add_ip(*ip));
                    }
                }
            }
        }
        b.build()
    }

    fn intern(&mut self, set: AddrSet) -> PeerSetId {
        if let Some(id) = self.index.get(&set) {
            return PeerSetId(*id);
        }
        let id = self.sets.len();
        self.sets.push(set.clone());
        self.index.insert(set, id);
        PeerSetId(id)
    }
}

// === impl Prepared ===

impl Prepared {
    /// The rules this one becomes for `subject` (the pod the policy applies to).
    fn rules_for(&self, subject: &PodView) -> Vec<Rule> {
        let Some(peers) = self.peers else {
            return Vec::new();
        };
        let Some(numbers) = &self.numbers else {
            return vec![Rule {
                peers,
                ports: Ports::Any,
            }];
        };
        let mut ports = numbers.clone();
        for (name, protocol) in &self.named {
            ports.extend(
                resolve_named_port(subject, name, *protocol)
                    .into_iter()
                    .map(|(protocol, port)| PortMatch {
                        protocol,
                        ports: Some((port, port)),
                    }),
            );
        }
        ports.sort();
        ports.dedup();
        let mut out = self.egress_named.clone();
        if !ports.is_empty() {
            out.insert(
                0,
                Rule {
                    peers,
                    ports: Ports::Only(ports),
                },
            );
        }
        out
    }
}

//! The nft objects of one Service: per port its map elements, leading to shared group
//! chains (see `groups`) or, for ports that need them, to chains of its own: policy chains,
//! external and firewall chains, per-endpoint DNAT chains and affinity sets.

use std::net::IpAddr;

use super::super::state::{
    Dispatch, Endpoint, IpFamily, NodeView, ServiceEntry, ServicePortName, ServicePortState,
};
use super::elements::{Element, Field, MapVerdict, Value};
use super::groups::{GroupKind, backends_map, is_grouped, nodeport_backends_map, port_groups};
use super::layout::{
    CLUSTER_IPS, FIREWALL_IPS, HAIRPIN, MARK_MASQ, NO_ENDPOINT_NODEPORTS, NO_ENDPOINT_SERVICES,
    REJECT_CHAIN, SERVICE_IPS, SERVICE_NODEPORTS, cidr_set,
};
use super::names::{
    ENDPOINT_PREFIX, EXTERNAL_PREFIX, FIREWALL_PREFIX, LOCAL_PREFIX, SERVICE_PREFIX,
    affinity_prefix, endpoint_base, object_name, port_base,
};
use super::objects::{ChainDef, Objects, SetDecl};
use super::script::family;

/// The objects of one Service.
pub(super) fn service_objects(entry: &ServiceEntry, node: &NodeView) -> Objects {
    let mut out = Objects::default();
    let mut cluster_ips: Vec<(IpFamily, IpAddr)> = Vec::new();
    for port in &entry.ports {
        if is_grouped(port) {
            grouped_port(port, &mut out);
        } else {
            PortWriter::new(port, node).write(&mut out);
        }
        if !cluster_ips.contains(&(port.family, port.cluster_ip)) {
            cluster_ips.push((port.family, port.cluster_ip));
        }
    }
    for (f, ip) in cluster_ips {
        out.elements.push(Element {
            family: f,
            set: CLUSTER_IPS,
            key: vec![Field::Addr(ip)],
            comment: None,
            value: None,
        });
    }
    // Two ports of one Service share their hairpin elements.
    out.elements
        .sort_unstable_by(|a, b| (a.family, a.set, &a.key).cmp(&(b.family, b.set, &b.key)));
    out.elements
        .dedup_by(|a, b| a.family == b.family && a.set == b.set && a.key == b.key);
    out.groups.sort_unstable();
    out.groups.dedup();
    out
}

/// The objects of a port that shares group chains: elements only.
fn grouped_port(p: &ServicePortState, out: &mut Objects) {
    out.groups.extend(port_groups(p));
    let f = p.family;
    let proto = p.name.protocol;
    let mut element =
        |set: &'static str, key: Vec<Field>, comment: Option<String>, value: Option<Value>| {
            out.elements.push(Element {
                family: f,
                set,
                key,
                comment,
                value,
            });
        };
    // Where a frontend leading to the group of `kind` goes: into the group's member set,
    // or into `verdict_map` as a `goto` to the group chain.
    let dispatch = |kind, verdict_map: &'static str| {
        port_groups(p)
            .find(|g| g.kind == kind)
            .map(|g| match g.member_set() {
                Some(set) => (set, None),
                None => (
                    verdict_map,
                    Some(Value::Verdict(MapVerdict::Goto(g.chain_name()))),
                ),
            })
    };
    let backends =
        |element: &mut dyn FnMut(&'static str, Vec<Field>, Option<String>, Option<Value>),
         front: &[Field],
         set: &'static str,
         to: Dispatch| {
            for (slot, ep) in p.endpoints_for(to).iter().enumerate() {
                let mut key = front.to_vec();
                key.push(Field::Slot(u32::try_from(slot).unwrap_or(u32::MAX)));
                element(
                    set,
                    key,
                    None,
                    Some(Value::Fields(vec![
                        Field::Addr(ep.ip),
                        Field::Port(ep.port),
                    ])),
                );
            }
        };
    let address_key = |ip: IpAddr| vec![Field::Addr(ip), Field::Proto(proto), Field::Port(p.port)];

    match dispatch(GroupKind::Cluster, SERVICE_IPS) {
        Some((set, value)) => {
            element(set, address_key(p.cluster_ip), None, value);
            let front = [Field::Addr(p.cluster_ip), Field::Port(p.port)];
            backends(&mut element, &front, backends_map(proto), p.internal.to);
            for ep in p
                .endpoints_for(p.internal.to)
                .iter()
                .filter(|e| e.may_be_local())
            {
                element(
                    HAIRPIN,
                    vec![
                        Field::Addr(ep.ip),
                        Field::Addr(ep.ip),
                        Field::Addr(p.cluster_ip),
                    ],
                    None,
                    None,
                );
            }
        }
        None => element(
            NO_ENDPOINT_SERVICES,
            address_key(p.cluster_ip),
            Some(kube_proxy_name(&p.name)),
            Some(no_endpoint_verdict(p.internal.to)),
        ),
    }
    let Some(e) = p.external else {
        return;
    };
    for ip in p.external_ips.iter().chain(&p.load_balancer_ips) {
        match dispatch(GroupKind::External, SERVICE_IPS) {
            Some((set, value)) => {
                element(set, address_key(*ip), None, value);
                let front = [Field::Addr(*ip), Field::Port(p.port)];
                backends(&mut element, &front, backends_map(proto), e.to);
            }
            None => element(
                NO_ENDPOINT_SERVICES,
                address_key(*ip),
                Some(kube_proxy_name(&p.name)),
                Some(no_endpoint_verdict(e.to)),
            ),
        }
    }
    if let Some(node_port) = p.node_port {
        let key = vec![Field::Proto(proto), Field::Port(node_port)];
        match dispatch(GroupKind::NodePort, SERVICE_NODEPORTS) {
            Some((set, value)) => {
                element(set, key, None, value);
                let front = [Field::Port(node_port)];
                backends(&mut element, &front, nodeport_backends_map(proto), e.to);
            }
            None => element(
                NO_ENDPOINT_NODEPORTS,
                key,
                Some(kube_proxy_name(&p.name)),
                Some(no_endpoint_verdict(e.to)),
            ),
        }
    }
}

/// Writes the objects of one Service port.
struct PortWriter<'a> {
    port: &'a ServicePortState,
    fam: &'static str,
    proto: &'static str,
    /// The cluster CIDRs of the port's family as a rule writes them, if known.
    cluster_cidrs: Option<String>,
    service_chain: String,
    local_chain: String,
    external_chain: String,
    firewall_chain: String,
    /// Reachable endpoints, sorted, with their chain and affinity set names.
    endpoints: Vec<(Endpoint, String, Option<String>)>,
    comment: String,
}

impl<'a> PortWriter<'a> {
    fn new(port: &'a ServicePortState, node: &NodeView) -> Self {
        let base = port_base(&port.name);
        let affinity = port.affinity_timeout.map(affinity_prefix);
        let endpoints = port
            .reachable_endpoints()
            .into_iter()
            .map(|ep| {
                let ep_base = endpoint_base(&base, &ep);
                let chain = object_name(ENDPOINT_PREFIX, &ep_base);
                let set = affinity.as_deref().map(|p| object_name(p, &ep_base));
                (ep, chain, set)
            })
            .collect();
        PortWriter {
            port,
            fam: family(port.family),
            proto: port.name.protocol.nft_name(),
            cluster_cidrs: cidr_set(&node.cluster_cidrs, port.family),
            service_chain: object_name(SERVICE_PREFIX, &base),
            local_chain: object_name(LOCAL_PREFIX, &base),
            external_chain: object_name(EXTERNAL_PREFIX, &base),
            firewall_chain: object_name(FIREWALL_PREFIX, &base),
            endpoints,
            comment: kube_proxy_name(&port.name),
        }
    }

    fn write(&self, out: &mut Objects) {
        let p = self.port;
        let f = p.family;
        let mut chain = |name: &str, rules: Vec<String>| {
            out.chains.push(ChainDef {
                family: f,
                name: name.to_owned(),
                rules,
            });
        };
        if p.uses_cluster_set() && !p.cluster_endpoints.is_empty() {
            chain(&self.service_chain, self.policy_rules(Dispatch::Cluster));
        }
        if p.uses_local_set() && !p.local_endpoints.is_empty() {
            chain(&self.local_chain, self.policy_rules(Dispatch::Local));
        }
        if let Some(rules) = self.external_rules() {
            chain(&self.external_chain, rules);
        }
        if let Some(rule) = self.firewall_rule() {
            chain(&self.firewall_chain, vec![rule]);
        }
        for (ep, name, affinity) in &self.endpoints {
            let mut rules = Vec::with_capacity(3);
            if ep.may_be_local() {
                rules.push(format!("{} saddr {} jump {MARK_MASQ}", self.fam, ep.ip));
            }
            if let Some(set) = affinity {
                rules.push(format!("update @{set} {{ {} saddr }}", self.fam));
            }
            rules.push(format!("meta l4proto {} dnat to {}", self.proto, ep.addr()));
            chain(name, rules);
        }
        if let Some(timeout) = p.affinity_timeout {
            for (_, _, set) in &self.endpoints {
                if let Some(name) = set {
                    out.sets.push(SetDecl {
                        family: f,
                        name: name.clone(),
                        timeout,
                    });
                }
            }
        }
        self.write_elements(out);
    }

    /// A policy chain: masquerade off-cluster ClusterIP traffic (if this is the internal
    /// set), affinity, then a random endpoint.
    fn policy_rules(&self, set: Dispatch) -> Vec<String> {
        let p = self.port;
        let fam = self.fam;
        let mut rules = Vec::new();
        if p.internal.to == set
            && p.internal.masquerade_off_cluster
            && let Some(cidrs) = &self.cluster_cidrs
        {
            rules.push(format!(
                "{fam} daddr {} {fam} saddr != {cidrs} jump {MARK_MASQ}",
                p.cluster_ip
            ));
        }
        let endpoints = p.endpoints_for(set);
        if p.affinity_timeout.is_some() {
            for ep in endpoints {
                if let Some((_, chain, Some(set))) = self.endpoint(ep) {
                    rules.push(format!("{fam} saddr @{set} goto {chain}"));
                }
            }
        }
        // A cascade of draws, as kube-proxy's iptables mode does: endpoint i of n is taken
        // with probability 1/(n-i) if none before it was, which is 1/n for each. Not
        // `numgen random mod n vmap { … }`: every such anonymous verdict map makes the
        // kernel's loop check of every jump in the table longer (measured on 6.18: 10k
        // Services × 10 endpoints took 3 minutes to load with vmaps, under a second
        // without). Only a connection's first packet walks this chain.
        let chains: Vec<&str> = endpoints
            .iter()
            .filter_map(|ep| self.endpoint(ep).map(|(_, chain, _)| chain.as_str()))
            .collect();
        let n = chains.len();
        for (i, chain) in chains.iter().enumerate() {
            if i + 1 < n {
                rules.push(format!("numgen random mod {} == 0 goto {chain}", n - i));
            } else {
                rules.push(format!("goto {chain}"));
            }
        }
        rules
    }

    /// The chain for NodePort, externalIP and load-balancer traffic, when the Service has
    /// endpoints somewhere (otherwise those frontends only get reject elements).
    fn external_rules(&self) -> Option<Vec<String>> {
        let e = self.port.external?;
        if e.to == Dispatch::Reject {
            return None;
        }
        let mut rules = Vec::new();
        if e.masquerade {
            rules.push(format!("jump {MARK_MASQ}"));
        }
        if e.short_circuit_pods
            && let Some(cidrs) = &self.cluster_cidrs
        {
            rules.push(format!(
                "{} saddr {cidrs} goto {} comment \"short-circuit pod traffic\"",
                self.fam, self.service_chain
            ));
        }
        if e.short_circuit_node {
            rules.push(format!(
                "fib saddr type local jump {MARK_MASQ} comment \"masquerade local traffic\""
            ));
            rules.push(format!(
                "fib saddr type local goto {} comment \"short-circuit local traffic\"",
                self.service_chain
            ));
        }
        match e.to {
            Dispatch::Cluster => rules.push(format!("goto {}", self.service_chain)),
            Dispatch::Local => rules.push(format!("goto {}", self.local_chain)),
            // Nothing: the packet leaves un-DNATed and `no-endpoint-*` drops it.
            Dispatch::Drop | Dispatch::Reject => {}
        }
        Some(rules)
    }

    fn firewall_rule(&self) -> Option<String> {
        let p = self.port;
        if p.load_balancer_ips.is_empty() || p.load_balancer_source_ranges.is_empty() {
            return None;
        }
        let mut allowed: Vec<String> = p
            .load_balancer_source_ranges
            .iter()
            .map(ToString::to_string)
            .collect();
        if p.source_ranges_allow_node {
            allowed.extend(p.load_balancer_ips.iter().map(ToString::to_string));
        }
        Some(format!(
            "{} saddr != {{ {} }} drop",
            self.fam,
            allowed.join(", ")
        ))
    }

    fn write_elements(&self, out: &mut Objects) {
        let p = self.port;
        let f = p.family;
        let protocol = p.name.protocol;
        let key = |ip: &IpAddr| {
            vec![
                Field::Addr(*ip),
                Field::Proto(protocol),
                Field::Port(p.port),
            ]
        };
        let mut element = |set: &'static str, key: Vec<Field>, comment: bool, value: Value| {
            out.elements.push(Element {
                family: f,
                set,
                key,
                comment: comment.then(|| self.comment.clone()),
                value: Some(value),
            });
        };
        let goto = |chain: &str| Value::Verdict(MapVerdict::Goto(chain.to_owned()));

        match p.internal.to {
            Dispatch::Cluster => element(
                SERVICE_IPS,
                key(&p.cluster_ip),
                false,
                goto(&self.service_chain),
            ),
            Dispatch::Local => element(
                SERVICE_IPS,
                key(&p.cluster_ip),
                false,
                goto(&self.local_chain),
            ),
            to => element(
                NO_ENDPOINT_SERVICES,
                key(&p.cluster_ip),
                true,
                no_endpoint_verdict(to),
            ),
        }
        let Some(e) = p.external else {
            return;
        };
        let captured = e.to != Dispatch::Reject;
        let no_endpoints = matches!(e.to, Dispatch::Drop | Dispatch::Reject);
        for ip in p.external_ips.iter().chain(&p.load_balancer_ips) {
            if captured {
                element(SERVICE_IPS, key(ip), false, goto(&self.external_chain));
            }
            if no_endpoints {
                element(
                    NO_ENDPOINT_SERVICES,
                    key(ip),
                    true,
                    no_endpoint_verdict(e.to),
                );
            }
        }
        if let Some(node_port) = p.node_port {
            let np_key = vec![Field::Proto(protocol), Field::Port(node_port)];
            if captured {
                element(
                    SERVICE_NODEPORTS,
                    np_key.clone(),
                    false,
                    goto(&self.external_chain),
                );
            }
            if no_endpoints {
                element(
                    NO_ENDPOINT_NODEPORTS,
                    np_key,
                    true,
                    no_endpoint_verdict(e.to),
                );
            }
        }
        if self.firewall_rule().is_some() {
            for ip in &p.load_balancer_ips {
                element(FIREWALL_IPS, key(ip), false, goto(&self.firewall_chain));
            }
        }
    }

    fn endpoint(&self, ep: &Endpoint) -> Option<&(Endpoint, String, Option<String>)> {
        self.endpoints
            .binary_search_by(|(e, _, _)| (e.ip, e.port).cmp(&(ep.ip, ep.port)))
            .ok()
            .and_then(|i| self.endpoints.get(i))
    }
}

fn no_endpoint_verdict(to: Dispatch) -> Value {
    Value::Verdict(match to {
        Dispatch::Drop => MapVerdict::Drop,
        _ => MapVerdict::Goto(REJECT_CHAIN.to_owned()),
    })
}

/// kube-proxy's `namespace/name:port`, the comment on no-endpoint elements.
fn kube_proxy_name(name: &ServicePortName) -> String {
    format!("{}:{}", name.service, name.port)
}

//! Property tests: on random pods (three namespaces, labels from a small alphabet, named
//! container ports), random NetworkPolicies and ClusterNetworkPolicies (selectors with
//! expressions, ipBlocks with except, named ports, endPort, protocol-only entries, tiers,
//! priorities with ties, Pass) and random probes, the compiled state's answer equals the
//! reference evaluator's, and the rendered rulesets of each node, run packet by packet
//! (`nftsim`), agree with both.

use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use serde_json::{Value, json};

use super::nftsim::simulate;
use super::{World, cnp, ip, namespace, netpol, node, pod_json};
use crate::policy::{allows, compile, reference_allows};
use crate::service::Protocol;

const KEYS: [&str; 2] = ["k1", "k2"];
const VALUES: [&str; 2] = ["a", "b"];
const PORT_NAMES: [&str; 2] = ["http", "dns"];
const PROTOCOLS: [&str; 3] = ["TCP", "UDP", "SCTP"];
const NUMBERS: [u16; 3] = [80, 81, 8080];

fn labels() -> impl Strategy<Value = Value> {
    proptest::collection::btree_map(select(&KEYS[..]), select(&VALUES[..]), 0..=2)
        .prop_map(|m| json!(m))
}

fn selector() -> impl Strategy<Value = Value> {
    let expr = (
        select(&KEYS[..]),
        0..4usize,
        subsequence(&VALUES[..], 1..=2),
    )
        .prop_map(|(key, op, values)| match op {
            0 => json!({"key": key, "operator": "In", "values": values}),
            1 => json!({"key": key, "operator": "NotIn", "values": values}),
            2 => json!({"key": key, "operator": "Exists"}),
            _ => json!({"key": key, "operator": "DoesNotExist"}),
        });
    let some = (labels(), proptest::collection::vec(expr, 0..=1)).prop_map(|(l, e)| {
        let mut s = serde_json::Map::new();
        if l.as_object().is_some_and(|o| !o.is_empty()) {
            s.insert("matchLabels".into(), l);
        }
        if !e.is_empty() {
            s.insert("matchExpressions".into(), json!(e));
        }
        Value::Object(s)
    });
    // Empty selectors (everything) often, so that policies select and isolate.
    prop_oneof![1 => Just(json!({})), 2 => some]
}

/// (cidr, the except blocks that may go with it).
const BLOCKS: [(&str, &[&str]); 5] = [
    ("10.0.0.0/16", &["10.0.1.0/24", "10.0.2.4/30"]),
    ("10.0.1.0/24", &["10.0.1.2/31"]),
    ("0.0.0.0/0", &["10.0.2.0/24"]),
    ("10.0.2.1/32", &[]),
    ("fd00::/16", &["fd00::2/127"]),
];

fn ip_block() -> impl Strategy<Value = Value> {
    (0..BLOCKS.len()).prop_flat_map(|i| {
        let (cidr, excepts) = BLOCKS[i];
        subsequence(excepts, 0..=excepts.len())
            .prop_map(move |ex| json!({"ipBlock": {"cidr": cidr, "except": ex}}))
    })
}

fn np_peer() -> impl Strategy<Value = Value> {
    prop_oneof![
        selector().prop_map(|s| json!({ "podSelector": s })),
        selector().prop_map(|s| json!({ "namespaceSelector": s })),
        (selector(), selector())
            .prop_map(|(p, n)| json!({"podSelector": p, "namespaceSelector": n})),
        ip_block(),
    ]
}

fn np_port() -> impl Strategy<Value = Value> {
    let protocol = proptest::option::of(select(&PROTOCOLS[..]));
    let port = prop_oneof![
        Just(json!({})),
        (select(&NUMBERS[..]), proptest::option::of(0u16..3)).prop_map(|(n, end)| match end {
            Some(extra) => json!({"port": n, "endPort": n + extra}),
            None => json!({ "port": n }),
        }),
        select(&["http", "dns", "nope"][..]).prop_map(|n| json!({ "port": n })),
    ];
    (protocol, port).prop_map(|(proto, mut port)| {
        if let (Some(p), Some(o)) = (proto, port.as_object_mut()) {
            o.insert("protocol".into(), json!(p));
        }
        port
    })
}

fn np_rules(peer_field: &'static str) -> impl Strategy<Value = Value> {
    let rule = (
        proptest::option::of(proptest::collection::vec(np_peer(), 0..=2)),
        proptest::option::of(proptest::collection::vec(np_port(), 0..=2)),
    )
        .prop_map(move |(peers, ports)| {
            let mut r = serde_json::Map::new();
            if let Some(p) = peers {
                r.insert(peer_field.into(), json!(p));
            }
            if let Some(p) = ports {
                r.insert("ports".into(), json!(p));
            }
            Value::Object(r)
        });
    proptest::collection::vec(rule, 0..=2).prop_map(|r| json!(r))
}

const POLICY_TYPES: [Option<&[&str]>; 4] = [
    None,
    Some(&["Ingress"]),
    Some(&["Egress"]),
    Some(&["Ingress", "Egress"]),
];

fn network_policy() -> impl Strategy<Value = (String, Value)> {
    let types = select(&POLICY_TYPES[..]);
    (
        select(&super::NAMESPACES[..]),
        selector(),
        types,
        proptest::option::of(np_rules("from")),
        proptest::option::of(np_rules("to")),
    )
        .prop_map(|(ns, sel, types, ingress, egress)| {
            let mut spec = serde_json::Map::new();
            spec.insert("podSelector".into(), sel);
            if let Some(t) = types {
                spec.insert("policyTypes".into(), json!(t));
            }
            if let Some(i) = ingress {
                spec.insert("ingress".into(), i);
            }
            if let Some(e) = egress {
                spec.insert("egress".into(), e);
            }
            (ns.to_owned(), Value::Object(spec))
        })
}

fn cnp_protocol() -> impl Strategy<Value = Value> {
    let port = prop_oneof![
        Just(json!(null)),
        select(&NUMBERS[..]).prop_map(|n| json!({ "number": n })),
        select(&NUMBERS[..]).prop_map(|n| json!({"range": {"start": n, "end": n + 1}})),
    ];
    prop_oneof![
        (select(&["tcp", "udp", "sctp"][..]), port).prop_map(|(p, port)| {
            if port.is_null() {
                json!({ p: {} })
            } else {
                json!({ p: {"destinationPort": port} })
            }
        }),
        select(&PORT_NAMES[..]).prop_map(|n| json!({ "destinationNamedPort": n })),
    ]
}

fn cnp_peer(egress: bool) -> BoxedStrategy<Value> {
    let pods = (selector(), selector())
        .prop_map(|(n, p)| json!({"pods": {"namespaceSelector": n, "podSelector": p}}));
    let common = prop_oneof![selector().prop_map(|s| json!({ "namespaces": s })), pods];
    if !egress {
        return common.boxed();
    }
    prop_oneof![
        2 => common,
        1 => labels().prop_map(|l| json!({"nodes": {"matchLabels": l}})),
        1 => subsequence(&["10.0.1.0/24", "10.0.2.2/32", "0.0.0.0/0", "192.168.0.0/24", "fd00::/16"][..], 1..=2)
            .prop_map(|n| json!({ "networks": n })),
    ]
    .boxed()
}

fn cnp_rules(egress: bool) -> impl Strategy<Value = Value> {
    let rule = (
        select(&["Accept", "Deny", "Pass"][..]),
        proptest::collection::vec(cnp_peer(egress), 1..=2),
        proptest::collection::vec(cnp_protocol(), 0..=2),
        any::<bool>(),
    )
        .prop_map(move |(action, peers, protocols, named)| {
            let mut r = json!({"action": action, (if egress { "to" } else { "from" }): peers});
            if !protocols.is_empty() {
                r["protocols"] = json!(protocols);
            }
            if named {
                r["name"] = json!(format!("r-{action}"));
            }
            r
        });
    proptest::collection::vec(rule, 0..=2).prop_map(|r| json!(r))
}

fn cluster_policy() -> impl Strategy<Value = Value> {
    let subject = prop_oneof![
        selector().prop_map(|s| json!({ "namespaces": s })),
        (selector(), selector())
            .prop_map(|(n, p)| json!({"pods": {"namespaceSelector": n, "podSelector": p}})),
    ];
    (
        select(&["Admin", "Baseline"][..]),
        0..3i32,
        subject,
        cnp_rules(false),
        cnp_rules(true),
    )
        .prop_map(|(tier, priority, subject, ingress, egress)| {
            json!({"tier": tier, "priority": priority, "subject": subject,
                   "ingress": ingress, "egress": egress})
        })
}

type PodSpec = (
    usize,
    Value,
    Vec<(&'static str, &'static str, u16)>,
    bool,
    bool,
);

fn pod() -> impl Strategy<Value = PodSpec> {
    let port = (
        select(&PORT_NAMES[..]),
        select(&PROTOCOLS[..]),
        select(&NUMBERS[..]),
    );
    (
        0..3usize,
        labels(),
        proptest::collection::vec(port, 0..=2),
        any::<bool>(),
        any::<bool>(),
    )
}

pub(super) fn world() -> impl Strategy<Value = World> {
    (
        proptest::collection::vec(labels(), 3),
        proptest::collection::vec(pod(), 2..=6),
        proptest::collection::vec(network_policy(), 0..=4),
        proptest::collection::vec(cluster_policy(), 0..=3),
        (labels(), labels()),
    )
        .prop_map(|(ns_labels, pods, nps, cnps, node_labels)| {
            let mut w = World::default();
            for (ns, l) in super::NAMESPACES.iter().zip(ns_labels) {
                w.namespaces.push(namespace(ns, l));
            }
            for (i, (ns, l, mut ports, dual, node2)) in pods.into_iter().enumerate() {
                // Container port names are unique within a pod.
                ports.dedup_by_key(|p| p.0);
                let v4 = format!("10.0.{}.{}", ns + 1, i + 1);
                let v6 = format!("fd00::{}", i + 1);
                let ips: Vec<&str> = if dual { vec![&v4, &v6] } else { vec![&v4] };
                let host = if node2 { "192.168.0.2" } else { "192.168.0.1" };
                let name = format!("p{i}");
                w.pods.push(pod_json(
                    super::NAMESPACES[ns],
                    &name,
                    &ips,
                    l,
                    &ports,
                    host,
                ));
            }
            for (i, (ns, spec)) in nps.into_iter().enumerate() {
                w.nps.push(netpol(&ns, &format!("np{i}"), spec));
            }
            for (i, spec) in cnps.into_iter().enumerate() {
                w.cnps.push(cnp(&format!("cnp{i}"), spec));
            }
            w.nodes.push(node("node-1", "192.168.0.1", node_labels.0));
            w.nodes.push(node("node-2", "192.168.0.2", node_labels.1));
            w
        })
}

/// Probe endpoints: every pod address slot plus a few outsiders.
const ADDRESSES: [&str; 10] = [
    "10.0.1.1",
    "10.0.2.2",
    "10.0.3.3",
    "10.0.1.4",
    "10.0.2.5",
    "10.0.3.6",
    "fd00::1",
    "192.168.0.1",
    "10.0.2.200",
    "192.168.0.2",
];

fn probe() -> impl Strategy<Value = (usize, usize, Protocol, u16)> {
    let target = || prop_oneof![3 => 0..6usize, 1 => 0..ADDRESSES.len()];
    (
        target(),
        target(),
        select(&[Protocol::Tcp, Protocol::Udp, Protocol::Sctp][..]),
        select(&[80u16, 81, 82, 8080, 9000][..]),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn compiled_state_and_rendered_rules_agree_with_the_reference(
        w in world(),
        probes in proptest::collection::vec(probe(), 1..=24),
    ) {
        let inputs = w.inputs();
        let state = compile(&inputs);
        prop_assert!(state.warnings.is_empty(), "{:?}", state.warnings);
        // Pod addresses by slot, so most probes hit pods that exist.
        let pod_ip = |slot: usize| {
            state.pods.get(slot % state.pods.len().max(1)).map_or(ip(ADDRESSES[slot]), |p| {
                p.ips[slot % p.ips.len()]
            })
        };
        for (i, (s, d, proto, port)) in probes.into_iter().enumerate() {
            let (src, dst) = if i % 2 == 0 {
                (pod_ip(s), pod_ip(d))
            } else {
                (ip(ADDRESSES[s]), ip(ADDRESSES[d]))
            };
            if src.is_ipv6() != dst.is_ipv6() {
                continue;
            }
            let compiled = allows(&state, src, dst, proto, port);
            let reference = reference_allows(&inputs, src, dst, proto, port);
            prop_assert_eq!(&compiled, &reference, "{} → {} {}/{}", src, dst, proto, port);
            let kernel = simulate(&state, src, dst, proto, port);
            prop_assert_eq!(compiled.is_allowed(), kernel, "nft: {} → {} {}/{}", src, dst, proto, port);
        }
    }
}

//! The nft rendering: a golden of a representative ruleset, its shape (a pod's chain does not
//! grow with its policies), the interpreter's honesty, and the kernel's own check (`nft -c` in
//! a throwaway network namespace) when it can run.

use crate::nft_check::{can_check, nft_check};
use std::collections::BTreeSet;

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use serde_json::json;

use super::nftsim::{Table, simulate, simulate_with};
use super::{World, addr, ip, pod_json};
use crate::policy::{NodeView, PolicyState, render_full};

/// Policies of every kind over the upstream model plus a dual-stack pod x/d.
fn representative() -> World {
    let mut w = World::upstream()
        .np("x", "from-y-web", json!({"podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [
                {"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}],
                 "ports": [{"port": 80}, {"port": "serve-81-udp", "protocol": "UDP"}]},
                {"from": [{"ipBlock": {"cidr": "10.0.3.0/24", "except": ["10.0.3.2/32"]}},
                          {"ipBlock": {"cidr": "fd00:10::/64"}}],
                 "ports": [{"port": 8000, "endPort": 8080}, {"protocol": "SCTP"}]},
            ]}))
        .np("x", "egress-to-named", json!({"podSelector": {"matchLabels": {"pod": "b"}},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"podSelector": {"matchLabels": {"pod": "a"}}}],
                        "ports": [{"port": "serve-80-tcp"}]}]}))
        .cnp("admin", json!({"tier": "Admin", "priority": 5,
            "subject": {"namespaces": {"matchLabels": {"ns": "x"}}},
            "ingress": [{"name": "pass-z", "action": "Pass",
                         "from": [{"namespaces": {"matchLabels": {"ns": "z"}}}]},
                        {"name": "deny-y-c", "action": "Deny",
                         "from": [{"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "c"}}}}]}]}))
        .cnp("baseline", json!({"tier": "Baseline", "priority": 0,
            "subject": {"namespaces": {}},
            "egress": [{"name": "no-metadata", "action": "Deny", "to": [{"networks": ["169.254.169.254/32"]}]}]}));
    w.pods.push(pod_json(
        "x",
        "d",
        &["10.0.1.4", "fd00:10::4"],
        json!({"pod": "d"}),
        &[],
        "192.168.0.1",
    ));
    w
}

/// Node 1: pods x/a, y/a, z/a and x/d.
fn node1(state: &PolicyState) -> NodeView {
    NodeView {
        local_pod_ips: state
            .pods
            .iter()
            .filter(|p| p.name == "a" || p.name == "d")
            .flat_map(|p| p.ips.iter().copied())
            .collect(),
        node_ips: vec![ip("192.168.0.1"), ip("2001:db8::1")],
    }
}

#[test]
fn representative_ruleset_matches_golden() {
    let state = representative().state();
    insta::assert_snapshot!(render_full(&state, &node1(&state)));
}

#[test]
fn only_local_restricted_pods_get_chains_and_map_elements() {
    let state = representative().state();
    let text = render_full(&state, &node1(&state));
    // x/a: ingress (NetworkPolicy + admin) and egress (baseline); x/b is on node 2.
    assert!(text.contains("chain ingress-x/a {"));
    assert!(text.contains("chain egress-x/a {"));
    assert!(!text.contains("ingress-x/b"));
    assert!(text.contains(&format!("{} : goto ingress-x/a", addr("x/a"))));
    assert!(text.contains("fd00:10::4 : jump egress-x/d"));
    // y/a has only the baseline egress rule, no ingress restriction.
    assert!(!text.contains("chain ingress-y/a"));
    // The Pass rule jumps to the rest of the evaluation.
    assert!(text.contains("goto ingress-x/a/pass"));
    assert!(text.contains("chain ingress-x/a/pass {"));
    // Nothing local: the frame only.
    let empty = render_full(&state, &NodeView::default());
    assert!(!empty.contains("chain ingress-"));
    assert!(!empty.contains("set peers-"));
}

#[test]
fn identical_peer_sets_are_shared() {
    let w = World::upstream()
        .np("x", "p1", json!({"podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}))
        .np("x", "p2", json!({"podSelector": {"matchLabels": {"pod": "b"}},
            "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.2.0/30"}}, {"ipBlock": {"cidr": "10.0.2.3/32"}}]}]}));
    // y's pods are 10.0.2.1-3; the blocks cover 10.0.2.0-3: different sets.
    let state = w.state();
    assert_eq!(state.peer_sets.len(), 2);
    let w = w.np("x", "p3", json!({"podSelector": {"matchLabels": {"pod": "c"}},
        "ingress": [{"from": [{"podSelector": {}, "namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}));
    assert_eq!(w.state().peer_sets.len(), 2);
}

#[test]
fn rendering_is_deterministic() {
    let w = representative();
    let mut shuffled = w.clone();
    shuffled.pods.reverse();
    shuffled.nps.reverse();
    shuffled.cnps.reverse();
    let (a, b) = (w.state(), shuffled.state());
    assert_eq!(render_full(&a, &node1(&a)), render_full(&b, &node1(&b)));
}

#[test]
fn the_kernel_accepts_the_rendered_ruleset() {
    if !can_check() {
        eprintln!("skipped: needs root, nft and unshare");
        return;
    }
    let state = representative().state();
    let every_pod = NodeView {
        local_pod_ips: state.by_ip.keys().copied().collect::<BTreeSet<_>>(),
        node_ips: vec![ip("192.168.0.1")],
    };
    for node in [node1(&state), every_pod, NodeView::default()] {
        let script = render_full(&state, &node);
        nft_check(&script).unwrap_or_else(|e| panic!("{e}\n{script}"));
    }
    // The check can fail, or the test above proves nothing.
    let broken =
        render_full(&state, &node1(&state)).replace("goto ingress-x/a/pass", "goto nowhere");
    assert!(nft_check(&broken).is_err());
}

#[test]
fn the_kernel_accepts_rulesets_of_random_clusters() {
    if !can_check() {
        eprintln!("skipped: needs root, nft and unshare");
        return;
    }
    let mut runner = TestRunner::deterministic();
    let strategy = super::prop::world();
    for round in 0..16 {
        let world = strategy.new_tree(&mut runner).unwrap().current();
        let state = world.state();
        let node = NodeView {
            local_pod_ips: state.by_ip.keys().copied().collect(),
            node_ips: vec![ip("192.168.0.1"), ip("fd00:ff::1")],
        };
        let script = render_full(&state, &node);
        nft_check(&script).unwrap_or_else(|e| panic!("round {round}: {e}\n{script}"));
    }
}

#[test]
fn long_pod_names_get_hashed_chain_names_the_kernel_accepts() {
    let long = format!("{}.{}", "a".repeat(63), "b".repeat(189)); // 253 characters
    let mut w = World::default().np("ns", "deny", json!({"podSelector": {}}));
    w.pods.push(pod_json(
        "ns",
        &long,
        &["10.0.9.1"],
        json!({}),
        &[],
        "192.168.0.1",
    ));
    w.cnps.push(super::cnp(
        "pass",
        json!({"tier": "Admin", "priority": 0,
        "subject": {"namespaces": {}},
        "ingress": [{"action": "Pass", "from": [{"namespaces": {}}]}]}),
    ));
    let state = w.state();
    let script = render_full(
        &state,
        &NodeView::for_node_ips(&state, &[ip("192.168.0.1")]),
    );
    let chains: Vec<&str> = script
        .lines()
        .filter_map(|l| l.trim().strip_prefix("chain ingress-"))
        .collect();
    assert_eq!(chains.len(), 2, "{script}");
    assert!(chains.iter().all(|c| c.len() < 40), "{chains:?}");
    assert!(chains[1].starts_with(chains[0].trim_end_matches(" {")));
    if can_check() {
        nft_check(&script).unwrap_or_else(|e| panic!("{e}\n{script}"));
    }
}

#[test]
fn a_shared_pod_address_stays_with_the_first_pod() {
    let mut w = World::default().np("ns", "deny", json!({"podSelector": {}}));
    for name in ["b", "a"] {
        w.pods.push(pod_json(
            "ns",
            name,
            &["10.0.9.1"],
            json!({}),
            &[],
            "192.168.0.1",
        ));
    }
    let state = crate::policy::compile(&w.inputs());
    assert_eq!(state.warnings.len(), 1);
    assert!(
        state.warnings[0]
            .to_string()
            .contains("10.0.9.1 is also ns/a's")
    );
    assert_eq!(state.pods.len(), 1);
    let script = render_full(
        &state,
        &NodeView::for_node_ips(&state, &[ip("192.168.0.1")]),
    );
    assert_eq!(script.matches("10.0.9.1 : goto").count(), 1);
}

/// `world` plus `n` policies selecting x/a, each admitting another pod on its own port.
fn many_policies_on_xa(n: u16) -> World {
    let mut w = World::upstream();
    for k in 0..n {
        let peer = super::PODS[usize::from(k) % 3];
        let ns = super::NAMESPACES[usize::from(k / 3) % 3];
        w = w.np(
            "x",
            &format!("np{k}"),
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": ns}},
                                   "podSelector": {"matchLabels": {"pod": peer}}}],
                         "ports": [{"port": 9000 + k}, {"port": "serve-80-tcp"}]}]}),
        );
    }
    w
}

/// The rules of a chain, as rendered.
fn chain_rules<'a>(script: &'a str, chain: &str) -> Vec<&'a str> {
    let header = format!("chain {chain} {{");
    script
        .lines()
        .skip_while(|l| l.trim() != header)
        .skip(1)
        .take_while(|l| l.trim() != "}")
        .collect()
}

#[test]
fn a_pods_chain_does_not_grow_with_the_policies_selecting_it() {
    let render = |n| {
        let state = many_policies_on_xa(n).state();
        render_full(&state, &node1(&state))
    };
    let (few, many) = (render(2), render(60));
    assert_eq!(
        chain_rules(&few, "ingress-x/a"),
        chain_rules(&many, "ingress-x/a")
    );
    assert_eq!(chain_rules(&many, "ingress-x/a").len(), 2, "{many}");
    // The policies are in the set: one element per own port, and 80 from every peer.
    assert!(many.contains("10.0.2.2 . tcp . 9004,"), "{many}");
    assert!(many.contains("10.0.2.1-10.0.2.3 . tcp . 80,"), "{many}");
}

#[test]
fn the_simulator_catches_a_tampered_ruleset() {
    let state = representative().state();
    let (ya, xa) = (addr("y/a"), addr("x/a"));
    let tcp = crate::service::Protocol::Tcp;
    assert!(crate::policy::allows(&state, ya, xa, tcp, 80).is_allowed());
    assert!(simulate(&state, ya, xa, tcp, 80));
    let element = "10.0.2.1-10.0.2.3 . tcp . 80, ";
    let tampered = |s: &PolicyState, n: &NodeView| {
        let script = render_full(s, n);
        if n.local_pod_ips.contains(&xa) {
            assert!(script.contains(element), "{script}");
        }
        script.replace(element, "")
    };
    assert!(!simulate_with(&state, &tampered, ya, xa, tcp, 80));
}

#[test]
#[should_panic(expected = "overlaps")]
fn the_simulator_refuses_overlapping_elements_as_the_kernel_does() {
    Table::parse(
        "table inet podnet_policy {}\ndelete table inet podnet_policy\ntable inet podnet_policy {\n\
         \tset s {\n\t\ttype ipv4_addr . inet_proto . inet_service\n\t\tflags interval\n\
         \t\telements = { 10.0.2.0/24 . tcp . 80, 10.0.2.1 . tcp . 80-81 }\n\t}\n}\n",
    );
}

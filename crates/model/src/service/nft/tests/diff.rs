//! Incremental syncs: a diff applied to the old table must give exactly the new state's full
//! render, touching only what changed; a full render over any old table, then a prune, must
//! too (a restart adopting what it finds).

use proptest::prelude::*;

use super::super::groups::MAX_SET_ENDPOINTS;
use crate::service::testutil::generate::{ServiceSpec, cluster, objects, packet};
use crate::service::testutil::ruleset::Ruleset;
use crate::service::testutil::*;
use crate::service::{
    IpFamily, NodeFacts, ServiceState, compile, render_diff, render_full, render_prune, trace,
};

fn apply(rules: &mut Ruleset, script: &str) {
    if let Err(e) = rules.apply(script) {
        panic!("{e}\n--- script ---\n{script}");
    }
}

fn fresh(state: &ServiceState) -> Ruleset {
    let mut rules = Ruleset::default();
    apply(&mut rules, &render_full(state).to_script());
    rules
}

fn compiled(specs: &[ServiceSpec]) -> ServiceState {
    let (services, slices) = objects(specs);
    compile(&services, &slices, &node())
}

/// What `nft -j list table` would name in each family.
fn prune_all(rules: &mut Ruleset, state: &ServiceState) {
    for (f, fam) in [(IpFamily::V4, "ip"), (IpFamily::V6, "ip6")] {
        let table = rules.table(fam).unwrap();
        let chains: Vec<String> = table.chains.keys().cloned().collect();
        let sets: Vec<String> = table.sets.keys().cloned().collect();
        let script = render_prune(state, f, &chains, &sets);
        apply(rules, &script);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn diff_applied_to_the_old_table_equals_the_full_render_of_the_new(old in cluster(), new in cluster()) {
        let (old, new) = (compiled(&old), compiled(&new));
        let mut rules = fresh(&old);
        apply(&mut rules, &render_diff(&old, &new).to_script());
        prop_assert_eq!(rules, fresh(&new));
    }

    #[test]
    fn full_render_over_an_old_table_then_prune_equals_a_fresh_one(old in cluster(), new in cluster()) {
        let (old, new) = (compiled(&old), compiled(&new));
        let mut rules = fresh(&old);
        apply(&mut rules, &render_full(&new).to_script());
        prune_all(&mut rules, &new);
        prop_assert_eq!(rules, fresh(&new));
    }

    #[test]
    fn diff_between_equal_states_is_empty(spec in cluster()) {
        let state = compiled(&spec);
        prop_assert_eq!(render_diff(&state, &state.clone()).to_script(), "");
    }

    #[test]
    fn rendered_rules_trace_like_the_state(spec in cluster(), packets in prop::collection::vec(packet(), 1..24)) {
        let state = compiled(&spec);
        let rules = fresh(&state);
        for p in &packets {
            let verdict = trace(&state, p);
            prop_assert_eq!(Outcome::from(&verdict), rules.trace(p), "{:?} → {:?}", p, verdict);
        }
    }
}

#[test]
fn a_changed_endpoint_touches_only_its_service() {
    let services = [
        service("ns", "a", "172.30.0.1", vec![port("p", "TCP", 80)]),
        service("ns", "b", "172.30.0.2", vec![port("p", "TCP", 80)]),
    ];
    let slices = |b_endpoints: Vec<_>| {
        [
            slice("ns", "a", "a-1", &[("p", "TCP", 80)], vec![ep("10.0.1.1")]),
            slice("ns", "b", "b-1", &[("p", "TCP", 80)], b_endpoints),
        ]
    };
    let old = compile_clean(&services, &slices(vec![ep("10.0.2.1"), ep("10.0.2.2")]));

    // Same endpoint count: elements only, no rule or chain touched.
    let moved = compile_clean(&services, &slices(vec![ep("10.0.2.1"), ep("10.0.2.3")]));
    let diff = render_diff(&old, &moved);
    assert_eq!((diff.script.as_str(), diff.cleanup.as_str()), ("", ""));
    assert_eq!(
        diff.to_script(),
        "delete element ip podnet_services backends-tcp { 172.30.0.2 . 80 . 1 }\n\
         delete element ip podnet_services hairpin { 10.0.2.2 . 10.0.2.2 . 172.30.0.2 }\n\
         add element ip podnet_services backends-tcp { 172.30.0.2 . 80 . 1 : 10.0.2.3 . 80 }\n\
         add element ip podnet_services hairpin { 10.0.2.3 . 10.0.2.3 . 172.30.0.2 }\n"
    );

    // One endpoint fewer: b joins a's group (whose chain exists) and the last user of the
    // two-endpoint group is gone: its dispatch rule, chain and member set go, after the
    // elements.
    let shrunk = compile_clean(&services, &slices(vec![ep("10.0.2.1")]));
    let diff = render_diff(&old, &shrunk);
    assert_eq!(diff.script, "");
    assert_eq!(
        diff.to_script(),
        "delete element ip podnet_services backends-tcp { 172.30.0.2 . 80 . 1 }\n\
         delete element ip podnet_services hairpin { 10.0.2.2 . 10.0.2.2 . 172.30.0.2 }\n\
         delete element ip podnet_services lb-cluster-tcp-2 { 172.30.0.2 . tcp . 80 }\n\
         add element ip podnet_services lb-cluster-tcp-1 { 172.30.0.2 . tcp . 80 }\n\
         flush chain ip podnet_services service-groups\n\
         flush chain ip6 podnet_services service-groups\n\
         add rule ip podnet_services service-groups ip daddr . meta l4proto . th dport @lb-cluster-tcp-1 goto lb-cluster-tcp-1\n\
         delete chain ip podnet_services lb-cluster-tcp-2\n\
         delete set ip podnet_services lb-cluster-tcp-2\n"
    );

    // One endpoint more: a group nobody used yet, declared (member set, chain and dispatch
    // rule) before the element leads to it; the old group's rule stays until the cleanup.
    let grown = compile_clean(
        &services,
        &slices(vec![ep("10.0.2.1"), ep("10.0.2.2"), ep("10.0.2.3")]),
    );
    let diff = render_diff(&old, &grown);
    assert!(
        diff.script.starts_with(
            "add set ip podnet_services lb-cluster-tcp-3 { type ipv4_addr . inet_proto . inet_service ; }\n\
             add chain ip podnet_services lb-cluster-tcp-3\n"
        ),
        "{}",
        diff.script
    );
    let rule = |n| {
        format!(
            "add rule ip podnet_services service-groups ip daddr . meta l4proto . th dport @lb-cluster-tcp-{n} goto lb-cluster-tcp-{n}\n"
        )
    };
    for n in 1..=3 {
        assert!(diff.script.contains(&rule(n)), "{}", diff.script);
    }
    assert!(!diff.cleanup.contains(&rule(2)), "{}", diff.cleanup);
    assert!(diff.cleanup.contains(&rule(3)), "{}", diff.cleanup);
}

#[test]
fn ports_with_many_endpoints_are_found_through_service_ips() {
    let many = |n: usize| {
        compile_clean(
            &[service("ns", "a", "172.30.0.1", vec![port("p", "TCP", 80)])],
            &[slice(
                "ns",
                "a",
                "a-1",
                &[("p", "TCP", 80)],
                (0..n).map(|i| ep(&format!("10.0.1.{}", i + 1))).collect(),
            )],
        )
    };
    let script = render_full(&many(MAX_SET_ENDPOINTS + 1)).to_script();
    let chain = format!("lb-cluster-tcp-{}", MAX_SET_ENDPOINTS + 1);
    assert!(
        script.contains(&format!(
            "add element ip podnet_services service-ips {{ 172.30.0.1 . tcp . 80 : goto {chain} }}\n"
        )),
        "{script}"
    );
    assert!(!script.contains(&format!("add set ip podnet_services {chain}")));
    let script = render_full(&many(MAX_SET_ENDPOINTS)).to_script();
    assert!(
        script.contains(&format!(
            "add element ip podnet_services lb-cluster-tcp-{MAX_SET_ENDPOINTS} {{ 172.30.0.1 . tcp . 80 }}\n"
        )),
        "{script}"
    );
}

#[test]
fn removed_chains_go_after_the_elements_that_refer_to_them() {
    // Affinity keeps a Service's own chains.
    let old = compile_clean(
        &[service("ns", "a", "172.30.0.1", vec![port("p", "TCP", 80)]).affinity(Some(60))],
        &[slice(
            "ns",
            "a",
            "a-1",
            &[("p", "TCP", 80)],
            vec![ep("10.0.1.1")],
        )],
    );
    let new = compile_clean(&[], &[]);
    let diff = render_diff(&old, &new).to_script();
    let at = |needle: &str| {
        diff.find(needle)
            .unwrap_or_else(|| panic!("{needle} not in\n{diff}"))
    };
    assert!(
        at("delete element ip podnet_services service-ips")
            < at("delete chain ip podnet_services service-ns/a/tcp/p")
    );
    assert!(
        at("flush chain ip podnet_services service-ns/a/tcp/p")
            < at("delete chain ip podnet_services endpoint-")
    );
    assert!(
        !diff.contains("table"),
        "an incremental sync never flushes the table"
    );
}

#[test]
fn node_facts_changes_update_the_fixed_part() {
    let old = compile_clean(&[], &[]);
    let node = NodeFacts {
        node_ips: vec![ip(NODE_IP_ALT)],
        service_cidrs: vec!["172.30.0.0/16".parse().unwrap()],
        ..node()
    };
    let new = compile(compile::NO_SERVICES, compile::NO_SLICES, &node);
    let mut rules = fresh(&old);
    let diff = render_diff(&old, &new).to_script();
    apply(&mut rules, &diff);
    assert_eq!(rules, fresh(&new));
    assert!(diff.contains("delete element ip podnet_services nodeport-ips { 192.168.0.2 }"));
    assert!(diff.contains("flush chain ip6 podnet_services cluster-ips-check"));
}

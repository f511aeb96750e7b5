//! Incremental syncs: a diff applied to the old table must give exactly the new state's full
//! render, touching only what changed; a full render over any old table, then a prune, must
//! too (a restart adopting what it finds).

use proptest::prelude::*;

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
    apply(&mut rules, &render_full(state));
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
        apply(&mut rules, &render_diff(&old, &new));
        prop_assert_eq!(rules, fresh(&new));
    }

    #[test]
    fn full_render_over_an_old_table_then_prune_equals_a_fresh_one(old in cluster(), new in cluster()) {
        let (old, new) = (compiled(&old), compiled(&new));
        let mut rules = fresh(&old);
        apply(&mut rules, &render_full(&new));
        prune_all(&mut rules, &new);
        prop_assert_eq!(rules, fresh(&new));
    }

    #[test]
    fn diff_between_equal_states_is_empty(spec in cluster()) {
        let state = compiled(&spec);
        prop_assert_eq!(render_diff(&state, &state.clone()), "");
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
    let old = compile_clean(
        &services,
        &[
            slice("ns", "a", "a-1", &[("p", "TCP", 80)], vec![ep("10.0.1.1")]),
            slice(
                "ns",
                "b",
                "b-1",
                &[("p", "TCP", 80)],
                vec![ep("10.0.2.1"), ep("10.0.2.2")],
            ),
        ],
    );
    let new = compile_clean(
        &services,
        &[
            slice("ns", "a", "a-1", &[("p", "TCP", 80)], vec![ep("10.0.1.1")]),
            slice("ns", "b", "b-1", &[("p", "TCP", 80)], vec![ep("10.0.2.1")]),
        ],
    );
    let diff = render_diff(&old, &new);
    assert_eq!(
        diff,
        "flush chain ip podnet_services service-ns/b/tcp/p\n\
         add rule ip podnet_services service-ns/b/tcp/p ip daddr 172.30.0.2 ip saddr != 10.0.0.0/8 jump mark-for-masquerade\n\
         add rule ip podnet_services service-ns/b/tcp/p goto endpoint-ns/b/tcp/p__10.0.2.1/80\n\
         flush chain ip podnet_services endpoint-ns/b/tcp/p__10.0.2.2/80\n\
         delete chain ip podnet_services endpoint-ns/b/tcp/p__10.0.2.2/80\n"
    );
}

#[test]
fn removed_chains_go_after_the_elements_that_refer_to_them() {
    let old = compile_clean(
        &[service("ns", "a", "172.30.0.1", vec![port("p", "TCP", 80)])],
        &[slice(
            "ns",
            "a",
            "a-1",
            &[("p", "TCP", 80)],
            vec![ep("10.0.1.1")],
        )],
    );
    let new = compile_clean(&[], &[]);
    let diff = render_diff(&old, &new);
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
    let new = compile(&[], &[], &node);
    let mut rules = fresh(&old);
    let diff = render_diff(&old, &new);
    apply(&mut rules, &diff);
    assert_eq!(rules, fresh(&new));
    assert!(diff.contains("delete element ip podnet_services nodeport-ips { 192.168.0.2 }"));
    assert!(diff.contains("flush chain ip6 podnet_services cluster-ips-check"));
}

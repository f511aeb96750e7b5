//! NetworkPolicy semantics, one test per rule of the API, mostly as upstream-style truth
//! tables (each cell also checked against the reference evaluator).

use serde_json::json;

use super::{ALL_ALLOWED, World, addr, grid, pod_json};
use crate::policy::{Denial, DeniedBy, Direction, Verdict};
use crate::service::Protocol::{Sctp, Tcp, Udp};

/// Ingress to every pod of x denied.
pub(super) const X_INGRESS_DENIED: [&str; 9] = [
    "XXX ... ...",
    "XXX ... ...",
    "XXX ... ...",
    "XXX ... ...",
    "XXX ... ...",
    "XXX ... ...",
    "XXX ... ...",
    "XXX ... ...",
    "XXX ... ...",
];

#[test]
fn no_policy_allows_everything() {
    let w = World::upstream();
    for proto in [Tcp, Udp, Sctp] {
        assert_eq!(w.table(proto, 80), grid(ALL_ALLOWED));
    }
}

#[test]
fn empty_pod_selector_without_rules_denies_all_ingress_in_its_namespace() {
    let w = World::upstream().np("x", "deny-all", json!({"podSelector": {}}));
    for proto in [Tcp, Udp, Sctp] {
        assert_eq!(w.table(proto, 80), grid(X_INGRESS_DENIED));
    }
}

#[test]
fn an_empty_ingress_rule_allows_everything_again() {
    let w = World::upstream()
        .np("x", "deny-all", json!({"podSelector": {}}))
        .np(
            "x",
            "allow-all",
            json!({"podSelector": {}, "ingress": [{}]}),
        );
    assert_eq!(w.table(Tcp, 80), grid(ALL_ALLOWED));
}

#[test]
fn pod_selector_limits_the_policy_to_matching_pods() {
    let w = World::upstream().np(
        "x",
        "deny-a",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}}),
    );
    let mut rows = ALL_ALLOWED;
    rows.iter_mut().for_each(|r| *r = "X.. ... ...");
    assert_eq!(w.table(Tcp, 80), grid(rows));
}

#[test]
fn policies_select_pods_of_their_own_namespace_only() {
    // Same labels in y, but the policy lives in x.
    let w = World::upstream().np("x", "deny", json!({"podSelector": {}}));
    assert!(w.verdict("10.0.1.1", "10.0.2.1", Tcp, 80).is_allowed());
}

#[test]
fn an_egress_section_adds_egress_isolation_by_default() {
    // No policyTypes: Ingress always, Egress because the section is there (even empty).
    let w = World::upstream().np("x", "deny-both", json!({"podSelector": {}, "egress": []}));
    assert_eq!(
        w.table(Tcp, 80),
        grid([
            "XXX XXX XXX",
            "XXX XXX XXX",
            "XXX XXX XXX",
            "XXX ... ...",
            "XXX ... ...",
            "XXX ... ...",
            "XXX ... ...",
            "XXX ... ...",
            "XXX ... ...",
        ])
    );
}

#[test]
fn egress_only_policy_types_leave_ingress_open_and_ignore_ingress_rules() {
    let w = World::upstream().np(
        "x",
        "deny-egress",
        json!({
            "podSelector": {},
            "policyTypes": ["Egress"],
            // Without the Ingress type these rules do not isolate, nor allow anything.
            "ingress": [{"from": [{"podSelector": {}}]}],
        }),
    );
    assert_eq!(
        w.table(Tcp, 80),
        grid([
            "XXX XXX XXX",
            "XXX XXX XXX",
            "XXX XXX XXX",
            "... ... ...",
            "... ... ...",
            "... ... ...",
            "... ... ...",
            "... ... ...",
            "... ... ...",
        ])
    );
}

#[test]
fn a_pod_selector_peer_means_pods_of_the_policy_namespace() {
    let w = World::upstream().np(
        "x",
        "from-b",
        json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
    );
    let mut rows = ["XXX ... ..."; 9];
    rows[1] = "... ... ..."; // x/b
    assert_eq!(w.table(Tcp, 80), grid(rows));
}

#[test]
fn a_namespace_selector_peer_means_every_pod_there() {
    let w = World::upstream().np(
        "x",
        "from-y",
        json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}),
    );
    let mut rows = ["XXX ... ..."; 9];
    rows[3..6].iter_mut().for_each(|r| *r = "... ... ...");
    assert_eq!(w.table(Tcp, 80), grid(rows));
}

#[test]
fn both_selectors_in_one_peer_are_and() {
    let w = World::upstream().np(
        "x",
        "from-y-b",
        json!({"podSelector": {}, "ingress": [{"from": [{
            "namespaceSelector": {"matchLabels": {"ns": "y"}},
            "podSelector": {"matchLabels": {"pod": "b"}},
        }]}]}),
    );
    let mut rows = ["XXX ... ..."; 9];
    rows[4] = "... ... ..."; // y/b only
    assert_eq!(w.table(Tcp, 80), grid(rows));
}

#[test]
fn separate_peers_are_or() {
    let w = World::upstream().np(
        "x",
        "from-y-or-b",
        json!({"podSelector": {}, "ingress": [{"from": [
            {"namespaceSelector": {"matchLabels": {"ns": "y"}}},
            {"podSelector": {"matchLabels": {"pod": "b"}}},
        ]}]}),
    );
    let mut rows = ["XXX ... ..."; 9];
    rows[1] = "... ... ..."; // x/b (same namespace as the policy)
    rows[3..6].iter_mut().for_each(|r| *r = "... ... ...");
    assert_eq!(w.table(Tcp, 80), grid(rows));
}

#[test]
fn match_expressions_in_notin_exists_and_does_not_exist() {
    let from = |expr: serde_json::Value| {
        World::upstream().np(
            "x",
            "expr",
            json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [
                {"namespaceSelector": {}, "podSelector": {"matchExpressions": [expr]}}
            ]}]}),
        )
    };
    let allowed_from = |w: &World| -> Vec<String> {
        let state = w.state();
        state
            .pods
            .iter()
            .filter(|p| {
                w.verdict(&p.ips[0].to_string(), "10.0.1.1", Tcp, 80)
                    .is_allowed()
            })
            .map(|p| p.id())
            .collect()
    };
    let w = from(json!({"key": "pod", "operator": "In", "values": ["b", "c"]}));
    assert_eq!(allowed_from(&w), ["x/b", "x/c", "y/b", "y/c", "z/b", "z/c"]);
    let w = from(json!({"key": "pod", "operator": "NotIn", "values": ["b", "c"]}));
    assert_eq!(allowed_from(&w), ["x/a", "y/a", "z/a"]);
    let w = from(json!({"key": "pod", "operator": "Exists"}));
    assert_eq!(allowed_from(&w).len(), 9);
    let w = from(json!({"key": "pod", "operator": "DoesNotExist"}));
    assert!(allowed_from(&w).is_empty());
    // NotIn also selects pods without the key.
    let w = from(json!({"key": "tier", "operator": "NotIn", "values": ["web"]}));
    assert_eq!(allowed_from(&w).len(), 9);
}

#[test]
fn ip_block_with_except_matches_pod_addresses() {
    // 10.0.2.0/24 is namespace y; except y/b (10.0.2.2/32).
    let w = World::upstream().np(
        "x",
        "cidr",
        json!({"podSelector": {}, "ingress": [{"from": [
            {"ipBlock": {"cidr": "10.0.2.0/24", "except": ["10.0.2.2/32"]}}
        ]}]}),
    );
    let mut rows = ["XXX ... ..."; 9];
    rows[3] = "... ... ...";
    rows[5] = "... ... ...";
    assert_eq!(w.table(Tcp, 80), grid(rows));
    // Addresses outside the cluster match as well.
    assert!(w.verdict("10.0.2.200", "10.0.1.1", Tcp, 80).is_allowed());
    assert!(!w.verdict("10.0.4.1", "10.0.1.1", Tcp, 80).is_allowed());
}

#[test]
fn egress_ip_block_allows_only_that_block() {
    let w = World::upstream().np(
        "x",
        "to-cidr",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
               "egress": [{"to": [{"ipBlock": {"cidr": "10.0.3.2/32"}}]}]}),
    );
    assert!(w.verdict("10.0.1.1", "10.0.3.2", Tcp, 80).is_allowed());
    assert_eq!(
        w.verdict("10.0.1.1", "10.0.3.1", Tcp, 80),
        Verdict::Deny(Denial {
            direction: Direction::Egress,
            by: DeniedBy::NetworkPolicy
        })
    );
}

#[test]
fn a_connection_needs_egress_at_the_source_and_ingress_at_the_destination() {
    let w = World::upstream()
        // x/a may only send to y.
        .np(
            "x",
            "a-to-y",
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}),
        )
        // y/b takes only from z.
        .np(
            "y",
            "b-from-z",
            json!({"podSelector": {"matchLabels": {"pod": "b"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}}]}]}),
        );
    assert!(w.verdict("10.0.1.1", "10.0.2.1", Tcp, 80).is_allowed());
    assert_eq!(
        w.verdict("10.0.1.1", "10.0.2.2", Tcp, 80),
        Verdict::Deny(Denial {
            direction: Direction::Ingress,
            by: DeniedBy::NetworkPolicy
        })
    );
    assert_eq!(
        w.verdict("10.0.1.1", "10.0.3.2", Tcp, 80),
        Verdict::Deny(Denial {
            direction: Direction::Egress,
            by: DeniedBy::NetworkPolicy
        })
    );
    assert!(w.verdict("10.0.3.1", "10.0.2.2", Tcp, 80).is_allowed());
}

#[test]
fn allowed_traffic_is_the_union_of_all_selecting_policies() {
    let w = World::upstream()
        .np("x", "from-y", json!({"podSelector": {},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}], "ports": [{"port": 80}]}]}))
        .np("x", "from-z", json!({"podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}}], "ports": [{"port": 81}]}]}));
    assert!(w.verdict("10.0.2.1", "10.0.1.1", Tcp, 80).is_allowed());
    assert!(!w.verdict("10.0.2.1", "10.0.1.1", Tcp, 81).is_allowed());
    assert!(w.verdict("10.0.3.1", "10.0.1.1", Tcp, 81).is_allowed());
    assert!(!w.verdict("10.0.3.1", "10.0.1.2", Tcp, 81).is_allowed());
}

#[test]
fn traffic_from_the_pods_own_node_always_comes_in() {
    let w = World::upstream().np("x", "deny-all", json!({"podSelector": {}}));
    // x/a runs on node-1 (192.168.0.1).
    assert!(
        w.verdict("192.168.0.1", &addr("x/a").to_string(), Tcp, 80)
            .is_allowed()
    );
    assert!(
        !w.verdict("192.168.0.2", &addr("x/a").to_string(), Tcp, 80)
            .is_allowed()
    );
}

#[test]
fn namespace_label_changes_reevaluate_selectors() {
    let policy = json!({"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"team": "blue"}}}]}]});
    let mut w = World::upstream().np("x", "from-blue", policy);
    assert!(!w.verdict("10.0.2.1", "10.0.1.1", Tcp, 80).is_allowed());
    w.namespaces[1] = super::namespace("y", json!({"ns": "y", "team": "blue"}));
    assert!(w.verdict("10.0.2.1", "10.0.1.1", Tcp, 80).is_allowed());
}

#[test]
fn namespaces_can_be_selected_by_their_name_label() {
    let w = World::upstream().np(
        "x",
        "from-z",
        json!({"podSelector": {}, "ingress": [{"from": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "z"}}}]}]}),
    );
    assert!(w.verdict("10.0.3.3", "10.0.1.1", Tcp, 80).is_allowed());
    assert!(!w.verdict("10.0.2.3", "10.0.1.1", Tcp, 80).is_allowed());
}

#[test]
fn host_network_and_finished_pods_are_not_subjects_or_peers() {
    let mut w = World::upstream().np("x", "deny-all", json!({"podSelector": {}}));
    let mut host = pod_json("x", "host", &["192.168.0.9"], json!({}), &[], "192.168.0.9");
    host.spec.as_mut().unwrap().host_network = Some(true);
    let mut done = pod_json("x", "done", &["10.0.1.50"], json!({}), &[], "192.168.0.1");
    done.status.as_mut().unwrap().phase = Some("Succeeded".to_owned());
    w.pods.extend([host, done]);
    let state = w.state();
    assert!(
        state
            .pods
            .iter()
            .all(|p| p.name != "host" && p.name != "done")
    );
    // Neither is isolated by the deny-all policy.
    assert!(w.verdict("10.0.2.1", "192.168.0.9", Tcp, 80).is_allowed());
    assert!(w.verdict("10.0.2.1", "10.0.1.50", Tcp, 80).is_allowed());
}

#[test]
fn broken_rules_are_dropped_but_the_policy_still_isolates() {
    let w = World::upstream().np(
        "x",
        "broken",
        json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "not-a-cidr"}}]}]}),
    );
    let state = crate::policy::compile(&w.inputs());
    assert_eq!(state.warnings.len(), 1);
    let text = state.warnings[0].to_string();
    assert!(
        text.contains("spec.ingress[0].from[0].ipBlock.cidr \"not-a-cidr\""),
        "{text}"
    );
    let pod = &state.pods[0];
    assert!(pod.ingress.isolated && pod.ingress.allow.is_empty());
}

#[test]
fn compile_is_independent_of_input_order() {
    let w = World::upstream()
        .np(
            "x",
            "p1",
            json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}),
        )
        .np(
            "y",
            "p2",
            json!({"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]}),
        );
    let mut reversed = w.clone();
    reversed.nps.reverse();
    reversed.pods.reverse();
    reversed.namespaces.reverse();
    assert_eq!(w.state(), reversed.state());
}

#[test]
fn the_reachability_table_prints_in_upstream_layout() {
    let w = World::upstream().np(
        "x",
        "deny-a",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}}),
    );
    let text = crate::policy::reachability(&w.state(), Tcp, 80).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "-   x/a x/b x/c y/a y/b y/c z/a z/b z/c");
    assert_eq!(lines[4], "y/a X   .   .   .   .   .   .   .   .");
}

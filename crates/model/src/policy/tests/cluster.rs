//! ClusterNetworkPolicy: tiers, priorities, Accept/Deny/Pass, subjects, peers, ports, and
//! reading the v1alpha2 objects.

use serde_json::json;

use super::{World, pod_json};
use crate::policy::{
    ClusterNetworkPolicy, Denial, DeniedBy, Direction, RuleAction, RuleOrigin, Tier, Verdict,
};
use crate::service::Protocol::{Tcp, Udp};

fn origin(policy: &str, rule: &str) -> RuleOrigin {
    RuleOrigin {
        policy: policy.to_owned(),
        rule: rule.to_owned(),
    }
}

fn denied(direction: Direction, by: DeniedBy) -> Verdict {
    Verdict::Deny(Denial { direction, by })
}

/// An Admin policy on namespace x's ingress with one rule from namespace y.
fn admin_from_y(priority: i32, action: &str) -> serde_json::Value {
    json!({
        "tier": "Admin", "priority": priority,
        "subject": {"namespaces": {"matchLabels": {"ns": "x"}}},
        "ingress": [{"action": action, "from": [{"namespaces": {"matchLabels": {"ns": "y"}}}]}],
    })
}

#[test]
fn admin_deny_overrides_a_network_policy_allow() {
    let w = World::upstream()
        .np(
            "x",
            "allow-all",
            json!({"podSelector": {}, "ingress": [{}]}),
        )
        .cnp("deny-y", admin_from_y(10, "Deny"));
    assert_eq!(
        w.verdict("10.0.2.1", "10.0.1.1", Tcp, 80),
        denied(
            Direction::Ingress,
            DeniedBy::Admin(origin("deny-y", "ingress[0]"))
        )
    );
    assert!(w.verdict("10.0.3.1", "10.0.1.1", Tcp, 80).is_allowed());
}

#[test]
fn admin_accept_skips_network_policy_isolation() {
    let w = World::upstream()
        .np("x", "deny-all", json!({"podSelector": {}}))
        .cnp("accept-y", admin_from_y(10, "Accept"));
    assert!(w.verdict("10.0.2.1", "10.0.1.1", Tcp, 80).is_allowed());
    assert_eq!(
        w.verdict("10.0.3.1", "10.0.1.1", Tcp, 80),
        denied(Direction::Ingress, DeniedBy::NetworkPolicy)
    );
}

#[test]
fn admin_pass_hands_the_decision_to_network_policy() {
    let base = World::upstream()
        .cnp("pass-y", admin_from_y(1, "Pass"))
        .cnp("deny-y", admin_from_y(2, "Deny"));
    // Pass wins over the later Deny; without NetworkPolicy, the default allows.
    assert!(base.verdict("10.0.2.1", "10.0.1.1", Tcp, 80).is_allowed());
    // With NetworkPolicy isolating x, NetworkPolicy decides.
    let w = base.np("x", "deny-all", json!({"podSelector": {}}));
    assert_eq!(
        w.verdict("10.0.2.1", "10.0.1.1", Tcp, 80),
        denied(Direction::Ingress, DeniedBy::NetworkPolicy)
    );
}

#[test]
fn lower_priority_numbers_decide_first_and_ties_go_by_name() {
    let w = World::upstream()
        .cnp("b-accept", admin_from_y(5, "Accept"))
        .cnp("a-deny", admin_from_y(7, "Deny"));
    assert!(w.verdict("10.0.2.1", "10.0.1.1", Tcp, 80).is_allowed());
    let w = World::upstream()
        .cnp("b-accept", admin_from_y(7, "Accept"))
        .cnp("a-deny", admin_from_y(5, "Deny"));
    assert!(!w.verdict("10.0.2.1", "10.0.1.1", Tcp, 80).is_allowed());
    // Equal priorities: undefined upstream; podnet takes the name order.
    let w = World::upstream()
        .cnp("b-accept", admin_from_y(5, "Accept"))
        .cnp("a-deny", admin_from_y(5, "Deny"));
    assert!(!w.verdict("10.0.2.1", "10.0.1.1", Tcp, 80).is_allowed());
}

#[test]
fn rules_of_one_policy_apply_in_written_order() {
    let w = World::upstream().cnp(
        "ordered",
        json!({"tier": "Admin", "priority": 3,
            "subject": {"namespaces": {}},
            "ingress": [
                {"name": "allow-b", "action": "Accept",
                 "from": [{"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "b"}}}}]},
                {"name": "deny-rest", "action": "Deny", "from": [{"namespaces": {}}]},
            ]}),
    );
    assert!(w.verdict("10.0.2.2", "10.0.1.1", Tcp, 80).is_allowed());
    assert_eq!(
        w.verdict("10.0.2.1", "10.0.1.1", Tcp, 80),
        denied(
            Direction::Ingress,
            DeniedBy::Admin(origin("ordered", "deny-rest"))
        )
    );
}

#[test]
fn baseline_applies_only_where_network_policy_does_not_isolate() {
    let baseline = json!({"tier": "Baseline", "priority": 0,
        "subject": {"namespaces": {}},
        "ingress": [{"name": "deny-all", "action": "Deny", "from": [{"namespaces": {}}]}]});
    let w = World::upstream()
        .cnp("default-deny", baseline)
        .np("x", "from-y", json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}));
    // x is isolated by NetworkPolicy: it decides, the baseline is not consulted.
    assert!(w.verdict("10.0.2.1", "10.0.1.1", Tcp, 80).is_allowed());
    assert_eq!(
        w.verdict("10.0.3.1", "10.0.1.1", Tcp, 80),
        denied(Direction::Ingress, DeniedBy::NetworkPolicy)
    );
    // y is not: the baseline denies.
    assert_eq!(
        w.verdict("10.0.1.1", "10.0.2.1", Tcp, 80),
        denied(
            Direction::Ingress,
            DeniedBy::Baseline(origin("default-deny", "deny-all"))
        )
    );
}

#[test]
fn baseline_pass_leaves_the_default_allow() {
    let w = World::upstream().cnp(
        "baseline",
        json!({"tier": "Baseline", "priority": 0, "subject": {"namespaces": {}},
        "ingress": [
            {"action": "Pass", "from": [{"namespaces": {"matchLabels": {"ns": "y"}}}]},
            {"action": "Deny", "from": [{"namespaces": {}}]},
        ]}),
    );
    assert!(w.verdict("10.0.2.1", "10.0.1.1", Tcp, 80).is_allowed());
    assert!(!w.verdict("10.0.3.1", "10.0.1.1", Tcp, 80).is_allowed());
}

#[test]
fn an_egress_accept_still_needs_ingress_at_the_destination() {
    let w = World::upstream()
        .cnp(
            "egress-ok",
            json!({"tier": "Admin", "priority": 0,
            "subject": {"namespaces": {"matchLabels": {"ns": "x"}}},
            "egress": [{"action": "Accept", "to": [{"namespaces": {}}]}]}),
        )
        .np("y", "deny-all", json!({"podSelector": {}}));
    assert_eq!(
        w.verdict("10.0.1.1", "10.0.2.1", Tcp, 80),
        denied(Direction::Ingress, DeniedBy::NetworkPolicy)
    );
}

#[test]
fn subject_by_pods_selects_namespace_and_pod_together() {
    let w = World::upstream().cnp(
        "isolate-y-b",
        json!({"tier": "Admin", "priority": 0,
            "subject": {"pods": {"namespaceSelector": {"matchLabels": {"ns": "y"}},
                                 "podSelector": {"matchLabels": {"pod": "b"}}}},
            "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}]}),
    );
    let state = w.state();
    let isolated: Vec<String> = state
        .pods
        .iter()
        .filter(|p| !p.ingress.admin.is_empty())
        .map(|p| p.id())
        .collect();
    assert_eq!(isolated, ["y/b"]);
}

#[test]
fn egress_networks_and_nodes_peers_match_addresses() {
    let w = World::upstream().cnp(
        "egress",
        json!({"tier": "Admin", "priority": 0, "subject": {"namespaces": {}},
            "egress": [
                {"name": "rack1", "action": "Accept", "to": [{"nodes": {"matchLabels": {"rack": "r1"}}}]},
                {"name": "dns", "action": "Accept", "to": [{"networks": ["8.8.8.0/24"]}],
                 "protocols": [{"udp": {"destinationPort": {"number": 53}}}]},
                {"name": "rest", "action": "Deny", "to": [{"networks": ["0.0.0.0/0"]}]},
            ]}),
    );
    assert!(
        w.verdict("10.0.1.1", "192.168.0.1", Tcp, 10250)
            .is_allowed()
    );
    assert_eq!(
        w.verdict("10.0.1.1", "192.168.0.2", Tcp, 10250),
        denied(Direction::Egress, DeniedBy::Admin(origin("egress", "rest")))
    );
    assert!(w.verdict("10.0.1.1", "8.8.8.8", Udp, 53).is_allowed());
    assert!(!w.verdict("10.0.1.1", "8.8.8.8", Tcp, 53).is_allowed());
    // networks match pod addresses too: 0.0.0.0/0 denies pod-to-pod.
    assert!(!w.verdict("10.0.1.1", "10.0.2.1", Tcp, 80).is_allowed());
}

#[test]
fn port_ranges_and_destination_named_ports() {
    let mut w = World::upstream().cnp(
        "ports",
        json!({"tier": "Admin", "priority": 0, "subject": {"namespaces": {"matchLabels": {"ns": "x"}}},
            "egress": [
                {"action": "Accept", "to": [{"namespaces": {}}],
                 "protocols": [{"tcp": {"destinationPort": {"range": {"start": 8000, "end": 8010}}}},
                               {"destinationNamedPort": "web"}]},
                {"action": "Deny", "to": [{"namespaces": {}}]},
            ]}),
    );
    w.pods.push(pod_json(
        "y",
        "web",
        &["10.0.2.10"],
        json!({}),
        &[("web", "UDP", 7000)],
        "192.168.0.1",
    ));
    assert!(w.verdict("10.0.1.1", "10.0.2.1", Tcp, 8005).is_allowed());
    assert!(!w.verdict("10.0.1.1", "10.0.2.1", Tcp, 8011).is_allowed());
    // The named port carries its own protocol.
    assert!(w.verdict("10.0.1.1", "10.0.2.10", Udp, 7000).is_allowed());
    assert!(!w.verdict("10.0.1.1", "10.0.2.10", Tcp, 7000).is_allowed());
}

#[test]
fn unusable_peers_fail_closed() {
    // domainNames is not supported: an Accept rule with it matches nothing…
    let w = World::upstream()
        .cnp(
            "accept-domains",
            json!({"tier": "Admin", "priority": 0, "subject": {"namespaces": {}},
            "egress": [{"action": "Accept", "to": [{"domainNames": ["example.com"]}]}]}),
        )
        .np(
            "x",
            "deny-egress",
            json!({"podSelector": {}, "policyTypes": ["Egress"]}),
        );
    let state = crate::policy::compile(&w.inputs());
    assert_eq!(state.warnings.len(), 1, "{:?}", state.warnings);
    assert!(state.pods.iter().all(|p| p.egress.admin.is_empty()));
    // …and a Deny or Pass rule with a peer of unknown shape denies everything.
    let w = World::upstream().cnp(
        "pass-unknown",
        json!({"tier": "Admin", "priority": 0, "subject": {"namespaces": {"matchLabels": {"ns": "x"}}},
            "ingress": [{"action": "Pass", "from": [{"futurePeer": {}}]}]}),
    );
    let state = crate::policy::compile(&w.inputs());
    let text = state.warnings[0].to_string();
    assert!(
        text.contains("spec.ingress[0]: from[0] must set exactly one"),
        "{text}"
    );
    let verdict = crate::policy::allows(
        &state,
        super::ip("10.0.3.1"),
        super::ip("10.0.1.1"),
        Tcp,
        80,
    );
    assert_eq!(
        verdict,
        denied(
            Direction::Ingress,
            DeniedBy::Admin(origin("pass-unknown", "ingress[0]"))
        )
    );
}

#[test]
fn reading_an_unknown_tier_or_action_names_the_field_and_value() {
    let object = |tier: &str, action: &str| {
        json!({"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
            "metadata": {"name": "p"},
            "spec": {"tier": tier, "priority": 1, "subject": {"namespaces": {}},
                     "ingress": [{"action": action, "from": [{"namespaces": {}}]}]}})
    };
    let err = serde_json::from_value::<ClusterNetworkPolicy>(object("Developer", "Accept"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("spec.tier \"Developer\" is not Admin or Baseline"),
        "{err}"
    );
    let err = serde_json::from_value::<ClusterNetworkPolicy>(object("Admin", "Allow"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("action \"Allow\" is not Accept, Deny or Pass"),
        "{err}"
    );
    let ok: ClusterNetworkPolicy = serde_json::from_value(object("Baseline", "Pass")).unwrap();
    assert_eq!(ok.spec.tier, Tier::Baseline);
    assert_eq!(ok.spec.ingress[0].action, RuleAction::Pass);
    // And it writes back the same JSON.
    let back: ClusterNetworkPolicy =
        serde_json::from_value(serde_json::to_value(&ok).unwrap()).unwrap();
    assert_eq!(back, ok);
}

#[test]
fn out_of_range_priorities_and_bad_subjects_skip_the_policy() {
    let w = World::upstream()
        .cnp(
            "too-high",
            json!({"tier": "Admin", "priority": 1001, "subject": {"namespaces": {}},
            "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}]}),
        )
        .cnp(
            "two-subjects",
            json!({"tier": "Admin", "priority": 1,
            "subject": {"namespaces": {}, "pods": {"podSelector": {}}},
            "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}]}),
        );
    let state = crate::policy::compile(&w.inputs());
    let text: Vec<String> = state.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 2, "{text:?}");
    assert!(text[0].contains("spec.priority 1001"), "{text:?}");
    assert!(
        text[1].contains("spec.subject must set exactly one"),
        "{text:?}"
    );
    assert!(state.pods.iter().all(|p| p.ingress.is_open()));
}

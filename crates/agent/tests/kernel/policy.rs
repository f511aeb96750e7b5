//! The policy enforcer against a real kernel: the table goes in on the first sync, a sync of
//! the same state leaves the kernel alone, a restarted enforcer replaces what it finds, and
//! the programmed pods are published only for this node.

use podnet_agent::policy::PolicyEnforcer;
use podnet_agent::serve::Metrics;
use podnet_agent::source::Snapshot;
use podnet_testkit::Netns;
use serde_json::json;

/// Pods x/a on this node (192.168.60.11) and x/b on another; a deny-all ingress policy in x.
fn snapshot(with_policy: bool) -> Snapshot {
    let pod = |name: &str, ip: &str, host: &str| {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "x", "labels": {"pod": name}},
            "spec": {"containers": []},
            "status": {"phase": "Running", "podIPs": [{"ip": ip}], "hostIPs": [{"ip": host}]}
        }))
        .unwrap()
    };
    let policy = serde_json::from_value(json!({
        "metadata": {"name": "deny-all", "namespace": "x"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}
    }))
    .unwrap();
    Snapshot {
        pods: vec![
            pod("a", "10.244.1.2", "192.168.60.11"),
            pod("b", "10.244.2.2", "192.168.60.12"),
        ],
        network_policies: if with_policy { vec![policy] } else { vec![] },
        ..Default::default()
    }
}

fn table(node: &Netns) -> Option<String> {
    let (ok, out, _) = node.exec("nft", &["list", "table", "inet", "podnet_policy"]);
    ok.then_some(out)
}

#[test]
fn the_policy_table_is_applied_on_change_only_and_replaced_by_a_restarted_agent() {
    let node = Netns::new("pol");
    // The node's address on its underlay link (addresses on `lo` are services it hosts).
    node.ip(&[
        "link",
        "add",
        "eth0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0-peer",
    ]);
    node.ip(&["addr", "add", "192.168.60.11/24", "dev", "eth0"]);
    // A service address the node hosts on `lo` (node-local DNS) is not a node address.
    node.ip(&["addr", "add", "10.96.0.10/32", "dev", "lo"]);
    let metrics = Metrics::new();

    let mut enforcer = PolicyEnforcer::new();
    node.run(|| enforcer.sync(&snapshot(true), &metrics))
        .unwrap();
    let text = table(&node).expect("the first sync applies the table");
    assert!(text.contains("chain ingress-x/a"), "{text}");
    assert!(
        !text.contains("ingress-x/b"),
        "x/b is another node's: {text}"
    );
    assert!(
        text.contains("192.168.60.11"),
        "node address missing: {text}"
    );
    assert!(
        !text.contains("10.96.0.10"),
        "an address on lo counted as the node's: {text}"
    );
    let ip = |s: &str| s.parse().unwrap();
    assert_eq!(
        metrics.programmed.pod(ip("10.244.1.2")).as_deref(),
        Some("x/a")
    );
    assert_eq!(metrics.programmed.pod(ip("10.244.2.2")), None);
    let text = metrics.encode();
    assert!(text.contains("podnet_agent_policy_pods 1"), "{text}");
    assert!(
        text.contains("podnet_agent_policy_apply_duration_seconds_count 1"),
        "{text}"
    );

    // The same state again: nothing is sent (a table removed behind its back stays removed).
    node.exec("nft", &["delete", "table", "inet", "podnet_policy"]);
    node.run(|| enforcer.sync(&snapshot(true), &metrics))
        .unwrap();
    assert_eq!(table(&node), None);

    // A restarted agent applies at once, whether the table is gone or still there.
    node.run(|| PolicyEnforcer::new().sync(&snapshot(true), &metrics))
        .unwrap();
    assert!(table(&node).is_some_and(|t| t.contains("chain ingress-x/a")));
    let mut restarted = PolicyEnforcer::new();
    node.run(|| restarted.sync(&snapshot(true), &metrics))
        .unwrap();
    assert!(table(&node).is_some_and(|t| t.contains("chain ingress-x/a")));

    // The policy goes: so does the pod's chain; the pod stays programmed (nothing isolates it).
    node.run(|| restarted.sync(&snapshot(false), &metrics))
        .unwrap();
    let text = table(&node).unwrap();
    assert!(!text.contains("ingress-x/a"), "{text}");
    assert_eq!(
        metrics.programmed.pod(ip("10.244.1.2")).as_deref(),
        Some("x/a")
    );

    // A change goes as a diff; when the kernel refuses it (the table was deleted behind the
    // agent's back), the whole table replaces whatever is there.
    node.run(|| restarted.sync(&snapshot(true), &metrics))
        .unwrap();
    assert!(table(&node).is_some_and(|t| t.contains("chain ingress-x/a")));
    node.exec("nft", &["delete", "table", "inet", "podnet_policy"]);
    node.run(|| restarted.sync(&snapshot(false), &metrics))
        .unwrap();
    let text = table(&node).expect("the whole table is applied again");
    assert!(!text.contains("ingress-x/a"), "{text}");
    assert!(text.contains("chain forward"), "{text}");
}

#[test]
fn the_agent_sends_bridged_pod_traffic_through_the_policy_hooks() {
    if !std::path::Path::new("/proc/sys/net/bridge").exists() {
        eprintln!("skipped: br_netfilter is not loaded on this machine");
        return;
    }
    let node = Netns::new("brnf");
    let (ok, _, err) = node.exec("sysctl", &["-qw", "net.bridge.bridge-nf-call-iptables=0"]);
    assert!(ok, "{err}");
    node.run(podnet_agent::agent::bridged_traffic_reaches_nftables);
    let (_, out, _) = node.exec("sysctl", &["-n", "net.bridge.bridge-nf-call-iptables"]);
    assert_eq!(out.trim(), "1");
}

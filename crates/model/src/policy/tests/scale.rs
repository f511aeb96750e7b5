//! Timing at scale (printed, never asserted: benchmarks live in bench/). `#[ignore]`d to
//! keep CI fast: `cargo test -p podnet-model --release policy::tests::scale -- --ignored
//! --nocapture`.

use std::time::Instant;

use serde_json::json;

use super::{World, ip, namespace, netpol, pod_json};
use crate::policy::{NodeView, compile, render_full};

/// `pods` pods in 10 namespaces (label `app=<i % 50>`) and `policies` policies, each
/// isolating one app and letting the next one in on a port and a named port.
fn cluster(pods: usize, policies: usize) -> World {
    let mut w = World::default();
    for n in 0..10 {
        w.namespaces.push(namespace(
            &format!("ns{n}"),
            json!({"team": format!("t{}", n % 3)}),
        ));
    }
    for i in 0..pods {
        let addr = format!("10.{}.{}.{}", i / 62500, (i / 250) % 250, i % 250 + 1);
        w.pods.push(pod_json(
            &format!("ns{}", i % 10),
            &format!("pod-{i}"),
            &[&addr],
            json!({"app": format!("a{}", i % 50)}),
            &[("http", "TCP", 8080)],
            &format!("192.168.0.{}", i % 3 + 1),
        ));
    }
    for k in 0..policies {
        w.nps.push(netpol(
            &format!("ns{}", k % 10),
            &format!("np-{k}"),
            json!({"podSelector": {"matchLabels": {"app": format!("a{}", k % 50)}},
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "t1"}},
                                       "podSelector": {"matchLabels": {"app": format!("a{}", (k + 1) % 50)}}}],
                             "ports": [{"port": 80}, {"port": "http"}]}],
                "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": [format!("10.0.{}.0/24", k % 250)]}}]}]}),
        ));
    }
    w
}

#[test]
#[ignore = "timing run; see the module docs"]
fn thousand_pods_and_policies() {
    let w = cluster(1000, 1000);
    let start = Instant::now();
    let state = compile(&w.inputs());
    let compiled = start.elapsed();
    let node = NodeView::for_node_ips(&state, &[ip("192.168.0.1")]);
    let start = Instant::now();
    let script = render_full(&state, &node);
    eprintln!(
        "1000 pods, 1000 policies: compile {compiled:?}, render {:?} ({} bytes, {} peer sets)",
        start.elapsed(),
        script.len(),
        state.peer_sets.len()
    );
    if crate::nft_check::can_check() {
        let start = Instant::now();
        let checked = crate::nft_check::nft_check(&script);
        eprintln!(
            "nft -c: {:?} in {:?}",
            checked.map_err(|e| e.len()),
            start.elapsed()
        );
    }
}

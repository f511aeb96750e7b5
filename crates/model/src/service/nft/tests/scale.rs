//! Timing at scale (printed, never asserted: benchmarks live in bench/). The 30k run is
//! `#[ignore]`d to keep CI fast: `cargo test -p podnet-model --release -- --ignored --nocapture`.

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::service::testutil::*;
use crate::service::tracker::shared;
use crate::service::{ServiceTracker, compile, render_changes, render_diff, render_full};

/// `n` Services, each with one TCP port and `endpoints` endpoints spread over 3 nodes.
fn cluster(n: usize, endpoints: usize) -> (Vec<Service>, Vec<EndpointSlice>) {
    let mut services = Vec::with_capacity(n);
    let mut slices = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("svc-{i}");
        let cluster_ip = format!("172.30.{}.{}", i / 250, i % 250 + 1);
        services.push(service(
            "bench",
            &name,
            &cluster_ip,
            vec![port("http", "TCP", 80)],
        ));
        let eps = (0..endpoints)
            .map(|j| {
                let k = i * endpoints + j;
                ep(&format!(
                    "10.{}.{}.{}",
                    k / 62500,
                    (k / 250) % 250,
                    k % 250 + 1
                ))
                .on(["node-1", NODE, "node-3"][j % 3])
            })
            .collect();
        slices.push(slice(
            "bench",
            &name,
            &format!("{name}-a"),
            &[("http", "TCP", 8080)],
            eps,
        ));
    }
    (services, slices)
}

fn run(n: usize, endpoints: usize) {
    let (services, mut slices) = cluster(n, endpoints);
    let t = Instant::now();
    let state = compile(&services, &slices, &node());
    let compiled = t.elapsed();
    assert!(state.warnings.is_empty());
    let t = Instant::now();
    let full = render_full(&state);
    let rendered = t.elapsed();

    // One endpoint of one Service changes.
    if let Some(eps) = slices[n / 2].endpoints.as_mut() {
        eps[0].addresses = vec!["10.250.250.250".to_owned()];
    }
    let t = Instant::now();
    let changed = compile(&services, &slices, &node());
    let recompiled = t.elapsed();
    let t = Instant::now();
    let diff = render_diff(&state, &changed);
    let diffed = t.elapsed();
    // Elements only: the Service's backends (slots follow the endpoints' order, so they
    // may all move) and the changed endpoint's hairpin element.
    assert_eq!((diff.script.as_str(), diff.cleanup.as_str()), ("", ""));
    assert!(
        diff.elements.len() <= 2 * endpoints + 2,
        "{}",
        diff.to_script()
    );
    // The same change through the tracker, as the agent makes it.
    let stamp = |services: &mut Vec<Service>, slices: &mut Vec<EndpointSlice>| {
        for s in services.iter_mut() {
            s.metadata.resource_version = Some("1".into());
        }
        for s in slices.iter_mut() {
            s.metadata.resource_version = Some("1".into());
        }
    };
    let (mut services, mut slices) = (services, slices);
    stamp(&mut services, &mut slices);
    let mut tracker = ServiceTracker::new();
    let (_, unchanged) = cluster(n, endpoints);
    let mut unchanged_slices = unchanged;
    for s in &mut unchanged_slices {
        s.metadata.resource_version = Some("1".into());
    }
    // Shared as a watch cache shares them: the next snapshot differs in one slice's `Arc`.
    let services = shared(&services);
    let mut shared_slices = shared(&unchanged_slices);
    tracker.update(&services, &shared_slices, &node());
    slices[n / 2].metadata.resource_version = Some("2".into());
    shared_slices[n / 2] = Arc::new(slices[n / 2].clone());
    let t = Instant::now();
    let changes = tracker.update(&services, &shared_slices, &node());
    let tracked = t.elapsed();
    let t = Instant::now();
    let tracked_diff = render_changes(&state.node, tracker.state(), &changes.services);
    let tracked_render = t.elapsed();
    assert_eq!(tracked_diff, diff);
    eprintln!(
        "{n}: one endpoint changed through the tracker: update {tracked:?}, render_changes {tracked_render:?}"
    );
    eprintln!(
        "{n} Services × {endpoints} endpoints: compile {compiled:?}, render_full {rendered:?} ({} MB of rules, {} elements); \
         one endpoint changed: compile {recompiled:?}, render_diff {diffed:?} ({} elements)",
        full.script.len() / 1_000_000,
        full.elements.len(),
        diff.elements.len()
    );
}

#[test]
fn a_thousand_services_compile_render_and_diff() {
    run(1_000, 10);
}

#[test]
#[ignore = "timing run at full scale; use --release"]
fn thirty_thousand_services_timing() {
    run(10_000, 10);
    run(30_000, 10);
}

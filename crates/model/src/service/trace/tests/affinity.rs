//! sessionAffinity: ClientIP.

use crate::service::Origin::Pod;
use crate::service::testutil::*;
use crate::service::{
    AffinityTable, IpFamily, ServicePortName, Verdict, trace, trace_with_affinity,
};

fn sticky(timeout: Option<i32>) -> crate::service::ServiceState {
    let svc = service("ns", "svc", "172.30.0.41", vec![port("p", "TCP", 80)]).affinity(timeout);
    compile_clean(
        &[svc],
        &[slice(
            "ns",
            "svc",
            "svc-a",
            &[("p", "TCP", 80)],
            vec![ep("10.180.0.1"), ep("10.180.0.2")],
        )],
    )
}

#[test]
fn client_ip_affinity_defaults_to_three_hours() {
    let state = sticky(None);
    let verdict = trace(&state, &tcp(Pod, POD, "172.30.0.41", 80));
    assert!(
        matches!(verdict, Verdict::Dnat { affinity_timeout: Some(10800), ref targets, .. } if targets.len() == 2),
        "{verdict:?}"
    );
    check_flows(
        &state,
        &[(
            "first packet: any endpoint",
            tcp(Pod, POD, "172.30.0.41", 80),
            dnat(&["10.180.0.1:80", "10.180.0.2:80"], false),
        )],
    );
    let script = crate::service::render_full(&state).to_script();
    assert!(script.contains(
        "add set ip podnet_services affinity-10800-ns/svc/tcp/p__10.180.0.1/80 { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }"
    ));
}

#[test]
fn a_remembered_client_sticks_to_its_endpoint_while_it_exists() {
    let state = sticky(Some(60));
    let name = ServicePortName::new("ns", "svc", "p", crate::service::Protocol::Tcp);
    let packet = tcp(Pod, POD, "172.30.0.41", 80);
    let mut table = AffinityTable::default();
    table.remember(&name, ip(POD), "10.180.0.2:80".parse().unwrap());

    let verdict = trace_with_affinity(&state, &packet, &table);
    assert_eq!(verdict.endpoints(), vec!["10.180.0.2:80".parse().unwrap()]);
    assert!(matches!(
        verdict,
        Verdict::Dnat {
            affinity_timeout: Some(60),
            ..
        }
    ));

    // Another client is not affected.
    let other = tcp(Pod, "10.0.0.3", "172.30.0.41", 80);
    assert_eq!(
        trace_with_affinity(&state, &other, &table)
            .endpoints()
            .len(),
        2
    );

    // The endpoint goes away: the client is balanced again.
    let gone = compile_clean(
        &[service("ns", "svc", "172.30.0.41", vec![port("p", "TCP", 80)]).affinity(Some(60))],
        &[slice(
            "ns",
            "svc",
            "svc-a",
            &[("p", "TCP", 80)],
            vec![ep("10.180.0.1"), ep("10.180.0.3")],
        )],
    );
    assert_eq!(
        trace_with_affinity(&gone, &packet, &table)
            .endpoints()
            .len(),
        2
    );

    // The timeout expires.
    table.forget(&name, ip(POD));
    assert_eq!(
        trace_with_affinity(&state, &packet, &table)
            .endpoints()
            .len(),
        2
    );
}

#[test]
fn invalid_timeout_falls_back_to_the_default_with_a_warning() {
    let svc = service("ns", "svc", "172.30.0.41", vec![port("p", "TCP", 80)]).affinity(Some(0));
    let state = crate::service::compile(&[svc], crate::service::compile::NO_SLICES, &node());
    assert_eq!(state.warnings.len(), 1);
    assert_eq!(
        state
            .port("ns/svc:p/TCP", IpFamily::V4)
            .unwrap()
            .affinity_timeout,
        Some(10800)
    );
}

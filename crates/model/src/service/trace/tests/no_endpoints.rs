//! Services with no usable endpoints reject at once; headless and ExternalName Services get
//! no rules at all.

use crate::service::Origin::{External, Pod};
use crate::service::testutil::*;
use crate::service::{CompileWarning, Dispatch, IpFamily, compile, render_full};

fn load_balancer() -> k8s_openapi::api::core::v1::Service {
    service(
        "ns1",
        "svc1",
        "172.30.0.41",
        vec![node_port("p80", "TCP", 80, 3001)],
    )
    .type_("LoadBalancer")
    .external_ips(&["192.168.99.11"])
    .lb_ingress(&["1.2.3.4"])
}

#[test]
fn service_without_endpoints_rejects_on_every_frontend() {
    let state = compile_clean(&[load_balancer()], &[]);
    check_flows(
        &state,
        &[
            (
                "pod to cluster IP",
                tcp(Pod, POD, "172.30.0.41", 80),
                Outcome::Reject,
            ),
            (
                "external to external IP",
                tcp(External, EXTERNAL_CLIENT, "192.168.99.11", 80),
                Outcome::Reject,
            ),
            (
                "pod to NodePort",
                tcp(Pod, POD, NODE_IP, 3001),
                Outcome::Reject,
            ),
            (
                "external to NodePort",
                tcp(External, EXTERNAL_CLIENT, NODE_IP, 3001),
                Outcome::Reject,
            ),
            (
                "pod to load-balancer IP",
                tcp(Pod, POD, "1.2.3.4", 80),
                Outcome::Reject,
            ),
            (
                "external to load-balancer IP",
                tcp(External, EXTERNAL_CLIENT, "1.2.3.4", 80),
                Outcome::Reject,
            ),
        ],
    );
}

#[test]
fn endpoints_that_are_neither_ready_nor_terminating_reject_too() {
    let svc = service("ns", "svc", "172.30.0.41", vec![port("p", "UDP", 53)]);
    let state = compile_clean(
        &[svc],
        &[slice(
            "ns",
            "svc",
            "svc-a",
            &[("p", "UDP", 53)],
            vec![
                ep("10.180.0.1").not_ready(),
                ep("10.180.0.2").conditions(false, false, true),
            ],
        )],
    );
    let p = state.port("ns/svc:p/UDP", IpFamily::V4).unwrap();
    assert_eq!(p.internal.to, Dispatch::Reject);
    check_flows(
        &state,
        &[(
            "UDP to a Service with no usable endpoint",
            udp(Pod, POD, "172.30.0.41", 53),
            Outcome::Reject,
        )],
    );
}

#[test]
fn endpoints_of_another_port_do_not_count() {
    let svc = service(
        "ns",
        "svc",
        "172.30.0.41",
        vec![port("a", "TCP", 80), port("b", "TCP", 81)],
    );
    let state = compile_clean(
        &[svc],
        &[slice(
            "ns",
            "svc",
            "svc-a",
            &[("a", "TCP", 8080)],
            vec![ep("10.180.0.1")],
        )],
    );
    check_flows(
        &state,
        &[
            (
                "port a",
                tcp(Pod, POD, "172.30.0.41", 80),
                dnat(&["10.180.0.1:8080"], false),
            ),
            (
                "port b has none",
                tcp(Pod, POD, "172.30.0.41", 81),
                Outcome::Reject,
            ),
        ],
    );
}

#[test]
fn headless_and_external_name_services_get_no_rules() {
    let headless = service("ns", "headless", "None", vec![port("p", "TCP", 80)]);
    let external_name = service("ns", "ext", "", vec![port("p", "TCP", 80)])
        .type_("ExternalName")
        .spec(|s| {
            s.cluster_ip = None;
            s.external_name = Some("example.com".to_owned());
        });
    let other_proxy = service("ns", "other", "172.30.0.43", vec![port("p", "TCP", 80)])
        .label("service.kubernetes.io/service-proxy-name", "someone-else");
    let slices = [
        slice(
            "ns",
            "headless",
            "headless-a",
            &[("p", "TCP", 80)],
            vec![ep("10.180.0.1")],
        ),
        slice(
            "ns",
            "other",
            "other-a",
            &[("p", "TCP", 80)],
            vec![ep("10.180.0.2")],
        ),
    ];
    let state = compile(&[headless, external_name, other_proxy], &slices, &node());
    assert_eq!(state.services, vec![]);
    assert_eq!(state.warnings, vec![]);
    let script = render_full(&state).to_script();
    assert!(
        !script
            .lines()
            .any(|l| l.starts_with("add chain") && l.contains('/')),
        "no per-Service chain:\n{script}"
    );
    check_flows(
        &state,
        &[
            (
                "a headless Service's pod is reached directly",
                tcp(Pod, POD, "10.180.0.1", 80),
                Outcome::Pass,
            ),
            (
                "another proxy's Service is not ours",
                tcp(Pod, POD, "172.30.0.43", 80),
                Outcome::Drop,
            ),
        ],
    );
}

#[test]
fn service_without_cluster_ip_is_reported() {
    let state = compile(
        &[service("ns", "pending", "", vec![port("p", "TCP", 80)])],
        compile::NO_SLICES,
        &node(),
    );
    assert_eq!(state.services, vec![]);
    assert!(matches!(
        state.warnings.as_slice(),
        [CompileWarning::ServiceSkipped { service, .. }] if service == "ns/pending"
    ));
}

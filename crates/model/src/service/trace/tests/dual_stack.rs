//! IPv4 and IPv6: one cluster IP, endpoint set and table per family.

use crate::service::Origin::{External, Node, Pod};
use crate::service::testutil::*;
use crate::service::{IpFamily, compile};

fn dual() -> crate::service::ServiceState {
    let svc = service("ns", "svc", "", vec![node_port("p", "TCP", 80, 3001)])
        .type_("NodePort")
        .cluster_ips(&["172.30.0.41", "fd00:172:30::41"]);
    compile_clean(
        &[svc],
        &[
            slice(
                "ns",
                "svc",
                "svc-v4",
                &[("p", "TCP", 8080)],
                vec![ep("10.180.0.1").local()],
            ),
            slice(
                "ns",
                "svc",
                "svc-v6",
                &[("p", "TCP", 8080)],
                vec![ep("fd00:10::180:1").local(), ep("fd00:10::180:2")],
            ),
        ],
    )
}

#[test]
fn each_family_reaches_its_own_endpoints() {
    let state = dual();
    assert!(state.port("ns/svc:p/TCP", IpFamily::V4).is_some());
    assert!(state.port("ns/svc:p/TCP", IpFamily::V6).is_some());
    let v6 = ["[fd00:10::180:1]:8080", "[fd00:10::180:2]:8080"];
    check_flows(
        &state,
        &[
            (
                "IPv4 cluster IP",
                tcp(Pod, POD, "172.30.0.41", 80),
                dnat(&["10.180.0.1:8080"], false),
            ),
            (
                "IPv6 cluster IP",
                tcp(Pod, "fd00:10::2", "fd00:172:30::41", 80),
                dnat(&v6, false),
            ),
            (
                "IPv6 off-cluster source",
                tcp(External, "2600:5200::1", "fd00:172:30::41", 80),
                dnat(&v6, true),
            ),
            (
                "IPv6 NodePort",
                tcp(External, "2600:5200::1", NODE_IP6, 3001),
                dnat(&v6, true),
            ),
            (
                "IPv6 node to NodePort",
                tcp(Node, NODE_IP6, NODE_IP6, 3001),
                dnat(&v6, true),
            ),
            (
                "IPv6 hairpin",
                tcp(Pod, "fd00:10::180:1", "fd00:172:30::41", 80),
                dnat_each(&[
                    ("[fd00:10::180:1]:8080", true),
                    ("[fd00:10::180:2]:8080", false),
                ]),
            ),
            (
                "IPv6 unallocated",
                tcp(Pod, "fd00:10::2", "fd00:172:30::99", 80),
                Outcome::Drop,
            ),
            (
                "mixed families",
                tcp(Pod, POD, "fd00:172:30::41", 80),
                Outcome::Pass,
            ),
        ],
    );
}

#[test]
fn single_stack_service_has_no_ipv6_rules() {
    let svc = service("ns", "svc", "172.30.0.41", vec![port("p", "TCP", 80)]);
    let state = compile_clean(
        &[svc],
        &[slice(
            "ns",
            "svc",
            "svc-v6",
            &[("p", "TCP", 80)],
            vec![ep("fd00:10::180:1")],
        )],
    );
    check_flows(
        &state,
        &[(
            "no IPv4 endpoints: rejected",
            tcp(Pod, POD, "172.30.0.41", 80),
            Outcome::Reject,
        )],
    );
    assert!(state.port("ns/svc:p/TCP", IpFamily::V6).is_none());
}

#[test]
fn an_address_of_the_wrong_family_is_reported_and_skipped() {
    let mut bad = slice(
        "ns",
        "svc",
        "svc-a",
        &[("p", "TCP", 80)],
        vec![ep("10.180.0.1"), ep("fd00::1")],
    );
    bad.address_type = "IPv4".to_owned();
    let state = compile(
        &[service(
            "ns",
            "svc",
            "172.30.0.41",
            vec![port("p", "TCP", 80)],
        )],
        &[bad],
        &node(),
    );
    assert_eq!(state.warnings.len(), 1, "{:?}", state.warnings);
    check_flows(
        &state,
        &[(
            "the good one",
            tcp(Pod, POD, "172.30.0.41", 80),
            dnat(&["10.180.0.1:80"], false),
        )],
    );
}

//! host-gw: plain routes via the peers' underlay addresses, on one L2 subnet.

use ipnet::IpNet;
use podnet_agent::routing::{Backend, RouteConflict, RouteProto};

use crate::{Cluster, podnet_routes};

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

#[test]
fn host_gw_routes_pods_between_three_nodes_on_one_subnet() {
    let c = Cluster::new(&[0, 0, 0], false);
    assert!(
        !c.pods_reach(0, 1, 0, 1),
        "no route before the applier runs"
    );
    c.apply_all(Backend::HostGw);
    c.assert_full_mesh();

    let routes = podnet_routes(&c.nodes[0].ns);
    assert_eq!(
        routes,
        [
            "10.244.2.0/24 via 192.168.50.2 dev eth0",
            "10.244.3.0/24 via 192.168.50.3 dev eth0",
        ]
    );
    assert!(!c.nodes[0].ns.link_names().contains(&"podnet.1".to_owned()));
}

#[test]
fn host_gw_apply_is_idempotent_and_forgets_a_removed_peer() {
    let c = Cluster::new(&[0, 0, 0], false);
    let all = c.desired(Backend::HostGw, 0);
    let first = c.apply(0, &all);
    assert_eq!(
        first.routes.added,
        [net("10.244.2.0/24"), net("10.244.3.0/24")]
    );
    let second = c.apply(0, &all);
    assert!(!second.changed(), "second apply changed {second:?}");

    for i in 1..3 {
        c.apply(i, &c.desired(Backend::HostGw, i));
    }
    let without_3 = c.desired_with(Backend::HostGw, 0, &[1]);
    let report = c.apply(0, &without_3);
    assert_eq!(report.routes.deleted, [net("10.244.3.0/24")]);
    assert!(report.routes.added.is_empty() && report.routes.replaced.is_empty());
    let left = c.nodes[0].ns.ip_json(&["route", "show", "proto", "112"]);
    assert_eq!(left.as_array().unwrap().len(), 1);
    assert_eq!(left[0]["dst"], "10.244.2.0/24");
    assert!(c.pods_reach(0, 1, 0, 3));
    assert!(
        !c.pods_reach(0, 2, 0, 1),
        "node 3's pods are no longer routed"
    );
}

#[test]
fn the_applier_never_touches_routes_of_other_protocols() {
    let c = Cluster::new(&[0, 0, 0], false);
    let node = &c.nodes[0].ns;
    // An administrator's route elsewhere, and someone else's route to a peer's pod CIDR.
    node.ip(&[
        "route",
        "add",
        "10.99.0.0/16",
        "via",
        "192.168.50.9",
        "proto",
        "static",
    ]);
    node.ip(&[
        "route",
        "add",
        "10.244.3.0/24",
        "via",
        "192.168.50.3",
        "proto",
        "boot",
    ]);

    let report = c.apply(0, &c.desired(Backend::HostGw, 0));
    assert_eq!(report.routes.added, [net("10.244.2.0/24")]);
    assert_eq!(
        report.conflicts,
        [RouteConflict {
            dst: net("10.244.3.0/24"),
            protocol: RouteProto::BOOT,
        }]
    );

    // With no peers at all, only podnet's own route goes.
    let report = c.apply(0, &c.desired_with(Backend::HostGw, 0, &[]));
    assert_eq!(report.routes.deleted, [net("10.244.2.0/24")]);
    assert_eq!(
        node.ip_json(&["route", "show", "10.99.0.0/16"])[0]["protocol"],
        "static"
    );
    // `ip` leaves `proto boot` out as the default; asking for it by protocol finds it.
    let boot = node.ip_json(&["route", "show", "10.244.3.0/24", "proto", "boot"]);
    assert_eq!(boot[0]["gateway"], "192.168.50.3");
}

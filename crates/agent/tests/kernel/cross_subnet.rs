//! cross-subnet: two underlay subnets joined by a router that knows no pod CIDRs. host-gw
//! cannot cross it; cross-subnet routes directly on the subnet and tunnels across.

use podnet_agent::routing::{Backend, Warning, vtep_mac};
use podnet_kernel::netlink::format_mac;

use crate::{Cluster, podnet_routes, routing_dump};

#[test]
fn host_gw_alone_cannot_cross_a_router_but_cross_subnet_can() {
    // Nodes 1 and 2 on 192.168.50.0/24, node 3 on 192.168.51.0/24.
    let c = Cluster::new(&[0, 0, 1], false);

    let d = c.desired(Backend::HostGw, 0);
    assert!(
        d.warnings
            .iter()
            .any(|w| matches!(w, Warning::NotOnSubnet { peer, .. } if peer == "node-3")),
        "{:?}",
        d.warnings
    );
    c.apply_all(Backend::HostGw);
    assert!(c.pods_reach(0, 1, 0, 3), "same subnet works with host-gw");
    assert!(
        !c.pods_reach(0, 2, 0, 1),
        "host-gw cannot reach across the router"
    );
    assert!(!c.pods_reach(2, 0, 0, 1), "nor back");

    c.apply_all(Backend::CrossSubnet);
    c.assert_full_mesh();

    let node = &c.nodes[0].ns;
    let routes = podnet_routes(node);
    assert_eq!(
        routes,
        [
            "10.244.2.0/24 via 192.168.50.2 dev eth0",
            "10.244.3.0/24 via 10.244.3.0 dev podnet.1",
        ]
    );
    let dump = routing_dump(node);
    assert_eq!(dump["fdb"].as_array().unwrap().len(), 1, "{dump}");
    assert_eq!(dump["fdb"][0]["mac"], format_mac(&vtep_mac("node-3")));
    assert_eq!(dump["fdb"][0]["dst"], "192.168.51.3");

    for i in 0..3 {
        let again = c.apply(i, &c.desired(Backend::CrossSubnet, i));
        assert!(!again.changed(), "node {}: {again:?}", i + 1);
    }
}

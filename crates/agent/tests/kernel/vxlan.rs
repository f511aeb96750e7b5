//! vxlan: the overlay device with static neighbour and FDB entries, built, kept, repaired and
//! adopted by the applier.

use ipnet::IpNet;
use podnet_agent::routing::{Backend, DeviceChange, FdbEntry, Neighbour, vtep_mac};
use podnet_kernel::netlink::format_mac;

use crate::{Cluster, Monitor, routing_dump};

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

#[test]
fn vxlan_carries_pods_between_three_nodes() {
    let c = Cluster::new(&[0, 0, 0], false);
    c.apply_all(Backend::Vxlan);
    c.assert_full_mesh();

    let node = &c.nodes[0].ns;
    let link = &node.ip_json(&["-d", "link", "show", "podnet.1"])[0];
    let data = &link["linkinfo"]["info_data"];
    assert_eq!(data["id"], 1);
    assert_eq!(data["port"], 8472);
    assert_eq!(data["local"], "192.168.50.1");
    assert_eq!(data["learning"], false);
    assert_eq!(data["link"], "eth0");
    assert_eq!(link["mtu"], 1450);
    assert_eq!(link["address"], format_mac(&vtep_mac("node-1")));
    assert_eq!(node.addresses("podnet.1"), ["10.244.1.0/32"]);

    // Per peer: route via its VTEP address onlink, neighbour to its MAC, FDB to its node.
    let route = &node.ip_json(&["route", "show", "10.244.2.0/24"])[0];
    assert_eq!(route["gateway"], "10.244.2.0");
    assert_eq!(route["dev"], "podnet.1");
    assert_eq!(route["protocol"], "112");
    assert_eq!(route["flags"], serde_json::json!(["onlink"]));
    let neigh = node.ip_json(&["neigh", "show", "10.244.2.0", "dev", "podnet.1"]);
    assert_eq!(neigh[0]["lladdr"], format_mac(&vtep_mac("node-2")));
    assert_eq!(neigh[0]["state"], serde_json::json!(["PERMANENT"]));
    let dump = routing_dump(node);
    let fdb: Vec<(&str, &str)> = dump["fdb"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["mac"].as_str().unwrap(), e["dst"].as_str().unwrap()))
        .collect();
    let (m2, m3) = (
        format_mac(&vtep_mac("node-2")),
        format_mac(&vtep_mac("node-3")),
    );
    let mut want = vec![(m2.as_str(), "192.168.50.2"), (m3.as_str(), "192.168.50.3")];
    want.sort();
    let mut fdb = fdb;
    fdb.sort();
    assert_eq!(fdb, want);
}

#[test]
fn dual_stack_pods_cross_one_vxlan_device_over_an_ipv4_underlay() {
    let c = Cluster::new(&[0, 0], true);
    c.apply_all(Backend::Vxlan);
    c.assert_full_mesh();
    let node = &c.nodes[0].ns;
    let mut addrs = node.addresses("podnet.1");
    addrs.sort();
    assert_eq!(addrs, ["10.244.1.0/32", "fd00:10:244:1::/128"]);
    let route = &node.ip_json(&["-6", "route", "show", "proto", "112"])[0];
    assert_eq!(route["dst"], "fd00:10:244:2::/64");
    assert_eq!(route["gateway"], "fd00:10:244:2::");
    assert_eq!(route["dev"], "podnet.1");
}

#[test]
fn vxlan_apply_twice_changes_nothing_the_second_time() {
    let c = Cluster::new(&[0, 0], false);
    let d = c.desired(Backend::Vxlan, 0);
    let first = c.apply(0, &d);
    assert_eq!(first.device, Some(DeviceChange::Created));
    assert_eq!(first.routes.added, [net("10.244.2.0/24")]);
    assert_eq!(first.neighbours.added.len(), 1);
    assert_eq!(first.fdb.added.len(), 1);
    let second = c.apply(0, &d);
    assert!(!second.changed(), "second apply changed {second:?}");
}

#[test]
fn removing_a_peer_removes_its_route_neighbour_and_fdb_entry() {
    let c = Cluster::new(&[0, 0, 0], false);
    c.apply_all(Backend::Vxlan);
    let report = c.apply(0, &c.desired_with(Backend::Vxlan, 0, &[1]));
    let mac3 = vtep_mac("node-3");
    assert_eq!(report.routes.deleted, [net("10.244.3.0/24")]);
    assert_eq!(
        report.neighbours.deleted,
        [Neighbour {
            ip: "10.244.3.0".parse().unwrap(),
            mac: mac3
        }]
    );
    assert_eq!(
        report.fdb.deleted,
        [FdbEntry {
            mac: mac3,
            dst: "192.168.50.3".parse().unwrap()
        }]
    );
    let dump = routing_dump(&c.nodes[0].ns);
    let text = dump.to_string();
    assert!(!text.contains("10.244.3.0"), "{text}");
    assert!(!text.contains(&format_mac(&mac3)), "{text}");
    assert!(text.contains("10.244.2.0"), "{text}");
    assert!(c.pods_reach(0, 1, 0, 3));
    assert!(!c.pods_reach(0, 2, 0, 1));
}

#[test]
fn a_restarted_applier_adopts_the_kernel_state_without_a_single_change() {
    let c = Cluster::new(&[0, 0, 0], false);
    c.apply_all(Backend::Vxlan);
    let node = &c.nodes[0].ns;
    let before = routing_dump(node);

    let monitor = Monitor::start(node);
    let report = c.apply(0, &c.desired(Backend::Vxlan, 0)); // a fresh applier, as after a restart
    let events = monitor.stop();
    assert!(!report.changed(), "restart changed {report:?}");
    assert!(events.is_empty(), "the kernel saw changes: {events:#?}");
    assert_eq!(routing_dump(node), before);
    c.assert_full_mesh();

    // The monitor does see changes when there are some.
    let monitor = Monitor::start(node);
    c.apply(0, &c.desired_with(Backend::Vxlan, 0, &[1]));
    let events = monitor.stop();
    assert!(
        events.iter().any(|e| e.contains("10.244.3.0/24")),
        "{events:#?}"
    );
}

#[test]
fn a_peer_that_moved_keeps_its_fdb_entry_moved_in_place() {
    let c = Cluster::new(&[0, 0], false);
    c.apply(0, &c.desired(Backend::Vxlan, 0));
    let me = c.route_of(0);
    let mut peer = c.route_of(1);
    peer.underlay_ip = "192.168.50.99".parse().unwrap();
    let d = podnet_agent::routing::desired(Backend::Vxlan, &me, &[peer], 1500);
    let report = c.apply(0, &d);
    assert_eq!(report.fdb.replaced, d.fdb);
    assert!(report.fdb.added.is_empty() && report.fdb.deleted.is_empty());
    assert!(report.routes.is_empty() && report.neighbours.is_empty());
    let dump = routing_dump(&c.nodes[0].ns);
    assert_eq!(dump["fdb"].as_array().unwrap().len(), 1);
    assert_eq!(dump["fdb"][0]["dst"], "192.168.50.99");
}

#[test]
fn a_peer_that_moved_and_changed_its_mac_is_updated() {
    let c = Cluster::new(&[0, 0], false);
    c.apply(0, &c.desired(Backend::Vxlan, 0));
    let me = c.route_of(0);
    let mut peer = c.route_of(1);
    let old = FdbEntry {
        mac: peer.vtep_mac.unwrap(),
        dst: peer.underlay_ip,
    };
    peer.underlay_ip = "192.168.50.99".parse().unwrap();
    peer.vtep_mac = Some([0x02, 0, 0, 0, 0x99, 0x99]);
    let d = podnet_agent::routing::desired(Backend::Vxlan, &me, &[peer], 1500);
    let report = c.apply(0, &d);
    assert_eq!(report.neighbours.replaced.len(), 1);
    assert_eq!(report.fdb.added, d.fdb);
    assert_eq!(report.fdb.deleted, [old]);
    assert!(report.routes.is_empty(), "the route itself is unchanged");
    let dump = routing_dump(&c.nodes[0].ns);
    assert_eq!(dump["fdb"].as_array().unwrap().len(), 1);
    assert_eq!(dump["fdb"][0]["dst"], "192.168.50.99");
    assert_eq!(dump["neigh"][0]["lladdr"], "02:00:00:00:99:99");
}

#[test]
fn a_tampered_device_is_repaired_and_a_mismatched_one_recreated() {
    let c = Cluster::new(&[0, 0], false);
    c.apply_all(Backend::Vxlan);
    let d = c.desired(Backend::Vxlan, 0);
    let node = &c.nodes[0].ns;
    node.ip(&["link", "set", "podnet.1", "mtu", "1300"]);
    node.ip(&["addr", "add", "10.244.77.0/32", "dev", "podnet.1"]);
    node.ip(&["neigh", "del", "10.244.2.0", "dev", "podnet.1"]);
    let report = c.apply(0, &d);
    assert_eq!(
        report.device,
        Some(DeviceChange::Updated(vec![
            "mtu 1300 -> 1450".into(),
            "delete 10.244.77.0/32".into()
        ]))
    );
    assert_eq!(report.neighbours.added.len(), 1);
    assert!(report.routes.is_empty() && report.fdb.is_empty());
    assert!(c.pods_reach(1, 0, 0, 3));

    assert!(!c.apply(0, &d).changed());

    node.ip(&["link", "del", "podnet.1"]);
    node.ip(&[
        "link",
        "add",
        "podnet.1",
        "type",
        "vxlan",
        "id",
        "7",
        "local",
        "192.168.50.1",
        "dstport",
        "8472",
    ]);
    let report = c.apply(0, &d);
    assert_eq!(report.device, Some(DeviceChange::Recreated));
    assert_eq!(
        report.routes.added.len(),
        1,
        "the old device took its entries with it"
    );
    let link = &node.ip_json(&["-d", "link", "show", "podnet.1"])[0];
    assert_eq!(link["linkinfo"]["info_data"]["id"], 1);
    assert!(c.pods_reach(0, 1, 0, 3));
}

#[test]
fn switching_backends_deletes_or_creates_the_device_and_rewrites_the_routes() {
    let c = Cluster::new(&[0, 0], false);
    c.apply_all(Backend::Vxlan);
    c.assert_full_mesh();

    let report = c.apply(0, &c.desired(Backend::HostGw, 0));
    assert_eq!(report.device, Some(DeviceChange::Deleted));
    // The device took its routes with it: the host-gw route is new.
    assert_eq!(report.routes.added, [net("10.244.2.0/24")]);
    c.apply(1, &c.desired(Backend::HostGw, 1));
    assert!(!c.nodes[0].ns.link_names().contains(&"podnet.1".to_owned()));
    c.assert_full_mesh();

    let report = c.apply(0, &c.desired(Backend::Vxlan, 0));
    assert_eq!(report.device, Some(DeviceChange::Created));
    assert_eq!(report.routes.replaced, [net("10.244.2.0/24")]);
    c.apply(1, &c.desired(Backend::Vxlan, 1));
    c.assert_full_mesh();
}

#[test]
fn the_tunnels_own_packets_skip_conntrack_and_the_pods_inside_do_not() {
    use podnet_agent::masq;
    use podnet_agent::routing::VXLAN_PORT;
    use podnet_kernel::conntrack::{UdpFlow, list_udp};

    let c = Cluster::new(&[0, 0], false);
    c.apply_all(Backend::Vxlan);
    let cluster = [net("10.244.0.0/16")];
    let load = |tunnel_port| {
        for node in &c.nodes {
            let script = masq::render(&node.pod_cidrs, &cluster, tunnel_port);
            node.ns
                .run(|| podnet_kernel::nft::apply(&script))
                .unwrap_or_else(|e| panic!("{e}\n{script}"));
        }
    };
    let to = std::net::SocketAddr::new(c.nodes[1].pod_ips[0], 9999);
    let send = |port: u16| {
        c.nodes[0].pod.run(|| {
            let socket = std::net::UdpSocket::bind(("0.0.0.0", port)).unwrap();
            for _ in 0..3 {
                socket.send_to(b"x", to).unwrap();
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let flows = |i: usize| -> Vec<UdpFlow> { c.nodes[i].ns.run(list_udp).unwrap() };
    let tunnel = |f: &UdpFlow| f.orig_dst_port == VXLAN_PORT;
    let pods = |f: &UdpFlow| f.orig_dst == to.ip() && f.orig_dst_port == 9999;

    // Conntrack is on (the masquerade chain needs it): the pods' flow is tracked on both
    // nodes, the vxlan packets carrying it on neither.
    load(Some(VXLAN_PORT));
    send(40001);
    for i in 0..2 {
        let flows = flows(i);
        assert!(flows.iter().any(pods), "node {i}: {flows:?}");
        assert!(!flows.iter().any(tunnel), "node {i}: {flows:?}");
    }

    // Without the rules, the same packets are tracked: the check above can tell.
    load(None);
    send(40002);
    for i in 0..2 {
        let flows = flows(i);
        assert!(flows.iter().any(tunnel), "node {i}: {flows:?}");
    }
}

//! The netlink primitives routing is built on (podnet-kernel's), each read back through our own
//! dump and through `ip -j` / `bridge -j`.

use std::net::IpAddr;

use ipnet::IpNet;
use podnet_kernel::netlink::{Netlink, RouteProto, RouteSpec, VxlanSpec, format_mac};
use podnet_testkit::Netns;

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

/// Linux's `EINVAL` (the agent crate has no libc dependency for one constant).
const EINVAL: i32 = 22;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// A vxlan without learning on port 8472, with no underlay link, MTU or MAC of its own.
fn vxlan_spec(name: &str, vni: u32, local: &str) -> VxlanSpec {
    VxlanSpec {
        name: name.into(),
        vni,
        local: ip(local),
        port: 8472,
        underlay_index: None,
        mtu: None,
        mac: None,
        learning: false,
    }
}

/// A namespace with an "underlay" bridge holding 192.168.9.1/24 (and fd09::1/64), and a vxlan
/// device `vx0` over it; returns the namespace and the vxlan's index.
fn with_vxlan() -> (Netns, u32) {
    let ns = Netns::new("nl");
    ns.ip(&["link", "add", "ul0", "type", "bridge"]);
    ns.ip(&["link", "set", "ul0", "up"]);
    ns.ip(&["addr", "add", "192.168.9.1/24", "dev", "ul0"]);
    let index = ns.run(|| {
        let mut nl = Netlink::open().unwrap();
        let ul = nl.link("ul0").unwrap().unwrap();
        nl.add_vxlan(&VxlanSpec {
            underlay_index: Some(ul.index),
            mtu: Some(1450),
            mac: Some(MAC_A),
            ..vxlan_spec("vx0", 42, "192.168.9.1")
        })
        .unwrap();
        let vx = nl.link("vx0").unwrap().unwrap();
        nl.set_up(vx.index).unwrap();
        vx.index
    });
    (ns, index)
}

#[test]
fn add_vxlan_creates_the_device_it_describes_and_reads_it_back() {
    let (ns, index) = with_vxlan();
    let link = &ns.ip_json(&["-d", "link", "show", "vx0"])[0];
    let data = &link["linkinfo"]["info_data"];
    assert_eq!(link["linkinfo"]["info_kind"], "vxlan");
    assert_eq!(data["id"], 42);
    assert_eq!(data["local"], "192.168.9.1");
    assert_eq!(data["port"], 8472);
    assert_eq!(data["learning"], false);
    assert_eq!(data["link"], "ul0");
    assert_eq!(link["mtu"], 1450);
    assert_eq!(link["address"], format_mac(&MAC_A));

    let info = ns.run(|| Netlink::open().unwrap().vxlan("vx0").unwrap().unwrap());
    assert_eq!(info.link.index, index);
    assert_eq!(info.link.kind.as_deref(), Some("vxlan"));
    assert_eq!(info.vni, Some(42));
    assert_eq!(info.local, Some(ip("192.168.9.1")));
    assert_eq!(info.port, Some(8472));
    assert_eq!(info.learning, Some(false));
    assert!(info.underlay_index.is_some());
    let same = VxlanSpec {
        underlay_index: info.underlay_index,
        ..vxlan_spec("vx0", 42, "192.168.9.1")
    };
    assert!(info.same_tunnel(&same));
    assert!(!info.same_tunnel(&VxlanSpec { vni: 43, ..same }));
    assert!(
        ns.run(|| Netlink::open().unwrap().vxlan("nope").unwrap())
            .is_none()
    );
}

#[test]
fn add_vxlan_refuses_a_taken_name_and_caps_the_mtu_at_the_underlays() {
    let (ns, _) = with_vxlan();
    ns.run(|| {
        let mut nl = Netlink::open().unwrap();
        let ul = nl.link("ul0").unwrap().unwrap();
        let spec = VxlanSpec {
            underlay_index: Some(ul.index),
            ..vxlan_spec("vx0", 7, "192.168.9.1")
        };
        assert!(nl.add_vxlan(&spec).unwrap_err().is_exists());
        nl.add_vxlan(&VxlanSpec {
            name: "vx1".into(),
            mtu: Some(1500),
            ..spec
        })
        .unwrap();
        let vx1 = nl.link("vx1").unwrap().unwrap();
        assert_eq!(vx1.mtu, 1450, "1500 minus 50 bytes of VXLAN over IPv4");
        let err = nl.set_mtu(vx1.index, 1500).unwrap_err();
        assert_eq!(err.errno(), Some(EINVAL), "{err}");
        assert!(err.to_string().contains("MTU"), "{err}");
    });
}

#[test]
fn set_mtu_set_address_and_delete_address_change_the_link() {
    let (ns, index) = with_vxlan();
    let deleted = ns.run(|| {
        let mut nl = Netlink::open().unwrap();
        nl.set_mtu(index, 1400).unwrap();
        nl.set_address(index, MAC_B).unwrap();
        nl.add_address(index, net("10.244.1.0/32"), true).unwrap();
        nl.add_address(index, net("10.244.9.0/32"), true).unwrap();
        let first = nl.delete_address(index, net("10.244.9.0/32")).unwrap();
        let again = nl.delete_address(index, net("10.244.9.0/32")).unwrap();
        (first, again)
    });
    assert_eq!(deleted, (true, false));
    let link = &ns.ip_json(&["link", "show", "vx0"])[0];
    assert_eq!(link["mtu"], 1400);
    assert_eq!(link["address"], format_mac(&MAC_B));
    assert_eq!(ns.addresses("vx0"), ["10.244.1.0/32"]);
}

#[test]
fn neighbours_are_replaced_read_back_and_deleted() {
    let (ns, index) = with_vxlan();
    let (v4, v6) = (ip("10.244.2.0"), ip("fd00:10:244:2::"));
    ns.run(|| {
        let mut nl = Netlink::open().unwrap();
        nl.replace_neighbour(index, v4, MAC_A).unwrap();
        nl.replace_neighbour(index, v6, MAC_A).unwrap();
        // Replacing with the same MAC is fine; with another one moves the entry.
        nl.replace_neighbour(index, v4, MAC_A).unwrap();
        nl.replace_neighbour(index, v4, MAC_B).unwrap();
        let mut got = nl.neighbours(index).unwrap();
        got.sort();
        assert_eq!(got, [(v4, MAC_B), (v6, MAC_A)]);
    });
    let shown = ns.ip_json(&["neigh", "show", "dev", "vx0"]);
    let shown: Vec<(String, String, String)> = shown
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["dst"].as_str().unwrap().to_owned(),
                n["lladdr"].as_str().unwrap().to_owned(),
                n["state"][0].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(shown.contains(&("10.244.2.0".into(), format_mac(&MAC_B), "PERMANENT".into())));
    assert!(shown.contains(&(
        "fd00:10:244:2::".into(),
        format_mac(&MAC_A),
        "PERMANENT".into()
    )));

    ns.run(|| {
        let mut nl = Netlink::open().unwrap();
        assert!(nl.delete_neighbour(index, v4).unwrap());
        assert!(
            !nl.delete_neighbour(index, v4).unwrap(),
            "second delete finds nothing"
        );
        assert_eq!(nl.neighbours(index).unwrap(), [(v6, MAC_A)]);
    });
    assert_eq!(
        ns.ip_json(&["-4", "neigh", "show", "dev", "vx0"]),
        serde_json::json!([])
    );
}

#[test]
fn neighbours_lists_only_permanent_entries_of_its_link() {
    let (ns, index) = with_vxlan();
    // A resolved (not permanent) entry, and a permanent one on another link.
    ns.ip(&[
        "neigh",
        "add",
        "10.244.3.0",
        "lladdr",
        "02:00:00:00:00:33",
        "dev",
        "vx0",
        "nud",
        "reachable",
    ]);
    ns.ip(&[
        "neigh",
        "add",
        "192.168.9.7",
        "lladdr",
        "02:00:00:00:00:77",
        "dev",
        "ul0",
        "nud",
        "permanent",
    ]);
    let got = ns.run(|| Netlink::open().unwrap().neighbours(index).unwrap());
    assert!(got.is_empty(), "{got:?}");
}

#[test]
fn fdb_entries_are_appended_replaced_read_back_and_deleted() {
    let (ns, index) = with_vxlan();
    let (a, b) = (ip("192.168.9.2"), ip("192.168.9.3"));
    ns.run(|| {
        let mut nl = Netlink::open().unwrap();
        nl.append_fdb(index, MAC_A, a).unwrap();
        nl.append_fdb(index, MAC_A, a).unwrap(); // appending what is there changes nothing
        nl.append_fdb(index, MAC_B, b).unwrap();
        // A unicast MAC keeps one remote: a second append is ignored, a replace moves it.
        nl.append_fdb(index, MAC_B, a).unwrap();
        let mut got = nl.fdb(index).unwrap();
        got.sort();
        assert_eq!(got, [(MAC_A, a), (MAC_B, b)]);
        nl.replace_fdb(index, MAC_A, b).unwrap();
        let mut got = nl.fdb(index).unwrap();
        got.sort();
        assert_eq!(got, [(MAC_A, b), (MAC_B, b)]);
    });
    let (ok, out, err) = ns.exec("bridge", &["-j", "fdb", "show", "dev", "vx0"]);
    assert!(ok, "{err}");
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut shown: Vec<(String, String)> = shown
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["state"] == "permanent")
        .map(|e| {
            (
                e["mac"].as_str().unwrap().to_owned(),
                e["dst"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    shown.sort();
    assert_eq!(
        shown,
        [
            (format_mac(&MAC_A), b.to_string()),
            (format_mac(&MAC_B), b.to_string()),
        ]
    );

    ns.run(|| {
        let mut nl = Netlink::open().unwrap();
        assert!(nl.delete_fdb(index, MAC_B, b).unwrap());
        assert!(
            !nl.delete_fdb(index, MAC_B, b).unwrap(),
            "second delete finds nothing"
        );
        assert_eq!(nl.fdb(index).unwrap(), [(MAC_A, b)]);
    });
}

#[test]
fn the_all_zeros_fdb_entry_takes_several_remotes() {
    let (ns, index) = with_vxlan();
    let (a, b) = (ip("192.168.9.2"), ip("192.168.9.3"));
    let got = ns.run(|| {
        let mut nl = Netlink::open().unwrap();
        nl.append_fdb(index, [0; 6], a).unwrap();
        nl.append_fdb(index, [0; 6], b).unwrap();
        assert!(nl.delete_fdb(index, [0; 6], a).unwrap());
        let mut got = nl.fdb(index).unwrap();
        got.sort();
        got
    });
    assert_eq!(got, [([0; 6], b)]);
}

#[test]
fn fdb_reads_ipv6_remotes() {
    let ns = Netns::new("nl6");
    ns.ip(&["link", "add", "ul0", "type", "bridge"]);
    ns.ip(&["link", "set", "ul0", "up"]);
    ns.ip(&["addr", "add", "fd09::1/64", "dev", "ul0", "nodad"]);
    let got = ns.run(|| {
        let mut nl = Netlink::open().unwrap();
        nl.add_vxlan(&vxlan_spec("vx6", 1, "fd09::1")).unwrap();
        let index = nl.link("vx6").unwrap().unwrap().index;
        nl.append_fdb(index, MAC_A, ip("fd09::2")).unwrap();
        let info = nl.vxlan("vx6").unwrap().unwrap();
        assert_eq!(info.local, Some(ip("fd09::1")));
        assert_eq!(info.underlay_index, None);
        nl.fdb(index).unwrap()
    });
    assert_eq!(got, [(MAC_A, ip("fd09::2"))]);
}

fn podnet_route(dst: &str, gateway: &str, oif: Option<u32>, onlink: bool) -> RouteSpec {
    RouteSpec {
        dst: net(dst),
        gateway: Some(ip(gateway)),
        oif,
        link_scope: false,
        onlink,
        protocol: RouteProto::PODNET,
    }
}

#[test]
fn routes_carry_their_protocol_and_onlink_and_replace_changes_them_in_place() {
    let (ns, index) = with_vxlan();
    ns.run(|| {
        let mut nl = Netlink::open().unwrap();
        let onlink = podnet_route("10.244.2.0/24", "10.244.2.0", Some(index), true);
        nl.replace_route(&onlink).unwrap();
        nl.replace_route(&onlink).unwrap(); // the same again is no error
        let got: Vec<_> = nl
            .routes(false)
            .unwrap()
            .into_iter()
            .filter(|r| r.dst == net("10.244.2.0/24"))
            .collect();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].protocol, RouteProto::PODNET);
        assert!(got[0].onlink);
        assert_eq!(got[0].oif, Some(index));
        assert!(got[0].satisfies(&onlink));

        // Now via the underlay instead: one route still, changed.
        let direct = podnet_route("10.244.2.0/24", "192.168.9.2", None, false);
        nl.replace_route(&direct).unwrap();
        let got: Vec<_> = nl
            .routes(false)
            .unwrap()
            .into_iter()
            .filter(|r| r.dst == net("10.244.2.0/24"))
            .collect();
        assert_eq!(got.len(), 1);
        assert!(got[0].satisfies(&direct), "{got:?}");
        assert!(!got[0].satisfies(&onlink));
        assert!(!got[0].onlink);
    });
    let shown = ns.ip_json(&["route", "show", "10.244.2.0/24"]);
    assert_eq!(shown[0]["protocol"], "112");
    assert_eq!(shown[0]["gateway"], "192.168.9.2");
    assert_eq!(shown[0]["dev"], "ul0");
    assert_eq!(shown.as_array().unwrap().len(), 1);
}

#[test]
fn delete_route_deletes_only_a_route_of_its_protocol() {
    let (ns, index) = with_vxlan();
    ns.ip(&[
        "route",
        "add",
        "10.244.7.0/24",
        "via",
        "192.168.9.7",
        "proto",
        "static",
    ]);
    ns.run(|| {
        let mut nl = Netlink::open().unwrap();
        let theirs = podnet_route("10.244.7.0/24", "192.168.9.7", None, false);
        assert!(
            !nl.delete_route(&theirs).unwrap(),
            "a static route is not podnet's"
        );

        let ours = podnet_route("10.244.2.0/24", "10.244.2.0", Some(index), true);
        nl.replace_route(&ours).unwrap();
        assert!(nl.delete_route(&ours).unwrap());
        assert!(
            !nl.delete_route(&ours).unwrap(),
            "second delete finds nothing"
        );
    });
    let shown = ns.ip_json(&["route", "show", "10.244.7.0/24"]);
    assert_eq!(shown[0]["protocol"], "static");
    assert!(
        ns.ip_json(&["route", "show", "proto", "112"])
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn ipv6_routes_are_replaced_and_deleted_with_their_protocol() {
    let (ns, index) = with_vxlan();
    ns.run(|| {
        let mut nl = Netlink::open().unwrap();
        let ours = podnet_route("fd00:10:244:2::/64", "fd00:10:244:2::", Some(index), true);
        nl.replace_route(&ours).unwrap();
        let got: Vec<_> = nl
            .routes(true)
            .unwrap()
            .into_iter()
            .filter(|r| r.protocol == RouteProto::PODNET)
            .collect();
        assert_eq!(got.len(), 1);
        assert!(got[0].satisfies(&ours), "{got:?}");
    });
    let shown = ns.ip_json(&["-6", "route", "show", "proto", "112"]);
    assert_eq!(shown[0]["dst"], "fd00:10:244:2::/64");
    assert_eq!(shown[0]["dev"], "vx0");
    ns.run(|| {
        let mut nl = Netlink::open().unwrap();
        let ours = podnet_route("fd00:10:244:2::/64", "fd00:10:244:2::", Some(index), true);
        assert!(nl.delete_route(&ours).unwrap());
    });
    assert!(
        ns.ip_json(&["-6", "route", "show", "proto", "112"])
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn the_cni_plugins_routes_keep_protocol_boot() {
    let (ns, _) = with_vxlan();
    ns.run(|| {
        let mut nl = Netlink::open().unwrap();
        nl.add_route(&RouteSpec {
            dst: net("10.99.0.0/16"),
            gateway: Some(ip("192.168.9.9")),
            oif: None,
            link_scope: false,
            onlink: false,
            protocol: RouteProto::BOOT,
        })
        .unwrap();
        let r = nl
            .routes(false)
            .unwrap()
            .into_iter()
            .find(|r| r.dst == net("10.99.0.0/16"))
            .unwrap();
        assert_eq!(r.protocol, RouteProto::BOOT);
    });
    // `ip` leaves `proto boot` out as the default; asking for it by protocol finds it.
    let shown = ns.ip_json(&["route", "show", "10.99.0.0/16", "proto", "boot"]);
    assert_eq!(shown.as_array().unwrap().len(), 1);
}

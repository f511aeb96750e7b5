//! Tests of the pure half: examples pinning flannel's shapes, then properties over random
//! clusters.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use proptest::prelude::*;

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// Node `n` on underlay subnet `192.168.<subnet>.0/24` with pod CIDR `10.244.<n>.0/24` and its
/// published VTEP MAC.
fn node(n: u8, subnet: u8) -> NodeRoute {
    let name = format!("node-{n}");
    NodeRoute {
        vtep_mac: Some(vtep_mac(&name)),
        name,
        underlay_ip: IpAddr::from([192, 168, subnet, n]),
        underlay_prefix: 24,
        pod_cidrs: vec![IpNet::new(IpAddr::from([10, 244, n, 0]), 24).unwrap()],
    }
}

fn dual_stack(mut node: NodeRoute) -> NodeRoute {
    let n = node
        .underlay_ip
        .to_string()
        .rsplit('.')
        .next()
        .unwrap()
        .to_owned();
    node.pod_cidrs.push(net(&format!("fd00:10:244:{n}::/64")));
    node
}

#[test]
fn backend_parses_its_three_names() {
    assert_eq!("host-gw".parse(), Ok(Backend::HostGw));
    assert_eq!("vxlan".parse(), Ok(Backend::Vxlan));
    assert_eq!("cross-subnet".parse(), Ok(Backend::CrossSubnet));
    for b in [Backend::HostGw, Backend::Vxlan, Backend::CrossSubnet] {
        assert_eq!(b.to_string().parse(), Ok(b));
    }
}

#[test]
fn unknown_backend_error_names_the_value_and_the_choices() {
    let err = "udp".parse::<Backend>().unwrap_err().to_string();
    assert!(err.contains("\"udp\""), "{err}");
    for choice in ["host-gw", "vxlan", "cross-subnet"] {
        assert!(err.contains(choice), "{err}");
    }
}

#[test]
fn vtep_mac_is_stable_unicast_and_locally_administered() {
    // Pinned: a change here changes every node's MAC on upgrade, which peers would route to in
    // vain until they see the new annotation.
    assert_eq!(
        podnet_kernel::netlink::format_mac(&vtep_mac("node-1")),
        "e6:96:ec:c2:20:78"
    );
    for name in [
        "",
        "a",
        "node-1",
        "node-2",
        "a-very-long-node-name.example.com",
    ] {
        let mac = vtep_mac(name);
        assert_eq!(mac[0] & 0x01, 0, "{name}: unicast");
        assert_eq!(mac[0] & 0x02, 0x02, "{name}: locally administered");
        assert_eq!(mac, vtep_mac(name));
    }
    assert_ne!(vtep_mac("node-1"), vtep_mac("node-2"));
}

#[test]
fn vxlan_mtu_takes_50_bytes_over_ipv4_and_70_over_ipv6() {
    assert_eq!(vxlan_mtu(ip("192.168.0.1"), 1500), 1450);
    assert_eq!(vxlan_mtu(ip("fd00::1"), 1500), 1430);
    assert_eq!(vxlan_mtu(ip("192.168.0.1"), 9000), 8950);
    assert_eq!(vxlan_mtu(ip("192.168.0.1"), 20), 0);
}

#[test]
fn host_gw_routes_each_peer_pod_cidr_via_its_underlay_address() {
    let d = desired(
        Backend::HostGw,
        &node(1, 0),
        &[node(2, 0), node(3, 0)],
        1500,
    );
    assert_eq!(
        d.routes,
        vec![
            Route {
                dst: net("10.244.2.0/24"),
                gateway: ip("192.168.0.2"),
                encap: Encap::None
            },
            Route {
                dst: net("10.244.3.0/24"),
                gateway: ip("192.168.0.3"),
                encap: Encap::None
            },
        ]
    );
    assert!(d.neighbours.is_empty() && d.fdb.is_empty());
    assert_eq!(d.vxlan, None);
    assert_eq!(d.pod_mtu, 1500);
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
}

#[test]
fn host_gw_warns_about_a_peer_off_its_subnet_instead_of_routing_it() {
    let d = desired(
        Backend::HostGw,
        &node(1, 0),
        &[node(2, 0), node(3, 1)],
        1500,
    );
    assert_eq!(
        d.routes.iter().map(|r| r.dst).collect::<Vec<_>>(),
        [net("10.244.2.0/24")]
    );
    assert_eq!(
        d.warnings,
        [Warning::NotOnSubnet {
            peer: "node-3".into(),
            underlay_ip: ip("192.168.1.3"),
            subnet: Some(net("192.168.0.0/24")),
        }]
    );
    assert!(d.warnings[0].to_string().contains("node-3"));
}

#[test]
fn vxlan_gives_each_peer_one_route_one_neighbour_and_one_fdb_entry() {
    let (n2, n3) = (node(2, 0), node(3, 1));
    let d = desired(Backend::Vxlan, &node(1, 0), &[n3.clone(), n2.clone()], 1500);
    assert_eq!(
        d.routes,
        vec![
            Route {
                dst: net("10.244.2.0/24"),
                gateway: ip("10.244.2.0"),
                encap: Encap::Vxlan
            },
            Route {
                dst: net("10.244.3.0/24"),
                gateway: ip("10.244.3.0"),
                encap: Encap::Vxlan
            },
        ]
    );
    let mut neighbours = vec![
        Neighbour {
            ip: ip("10.244.2.0"),
            mac: n2.vtep_mac.unwrap(),
        },
        Neighbour {
            ip: ip("10.244.3.0"),
            mac: n3.vtep_mac.unwrap(),
        },
    ];
    neighbours.sort();
    assert_eq!(d.neighbours, neighbours);
    let mut fdb = vec![
        FdbEntry {
            mac: n2.vtep_mac.unwrap(),
            dst: n2.underlay_ip,
        },
        FdbEntry {
            mac: n3.vtep_mac.unwrap(),
            dst: n3.underlay_ip,
        },
    ];
    fdb.sort();
    assert_eq!(d.fdb, fdb);
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
}

#[test]
fn vxlan_device_is_podnet_1_on_vni_1_port_8472_with_the_pod_network_address() {
    let mut me = node(1, 0);
    me.vtep_mac = None;
    let d = desired(Backend::Vxlan, &me, &[], 1500);
    assert_eq!(
        d.vxlan,
        Some(VxlanPlan {
            name: "podnet.1".into(),
            vni: 1,
            port: 8472,
            local: ip("192.168.0.1"),
            mtu: 1450,
            mac: vtep_mac("node-1"),
            addresses: vec![net("10.244.1.0/32")],
        })
    );
    assert_eq!(d.pod_mtu, 1450);
}

#[test]
fn a_published_own_vtep_mac_is_kept() {
    let mut me = node(1, 0);
    me.vtep_mac = Some([0x02, 1, 2, 3, 4, 5]);
    let d = desired(Backend::Vxlan, &me, &[], 1500);
    assert_eq!(d.vxlan.unwrap().mac, [0x02, 1, 2, 3, 4, 5]);
}

#[test]
fn a_vxlan_peer_without_a_vtep_mac_waits_for_it() {
    let mut n2 = node(2, 0);
    n2.vtep_mac = None;
    let d = desired(Backend::Vxlan, &node(1, 0), &[n2, node(3, 0)], 1500);
    assert_eq!(
        d.routes.iter().map(|r| r.dst).collect::<Vec<_>>(),
        [net("10.244.3.0/24")]
    );
    assert_eq!(d.neighbours.len(), 1);
    assert_eq!(d.fdb.len(), 1);
    assert_eq!(
        d.warnings,
        [Warning::NoVtepMac {
            peer: "node-2".into()
        }]
    );
}

#[test]
fn cross_subnet_routes_directly_on_its_subnet_and_through_vxlan_beyond() {
    let d = desired(
        Backend::CrossSubnet,
        &node(1, 0),
        &[node(2, 0), node(3, 1)],
        1500,
    );
    assert_eq!(
        d.routes,
        vec![
            Route {
                dst: net("10.244.2.0/24"),
                gateway: ip("192.168.0.2"),
                encap: Encap::None
            },
            Route {
                dst: net("10.244.3.0/24"),
                gateway: ip("10.244.3.0"),
                encap: Encap::Vxlan
            },
        ]
    );
    assert_eq!(d.fdb.len(), 1);
    assert_eq!(d.fdb[0].dst, ip("192.168.1.3"));
    // The device exists even if every peer is on the subnet: farther peers reach us through it.
    assert!(d.vxlan.is_some());
    assert_eq!(d.pod_mtu, 1450);
}

#[test]
fn dual_stack_vxlan_routes_both_families_through_one_device() {
    let me = dual_stack(node(1, 0));
    let n2 = dual_stack(node(2, 0));
    let d = desired(Backend::Vxlan, &me, std::slice::from_ref(&n2), 1500);
    assert_eq!(
        d.routes
            .iter()
            .map(|r| (r.dst, r.gateway))
            .collect::<Vec<_>>(),
        [
            (net("10.244.2.0/24"), ip("10.244.2.0")),
            (net("fd00:10:244:2::/64"), ip("fd00:10:244:2::")),
        ]
    );
    assert_eq!(d.neighbours.len(), 2);
    assert!(d.neighbours.iter().all(|n| Some(n.mac) == n2.vtep_mac));
    assert_eq!(
        d.fdb.len(),
        1,
        "one FDB entry per peer, whatever its families"
    );
    assert_eq!(
        d.vxlan.unwrap().addresses,
        [net("10.244.1.0/32"), net("fd00:10:244:1::/128")]
    );
}

#[test]
fn host_gw_cannot_route_ipv6_pods_via_an_ipv4_underlay_but_cross_subnet_tunnels_them() {
    let me = dual_stack(node(1, 0));
    let n2 = dual_stack(node(2, 0));
    let d = desired(Backend::HostGw, &me, std::slice::from_ref(&n2), 1500);
    assert_eq!(
        d.routes.iter().map(|r| r.dst).collect::<Vec<_>>(),
        [net("10.244.2.0/24")]
    );
    assert!(matches!(
        &d.warnings[..],
        [Warning::FamilyMismatch { cidr, .. }] if *cidr == net("fd00:10:244:2::/64")
    ));

    let d = desired(Backend::CrossSubnet, &me, &[n2], 1500);
    assert_eq!(
        d.routes
            .iter()
            .map(|r| (r.dst, r.encap))
            .collect::<Vec<_>>(),
        [
            (net("10.244.2.0/24"), Encap::None),
            (net("fd00:10:244:2::/64"), Encap::Vxlan),
        ]
    );
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
}

#[test]
fn vxlan_cannot_reach_a_peer_whose_underlay_is_of_the_other_family() {
    let mut n2 = node(2, 0);
    n2.underlay_ip = ip("fd00:1::2");
    let d = desired(Backend::Vxlan, &node(1, 0), &[n2], 1500);
    assert!(d.routes.is_empty());
    assert!(matches!(
        &d.warnings[..],
        [Warning::UnderlayFamilyMismatch { .. }]
    ));
}

#[test]
fn me_among_the_peers_is_skipped_and_a_peer_claiming_my_cidr_is_not_routed() {
    let me = node(1, 0);
    let mut thief = node(2, 0);
    thief.pod_cidrs = vec![net("10.244.1.128/25")];
    let d = desired(Backend::HostGw, &me, &[me.clone(), thief], 1500);
    assert!(d.routes.is_empty());
    assert_eq!(
        d.warnings,
        [Warning::OverlapsOwn {
            peer: "node-2".into(),
            cidr: net("10.244.1.128/25"),
            own: net("10.244.1.0/24"),
        }]
    );
}

#[test]
fn of_two_peers_with_overlapping_cidrs_the_first_by_name_is_routed_whatever_the_order() {
    let a = node(2, 0);
    let mut b = node(3, 0);
    b.pod_cidrs = vec![net("10.244.2.0/23")];
    let one = desired(Backend::Vxlan, &node(1, 0), &[a.clone(), b.clone()], 1500);
    let other = desired(Backend::Vxlan, &node(1, 0), &[b, a], 1500);
    assert_eq!(one, other);
    assert_eq!(
        one.routes.iter().map(|r| r.dst).collect::<Vec<_>>(),
        [net("10.244.2.0/24")]
    );
    assert!(matches!(&one.warnings[..], [Warning::OverlapsPeer { peer, .. }] if peer == "node-3"));
}

#[test]
fn a_vtep_mac_that_is_not_unicast_or_already_taken_is_not_routed() {
    let me = node(1, 0);
    let mut multicast = node(2, 0);
    multicast.vtep_mac = Some([0x01, 0, 0x5e, 0, 0, 1]);
    let mut zero = node(3, 0);
    zero.vtep_mac = Some([0; 6]);
    let mut copy_of_4 = node(5, 0);
    copy_of_4.vtep_mac = node(4, 0).vtep_mac;
    let mut copy_of_mine = node(6, 0);
    copy_of_mine.vtep_mac = me.vtep_mac;
    let d = desired(
        Backend::Vxlan,
        &me,
        &[multicast, zero, node(4, 0), copy_of_4, copy_of_mine],
        1500,
    );
    assert_eq!(
        d.routes.iter().map(|r| r.dst).collect::<Vec<_>>(),
        [net("10.244.4.0/24")]
    );
    assert!(
        matches!(
            &d.warnings[..],
            [
                Warning::InvalidVtepMac { peer: a, .. },
                Warning::InvalidVtepMac { peer: b, .. },
                Warning::DuplicateVtepMac { peer: c, other: c_owner, .. },
                Warning::DuplicateVtepMac { peer: e, other: e_owner, .. },
            ] if a == "node-2" && b == "node-3" && c == "node-5" && c_owner == "node-4"
                && e == "node-6" && e_owner == "node-1"
        ),
        "{:?}",
        d.warnings
    );
}

// === properties ===

/// A cluster of 2–8 nodes on two underlay subnets, each with a unique IPv4 pod CIDR, some
/// dual-stack, some without a published VTEP MAC; node 0 is "me".
fn cluster() -> impl Strategy<Value = Vec<NodeRoute>> {
    prop::collection::vec((0u8..2, any::<bool>(), any::<bool>()), 2..8).prop_map(|spec| {
        spec.into_iter()
            .enumerate()
            .map(|(i, (subnet, has_mac, v6))| {
                let n = u8::try_from(i + 1).unwrap();
                let mut node = node(n, subnet);
                if !has_mac && i > 0 {
                    node.vtep_mac = None;
                }
                if v6 { dual_stack(node) } else { node }
            })
            .collect()
    })
}

fn backend() -> impl Strategy<Value = Backend> {
    prop_oneof![
        Just(Backend::HostGw),
        Just(Backend::Vxlan),
        Just(Backend::CrossSubnet)
    ]
}

/// Whether `backend` can route `cidr` of `peer` from `me`, by the rules stated independently
/// of the implementation.
fn reachable(backend: Backend, me: &NodeRoute, peer: &NodeRoute, cidr: &IpNet) -> bool {
    let same_subnet = me.underlay_ip.to_string().split('.').nth(2)
        == peer.underlay_ip.to_string().split('.').nth(2);
    let direct = same_subnet && cidr.addr().is_ipv4();
    let tunnel = peer.vtep_mac.is_some();
    match backend {
        Backend::HostGw => direct,
        Backend::Vxlan => tunnel,
        Backend::CrossSubnet => direct || tunnel,
    }
}

proptest! {
    #[test]
    fn every_reachable_peer_cidr_is_routed_exactly_once_and_the_others_are_warned_about(
        backend in backend(), nodes in cluster(),
    ) {
        let (me, peers) = (&nodes[0], &nodes[1..]);
        let d = desired(backend, me, peers, 1500);
        for peer in peers {
            for cidr in &peer.pod_cidrs {
                let n = d.routes.iter().filter(|r| r.dst == *cidr).count();
                if reachable(backend, me, peer, cidr) {
                    prop_assert_eq!(n, 1, "{} of {}", cidr, peer.name);
                } else {
                    prop_assert_eq!(n, 0, "{} of {}", cidr, peer.name);
                    prop_assert!(
                        d.warnings.iter().any(|w| w.to_string().contains(&peer.name)),
                        "no warning names {}: {:?}", peer.name, d.warnings
                    );
                }
            }
        }
        let all: BTreeSet<IpNet> = peers.iter().flat_map(|p| p.pod_cidrs.clone()).collect();
        prop_assert!(d.routes.iter().all(|r| all.contains(&r.dst)));
    }

    #[test]
    fn no_route_ever_covers_my_own_pod_cidr(
        backend in backend(), nodes in cluster(), stolen in 0usize..8,
    ) {
        let mut nodes = nodes;
        // Some peer also claims (part of) my CIDR.
        let k = 1 + stolen % (nodes.len() - 1);
        nodes[k].pod_cidrs.push(net("10.244.1.64/26"));
        let (me, peers) = (&nodes[0], &nodes[1..]);
        let d = desired(backend, me, peers, 1500);
        for route in &d.routes {
            for own in &me.pod_cidrs {
                prop_assert!(!own.contains(&route.dst.network()) && !route.dst.contains(&own.network()),
                    "{} overlaps my {}", route.dst, own);
            }
        }
    }

    #[test]
    fn cross_subnet_uses_host_gw_exactly_for_peers_on_my_subnet(nodes in cluster()) {
        let (me, peers) = (&nodes[0], &nodes[1..]);
        let d = desired(Backend::CrossSubnet, me, peers, 1500);
        for route in &d.routes {
            let peer = peers.iter().find(|p| p.pod_cidrs.contains(&route.dst)).unwrap();
            let direct = me.shares_subnet_with(peer) && route.dst.addr().is_ipv4();
            prop_assert_eq!(route.encap == Encap::None, direct, "{:?}", route);
            if direct {
                prop_assert_eq!(route.gateway, peer.underlay_ip);
            } else {
                prop_assert_eq!(route.gateway, route.dst.network());
            }
        }
    }

    #[test]
    fn removing_a_peer_removes_exactly_its_entries(
        backend in backend(), nodes in cluster(), gone in 0usize..8,
    ) {
        let (me, peers) = (&nodes[0], &nodes[1..]);
        let gone = &peers[gone % peers.len()];
        let rest: Vec<NodeRoute> = peers.iter().filter(|p| p.name != gone.name).cloned().collect();
        let before = desired(backend, me, peers, 1500);
        let after = desired(backend, me, &rest, 1500);

        let diff = |a: &[Route], b: &[Route]| -> Vec<Route> {
            a.iter().filter(|r| !b.contains(r)).cloned().collect()
        };
        prop_assert!(diff(&after.routes, &before.routes).is_empty(), "nothing appears");
        for route in diff(&before.routes, &after.routes) {
            prop_assert!(gone.pod_cidrs.contains(&route.dst), "{:?} is not {}'s", route, gone.name);
        }
        prop_assert!(after.routes.iter().all(|r| !gone.pod_cidrs.contains(&r.dst)));
        let gone_ips: Vec<IpAddr> = gone.pod_cidrs.iter().map(IpNet::network).collect();
        for n in &before.neighbours {
            prop_assert_eq!(after.neighbours.contains(n), !gone_ips.contains(&n.ip));
        }
        for f in &before.fdb {
            prop_assert_eq!(after.fdb.contains(f), f.dst != gone.underlay_ip);
        }
        prop_assert!(after.neighbours.iter().all(|n| before.neighbours.contains(n)));
        prop_assert!(after.fdb.iter().all(|f| before.fdb.contains(f)));
        prop_assert_eq!(before.vxlan, after.vxlan);
    }

    #[test]
    fn the_order_of_peers_does_not_matter(
        backend in backend(),
        (nodes, shuffled) in cluster().prop_flat_map(|n| {
            let peers = n[1..].to_vec();
            (Just(n), Just(peers).prop_shuffle())
        }),
    ) {
        prop_assert_eq!(
            desired(backend, &nodes[0], &nodes[1..], 1500),
            desired(backend, &nodes[0], &shuffled, 1500)
        );
    }

    #[test]
    fn routed_cidrs_never_overlap_and_vxlan_next_hops_are_unique(
        backend in backend(),
        nodes in cluster(),
        extra in prop::collection::vec((1usize..8, 16u8..28, 0u8..8), 0..6),
    ) {
        // Peers with arbitrary extra (overlapping) CIDRs inside 10.244.0.0/16.
        let mut nodes = nodes;
        for (k, len, third) in extra {
            let k = 1 + k % (nodes.len() - 1);
            nodes[k].pod_cidrs.push(IpNet::new(IpAddr::from([10, 244, third, 0]), len).unwrap().trunc());
        }
        let d = desired(backend, &nodes[0], &nodes[1..], 1500);
        for (i, a) in d.routes.iter().enumerate() {
            for b in &d.routes[i + 1..] {
                prop_assert!(!a.dst.contains(&b.dst.network()) && !b.dst.contains(&a.dst.network()),
                    "{} overlaps {}", a.dst, b.dst);
            }
        }
        let ips: BTreeSet<IpAddr> = d.neighbours.iter().map(|n| n.ip).collect();
        prop_assert_eq!(ips.len(), d.neighbours.len());
    }
}

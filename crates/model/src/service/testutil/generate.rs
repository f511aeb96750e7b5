//! Random small clusters for property tests: a handful of Services of every kind over a
//! small universe of addresses, so that random changes collide, move frontends between
//! Services, and hit every policy combination.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use proptest::prelude::*;

use super::{EndpointExt, NODE, ServiceExt, ep, node_port, port, service, slice};
use crate::service::{Origin, Packet, Protocol};

/// One Service and its slices, described by small numbers.
#[derive(Debug, Clone)]
pub(crate) struct ServiceSpec {
    kind: u8,
    etp_local: bool,
    itp_local: bool,
    affinity: Option<i32>,
    ports: Vec<(usize, bool)>,
    external_ip: Option<u8>,
    lb_ip: Option<u8>,
    source_range: bool,
    dual_stack: bool,
    endpoints: Vec<EndpointSpec>,
}

#[derive(Debug, Clone)]
pub(crate) struct EndpointSpec {
    host: u8,
    node: u8,
    conditions: u8,
    zone: Option<u8>,
    node_hint: bool,
}

const PORTS: [(&str, &str, i32, i32); 3] = [
    ("a", "TCP", 80, 8080),
    ("b", "UDP", 53, 5353),
    ("c", "SCTP", 9, 9),
];

pub(crate) fn service_spec() -> impl Strategy<Value = ServiceSpec> {
    (
        (
            0u8..3,
            any::<bool>(),
            any::<bool>(),
            prop::option::of(prop::sample::select(vec![60, 10800])),
        ),
        prop::collection::vec((0usize..3, any::<bool>()), 0..3),
        (
            prop::option::of(0u8..3),
            prop::option::of(0u8..3),
            any::<bool>(),
            any::<bool>(),
        ),
        prop::collection::vec(endpoint_spec(), 0..4),
    )
        .prop_map(
            |(
                (kind, etp_local, itp_local, affinity),
                ports,
                (external_ip, lb_ip, source_range, dual_stack),
                endpoints,
            )| ServiceSpec {
                kind,
                etp_local,
                itp_local,
                affinity,
                ports,
                external_ip,
                lb_ip,
                source_range,
                dual_stack,
                endpoints,
            },
        )
}

fn endpoint_spec() -> impl Strategy<Value = EndpointSpec> {
    (
        0u8..4,
        0u8..3,
        0u8..4,
        prop::option::of(0u8..2),
        any::<bool>(),
    )
        .prop_map(|(host, node, conditions, zone, node_hint)| EndpointSpec {
            host,
            node,
            conditions,
            zone,
            node_hint,
        })
}

/// Up to five Services (indices are their names: svc0 … svc4).
pub(crate) fn cluster() -> impl Strategy<Value = Vec<ServiceSpec>> {
    prop::collection::vec(service_spec(), 0..5)
}

/// The objects of a cluster.
pub(crate) fn objects(specs: &[ServiceSpec]) -> (Vec<Service>, Vec<EndpointSlice>) {
    let mut services = Vec::new();
    let mut slices = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        let name = format!("svc{i}");
        let mut ports = Vec::new();
        for (p, with_node_port) in &s.ports {
            let (pname, proto, number, _) = PORTS[*p];
            // NodePorts collide on purpose: 30000 + port index, whatever the Service.
            ports.push(if *with_node_port && s.kind > 0 {
                node_port(pname, proto, number, 30000 + *p as i32)
            } else {
                port(pname, proto, number)
            });
        }
        let v4 = format!("172.30.0.{}", 10 + i);
        let v6 = format!("fd00:172:30::{}", 10 + i);
        let mut svc = service("ns", &name, &v4, ports);
        if s.dual_stack {
            svc = svc.cluster_ips(&[&v4, &v6]);
        }
        svc = svc.type_(["ClusterIP", "NodePort", "LoadBalancer"][usize::from(s.kind)]);
        if s.etp_local {
            svc = svc.external_local();
        }
        if s.itp_local {
            svc = svc.internal_local();
        }
        if let Some(t) = s.affinity {
            svc = svc.affinity(Some(t));
        }
        if let Some(x) = s.external_ip {
            svc = svc.external_ips(&[&format!("192.168.99.{x}")]);
        }
        if let Some(x) = s.lb_ip {
            svc = svc.lb_ingress(&[&format!("1.2.3.{x}")]);
            if s.source_range {
                svc = svc.source_ranges(&["203.0.113.0/25", "192.168.0.0/24"]);
            }
        }
        if s.kind == 2 && s.etp_local {
            svc = svc.health_check_node_port(32000 + i as i32);
        }
        services.push(svc);

        let slice_ports: Vec<(&str, &str, i32)> =
            PORTS.iter().map(|(n, p, _, t)| (*n, *p, *t)).collect();
        let make = |v6: bool| {
            s.endpoints
                .iter()
                .map(|e| {
                    let address = if v6 {
                        format!("fd00:10::{}", e.host + 1)
                    } else {
                        format!("10.0.0.{}", e.host + 1)
                    };
                    let node = ["other-1", NODE, "other-2"][usize::from(e.node)];
                    let mut endpoint = ep(&address).on(node);
                    endpoint = match e.conditions {
                        0 => endpoint,
                        1 => endpoint.not_ready(),
                        2 => endpoint.terminating(),
                        _ => endpoint.conditions(false, false, true),
                    };
                    if let Some(z) = e.zone {
                        endpoint = endpoint.zones(&[["zone-a", "zone-b"][usize::from(z)]]);
                    }
                    if e.node_hint {
                        endpoint = endpoint.nodes(&[node]);
                    }
                    endpoint
                })
                .collect::<Vec<_>>()
        };
        slices.push(slice(
            "ns",
            &name,
            &format!("{name}-v4"),
            &slice_ports,
            make(false),
        ));
        if s.dual_stack {
            let mut six = slice("ns", &name, &format!("{name}-v6"), &slice_ports, make(true));
            six.address_type = "IPv6".to_owned();
            slices.push(six);
        }
    }
    (services, slices)
}

/// Packets aimed at the universe above, from every kind of source.
pub(crate) fn packet() -> impl Strategy<Value = Packet> {
    let v4_dst = prop::sample::select(vec![
        "172.30.0.10",
        "172.30.0.11",
        "172.30.0.12",
        "172.30.0.13",
        "172.30.0.14",
        "172.30.0.99",
        "192.168.99.0",
        "192.168.99.1",
        "192.168.99.2",
        "1.2.3.0",
        "1.2.3.1",
        "1.2.3.2",
        "192.168.0.2",
        "192.168.1.2",
        "8.8.8.8",
    ]);
    let v4_src = prop::sample::select(vec![
        ("10.0.0.2", Origin::Pod),
        ("10.0.0.1", Origin::Pod),
        ("10.0.0.3", Origin::External),
        ("192.168.0.2", Origin::Node),
        ("203.0.113.2", Origin::External),
        ("203.0.113.130", Origin::External),
        ("1.2.3.1", Origin::Node),
    ]);
    let v6_dst = prop::sample::select(vec![
        "fd00:172:30::10",
        "fd00:172:30::11",
        "fd00:172:30::99",
        "2001:db8::1",
    ]);
    let v6_src = prop::sample::select(vec![
        ("fd00:10::1", Origin::Pod),
        ("fd00:10::9", Origin::Pod),
        ("2001:db8::1", Origin::Node),
        ("2600::1", Origin::External),
    ]);
    let port = prop::sample::select(vec![80u16, 53, 9, 30000, 30001, 30002, 81]);
    let protocol = prop::sample::select(vec![Protocol::Tcp, Protocol::Udp, Protocol::Sctp]);
    (
        any::<bool>(),
        v4_dst,
        v4_src,
        v6_dst,
        v6_src,
        port,
        protocol,
    )
        .prop_map(|(six, d4, s4, d6, s6, dst_port, protocol)| {
            let (dst, (src, from)) = if six { (d6, s6) } else { (d4, s4) };
            Packet {
                src: src.parse().unwrap(),
                src_port: 40000,
                dst: dst.parse().unwrap(),
                dst_port,
                protocol,
                from,
            }
        })
}

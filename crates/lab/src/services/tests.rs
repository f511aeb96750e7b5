use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Service;
use podnet_store::object::Object;

use super::*;

fn cidr() -> Ipv4Net {
    "10.96.0.0/16".parse().unwrap()
}

/// A Service from YAML, as `lab apply` reads it.
fn parse(yaml: &str) -> Service {
    match podnet_store::manifest::parse(yaml).unwrap().remove(0) {
        Object::Service(s) => s,
        other => panic!("not a Service: {other:?}"),
    }
}

fn service(name: &str, extra: &str) -> Service {
    parse(&format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  selector:\n    app: {name}\n  ports:\n  - port: 80\n{extra}"
    ))
}

fn cluster_ip(s: &Service) -> String {
    s.spec.as_ref().unwrap().cluster_ip.clone().unwrap()
}

fn spec(s: &Service) -> &ServiceSpec {
    s.spec.as_ref().unwrap()
}

#[test]
fn a_plain_service_is_defaulted_as_the_api_server_does() {
    let mut a = ServiceAllocator::new(cidr(), &[]);
    let s = a.allocate(service("web", ""), None).unwrap();
    let spec = spec(&s);
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    assert_eq!(spec.session_affinity.as_deref(), Some("None"));
    assert_eq!(spec.internal_traffic_policy.as_deref(), Some("Cluster"));
    assert_eq!(spec.external_traffic_policy, None);
    assert_eq!(spec.ip_families, Some(vec!["IPv4".to_owned()]));
    assert_eq!(spec.ip_family_policy.as_deref(), Some("SingleStack"));
    assert_eq!(spec.cluster_ips, Some(vec![cluster_ip(&s)]));
    let port = &spec.ports.as_ref().unwrap()[0];
    assert_eq!(port.protocol.as_deref(), Some("TCP"));
    assert_eq!(port.target_port, Some(IntOrString::Int(80)));
    assert_eq!(port.node_port, None);
}

#[test]
fn cluster_ips_come_from_above_the_static_band_and_are_never_handed_out_twice() {
    let mut a = ServiceAllocator::new(cidr(), &[]);
    let mut seen = BTreeSet::new();
    for i in 0..300 {
        let s = a.allocate(service(&format!("s{i}"), ""), None).unwrap();
        let ip: Ipv4Addr = cluster_ip(&s).parse().unwrap();
        assert!(cidr().contains(&ip), "{ip}");
        assert!(seen.insert(ip), "{ip} handed out twice");
    }
    assert!(
        seen.contains(&"10.96.1.0".parse().unwrap()),
        "the first dynamic address"
    );
    for reserved in ["10.96.0.1", "10.96.0.10", "10.96.0.0", "10.96.255.255"] {
        assert!(
            !seen.contains(&reserved.parse().unwrap()),
            "{reserved} handed out"
        );
    }
}

#[test]
fn stored_services_keep_their_addresses_from_a_new_allocator() {
    let mut first = ServiceAllocator::new(cidr(), &[]);
    let stored: Vec<Service> = (0..3)
        .map(|i| first.allocate(service(&format!("s{i}"), ""), None).unwrap())
        .collect();
    let mut again = ServiceAllocator::new(cidr(), &stored);
    let next = again.allocate(service("new", ""), None).unwrap();
    assert!(
        stored.iter().all(|s| cluster_ip(s) != cluster_ip(&next)),
        "{} reused",
        cluster_ip(&next)
    );
}

#[test]
fn the_dns_address_goes_only_to_the_service_that_asks_for_it() {
    let mut a = ServiceAllocator::new(cidr(), &[]);
    let dns = parse(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: kube-dns\n  namespace: kube-system\nspec:\n  clusterIP: 10.96.0.10\n  selector:\n    k8s-app: kube-dns\n  ports:\n  - name: dns\n    port: 53\n    protocol: UDP\n  - name: dns-tcp\n    port: 53\n",
    );
    let dns = a.allocate(dns, None).unwrap();
    assert_eq!(cluster_ip(&dns), "10.96.0.10");
    let e = a
        .allocate(service("other", "  clusterIP: 10.96.0.10\n"), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("default/other")
            && e.contains("10.96.0.10")
            && e.contains("kube-system/kube-dns"),
        "{e}"
    );
}

#[test]
fn requested_cluster_ips_are_honoured_or_refused_with_the_service_and_ip_named() {
    let mut a = ServiceAllocator::new(cidr(), &[]);
    let s = a
        .allocate(service("a", "  clusterIP: 10.96.0.20\n"), None)
        .unwrap();
    assert_eq!(cluster_ip(&s), "10.96.0.20");
    let e = a
        .allocate(service("b", "  clusterIP: 10.96.0.20\n"), None)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "Service default/b: spec.clusterIP: 10.96.0.20 is already allocated to Service default/a"
    );
    let e = a
        .allocate(service("c", "  clusterIP: 10.0.0.1\n"), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("default/c") && e.contains("10.0.0.1") && e.contains("10.96.0.0/16"),
        "{e}"
    );
}

#[test]
fn reapplying_keeps_the_cluster_ip_and_node_ports_and_refuses_a_new_cluster_ip() {
    let mut a = ServiceAllocator::new(cidr(), &[]);
    let manifest = || service("web", "  type: NodePort\n");
    let stored = a.allocate(manifest(), None).unwrap();
    let mut fresh = ServiceAllocator::new(cidr(), std::slice::from_ref(&stored));
    let again = fresh.allocate(manifest(), Some(&stored)).unwrap();
    assert_eq!(cluster_ip(&again), cluster_ip(&stored));
    assert_eq!(spec(&again).ports, spec(&stored).ports);
    assert_eq!(again, stored);
    let e = fresh
        .allocate(
            service("web", "  type: NodePort\n  clusterIP: 10.96.0.99\n"),
            Some(&stored),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("immutable") && e.contains("10.96.0.99"), "{e}");
}

#[test]
fn node_ports_are_allocated_in_range_without_duplicates() {
    let mut a = ServiceAllocator::new(cidr(), &[]);
    let mut seen = BTreeSet::new();
    for i in 0..50 {
        let s = a
            .allocate(service(&format!("np{i}"), "  type: NodePort\n"), None)
            .unwrap();
        let port = spec(&s).ports.as_ref().unwrap()[0].node_port.unwrap();
        assert!(NODE_PORT_RANGE.contains(&port), "{port}");
        assert!(seen.insert(port), "{port} handed out twice");
        assert_eq!(spec(&s).external_traffic_policy.as_deref(), Some("Cluster"));
    }
    // Above the static band of 86 ports (KEP-3668: range size / 32, from 16 to 128).
    assert!(seen.contains(&30086), "the first dynamic node port");
    assert!(!seen.contains(&30085), "a port of the static band");
}

#[test]
fn requested_node_ports_are_honoured_or_refused_naming_the_holder() {
    let mut a = ServiceAllocator::new(cidr(), &[]);
    let s = a
        .allocate(
            service("a", "    nodePort: 30080\n  type: NodePort\n"),
            None,
        )
        .unwrap();
    assert_eq!(spec(&s).ports.as_ref().unwrap()[0].node_port, Some(30080));
    let e = a
        .allocate(
            service("b", "    nodePort: 30080\n  type: NodePort\n"),
            None,
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("default/b") && e.contains("30080") && e.contains("default/a"),
        "{e}"
    );
    let e = a
        .allocate(service("c", "    nodePort: 8080\n  type: NodePort\n"), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("spec.ports[0].nodePort") && e.contains("30000-32767"),
        "{e}"
    );
    // One node port may carry a port's TCP and UDP; twice the same protocol is a conflict.
    let dns = "apiVersion: v1\nkind: Service\nmetadata:\n  name: dns\nspec:\n  type: NodePort\n  selector:\n    app: dns\n  ports:\n  - name: udp\n    port: 53\n    protocol: UDP\n    nodePort: 30053\n  - name: tcp\n    port: 53\n    protocol: {PROTO}\n    nodePort: 30053\n";
    a.allocate(parse(&dns.replace("{PROTO}", "TCP")), None)
        .unwrap();
    let e = a
        .allocate(parse(&dns.replace("{PROTO}", "UDP")), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("spec.ports[1].nodePort") && e.contains("spec.ports[0]"),
        "{e}"
    );
}

#[test]
fn load_balancers_get_node_ports_and_a_health_check_port_with_local_traffic_policy() {
    let mut a = ServiceAllocator::new(cidr(), &[]);
    let lb = a
        .allocate(service("lb", "  type: LoadBalancer\n"), None)
        .unwrap();
    assert!(spec(&lb).ports.as_ref().unwrap()[0].node_port.is_some());
    assert_eq!(spec(&lb).health_check_node_port, None);
    assert_eq!(spec(&lb).allocate_load_balancer_node_ports, Some(true));
    let local = a
        .allocate(
            service(
                "local",
                "  type: LoadBalancer\n  externalTrafficPolicy: Local\n",
            ),
            None,
        )
        .unwrap();
    let health = spec(&local).health_check_node_port.unwrap();
    assert!(NODE_PORT_RANGE.contains(&health));
    assert_ne!(
        Some(health),
        spec(&local).ports.as_ref().unwrap()[0].node_port
    );
    let no_ports = a
        .allocate(
            service(
                "bare",
                "  type: LoadBalancer\n  allocateLoadBalancerNodePorts: false\n",
            ),
            None,
        )
        .unwrap();
    assert_eq!(spec(&no_ports).ports.as_ref().unwrap()[0].node_port, None);
}

#[test]
fn headless_and_external_name_services_get_no_cluster_ip() {
    let mut a = ServiceAllocator::new(cidr(), &[]);
    let headless = a
        .allocate(service("h", "  clusterIP: None\n"), None)
        .unwrap();
    assert_eq!(cluster_ip(&headless), "None");
    assert_eq!(
        spec(&headless).ip_family_policy.as_deref(),
        Some("SingleStack")
    );
    let selectorless = parse(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: hs\nspec:\n  clusterIP: None\n  ports:\n  - port: 80\n",
    );
    let selectorless = a.allocate(selectorless, None).unwrap();
    assert_eq!(
        spec(&selectorless).ip_family_policy.as_deref(),
        Some("RequireDualStack")
    );
    let external = parse(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: ext\nspec:\n  type: ExternalName\n  externalName: example.com\n",
    );
    let external = a.allocate(external, None).unwrap();
    assert_eq!(spec(&external).cluster_ip, None);
    assert_eq!(spec(&external).ip_families, None);
    let e = a
        .allocate(service("np", "  type: NodePort\n  clusterIP: None\n"), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("headless"), "{e}");
}

#[test]
fn dual_stack_requests_are_refused_naming_the_field() {
    let mut a = ServiceAllocator::new(cidr(), &[]);
    let e = a
        .allocate(service("v6", "  ipFamilies: [IPv6]\n"), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("spec.ipFamilies") && e.contains("IPv6"), "{e}");
    let e = a
        .allocate(service("ds", "  ipFamilyPolicy: RequireDualStack\n"), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("spec.ipFamilyPolicy"), "{e}");
}

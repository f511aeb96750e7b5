use k8s_openapi::api::core::v1::{
    Container, ContainerPort, PodCondition, PodIP, PodSpec, PodStatus, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;

fn node(name: &str, zone: &str) -> Node {
    let mut n = Node::default();
    n.metadata.name = Some(name.into());
    n.metadata.labels = Some(BTreeMap::from([(LABEL_ZONE.to_owned(), zone.to_owned())]));
    n
}

fn nodes() -> Vec<Node> {
    vec![node("node-1", "zone-a"), node("node-2", "zone-b")]
}

/// A Running pod labelled `app=web` on `node` with `ip`, Ready or not, with a container port
/// named `http`.
fn pod(name: &str, node: &str, ip: &str, ready: bool, http_port: i32) -> Pod {
    let mut p = Pod::default();
    p.metadata.name = Some(name.into());
    p.metadata.namespace = Some("default".into());
    p.metadata.uid = Some(format!("uid-{name}"));
    p.metadata.labels = Some(BTreeMap::from([("app".to_owned(), "web".to_owned())]));
    p.spec = Some(PodSpec {
        node_name: Some(node.into()),
        containers: vec![Container {
            name: "c".into(),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: http_port,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }],
        ..Default::default()
    });
    p.status = Some(PodStatus {
        phase: Some("Running".into()),
        pod_ip: Some(ip.into()),
        pod_ips: Some(vec![PodIP { ip: ip.into() }]),
        conditions: Some(vec![PodCondition {
            type_: "Ready".into(),
            status: if ready { "True" } else { "False" }.into(),
            ..Default::default()
        }]),
        ..Default::default()
    });
    p
}

fn service(target_port: IntOrString) -> Service {
    let mut s = Service::default();
    s.metadata.name = Some("web".into());
    s.metadata.namespace = Some("default".into());
    s.metadata.uid = Some("uid-web".into());
    s.metadata.labels = Some(BTreeMap::from([("tier".to_owned(), "front".to_owned())]));
    s.spec = Some(ServiceSpec {
        selector: Some(BTreeMap::from([("app".to_owned(), "web".to_owned())])),
        cluster_ip: Some("10.96.1.0".into()),
        ip_families: Some(vec!["IPv4".into()]),
        ports: Some(vec![ServicePort {
            name: Some("web".into()),
            port: 80,
            protocol: Some("TCP".into()),
            target_port: Some(target_port),
            ..Default::default()
        }]),
        ..Default::default()
    });
    s
}

fn conditions(e: &Endpoint) -> (bool, bool, bool) {
    let c = e.conditions.as_ref().unwrap();
    (c.ready.unwrap(), c.serving.unwrap(), c.terminating.unwrap())
}

fn endpoint<'a>(slices: &'a [EndpointSlice], pod: &str) -> &'a Endpoint {
    slices
        .iter()
        .flat_map(|s| s.endpoints.iter().flatten())
        .find(|e| e.target_ref.as_ref().and_then(|r| r.name.as_deref()) == Some(pod))
        .unwrap_or_else(|| panic!("no endpoint for {pod}"))
}

#[test]
fn ready_pods_become_endpoints_of_one_slice_owned_by_the_service() {
    let pods = [
        pod("web-0", "node-1", "10.244.1.2", true, 8080),
        pod("web-1", "node-2", "10.244.2.2", true, 8080),
    ];
    let slices = desired(&service(IntOrString::Int(8080)), &pods, &nodes()).unwrap();
    assert_eq!(slices.len(), 1);
    let slice = &slices[0];
    let name = slice.metadata.name.as_deref().unwrap();
    assert!(
        name.starts_with("web-") && name.len() == "web-".len() + 5,
        "{name}"
    );
    assert_eq!(slice.address_type, "IPv4");
    let labels = slice.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[LABEL_SERVICE_NAME], "web");
    assert_eq!(labels[LABEL_MANAGED_BY], CONTROLLER_NAME);
    assert_eq!(labels["tier"], "front", "the Service's labels are copied");
    assert!(!labels.contains_key(LABEL_HEADLESS));
    let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
        ("Service", "web", "uid-web")
    );
    assert_eq!(owner.controller, Some(true));
    let ports = slice.ports.as_ref().unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].name.as_deref(), Some("web"));
    assert_eq!(ports[0].port, Some(8080));
    assert_eq!(ports[0].protocol.as_deref(), Some("TCP"));
    let e = endpoint(&slices, "web-1");
    assert_eq!(e.addresses, ["10.244.2.2"]);
    assert_eq!(conditions(e), (true, true, false));
    assert_eq!(e.node_name.as_deref(), Some("node-2"));
    assert_eq!(e.zone.as_deref(), Some("zone-b"));
    assert_eq!(e.hints, None);
    let target = e.target_ref.as_ref().unwrap();
    assert_eq!(target.kind.as_deref(), Some("Pod"));
    assert_eq!(target.uid.as_deref(), Some("uid-web-1"));
    // Deterministic: the same inputs give the same slices.
    assert_eq!(
        desired(&service(IntOrString::Int(8080)), &pods, &nodes()).unwrap(),
        slices
    );
}

#[test]
fn unready_and_terminating_pods_are_marked_not_left_out() {
    let mut terminating = pod("web-1", "node-1", "10.244.1.3", true, 8080);
    terminating.metadata.deletion_timestamp = Some(Time(podnet_store::now()));
    let pods = [
        pod("web-0", "node-1", "10.244.1.2", false, 8080),
        terminating,
    ];
    let slices = desired(&service(IntOrString::Int(8080)), &pods, &nodes()).unwrap();
    assert_eq!(
        conditions(endpoint(&slices, "web-0")),
        (false, false, false)
    );
    assert_eq!(conditions(endpoint(&slices, "web-1")), (false, true, true));
    // publishNotReadyAddresses: ready regardless.
    let mut s = service(IntOrString::Int(8080));
    s.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
    let slices = desired(&s, &pods, &nodes()).unwrap();
    assert_eq!(conditions(endpoint(&slices, "web-0")), (true, false, false));
}

#[test]
fn pods_without_ip_finished_elsewhere_or_on_unknown_nodes_are_left_out() {
    let mut no_ip = pod("no-ip", "node-1", "10.244.1.9", true, 8080);
    no_ip.status.as_mut().unwrap().pod_ip = None;
    no_ip.status.as_mut().unwrap().pod_ips = None;
    let mut failed = pod("failed", "node-1", "10.244.1.8", true, 8080);
    failed.status.as_mut().unwrap().phase = Some("Failed".into());
    let mut other_ns = pod("other-ns", "node-1", "10.244.1.7", true, 8080);
    other_ns.metadata.namespace = Some("shop".into());
    let mut other_app = pod("other-app", "node-1", "10.244.1.6", true, 8080);
    other_app.metadata.labels = None;
    let pods = [
        no_ip,
        failed,
        other_ns,
        other_app,
        pod("lost", "node-9", "10.244.9.2", true, 8080),
        pod("web-0", "node-1", "10.244.1.2", true, 8080),
    ];
    let slices = desired(&service(IntOrString::Int(8080)), &pods, &nodes()).unwrap();
    let names: Vec<_> = slices
        .iter()
        .flat_map(|s| s.endpoints.iter().flatten())
        .filter_map(|e| e.target_ref.as_ref()?.name.clone())
        .collect();
    assert_eq!(names, ["web-0"]);
}

#[test]
fn a_named_target_port_is_resolved_per_pod() {
    let pods = [
        pod("web-0", "node-1", "10.244.1.2", true, 8080),
        pod("web-1", "node-2", "10.244.2.2", true, 9090),
        pod("web-2", "node-2", "10.244.2.3", true, 8080),
    ];
    let slices = desired(
        &service(IntOrString::String("http".into())),
        &pods,
        &nodes(),
    )
    .unwrap();
    assert_eq!(slices.len(), 2, "one slice per resolved port: {slices:#?}");
    for slice in &slices {
        let port = slice.ports.as_ref().unwrap()[0].port.unwrap();
        let pods: Vec<_> = slice
            .endpoints
            .iter()
            .flatten()
            .filter_map(|e| e.target_ref.as_ref()?.name.clone())
            .collect();
        match port {
            8080 => assert_eq!(pods, ["web-0", "web-2"]),
            9090 => assert_eq!(pods, ["web-1"]),
            other => panic!("port {other}"),
        }
        assert_eq!(
            slice.ports.as_ref().unwrap()[0].name.as_deref(),
            Some("web")
        );
    }
    // A pod without the named port is in a slice without that port.
    let mut unnamed = pod("web-3", "node-1", "10.244.1.4", true, 8080);
    unnamed.spec.as_mut().unwrap().containers[0].ports = None;
    let slices = desired(
        &service(IntOrString::String("http".into())),
        &[unnamed],
        &nodes(),
    )
    .unwrap();
    assert_eq!(slices.len(), 1);
    assert_eq!(slices[0].ports.as_deref(), Some(&[][..]));
    assert_eq!(endpoint(&slices, "web-3").addresses, ["10.244.1.4"]);
}

#[test]
fn a_service_without_pods_gets_a_placeholder_slice() {
    let slices = desired(&service(IntOrString::Int(8080)), &[], &nodes()).unwrap();
    assert_eq!(slices.len(), 1);
    assert_eq!(slices[0].endpoints.as_deref(), Some(&[][..]));
    assert_eq!(slices[0].ports.as_deref(), Some(&[][..]));
}

#[test]
fn the_placeholder_becomes_the_first_slice_in_place() {
    let s = service(IntOrString::Int(8080));
    let placeholder = desired(&s, &[], &nodes()).unwrap();
    let pods = [pod("web-0", "node-1", "10.244.1.2", true, 8080)];
    let filled = desired(&s, &pods, &nodes()).unwrap();
    assert_eq!(placeholder[0].metadata.name, filled[0].metadata.name);
}

#[test]
fn services_without_a_selector_or_of_type_external_name_are_left_alone() {
    let pods = [pod("web-0", "node-1", "10.244.1.2", true, 8080)];
    let mut selectorless = service(IntOrString::Int(8080));
    selectorless.spec.as_mut().unwrap().selector = None;
    assert_eq!(desired(&selectorless, &pods, &nodes()), None);
    let mut empty = service(IntOrString::Int(8080));
    empty.spec.as_mut().unwrap().selector = Some(BTreeMap::new());
    assert_eq!(desired(&empty, &pods, &nodes()), None);
    let mut external = service(IntOrString::Int(8080));
    external.spec.as_mut().unwrap().type_ = Some("ExternalName".into());
    assert_eq!(desired(&external, &pods, &nodes()), None);
}

#[test]
fn prefer_close_hints_each_ready_endpoint_for_its_own_zone() {
    let pods = [
        pod("web-0", "node-1", "10.244.1.2", true, 8080),
        pod("web-1", "node-2", "10.244.2.2", true, 8080),
        pod("web-2", "node-2", "10.244.2.3", false, 8080),
    ];
    for distribution in ["PreferClose", "PreferSameZone"] {
        let mut s = service(IntOrString::Int(8080));
        s.spec.as_mut().unwrap().traffic_distribution = Some(distribution.into());
        let slices = desired(&s, &pods, &nodes()).unwrap();
        let zones = |pod: &str| {
            endpoint(&slices, pod)
                .hints
                .as_ref()
                .map(|h| h.for_zones.clone().unwrap_or_default())
                .map(|z| z.into_iter().map(|z| z.name).collect::<Vec<_>>())
        };
        assert_eq!(zones("web-0"), Some(vec!["zone-a".to_owned()]));
        assert_eq!(zones("web-1"), Some(vec!["zone-b".to_owned()]));
        assert_eq!(zones("web-2"), None, "not ready: no hint");
        assert_eq!(
            endpoint(&slices, "web-0").hints.as_ref().unwrap().for_nodes,
            None
        );
    }
    let mut s = service(IntOrString::Int(8080));
    s.spec.as_mut().unwrap().traffic_distribution = Some("PreferSameNode".into());
    let slices = desired(&s, &pods, &nodes()).unwrap();
    let hints = endpoint(&slices, "web-0").hints.clone().unwrap();
    assert_eq!(hints.for_nodes.unwrap()[0].name, "node-1");
}

#[test]
fn headless_services_are_labelled_and_pod_hostnames_published_for_their_subdomain() {
    let mut s = service(IntOrString::Int(8080));
    s.spec.as_mut().unwrap().cluster_ip = Some("None".into());
    let mut p = pod("web-0", "node-1", "10.244.1.2", true, 8080);
    let spec = p.spec.as_mut().unwrap();
    spec.hostname = Some("db-0".into());
    spec.subdomain = Some("web".into());
    let slices = desired(&s, &[p], &nodes()).unwrap();
    assert_eq!(
        slices[0].metadata.labels.as_ref().unwrap()[LABEL_HEADLESS],
        ""
    );
    assert_eq!(endpoint(&slices, "web-0").hostname.as_deref(), Some("db-0"));
}

#[test]
fn large_services_are_split_into_slices_of_at_most_100_endpoints() {
    let pods: Vec<Pod> = (0..250)
        .map(|i| {
            pod(
                &format!("web-{i}"),
                "node-1",
                &format!("10.244.{}.{}", 1 + i / 200, 2 + i % 200),
                true,
                8080,
            )
        })
        .collect();
    let slices = desired(&service(IntOrString::Int(8080)), &pods, &nodes()).unwrap();
    let sizes: Vec<usize> = slices
        .iter()
        .map(|s| s.endpoints.as_ref().unwrap().len())
        .collect();
    assert_eq!(sizes, [100, 100, 50]);
    let names: std::collections::BTreeSet<_> =
        slices.iter().map(|s| s.metadata.name.clone()).collect();
    assert_eq!(names.len(), 3, "distinct names");
}

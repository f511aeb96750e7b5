//! Pod → Service through the agent's nftables proxy: ClusterIPs from pods on every node and
//! from a node, load-balanced over the endpoints; a Service without endpoints refuses at once;
//! a pod reaches itself through its own Service (hairpin).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::{TestLab, http_get, text};

const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: netexec
        image: registry.k8s.io/e2e-test-images/agnhost:2.53
        args: ["netexec", "--http-port=8080", "--udp-port=8081"]
        ports:
        - {name: http, containerPort: 8080}
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
---
apiVersion: v1
kind: Service
metadata:
  name: nobody
spec:
  selector: {app: nobody-has-this-label}
  ports:
  - {name: http, port: 80, targetPort: 8080}
"#;

fn cluster_ip(lab: &TestLab, service: &str) -> String {
    let out = lab.podnet(&["get", "svc", service, "-o", "json"]);
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    v["spec"]["clusterIP"].as_str().unwrap().to_owned()
}

#[test]
fn cluster_ips_reach_the_endpoints_from_every_node_and_refuse_without_endpoints() {
    let lab = TestLab::up("svc", 3, "vxlan");
    let out = lab.apply(WEB);
    assert!(out.status.success(), "{}", text(&out));
    let pods = lab.running_pods(3);
    let vip: SocketAddr = format!("{}:80", cluster_ip(&lab, "web")).parse().unwrap();

    // From a pod on every node, and from a node itself: every request answered, by more than
    // one endpoint.
    let mut sources: Vec<(String, std::fs::File)> = pods
        .iter()
        .map(|(name, _, _)| (name.clone(), lab.pod_netns(name)))
        .collect();
    sources.push(("node-1".into(), lab.netns("node-1")));
    for (source, ns) in &sources {
        let mut seen = BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        // Twelve requests, and more (up to 40) while one endpoint answered them all: an agent
        // may program the last endpoints a moment after the pods run.
        for i in 0..40 {
            if i >= 12 && seen.len() >= 2 {
                break;
            }
            let answer = loop {
                match http_get(ns, vip, "/hostname") {
                    Ok(a) => break a,
                    // The EndpointSlice and the rules follow the pods within a moment.
                    Err(e) if Instant::now() < deadline => {
                        let _ = e;
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    Err(e) => panic!("{source} -> {vip} request {i}: {e}"),
                }
            };
            seen.insert(answer);
        }
        assert!(
            seen.len() >= 2,
            "{source}: only {seen:?} answered through {vip}"
        );
        assert!(seen.iter().all(|s| s.starts_with("web-")), "{seen:?}");
    }

    // No endpoints: refused at once, not a timeout.
    let empty: SocketAddr = format!("{}:80", cluster_ip(&lab, "nobody"))
        .parse()
        .unwrap();
    let started = Instant::now();
    let attempt = podnet_kernel::netns::run_in(&sources[0].1, || {
        std::net::TcpStream::connect_timeout(&empty, Duration::from_secs(5))
    })
    .unwrap();
    let err = attempt.expect_err("a Service without endpoints accepted a connection");
    assert!(
        started.elapsed() < Duration::from_secs(1)
            && err.kind() == std::io::ErrorKind::ConnectionRefused,
        "want an immediate refusal, got {err:?} after {:?}",
        started.elapsed()
    );
}

const SOLO: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: solo
spec:
  replicas: 1
  selector:
    matchLabels: {app: solo}
  template:
    metadata:
      labels: {app: solo}
    spec:
      containers:
      - name: netexec
        image: registry.k8s.io/e2e-test-images/agnhost:2.53
        args: ["netexec", "--http-port=8080"]
---
apiVersion: v1
kind: Service
metadata:
  name: solo
spec:
  selector: {app: solo}
  ports:
  - {port: 80, targetPort: 8080}
"#;

#[test]
fn a_pod_reaches_itself_through_its_service_masqueraded() {
    let lab = TestLab::up("hairpin", 1, "host-gw");
    let out = lab.apply(SOLO);
    assert!(out.status.success(), "{}", text(&out));
    let pods = lab.running_pods(1);
    let (name, _, pod_ip) = &pods[0];
    let vip: SocketAddr = format!("{}:80", cluster_ip(&lab, "solo")).parse().unwrap();
    let ns = lab.pod_netns(name);
    // The only endpoint is the client itself. Unmasqueraded, its reply would go from the pod
    // to the pod, and the client (which spoke to the VIP) would reset it: the request fails.
    let client = lab.eventually("the pod answers itself through its Service", 20, || {
        http_get(&ns, vip, "/clientip")
    });
    let client_ip = client
        .rsplit_once(':')
        .map_or(client.as_str(), |(ip, _)| ip);
    assert_ne!(
        client_ip, pod_ip,
        "a hairpin connection must be masqueraded (the pod saw itself as the client)"
    );
}

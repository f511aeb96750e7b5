//! Outside → Service, and the Service options that decide who answers: NodePorts and load
//! balancer addresses reached from the outside host; `externalTrafficPolicy: Local` keeping the
//! client's address, dropping on nodes without an endpoint, answering its health check node
//! port, and the lab's cloud following that health check; `sessionAffinity: ClientIP`.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use podnet_kernel::netns;
use serde_json::Value;

use crate::{TestLab, http_get, text};

fn service(lab: &TestLab, name: &str) -> Value {
    lab.get_json(&["svc", name])
}

fn ingress_ip(lab: &TestLab, name: &str) -> Result<String, String> {
    let s = service(lab, name);
    s["status"]["loadBalancer"]["ingress"][0]["ip"]
        .as_str()
        .map(str::to_owned)
        .ok_or(format!("{name} has no ingress IP yet"))
}

fn addr(ip: &str, port: i64) -> SocketAddr {
    format!("{ip}:{port}").parse().unwrap()
}

/// An HTTP GET from `ns`: status line and body.
fn http_status(ns: &std::fs::File, to: SocketAddr, path: &str) -> Result<String, String> {
    netns::run_in(ns, || -> std::io::Result<String> {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\n\r\n"
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())
}

const LOCAL_AND_CLUSTER: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: echo
  labels: {app: echo}
spec:
  nodeName: node-1
  containers:
  - name: netexec
    image: registry.k8s.io/e2e-test-images/agnhost:2.53
    args: ["netexec", "--http-port=8080", "--udp-port=8081"]
    readinessProbe:
      httpGet: {path: /readyz, port: 8080}
      periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: cluster
spec:
  type: LoadBalancer
  selector: {app: echo}
  ports:
  - {port: 80, targetPort: 8080}
---
apiVersion: v1
kind: Service
metadata:
  name: local
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {app: echo}
  ports:
  - {port: 80, targetPort: 8080}
"#;

#[test]
fn the_outside_reaches_node_ports_and_load_balancers_and_local_keeps_the_client_address() {
    let lab = TestLab::up("ext", 2, "host-gw");
    let out = lab.apply(LOCAL_AND_CLUSTER);
    assert!(out.status.success(), "{}", text(&out));
    lab.running_pods(1);
    let outside = lab.netns("outside");
    let (node1, node2) = ("192.168.100.11", "192.168.100.12");
    let client = "192.168.100.200:";

    // Cluster: every node's NodePort and the load balancer address answer; the endpoint sees
    // a node's address (masqueraded), never the client's.
    let cluster = service(&lab, "cluster");
    let cluster_np = cluster["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    let cluster_lb = lab.eventually("cluster gets an address", 10, || {
        ingress_ip(&lab, "cluster")
    });
    for to in [
        addr(node1, cluster_np),
        addr(node2, cluster_np),
        addr(&cluster_lb, 80),
    ] {
        let seen = lab.eventually(&format!("outside -> {to}"), 10, || {
            http_get(&outside, to, "/clientip")
        });
        assert!(
            !seen.starts_with(client),
            "{to}: Cluster policy kept the client address {seen}"
        );
    }

    // Local: the node with the endpoint serves it with the client's own address; the other
    // drops (a timeout, not a refusal: the endpoint may be coming back).
    let local = service(&lab, "local");
    let local_np = local["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    let health_port = local["spec"]["healthCheckNodePort"].as_i64().unwrap();
    let seen = lab.eventually("outside -> node-1 Local NodePort", 10, || {
        http_get(&outside, addr(node1, local_np), "/clientip")
    });
    assert!(
        seen.starts_with(client),
        "Local lost the client address: {seen}"
    );
    let to = addr(node2, local_np);
    let started = Instant::now();
    let attempt = netns::run_in(&outside, || {
        TcpStream::connect_timeout(&to, Duration::from_secs(1))
    })
    .unwrap();
    let err = attempt.expect_err("node-2 has no endpoint of a Local Service but accepted");
    assert_eq!(
        err.kind(),
        std::io::ErrorKind::TimedOut,
        "want a drop, got {err:?} after {:?}",
        started.elapsed()
    );

    // The health check node port: 200 where the endpoint is, 503 elsewhere, kube-proxy's body.
    let healthy = lab.eventually("node-1 health check", 10, || {
        http_status(&outside, addr(node1, health_port), "/")
    });
    assert!(healthy.starts_with("HTTP/1.1 200 "), "{healthy}");
    assert!(healthy.contains("\"localEndpoints\": 1"), "{healthy}");
    assert!(healthy.contains("\"name\": \"local\""), "{healthy}");
    let unhealthy = lab.eventually("node-2 health check", 10, || {
        http_status(&outside, addr(node2, health_port), "/")
    });
    assert!(unhealthy.starts_with("HTTP/1.1 503 "), "{unhealthy}");
    assert!(unhealthy.contains("\"localEndpoints\": 0"), "{unhealthy}");

    // The cloud follows the health check: the Local address goes to node-1 only, so every
    // request through it is answered, with the client's address.
    let local_lb = lab.eventually("local gets an address", 10, || ingress_ip(&lab, "local"));
    lab.eventually(
        "the cloud routes the Local address to node-1 only",
        10,
        || {
            let r = text(&lab.exec_in("outside", &["ip", "route", "show", &local_lb]));
            (r.contains(&format!("via {node1}")) && !r.contains(node2))
                .then_some(())
                .ok_or(r)
        },
    );
    for i in 0..10 {
        let seen = http_get(&outside, addr(&local_lb, 80), "/clientip")
            .unwrap_or_else(|e| panic!("request {i} to the Local load balancer: {e}"));
        assert!(seen.starts_with(client), "{seen}");
    }
}

const STICKY: &str = r#"
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
        readinessProbe:
          httpGet: {path: /readyz, port: 8080}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: sticky
spec:
  type: NodePort
  selector: {app: web}
  sessionAffinity: ClientIP
  sessionAffinityConfig:
    clientIP: {timeoutSeconds: 60}
  ports:
  - {port: 80, targetPort: 8080}
---
apiVersion: v1
kind: Service
metadata:
  name: plain
spec:
  selector: {app: web}
  ports:
  - {port: 80, targetPort: 8080}
"#;

/// The hostnames that answer `count` requests to `to` from `ns`.
fn answers(lab: &TestLab, ns: &std::fs::File, to: SocketAddr, count: usize) -> BTreeSet<String> {
    (0..count)
        .map(|i| {
            lab.eventually(&format!("request {i} to {to}"), 10, || {
                http_get(ns, to, "/hostname")
            })
        })
        .collect()
}

#[test]
fn client_ip_affinity_sends_a_client_to_one_endpoint() {
    let lab = TestLab::up("aff", 2, "host-gw");
    let out = lab.apply(STICKY);
    assert!(out.status.success(), "{}", text(&out));
    let pods = lab.running_pods(3);
    // Every endpoint ready first, so "one answer" means affinity, not one ready pod.
    lab.eventually("three ready endpoints", 20, || {
        let out = lab.podnet(&["get", "endpointslices", "-o", "json"]);
        let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
        let ready = v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == "sticky")
            .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["conditions"]["ready"] == true)
            .count();
        (ready == 3).then_some(()).ok_or(format!("{ready} ready"))
    });
    let client = lab.pod_netns(&pods[0].0);
    let sticky_ip = service(&lab, "sticky")["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_owned();
    let plain_ip = service(&lab, "plain")["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_owned();

    // Without affinity the same client is spread (so the check below can fail)...
    let spread = answers(&lab, &client, addr(&plain_ip, 80), 15);
    assert!(spread.len() >= 2, "plain answered only by {spread:?}");
    // ...with it, every request of the client goes to one endpoint, through the ClusterIP
    // and through a NodePort from the outside host alike.
    let stuck = answers(&lab, &client, addr(&sticky_ip, 80), 15);
    assert_eq!(stuck.len(), 1, "ClientIP affinity spread over {stuck:?}");
    let node_port = service(&lab, "sticky")["spec"]["ports"][0]["nodePort"]
        .as_i64()
        .unwrap();
    let outside = lab.netns("outside");
    let stuck = answers(&lab, &outside, addr("192.168.100.11", node_port), 15);
    assert_eq!(
        stuck.len(),
        1,
        "ClientIP affinity via NodePort spread over {stuck:?}"
    );
}

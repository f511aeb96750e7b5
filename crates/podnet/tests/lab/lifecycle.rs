//! The lab over time: nodes leaving and joining, an agent killed and restarted under a running
//! TCP stream, an upstream-style agnhost manifest, and `down` leaving the machine as it was.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::{TestLab, http_get, text};

fn pinned_pod(name: &str, node: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: {node}\n  containers:\n  - name: netexec\n    image: registry.k8s.io/e2e-test-images/agnhost:2.53\n    args: [\"netexec\", \"--http-port=8080\", \"--udp-port=8081\"]\n"
    )
}

/// Polls `f` for up to 10 s.
fn eventually(what: &str, mut f: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match f() {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("{what}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn routes(lab: &TestLab, node: &str) -> String {
    text(&lab.exec_in(node, &["ip", "route"]))
}

#[test]
fn a_removed_node_leaves_every_routing_table_and_an_added_node_joins() {
    let lab = TestLab::up("nodes", 3, "vxlan");
    for node in ["node-1", "node-2"] {
        let r = routes(&lab, node);
        assert!(
            r.contains("10.244.3.0/24"),
            "{node} has no route to node-3: {r}"
        );
    }
    // The agent's health and metrics, on its node's localhost.
    let agent: SocketAddr = "127.0.0.1:9765".parse().unwrap();
    let health = http_get(&lab.netns("node-1"), agent, "/healthz").unwrap();
    assert_eq!(health.trim(), "ok");
    let metrics = http_get(&lab.netns("node-1"), agent, "/metrics").unwrap();
    assert!(metrics.contains("podnet_agent_routes 2"), "{metrics}");
    assert!(metrics.contains("podnet_agent_peers 2"), "{metrics}");

    let out = lab.podnet(&["node", "remove", "node-3"]);
    assert!(out.status.success(), "{}", text(&out));
    for node in ["node-1", "node-2"] {
        eventually(&format!("{node} drops node-3"), || {
            let r = routes(&lab, node);
            let fdb = text(&lab.exec_in(node, &["bridge", "fdb", "show", "dev", "podnet.1"]));
            if r.contains("10.244.3.0/24") || fdb.contains("192.168.100.13") {
                return Err(format!("routes: {r}\nfdb: {fdb}"));
            }
            Ok(())
        });
    }
    let out = lab.podnet(&["node", "add"]);
    assert!(out.status.success(), "{}", text(&out));
    for node in ["node-1", "node-2"] {
        eventually(&format!("{node} routes to node-4"), || {
            let r = routes(&lab, node);
            r.contains("10.244.4.0/24").then_some(()).ok_or(r)
        });
    }
    let out = lab.apply(&(pinned_pod("a", "node-1") + &pinned_pod("d", "node-4")));
    assert!(out.status.success(), "{}", text(&out));
    let pods = lab.running_pods(2);
    let d_ip = &pods.iter().find(|p| p.0 == "default/d").unwrap().2;
    let body = http_get(
        &lab.pod_netns("default/a"),
        format!("{d_ip}:8080").parse().unwrap(),
        "/hostname",
    )
    .unwrap();
    assert_eq!(body, "d");
}

/// One HTTP/1.1 request on a kept-alive connection; the body.
fn request(stream: &mut BufReader<TcpStream>, path: &str) -> std::io::Result<String> {
    write!(stream.get_mut(), "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")?;
    let mut length = 0;
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line)? == 0 {
            return Err(std::io::Error::other("connection closed"));
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body)?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn killing_and_restarting_agents_keeps_an_established_tcp_stream() {
    let lab = TestLab::up("restart", 2, "vxlan");
    let out = lab.apply(&(pinned_pod("a", "node-1") + &pinned_pod("b", "node-2")));
    assert!(out.status.success(), "{}", text(&out));
    let pods = lab.running_pods(2);
    let b_ip = pods.iter().find(|p| p.0 == "default/b").unwrap().2.clone();
    let addr: SocketAddr = format!("{b_ip}:8080").parse().unwrap();
    let stream = crate::connect(&lab.pod_netns("default/a"), addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut stream = BufReader::new(stream);
    let before = text(&lab.exec_in("node-1", &["ip", "route"]));
    assert_eq!(request(&mut stream, "/hostname").unwrap(), "b");

    // Requests keep flowing on the same connection while both agents are killed and restarted.
    let done = std::sync::atomic::AtomicBool::new(false);
    let served = std::thread::scope(|s| {
        let client = s.spawn(|| {
            let mut served = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                assert_eq!(
                    request(&mut stream, "/hostname").unwrap(),
                    "b",
                    "request {served}"
                );
                served += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            served
        });
        for node in ["node-1", "node-2"] {
            let out = lab.podnet(&["node", "restart-agent", node]);
            assert!(out.status.success(), "{}", text(&out));
        }
        // Long enough for the new agents to sync (and for a flap to break something).
        std::thread::sleep(Duration::from_millis(1500));
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        client.join().unwrap()
    });
    assert!(served > 10, "only {served} requests went through");
    assert_eq!(request(&mut stream, "/hostname").unwrap(), "b");
    // The restarted agent adopted the routes: the table is as it was.
    assert_eq!(text(&lab.exec_in("node-1", &["ip", "route"])), before);
}

#[test]
fn an_upstream_style_agnhost_manifest_runs_unchanged() {
    let lab = TestLab::up("agnhost", 2, "host-gw");
    // As test/e2e/network builds its netexec pods: named ports, a readiness probe, downward API.
    let manifest = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: e2e
---
apiVersion: v1
kind: Pod
metadata:
  name: netserver-0
  namespace: e2e
  labels:
    selector-netserver: "true"
spec:
  nodeName: node-1
  containers:
  - name: webserver
    image: registry.k8s.io/e2e-test-images/agnhost:2.53
    imagePullPolicy: IfNotPresent
    args:
    - netexec
    - --http-port=8083
    - --udp-port=8081
    ports:
    - name: http
      containerPort: 8083
      protocol: TCP
    - name: udp
      containerPort: 8081
      protocol: UDP
    livenessProbe:
      httpGet:
        path: /healthz
        port: 8083
      initialDelaySeconds: 10
      timeoutSeconds: 30
      failureThreshold: 3
    readinessProbe:
      httpGet:
        path: /healthz
        port: 8083
    env:
    - name: POD_IP
      valueFrom:
        fieldRef:
          fieldPath: status.podIP
  terminationGracePeriodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: test-container-pod
  namespace: e2e
spec:
  nodeName: node-2
  containers:
  - name: webserver
    image: registry.k8s.io/e2e-test-images/agnhost:2.53
    command: ["/agnhost"]
    args: ["netexec", "--http-port=9080"]
"#;
    let out = lab.apply(manifest);
    assert!(out.status.success(), "{}", text(&out));
    let pods = lab.running_pods(2);
    let server_ip = &pods.iter().find(|p| p.0 == "e2e/netserver-0").unwrap().2;
    let client = lab.pod_netns("e2e/test-container-pod");
    let client_ip = &pods
        .iter()
        .find(|p| p.0 == "e2e/test-container-pod")
        .unwrap()
        .2;
    // The e2e tests' way: ask the test container's netexec to /dial the server.
    let dial = format!("/dial?request=hostname&protocol=http&host={server_ip}&port=8083&tries=1");
    let body = http_get(&client, format!("{client_ip}:9080").parse().unwrap(), &dial).unwrap();
    assert!(body.contains("netserver-0"), "{body}");
    let dial = format!("/dial?request=hostname&protocol=udp&host={server_ip}&port=8081&tries=1");
    let body = http_get(&client, format!("{client_ip}:9080").parse().unwrap(), &dial).unwrap();
    assert!(body.contains("netserver-0"), "{body}");
}

/// What `down` must leave as it found it in the machine's own namespace.
fn host_state() -> Vec<(String, String)> {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(args[0])
            .args(&args[1..])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut state = vec![
        ("links".into(), run(&["ip", "-j", "link", "show"])),
        ("addresses".into(), run(&["ip", "-j", "addr", "show"])),
        (
            "routes".into(),
            run(&["ip", "-j", "route", "show", "table", "all"]),
        ),
        (
            "routes6".into(),
            run(&["ip", "-6", "-j", "route", "show", "table", "all"]),
        ),
        ("nft".into(), run(&["nft", "list", "ruleset"])),
    ];
    for key in [
        "net/ipv4/ip_forward",
        "net/ipv6/conf/all/forwarding",
        "net/ipv4/conf/all/rp_filter",
        "net/ipv4/conf/default/rp_filter",
    ] {
        state.push((
            key.into(),
            std::fs::read_to_string(format!("/proc/sys/{key}")).unwrap_or_default(),
        ));
    }
    state
}

#[test]
fn down_leaves_the_machines_own_namespace_as_it_was() {
    let before = host_state();
    let name;
    {
        let lab = TestLab::up("down", 2, "vxlan");
        name = lab.name.clone();
        let out = lab.apply(&(pinned_pod("a", "node-1") + &pinned_pod("b", "node-2")));
        assert!(out.status.success(), "{}", text(&out));
        lab.running_pods(2);
        let out = lab.podnet(&["down"]);
        assert!(out.status.success(), "{}", text(&out));
        let again = lab.podnet(&["down"]);
        assert!(
            again.status.success(),
            "a second down failed: {}",
            text(&again)
        );
    }
    let after = host_state();
    for ((what, b), (_, a)) in before.iter().zip(&after) {
        assert_eq!(a, b, "{what} changed");
    }
    let marker = format!("podnet-{name}-");
    let netns: Vec<String> = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&marker))
        .collect();
    assert!(netns.is_empty(), "namespaces left: {netns:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&marker), "mounts left:\n{mounts}");
    assert!(!std::path::Path::new(&format!("/run/podnet/labs/{name}")).exists());
    let etc: Vec<_> = std::fs::read_dir("/etc/netns")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&marker))
        .collect();
    assert!(etc.is_empty(), "/etc/netns entries left");
    // No process of the lab survives (zombies hold nothing and are not counted).
    let store = format!("/run/podnet/labs/{name}/");
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        assert!(
            !cmdline.contains(&store) && !cmdline.contains(&marker),
            "process left: {cmdline}"
        );
    }
}

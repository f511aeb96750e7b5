//! Pod-to-pod traffic on each backend: 3 nodes × 2 pods, every pair over ICMP, TCP and UDP,
//! the receiver seeing the sender's pod IP, containers of a pod over localhost, pods reaching
//! the outside host as their node.

use std::net::SocketAddr;

use crate::{TestLab, http_get, text, udp_ask};

/// Two agnhost netexec pods pinned to each of three nodes, and a two-container pod.
fn workloads() -> String {
    let mut m = String::new();
    for node in 1..=3 {
        for i in 0..2 {
            m.push_str(&format!(
                "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: n{node}-p{i}\nspec:\n  nodeName: node-{node}\n  containers:\n  - name: netexec\n    image: registry.k8s.io/e2e-test-images/agnhost:2.53\n    args: [\"netexec\", \"--http-port=8080\", \"--udp-port=8081\"]\n"
            ));
        }
    }
    m.push_str(
        "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: duo\nspec:\n  containers:\n  - name: app\n    image: agnhost\n    args: [\"netexec\", \"--http-port=9090\", \"--udp-port=-1\"]\n  - name: sidecar\n    image: agnhost\n    args: [\"pause\"]\n",
    );
    m
}

fn exercise(tag: &str, backend: &str) {
    let lab = TestLab::up(tag, 3, backend);
    let out = lab.apply(&workloads());
    assert!(out.status.success(), "apply: {}", text(&out));
    let pods = lab.running_pods(7);
    let netexec: Vec<_> = pods.iter().filter(|p| !p.0.ends_with("/duo")).collect();
    assert_eq!(netexec.len(), 6, "{pods:?}");

    let mut failures = Vec::new();
    for (src, src_node, src_ip) in &netexec {
        let ns = lab.pod_netns(src);
        for (dst, dst_node, dst_ip) in &netexec {
            let http: SocketAddr = format!("{dst_ip}:8080").parse().unwrap();
            let udp: SocketAddr = format!("{dst_ip}:8081").parse().unwrap();
            let (ns_name, _) = src.split_once('/').unwrap();
            let ping = lab.exec_in(
                &format!("pod-{ns_name}-{}", src.split_once('/').unwrap().1),
                &["ping", "-c1", "-W2", dst_ip],
            );
            if !ping.status.success() {
                failures.push(format!("ICMP {src}@{src_node} -> {dst}@{dst_node}"));
            }
            match http_get(&ns, http, "/clientip") {
                Ok(body) if body.starts_with(&format!("{src_ip}:")) => {}
                other => failures.push(format!(
                    "TCP {src}@{src_node} -> {dst}@{dst_node}: {other:?} (want {src_ip}:port)"
                )),
            }
            match udp_ask(&ns, udp, "hostname") {
                Ok(name) if name.trim() == dst.split_once('/').unwrap().1 => {}
                other => failures.push(format!(
                    "UDP {src}@{src_node} -> {dst}@{dst_node}: {other:?}"
                )),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{backend}: {} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Containers of one pod share localhost.
    let duo = lab.pod_netns("default/duo");
    let body = http_get(&duo, "127.0.0.1:9090".parse().unwrap(), "/hostname").unwrap();
    assert_eq!(body.trim(), "duo");

    // Pods reach the outside host, which sees their node's address (masquerade).
    let server = std::process::Command::new("ip")
        .args(["netns", "exec", &format!("podnet-{}-outside", lab.name)])
        .arg(crate::podnet())
        .args(["agnhost", "netexec", "--http-port=8080", "--udp-port=-1"])
        .spawn()
        .unwrap();
    let mut server = scopeguard(server);
    let outside: SocketAddr = "192.168.100.200:8080".parse().unwrap();
    for (src, src_node, _) in &netexec {
        let node_ip = format!(
            "192.168.10{}.1{}",
            if backend == "cross-subnet" && src_node == "node-3" {
                1
            } else {
                0
            },
            &src_node[5..]
        );
        let mut seen = Err(String::new());
        for _ in 0..20 {
            seen = http_get(&lab.pod_netns(src), outside, "/clientip");
            if seen.is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let seen = seen.unwrap_or_else(|e| panic!("{src} cannot reach the outside host: {e}"));
        assert!(
            seen.starts_with(&format!("{node_ip}:")),
            "{src}: outside saw {seen}, want {node_ip}"
        );
    }
    let _ = server.0.kill();
}

struct Guard(std::process::Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
fn scopeguard(c: std::process::Child) -> Guard {
    Guard(c)
}

#[test]
fn host_gw_connects_every_pod_pair() {
    exercise("hg", "host-gw");
}

#[test]
fn vxlan_connects_every_pod_pair() {
    exercise("vx", "vxlan");
}

#[test]
fn cross_subnet_connects_every_pod_pair() {
    exercise("cs", "cross-subnet");
}

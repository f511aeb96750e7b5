//! Services while things change under a client that never stops: a Deployment scaled up and
//! down (readiness and graceful termination decide what serves), a UDP endpoint replaced
//! (stale conntrack entries cleared), agents restarted (the new agent adopts the rules).
//! The client opens a fresh connection per request and never retries: every failure counts.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use podnet_kernel::netns;

use crate::{TestLab, http_get, text};

/// A client looping HTTP GETs of `/hostname` against one address, from its own thread.
struct ClientLoop {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
    handle: JoinHandle<LoopReport>,
}

#[derive(Debug, Default)]
struct LoopReport {
    ok: usize,
    failures: Vec<String>,
    hostnames: BTreeSet<String>,
}

impl ClientLoop {
    /// Starts looping from `ns` (a pod's namespace) to `to`, one request every 20 ms.
    fn start(ns: std::fs::File, to: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let (stopped, counter) = (Arc::clone(&stop), Arc::clone(&answered));
        let handle = std::thread::spawn(move || {
            netns::run_in(&ns, move || {
                let mut report = LoopReport::default();
                while !stopped.load(Ordering::Relaxed) {
                    match get_hostname(to) {
                        Ok(name) => {
                            report.ok += 1;
                            counter.fetch_add(1, Ordering::Relaxed);
                            report.hostnames.insert(name);
                        }
                        Err(e) => report.failures.push(format!("{}: {e}", wall_clock())),
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                report
            })
            .unwrap()
        });
        ClientLoop {
            stop,
            answered,
            handle,
        }
    }

    /// Waits until the loop has `n` more answers (or fails the test after `secs`).
    fn wait_for_answers(&self, n: usize, secs: u64) {
        let target = self.answered.load(Ordering::Relaxed) + n;
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.answered.load(Ordering::Relaxed) < target {
            assert!(
                Instant::now() < deadline,
                "the client loop stopped getting answers"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn finish(self) -> LoopReport {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

/// Now as seconds since the epoch, to line failures up with the daemons' logs.
fn wall_clock() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:03}", now.as_secs(), now.subsec_millis())
}

/// One `GET /hostname` on a new connection, no retry.
fn get_hostname(to: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        s,
        "GET /hostname HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    match out.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_owned()),
        _ => Err(std::io::Error::other(format!("bad answer {out:?}"))),
    }
}

/// A Deployment of netexec pods that report ready only when serving and drain for 8 s after
/// SIGTERM (`--delay-shutdown`, as the upstream tests run it: longer than the rules take to
/// follow, even on a loaded machine), its Service, and a client pod.
fn web(replicas: u32) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      terminationGracePeriodSeconds: 15
      containers:
      - name: netexec
        image: registry.k8s.io/e2e-test-images/agnhost:2.53
        args: ["netexec", "--http-port=8080", "--udp-port=8081", "--delay-shutdown=8"]
        readinessProbe:
          httpGet: {{path: /readyz, port: 8080}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {{app: web}}
  ports:
  - {{name: http, port: 80, targetPort: 8080, protocol: TCP}}
  - {{name: udp, port: 53, targetPort: 8081, protocol: UDP}}
---
apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  nodeName: node-1
  containers:
  - name: pause
    image: registry.k8s.io/e2e-test-images/agnhost:2.53
    args: ["pause"]
"#
    )
}

fn apply(lab: &TestLab, manifest: &str) {
    let out = lab.apply(manifest);
    assert!(out.status.success(), "apply: {}", text(&out));
}

/// Every endpoint of Service `web`, as its slices list them.
fn web_endpoints(lab: &TestLab) -> Vec<serde_json::Value> {
    lab.get_json(&["endpointslices"])["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == "web")
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// The ready endpoints of Service `web`, by pod name.
fn ready_endpoints(lab: &TestLab) -> BTreeSet<String> {
    web_endpoints(lab)
        .iter()
        .filter(|e| e["conditions"]["ready"] == true)
        .filter_map(|e| e["targetRef"]["name"].as_str().map(str::to_owned))
        .collect()
}

/// Every endpoint of Service `web` (ready or not), by pod name.
fn all_endpoints(lab: &TestLab) -> BTreeSet<String> {
    web_endpoints(lab)
        .iter()
        .filter_map(|e| e["targetRef"]["name"].as_str().map(str::to_owned))
        .collect()
}

fn cluster_ip(lab: &TestLab) -> String {
    lab.get_json(&["svc", "web"])["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Waits until Service `web` has exactly `n` endpoints, all ready.
fn wait_for_endpoints(lab: &TestLab, n: usize, secs: u64) {
    lab.eventually(&format!("{n} ready endpoints, no others"), secs, || {
        let (ready, all) = (ready_endpoints(lab), all_endpoints(lab));
        (ready.len() == n && all.len() == n)
            .then_some(())
            .ok_or(format!("ready {ready:?}, all {all:?}"))
    });
}

/// `web` with `replicas` ready endpoints, and the client pod looping against its ClusterIP.
fn web_with_client_loop(lab: &TestLab, replicas: u32) -> ClientLoop {
    apply(lab, &web(replicas));
    lab.running_pods(replicas as usize + 1);
    wait_for_endpoints(lab, replicas as usize, 20);
    let vip: SocketAddr = format!("{}:80", cluster_ip(lab)).parse().unwrap();
    // The slice says ready a moment before every agent has programmed it: the loop counts
    // from the first answer through the ClusterIP.
    let ns = lab.pod_netns("default/client");
    lab.eventually("the client reaches web through its ClusterIP", 10, || {
        http_get(&ns, vip, "/hostname")
    });
    let client = ClientLoop::start(lab.pod_netns("default/client"), vip);
    client.wait_for_answers(5, 10);
    client
}

#[test]
fn scaling_a_deployment_up_and_down_under_a_client_loop_fails_no_request() {
    let lab = TestLab::up("scale", 2, "vxlan");
    let client = web_with_client_loop(&lab, 1);

    apply(&lab, &web(4));
    wait_for_endpoints(&lab, 4, 30);
    client.wait_for_answers(40, 10);
    apply(&lab, &web(1));
    // The removed pods drain (terminating, still serving) and are then gone.
    wait_for_endpoints(&lab, 1, 30);
    client.wait_for_answers(40, 10);
    apply(&lab, &web(3));
    wait_for_endpoints(&lab, 3, 30);
    client.wait_for_answers(40, 10);

    let report = client.finish();
    assert!(
        report.failures.is_empty(),
        "{} of {} requests failed while scaling: {:#?}\n{}",
        report.failures.len(),
        report.ok + report.failures.len(),
        report.failures,
        lab.daemon_logs()
    );
    assert!(
        report.hostnames.len() >= 3,
        "the new replicas never answered: {:?}",
        report.hostnames
    );
}

#[test]
fn restarting_agents_under_a_client_loop_fails_no_request() {
    let lab = TestLab::up("restart", 2, "host-gw");
    let client = web_with_client_loop(&lab, 2);
    for node in ["node-1", "node-2", "node-1"] {
        let out = lab.podnet(&["node", "restart-agent", node]);
        assert!(out.status.success(), "restart-agent {node}: {}", text(&out));
        client.wait_for_answers(25, 10);
    }
    let report = client.finish();
    assert!(
        report.failures.is_empty(),
        "{} of {} requests failed across agent restarts: {:#?}",
        report.failures.len(),
        report.ok + report.failures.len(),
        report.failures
    );
}

/// The addresses of Service `web`'s ready endpoints.
fn ready_addresses(lab: &TestLab) -> BTreeSet<String> {
    web_endpoints(lab)
        .iter()
        .filter(|e| e["conditions"]["ready"] == true)
        .filter_map(|e| e["addresses"][0].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_udp_client_follows_its_service_to_a_replacement_endpoint() {
    let lab = TestLab::up("udp", 2, "host-gw");
    apply(&lab, &web(1));
    lab.running_pods(2);
    wait_for_endpoints(&lab, 1, 20);
    let old_ip = ready_addresses(&lab).into_iter().next().unwrap();
    let vip: SocketAddr = format!("{}:53", cluster_ip(&lab)).parse().unwrap();
    let ns = lab.pod_netns("default/client");

    // One socket for the whole test, as a resolver keeps one: same source port, same flow.
    let socket = netns::run_in(&ns, || UdpSocket::bind("0.0.0.0:0").unwrap()).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let ask = || -> Option<String> {
        socket.send_to(b"hostname", vip).ok()?;
        let mut buf = [0u8; 512];
        let (n, _) = socket.recv_from(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    assert_eq!(
        lab.eventually("a UDP answer", 10, || ask().ok_or("none".into())),
        "web-0"
    );

    // Replace the endpoint: the pod is deleted (the command returns once it is gone) and its
    // Deployment starts another, at another address. The client keeps sending meanwhile, so
    // its conntrack entry, which leads to the old address, never times out by itself.
    let stop = AtomicBool::new(false);
    let sender = std::thread::scope(|scope| {
        let sending = scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let _ = ask();
            }
        });
        let out = lab.podnet(&["delete", "pod", "web-0"]);
        stop.store(true, Ordering::Relaxed);
        sending.join().unwrap();
        out
    });
    assert!(sender.status.success(), "{}", text(&sender));
    lab.eventually("a replacement endpoint at a new address", 30, || {
        let ready = ready_addresses(&lab);
        (ready.len() == 1 && !ready.contains(&old_ip))
            .then_some(())
            .ok_or(format!("ready: {ready:?}"))
    });
    // Once the new endpoint is programmed the stale entry is cleared and the same socket
    // reaches the new pod (the old one is gone: any answer is the new pod's).
    let since = Instant::now();
    lab.eventually("the replacement answers the same socket", 10, || {
        ask().ok_or(format!("no answer after {:?}", since.elapsed()))
    });
}

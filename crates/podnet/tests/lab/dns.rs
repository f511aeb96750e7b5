//! Cluster DNS end to end: `podnet dns` as the `kube-dns` pods and as each node's own server
//! (NodeLocal DNSCache style), asked with `dig` and glibc (`getent`) from pods on every node
//! through the pods' kubelet-written resolv.conf — every record kind, UDP and TCP, names outside
//! the cluster through the outside host's resolver, answers following Services and endpoints as
//! they are created, scaled and deleted, and glibc's parallel A+AAAA pairs never losing one to a
//! conntrack race.

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use podnet_kernel::netns;
use podnet_lab::control::CLUSTER_DNS_ENV;

use crate::{TestLab, podnet, text};

/// `lab up` with cluster DNS.
fn up_with_dns(tag: &str, nodes: u32) -> TestLab {
    let lab = TestLab {
        name: format!("t{}-{tag}", std::process::id() % 100_000),
    };
    dns_lab_up(&lab, nodes);
    lab
}

/// `podnet lab up` for `lab` with cluster DNS; panics if it fails.
fn dns_lab_up(lab: &TestLab, nodes: u32) {
    let out = Command::new(podnet())
        .env(CLUSTER_DNS_ENV, "1")
        .args(["lab", "--lab", &lab.name, "up", "--nodes"])
        .arg(nodes.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "lab up failed: {}", text(&out));
}

fn apply(lab: &TestLab, manifest: &str) {
    let out = lab.apply(manifest);
    assert!(out.status.success(), "apply: {}", text(&out));
}

/// `dig ARGS` in the default-namespace pod `pod`; its output, or the failure.
fn dig(lab: &TestLab, pod: &str, args: &[&str]) -> String {
    let out = lab.exec_in(
        &format!("pod-default-{pod}"),
        &[&["dig", "+time=2", "+tries=2"], args].concat(),
    );
    text(&out)
}

/// `dig +short ARGS` in `pod`: the answer lines, sorted.
fn short(lab: &TestLab, pod: &str, args: &[&str]) -> Vec<String> {
    let out = dig(lab, pod, &[&["+short"], args].concat());
    let mut lines: Vec<String> = out.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

/// IPs of the Running pods in `default` whose name starts with `prefix`, once there are `count`
/// of them (and, with `ready`, all Ready).
fn pod_ips(lab: &TestLab, prefix: &str, count: usize, ready: bool) -> BTreeSet<String> {
    lab.eventually(&format!("{count} pods {prefix}*"), 30, || {
        let pods = lab.get_json(&["pods"]);
        let mut ips = BTreeSet::new();
        for p in pods["items"].as_array().into_iter().flatten() {
            let name = p["metadata"]["name"].as_str().unwrap_or_default();
            if !name.starts_with(prefix) || !p["metadata"]["deletionTimestamp"].is_null() {
                continue;
            }
            let is_ready = p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            match p["status"]["podIP"].as_str() {
                Some(ip) if p["status"]["phase"] == "Running" && (is_ready || !ready) => {
                    ips.insert(ip.to_owned());
                }
                _ => return Err(format!("{name} is not running yet")),
            }
        }
        if ips.len() == count {
            Ok(ips)
        } else {
            Err(format!("{} of {count} running: {ips:?}", ips.len()))
        }
    })
}

fn cluster_ip(lab: &TestLab, service: &str) -> String {
    lab.get_json(&["svc", service])["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A headless Service over a Deployment of `replicas` agnhost pods.
fn headless(replicas: u32) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: hl}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: hl}}}}
  template:
    metadata: {{labels: {{app: hl}}}}
    spec:
      containers:
      - name: netexec
        image: agnhost
        args: ["netexec", "--http-port=8080", "--udp-port=-1"]
        readinessProbe:
          tcpSocket: {{port: 8080}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: hl}}
spec:
  clusterIP: None
  selector: {{app: hl}}
  ports:
  - {{name: http, port: 8080}}
"#
    )
}

/// A client pod pinned to each node.
fn clients(nodes: u32) -> String {
    (1..=nodes)
        .map(|n| {
            format!(
                "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: client-{n}}}\nspec:\n  nodeName: node-{n}\n  containers:\n  - {{name: c, image: agnhost, args: [pause]}}\n"
            )
        })
        .collect()
}

/// Pods with the other DNS policies: the node's resolver, and only their own `dnsConfig`.
const POLICIES: &str = r#"
---
apiVersion: v1
kind: Pod
metadata: {name: policy-default}
spec:
  dnsPolicy: Default
  containers:
  - {name: c, image: agnhost, args: [pause]}
---
apiVersion: v1
kind: Pod
metadata: {name: policy-none}
spec:
  dnsPolicy: None
  dnsConfig:
    nameservers: [10.96.0.10]
    searches: [svc.cluster.local]
    options:
    - {name: ndots, value: "2"}
    - {name: edns0}
  containers:
  - {name: c, image: agnhost, args: [pause]}
"#;

const SERVICES: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  containers:
  - name: netexec
    image: agnhost
    args: ["netexec", "--http-port=8080", "--udp-port=-1"]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080}
---
apiVersion: v1
kind: Service
metadata: {name: ext}
spec:
  type: ExternalName
  externalName: www.example.test
"#;

#[test]
fn pods_resolve_every_record_kind_from_every_node_as_their_dns_policy_says() {
    let lab = up_with_dns("dns-records", 3);
    apply(
        &lab,
        &format!("{SERVICES}{}---{}{POLICIES}", clients(3), headless(2)),
    );
    let web_ip = cluster_ip(&lab, "web");
    let headless_ips: Vec<String> = pod_ips(&lab, "hl-", 2, true).into_iter().collect();
    let client_ips = pod_ips(&lab, "client-", 3, false);
    pod_ips(&lab, "web", 1, false);
    let dns_pods = lab.get_json(&["pods", "-n", "kube-system"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["status"]["podIP"].as_str().unwrap().to_owned())
        .collect::<Vec<_>>();
    assert_eq!(dns_pods.len(), 2, "{dns_pods:?}");
    let fqdn = "web.default.svc.cluster.local";

    // dnsPolicy Default: the node's resolver (the outside host), which knows no cluster names.
    pod_ips(&lab, "policy-", 2, false);
    let resolv =
        |pod: &str| text(&lab.exec_in(&format!("pod-default-{pod}"), &["cat", "/etc/resolv.conf"]));
    assert_eq!(resolv("policy-default"), "nameserver 192.168.100.200\n");
    assert_eq!(
        short(&lab, "policy-default", &["www.example.test"]),
        ["192.168.100.200"]
    );
    // dnsPolicy None: only its dnsConfig, whose search path still finds `web.default`.
    assert_eq!(
        resolv("policy-none"),
        "search svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:2 edns0\n"
    );
    let getent = lab.exec_in(
        "pod-default-policy-none",
        &["getent", "hosts", "web.default"],
    );
    assert!(
        text(&getent).starts_with(&format!("{web_ip} ")),
        "policy-none: getent hosts web.default: {}",
        text(&getent)
    );

    for n in 1..=3 {
        let pod = format!("client-{n}");
        let pod = pod.as_str();
        // The first answer may wait for the DNS pods' endpoints to reach this node's agent.
        lab.eventually(
            &format!("{pod}: the short name by the search path"),
            10,
            || match short(&lab, pod, &["+search", "web"]) {
                ips if ips == [web_ip.clone()] => Ok(()),
                other => Err(format!("{other:?}")),
            },
        );
        let checks: Vec<(&str, Vec<&str>, Vec<String>)> = vec![
            ("FQDN A", vec![fqdn], vec![web_ip.clone()]),
            ("FQDN A over TCP", vec!["+tcp", fqdn], vec![web_ip.clone()]),
            (
                "SRV of a named port",
                vec!["SRV", "_http._tcp.web.default.svc.cluster.local"],
                vec![format!("0 100 80 {fqdn}.")],
            ),
            (
                "PTR of the cluster IP",
                vec!["-x", &web_ip],
                vec![format!("{fqdn}.")],
            ),
            (
                "headless A per ready endpoint",
                vec!["hl.default.svc.cluster.local"],
                headless_ips.clone(),
            ),
            (
                "ExternalName A, through its CNAME",
                vec!["ext.default.svc.cluster.local"],
                vec!["192.168.100.200".to_owned(), "www.example.test.".to_owned()],
            ),
            (
                "ExternalName CNAME",
                vec!["CNAME", "ext.default.svc.cluster.local"],
                vec!["www.example.test.".to_owned()],
            ),
            (
                "a name outside the cluster, through the outside host",
                vec!["www.example.test"],
                vec!["192.168.100.200".to_owned()],
            ),
            (
                "dns-version",
                vec!["TXT", "dns-version.cluster.local"],
                vec!["\"1.1.0\"".to_owned()],
            ),
        ];
        for (what, args, want) in &checks {
            assert_eq!(&short(&lab, pod, args), want, "{pod}: {what}");
        }
        for ip in &client_ips {
            let name = format!("{}.default.pod.cluster.local", ip.replace('.', "-"));
            assert_eq!(
                short(&lab, pod, &[&name]),
                [ip.as_str()],
                "{pod}: pod A {name}"
            );
        }
        let missing = dig(&lab, pod, &["nope.default.svc.cluster.local"]);
        assert!(missing.contains("status: NXDOMAIN"), "{pod}: {missing}");
        let nslookup = text(&lab.exec_in(&format!("pod-default-{pod}"), &["nslookup", "web"]));
        assert!(
            nslookup.contains(&format!("Name:\t{fqdn}\nAddress: {web_ip}")),
            "{pod}: nslookup web: {nslookup}"
        );
        // And an application by name: agnhost `connect` resolves through glibc.
        let podnet = podnet().display().to_string();
        lab.eventually(&format!("{pod}: agnhost connect web:80"), 10, || {
            let out = lab.exec_in(
                &format!("pod-default-{pod}"),
                &[&podnet, "agnhost", "connect", "--timeout=3s", "web:80"],
            );
            out.status.success().then_some(()).ok_or_else(|| text(&out))
        });
        for dns_pod in &dns_pods {
            let ip = dns_pod.as_str();
            assert_eq!(
                short(&lab, pod, &[&format!("@{ip}"), fqdn]),
                [web_ip.as_str()],
                "{pod}: asking the kube-dns pod {ip} directly"
            );
        }
        let getent = lab.exec_in(&format!("pod-default-{pod}"), &["getent", "hosts", "web"]);
        assert!(
            text(&getent).starts_with(&format!("{web_ip} ")),
            "{pod}: getent hosts web: {}",
            text(&getent)
        );
    }
}

#[test]
fn answers_follow_services_and_endpoints_within_seconds() {
    let lab = up_with_dns("dns-churn", 2);
    // `up` again changes nothing: still one kube-dns Service and two DNS pods.
    dns_lab_up(&lab, 2);
    let kube_system = |kind: &str| {
        lab.get_json(&[kind, "-n", "kube-system"])["items"]
            .as_array()
            .map_or(0, Vec::len)
    };
    assert_eq!((kube_system("svc"), kube_system("pods")), (1, 2));
    apply(&lab, &format!("{}---{}", clients(2), headless(1)));
    pod_ips(&lab, "client-", 2, false);
    let fqdn = "late.default.svc.cluster.local";
    // Warm up: the DNS Service answers from this pod before the clock starts.
    lab.eventually("the cluster DNS answers", 10, || {
        match short(
            &lab,
            "client-2",
            &["kube-dns.kube-system.svc.cluster.local"],
        ) {
            ips if ips == ["10.96.0.10"] => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });

    // Created: answered within two seconds.
    apply(
        &lab,
        "apiVersion: v1\nkind: Service\nmetadata: {name: late}\nspec:\n  selector: {app: hl}\n  ports:\n  - {port: 80}\n",
    );
    let ip = cluster_ip(&lab, "late");
    let created = Instant::now();
    within(
        &lab,
        "the new Service",
        Duration::from_secs(2),
        created,
        || short(&lab, "client-2", &[fqdn]) == [ip.clone()],
    );

    // Scaled: the headless records follow the ready endpoints, up and down.
    for replicas in [3, 1] {
        apply(&lab, &headless(replicas));
        let want: Vec<String> = pod_ips(&lab, "hl-", replicas as usize, true)
            .into_iter()
            .collect();
        lab.eventually(
            &format!("headless A records for {replicas}"),
            10,
            || match short(&lab, "client-1", &["hl.default.svc.cluster.local"]) {
                ips if ips == want => Ok(()),
                other => Err(format!("{other:?}, want {want:?}")),
            },
        );
    }

    // Deleted: NXDOMAIN within two seconds.
    let out = lab.podnet(&["delete", "svc", "late"]);
    assert!(out.status.success(), "delete: {}", text(&out));
    let deleted = Instant::now();
    within(
        &lab,
        "NXDOMAIN for the deleted Service",
        Duration::from_secs(2),
        deleted,
        || dig(&lab, "client-1", &[fqdn]).contains("status: NXDOMAIN"),
    );
}

/// Polls `ok` until it holds, failing if that takes longer than `limit` after `since`.
fn within(
    lab: &TestLab,
    what: &str,
    limit: Duration,
    since: Instant,
    mut ok: impl FnMut() -> bool,
) {
    while !ok() {
        assert!(
            since.elapsed() < limit,
            "{what}: not within {limit:?}\n{}",
            lab.daemon_logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn parallel_a_and_aaaa_pairs_from_one_socket_never_time_out() {
    let lab = up_with_dns("dns-race", 2);
    apply(&lab, &format!("{SERVICES}{}", clients(2)));
    pod_ips(&lab, "client-", 2, false);
    let fqdn = "web.default.svc.cluster.local";
    lab.eventually("the cluster DNS answers", 10, || {
        match short(&lab, "client-1", &[fqdn]).len() {
            1 => Ok(()),
            n => Err(format!("{n} answers")),
        }
    });

    // As glibc resolves: a fresh socket per lookup, A and AAAA sent back to back from it, both
    // answers awaited. Eight lookups at a time; any lost answer is a timeout.
    let ns = lab.pod_netns("default/client-1");
    let server: SocketAddr = "10.96.0.10:53".parse().unwrap();
    let (pairs, threads) = (10_000, 8);
    let started = Instant::now();
    let failures: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let ns = &ns;
                s.spawn(move || {
                    netns::run_in(ns, || {
                        (0..pairs / threads)
                            .filter_map(|i| ask_pair(server, fqdn, (t * pairs + i) as u16).err())
                            .collect::<Vec<_>>()
                    })
                    .unwrap()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {pairs} A+AAAA pairs timed out or failed in {:?}, e.g. {:?}",
        failures.len(),
        started.elapsed(),
        &failures[..failures.len().min(5)]
    );

    // By design: the queries never entered conntrack (so no DNAT entry could be raced).
    for node in ["node-1", "node-2"] {
        let out = lab.exec_in(node, &["conntrack", "-L", "-d", "10.96.0.10"]);
        assert!(out.status.success(), "conntrack -L: {}", text(&out));
        let entries = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            entries.trim().is_empty(),
            "{node} tracked DNS flows:\n{entries}"
        );
    }
}

/// One glibc-style lookup pair: A and AAAA for `name` from one new socket, both answers within
/// a second (glibc would wait five, then retry).
fn ask_pair(server: SocketAddr, name: &str, id: u16) -> Result<(), String> {
    let socket = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    socket.connect(server).map_err(|e| e.to_string())?;
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    let (a, aaaa) = (id, id.wrapping_add(0x8000));
    socket.send(&query(a, name, 1)).map_err(|e| e.to_string())?;
    socket
        .send(&query(aaaa, name, 28))
        .map_err(|e| e.to_string())?;
    let mut pending = vec![a, aaaa];
    let mut buf = [0u8; 1500];
    while !pending.is_empty() {
        let n = socket
            .recv(&mut buf)
            .map_err(|e| format!("waiting for ids {pending:?}: {e}"))?;
        if n < 12 {
            return Err(format!("a {n}-byte answer"));
        }
        let got = u16::from_be_bytes([buf[0], buf[1]]);
        let rcode = buf[3] & 0x0f;
        if rcode != 0 {
            return Err(format!("rcode {rcode} for id {got}"));
        }
        pending.retain(|&p| p != got);
    }
    Ok(())
}

/// A recursive query for `name`, type `qtype`, class IN.
fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend([0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend(label.as_bytes());
    }
    q.push(0);
    q.extend(qtype.to_be_bytes());
    q.extend(1u16.to_be_bytes());
    q
}

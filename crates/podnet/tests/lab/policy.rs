//! NetworkPolicy end to end, in upstream's style (kubernetes `test/e2e/network/netpol`):
//! namespaces x, y, z with pods a, b, c serving TCP and UDP on ports 80 and 81; for each case,
//! the table the policy model predicts must be the one the case expects, and real probes
//! between all 81 pairs must observe exactly that table, to the pods' addresses and (TCP)
//! through each pod's Service. One lab runs every case in sequence
//! (each case changes only policies and labels), then a pod started under a deny-all policy
//! must never get a packet through, not even in its first milliseconds. ClusterNetworkPolicy
//! tiers are checked the same way, over and under a NetworkPolicy.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use podnet_kernel::netns;
use podnet_lab::check::{self, ProbePort};
use podnet_lab::control::Lab;
use podnet_lab::paths::LabPaths;

use crate::{TestLab, podnet, text};

const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const PODS: [&str; 3] = ["a", "b", "c"];

/// The namespaces and the nine pods: two agnhost netexec containers each (ports 80 and 81,
/// TCP and UDP), with upstream's port names, and a Service `s-<pod>` in front of each (TCP 80
/// and 81). The extra labels go to pod y/c and namespace z.
fn workload(yc_extra_labels: &str, z_extra_labels: &str) -> String {
    let mut docs = Vec::new();
    for ns in NAMESPACES {
        let extra = if ns == "z" { z_extra_labels } else { "" };
        docs.push(format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  labels: {{ns: {ns}{extra}}}\n"
        ));
        for pod in PODS {
            let extra = if (ns, pod) == ("y", "c") {
                yc_extra_labels
            } else {
                ""
            };
            let mut doc = format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {pod}\n  namespace: {ns}\n  labels: {{pod: {pod}{extra}}}\nspec:\n  containers:\n"
            );
            for port in [80, 81] {
                doc.push_str(&format!(
                    "  - name: c{port}\n    image: registry.k8s.io/e2e-test-images/agnhost:2.53\n    args: [\"netexec\", \"--http-port={port}\", \"--udp-port={port}\"]\n    ports:\n    - {{name: serve-{port}-tcp, containerPort: {port}, protocol: TCP}}\n    - {{name: serve-{port}-udp, containerPort: {port}, protocol: UDP}}\n"
                ));
            }
            docs.push(doc);
            docs.push(format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: s-{pod}\n  namespace: {ns}\nspec:\n  selector: {{pod: {pod}}}\n  ports:\n  - {{name: tcp-80, port: 80}}\n  - {{name: tcp-81, port: 81}}\n"
            ));
        }
    }
    docs.join("---\n")
}

/// A NetworkPolicy in namespace x.
fn policy_x(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: {name}\n  namespace: x\nspec:\n{spec}"
    )
}

fn ns_of(pod: &str) -> &str {
    pod.split_once('/').map_or(pod, |(ns, _)| ns)
}

/// The lab as the library sees it (for predictions and probes).
fn handle(lab: &TestLab) -> Lab {
    Lab::new(LabPaths::new(&lab.name).unwrap(), podnet())
}

fn apply(lab: &TestLab, manifest: &str) {
    let out = lab.apply(manifest);
    assert!(out.status.success(), "apply: {}", text(&out));
}

fn delete_policy(lab: &TestLab, name: &str) {
    delete(lab, "netpol", name);
}

/// `lab delete KIND NAME -n x` (the namespace is ignored for cluster-scoped kinds).
fn delete(lab: &TestLab, kind: &str, name: &str) {
    let out = lab.podnet(&["delete", kind, name, "-n", "x"]);
    assert!(out.status.success(), "delete {kind} {name}: {}", text(&out));
}

/// Admin tier: into x, deny z/a (which the NetworkPolicy allows) and accept y/a (which it
/// does not). Baseline tier: into y (no NetworkPolicy there), deny namespace z.
const CLUSTER_POLICIES: &str = r#"
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: admin-x}
spec:
  tier: Admin
  priority: 10
  subject:
    namespaces: {matchLabels: {ns: x}}
  ingress:
  - name: deny-z-a
    action: Deny
    from:
    - pods:
        namespaceSelector: {matchLabels: {ns: z}}
        podSelector: {matchLabels: {pod: a}}
  - name: accept-y-a
    action: Accept
    from:
    - pods:
        namespaceSelector: {matchLabels: {ns: y}}
        podSelector: {matchLabels: {pod: a}}
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: baseline-y}
spec:
  tier: Baseline
  priority: 10
  subject:
    namespaces: {matchLabels: {ns: y}}
  ingress:
  - action: Deny
    from:
    - namespaces: {matchLabels: {ns: z}}
"#;

/// An Admin-tier ClusterNetworkPolicy over every pod of x whose one ingress rule gives
/// `action` to traffic from namespace z.
fn admin_from_z(name: &str, priority: u32, action: &str) -> String {
    format!(
        "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {{name: {name}}}\nspec:\n  tier: Admin\n  priority: {priority}\n  subject:\n    namespaces: {{matchLabels: {{ns: x}}}}\n  ingress:\n  - name: {action}-z\n    action: {action}\n    from:\n    - namespaces: {{matchLabels: {{ns: z}}}}\n"
    )
}

type Expect<'a> = &'a dyn Fn(&str, &str) -> bool;

/// For each probe: the model must predict `expect(from, to)` for every pair off the diagonal,
/// and the probes must observe the model's table (retried while the agents catch up).
fn assert_tables(lab: &TestLab, case: &str, probes: &[(&str, Expect<'_>)]) {
    let handle = handle(lab);
    for (probe, expect) in probes {
        let probe: ProbePort = probe.parse().unwrap();
        let mut last = String::new();
        let table = lab.eventually(&format!("case {case}, {probe}"), 20, || {
            let state = check::predict(&handle).map_err(|e| e.to_string())?;
            let pods = check::endpoints(&handle).map_err(|e| e.to_string())?;
            let table = check::policy_table(&state, &pods, probe);
            let names = &table.predicted.pods;
            if names.len() != 9 {
                return Err(format!("{} pods in the table, want 9", names.len()));
            }
            let mut wrong = Vec::new();
            for (i, from) in names.iter().enumerate() {
                for (j, to) in names.iter().enumerate() {
                    if i != j && table.predicted.allowed[i][j] != expect(from, to) {
                        wrong.push(format!("{from} -> {to}"));
                    }
                }
            }
            if !wrong.is_empty() {
                return Err(format!(
                    "the model does not predict the case's table at {wrong:?}:\n{}",
                    table.render()
                ));
            }
            last = table.render();
            if table.mismatches().is_empty() {
                Ok(table)
            } else {
                Err(format!("observed differs from predicted:\n{last}"))
            }
        });
        println!("=== {case}\n{}", table.render());
        // Upstream probes through each pod's Service: the same table must hold there (the
        // Services carry TCP 80 and 81).
        if probe.protocol == check::Protocol::Tcp {
            assert_through_services(lab, case, &probe.to_string(), *expect);
        }
    }
}

/// The model's table alone, for a probe no real packet can make (SCTP: the lab's kernel has
/// no SCTP sockets). It must be `expect(from, to)` off the diagonal; returned for comparison.
fn assert_predicted(
    lab: &TestLab,
    case: &str,
    probe: ProbePort,
    expect: Expect<'_>,
) -> check::Reachability {
    let handle = handle(lab);
    let state = check::predict(&handle).unwrap();
    let pods = check::endpoints(&handle).unwrap();
    // `policy_table` also "probes", but an SCTP probe is never sent (always Blocked): only the
    // prediction is used.
    let predicted = check::policy_table(&state, &pods, probe).predicted;
    let names = &predicted.pods;
    assert_eq!(
        names.len(),
        9,
        "case {case}: {} pods in the table",
        names.len()
    );
    let wrong: Vec<String> = (0..9)
        .flat_map(|i| (0..9).map(move |j| (i, j)))
        .filter(|&(i, j)| i != j && predicted.allowed[i][j] != expect(&names[i], &names[j]))
        .map(|(i, j)| format!("{} -> {}", names[i], names[j]))
        .collect();
    assert!(
        wrong.is_empty(),
        "case {case}: the model does not predict the case's table on {probe} at {wrong:?}:\n{predicted}"
    );
    println!("=== {case}\n{probe} predicted (model only, not probed):\n{predicted}");
    predicted
}

/// The case's table once more with every destination reached through its pod's Service
/// (ClusterIP): policy holds on the pod's real port after Service translation.
fn assert_through_services(lab: &TestLab, case: &str, probe: &str, expect: Expect<'_>) {
    let handle = handle(lab);
    let probe: ProbePort = probe.parse().unwrap();
    let pods = check::endpoints(&handle).unwrap();
    let services: Vec<check::Endpoint> = pods
        .iter()
        .map(|p| {
            let (ns, name) = p.name.split_once('/').unwrap();
            let svc = lab.get_json(&["svc", &format!("s-{name}"), "-n", ns]);
            check::Endpoint {
                ip: svc["spec"]["clusterIP"].as_str().unwrap().to_owned(),
                ..p.clone()
            }
        })
        .collect();
    let n = pods.len();
    let table = lab.eventually(
        &format!("case {case}, {probe} through Services"),
        20,
        || {
            let allowed: Vec<Vec<bool>> = std::thread::scope(|s| {
                let rows: Vec<Vec<_>> = (0..n)
                    .map(|i| {
                        let (pods, services) = (&pods, &services);
                        (0..n)
                            .map(|j| {
                                s.spawn(move || check::probe_one(&pods[i], &services[j], probe))
                            })
                            .collect()
                    })
                    .collect();
                rows.into_iter()
                    .map(|row| {
                        row.into_iter()
                            .map(|h| h.join().unwrap().reached())
                            .collect()
                    })
                    .collect()
            });
            let table = check::Reachability {
                pods: pods.iter().map(|p| p.name.clone()).collect(),
                allowed,
            };
            let wrong: Vec<String> = (0..n)
                .flat_map(|i| (0..n).map(move |j| (i, j)))
                .filter(|&(i, j)| {
                    i != j && table.allowed[i][j] != expect(&table.pods[i], &table.pods[j])
                })
                .map(|(i, j)| format!("{} -> {}", table.pods[i], table.pods[j]))
                .collect();
            if n == 9 && wrong.is_empty() {
                Ok(table)
            } else {
                Err(format!("{n} pods; unexpected at {wrong:?}:\n{table}"))
            }
        },
    );
    println!("=== {case}, through each pod's Service\n{probe} observed:\n{table}");
}

#[test]
fn network_policy_truth_tables_match_the_model_and_new_pods_start_isolated() {
    let lab = TestLab::up("pol", 2, "host-gw");
    apply(&lab, &workload("", ""));
    let pods = lab.running_pods(9);
    let ip_of = |pod: &str| {
        pods.iter()
            .find(|(name, _, _)| name == pod)
            .map(|(_, _, ip)| ip.clone())
            .unwrap()
    };
    let all: Expect<'_> = &|_, _| true;

    assert_tables(
        &lab,
        "default: no policy, everything allowed",
        &[("tcp/80", all), ("tcp/81", all), ("udp/80", all)],
    );

    apply(
        &lab,
        &policy_x("deny-all", "  podSelector: {}\n  policyTypes: [Ingress]\n"),
    );
    let deny_x: Expect<'_> = &|_, to| ns_of(to) != "x";
    assert_tables(
        &lab,
        "deny-all ingress in x",
        &[("tcp/80", deny_x), ("udp/81", deny_x)],
    );
    delete_policy(&lab, "deny-all");

    apply(
        &lab,
        &policy_x(
            "from-y",
            "  podSelector: {}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {ns: y}}\n",
        ),
    );
    assert_tables(
        &lab,
        "allow into x from namespaceSelector ns=y",
        &[("tcp/80", &|from, to| ns_of(to) != "x" || ns_of(from) == "y")],
    );
    delete_policy(&lab, "from-y");

    apply(
        &lab,
        &policy_x(
            "peers",
            "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {ns: y}}\n      podSelector: {matchLabels: {pod: b}}\n",
        ),
    );
    assert_tables(
        &lab,
        "into x/a from one peer: namespaceSelector ns=y AND podSelector pod=b",
        &[("tcp/80", &|from, to| to != "x/a" || from == "y/b")],
    );
    apply(
        &lab,
        &policy_x(
            "peers",
            "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {ns: y}}\n    - podSelector: {matchLabels: {pod: b}}\n",
        ),
    );
    assert_tables(
        &lab,
        "into x/a from two peers (policy updated): namespaceSelector ns=y OR podSelector pod=b (in x)",
        &[("tcp/80", &|from, to| {
            to != "x/a" || ns_of(from) == "y" || from == "x/b"
        })],
    );
    delete_policy(&lab, "peers");

    apply(
        &lab,
        &policy_x(
            "egress-80",
            "  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n  - ports:\n    - {port: 80, protocol: TCP}\n",
        ),
    );
    let not_from_x: Expect<'_> = &|from, _| ns_of(from) != "x";
    assert_tables(
        &lab,
        "egress from x only to TCP 80 (no DNS allowed, none needed)",
        &[
            ("tcp/80", all),
            ("tcp/81", not_from_x),
            ("udp/80", not_from_x),
        ],
    );
    delete_policy(&lab, "egress-80");

    apply(
        &lab,
        &policy_x(
            "named-port",
            "  podSelector: {}\n  ingress:\n  - ports:\n    - {port: serve-81-tcp, protocol: TCP}\n",
        ),
    );
    assert_tables(
        &lab,
        "into x only on the named port serve-81-tcp",
        &[("tcp/81", all), ("tcp/80", deny_x), ("udp/81", deny_x)],
    );
    delete_policy(&lab, "named-port");

    // Port entries, one policy named "ports" updated in place (same name, changed rule) from
    // case to case: each table also checks the previous rule is gone.
    apply(
        &lab,
        &policy_x(
            "ports",
            "  podSelector: {}\n  ingress:\n  - ports:\n    - {protocol: UDP}\n",
        ),
    );
    assert_tables(
        &lab,
        "into x only UDP, any port (protocol-only entry)",
        &[
            ("udp/80", all),
            ("udp/81", all),
            ("tcp/80", deny_x),
            ("tcp/81", deny_x),
        ],
    );
    apply(
        &lab,
        &policy_x(
            "ports",
            "  podSelector: {}\n  ingress:\n  - ports:\n    - {protocol: TCP, port: 80, endPort: 81}\n",
        ),
    );
    assert_tables(
        &lab,
        "policy updated in place: into x only TCP 80-81 (endPort), no more UDP",
        &[
            ("tcp/80", all),
            ("tcp/81", all),
            ("udp/80", deny_x),
            ("udp/81", deny_x),
        ],
    );
    apply(
        &lab,
        &policy_x(
            "ports",
            "  podSelector: {}\n  ingress:\n  - ports:\n    - {protocol: TCP, port: 81}\n",
        ),
    );
    assert_tables(
        &lab,
        "policy updated in place: into x only TCP 81 (no endPort), 80 no longer in range",
        &[("tcp/81", all), ("tcp/80", deny_x)],
    );
    delete_policy(&lab, "ports");

    // SCTP: the lab's kernel has no SCTP sockets, so no probe can send SCTP. The SCTP cells
    // are asserted on the model alone (it must never treat SCTP as TCP), the TCP cells with
    // real probes, and the nft table rendered on x/a's node must match SCTP by itself.
    apply(
        &lab,
        &policy_x(
            "sctp",
            "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - ports:\n    - {protocol: TCP, port: 80}\n    - {protocol: SCTP, port: 81}\n",
        ),
    );
    let not_into_xa: Expect<'_> = &|_, to| to != "x/a";
    let case = "into x/a only TCP 80 and SCTP 81";
    assert_tables(&lab, case, &[("tcp/80", all), ("tcp/81", not_into_xa)]);
    let sctp = |port| ProbePort {
        protocol: check::Protocol::Sctp,
        port,
    };
    let sctp80 = assert_predicted(&lab, case, sctp(80), not_into_xa);
    let sctp81 = assert_predicted(&lab, case, sctp(81), all);
    let tcp = |port| {
        let state = check::predict(&handle(&lab)).unwrap();
        let pods = check::endpoints(&handle(&lab)).unwrap();
        check::policy_table(&state, &pods, format!("tcp/{port}").parse().unwrap()).predicted
    };
    assert_ne!(sctp80, tcp(80), "SCTP 80 predicted like TCP 80");
    assert_ne!(sctp81, tcp(81), "SCTP 81 predicted like TCP 81");
    let node_of = |pod: &str| {
        pods.iter()
            .find(|(name, _, _)| name == pod)
            .map(|(_, node, _)| node.clone())
            .unwrap()
    };
    let xa_node = node_of("x/a");
    let nft_table =
        |node: &str| text(&lab.exec_in(node, &["nft", "list", "table", "inet", "podnet_policy"]));
    let rules = lab.eventually("x/a's node renders the SCTP rule", 20, || {
        let rules = nft_table(&xa_node);
        // Elements of x/a's ingress set: `<peers> . sctp . 81`.
        if rules.contains(". sctp . 81") && rules.contains(". tcp . 80") {
            Ok(rules)
        } else {
            Err(format!("no `… . sctp . 81` element on {xa_node}:\n{rules}"))
        }
    });
    assert!(!rules.contains(". sctp . 80"), "{rules}");
    println!("=== {case}: nft on {xa_node}\n{rules}");
    for (_, node, _) in pods.iter().filter(|(_, node, _)| *node != xa_node) {
        let rules = nft_table(node);
        assert!(
            !rules.contains("sctp"),
            "{node} has no pod the policy selects, yet matches SCTP:\n{rules}"
        );
    }
    delete_policy(&lab, "sctp");

    let xb = ip_of("x/b");
    apply(
        &lab,
        &policy_x(
            "ipblock",
            &format!(
                "  podSelector: {{matchLabels: {{pod: a}}}}\n  ingress:\n  - from:\n    - ipBlock: {{cidr: 10.244.0.0/16, except: [{xb}/32]}}\n"
            ),
        ),
    );
    assert_tables(
        &lab,
        "into x/a from ipBlock 10.244.0.0/16 except x/b's address",
        &[("tcp/80", &|from, to| to != "x/a" || from != "x/b")],
    );
    delete_policy(&lab, "ipblock");

    apply(
        &lab,
        &policy_x(
            "by-labels",
            "  podSelector: {}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {team: trusted}}\n    - namespaceSelector: {}\n      podSelector: {matchLabels: {role: client}}\n",
        ),
    );
    assert_tables(
        &lab,
        "into x from namespaces labelled team=trusted or pods labelled role=client: none yet",
        &[("tcp/80", deny_x)],
    );
    apply(&lab, &workload(", role: client", ", team: trusted"));
    assert_tables(
        &lab,
        "labels updated: namespace z team=trusted, pod y/c role=client",
        &[("tcp/80", &|from, to| {
            ns_of(to) != "x" || ns_of(from) == "z" || from == "y/c"
        })],
    );
    apply(&lab, &workload("", ", team: trusted"));
    assert_tables(
        &lab,
        "label removed again from pod y/c",
        &[("tcp/80", &|from, to| ns_of(to) != "x" || ns_of(from) == "z")],
    );

    apply(&lab, CLUSTER_POLICIES);
    assert_tables(
        &lab,
        "ClusterNetworkPolicy: Admin Deny z/a and Accept y/a into x over the NetworkPolicy \
         (x allows only z); Baseline Deny z into y (no NetworkPolicy there)",
        &[("tcp/80", &|from, to| match ns_of(to) {
            "x" => (ns_of(from) == "z" && from != "z/a") || from == "y/a",
            "y" => ns_of(from) != "z",
            _ => true,
        })],
    );
    delete(&lab, "cnp", "admin-x");
    delete(&lab, "cnp", "baseline-y");

    delete_policy(&lab, "by-labels");

    // Admin priorities: two Admin policies select every pod of x with opposite actions for
    // namespace z; the lower priority number is evaluated first and decides. A NetworkPolicy
    // in x allows y and z/b, so Accept, Deny and Pass each give a different table.
    apply(
        &lab,
        &policy_x(
            "np-x",
            "  podSelector: {}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {ns: y}}\n    - namespaceSelector: {matchLabels: {ns: z}}\n      podSelector: {matchLabels: {pod: b}}\n",
        ),
    );
    apply(
        &lab,
        &[
            admin_from_z("z-first", 10, "Deny"),
            admin_from_z("z-second", 20, "Accept"),
        ]
        .join("---\n"),
    );
    assert_tables(
        &lab,
        "Admin priorities: Deny z (priority 10) wins over Accept z (priority 20), also over \
         the NetworkPolicy allowing z/b",
        &[("tcp/80", &|from, to| ns_of(to) != "x" || ns_of(from) == "y")],
    );
    apply(
        &lab,
        &[
            admin_from_z("z-first", 20, "Deny"),
            admin_from_z("z-second", 10, "Accept"),
        ]
        .join("---\n"),
    );
    assert_tables(
        &lab,
        "Admin priorities swapped: Accept z (priority 10) wins over Deny z (priority 20), \
         and over the NetworkPolicy",
        &[("tcp/80", &|from, to| {
            ns_of(to) != "x" || ns_of(from) == "y" || ns_of(from) == "z"
        })],
    );
    apply(&lab, &admin_from_z("z-second", 10, "Pass"));
    assert_tables(
        &lab,
        "Admin Pass z (priority 10): the Admin tier's Deny z (priority 20) is skipped, the \
         NetworkPolicy decides (y and z/b)",
        &[("tcp/80", &|from, to| {
            ns_of(to) != "x" || ns_of(from) == "y" || from == "z/b"
        })],
    );
    delete(&lab, "cnp", "z-first");
    delete(&lab, "cnp", "z-second");
    delete_policy(&lab, "np-x");

    assert_tables(
        &lab,
        "every policy deleted: everything allowed again",
        &[("tcp/80", all), ("udp/81", all)],
    );

    // `podnet lab check` itself: the tables and the verdict.
    let out = lab.podnet(&["check", "--port", "tcp/80", "--port", "udp/81"]);
    assert!(out.status.success(), "lab check: {}", text(&out));
    assert!(
        text(&out).contains("the probes agree with the policy model on udp/81"),
        "{}",
        text(&out)
    );

    new_pods_start_isolated(&lab, &ip_of("y/a"));
}

/// Namespace s isolates its pods both ways; a new pod there listens on 8080 and tries to reach
/// y/a from its first millisecond, while another pod tries every address of node-1's pod
/// range on 8080 the whole time. Neither may ever connect.
fn new_pods_start_isolated(lab: &TestLab, ya: &str) {
    apply(
        lab,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: s\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: deny-all\n  namespace: s\nspec:\n  podSelector: {}\n  policyTypes: [Ingress, Egress]\n",
    );
    let scanner = lab.pod_netns("y/b");
    let stop = AtomicBool::new(false);
    let leaks = AtomicUsize::new(0);
    let tries = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for host in 2..=40u8 {
            let (scanner, stop, leaks, tries) = (&scanner, &stop, &leaks, &tries);
            s.spawn(move || {
                let to = SocketAddr::new(IpAddr::from([10, 244, 1, host]), 8080);
                netns::run_in(scanner, || {
                    while !stop.load(Ordering::Relaxed) {
                        tries.fetch_add(1, Ordering::Relaxed);
                        if TcpStream::connect_timeout(&to, Duration::from_millis(200)).is_ok() {
                            leaks.fetch_add(1, Ordering::Relaxed);
                            eprintln!("LEAK: connected to {to}");
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                })
                .unwrap();
            });
        }
        let client = format!(
            "for i in $(seq 1 60); do if timeout 0.2 bash -c 'exec 3<>/dev/tcp/{ya}/80' 2>/dev/null; then echo LEAK; fi; sleep 0.01; done; echo DONE"
        );
        apply(
            lab,
            &format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: new\n  namespace: s\nspec:\n  nodeName: node-1\n  containers:\n  - name: server\n    image: registry.k8s.io/e2e-test-images/agnhost:2.53\n    args: [\"netexec\", \"--http-port=8080\"]\n  - name: client\n    image: bash\n    command: [\"bash\", \"-c\", {client:?}]\n"
            ),
        );
        let started = Instant::now();
        let log = lab.eventually("the new pod's client finishes", 30, || {
            let out = lab.podnet(&["logs", "s/new", "-c", "client"]);
            let log = text(&out);
            if log.contains("DONE") {
                Ok(log)
            } else {
                Err(format!("client log so far: {log}"))
            }
        });
        // Keep scanning a little after the client is done (the server has been up all along).
        std::thread::sleep(Duration::from_millis(500).saturating_sub(started.elapsed()));
        stop.store(true, Ordering::Relaxed);
        assert!(
            !log.contains("LEAK"),
            "the new pod reached y/a despite deny-all egress:\n{log}"
        );
    });
    println!(
        "=== start-up: {} connection attempts to node-1's pod range on 8080 while the pod started",
        tries.load(Ordering::Relaxed)
    );
    assert_eq!(
        leaks.load(Ordering::Relaxed),
        0,
        "the new pod answered on 8080 despite deny-all ingress"
    );
    // It is running and serving: only policy kept the scanner out.
    let pods = lab.running_pods(10);
    let (_, _, ip) = pods.iter().find(|(n, _, _)| n == "s/new").unwrap();
    let out = lab.exec_in(
        "node-1",
        &["bash", "-c", &format!("exec 3<>/dev/tcp/{ip}/8080")],
    );
    assert!(
        out.status.success(),
        "node-1 cannot reach the new pod's server: {}",
        text(&out)
    );
}

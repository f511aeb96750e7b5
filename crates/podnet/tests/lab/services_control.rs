//! The lab as the control plane for Services: cluster IPs and node ports allocated on apply,
//! EndpointSlices kept by the lab's controller-manager (readiness from probes, terminating
//! pods, named target ports, Deployments scaling), and the cloud's load-balancer addresses
//! routed from the outside host. (Traffic to ClusterIPs needs the service proxy: not here.)

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{TestLab, text};

/// `lab get ARGS -o json`.
fn get(lab: &TestLab, args: &[&str]) -> Value {
    lab.get_json(args)
}

fn apply(lab: &TestLab, manifest: &str) {
    let out = lab.apply(manifest);
    assert!(out.status.success(), "apply: {}", text(&out));
}

/// The EndpointSlices of `service` in `default`.
fn slices(lab: &TestLab, service: &str) -> Vec<Value> {
    get(lab, &["endpointslices"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == service)
        .cloned()
        .collect()
}

/// Each endpoint of `service` by pod name: (endpoint, its slice's port numbers).
fn endpoints(lab: &TestLab, service: &str) -> Vec<(String, Value, Vec<i64>)> {
    let mut all = Vec::new();
    for slice in slices(lab, service) {
        let ports: Vec<i64> = slice["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["port"].as_i64())
            .collect();
        for e in slice["endpoints"].as_array().into_iter().flatten() {
            let pod = e["targetRef"]["name"].as_str().unwrap().to_owned();
            all.push((pod, e.clone(), ports.clone()));
        }
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

/// `(ready, serving, terminating)` of `pod`'s endpoint in `service`, if it has one.
fn conditions(lab: &TestLab, service: &str, pod: &str) -> Option<(bool, bool, bool)> {
    let (_, e, _) = endpoints(lab, service)
        .into_iter()
        .find(|(p, _, _)| p == pod)?;
    let c = &e["conditions"];
    Some((
        c["ready"].as_bool().unwrap(),
        c["serving"].as_bool().unwrap(),
        c["terminating"].as_bool().unwrap(),
    ))
}

/// The pod names of the cluster, with whether each is marked for deletion.
fn pods(lab: &TestLab) -> Vec<(String, bool)> {
    get(lab, &["pods"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap().to_owned(),
                p["metadata"]["deletionTimestamp"].is_string(),
            )
        })
        .collect()
}

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
      terminationGracePeriodSeconds: 2
      containers:
      - name: netexec
        image: registry.k8s.io/e2e-test-images/agnhost:2.53
        args: ["netexec", "--http-port=8080", "--udp-port=8081"]
        ports:
        - name: http
          containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {{app: web}}
  trafficDistribution: PreferClose
  ports:
  - name: http
    port: 80
    targetPort: http
---
apiVersion: v1
kind: Service
metadata:
  name: web-np
spec:
  type: NodePort
  selector: {{app: web}}
  ports:
  - port: 80
    targetPort: 8080
"#
    )
}

#[test]
fn services_get_cluster_ips_and_endpointslices_that_follow_their_deployment() {
    let lab = TestLab::up("ctl", 2, "host-gw");
    apply(&lab, &web(2));
    let pods_running = lab.running_pods(2);

    // The API server's part: a cluster IP from the service CIDR, defaults, a node port.
    let svc = get(&lab, &["svc", "web"]);
    let ip = svc["spec"]["clusterIP"].as_str().unwrap().to_owned();
    let parsed: std::net::Ipv4Addr = ip.parse().unwrap();
    assert_eq!(parsed.octets()[..2], [10, 96], "{ip}");
    assert_ne!(ip, "10.96.0.10", "the cluster DNS address is reserved");
    assert_eq!(svc["spec"]["clusterIPs"][0], ip.as_str());
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["spec"]["ipFamilies"][0], "IPv4");
    assert_eq!(svc["spec"]["ports"][0]["protocol"], "TCP");
    let np = get(&lab, &["svc", "web-np"]);
    let node_port = np["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!((30000..=32767).contains(&node_port), "{node_port}");
    assert_ne!(np["spec"]["clusterIP"], ip.as_str());

    // The EndpointSlice controller's part: every pod, ready, on its node, in its zone.
    let want: Vec<String> = {
        let mut ips: Vec<String> = pods_running.iter().map(|p| p.2.clone()).collect();
        ips.sort();
        ips
    };
    lab.eventually("web's slice lists both pods ready", 20, || {
        let eps = endpoints(&lab, "web");
        let mut ips: Vec<String> = eps
            .iter()
            .map(|(_, e, _)| e["addresses"][0].as_str().unwrap().to_owned())
            .collect();
        ips.sort();
        let all_ready = eps.iter().all(|(_, e, _)| e["conditions"]["ready"] == true);
        (ips == want && all_ready)
            .then_some(())
            .ok_or(format!("{eps:#?}"))
    });
    let slice = &slices(&lab, "web")[0];
    assert!(
        slice["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("web-")
    );
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(slice["ports"][0]["name"], "http");
    assert_eq!(
        slice["ports"][0]["port"], 8080,
        "the named targetPort, resolved"
    );
    for (pod, e, _) in endpoints(&lab, "web") {
        let node = &pods_running
            .iter()
            .find(|p| p.0 == format!("default/{pod}"))
            .unwrap()
            .1;
        assert_eq!(e["nodeName"], node.as_str());
        assert_eq!(e["zone"], "zone-a");
        assert_eq!(e["hints"]["forZones"][0]["name"], "zone-a");
        assert_eq!(e["targetRef"]["kind"], "Pod");
    }

    // Re-applying keeps what was allocated.
    apply(&lab, &web(2));
    assert_eq!(get(&lab, &["svc", "web"])["spec"]["clusterIP"], ip.as_str());
    assert_eq!(
        get(&lab, &["svc", "web-np"])["spec"]["ports"][0]["nodePort"],
        node_port
    );

    // A Service asking for a taken address is refused, naming both; the DNS address goes to
    // the Service that asks for it.
    let taken = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: thief\nspec:\n  clusterIP: {ip}\n  ports:\n  - port: 80\n"
    );
    let out = lab.apply(&taken);
    assert!(!out.status.success(), "a taken cluster IP was accepted");
    let msg = text(&out);
    assert!(
        msg.contains("default/thief") && msg.contains(&ip) && msg.contains("default/web"),
        "{msg}"
    );
    apply(
        &lab,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: kube-dns\n  namespace: kube-system\nspec:\n  clusterIP: 10.96.0.10\n  selector:\n    k8s-app: kube-dns\n  ports:\n  - name: dns\n    port: 53\n    protocol: UDP\n",
    );
    let dns = get(&lab, &["svc", "kube-dns", "-n", "kube-system"]);
    assert_eq!(dns["spec"]["clusterIP"], "10.96.0.10");

    // Two pods serving the named port on different numbers: one slice per port.
    let alt = r#"
apiVersion: v1
kind: Pod
metadata:
  name: alt
  labels: {app: web}
spec:
  containers:
  - name: netexec
    image: agnhost
    args: ["netexec", "--http-port=9090", "--udp-port=8081"]
    ports:
    - name: http
      containerPort: 9090
"#;
    apply(&lab, alt);
    let bound = get(&lab, &["pods", "alt"]);
    // Re-applied, a bound pod stays where it is (the scheduler would pick the other node now).
    apply(&lab, alt);
    let again = get(&lab, &["pods", "alt"]);
    assert_eq!(again["spec"]["nodeName"], bound["spec"]["nodeName"]);
    assert_eq!(again["metadata"]["uid"], bound["metadata"]["uid"]);
    lab.eventually("alt is in web's slice for port 9090", 20, || {
        let eps = endpoints(&lab, "web");
        let alt = eps.iter().find(|(p, _, _)| p == "alt");
        let others_on_8080 = eps
            .iter()
            .filter(|(p, _, _)| p != "alt")
            .all(|(_, _, ports)| ports == &[8080]);
        match alt {
            Some((_, _, ports)) if ports == &[9090] && others_on_8080 => Ok(()),
            _ => Err(format!("{eps:#?}")),
        }
    });
    assert_eq!(slices(&lab, "web").len(), 2);
    let out = lab.podnet(&["delete", "pod", "alt"]);
    assert!(out.status.success(), "{}", text(&out));

    // Scaling up adds pods and endpoints; scaling down marks the highest first, then they go.
    apply(&lab, &web(3));
    lab.eventually("three ready endpoints", 30, || {
        let eps = endpoints(&lab, "web");
        let ready: Vec<&str> = eps
            .iter()
            .filter(|(_, e, _)| e["conditions"]["ready"] == true)
            .map(|(p, _, _)| p.as_str())
            .collect();
        (ready == ["web-0", "web-1", "web-2"])
            .then_some(())
            .ok_or(format!("{eps:#?}"))
    });
    assert_eq!(slices(&lab, "web").len(), 1, "alt's slice is gone");
    apply(&lab, &web(1));
    let marked: Vec<String> = pods(&lab)
        .into_iter()
        .filter(|(_, deleting)| *deleting)
        .map(|(name, _)| name)
        .collect();
    // netexec exits on SIGTERM, so they may already be gone; never is web-0 marked.
    assert!(!marked.contains(&"web-0".to_owned()), "{marked:?}");
    lab.eventually("only web-0 is left, in the slice too", 30, || {
        let names: Vec<String> = pods(&lab).into_iter().map(|(n, _)| n).collect();
        let eps: Vec<String> = endpoints(&lab, "web")
            .into_iter()
            .map(|(p, _, _)| p)
            .collect();
        (names == ["web-0"] && eps == ["web-0"])
            .then_some(())
            .ok_or(format!("pods {names:?}, endpoints {eps:?}"))
    });
    lab.eventually("the Deployment counts one replica", 10, || {
        let d = get(&lab, &["deploy", "web"]);
        (d["status"]["replicas"] == 1 && d["status"]["readyReplicas"] == 1)
            .then_some(())
            .ok_or(format!("{}", d["status"]))
    });

    // Deleting the Service removes its slices.
    let out = lab.podnet(&["delete", "svc", "web"]);
    assert!(out.status.success(), "{}", text(&out));
    lab.eventually("web's slices are gone", 10, || {
        let s = slices(&lab, "web");
        s.is_empty().then_some(()).ok_or(format!("{s:#?}"))
    });
}

#[test]
fn readiness_probes_decide_the_ready_condition_and_the_endpoint() {
    let lab = TestLab::up("probe", 1, "host-gw");
    let flag_dir = tempfile::tempdir().unwrap();
    let flag = flag_dir.path().join("ready");
    let podnet = crate::podnet();
    let manifest = format!(
        r#"
apiVersion: v1
kind: Service
metadata:
  name: probed
spec:
  selector: {{app: probed}}
  ports:
  - port: 80
---
apiVersion: v1
kind: Pod
metadata:
  name: http-ok
  labels: {{app: probed}}
spec:
  containers:
  - name: c
    image: agnhost
    args: ["netexec", "--http-port=8080", "--udp-port=8081"]
    ports: [{{name: http, containerPort: 8080}}]
    readinessProbe:
      httpGet: {{path: /healthz, port: http}}
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: http-412
  labels: {{app: probed}}
spec:
  containers:
  - name: c
    image: agnhost
    # Without a UDP server netexec's /healthz answers 412.
    args: ["netexec", "--http-port=8080", "--udp-port=-1"]
    readinessProbe:
      httpGet: {{path: /healthz, port: 8080}}
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: tcp-late
  labels: {{app: probed}}
spec:
  containers:
  - name: c
    image: bash
    command: ["bash", "-c", "sleep 6; exec {podnet} agnhost netexec --http-port=9090 --udp-port=-1"]
    readinessProbe:
      tcpSocket: {{port: 9090}}
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: exec
  labels: {{app: probed}}
spec:
  containers:
  - name: c
    image: agnhost
    args: ["pause"]
    readinessProbe:
      exec:
        command: ["cat", "{flag}"]
      periodSeconds: 1
      failureThreshold: 1
"#,
        podnet = podnet.display(),
        flag = flag.display(),
    );
    apply(&lab, &manifest);
    lab.running_pods(4);

    let pod_ready = |name: &str| {
        let p = get(&lab, &["pods", name]);
        let ready = p["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .map(|c| c["status"] == "True")
            .unwrap();
        (ready, p["status"]["containerStatuses"][0]["ready"] == true)
    };
    lab.eventually("http-ok is ready", 20, || {
        match conditions(&lab, "probed", "http-ok") {
            Some((true, true, false)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    assert_eq!(pod_ready("http-ok"), (true, true));
    // Not ready, but in the slice: the pod has an IP.
    assert_eq!(
        conditions(&lab, "probed", "tcp-late"),
        Some((false, false, false))
    );
    assert_eq!(
        conditions(&lab, "probed", "exec"),
        Some((false, false, false))
    );
    assert_eq!(pod_ready("exec"), (false, false));

    // A port that opens later.
    lab.eventually(
        "tcp-late becomes ready once it listens",
        20,
        || match conditions(&lab, "probed", "tcp-late") {
            Some((true, true, false)) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    // An exec probe follows the command's exit status, both ways.
    std::fs::write(&flag, "yes").unwrap();
    lab.eventually("exec becomes ready", 20, || {
        match conditions(&lab, "probed", "exec") {
            Some((true, true, false)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    assert_eq!(pod_ready("exec"), (true, true));
    std::fs::remove_file(&flag).unwrap();
    lab.eventually("exec becomes unready again", 20, || {
        match conditions(&lab, "probed", "exec") {
            Some((false, false, false)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    // The 412 never turned ready.
    assert_eq!(
        conditions(&lab, "probed", "http-412"),
        Some((false, false, false))
    );
    assert_eq!(pod_ready("http-412"), (false, false));
}

#[test]
fn a_deleted_pod_is_terminating_in_its_slice_for_its_grace_period_then_gone() {
    let lab = TestLab::up("grace", 1, "host-gw");
    apply(
        &lab,
        r#"
apiVersion: v1
kind: Service
metadata:
  name: slow
spec:
  selector: {app: slow}
  ports:
  - port: 80
---
apiVersion: v1
kind: Pod
metadata:
  name: slow
  labels: {app: slow}
spec:
  terminationGracePeriodSeconds: 4
  containers:
  - name: c
    image: bash
    command: ["bash", "-c", "trap '' TERM; while true; do sleep 0.1; done"]
"#,
    );
    lab.running_pods(1);
    lab.eventually("slow is ready in its slice", 20, || {
        match conditions(&lab, "slow", "slow") {
            Some((true, true, false)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });

    // `lab delete` waits for the pod to go: run it beside the test.
    let started = Instant::now();
    let delete = Command::new(crate::podnet())
        .args(["lab", "--lab", &lab.name, "delete", "pod", "slow"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    lab.eventually(
        "slow is terminating, still serving",
        10,
        || match conditions(&lab, "slow", "slow") {
            Some((false, true, true)) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    assert!(pods(&lab).contains(&("slow".to_owned(), true)));

    // The kubelet is not held up meanwhile: a new pod on the same node starts.
    apply(
        &lab,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: meanwhile\nspec:\n  containers:\n  - name: c\n    image: agnhost\n    args: [pause]\n",
    );
    lab.eventually("meanwhile runs while slow terminates", 10, || {
        let p = get(&lab, &["pods", "meanwhile"]);
        (p["status"]["phase"] == "Running")
            .then_some(())
            .ok_or(format!("{}", p["status"]))
    });
    assert!(
        pods(&lab).contains(&("slow".to_owned(), true)),
        "slow left before its grace period ended"
    );

    let out = delete.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out),
        lab.daemon_logs()
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(3),
        "slow ignored SIGTERM, yet was gone after {took:?}"
    );
    assert!(!pods(&lab).iter().any(|(p, _)| p == "slow"));
    lab.eventually("slow's endpoint is gone", 10, || {
        let eps = endpoints(&lab, "slow");
        eps.is_empty().then_some(()).ok_or(format!("{eps:#?}"))
    });
    // The placeholder remains.
    assert_eq!(slices(&lab, "slow").len(), 1);
}

fn lb(name: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  type: LoadBalancer\n  selector:\n    app: {name}\n  ports:\n  - port: 80\n    targetPort: 8080\n"
    )
}

fn ingress_ip(lab: &TestLab, name: &str) -> Result<String, String> {
    let s = get(lab, &["svc", name]);
    s["status"]["loadBalancer"]["ingress"][0]["ip"]
        .as_str()
        .map(str::to_owned)
        .ok_or(format!("{name}: no ingress IP: {}", s["status"]))
}

#[test]
fn load_balancers_get_pool_addresses_the_outside_host_routes_to_the_nodes() {
    let lab = TestLab::up("lb", 2, "host-gw");
    apply(&lab, &(lb("a") + &lb("b")));
    let a = lab.eventually("a gets an address", 10, || ingress_ip(&lab, "a"));
    let b = lab.eventually("b gets an address", 10, || ingress_ip(&lab, "b"));
    assert!(
        a.starts_with("192.168.200.") && b.starts_with("192.168.200."),
        "{a} {b}"
    );
    assert_ne!(a, b);
    let svc = get(&lab, &["svc", "a"]);
    let node_port = svc["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!((30000..=32767).contains(&node_port), "{node_port}");
    assert_eq!(svc["spec"]["externalTrafficPolicy"], "Cluster");

    let route =
        |lab: &TestLab| text(&lab.exec_in("outside", &["ip", "route", "show", "192.168.200.0/24"]));
    lab.eventually("the outside host routes the pool to both nodes", 10, || {
        let r = route(&lab);
        (r.contains("nexthop via 192.168.100.11") && r.contains("nexthop via 192.168.100.12"))
            .then_some(())
            .ok_or(r)
    });
    let out = lab.podnet(&["node", "add"]);
    assert!(out.status.success(), "{}", text(&out));
    lab.eventually("the new node joins the route", 10, || {
        let r = route(&lab);
        r.contains("nexthop via 192.168.100.13")
            .then_some(())
            .ok_or(r)
    });
    let out = lab.podnet(&["node", "remove", "node-1"]);
    assert!(out.status.success(), "{}", text(&out));
    lab.eventually("the removed node leaves the route", 10, || {
        let r = route(&lab);
        (!r.contains("192.168.100.11") && r.contains("192.168.100.12"))
            .then_some(())
            .ok_or(r)
    });

    // Deleting a Service gives its address back; a Service that is no LoadBalancer has none.
    let out = lab.podnet(&["delete", "svc", "a"]);
    assert!(out.status.success(), "{}", text(&out));
    apply(&lab, &lb("c"));
    let c = lab.eventually("c gets an address", 10, || ingress_ip(&lab, "c"));
    assert_eq!(c, a, "the lowest free address is a's, released");
    apply(
        &lab,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: b\nspec:\n  selector:\n    app: b\n  ports:\n  - port: 80\n    targetPort: 8080\n",
    );
    lab.eventually(
        "b, now a ClusterIP Service, has no address",
        10,
        || match ingress_ip(&lab, "b") {
            Err(_) => Ok(()),
            Ok(ip) => Err(format!("still {ip}")),
        },
    );
}

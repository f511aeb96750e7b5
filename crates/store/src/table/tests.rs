use serde_json::json;

use super::*;
use crate::testdata::{CREATED, object, sample};

const SECOND: i128 = 1_000_000_000;

/// `CREATED` plus `seconds`.
fn at(seconds: i64) -> Timestamp {
    let created: Timestamp = CREATED.parse().unwrap();
    Timestamp::from_second(created.as_second() + seconds).unwrap()
}

/// Three days, four hours and five minutes after every sample was created.
fn now() -> Timestamp {
    at(((3 * 24 + 4) * 60 + 5) * 60)
}

fn render_samples(kind: Kind, objects: &[Object], wide: bool) -> String {
    render(kind, objects, wide, false, now())
}

#[test]
fn ages_follow_kubectl_human_duration() {
    let cases: &[(i128, &str)] = &[
        (-2 * SECOND, "<invalid>"),
        (-SECOND, "0s"),
        (0, "0s"),
        (5 * SECOND + 999_999_999, "5s"),
        (119 * SECOND, "119s"),
        (120 * SECOND, "2m"),
        (182 * SECOND, "3m2s"),
        (600 * SECOND, "10m"),
        (179 * 60 * SECOND, "179m"),
        (3 * 3600 * SECOND, "3h"),
        ((4 * 3600 + 5 * 60) * SECOND, "4h5m"),
        (8 * 3600 * SECOND, "8h"),
        (47 * 3600 * SECOND, "47h"),
        (48 * 3600 * SECOND, "2d"),
        (51 * 3600 * SECOND, "2d3h"),
        (8 * 24 * 3600 * SECOND, "8d"),
        (729 * 24 * 3600 * SECOND, "729d"),
        (730 * 24 * 3600 * SECOND, "2y"),
        (830 * 24 * 3600 * SECOND, "2y100d"),
        (8 * 365 * 24 * 3600 * SECOND, "8y"),
    ];
    for (nanos, want) in cases {
        assert_eq!(human_duration(*nanos), *want, "{nanos}ns");
    }
}

#[test]
fn nothing_to_show_is_empty_and_kubectl_says_so() {
    assert_eq!(render(Kind::Pod, &[], false, false, now()), "");
    // Objects of another kind are not rows of this table.
    assert_eq!(
        render(Kind::Pod, &[sample(Kind::Node)], false, false, now()),
        ""
    );
    assert_eq!(
        no_resources(Some("shop")),
        "No resources found in shop namespace."
    );
    assert_eq!(no_resources(None), "No resources found");
}

/// Pods in the states a lab shows: running, pending, crash-looping, terminating.
fn pods() -> Vec<Object> {
    let pending = object(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "client", "namespace": "default", "creationTimestamp": CREATED},
        "spec": {"containers": [{"name": "c", "image": "i"}, {"name": "d", "image": "i"}]},
        "status": {"phase": "Pending"}
    }));
    let crashing = object(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "flaky", "namespace": "shop", "creationTimestamp": CREATED},
        "spec": {"nodeName": "n2", "containers": [{"name": "c", "image": "i"}]},
        "status": {
            "phase": "Running",
            "podIPs": [{"ip": "10.244.2.9"}],
            "containerStatuses": [{
                "name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2025-01-04T04:00:00Z"}}
            }]
        }
    }));
    let mut terminating = sample(Kind::Pod);
    terminating.metadata_mut().name = Some("web-1".into());
    terminating.metadata_mut().deletion_timestamp = Some(Time(at(100)));
    vec![pending, crashing, sample(Kind::Pod), terminating]
}

#[test]
fn pods_table() {
    assert_eq!(
        render_samples(Kind::Pod, &pods(), false),
        "\
NAME     READY   STATUS             RESTARTS     AGE
client   0/2     Pending            0            3d4h
flaky    0/1     CrashLoopBackOff   4 (5m ago)   3d4h
web-0    1/1     Running            0            3d4h
web-1    1/1     Terminating        0            3d4h
"
    );
}

#[test]
fn pods_table_wide_across_namespaces() {
    assert_eq!(
        render(Kind::Pod, &pods(), true, true, now()),
        "\
NAMESPACE   NAME     READY   STATUS             RESTARTS     AGE    IP           NODE     NOMINATED NODE   READINESS GATES
default     client   0/2     Pending            0            3d4h   <none>       <none>   <none>           <none>
shop        flaky    0/1     CrashLoopBackOff   4 (5m ago)   3d4h   10.244.2.9   n2       <none>           <none>
shop        web-0    1/1     Running            0            3d4h   10.244.1.5   n1       <none>           <none>
shop        web-1    1/1     Terminating        0            3d4h   10.244.1.5   n1       <none>           <none>
"
    );
}

#[test]
fn pod_status_shows_init_and_exit_reasons() {
    let pod = |status: serde_json::Value| {
        object(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "creationTimestamp": CREATED},
            "spec": {
                "initContainers": [{"name": "setup", "image": "i"}],
                "containers": [{"name": "c", "image": "i"}]
            },
            "status": status
        }))
    };
    let status_of = |p: &Object| row(p, false, now())[2].clone();
    let initializing = pod(json!({
        "phase": "Pending",
        "initContainerStatuses": [{"name": "setup", "image": "i", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"running": {}}}]
    }));
    assert_eq!(status_of(&initializing), "Init:0/1");
    let init_failed = pod(json!({
        "phase": "Pending",
        "initContainerStatuses": [{"name": "setup", "image": "i", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"terminated": {"exitCode": 2}}}]
    }));
    assert_eq!(status_of(&init_failed), "Init:ExitCode:2");
    let killed = pod(json!({
        "phase": "Failed",
        "initContainerStatuses": [{"name": "setup", "image": "i", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"terminated": {"exitCode": 0}}}],
        "containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"terminated": {"exitCode": 137, "signal": 9}}}]
    }));
    assert_eq!(status_of(&killed), "Signal:9");
}

fn nodes() -> Vec<Object> {
    let n2 = object(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "n2", "labels": {"kubernetes.io/role": "worker"}, "creationTimestamp": CREATED},
        "spec": {"unschedulable": true, "podCIDR": "10.244.2.0/24"},
        "status": {"conditions": [{"type": "Ready", "status": "False"}]}
    }));
    let n3 = object(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "n3"}
    }));
    vec![sample(Kind::Node), n2, n3]
}

#[test]
fn nodes_table() {
    assert_eq!(
        render_samples(Kind::Node, &nodes(), false),
        "\
NAME   STATUS                        ROLES           AGE         VERSION
n1     Ready                         control-plane   3d4h        v1.37.0-lab
n2     NotReady,SchedulingDisabled   worker          3d4h        
n3     Unknown                       <none>          <unknown>   
"
    );
}

#[test]
fn nodes_table_wide_adds_addresses_system_info_and_pod_cidrs() {
    // --all-namespaces adds no NAMESPACE column to a cluster-scoped kind.
    assert_eq!(
        render(Kind::Node, &nodes(), true, true, now()),
        "\
NAME   STATUS                        ROLES           AGE         VERSION       INTERNAL-IP      EXTERNAL-IP   OS-IMAGE     KERNEL-VERSION   CONTAINER-RUNTIME    POD-CIDRS
n1     Ready                         control-plane   3d4h        v1.37.0-lab   192.168.100.11   <none>        podnet lab   6.18.0           podnet-lab://0.1.0   10.244.1.0/24,fd00:10:244:1::/64
n2     NotReady,SchedulingDisabled   worker          3d4h                      <none>           <none>        <unknown>    <unknown>        <unknown>            10.244.2.0/24
n3     Unknown                       <none>          <unknown>                 <none>           <none>        <unknown>    <unknown>        <unknown>            <none>
"
    );
}

fn services() -> Vec<Object> {
    let headless = object(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "db", "namespace": "shop", "creationTimestamp": CREATED},
        "spec": {"clusterIP": "None", "selector": {"app": "db", "tier": "data"}}
    }));
    let pending = object(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "lb", "namespace": "shop", "creationTimestamp": CREATED},
        "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.20",
                 "ports": [{"port": 443, "nodePort": 31443}]}
    }));
    let served = object(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "lb2", "namespace": "shop", "creationTimestamp": CREATED},
        "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.21", "externalIPs": ["192.168.100.9"],
                 "ports": [{"port": 80, "protocol": "TCP"}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.168.100.200"}, {"ip": "192.168.100.201"}]}}
    }));
    let external = object(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "search", "namespace": "shop", "creationTimestamp": CREATED},
        "spec": {"type": "ExternalName", "externalName": "search.example.com"}
    }));
    vec![headless, pending, served, external, sample(Kind::Service)]
}

#[test]
fn services_table() {
    assert_eq!(
        render_samples(Kind::Service, &services(), false),
        "\
NAME     TYPE           CLUSTER-IP   EXTERNAL-IP                      PORT(S)                     AGE
db       ClusterIP      None         <none>                           <none>                      3d4h
lb       LoadBalancer   10.96.0.20   <pending>                        443:31443/TCP               3d4h
lb2      LoadBalancer   10.96.0.21   192.168.100.2...,192.168.100.9   80/TCP                      3d4h
search   ExternalName   <none>       search.example.com               <none>                      3d4h
web      NodePort       10.96.0.10   <none>                           80:30080/TCP,81:30081/UDP   3d4h
"
    );
}

#[test]
fn services_table_wide_shows_selectors_and_whole_addresses() {
    let out = render_samples(Kind::Service, &services(), true);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].ends_with("AGE    SELECTOR"), "{out}");
    assert!(lines[1].ends_with("3d4h   app=db,tier=data"), "{out}");
    assert!(lines[2].ends_with("3d4h   <none>"), "{out}");
    assert!(
        lines[3].contains("192.168.100.200,192.168.100.201,192.168.100.9"),
        "{out}"
    );
    assert!(lines[5].ends_with("3d4h   app=web"), "{out}");
}

#[test]
fn deployments_table() {
    let objects = [sample(Kind::Deployment)];
    assert_eq!(
        render_samples(Kind::Deployment, &objects, false),
        "\
NAME   READY   UP-TO-DATE   AVAILABLE   AGE
web    2/3     3            2           3d4h
"
    );
    assert_eq!(
        render_samples(Kind::Deployment, &objects, true),
        "\
NAME   READY   UP-TO-DATE   AVAILABLE   AGE    CONTAINERS   IMAGES                                         SELECTOR
web    2/3     3            2           3d4h   agnhost      registry.k8s.io/e2e-test-images/agnhost:2.53   app=web
"
    );
}

#[test]
fn namespaces_table() {
    let fresh = object(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "new", "creationTimestamp": "2025-01-04T04:04:53Z"}
    }));
    assert_eq!(
        render_samples(Kind::Namespace, &[fresh, sample(Kind::Namespace)], false),
        "\
NAME   STATUS   AGE
new    Active   7s
shop   Active   3d4h
"
    );
}

#[test]
fn endpoint_slices_table() {
    let many = object(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "big-xyz", "namespace": "shop", "creationTimestamp": CREATED},
        "addressType": "IPv6",
        "ports": [{"name": "a", "port": 1}, {"name": "b"}, {}, {"port": 4}],
        "endpoints": [
            {"addresses": ["fd00::1", "fd00::2"]},
            {"addresses": ["fd00::3"]},
            {"addresses": ["fd00::4"]}
        ]
    }));
    let empty = object(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "none-xyz", "namespace": "shop", "creationTimestamp": CREATED},
        "addressType": "IPv4"
    }));
    assert_eq!(
        render_samples(
            Kind::EndpointSlice,
            &[many, empty, sample(Kind::EndpointSlice)],
            false
        ),
        "\
NAME        ADDRESSTYPE   PORTS               ENDPOINTS                             AGE
big-xyz     IPv6          1,b,* + 1 more...   fd00::1,fd00::2,fd00::3 + 1 more...   3d4h
none-xyz    IPv4          <unset>             <unset>                               3d4h
web-abcde   IPv4          8080                10.244.1.5,10.244.2.7                 3d4h
"
    );
}

#[test]
fn network_policies_table() {
    let deny_all = object(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "deny-all", "namespace": "shop", "creationTimestamp": CREATED},
        "spec": {"podSelector": {}}
    }));
    let expressions = object(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "tiers", "namespace": "shop", "creationTimestamp": CREATED},
        "spec": {"podSelector": {
            "matchLabels": {"role": "db"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["b", "a"]},
                {"key": "canary", "operator": "DoesNotExist"}
            ]
        }}
    }));
    assert_eq!(
        render_samples(
            Kind::NetworkPolicy,
            &[deny_all, expressions, sample(Kind::NetworkPolicy)],
            false
        ),
        "\
NAME              POD-SELECTOR                    AGE
deny-all          <none>                          3d4h
tiers             !canary,role=db,tier in (a,b)   3d4h
web-allow-front   app=web                         3d4h
"
    );
}

#[test]
fn ingresses_table() {
    let tls = object(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "many", "namespace": "shop", "creationTimestamp": CREATED},
        "spec": {
            "tls": [{"hosts": ["a.example.com"]}],
            "rules": [{"host": "a.example.com"}, {"host": "b.example.com"}, {}, {"host": "d.example.com"}, {"host": "e.example.com"}]
        }
    }));
    assert_eq!(
        render_samples(Kind::Ingress, &[tls, sample(Kind::Ingress)], false),
        "\
NAME   CLASS    HOSTS                                                   ADDRESS           PORTS     AGE
many   <none>   a.example.com,b.example.com,d.example.com + 2 more...                     80, 443   3d4h
web    podnet   shop.example.com                                        192.168.100.200   80        3d4h
"
    );
}

#[test]
fn config_maps_table() {
    let binary = object(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "blobs", "namespace": "shop", "creationTimestamp": CREATED},
        "data": {"a": "1"},
        "binaryData": {"b": "AAE="}
    }));
    assert_eq!(
        render_samples(Kind::ConfigMap, &[binary, sample(Kind::ConfigMap)], false),
        "\
NAME         DATA   AGE
blobs        2      3d4h
web-config   2      3d4h
"
    );
}

#[test]
fn yaml_output_is_the_object_or_a_list() {
    let ns = sample(Kind::Namespace);
    assert_eq!(
        to_yaml(std::slice::from_ref(&ns), true).unwrap(),
        "\
apiVersion: v1
kind: Namespace
metadata:
  creationTimestamp: 2025-01-01T00:00:00Z
  labels:
    team: web
  name: shop
status:
  phase: Active
"
    );
    let list = to_yaml(&[ns.clone(), ns], false).unwrap();
    assert!(
        list.starts_with("apiVersion: v1\nitems:\n- apiVersion: v1\n  kind: Namespace\n"),
        "{list}"
    );
    assert!(
        list.ends_with("kind: List\nmetadata:\n  resourceVersion: ''\n"),
        "{list}"
    );
}

#[test]
fn json_output_is_indented_by_four_and_ends_in_a_newline() {
    let ns = sample(Kind::Namespace);
    assert_eq!(
        to_json(std::slice::from_ref(&ns), true).unwrap(),
        r#"{
    "apiVersion": "v1",
    "kind": "Namespace",
    "metadata": {
        "creationTimestamp": "2025-01-01T00:00:00Z",
        "labels": {
            "team": "web"
        },
        "name": "shop"
    },
    "status": {
        "phase": "Active"
    }
}
"#
    );
    let list: serde_json::Value = serde_json::from_str(&to_json(&[], false).unwrap()).unwrap();
    assert_eq!(
        list,
        json!({"apiVersion": "v1", "items": [], "kind": "List", "metadata": {"resourceVersion": ""}})
    );
}

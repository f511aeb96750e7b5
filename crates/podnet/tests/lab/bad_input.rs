//! Bad manifests get a clear error naming the object and field; nothing else in the lab moves.

use crate::{TestLab, text};

#[test]
fn bad_manifests_are_refused_with_the_object_and_field_named() {
    let lab = TestLab::up("bad", 1, "host-gw");
    let ok = lab.apply("apiVersion: v1\nkind: Pod\nmetadata:\n  name: keep\nspec:\n  containers:\n  - name: c\n    image: agnhost\n    args: [pause]\n");
    assert!(ok.status.success(), "{}", text(&ok));
    lab.running_pods(1);
    let cases = [
        (
            "apiVersion: v1\nkind: Gizmo\nmetadata:\n  name: g\n",
            "Gizmo",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: nocontainers\nspec: {}\n",
            "containers",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: pinned\nspec:\n  nodeName: node-9\n  containers:\n  - name: c\n    image: agnhost\n",
            "node-9",
        ),
        (
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: np\nspec:\n  podSelector: {}\n  ingress:\n  - from:\n    - ipBlock:\n        cidr: 10.0.0.0/33\n",
            "10.0.0.0/33",
        ),
    ];
    for (manifest, needle) in cases {
        let out = lab.apply(manifest);
        assert!(!out.status.success(), "accepted: {manifest}");
        let msg = text(&out);
        assert!(
            msg.contains(needle),
            "error does not name {needle:?}: {msg}"
        );
    }
    let pods = lab.podnet(&["get", "pods", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&pods.stdout).unwrap();
    let names: Vec<_> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["keep"], "the lab changed");
}

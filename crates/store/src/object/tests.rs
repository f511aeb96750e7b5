use serde_json::json;

use super::*;

#[test]
fn kinds_carry_kubernetes_names() {
    let table: Vec<_> = Kind::all()
        .iter()
        .map(|k| (k.kind_name(), k.plural(), k.api_version(), k.namespaced()))
        .collect();
    assert_eq!(
        table,
        [
            ("Namespace", "namespaces", "v1", false),
            ("Node", "nodes", "v1", false),
            ("Pod", "pods", "v1", true),
            ("Deployment", "deployments", "apps/v1", true),
            ("Service", "services", "v1", true),
            (
                "EndpointSlice",
                "endpointslices",
                "discovery.k8s.io/v1",
                true
            ),
            (
                "NetworkPolicy",
                "networkpolicies",
                "networking.k8s.io/v1",
                true
            ),
            ("Ingress", "ingresses", "networking.k8s.io/v1", true),
            ("ConfigMap", "configmaps", "v1", true),
            (
                "ClusterNetworkPolicy",
                "clusternetworkpolicies",
                "policy.networking.k8s.io/v1alpha2",
                false
            ),
        ]
    );
}

#[test]
fn from_user_accepts_kubectl_forms_in_any_case() {
    let cases = [
        ("po", Kind::Pod),
        ("pod", Kind::Pod),
        ("pods", Kind::Pod),
        ("Pod", Kind::Pod),
        ("PODS", Kind::Pod),
        ("no", Kind::Node),
        ("nodes", Kind::Node),
        ("ns", Kind::Namespace),
        ("namespace", Kind::Namespace),
        ("svc", Kind::Service),
        ("services", Kind::Service),
        ("deploy", Kind::Deployment),
        ("deployment", Kind::Deployment),
        ("deployments.apps", Kind::Deployment),
        ("deployments.v1.apps", Kind::Deployment),
        ("endpointslice", Kind::EndpointSlice),
        ("endpointslices.discovery.k8s.io", Kind::EndpointSlice),
        ("netpol", Kind::NetworkPolicy),
        ("networkpolicy", Kind::NetworkPolicy),
        ("networkpolicies.networking.k8s.io", Kind::NetworkPolicy),
        ("ing", Kind::Ingress),
        ("ingresses", Kind::Ingress),
        ("cm", Kind::ConfigMap),
        ("configmap", Kind::ConfigMap),
        (" ConfigMaps ", Kind::ConfigMap),
        ("cnp", Kind::ClusterNetworkPolicy),
        ("clusternetworkpolicy", Kind::ClusterNetworkPolicy),
        (
            "clusternetworkpolicies.policy.networking.k8s.io",
            Kind::ClusterNetworkPolicy,
        ),
    ];
    for (input, kind) in cases {
        assert_eq!(Kind::from_user(input).unwrap(), kind, "{input}");
    }
}

#[test]
fn from_user_error_lists_what_is_accepted() {
    for input in ["ep", "secrets", "pods.apps", "deployments.extensions", ""] {
        let err = Kind::from_user(input).unwrap_err().to_string();
        assert!(err.contains(&format!("{:?}", input.trim())), "{err}");
        assert!(
            err.contains("nodes (no), pods (po)") && err.contains("endpointslices,"),
            "{err}"
        );
    }
}

fn pod_json() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
        "spec": {
            "containers": [{
                "name": "agnhost",
                "image": "registry.k8s.io/e2e-test-images/agnhost:2.53",
                "args": ["netexec", "--http-port=8080"],
                "ports": [{"containerPort": 8080, "protocol": "TCP"}]
            }]
        }
    })
}

#[test]
fn from_value_dispatches_on_api_version_and_kind() {
    let obj = Object::from_value(pod_json()).unwrap();
    assert_eq!(obj.kind(), Kind::Pod);
    assert_eq!(obj.name(), "web");
    assert_eq!(obj.namespace(), Some("shop"));
    assert_eq!(obj.describe(), "Pod shop/web");
    let Object::Pod(pod) = &obj else {
        panic!("not a pod: {obj:?}")
    };
    let container = &pod.spec.as_ref().unwrap().containers[0];
    assert_eq!(container.ports.as_ref().unwrap()[0].container_port, 8080);
}

#[test]
fn to_value_sets_api_version_and_kind_and_round_trips() {
    let obj = Object::from_value(pod_json()).unwrap();
    let value = obj.to_value();
    assert_eq!(value["apiVersion"], "v1");
    assert_eq!(value["kind"], "Pod");
    assert_eq!(Object::from_value(value).unwrap(), obj);
    let text = serde_json::to_string(&obj).unwrap();
    assert_eq!(serde_json::from_str::<Object>(&text).unwrap(), obj);
}

#[test]
fn unknown_kind_names_kind_and_api_version() {
    let err = Object::from_value(json!({"apiVersion": "v1", "kind": "Secret"}))
        .unwrap_err()
        .to_string();
    assert!(err.contains(r#"kind "Secret" in apiVersion "v1""#), "{err}");
    assert!(err.contains("Deployment (apps/v1)"), "{err}");
}

#[test]
fn known_kind_in_another_api_version_says_where_it_is_served() {
    let err = Object::from_value(json!({"apiVersion": "extensions/v1beta1", "kind": "Deployment"}))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(r#"apiVersion "extensions/v1beta1""#)
            && err.contains("Deployment is served as apiVersion apps/v1"),
        "{err}"
    );
}

#[test]
fn missing_kind_or_api_version_is_named() {
    let err = Object::from_value(json!({"apiVersion": "v1"})).unwrap_err();
    assert!(
        matches!(err, StoreError::MissingType { field: "kind" }),
        "{err}"
    );
    let err = Object::from_value(json!({"kind": "Pod"})).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::MissingType {
                field: "apiVersion"
            }
        ),
        "{err}"
    );
}

#[test]
fn bad_field_is_reported_with_its_path() {
    let mut value = pod_json();
    value["spec"]["containers"][0]["ports"][0]["containerPort"] = json!("http");
    let err = Object::from_value(value).unwrap_err();
    let StoreError::Decode {
        kind,
        path,
        message,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(*kind, "Pod");
    assert_eq!(path, "spec.containers[0].ports[0].containerPort");
    assert!(
        message.contains(r#"invalid type: string "http""#),
        "{message}"
    );
    assert!(
        err.to_string()
            .starts_with("Pod (v1): field spec.containers[0].ports[0].containerPort: "),
        "{err}"
    );
}

#[test]
fn label_keys_in_paths_are_quoted() {
    let mut value = pod_json();
    value["metadata"]["labels"] = json!({"app.kubernetes.io/name": 5});
    let err = Object::from_value(value).unwrap_err();
    let StoreError::Decode { path, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(path, r#"metadata.labels["app.kubernetes.io/name"]"#);
}

#[test]
fn out_of_range_number_is_reported_at_its_field() {
    let mut value = pod_json();
    value["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(1u64 << 40);
    let err = Object::from_value(value).unwrap_err();
    let StoreError::Decode { path, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(path, "spec.containers[0].ports[0].containerPort");
}

#[test]
fn null_list_or_map_reads_as_empty_as_go_does() {
    let mut value = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "web-abc", "annotations": null},
        "addressType": "IPv4",
        "endpoints": [{"addresses": null, "conditions": null}]
    });
    let Object::EndpointSlice(slice) = Object::from_value(value.clone()).unwrap() else {
        panic!("not an EndpointSlice")
    };
    assert_eq!(slice.endpoints.unwrap()[0].addresses, Vec::<String>::new());
    // A wrong type where a list is required stays an error.
    value["endpoints"][0]["addresses"] = json!("10.0.0.1");
    let err = Object::from_value(value).unwrap_err();
    assert!(
        matches!(&err, StoreError::Decode { path, .. } if path == "endpoints[0].addresses"),
        "{err}"
    );
}

#[test]
fn typed_conversions_give_back_other_kinds() {
    let obj = Object::from_value(pod_json()).unwrap();
    let back = Node::try_from(obj.clone()).unwrap_err();
    assert_eq!(back, obj);
    let pod = Pod::try_from(obj.clone()).unwrap();
    assert_eq!(Object::from(pod), obj);
}

#[test]
fn a_cluster_network_policy_always_serializes_with_its_type() {
    let policy = ClusterNetworkPolicy {
        metadata: ObjectMeta {
            name: Some("p".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let value = Object::ClusterNetworkPolicy(policy).to_value();
    assert_eq!(value["apiVersion"], "policy.networking.k8s.io/v1alpha2");
    assert_eq!(value["kind"], "ClusterNetworkPolicy");
    let back = Object::from_value(value).unwrap();
    assert_eq!(back.kind(), Kind::ClusterNetworkPolicy);
    assert_eq!(back.describe(), "ClusterNetworkPolicy p");
}

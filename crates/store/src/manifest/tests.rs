use super::*;

/// A lab manifest as a user writes one: a namespace, a Deployment of agnhost netexec servers,
/// a Service in front, and a client pod pinned to a node, as upstream e2e manifests do.
const SHOP: &str = r#"
# The shop: a web tier and a client.
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels:
    app.kubernetes.io/name: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
        tier: front
    spec:
      containers:
      - name: agnhost
        image: registry.k8s.io/e2e-test-images/agnhost:2.53
        args: ["netexec", "--http-port=8080", "--udp-port=8081"]
        ports:
        - name: http
          containerPort: 8080
        - name: udp
          containerPort: 8081
          protocol: UDP
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: http
  - name: udp
    port: 81
    targetPort: 8081
    protocol: UDP
---
# An empty document, as editors leave behind.
---
apiVersion: v1
kind: Pod
metadata:
  name: client
  namespace: shop
spec:
  nodeName: n2
  containers:
  - name: agnhost
    image: registry.k8s.io/e2e-test-images/agnhost:2.53
    args:
    - pause
"#;

#[test]
fn parses_a_realistic_multi_document_manifest() {
    let objects = parse(SHOP).unwrap();
    let names: Vec<String> = objects.iter().map(Object::describe).collect();
    assert_eq!(
        names,
        [
            "Namespace shop",
            "Deployment shop/web",
            "Service shop/web",
            "Pod shop/client"
        ]
    );
    let Object::Deployment(d) = &objects[1] else {
        panic!("{:?}", objects[1])
    };
    let args = d.spec.template.spec.as_ref().unwrap().containers[0]
        .args
        .clone();
    assert_eq!(
        args.unwrap(),
        ["netexec", "--http-port=8080", "--udp-port=8081"]
    );
    validate_against(&objects, &["n1".into(), "n2".into()], &[]).unwrap();
}

#[test]
fn parses_json_and_lists() {
    let json = r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}
        {"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "b"}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "b"}}
        ]}"#;
    let names: Vec<String> = parse(json).unwrap().iter().map(Object::describe).collect();
    assert_eq!(names, ["Namespace a", "Namespace b", "ConfigMap b/c"]);

    let yaml = "apiVersion: v1\nkind: PodList\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: d}\n";
    assert_eq!(parse(yaml).unwrap()[0].name(), "d");
    assert!(parse("").unwrap().is_empty());
    assert!(parse("---\n# nothing\n---\n").unwrap().is_empty());
}

/// `SHOP` with `from` replaced by `to`, which must occur in it.
fn shop_with(from: &str, to: &str) -> String {
    assert!(SHOP.contains(from), "{from:?} is not in the manifest");
    SHOP.replacen(from, to, 1)
}

/// The message `text` is refused with.
fn refusal(text: &str) -> String {
    match parse(text) {
        Ok(objects) => panic!("accepted: {objects:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn yaml_syntax_errors_name_the_document_and_line() {
    let err = refusal(&shop_with("  replicas: 2\n", "  replicas: [2\n"));
    assert!(
        err.starts_with("document 2: not valid YAML or JSON: "),
        "{err}"
    );
    assert!(err.contains("line"), "{err}");
}

#[test]
fn a_document_that_is_not_a_mapping_is_refused() {
    let err = refusal("- a\n- b\n");
    assert_eq!(
        err,
        "document 1 (object without a name): expected an object (a mapping with apiVersion, kind and metadata), found a list"
    );
}

#[test]
fn unknown_kind_names_document_kind_and_api_version() {
    let err = refusal(&shop_with("kind: Service", "kind: Servise"));
    assert!(
        err.starts_with(r#"document 3 (Servise shop/web): unknown object type: kind "Servise" in apiVersion "v1""#),
        "{err}"
    );
    let err = refusal(&shop_with("apps/v1", "extensions/v1beta1"));
    assert!(
        err.contains("document 2 (Deployment shop/web)")
            && err.contains("Deployment is served as apiVersion apps/v1"),
        "{err}"
    );
}

#[test]
fn a_field_of_the_wrong_type_is_named_with_its_path() {
    let err = refusal(&shop_with("containerPort: 8080", "containerPort: http"));
    assert!(
        err.starts_with(
            "document 2 (Deployment shop/web): Deployment (apps/v1): field spec.template.spec.containers[0].ports[0].containerPort: invalid type: string \"http\""
        ),
        "{err}"
    );
}

/// Each bad input, and the exact start of the message it must produce.
#[test]
fn each_bad_input_names_document_field_value_and_expectation() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "  name: client\n",
            "  labels: {a: b}\n",
            "document 5 (Pod without a name): metadata.name is missing",
        ),
        (
            "  name: client\n",
            "  name: Client\n",
            r#"document 5 (Pod shop/Client): metadata.name: "Client" is not valid: expected an RFC 1123 subdomain"#,
        ),
        (
            "kind: Namespace\nmetadata:\n  name: shop",
            "kind: Namespace\nmetadata:\n  name: shop.eu",
            r#"document 1 (Namespace shop.eu): metadata.name: "shop.eu" is not valid: expected an RFC 1123 label"#,
        ),
        (
            "kind: Service\nmetadata:\n  name: web",
            "kind: Service\nmetadata:\n  name: 1web",
            r#"document 3 (Service shop/1web): metadata.name: "1web" is not valid: expected an RFC 1035 label"#,
        ),
        (
            "  nodeName: n2\n  containers:\n  - name: agnhost\n    image: registry.k8s.io/e2e-test-images/agnhost:2.53\n    args:\n    - pause\n",
            "  nodeName: n2\n",
            "document 5 (Pod shop/client): spec.containers is missing: expected at least one container",
        ),
        (
            "  - name: agnhost\n    image: registry.k8s.io/e2e-test-images/agnhost:2.53\n    args:\n    - pause\n",
            "  - image: registry.k8s.io/e2e-test-images/agnhost:2.53\n",
            "document 5 (Pod shop/client): spec.containers[0].name is missing",
        ),
        (
            "    image: registry.k8s.io/e2e-test-images/agnhost:2.53\n    args:\n    - pause\n",
            "    args:\n    - pause\n",
            "document 5 (Pod shop/client): spec.containers[0].image is missing",
        ),
        (
            "    args:\n    - pause\n",
            "  - name: agnhost\n    image: busybox\n",
            r#"document 5 (Pod shop/client): spec.containers[1].name: "agnhost" is not valid: expected a name no other container of the pod has (spec.containers[0] has it)"#,
        ),
        (
            "  template:\n",
            "  tmpl:\n",
            "document 2 (Deployment shop/web): Deployment (apps/v1): field spec.tmpl: unknown field",
        ),
        (
            "    image: registry.k8s.io/e2e-test-images/agnhost:2.53\n    args:\n    - pause\n",
            "    image: registry.k8s.io/e2e-test-images/agnhost:2.53\n    arguments:\n    - pause\n",
            "document 5 (Pod shop/client): Pod (v1): field spec.containers[0].arguments: unknown field",
        ),
        (
            "  selector:\n    matchLabels:\n      app: web\n  template:",
            "  template:",
            "document 2 (Deployment shop/web): spec.selector is missing",
        ),
        (
            "    matchLabels:\n      app: web\n  template:",
            "    matchLabels:\n      app: api\n  template:",
            "document 2 (Deployment shop/web): spec.selector: \"app=api\" is not valid: expected a selector that matches spec.template.metadata.labels (app=web,tier=front)",
        ),
        (
            "  - name: http\n    port: 80\n",
            "  - name: http\n    port: 70000\n",
            "document 3 (Service shop/web): spec.ports[0].port: 70000 is not valid: expected a port number from 1 to 65535",
        ),
        (
            "  selector:\n    app: web\n  ports:",
            "  clusterIP: 10.96.0.300\n  selector:\n    app: web\n  ports:",
            r#"document 3 (Service shop/web): spec.clusterIP: "10.96.0.300" is not valid: expected an IP address, "None" for a headless Service"#,
        ),
        (
            "  selector:\n    app: web\n  ports:",
            "  clusterIPs: [\"fd00::10\", \"fd00::1::\"]\n  selector:\n    app: web\n  ports:",
            r#"document 3 (Service shop/web): spec.clusterIPs[1]: "fd00::1::" is not valid"#,
        ),
        (
            "  selector:\n    app: web\n  ports:",
            "  externalIPs: [192.168.100.300]\n  selector:\n    app: web\n  ports:",
            r#"document 3 (Service shop/web): spec.externalIPs[0]: "192.168.100.300" is not valid: expected an IP address"#,
        ),
        (
            "    targetPort: http\n",
            "    targetPort: 0\n",
            "document 3 (Service shop/web): spec.ports[0].targetPort: 0 is not valid",
        ),
        (
            "  - name: udp\n    port: 81\n",
            "  - port: 81\n",
            "document 3 (Service shop/web): spec.ports[1].name is missing: expected a name: a Service with several ports must name each one",
        ),
        (
            "  - name: udp\n    port: 81\n",
            "  - name: http\n    port: 81\n",
            r#"document 3 (Service shop/web): spec.ports[1].name: "http" is not valid: expected a name no other port has (spec.ports[0] has it)"#,
        ),
        (
            "        - name: http\n          containerPort: 8080\n",
            "        - name: http\n          containerPort: 0\n",
            "document 2 (Deployment shop/web): spec.template.spec.containers[0].ports[0].containerPort: 0 is not valid",
        ),
    ];
    for (from, to, expected) in cases {
        let err = refusal(&shop_with(from, to));
        assert!(
            err.starts_with(expected),
            "{from:?} -> {to:?}\n got: {err}\nwant: {expected}…"
        );
    }
}

#[test]
fn a_deployment_without_a_template_is_refused() {
    let yaml = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n";
    assert_eq!(
        refusal(yaml),
        "document 1 (Deployment web): spec.template is missing: expected a pod template: metadata.labels and a spec with containers"
    );
}

#[test]
fn bad_cidrs_are_refused_where_objects_carry_them() {
    let node =
        |spec: &str| format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\nspec:\n{spec}");
    let cases = [
        (
            node("  podCIDR: 10.244.1.0\n"),
            r#"document 1 (Node n1): spec.podCIDR: "10.244.1.0" is not valid: expected a CIDR"#,
        ),
        (
            node("  podCIDRs: [10.244.1.0/24, 10.244.2.0/33]\n"),
            r#"document 1 (Node n1): spec.podCIDRs[1]: "10.244.2.0/33" is not valid: expected a CIDR"#,
        ),
        (
            node("  podCIDRs: [10.244.1.0/24, 10.244.2.0/24]\n"),
            r#"document 1 (Node n1): spec.podCIDRs[1]: "10.244.2.0/24" is not valid: expected a CIDR of the other IP family"#,
        ),
        (
            node("  podCIDR: 10.244.1.0/24\n  podCIDRs: [10.244.9.0/24]\n"),
            r#"document 1 (Node n1): spec.podCIDRs[0]: "10.244.9.0/24" is not valid: expected the same CIDR as spec.podCIDR (10.244.1.0/24)"#,
        ),
    ];
    for (yaml, expected) in &cases {
        let err = refusal(yaml);
        assert!(err.starts_with(expected), "\n got: {err}\nwant: {expected}");
    }

    let policy = |peer: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: p\nspec:\n  podSelector: {{}}\n  ingress:\n  - from:\n    - {peer}\n"
        )
    };
    let cases = [
        (
            policy("ipBlock: {cidr: 10.0.0.0/33}"),
            r#"document 1 (NetworkPolicy p): spec.ingress[0].from[0].ipBlock.cidr: "10.0.0.0/33" is not valid"#,
        ),
        (
            policy("ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0]}"),
            r#"document 1 (NetworkPolicy p): spec.ingress[0].from[0].ipBlock.except[0]: "10.1.0.0" is not valid: expected a CIDR"#,
        ),
        (
            policy("ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16]}"),
            r#"document 1 (NetworkPolicy p): spec.ingress[0].from[0].ipBlock.except[0]: "11.0.0.0/16" is not valid: expected a CIDR strictly inside spec.ingress[0].from[0].ipBlock.cidr (10.0.0.0/8)"#,
        ),
        (
            policy("ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/8]}"),
            "document 1 (NetworkPolicy p): spec.ingress[0].from[0].ipBlock.except[0]: \"10.0.0.0/8\" is not valid",
        ),
        (
            policy("{}"),
            "document 1 (NetworkPolicy p): spec.ingress[0].from[0] is missing: expected one of podSelector",
        ),
    ];
    for (yaml, expected) in &cases {
        let err = refusal(yaml);
        assert!(err.starts_with(expected), "\n got: {err}\nwant: {expected}");
    }
    assert!(
        parse(&policy(
            "ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}"
        ))
        .is_ok()
    );
}

#[test]
fn validate_against_requires_existing_nodes_and_namespaces() {
    let objects = parse(SHOP).unwrap();
    let err = validate_against(&objects, &["n1".into()], &[])
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        r#"Pod shop/client: spec.nodeName "n2" is not a node of the cluster (nodes: n1)"#
    );

    // Without the Namespace document, the shop namespace must already exist.
    let without_namespace = &objects[1..];
    let err = validate_against(without_namespace, &["n2".into()], &[])
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        r#"Deployment shop/web: namespace "shop" does not exist and this manifest does not create it (namespaces: default, kube-system)"#
    );
    validate_against(without_namespace, &["n2".into()], &["shop".into()]).unwrap();
}

#[test]
fn validate_against_checks_deployment_templates_and_defaults_the_namespace() {
    let yaml = shop_with(
        "      containers:\n",
        "      nodeName: n9\n      containers:\n",
    );
    let objects = parse(&yaml).unwrap();
    let err = validate_against(&objects, &["n1".into(), "n2".into()], &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(r#"Deployment shop/web: spec.template.spec.nodeName "n9" is not a node"#),
        "{err}"
    );
    let pod = parse("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: i}]\n").unwrap();
    validate_against(&pod, &[], &[]).unwrap();
}

#[test]
fn expand_deployment_makes_owned_pods_from_the_template() {
    let objects = parse(SHOP).unwrap();
    let Object::Deployment(mut d) = objects[1].clone() else {
        panic!()
    };
    d.metadata.uid = Some("0b5c6a3e-0000-4000-8000-000000000001".into());
    let pods = expand_deployment(&d);
    let names: Vec<_> = pods
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["web-0", "web-1"]);
    for pod in &pods {
        assert_eq!(pod.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(
            pod.metadata.labels,
            d.spec.template.metadata.as_ref().unwrap().labels
        );
        assert_eq!(pod.spec, d.spec.template.spec);
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (
                owner.api_version.as_str(),
                owner.kind.as_str(),
                owner.name.as_str()
            ),
            ("apps/v1", "Deployment", "web")
        );
        assert_eq!(owner.uid, "0b5c6a3e-0000-4000-8000-000000000001");
        assert_eq!(owner.controller, Some(true));
    }

    d.spec.replicas = None;
    assert_eq!(expand_deployment(&d).len(), 1);
    d.spec.replicas = Some(0);
    assert!(expand_deployment(&d).is_empty());
}

#[test]
fn a_cluster_network_policy_parses_and_its_misspelt_fields_and_values_are_named() {
    let cnp = r#"
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: admin-x}
spec:
  tier: Admin
  priority: 10
  subject:
    namespaces: {matchLabels: {ns: x}}
  ingress:
  - action: Deny
    from:
    - namespaces: {matchLabels: {ns: z}}
"#;
    let objects = parse(cnp).unwrap();
    assert_eq!(objects.len(), 1);
    let Object::ClusterNetworkPolicy(policy) = &objects[0] else {
        panic!("not a ClusterNetworkPolicy: {objects:?}");
    };
    assert_eq!(policy.spec.priority, 10);
    assert_eq!(objects[0].namespace(), None);

    let err = refusal(&cnp.replace("  - action: Deny\n", "  - acton: Deny\n"));
    assert!(err.contains("acton"), "{err}");
    let err = refusal(&cnp.replace("action: Deny", "action: Drop"));
    assert!(
        err.contains("spec.ingress[0].action") && err.contains("Drop"),
        "{err}"
    );
}

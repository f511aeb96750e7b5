//! Objects of every kind, shared by the tests of the store and the tables.

use serde_json::{Value, json};

use crate::object::{Kind, Object};

/// The creation time of every sample object.
pub(crate) const CREATED: &str = "2025-01-01T00:00:00Z";

/// A realistic object of `kind`, as a lab manifest would hold it (plus some status).
pub(crate) fn sample(kind: Kind) -> Object {
    let value = match kind {
        Kind::Namespace => json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "shop", "labels": {"team": "web"}, "creationTimestamp": CREATED},
            "status": {"phase": "Active"}
        }),
        Kind::Node => json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {
                "name": "n1",
                "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/hostname": "n1"},
                "annotations": {"podnet.io/vtep-mac": "02:00:00:00:00:01"},
                "creationTimestamp": CREATED
            },
            "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24", "fd00:10:244:1::/64"]},
            "status": {
                "addresses": [{"type": "InternalIP", "address": "192.168.100.11"}, {"type": "Hostname", "address": "n1"}],
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                "nodeInfo": {
                    "architecture": "amd64", "bootID": "", "containerRuntimeVersion": "podnet-lab://0.1.0",
                    "kernelVersion": "6.18.0", "kubeProxyVersion": "", "kubeletVersion": "v1.37.0-lab",
                    "machineID": "", "operatingSystem": "linux", "osImage": "podnet lab", "systemUUID": ""
                }
            }
        }),
        Kind::Pod => json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-0", "namespace": "shop", "labels": {"app": "web"}, "creationTimestamp": CREATED},
            "spec": {
                "nodeName": "n1",
                "containers": [{
                    "name": "agnhost",
                    "image": "registry.k8s.io/e2e-test-images/agnhost:2.53",
                    "args": ["netexec", "--http-port=8080", "--udp-port=8081"],
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}, {"containerPort": 8081, "protocol": "UDP"}]
                }]
            },
            "status": {
                "phase": "Running",
                "podIP": "10.244.1.5",
                "podIPs": [{"ip": "10.244.1.5"}, {"ip": "fd00:10:244:1::5"}],
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{
                    "name": "agnhost", "image": "registry.k8s.io/e2e-test-images/agnhost:2.53", "imageID": "",
                    "ready": true, "restartCount": 0, "state": {"running": {"startedAt": CREATED}}
                }]
            }
        }),
        Kind::Deployment => json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "creationTimestamp": CREATED},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{
                        "name": "agnhost",
                        "image": "registry.k8s.io/e2e-test-images/agnhost:2.53",
                        "args": ["netexec", "--http-port=8080"]
                    }]}
                }
            },
            "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
        }),
        Kind::Service => json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "shop", "creationTimestamp": CREATED},
            "spec": {
                "type": "NodePort",
                "clusterIP": "10.96.0.10",
                "clusterIPs": ["10.96.0.10"],
                "selector": {"app": "web"},
                "ports": [
                    {"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080, "protocol": "TCP"},
                    {"name": "udp", "port": 81, "targetPort": 8081, "nodePort": 30081, "protocol": "UDP"}
                ]
            }
        }),
        Kind::EndpointSlice => json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {
                "name": "web-abcde", "namespace": "shop", "creationTimestamp": CREATED,
                "labels": {"kubernetes.io/service-name": "web"}
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.244.1.5"], "nodeName": "n1", "conditions": {"ready": true}},
                {"addresses": ["10.244.2.7"], "nodeName": "n2", "conditions": {"ready": true}}
            ]
        }),
        Kind::NetworkPolicy => json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "web-allow-front", "namespace": "shop", "creationTimestamp": CREATED},
            "spec": {
                "podSelector": {"matchLabels": {"app": "web"}},
                "policyTypes": ["Ingress"],
                "ingress": [{
                    "from": [
                        {"podSelector": {"matchLabels": {"role": "front"}}},
                        {"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.1.0/24"]}}
                    ],
                    "ports": [{"protocol": "TCP", "port": 8080}]
                }]
            }
        }),
        Kind::Ingress => json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "web", "namespace": "shop", "creationTimestamp": CREATED},
            "spec": {
                "ingressClassName": "podnet",
                "rules": [{
                    "host": "shop.example.com",
                    "http": {"paths": [{
                        "path": "/", "pathType": "Prefix",
                        "backend": {"service": {"name": "web", "port": {"number": 80}}}
                    }]}
                }]
            },
            "status": {"loadBalancer": {"ingress": [{"ip": "192.168.100.200"}]}}
        }),
        Kind::ConfigMap => json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "web-config", "namespace": "shop", "creationTimestamp": CREATED},
            "data": {"greeting": "hello", "mode": "fast"}
        }),
        Kind::ClusterNetworkPolicy => json!({
            "apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
            "metadata": {"name": "deny-shop", "creationTimestamp": CREATED},
            "spec": {
                "tier": "Admin", "priority": 10,
                "subject": {"namespaces": {"matchLabels": {"team": "shop"}}},
                "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}]
            }
        }),
    };
    object(value)
}

/// Decodes a test object, failing the test if it does not decode.
pub(crate) fn object(value: Value) -> Object {
    match Object::from_value(value) {
        Ok(obj) => obj,
        Err(e) => panic!("test object does not decode: {e}"),
    }
}

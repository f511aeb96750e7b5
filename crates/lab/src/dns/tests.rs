use std::path::PathBuf;

use k8s_openapi::api::core::v1::{PodDNSConfig, PodDNSConfigOption, PodSpec};

use super::*;

fn pod(namespace: &str, policy: Option<&str>, host_network: bool) -> Pod {
    let mut pod = Pod::default();
    pod.metadata.name = Some("p".into());
    pod.metadata.namespace = Some(namespace.into());
    pod.spec = Some(PodSpec {
        dns_policy: policy.map(str::to_owned),
        host_network: host_network.then_some(true),
        ..Default::default()
    });
    pod
}

fn node() -> ResolvConf {
    ResolvConf::parse("# the node's\nnameserver 192.168.100.200\nsearch lab.example.\n")
}

fn dns() -> Vec<String> {
    vec!["10.96.0.10".into()]
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn cluster_first_pods_get_the_cluster_dns_and_their_namespace_search_path() {
    for policy in [None, Some("ClusterFirst")] {
        let conf = pod_resolv_conf(&pod("web", policy, false), &node(), &dns(), "cluster.local");
        assert_eq!(
            conf.render(),
            "search web.svc.cluster.local svc.cluster.local cluster.local lab.example\n\
             nameserver 10.96.0.10\noptions ndots:5\n"
        );
    }
}

#[test]
fn default_and_host_network_pods_get_the_nodes_resolver() {
    let expected = "search lab.example\nnameserver 192.168.100.200\n";
    let default = pod("web", Some("Default"), false);
    assert_eq!(
        pod_resolv_conf(&default, &node(), &dns(), "cluster.local").render(),
        expected
    );
    let host = pod("web", Some("ClusterFirst"), true);
    assert_eq!(
        pod_resolv_conf(&host, &node(), &dns(), "cluster.local").render(),
        expected
    );
    // ClusterFirstWithHostNet is what puts a host-network pod on the cluster DNS.
    let with_host_net = pod("web", Some("ClusterFirstWithHostNet"), true);
    let conf = pod_resolv_conf(&with_host_net, &node(), &dns(), "cluster.local");
    assert_eq!(conf.nameservers, dns());
    // Without a cluster DNS kubelet falls back to the node's resolver.
    let conf = pod_resolv_conf(&pod("web", None, false), &node(), &[], "cluster.local");
    assert_eq!(conf.render(), expected);
}

#[test]
fn dns_config_is_merged_without_duplicates_and_its_options_override() {
    let mut p = pod("web", None, false);
    p.spec.as_mut().unwrap().dns_config = Some(PodDNSConfig {
        nameservers: Some(strings(&["10.96.0.10", "1.2.3.4"])),
        searches: Some(strings(&["svc.cluster.local", "corp.example"])),
        options: Some(vec![
            PodDNSConfigOption {
                name: Some("ndots".into()),
                value: Some("2".into()),
            },
            PodDNSConfigOption {
                name: Some("edns0".into()),
                value: None,
            },
        ]),
    });
    let conf = pod_resolv_conf(&p, &node(), &dns(), "cluster.local");
    assert_eq!(conf.nameservers, strings(&["10.96.0.10", "1.2.3.4"]));
    assert_eq!(
        conf.searches,
        strings(&[
            "web.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local",
            "lab.example",
            "corp.example"
        ])
    );
    assert_eq!(conf.options, strings(&["ndots:2", "edns0"]));
}

#[test]
fn dns_policy_none_has_only_the_dns_config() {
    let mut p = pod("web", Some("None"), false);
    p.spec.as_mut().unwrap().dns_config = Some(PodDNSConfig {
        nameservers: Some(strings(&["1.1.1.1"])),
        searches: None,
        options: Some(vec![PodDNSConfigOption {
            name: Some("timeout".into()),
            value: Some("1".into()),
        }]),
    });
    let conf = pod_resolv_conf(&p, &node(), &dns(), "cluster.local");
    assert_eq!(conf.render(), "nameserver 1.1.1.1\noptions timeout:1\n");
    assert_eq!(
        pod_resolv_conf(&pod("web", Some("None"), false), &node(), &dns(), "x").render(),
        ""
    );
}

#[test]
fn limits_cut_nameservers_and_search_paths_as_kubelet_does() {
    let mut p = pod("web", Some("None"), false);
    let long = "a".repeat(254);
    let mut searches: Vec<String> = (0..40).map(|i| format!("s{i}.example")).collect();
    searches.insert(0, long.clone());
    p.spec.as_mut().unwrap().dns_config = Some(PodDNSConfig {
        nameservers: Some(strings(&["1.0.0.1", "1.0.0.2", "1.0.0.3", "1.0.0.4"])),
        searches: Some(searches),
        options: None,
    });
    let conf = pod_resolv_conf(&p, &node(), &dns(), "cluster.local");
    assert_eq!(conf.nameservers.len(), 3);
    // 32 kept, then the over-long one dropped.
    assert_eq!(conf.searches.len(), 31);
    assert!(!conf.searches.contains(&long));

    let many: Vec<String> = (0..20)
        .map(|i| format!("{i:02}{}", "x".repeat(150)))
        .collect();
    p.spec
        .as_mut()
        .unwrap()
        .dns_config
        .as_mut()
        .unwrap()
        .searches = Some(many);
    let conf = pod_resolv_conf(&p, &node(), &dns(), "cluster.local");
    assert!(conf.searches.join(" ").len() <= 2048);
    assert_eq!(conf.searches.len(), 13);
}

#[test]
fn parsing_keeps_every_nameserver_and_the_last_search_and_options() {
    let conf = ResolvConf::parse(
        "nameserver 10.0.0.1\nsearch a.example\nsearch b.example. c.example\nnameserver 10.0.0.2\noptions ndots:1\noptions rotate\n",
    );
    assert_eq!(conf.nameservers, strings(&["10.0.0.1", "10.0.0.2"]));
    assert_eq!(conf.searches, strings(&["b.example", "c.example"]));
    assert_eq!(conf.options, strings(&["rotate"]));
}

#[test]
fn the_dns_service_sits_at_the_tenth_address_and_matches_the_kubelets() {
    let config = LabConfig::plan(1, "vxlan").unwrap();
    assert_eq!(cluster_dns_ip(&config).to_string(), "10.96.0.10");
    assert_eq!(
        cluster_dns_ip(&config).to_string(),
        crate::kubelet::CLUSTER_DNS
    );
}

#[test]
fn the_manifest_parses_into_the_kube_dns_service_and_its_deployment() {
    let config = LabConfig::plan(1, "vxlan").unwrap();
    let text = cluster_dns_manifest(
        &PathBuf::from("/opt/podnet bin/podnet"),
        &PathBuf::from("/run/podnet/labs/lab/store"),
        &config,
    );
    let objects = podnet_store::manifest::parse(&text).unwrap();
    assert_eq!(objects.len(), 2);
    let podnet_store::object::Object::Deployment(deployment) = &objects[1] else {
        panic!("not a Deployment: {:?}", objects[1]);
    };
    let json = serde_json::to_value(deployment).unwrap();
    let template = &json["spec"]["template"]["spec"];
    assert_eq!(template["dnsPolicy"], "Default");
    let command = template["containers"][0]["command"].as_array().unwrap();
    assert_eq!(command[0], "/opt/podnet bin/podnet");
    assert!(
        command.iter().any(|a| a == "192.168.100.200:53"),
        "{command:?}"
    );
}

#[test]
fn the_upstream_resolver_never_reads_the_machines_configuration() {
    let config = LabConfig::plan(1, "vxlan").unwrap();
    let (program, args) = upstream_dns_command(&config, &PathBuf::from("/x/dnsmasq.pid"));
    assert_eq!(program, "dnsmasq");
    for flag in [
        "--no-resolv",
        "--no-hosts",
        "--conf-file=/dev/null",
        "--listen-address=192.168.100.200",
        "--address=/example.test/192.168.100.200",
    ] {
        assert!(args.iter().any(|a| a == flag), "{flag} missing: {args:?}");
    }
}

#[test]
fn every_node_serves_the_dns_cluster_ip_itself_untracked() {
    let config = LabConfig::plan(1, "vxlan").unwrap();
    let args = node_local_dns_args(&PathBuf::from("/s"), &config).join(" ");
    for want in [
        "dns --store /s",
        "--listen 10.96.0.10:53 --node-local 10.96.0.10",
        "--listen 169.254.20.10:53 --node-local 169.254.20.10",
        "--upstream 192.168.100.200:53",
    ] {
        assert!(args.contains(want), "{want} missing: {args}");
    }
}

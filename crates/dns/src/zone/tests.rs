use std::net::IpAddr;
use std::str::FromStr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

use super::*;

fn service(ns: &str, name: &str, spec: serde_json::Value) -> Service {
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name},
        "spec": spec,
    }))
    .unwrap()
}

fn slice(ns: &str, svc: &str, family: &str, endpoints: serde_json::Value) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": format!("{svc}-{family}"),
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": family,
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"port": 9000}],
    }))
    .unwrap()
}

fn pod(ns: &str, ips: &[&str], host_network: bool) -> Pod {
    let ips: Vec<_> = ips.iter().map(|ip| json!({"ip": ip})).collect();
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": "p"},
        "spec": {"containers": [], "hostNetwork": host_network},
        "status": {"phase": "Running", "podIPs": ips},
    }))
    .unwrap()
}

/// A cluster with a dual-stack ClusterIP service, a headless one, an empty headless one and an
/// ExternalName one, in namespace `default`.
fn cluster(config: &ZoneConfig) -> Zone {
    let mut b = ZoneBuilder::new(config).unwrap();
    b.add_service(&service(
        "default",
        "kubernetes",
        json!({"clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1", "fd00:10::1"],
               "ports": [{"name": "https", "port": 443, "protocol": "TCP"}, {"port": 80}]}),
    ));
    b.add_service(&service(
        "default",
        "db",
        json!({"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}),
    ));
    b.add_endpoint_slice(&slice(
        "default",
        "db",
        "IPv4",
        json!([
            {"addresses": ["10.244.1.5"], "hostname": "db-0", "conditions": {"ready": true}},
            {"addresses": ["10.244.2.6"], "conditions": {"ready": true}},
            {"addresses": ["10.244.2.7"], "hostname": "db-2", "conditions": {"ready": false}},
        ]),
    ));
    b.add_endpoint_slice(&slice(
        "default",
        "db",
        "IPv6",
        json!([{"addresses": ["fd00:244::5"], "hostname": "db-0"}]),
    ));
    b.add_service(&service("default", "empty", json!({"clusterIP": "None"})));
    b.add_endpoint_slice(&slice(
        "default",
        "empty",
        "IPv4",
        json!([{"addresses": ["10.244.3.3"], "conditions": {"ready": false}}]),
    ));
    b.add_service(&service(
        "default",
        "ext",
        json!({"type": "ExternalName", "externalName": "www.example.com"}),
    ));
    b.add_namespace(
        &serde_json::from_value::<Namespace>(json!({"metadata": {"name": "quiet"}})).unwrap(),
    );
    b.add_pod(&pod("default", &["10.244.1.5", "fd00:244::5"], false));
    b.add_pod(&pod("default", &["192.168.0.10"], true));
    b.build()
}

fn zone() -> Zone {
    cluster(&ZoneConfig {
        reverse_cidrs: vec!["10.96.0.0/12".parse().unwrap()],
        ..ZoneConfig::default()
    })
}

fn ask(zone: &Zone, name: &str, rtype: RecordType) -> ZoneAnswer {
    match zone.lookup(&Name::from_ascii(name).unwrap(), rtype, DNSClass::IN) {
        Lookup::Answer(answer) => answer,
        Lookup::NotOurs => panic!("{name} {rtype} should be ours"),
    }
}

fn data(records: &[Record]) -> Vec<String> {
    let mut out: Vec<String> = records.iter().map(|r| r.data.to_string()).collect();
    out.sort();
    out
}

fn assert_negative(answer: &ZoneAnswer, rcode: ResponseCode) {
    assert_eq!(answer.rcode, rcode);
    assert!(answer.answers.is_empty(), "{answer:?}");
    assert_eq!(answer.authority.len(), 1);
    assert_eq!(answer.authority[0].record_type(), RecordType::SOA);
}

#[test]
fn dns_version_is_txt_1_1_0() {
    let answer = ask(&zone(), "dns-version.cluster.local.", RecordType::TXT);
    assert_eq!(answer.rcode, ResponseCode::NoError);
    assert_eq!(data(&answer.answers), ["1.1.0"]);
    assert_eq!(answer.answers[0].ttl, 28800);
}

#[test]
fn cluster_ip_service_has_a_and_aaaa_for_each_family() {
    let zone = zone();
    let a = ask(
        &zone,
        "kubernetes.default.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(data(&a.answers), ["10.96.0.1"]);
    assert_eq!(a.answers[0].ttl, 30);
    let aaaa = ask(
        &zone,
        "kubernetes.default.svc.cluster.local.",
        RecordType::AAAA,
    );
    assert_eq!(data(&aaaa.answers), ["fd00:10::1"]);
}

#[test]
fn existing_name_with_other_type_is_nodata_with_soa() {
    let answer = ask(
        &zone(),
        "kubernetes.default.svc.cluster.local.",
        RecordType::MX,
    );
    assert_negative(&answer, ResponseCode::NoError);
    let RData::SOA(soa) = &answer.authority[0].data else {
        panic!("not an SOA");
    };
    assert_eq!(soa.minimum, 30);
    assert_eq!(answer.authority[0].name.to_ascii(), "cluster.local.");
}

#[test]
fn empty_non_terminals_are_nodata() {
    let zone = zone();
    for name in [
        "svc.cluster.local.",
        "default.svc.cluster.local.",
        "quiet.svc.cluster.local.",
        "_tcp.kubernetes.default.svc.cluster.local.",
        "pod.cluster.local.",
        "dns.cluster.local.",
    ] {
        assert_negative(&ask(&zone, name, RecordType::A), ResponseCode::NoError);
    }
}

#[test]
fn unknown_names_are_nxdomain_with_soa() {
    let zone = zone();
    for name in [
        "nope.default.svc.cluster.local.",
        "kubernetes.nope.svc.cluster.local.",
        "x.kubernetes.default.svc.cluster.local.",
        "_http._tcp.kubernetes.default.svc.cluster.local.",
        "other.cluster.local.",
        "_foo.cluster.local.",
    ] {
        assert_negative(&ask(&zone, name, RecordType::A), ResponseCode::NXDomain);
    }
}

#[test]
fn names_compare_case_insensitively_and_without_trailing_dot() {
    let zone = zone();
    let answer = ask(
        &zone,
        "KuBeRnEtEs.Default.SVC.cluster.LOCAL.",
        RecordType::A,
    );
    assert_eq!(data(&answer.answers), ["10.96.0.1"]);
    let relative = ask(&zone, "kubernetes.default.svc.cluster.local", RecordType::A);
    assert_eq!(data(&relative.answers), ["10.96.0.1"]);
}

#[test]
fn srv_exists_for_named_ports_only_with_target_addresses() {
    let zone = zone();
    let answer = ask(
        &zone,
        "_https._tcp.kubernetes.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(
        data(&answer.answers),
        ["0 100 443 kubernetes.default.svc.cluster.local."]
    );
    assert_eq!(data(&answer.additionals), ["10.96.0.1", "fd00:10::1"]);
    let unnamed = ask(
        &zone,
        "_80._tcp.kubernetes.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_negative(&unnamed, ResponseCode::NXDomain);
}

#[test]
fn cluster_ip_ptr_for_both_families() {
    let zone = zone();
    let v4 = ask(&zone, "1.0.96.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(data(&v4.answers), ["kubernetes.default.svc.cluster.local."]);
    let v6_name = Name::from(IpAddr::from_str("fd00:10::1").unwrap()).to_ascii();
    assert_eq!(v6_name.matches('.').count(), 34, "32 nibbles + ip6.arpa");
    let v6 = ask(&zone, &v6_name.to_uppercase(), RecordType::PTR);
    assert_eq!(data(&v6.answers), ["kubernetes.default.svc.cluster.local."]);
}

#[test]
fn headless_service_answers_ready_endpoints_only() {
    let zone = zone();
    let a = ask(&zone, "db.default.svc.cluster.local.", RecordType::A);
    assert_eq!(data(&a.answers), ["10.244.1.5", "10.244.2.6"]);
    let aaaa = ask(&zone, "db.default.svc.cluster.local.", RecordType::AAAA);
    assert_eq!(data(&aaaa.answers), ["fd00:244::5"]);
    let unready = ask(&zone, "db-2.db.default.svc.cluster.local.", RecordType::A);
    assert_negative(&unready, ResponseCode::NXDomain);
}

#[test]
fn headless_service_without_ready_endpoints_is_nxdomain() {
    let answer = ask(&zone(), "empty.default.svc.cluster.local.", RecordType::A);
    assert_negative(&answer, ResponseCode::NXDomain);
}

#[test]
fn publish_not_ready_addresses_counts_unready_endpoints() {
    let mut b = ZoneBuilder::new(&ZoneConfig::default()).unwrap();
    b.add_service(&service(
        "default",
        "empty",
        json!({"clusterIP": "None", "publishNotReadyAddresses": true}),
    ));
    b.add_endpoint_slice(&slice(
        "default",
        "empty",
        "IPv4",
        json!([{"addresses": ["10.244.3.3"], "conditions": {"ready": false}}]),
    ));
    let answer = ask(
        &b.build(),
        "empty.default.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(data(&answer.answers), ["10.244.3.3"]);
}

#[test]
fn headless_endpoints_have_hostname_or_dashed_ip_records() {
    let zone = zone();
    let named = ask(&zone, "db-0.db.default.svc.cluster.local.", RecordType::A);
    assert_eq!(data(&named.answers), ["10.244.1.5"]);
    let named6 = ask(
        &zone,
        "db-0.db.default.svc.cluster.local.",
        RecordType::AAAA,
    );
    assert_eq!(data(&named6.answers), ["fd00:244::5"]);
    let generated = ask(
        &zone,
        "10-244-2-6.db.default.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(data(&generated.answers), ["10.244.2.6"]);
}

#[test]
fn headless_srv_has_one_record_per_ready_endpoint() {
    let zone = zone();
    let answer = ask(
        &zone,
        "_http._tcp.db.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(
        data(&answer.answers),
        [
            "0 50 8080 10-244-2-6.db.default.svc.cluster.local.",
            "0 50 8080 db-0.db.default.svc.cluster.local.",
        ]
    );
    assert_eq!(
        data(&answer.additionals),
        ["10.244.1.5", "10.244.2.6", "fd00:244::5"]
    );
}

#[test]
fn headless_endpoint_ptr_points_at_its_hostname_record() {
    let zone = zone();
    let answer = ask(&zone, "5.1.244.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(
        data(&answer.answers),
        ["db-0.db.default.svc.cluster.local."]
    );
    let v6 = Name::from(IpAddr::from_str("fd00:244::5").unwrap()).to_ascii();
    let answer = ask(&zone, &v6, RecordType::PTR);
    assert_eq!(
        data(&answer.answers),
        ["db-0.db.default.svc.cluster.local."]
    );
}

#[test]
fn external_name_is_a_cname_to_chase() {
    let zone = zone();
    let answer = ask(&zone, "ext.default.svc.cluster.local.", RecordType::A);
    assert_eq!(answer.rcode, ResponseCode::NoError);
    assert_eq!(data(&answer.answers), ["www.example.com."]);
    assert_eq!(
        answer.chase.as_ref().map(Name::to_ascii).as_deref(),
        Some("www.example.com.")
    );
    let cname = ask(&zone, "ext.default.svc.cluster.local.", RecordType::CNAME);
    assert_eq!(data(&cname.answers), ["www.example.com."]);
    assert_eq!(cname.chase, None);
}

#[test]
fn reverse_names_outside_owned_ranges_are_not_ours() {
    let zone = zone();
    let outside = Name::from_str("9.9.9.9.in-addr.arpa.").unwrap();
    assert_eq!(
        zone.lookup(&outside, RecordType::PTR, DNSClass::IN),
        Lookup::NotOurs
    );
    let owned = ask(&zone, "99.0.96.10.in-addr.arpa.", RecordType::PTR);
    assert_negative(&owned, ResponseCode::NXDomain);
    assert_eq!(owned.authority[0].name.to_ascii(), "10.in-addr.arpa.");
    let partial = Name::from_str("96.10.in-addr.arpa.").unwrap();
    assert_eq!(
        zone.lookup(&partial, RecordType::PTR, DNSClass::IN),
        Lookup::NotOurs
    );
}

#[test]
fn names_outside_the_zone_are_not_ours() {
    let zone = zone();
    for name in ["example.com.", "local.", ".", "cluster.local.example.com."] {
        let name = Name::from_str(name).unwrap();
        assert_eq!(
            zone.lookup(&name, RecordType::A, DNSClass::IN),
            Lookup::NotOurs
        );
    }
}

#[test]
fn non_internet_class_is_refused() {
    let name = Name::from_str("kubernetes.default.svc.cluster.local.").unwrap();
    let Lookup::Answer(answer) = zone().lookup(&name, RecordType::A, DNSClass::CH) else {
        panic!("ours");
    };
    assert_eq!(answer.rcode, ResponseCode::Refused);
}

#[test]
fn apex_has_soa_and_ns() {
    let zone = zone();
    assert_eq!(
        ask(&zone, "cluster.local.", RecordType::SOA).answers.len(),
        1
    );
    assert_eq!(
        data(&ask(&zone, "cluster.local.", RecordType::NS).answers),
        ["ns.dns.cluster.local."]
    );
    let any = ask(
        &zone,
        "kubernetes.default.svc.cluster.local.",
        RecordType::ANY,
    );
    assert_eq!(data(&any.answers), ["10.96.0.1", "fd00:10::1"]);
}

#[test]
fn pods_verified_answers_only_known_pod_ips() {
    let zone = zone();
    let known = ask(
        &zone,
        "10-244-1-5.default.pod.cluster.local.",
        RecordType::A,
    );
    assert_eq!(data(&known.answers), ["10.244.1.5"]);
    let v6 = ask(
        &zone,
        "fd00-244--5.default.pod.cluster.local.",
        RecordType::AAAA,
    );
    assert_eq!(data(&v6.answers), ["fd00:244::5"]);
    let wrong_ns = ask(&zone, "10-244-1-5.other.pod.cluster.local.", RecordType::A);
    assert_negative(&wrong_ns, ResponseCode::NXDomain);
    let unknown = ask(
        &zone,
        "10-244-9-9.default.pod.cluster.local.",
        RecordType::A,
    );
    assert_negative(&unknown, ResponseCode::NXDomain);
    let host_network = ask(
        &zone,
        "192-168-0-10.default.pod.cluster.local.",
        RecordType::A,
    );
    assert_negative(&host_network, ResponseCode::NXDomain);
    let other_type = ask(
        &zone,
        "10-244-1-5.default.pod.cluster.local.",
        RecordType::AAAA,
    );
    assert_negative(&other_type, ResponseCode::NoError);
    assert_negative(
        &ask(&zone, "default.pod.cluster.local.", RecordType::A),
        ResponseCode::NoError,
    );
    assert_negative(
        &ask(&zone, "other.pod.cluster.local.", RecordType::A),
        ResponseCode::NXDomain,
    );
}

#[test]
fn pods_insecure_answers_any_well_formed_address() {
    let zone = cluster(&ZoneConfig {
        pods: PodsMode::Insecure,
        ..ZoneConfig::default()
    });
    let answer = ask(&zone, "1-2-3-4.anything.pod.cluster.local.", RecordType::A);
    assert_eq!(data(&answer.answers), ["1.2.3.4"]);
    assert_eq!(
        answer.answers[0].name.to_ascii(),
        "1-2-3-4.anything.pod.cluster.local."
    );
    let bad = ask(
        &zone,
        "1-2-3-999.anything.pod.cluster.local.",
        RecordType::A,
    );
    assert_negative(&bad, ResponseCode::NXDomain);
    let deep = ask(
        &zone,
        "x.1-2-3-4.anything.pod.cluster.local.",
        RecordType::A,
    );
    assert_negative(&deep, ResponseCode::NXDomain);
}

#[test]
fn pods_disabled_is_nxdomain() {
    let zone = cluster(&ZoneConfig {
        pods: PodsMode::Disabled,
        ..ZoneConfig::default()
    });
    let answer = ask(
        &zone,
        "10-244-1-5.default.pod.cluster.local.",
        RecordType::A,
    );
    assert_negative(&answer, ResponseCode::NXDomain);
    assert_negative(
        &ask(&zone, "pod.cluster.local.", RecordType::A),
        ResponseCode::NXDomain,
    );
}

#[test]
fn custom_domain_and_ttl_apply() {
    let zone = cluster(&ZoneConfig {
        domain: "Example.Internal.".to_owned(),
        ttl: 5,
        ..ZoneConfig::default()
    });
    let answer = ask(
        &zone,
        "kubernetes.default.svc.example.internal.",
        RecordType::A,
    );
    assert_eq!(answer.answers[0].ttl, 5);
    let old = Name::from_str("kubernetes.default.svc.cluster.local.").unwrap();
    assert_eq!(
        zone.lookup(&old, RecordType::A, DNSClass::IN),
        Lookup::NotOurs
    );
}

#[test]
fn bad_domains_are_rejected_by_name() {
    for domain in ["", ".", "a..b", &"x".repeat(64)] {
        let config = ZoneConfig {
            domain: domain.to_owned(),
            ..ZoneConfig::default()
        };
        let error = ZoneBuilder::new(&config).unwrap_err();
        assert!(
            error.to_string().contains(&format!("{domain:?}")),
            "{error}"
        );
    }
}

#[test]
fn services_with_unusable_names_are_skipped() {
    let mut b = ZoneBuilder::new(&ZoneConfig::default()).unwrap();
    b.add_service(&service(
        &"n".repeat(64),
        "s",
        json!({"clusterIP": "10.96.0.9"}),
    ));
    b.add_service(&service("default", "pending", json!({"clusterIP": ""})));
    b.add_service(&service(
        "default",
        "ip-ext",
        json!({"type": "ExternalName", "externalName": "1.2.3.4"}),
    ));
    let zone = b.build();
    assert_negative(
        &ask(&zone, "pending.default.svc.cluster.local.", RecordType::A),
        ResponseCode::NXDomain,
    );
    assert_negative(
        &ask(&zone, "ip-ext.default.svc.cluster.local.", RecordType::A),
        ResponseCode::NXDomain,
    );
}

#[test]
fn empty_zone_still_answers_the_schema_version() {
    let zone = Zone::empty(&ZoneConfig::default()).unwrap();
    assert_eq!(
        ask(&zone, "dns-version.cluster.local.", RecordType::TXT)
            .answers
            .len(),
        1
    );
    assert_negative(
        &ask(&zone, "svc.cluster.local.", RecordType::A),
        ResponseCode::NoError,
    );
}

use super::*;

fn sample() -> AttachmentRules {
    AttachmentRules {
        id: "0123456789abc".into(),
        host_ports: vec![
            HostPort {
                protocol: "tcp".into(),
                host_port: 18083,
                host_ip: None,
                pod: "10.240.0.8/24".parse().unwrap(),
                container_port: 80,
            },
            HostPort {
                protocol: "udp".into(),
                host_port: 5353,
                host_ip: Some("192.0.2.1".parse().unwrap()),
                pod: "10.240.0.8/24".parse().unwrap(),
                container_port: 53,
            },
            HostPort {
                protocol: "tcp".into(),
                host_port: 18083,
                host_ip: None,
                pod: "fd00::8/64".parse().unwrap(),
                container_port: 80,
            },
        ],
        masq: vec![
            Masq {
                pod: "10.240.0.8/24".parse().unwrap(),
            },
            Masq {
                pod: "fd00::8/64".parse().unwrap(),
            },
        ],
    }
}

#[test]
fn add_script_matches_golden() {
    insta::assert_snapshot!(render_add(&sample()));
}

#[test]
fn del_script_adds_before_deleting_so_it_never_fails_on_missing_objects() {
    let s = render_del(&sample());
    insta::assert_snapshot!(s);
    let add = s
        .find("add element inet podnet_cni masq_v4 { 10.240.0.8 }")
        .unwrap();
    let del = s
        .find("delete element inet podnet_cni masq_v4 { 10.240.0.8 }")
        .unwrap();
    assert!(add < del);
}

#[test]
fn one_dispatch_element_per_protocol_and_port() {
    let s = render_add(&sample());
    assert_eq!(s.matches("tcp . 18083 : goto hp_0123456789abc").count(), 1);
    assert_eq!(s.matches("udp . 5353 : goto hp_0123456789abc").count(), 1);
}

#[test]
fn empty_rules_need_no_table() {
    assert!(
        AttachmentRules {
            id: "x".into(),
            ..Default::default()
        }
        .is_empty()
    );
    assert!(!sample().is_empty());
}

#[test]
fn owned_keys_reads_only_this_attachments_elements_of_every_hostport_map() {
    let listing = "table inet podnet_cni {\n\tmap hostport_dispatch {\n\t\ttype inet_proto . inet_service : verdict\n\t\telements = { tcp . 18082 : goto hp_aaa, udp . 53 : goto hp_bbb,\n\t\t\t     tcp . 80 : goto hp_bbb }\n\t}\n\n\tmap hostport_ip_v4 {\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n\t\telements = { 10.0.0.1 . tcp . 80 : goto hp_aaa }\n\t}\n\n\tmap hostport_ip_v6 {\n\t\ttype ipv6_addr . inet_proto . inet_service : verdict\n\t\telements = { fd00::1 . tcp . 80 : goto hp_bbb }\n\t}\n}\n";
    let key = |m: &str, k: &str| (m.to_owned(), k.to_owned());
    assert_eq!(
        owned_keys(listing, "bbb"),
        vec![
            key("hostport_dispatch", "udp . 53"),
            key("hostport_dispatch", "tcp . 80"),
            key("hostport_ip_v6", "fd00::1 . tcp . 80"),
        ]
    );
    assert_eq!(
        owned_keys(listing, "aaa"),
        vec![
            key("hostport_dispatch", "tcp . 18082"),
            key("hostport_ip_v4", "10.0.0.1 . tcp . 80"),
        ]
    );
    assert!(owned_keys(listing, "ccc").is_empty());
}

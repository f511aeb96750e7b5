use std::str::FromStr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::zone::{ZoneBuilder, ZoneConfig};

/// A zone with one ClusterIP service and a headless service `big` with `endpoints` endpoints.
pub(crate) fn test_zone(endpoints: usize) -> Zone {
    let mut b = ZoneBuilder::new(&ZoneConfig::default()).unwrap();
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": "web"},
        "spec": {"clusterIPs": ["10.96.0.10", "fd00:10::10"]},
    }))
    .unwrap();
    b.add_service(&svc);
    let big: Service = serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": "big"},
        "spec": {"clusterIP": "None"},
    }))
    .unwrap();
    b.add_service(&big);
    let eps: Vec<_> = (0..endpoints)
        .map(|i| json!({"addresses": [format!("10.244.{}.{}", i / 250, i % 250 + 1)]}))
        .collect();
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": "big-1",
                     "labels": {"kubernetes.io/service-name": "big"}},
        "addressType": "IPv4",
        "endpoints": eps,
    }))
    .unwrap();
    b.add_endpoint_slice(&slice);
    b.build()
}

pub(crate) fn query(id: u16, name: &str, rtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.queries
        .push(Query::query(Name::from_ascii(name).unwrap(), rtype));
    if let Some(payload) = edns {
        let mut e = Edns::new();
        e.set_max_payload(payload);
        m.edns = Some(e);
    }
    m.to_vec().unwrap()
}

fn parse(bytes: &[u8]) -> Message {
    Message::from_vec(bytes).unwrap()
}

fn reply(zone: &Zone, request: &[u8], transport: Transport) -> Message {
    parse(&answer(zone, request, transport).expect("a response"))
}

#[test]
fn zone_answer_is_authoritative_and_echoes_the_question() {
    let zone = test_zone(1);
    let r = reply(
        &zone,
        &query(7, "WEB.default.svc.cluster.local.", RecordType::A, None),
        Transport::Udp,
    );
    assert_eq!(r.metadata.id, 7);
    assert_eq!(r.metadata.message_type, MessageType::Response);
    assert!(r.metadata.authoritative && r.metadata.recursion_desired);
    assert_eq!(
        r.queries[0].name().to_ascii(),
        "WEB.default.svc.cluster.local."
    );
    assert_eq!(r.answers.len(), 1);
    assert!(r.edns.is_none(), "no OPT without one in the request");
}

#[test]
fn negative_answers_carry_the_soa() {
    let zone = test_zone(1);
    let r = reply(
        &zone,
        &query(1, "nope.default.svc.cluster.local.", RecordType::A, None),
        Transport::Udp,
    );
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
    let r = reply(
        &zone,
        &query(1, "web.default.svc.cluster.local.", RecordType::TXT, None),
        Transport::Udp,
    );
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty());
    assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
}

#[test]
fn short_garbage_and_responses_get_no_reply() {
    let zone = test_zone(1);
    assert_eq!(answer(&zone, &[], Transport::Udp), None);
    assert_eq!(answer(&zone, &[1, 2, 3], Transport::Udp), None);
    let mut response = query(1, "web.default.svc.cluster.local.", RecordType::A, None);
    response[2] |= 0x80;
    assert_eq!(answer(&zone, &response, Transport::Udp), None);
}

#[test]
fn malformed_body_is_formerr_with_the_request_id() {
    let zone = test_zone(1);
    let mut bytes = query(
        0xbeef,
        "web.default.svc.cluster.local.",
        RecordType::A,
        None,
    );
    bytes.truncate(bytes.len() - 3);
    let r = reply(&zone, &bytes, Transport::Udp);
    assert_eq!(r.metadata.id, 0xbeef);
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
    assert!(r.metadata.recursion_desired);
}

#[test]
fn label_longer_than_63_bytes_is_formerr() {
    let zone = test_zone(1);
    let mut bytes = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 64];
    bytes.extend(std::iter::repeat_n(b'a', 64));
    bytes.extend([0, 0, 1, 0, 1]);
    assert_eq!(
        reply(&zone, &bytes, Transport::Udp).metadata.response_code,
        ResponseCode::FormErr
    );
}

#[test]
fn question_count_other_than_one_is_formerr() {
    let zone = test_zone(1);
    let mut m = Message::new(3, MessageType::Query, OpCode::Query);
    let none = m.to_vec().unwrap();
    assert_eq!(
        reply(&zone, &none, Transport::Udp).metadata.response_code,
        ResponseCode::FormErr
    );
    let q = Query::query(
        Name::from_str("web.default.svc.cluster.local.").unwrap(),
        RecordType::A,
    );
    m.queries = vec![q.clone(), q];
    let two = m.to_vec().unwrap();
    assert_eq!(
        reply(&zone, &two, Transport::Udp).metadata.response_code,
        ResponseCode::FormErr
    );
}

#[test]
fn other_opcodes_are_notimp() {
    let zone = test_zone(1);
    for op in [OpCode::Status, OpCode::Notify, OpCode::Update] {
        let mut bytes = query(9, "web.default.svc.cluster.local.", RecordType::A, None);
        bytes[2] = (bytes[2] & 0x87) | (u8::from(op) << 3);
        let r = reply(&zone, &bytes, Transport::Udp);
        assert_eq!(r.metadata.response_code, ResponseCode::NotImp, "{op:?}");
        assert_eq!(r.metadata.op_code, op);
    }
}

#[test]
fn zone_transfers_are_refused() {
    let zone = test_zone(1);
    let r = reply(
        &zone,
        &query(1, "cluster.local.", RecordType::AXFR, None),
        Transport::Tcp,
    );
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
}

#[test]
fn out_of_zone_names_are_refused_without_a_forwarder() {
    let zone = test_zone(1);
    let r = reply(
        &zone,
        &query(1, "example.com.", RecordType::A, None),
        Transport::Udp,
    );
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    assert!(!r.metadata.authoritative);
}

#[test]
fn edns_is_echoed_and_unknown_versions_get_badvers() {
    let zone = test_zone(1);
    let r = reply(
        &zone,
        &query(
            1,
            "web.default.svc.cluster.local.",
            RecordType::A,
            Some(4096),
        ),
        Transport::Udp,
    );
    assert_eq!(
        r.edns.as_ref().map(Edns::max_payload),
        Some(OUR_UDP_PAYLOAD)
    );
    let mut m = parse(&query(
        1,
        "web.default.svc.cluster.local.",
        RecordType::A,
        Some(4096),
    ));
    m.edns.as_mut().unwrap().set_version(1);
    let r = reply(&zone, &m.to_vec().unwrap(), Transport::Udp);
    // BADVERS shares code 16 with BADSIG, which is what decoding yields.
    assert_eq!(
        u16::from(r.metadata.response_code),
        u16::from(ResponseCode::BADVERS)
    );
    assert!(r.edns.is_some());
}

#[test]
fn large_udp_answers_are_truncated_to_the_advertised_size() {
    // 100 A records are ~1.6 KB: over 512 and 1232, under 4096.
    let zone = test_zone(100);
    let name = "big.default.svc.cluster.local.";
    let plain = answer(&zone, &query(1, name, RecordType::A, None), Transport::Udp).unwrap();
    assert!(plain.len() <= 512);
    let plain = parse(&plain);
    assert!(plain.metadata.truncation && plain.answers.is_empty());
    let small = parse(
        &answer(
            &zone,
            &query(1, name, RecordType::A, Some(1232)),
            Transport::Udp,
        )
        .unwrap(),
    );
    assert!(small.metadata.truncation && small.edns.is_some());
    let large = answer(
        &zone,
        &query(1, name, RecordType::A, Some(4096)),
        Transport::Udp,
    )
    .unwrap();
    assert!(large.len() > 1232);
    let large = parse(&large);
    assert!(!large.metadata.truncation);
    assert_eq!(large.answers.len(), 100);
    let tcp = reply(&zone, &query(1, name, RecordType::A, None), Transport::Tcp);
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), 100);
}

#[test]
fn advertised_sizes_below_512_still_get_512() {
    let zone = test_zone(20);
    let bytes = answer(
        &zone,
        &query(
            1,
            "big.default.svc.cluster.local.",
            RecordType::A,
            Some(100),
        ),
        Transport::Udp,
    )
    .unwrap();
    let r = parse(&bytes);
    assert!(bytes.len() > 100 && bytes.len() <= 512);
    assert_eq!(r.answers.len(), 20);
}

#[test]
fn forwarded_answers_get_the_cname_prefix_and_aged_ttls() {
    let mut b = ZoneBuilder::new(&ZoneConfig::default()).unwrap();
    let ext: Service = serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": "ext"},
        "spec": {"type": "ExternalName", "externalName": "www.example.com"},
    }))
    .unwrap();
    b.add_service(&ext);
    let zone = b.build();
    let Handled::Forward(forward) = handle(
        &zone,
        &query(5, "ext.default.svc.cluster.local.", RecordType::A, None),
        Transport::Udp,
    ) else {
        panic!("should be forwarded");
    };
    assert_eq!(forward.question.name().to_ascii(), "www.example.com.");
    let mut upstream = Message::new(77, MessageType::Response, OpCode::Query);
    upstream.queries.push(forward.question.clone());
    let target = Name::from_str("www.example.com.").unwrap();
    upstream.answers.push(Record::from_rdata(
        target,
        300,
        RData::A(A::new(192, 0, 2, 53)),
    ));
    let r = parse(&forward.respond(&upstream, 100));
    assert_eq!(r.metadata.id, 5);
    assert_eq!(
        r.queries[0].name().to_ascii(),
        "ext.default.svc.cluster.local."
    );
    assert_eq!(r.answers.len(), 2);
    assert_eq!(r.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(r.answers[1].ttl, 200);
    assert!(r.metadata.recursion_available && !r.metadata.authoritative);
}

#[test]
fn upstream_query_asks_recursion_with_edns() {
    let q = Query::query(Name::from_str("example.com.").unwrap(), RecordType::AAAA);
    let m = parse(&upstream_query(42, &q).unwrap());
    assert_eq!(m.metadata.id, 42);
    assert!(m.metadata.recursion_desired);
    assert_eq!(m.queries, vec![q]);
    assert_eq!(m.queries[0].query_class(), DNSClass::IN);
    assert!(m.edns.is_some());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let zone = test_zone(3);
        for transport in [Transport::Udp, Transport::Tcp] {
            if let Some(out) = answer(&zone, &bytes, transport) {
                prop_assert!(out.len() >= 12);
                prop_assert_eq!(&out[..2], &bytes[..2]);
            }
        }
    }

    #[test]
    fn mutated_queries_never_panic(
        name in prop::sample::select(vec![
            "web.default.svc.cluster.local.", "big.default.svc.cluster.local.",
            "1.0.96.10.in-addr.arpa.", "_x._tcp.web.default.svc.cluster.local.", "example.com.",
            "10-1-2-3.default.pod.cluster.local.",
        ]),
        rtype in prop::sample::select(vec![RecordType::A, RecordType::AAAA, RecordType::SRV,
            RecordType::PTR, RecordType::ANY, RecordType::TXT]),
        edns in proptest::option::of(any::<u16>()),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in proptest::option::of(any::<usize>()),
        tail in proptest::collection::vec(any::<u8>(), 0..20),
    ) {
        let zone = test_zone(3);
        let mut bytes = query(1, name, rtype, edns);
        let len = bytes.len();
        for (at, value) in flips {
            bytes[at % len] = value;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut % (len + 1));
        }
        bytes.extend(tail);
        let _ = answer(&zone, &bytes, Transport::Udp);
        let _ = answer(&zone, &bytes, Transport::Tcp);
    }
}

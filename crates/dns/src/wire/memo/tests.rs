use std::sync::Arc;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, RecordType};
use proptest::prelude::*;

use super::*;
use crate::wire::handle;
use crate::wire::tests::{query, test_zone};

/// What a request came to, comparable between the memo and the plain path.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Reply(Vec<u8>),
    /// The upstream question, and the REFUSED the client would get without upstreams (which
    /// carries the request's ID, question, EDNS and size limit).
    Forward(String, Vec<u8>),
    Drop,
}

fn plain(zone: &Zone, request: &[u8]) -> Outcome {
    match handle(zone, request, Transport::Udp) {
        Handled::Reply(bytes) => Outcome::Reply(bytes),
        Handled::Forward(f) => {
            Outcome::Forward(f.question.to_string(), f.error(ResponseCode::Refused))
        }
        Handled::Drop => Outcome::Drop,
    }
}

fn memoized(memo: &mut AnswerMemo, request: &[u8]) -> Outcome {
    let mut out = vec![0xAA; 3];
    match memo.handle(request, &mut out) {
        Memoized::Reply => Outcome::Reply(out),
        Memoized::Forward(f) => {
            Outcome::Forward(f.question.to_string(), f.error(ResponseCode::Refused))
        }
        Memoized::Drop => Outcome::Drop,
    }
}

fn with_id(mut request: Vec<u8>, id: u16) -> Vec<u8> {
    request[..2].copy_from_slice(&id.to_be_bytes());
    request
}

/// Requests covering each kind of reply: positive, NODATA, NXDOMAIN with SOA, odd case, EDNS,
/// BADVERS, truncation, several questions, unknown and refused types, other classes,
/// forwarding, malformed input and responses.
fn requests() -> Vec<Vec<u8>> {
    let web = "web.default.svc.cluster.local.";
    let mut out = vec![
        query(1, web, RecordType::A, None),
        query(1, "WeB.Default.SVC.cluster.LOCAL.", RecordType::A, None),
        query(1, web, RecordType::AAAA, Some(1232)),
        query(1, web, RecordType::TXT, None),
        query(1, web, RecordType::Unknown(65_280), None),
        query(1, web, RecordType::AXFR, None),
        query(1, "missing.default.svc.cluster.local.", RecordType::A, None),
        query(
            1,
            "MISSING.default.svc.cluster.local.",
            RecordType::A,
            Some(4096),
        ),
        query(1, "big.default.svc.cluster.local.", RecordType::A, None),
        query(
            1,
            "big.default.svc.cluster.local.",
            RecordType::A,
            Some(1232),
        ),
        query(
            1,
            "big.default.svc.cluster.local.",
            RecordType::A,
            Some(4096),
        ),
        query(1, "10.0.96.10.in-addr.arpa.", RecordType::PTR, None),
        query(1, "example.com.", RecordType::A, None),
        vec![0u8; 5],
        vec![0xff; 40],
    ];
    let mut badvers = Message::from_vec(&query(1, web, RecordType::A, Some(1232))).unwrap();
    badvers.edns.as_mut().unwrap().set_version(1);
    out.push(badvers.to_vec().unwrap());
    let mut two = Message::from_vec(&query(1, web, RecordType::A, None)).unwrap();
    two.queries.push(two.queries[0].clone());
    out.push(two.to_vec().unwrap());
    let mut chaos = Message::from_vec(&query(1, web, RecordType::A, None)).unwrap();
    chaos.queries[0].set_query_class(DNSClass::CH);
    out.push(chaos.to_vec().unwrap());
    let mut response = query(1, web, RecordType::A, None);
    response[2] |= 0x80;
    out.push(response);
    let mut truncated = query(1, web, RecordType::A, None);
    truncated.truncate(20);
    out.push(truncated);
    out
}

#[test]
fn memoized_replies_equal_fresh_ones_byte_for_byte() {
    let zone = Arc::new(test_zone(100));
    let mut memo = AnswerMemo::new(Arc::clone(&zone), 1 << 20);
    // Twice with other IDs: the second round comes from memory where it can.
    for id in [0x1234, 0xbeef, 7] {
        for request in requests() {
            let request = with_id(request, id);
            assert_eq!(
                memoized(&mut memo, &request),
                plain(&zone, &request),
                "{request:x?}"
            );
        }
    }
    assert!(!memo.entries.is_empty(), "zone answers are remembered");
}

#[test]
fn a_remembered_reply_carries_the_new_request_id() {
    let zone = Arc::new(test_zone(1));
    let mut memo = AnswerMemo::new(zone, 1 << 20);
    let first = memoized(
        &mut memo,
        &query(1, "web.default.svc.cluster.local.", RecordType::A, None),
    );
    let second = memoized(
        &mut memo,
        &query(
            0xabcd,
            "web.default.svc.cluster.local.",
            RecordType::A,
            None,
        ),
    );
    let (Outcome::Reply(first), Outcome::Reply(second)) = (first, second) else {
        panic!("both should be replies");
    };
    assert_eq!(&second[..2], &[0xab, 0xcd]);
    assert_eq!(first[2..], second[2..]);
    assert_eq!(memo.entries.len(), 1);
}

#[test]
fn set_zone_forgets_replies_from_the_old_zone() {
    let mut memo = AnswerMemo::new(Arc::new(test_zone(1)), 1 << 20);
    let request = query(1, "big.default.svc.cluster.local.", RecordType::A, None);
    let one = memoized(&mut memo, &request);
    let bigger = Arc::new(test_zone(3));
    memo.set_zone(Arc::clone(&bigger));
    let three = memoized(&mut memo, &request);
    assert_ne!(one, three);
    assert_eq!(three, plain(&bigger, &request));
}

#[test]
fn memory_stays_within_the_budget_and_zero_remembers_nothing() {
    let zone = Arc::new(test_zone(1));
    let budget = 1000;
    let mut memo = AnswerMemo::new(Arc::clone(&zone), budget);
    for i in 0..200 {
        let request = query(
            1,
            &format!("s{i}.default.svc.cluster.local."),
            RecordType::A,
            None,
        );
        assert_eq!(memoized(&mut memo, &request), plain(&zone, &request));
        assert!(memo.bytes <= budget, "{} bytes", memo.bytes);
        assert_eq!(memo.entries.len(), memo.order.len());
    }
    assert!(!memo.entries.is_empty());
    let mut none = AnswerMemo::new(Arc::clone(&zone), 0);
    let request = query(1, "web.default.svc.cluster.local.", RecordType::A, None);
    assert_eq!(memoized(&mut none, &request), plain(&zone, &request));
    assert!(none.entries.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn mutated_queries_get_the_same_bytes_from_memory(
        pick in 0usize..20,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in proptest::option::of(any::<usize>()),
        ids in (any::<u16>(), any::<u16>()),
    ) {
        let zone = Arc::new(test_zone(3));
        let mut memo = AnswerMemo::new(Arc::clone(&zone), 1 << 20);
        let all = requests();
        let mut bytes = all[pick % all.len()].clone();
        let len = bytes.len();
        for (at, value) in flips {
            bytes[at % len] = value;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut % (len + 1));
        }
        for id in [ids.0, ids.1] {
            if bytes.len() >= 2 {
                bytes[..2].copy_from_slice(&id.to_be_bytes());
            }
            prop_assert_eq!(memoized(&mut memo, &bytes), plain(&zone, &bytes));
        }
    }
}

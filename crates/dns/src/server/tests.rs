use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use serde_json::json;

use super::*;
use crate::wire::tests::{query, test_zone};
use crate::zone::{ZoneBuilder, ZoneConfig};

const LOOPBACK: &str = "127.0.0.1:0";

struct Running {
    addr: SocketAddr,
    stop: StopHandle,
    zone: ZoneSetter,
    thread: Option<JoinHandle<Result<(), ServerError>>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            t.join().unwrap().unwrap();
        }
    }
}

fn start(zone: Zone, upstreams: Vec<SocketAddr>, tweak: impl FnOnce(&mut ServerConfig)) -> Running {
    let mut config = ServerConfig {
        listen: vec![LOOPBACK.parse().unwrap()],
        upstreams,
        upstream_timeout: Duration::from_millis(300),
        udp_workers: 2,
        ..ServerConfig::default()
    };
    tweak(&mut config);
    let server = Server::bind(config, zone).unwrap();
    let addr = server.local_addrs()[0];
    let stop = server.stop_handle();
    let zone = server.zone_setter();
    let thread = Some(thread::spawn(move || server.run()));
    Running {
        addr,
        stop,
        zone,
        thread,
    }
}

fn client() -> UdpSocket {
    let socket = UdpSocket::bind(LOOPBACK).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket
}

fn udp_exchange(addr: SocketAddr, request: &[u8]) -> Message {
    let socket = client();
    socket.send_to(request, addr).unwrap();
    let mut buf = vec![0u8; 65535];
    let len = socket.recv(&mut buf).unwrap();
    Message::from_vec(&buf[..len]).unwrap()
}

fn tcp_send(stream: &mut TcpStream, request: &[u8]) {
    let mut framed = u16::try_from(request.len()).unwrap().to_be_bytes().to_vec();
    framed.extend_from_slice(request);
    stream.write_all(&framed).unwrap();
}

fn tcp_receive(stream: &mut TcpStream) -> Message {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut body).unwrap();
    Message::from_vec(&body).unwrap()
}

fn tcp_connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

/// A fake upstream resolver on loopback (UDP and TCP on one port): `*.example.` answers A
/// 192.0.2.1 TTL 60, `nx.example.` NXDOMAIN, `slow.example.` never answers, `big.example.` is
/// truncated over UDP and full over TCP. Counts the UDP queries it sees.
struct Upstream {
    addr: SocketAddr,
    queries: Arc<AtomicUsize>,
}

fn upstream_answer(request: &Message, tcp: bool) -> Option<Message> {
    let q = request.queries.first()?.clone();
    let name = q.name().to_ascii().to_ascii_lowercase();
    let mut m = Message::new(request.metadata.id, MessageType::Response, OpCode::Query);
    m.queries.push(q.clone());
    let zone = Name::from_str("example.").ok()?;
    match name.as_str() {
        "slow.example." => return None,
        "nx.example." => {
            m.metadata.response_code = ResponseCode::NXDomain;
            let soa = SOA::new(zone.clone(), zone.clone(), 1, 1, 1, 1, 15);
            m.authorities
                .push(Record::from_rdata(zone, 300, RData::SOA(soa)));
        }
        "big.example." if !tcp => m.metadata.truncation = true,
        _ => {
            let count = if name == "big.example." { 200 } else { 1 };
            for i in 0..count {
                let data = RData::A(A::new(192, 0, 2, (i % 250) as u8 + 1));
                m.answers
                    .push(Record::from_rdata(q.name().clone(), 60, data));
            }
        }
    }
    Some(m)
}

fn fake_upstream() -> Upstream {
    let socket = UdpSocket::bind(LOOPBACK).unwrap();
    let addr = socket.local_addr().unwrap();
    let listener = TcpListener::bind(addr).unwrap();
    let queries = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&queries);
    thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        while let Ok((len, peer)) = socket.recv_from(&mut buf) {
            counter.fetch_add(1, Ordering::SeqCst);
            let Ok(request) = Message::from_vec(&buf[..len]) else {
                continue;
            };
            if let Some(m) = upstream_answer(&request, false) {
                socket.send_to(&m.to_vec().unwrap(), peer).unwrap();
            }
        }
    });
    thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let request = tcp_receive(&mut stream);
            if let Some(m) = upstream_answer(&request, true) {
                tcp_send(&mut stream, &m.to_vec().unwrap());
            }
        }
    });
    Upstream { addr, queries }
}

#[test]
fn udp_and_tcp_share_one_port_and_answer_zone_names() {
    let server = start(test_zone(2), vec![], |_| {});
    let r = udp_exchange(
        server.addr,
        &query(11, "web.default.svc.cluster.local.", RecordType::A, None),
    );
    assert_eq!(r.metadata.id, 11);
    assert_eq!(r.answers.len(), 1);
    let mut stream = tcp_connect(server.addr);
    tcp_send(
        &mut stream,
        &query(12, "web.default.svc.cluster.local.", RecordType::AAAA, None),
    );
    let r = tcp_receive(&mut stream);
    assert_eq!((r.metadata.id, r.answers.len()), (12, 1));
}

#[test]
fn tcp_connection_serves_pipelined_queries_in_order() {
    let server = start(test_zone(300), vec![], |_| {});
    let mut stream = tcp_connect(server.addr);
    // Large answer (300 A records, over 4 KB) fits in TCP without truncation.
    for id in 1..=3u16 {
        tcp_send(
            &mut stream,
            &query(id, "big.default.svc.cluster.local.", RecordType::A, None),
        );
    }
    for id in 1..=3u16 {
        let r = tcp_receive(&mut stream);
        assert_eq!(r.metadata.id, id);
        assert!(!r.metadata.truncation);
        assert_eq!(r.answers.len(), 300);
    }
}

#[test]
fn idle_tcp_connections_are_closed() {
    let server = start(test_zone(1), vec![], |c| {
        c.tcp_idle_timeout = Duration::from_millis(200)
    });
    let mut stream = tcp_connect(server.addr);
    let started = Instant::now();
    let mut buf = [0u8; 1];
    assert_eq!(stream.read(&mut buf).unwrap_or(0), 0, "server should close");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn set_zone_takes_effect_for_the_next_query() {
    let server = start(Zone::empty(&ZoneConfig::default()).unwrap(), vec![], |_| {});
    let ask = || {
        udp_exchange(
            server.addr,
            &query(1, "web.default.svc.cluster.local.", RecordType::A, None),
        )
    };
    assert_eq!(ask().metadata.response_code, ResponseCode::NXDomain);
    server.zone.set(test_zone(1));
    assert_eq!(ask().answers.len(), 1);
    server
        .zone
        .set(Zone::empty(&ZoneConfig::default()).unwrap());
    assert_eq!(ask().metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn out_of_zone_names_are_forwarded_and_cached() {
    let upstream = fake_upstream();
    let server = start(test_zone(1), vec![upstream.addr], |_| {});
    for id in [21u16, 22] {
        let r = udp_exchange(
            server.addr,
            &query(id, "www.Example.", RecordType::A, Some(1232)),
        );
        assert_eq!(r.metadata.id, id);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert_eq!(r.answers.len(), 1);
        assert!(r.answers[0].ttl <= 60);
        assert!(r.metadata.recursion_available);
    }
    assert_eq!(
        upstream.queries.load(Ordering::SeqCst),
        1,
        "second answer from the cache"
    );
    for _ in 0..2 {
        let r = udp_exchange(server.addr, &query(1, "nx.example.", RecordType::A, None));
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(r.authorities.len(), 1);
    }
    assert_eq!(
        upstream.queries.load(Ordering::SeqCst),
        2,
        "negative answer cached too"
    );
    let mut stream = tcp_connect(server.addr);
    tcp_send(&mut stream, &query(5, "tcp.example.", RecordType::A, None));
    assert_eq!(tcp_receive(&mut stream).answers.len(), 1);
}

#[test]
fn external_name_is_chased_upstream() {
    let upstream = fake_upstream();
    let mut b = ZoneBuilder::new(&ZoneConfig::default()).unwrap();
    let ext: Service = serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": "ext"},
        "spec": {"type": "ExternalName", "externalName": "www.example"},
    }))
    .unwrap();
    b.add_service(&ext);
    let server = start(b.build(), vec![upstream.addr], |_| {});
    let r = udp_exchange(
        server.addr,
        &query(3, "ext.default.svc.cluster.local.", RecordType::A, None),
    );
    let types: Vec<_> = r.answers.iter().map(Record::record_type).collect();
    assert_eq!(types, [RecordType::CNAME, RecordType::A]);
}

#[test]
fn unanswered_upstream_gives_servfail_in_bounded_time() {
    let upstream = fake_upstream();
    let server = start(test_zone(1), vec![upstream.addr], |_| {});
    let started = Instant::now();
    let r = udp_exchange(server.addr, &query(1, "slow.example.", RecordType::A, None));
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    assert!(started.elapsed() < Duration::from_secs(3));
    // Two attempts (one upstream is retried once).
    assert_eq!(upstream.queries.load(Ordering::SeqCst), 2);
}

#[test]
fn without_upstreams_out_of_zone_names_are_refused() {
    let server = start(test_zone(1), vec![], |_| {});
    let r = udp_exchange(server.addr, &query(1, "example.com.", RecordType::A, None));
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
}

#[test]
fn truncated_upstream_answers_reach_tcp_clients_whole() {
    let upstream = fake_upstream();
    let server = start(test_zone(1), vec![upstream.addr], |_| {});
    let udp = udp_exchange(server.addr, &query(1, "big.example.", RecordType::A, None));
    assert!(udp.metadata.truncation);
    let mut stream = tcp_connect(server.addr);
    tcp_send(&mut stream, &query(2, "big.example.", RecordType::A, None));
    let tcp = tcp_receive(&mut stream);
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), 200);
}

#[test]
fn forwarding_to_ourselves_is_skipped() {
    let probe = UdpSocket::bind(LOOPBACK).unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let config = ServerConfig {
        listen: vec![addr],
        upstreams: vec![addr],
        ..ServerConfig::default()
    };
    let server = Server::bind(config, test_zone(1)).unwrap();
    assert_eq!(server.shared.forwarder.upstream_count(), 0);
}

#[test]
fn ten_thousand_parallel_a_and_aaaa_pairs_from_one_socket_all_answered() {
    let server = start(test_zone(1), vec![], |_| {});
    let socket = client();
    let pairs: u16 = 10_000;
    // glibc sends A and AAAA back to back from one socket; keep a window of pairs in flight so the
    // test measures the server rather than the kernel's socket buffers.
    let window = 32u16;
    let a = query(0, "web.default.svc.cluster.local.", RecordType::A, None);
    let aaaa = query(0, "web.default.svc.cluster.local.", RecordType::AAAA, None);
    let mut seen = vec![false; usize::from(pairs) * 2];
    let (mut sent, mut received) = (0u16, 0usize);
    let mut buf = vec![0u8; 4096];
    let started = Instant::now();
    while received < seen.len() {
        while sent < pairs && usize::from(sent) * 2 < received + usize::from(window) * 2 {
            for (offset, template) in [(0u16, &a), (1, &aaaa)] {
                let id = sent * 2 + offset;
                let mut bytes = template.clone();
                bytes[..2].copy_from_slice(&id.to_be_bytes());
                socket.send_to(&bytes, server.addr).unwrap();
            }
            sent += 1;
        }
        let len = socket
            .recv(&mut buf)
            .expect("every query answered within 5 s");
        let r = Message::from_vec(&buf[..len]).unwrap();
        let id = usize::from(r.metadata.id);
        assert!(!seen[id], "duplicate answer {id}");
        seen[id] = true;
        let expected = if id % 2 == 0 {
            RecordType::A
        } else {
            RecordType::AAAA
        };
        assert_eq!(r.answers[0].record_type(), expected);
        received += 1;
    }
    let elapsed = started.elapsed();
    eprintln!(
        "{received} answers in {elapsed:?}: {:.0} queries/s (debug build unless --release)",
        received as f64 / elapsed.as_secs_f64()
    );
}

#[test]
fn resolv_conf_nameservers_are_parsed_in_order() {
    let text = "# comment\nsearch example\nnameserver 10.0.0.2\nnameserver fd00::53\n\
                nameserver fe80::1%eth0\nnameserver\noptions ndots:5\n nameserver 1.1.1.1\n";
    assert_eq!(
        parse_resolv_conf(text),
        vec![
            SocketAddr::from_str("10.0.0.2:53").unwrap(),
            SocketAddr::from_str("[fd00::53]:53").unwrap(),
            SocketAddr::from_str("1.1.1.1:53").unwrap(),
        ]
    );
}

#[test]
fn run_returns_after_stop() {
    let server = start(test_zone(1), vec![], |_| {});
    let started = Instant::now();
    drop(server);
    assert!(started.elapsed() < Duration::from_secs(2));
}

//! A rough UDP load loop against the server on loopback: one server worker thread (so the figure
//! is per core), client threads keeping a window of queries in flight. Prints queries per second.
//!
//! `cargo run --release -p podnet-dns --example udp_load -- [seconds] [client-threads]`

use std::net::UdpSocket;
use std::str::FromStr;
use std::thread;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use podnet_dns::{Server, ServerConfig, Zone, ZoneBuilder, ZoneConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map_or(Ok(3), |a| a.parse())?;
    let clients: usize = args.next().map_or(Ok(1), |a| a.parse())?;

    let server = Server::bind(
        ServerConfig {
            listen: vec!["127.0.0.1:0".parse()?],
            udp_workers: 1,
            ..ServerConfig::default()
        },
        zone()?,
    )?;
    let addr = server.local_addrs()[0];
    let stop = server.stop_handle();
    let running = thread::spawn(move || server.run());

    let names = [
        "svc-1.default.svc.cluster.local.",
        "svc-500.default.svc.cluster.local.",
    ];
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..clients)
        .map(|c| {
            thread::spawn(move || -> std::io::Result<u64> {
                let socket = UdpSocket::bind("127.0.0.1:0")?;
                socket.set_read_timeout(Some(Duration::from_millis(200)))?;
                let mut queries = Vec::new();
                for (i, name) in names.iter().enumerate() {
                    for rtype in [RecordType::A, RecordType::AAAA] {
                        let mut m = Message::new(0, MessageType::Query, OpCode::Query);
                        let name = Name::from_str(name).map_err(std::io::Error::other)?;
                        m.queries.push(Query::query(name, rtype));
                        m.metadata.id = u16::try_from(c * 4 + i * 2).unwrap_or(0);
                        queries.push(m.to_vec().map_err(std::io::Error::other)?);
                    }
                }
                let mut buf = [0u8; 1500];
                let mut answered = 0u64;
                let mut in_flight = 0usize;
                let mut next = 0usize;
                while Instant::now() < deadline {
                    while in_flight < 64 {
                        socket.send_to(&queries[next % queries.len()], addr)?;
                        next += 1;
                        in_flight += 1;
                    }
                    match socket.recv(&mut buf) {
                        Ok(_) => {
                            answered += 1;
                            in_flight -= 1;
                        }
                        // A lost datagram: forget it and refill the window.
                        Err(_) => in_flight = 0,
                    }
                }
                Ok(answered)
            })
        })
        .collect();
    let mut total = 0;
    for w in workers {
        total += w.join().map_err(|_| "client panicked")??;
    }
    stop.stop();
    running.join().map_err(|_| "server panicked")??;
    println!(
        "{total} answers in {seconds} s with 1 server thread, {clients} client thread(s): {} queries/s",
        total / seconds.max(1)
    );
    Ok(())
}

/// 1,000 dual-stack ClusterIP services in `default`.
fn zone() -> Result<Zone, Box<dyn std::error::Error>> {
    let mut builder = ZoneBuilder::new(&ZoneConfig::default())?;
    for i in 0..1000u32 {
        let service = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "default", "name": format!("svc-{i}")},
            "spec": {"clusterIPs": [format!("10.96.{}.{}", i / 250, i % 250 + 1),
                                    format!("fd00:10::{i:x}")]},
        }))?;
        builder.add_service(&service);
    }
    Ok(builder.build())
}

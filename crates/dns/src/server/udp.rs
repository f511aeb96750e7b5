//! The UDP side of the server: workers sharing a socket, each answering one datagram at a time
//! from its own [`AnswerMemo`] of the zone.
//!
//! (Batching with `recvmmsg`/`sendmmsg` was measured under `bench/dns-perf.sh` and gained
//! nothing clear: the kernel's per-datagram send path, not the system call, is most of the cost.)

use std::io;
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Shared;
use super::forward::Reply;
use crate::wire::{AnswerMemo, Memoized};

/// Largest datagram we read; anything longer is cut and then fails to parse (FORMERR).
const UDP_BUFFER: usize = 65535;

pub(super) fn serve(shared: &Shared, socket: &Arc<UdpSocket>) {
    let mut buf = vec![0u8; UDP_BUFFER];
    let mut response = Vec::new();
    let (zone, mut generation) = shared.zone_and_generation();
    let mut memo = AnswerMemo::new(zone, shared.config.answer_memo_bytes);
    while !shared.stop.load(Ordering::Relaxed) {
        let received = socket.recv_from(&mut buf);
        // After the receive, which may have waited across a change; on idle wake-ups too, so no
        // worker holds on to a replaced zone.
        if shared.zone_generation.load(Ordering::Acquire) != generation {
            let zone;
            (zone, generation) = shared.zone_and_generation();
            memo.set_zone(zone);
        }
        let (len, peer) = match received {
            Ok(received) => received,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(error) => {
                // E.g. ECONNREFUSED from an earlier reply's ICMP; the socket is still fine.
                tracing::debug!(%error, "dns udp receive");
                continue;
            }
        };
        match memo.handle(&buf[..len], &mut response) {
            Memoized::Reply => {
                if let Err(error) = socket.send_to(&response, peer) {
                    tracing::debug!(%error, %peer, "dns udp reply not sent");
                }
            }
            Memoized::Forward(forward) => {
                let reply = Reply::Udp {
                    socket: Arc::clone(socket),
                    peer,
                };
                shared.forwarder.forward(*forward, reply);
            }
            Memoized::Drop => {}
        }
    }
}

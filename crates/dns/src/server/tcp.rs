//! The TCP side of the server (RFC 7766): one thread per connection, several length-prefixed
//! queries per connection answered in order, idle connections closed.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::thread;

use hickory_proto::op::ResponseCode;

use super::Shared;
use super::forward::Reply;
use crate::wire::{self, Handled, Transport};

pub(super) fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let Ok(stream) = stream else {
            continue;
        };
        let active = shared.tcp_connections.fetch_add(1, Ordering::SeqCst);
        if active >= shared.config.max_tcp_connections {
            shared.tcp_connections.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        let conn_shared = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name("dns-tcp-conn".to_owned())
            .spawn(move || {
                if let Err(error) = tcp_connection(&conn_shared, stream) {
                    tracing::debug!(%error, "dns tcp connection ended");
                }
                conn_shared.tcp_connections.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            shared.tcp_connections.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Serves length-prefixed messages (RFC 7766 §8) in order until the client closes, goes idle,
/// or the server stops.
fn tcp_connection(shared: &Shared, mut stream: TcpStream) -> io::Result<()> {
    let idle = shared.config.tcp_idle_timeout;
    stream.set_read_timeout(Some(idle))?;
    stream.set_write_timeout(Some(idle))?;
    stream.set_nodelay(true)?;
    let mut body = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) {
        let mut len = [0u8; 2];
        match stream.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        body.resize(usize::from(u16::from_be_bytes(len)), 0);
        stream.read_exact(&mut body)?;
        let zone = shared.zone();
        let response = match wire::handle(&zone, &body, Transport::Tcp) {
            Handled::Reply(bytes) => bytes,
            Handled::Forward(forward) => forward_for_tcp(shared, *forward),
            Handled::Drop => continue,
        };
        let Ok(len) = u16::try_from(response.len()) else {
            continue;
        };
        let mut framed = Vec::with_capacity(response.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&response);
        stream.write_all(&framed)?;
    }
    Ok(())
}

/// Forwards over UDP first; if the upstream truncated the answer, asks again over TCP.
fn forward_for_tcp(shared: &Shared, forward: wire::Forward) -> Vec<u8> {
    let (sender, receiver) = mpsc::sync_channel(1);
    let servfail = forward.error(ResponseCode::ServFail);
    let retry = forward.clone();
    shared.forwarder.forward(forward, Reply::Channel(sender));
    let timeout = shared.forwarder.total_timeout();
    match receiver.recv_timeout(timeout) {
        Ok(bytes) if bytes.get(2).is_some_and(|flags| flags & 0x02 != 0) => {
            shared.forwarder.forward_tcp(&retry)
        }
        Ok(bytes) => bytes,
        Err(_) => servfail,
    }
}

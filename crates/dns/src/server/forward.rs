//! Forwarding of out-of-zone questions to upstream resolvers over UDP (TCP when an answer was
//! truncated and the client came over TCP), with the shared cache and per-attempt timeouts.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};

use crate::cache::Cache;
use crate::wire::{Forward, upstream_query};

/// In-flight upstream queries beyond this get SERVFAIL at once rather than growing memory.
const MAX_PENDING: usize = 4096;
/// How often receiver threads wake to expire pending queries and notice a stop.
const TICK: Duration = Duration::from_millis(50);

/// Where the answer to a forwarded question goes.
#[derive(Debug)]
pub(crate) enum Reply {
    /// Back out of the server's UDP socket to the client.
    Udp {
        socket: Arc<UdpSocket>,
        peer: SocketAddr,
    },
    /// To a TCP connection thread waiting on the channel.
    Channel(mpsc::SyncSender<Vec<u8>>),
}

impl Reply {
    fn send(&self, bytes: &[u8]) {
        match self {
            Self::Udp { socket, peer } => {
                if let Err(error) = socket.send_to(bytes, peer) {
                    tracing::debug!(%error, %peer, "dns reply not sent");
                }
            }
            // The connection may have gone: nothing to do then.
            Self::Channel(sender) => drop(sender.try_send(bytes.to_vec())),
        }
    }
}

#[derive(Debug)]
struct Pending {
    forward: Forward,
    reply: Reply,
    attempt: usize,
    deadline: Instant,
}

#[derive(Debug)]
struct Upstream {
    addr: SocketAddr,
    socket: UdpSocket,
}

/// Resolves questions upstream. Shared by every listener thread.
#[derive(Debug)]
pub(crate) struct Forwarder {
    upstreams: Vec<Upstream>,
    /// Keyed by (upstream index, query id).
    pending: Mutex<HashMap<(usize, u16), Pending>>,
    cache: Cache,
    timeout: Duration,
    attempts: usize,
    rng: AtomicU64,
}

impl Forwarder {
    /// One connected UDP socket per upstream (the kernel then drops datagrams from anyone else).
    pub(crate) fn new(
        upstreams: &[SocketAddr],
        timeout: Duration,
        cache: Cache,
    ) -> io::Result<Self> {
        let upstreams = upstreams
            .iter()
            .map(|addr| {
                let local: SocketAddr = match (addr.ip().is_loopback(), addr.is_ipv4()) {
                    (true, true) => (Ipv4Addr::LOCALHOST, 0).into(),
                    (true, false) => (Ipv6Addr::LOCALHOST, 0).into(),
                    (false, true) => (Ipv4Addr::UNSPECIFIED, 0).into(),
                    (false, false) => (Ipv6Addr::UNSPECIFIED, 0).into(),
                };
                let socket = UdpSocket::bind(local)?;
                socket.connect(addr)?;
                socket.set_read_timeout(Some(TICK))?;
                Ok(Upstream {
                    addr: *addr,
                    socket,
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Self {
            attempts: upstreams.len().max(2),
            upstreams,
            pending: Mutex::new(HashMap::new()),
            cache,
            timeout,
            rng: AtomicU64::new(RandomState::new().hash_one(Instant::now()) | 1),
        })
    }

    /// How many upstreams there are (one receiver thread each).
    pub(crate) fn upstream_count(&self) -> usize {
        self.upstreams.len()
    }

    /// How long a TCP connection thread should wait for [`Reply::Channel`].
    pub(crate) fn total_timeout(&self) -> Duration {
        self.timeout * u32::try_from(self.attempts).unwrap_or(u32::MAX) + TICK * 2
    }

    /// Answers `forward` from the cache, or sends it upstream; the answer goes to `reply`.
    pub(crate) fn forward(&self, forward: Forward, reply: Reply) {
        if let Some((message, age)) = self.cache.get(&forward.question, Instant::now()) {
            reply.send(&forward.respond(&message, age));
            return;
        }
        if self.upstreams.is_empty() {
            reply.send(&forward.error(ResponseCode::Refused));
            return;
        }
        self.send_attempt(Pending {
            forward,
            reply,
            attempt: 0,
            deadline: Instant::now(),
        });
    }

    /// Sends attempt `pending.attempt` (round-robin over upstreams), or SERVFAIL when spent.
    fn send_attempt(&self, mut pending: Pending) {
        while pending.attempt < self.attempts {
            let index = pending.attempt % self.upstreams.len();
            pending.attempt += 1;
            let id = self.next_id();
            let Some(bytes) = upstream_query(id, &pending.forward.question) else {
                break;
            };
            {
                let mut table = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
                if table.len() >= MAX_PENDING || table.contains_key(&(index, id)) {
                    break;
                }
                pending.deadline = Instant::now() + self.timeout;
                // Insert before sending so a fast answer always finds its entry.
                if let Err(error) = self.upstreams[index].socket.send(&bytes) {
                    tracing::debug!(%error, upstream = %self.upstreams[index].addr, "dns forward failed");
                    continue;
                }
                table.insert((index, id), pending);
            }
            return;
        }
        pending
            .reply
            .send(&pending.forward.error(ResponseCode::ServFail));
    }

    fn next_id(&self) -> u16 {
        // xorshift64: unpredictable enough for query ids given a random seed, and lock-free.
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        (x >> 24) as u16
    }

    /// Receives answers from upstream `index` until `stop`; also expires timed-out queries.
    pub(crate) fn receive_loop(&self, index: usize, stop: &AtomicBool) {
        let mut buf = vec![0u8; 65535];
        while !stop.load(Ordering::Relaxed) {
            match self.upstreams[index].socket.recv(&mut buf) {
                Ok(len) => self.on_answer(index, &buf[..len]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                // ICMP port unreachable surfaces here on a connected socket; the timeout handles it.
                Err(error) => tracing::debug!(%error, "dns upstream receive"),
            }
            self.expire(Instant::now());
        }
    }

    fn on_answer(&self, index: usize, bytes: &[u8]) {
        let Ok(message) = Message::from_vec(bytes) else {
            return;
        };
        if message.metadata.message_type != MessageType::Response {
            return;
        }
        let key = (index, message.metadata.id);
        let pending = {
            let mut table = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            // Only an answer to the question we asked counts (RFC 5452 §9.1).
            let matches = table
                .get(&key)
                .is_some_and(|p| message.queries.first() == Some(&p.forward.question));
            if !matches {
                return;
            }
            table.remove(&key)
        };
        let Some(pending) = pending else {
            return;
        };
        let rcode = message.metadata.response_code;
        let retry = matches!(rcode, ResponseCode::ServFail | ResponseCode::Refused);
        if retry && pending.attempt < self.upstreams.len() {
            self.send_attempt(pending);
            return;
        }
        self.cache
            .insert(&pending.forward.question, &message, Instant::now());
        pending.reply.send(&pending.forward.respond(&message, 0));
    }

    fn expire(&self, now: Instant) {
        let expired: Vec<Pending> = {
            let mut table = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            let keys: Vec<_> = table
                .iter()
                .filter(|(_, p)| p.deadline <= now)
                .map(|(k, _)| *k)
                .collect();
            keys.iter().filter_map(|k| table.remove(k)).collect()
        };
        for pending in expired {
            self.send_attempt(pending);
        }
    }

    /// Resolves `forward` over TCP, upstream by upstream, for a TCP client whose UDP-forwarded
    /// answer came back truncated.
    pub(crate) fn forward_tcp(&self, forward: &Forward) -> Vec<u8> {
        for upstream in &self.upstreams {
            match self.exchange_tcp(upstream.addr, &forward.question) {
                Ok(message) => {
                    self.cache
                        .insert(&forward.question, &message, Instant::now());
                    return forward.respond(&message, 0);
                }
                Err(error) => {
                    tracing::debug!(%error, upstream = %upstream.addr, "dns tcp forward failed");
                }
            }
        }
        forward.error(ResponseCode::ServFail)
    }

    fn exchange_tcp(&self, addr: SocketAddr, question: &Query) -> io::Result<Message> {
        let id = self.next_id();
        let query = upstream_query(id, question)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "query does not encode"))?;
        let mut stream = TcpStream::connect_timeout(&addr, self.timeout)?;
        stream.set_read_timeout(Some(self.timeout))?;
        stream.set_write_timeout(Some(self.timeout))?;
        let len = u16::try_from(query.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "query too long"))?;
        let mut framed = len.to_be_bytes().to_vec();
        framed.extend_from_slice(&query);
        stream.write_all(&framed)?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len)?;
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut body)?;
        let message = Message::from_vec(&body)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        if message.metadata.id != id || message.queries.first() != Some(question) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "answer to another question",
            ));
        }
        Ok(message)
    }
}

//! The DNS server: UDP and TCP (RFC 7766) listeners on plain threads, a zone swapped atomically
//! while serving, and forwarding of everything else to upstream resolvers.

mod forward;
mod tcp;
#[cfg(test)]
mod tests;
mod udp;

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::thread;
use std::time::Duration;

use crate::cache::Cache;
use crate::zone::Zone;
use forward::Forwarder;

/// How often UDP workers wake to notice a stop.
const POLL: Duration = Duration::from_millis(100);

/// How to run the server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Addresses to serve on, each over both UDP and TCP (port 0: one ephemeral port for both).
    pub listen: Vec<SocketAddr>,
    /// Resolvers for names outside the zone, tried in order; empty: REFUSED for those names.
    pub upstreams: Vec<SocketAddr>,
    /// How long one upstream attempt may take (CoreDNS `forward` uses 2 s).
    pub upstream_timeout: Duration,
    /// A TCP connection idle this long is closed (RFC 7766 §6.2.3 suggests seconds).
    pub tcp_idle_timeout: Duration,
    /// Concurrent TCP connections beyond this are closed at once.
    pub max_tcp_connections: usize,
    /// Threads reading each UDP socket; 0 means one per CPU.
    pub udp_workers: usize,
    /// Forwarded answers kept at most (0 disables the cache).
    pub cache_entries: usize,
    /// Longest a forwarded answer is cached, in seconds, whatever its TTL.
    pub cache_max_ttl: u32,
    /// Bytes each UDP worker may spend remembering the zone responses it sent, to answer the
    /// same question again without parsing or encoding (0 disables; emptied on a zone change).
    pub answer_memo_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 53))],
            upstreams: Vec::new(),
            upstream_timeout: Duration::from_secs(2),
            tcp_idle_timeout: Duration::from_secs(10),
            max_tcp_connections: 256,
            udp_workers: 0,
            cache_entries: 10_000,
            cache_max_ttl: 3600,
            answer_memo_bytes: 2 << 20,
        }
    }
}

/// The server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listen address could not be bound.
    #[error("cannot bind DNS {transport} socket on {addr}: {source}")]
    Bind {
        /// "UDP" or "TCP".
        transport: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// A socket option or an upstream socket failed.
    #[error("cannot set up DNS socket for {what}: {source}")]
    Socket {
        /// Which socket.
        what: String,
        /// The OS error.
        source: io::Error,
    },
    /// A thread could not be started.
    #[error("cannot start DNS {what} thread: {source}")]
    Thread {
        /// Which thread.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// No listen address was configured.
    #[error("no listen address configured")]
    NoListen,
}

/// State every thread shares.
#[derive(Debug)]
struct Shared {
    zone: RwLock<Arc<Zone>>,
    /// Bumped on every zone change, so UDP workers can keep their own `Arc` of the zone and
    /// look at the lock only when it moved.
    zone_generation: AtomicU64,
    stop: AtomicBool,
    forwarder: Forwarder,
    tcp_connections: AtomicUsize,
    config: ServerConfig,
}

impl Shared {
    fn zone(&self) -> Arc<Zone> {
        Arc::clone(&self.zone.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The zone and its generation, read together.
    fn zone_and_generation(&self) -> (Arc<Zone>, u64) {
        let zone = self.zone.read().unwrap_or_else(PoisonError::into_inner);
        (
            Arc::clone(&zone),
            self.zone_generation.load(Ordering::Acquire),
        )
    }
}

/// A bound, not yet running server.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    udp: Vec<Arc<UdpSocket>>,
    tcp: Vec<TcpListener>,
    local_addrs: Vec<SocketAddr>,
}

/// Replaces the zone a running server answers from; cheap to clone and send to a watch loop.
#[derive(Clone, Debug)]
pub struct ZoneSetter(Arc<Shared>);

/// Stops a running server: listeners exit within ~100 ms, TCP connections after their current
/// message.
#[derive(Clone, Debug)]
pub struct StopHandle {
    shared: Arc<Shared>,
    tcp_addrs: Vec<SocketAddr>,
}

// === impl Server ===

impl Server {
    /// Binds UDP and TCP on every listen address and the upstream sockets; serves `zone` once
    /// [`run`](Self::run).
    pub fn bind(config: ServerConfig, zone: Zone) -> Result<Self, ServerError> {
        if config.listen.is_empty() {
            return Err(ServerError::NoListen);
        }
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        let mut local_addrs = Vec::new();
        for addr in &config.listen {
            let (socket, listener, local) = bind_pair(*addr)?;
            udp.push(Arc::new(socket));
            tcp.push(listener);
            local_addrs.push(local);
        }
        // Forwarding to ourselves would loop each query until it timed out.
        let upstreams: Vec<SocketAddr> = config
            .upstreams
            .iter()
            .filter(|u| !local_addrs.contains(u))
            .copied()
            .collect();
        let cache = Cache::new(config.cache_entries, config.cache_max_ttl);
        let forwarder =
            Forwarder::new(&upstreams, config.upstream_timeout, cache).map_err(|source| {
                ServerError::Socket {
                    what: format!("upstreams {upstreams:?}"),
                    source,
                }
            })?;
        let shared = Arc::new(Shared {
            zone: RwLock::new(Arc::new(zone)),
            zone_generation: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            forwarder,
            tcp_connections: AtomicUsize::new(0),
            config,
        });
        Ok(Self {
            shared,
            udp,
            tcp,
            local_addrs,
        })
    }

    /// The addresses actually bound (UDP and TCP share each), in `listen` order.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Replaces the zone; queries already being answered finish with the old one.
    pub fn set_zone(&self, zone: Zone) {
        ZoneSetter(Arc::clone(&self.shared)).set(zone);
    }

    /// A handle to replace the zone from another thread while [`run`](Self::run) blocks.
    pub fn zone_setter(&self) -> ZoneSetter {
        ZoneSetter(Arc::clone(&self.shared))
    }

    /// A handle that makes [`run`](Self::run) return.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            shared: Arc::clone(&self.shared),
            tcp_addrs: self.local_addrs.clone(),
        }
    }

    /// Serves until stopped, on `udp_workers` threads per UDP socket, one acceptor per TCP
    /// listener (plus a thread per connection), and one receiver per upstream.
    pub fn run(self) -> Result<(), ServerError> {
        let workers = match self.shared.config.udp_workers {
            0 => thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let mut threads = Vec::new();
        let spawn = |what: &'static str, f: Box<dyn FnOnce() + Send>| {
            thread::Builder::new()
                .name(format!("dns-{what}"))
                .spawn(f)
                .map_err(|source| ServerError::Thread { what, source })
        };
        let mut result = Ok(());
        for socket in &self.udp {
            for _ in 0..workers {
                let (shared, socket) = (Arc::clone(&self.shared), Arc::clone(socket));
                match spawn("udp", Box::new(move || udp::serve(&shared, &socket))) {
                    Ok(t) => threads.push(t),
                    Err(e) => result = Err(e),
                }
            }
        }
        for listener in self.tcp {
            let shared = Arc::clone(&self.shared);
            match spawn(
                "tcp",
                Box::new(move || tcp::accept_loop(&shared, &listener)),
            ) {
                Ok(t) => threads.push(t),
                Err(e) => result = Err(e),
            }
        }
        for index in 0..self.shared.forwarder.upstream_count() {
            let shared = Arc::clone(&self.shared);
            let f = move || shared.forwarder.receive_loop(index, &shared.stop);
            match spawn("upstream", Box::new(f)) {
                Ok(t) => threads.push(t),
                Err(e) => result = Err(e),
            }
        }
        if result.is_err() {
            self.shared.stop.store(true, Ordering::SeqCst);
        }
        for t in threads {
            // A panicking worker is a bug; the others still stop cleanly.
            if t.join().is_err() {
                tracing::error!("a DNS server thread panicked");
            }
        }
        result
    }
}

/// Binds UDP and TCP on the same address; with port 0, on the same ephemeral port.
fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener, SocketAddr), ServerError> {
    let mut last_error = None;
    // With port 0 the UDP port may already be taken for TCP; a few tries find a shared one.
    for _ in 0..16 {
        let udp = UdpSocket::bind(addr).map_err(|source| ServerError::Bind {
            transport: "UDP",
            addr,
            source,
        })?;
        let local = udp.local_addr().map_err(|source| ServerError::Socket {
            what: addr.to_string(),
            source,
        })?;
        match TcpListener::bind(local) {
            Ok(tcp) => {
                udp.set_read_timeout(Some(POLL))
                    .map_err(|source| ServerError::Socket {
                        what: local.to_string(),
                        source,
                    })?;
                return Ok((udp, tcp, local));
            }
            Err(source) if addr.port() == 0 => last_error = Some(source),
            Err(source) => {
                return Err(ServerError::Bind {
                    transport: "TCP",
                    addr,
                    source,
                });
            }
        }
    }
    Err(ServerError::Bind {
        transport: "TCP",
        addr,
        source: last_error.unwrap_or_else(|| io::Error::other("no free port")),
    })
}

// === impl ZoneSetter ===

impl ZoneSetter {
    /// Replaces the zone atomically.
    pub fn set(&self, zone: Zone) {
        let mut current = self.0.zone.write().unwrap_or_else(PoisonError::into_inner);
        *current = Arc::new(zone);
        self.0.zone_generation.fetch_add(1, Ordering::Release);
    }
}

// === impl StopHandle ===

impl StopHandle {
    /// Asks every server thread to finish.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // `accept` blocks; a connection to ourselves wakes it to see the flag.
        for addr in &self.tcp_addrs {
            let mut wake = *addr;
            if wake.ip().is_unspecified() {
                wake.set_ip(match wake {
                    SocketAddr::V4(_) => IpAddr::from([127, 0, 0, 1]),
                    SocketAddr::V6(_) => IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
                });
            }
            drop(TcpStream::connect_timeout(
                &wake,
                Duration::from_millis(200),
            ));
        }
    }
}

/// The `nameserver` addresses of a resolv.conf, port 53, in order. Lines that are not
/// `nameserver <ip>` are skipped; link-local IPv6 with a `%zone` is skipped too.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            if words.next()? != "nameserver" {
                return None;
            }
            let ip: IpAddr = words.next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .collect()
}

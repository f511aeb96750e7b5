//! The `healthCheckNodePort` server: one HTTP listener per `externalTrafficPolicy: Local`
//! LoadBalancer Service, answering as kube-proxy's service health server does (the answer
//! itself is `podnet_model::service::health_check_response`). A cloud load balancer probes it
//! on every node and sends the Service's traffic only to nodes answering 200.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use podnet_model::service::{
    HealthCheck, ServiceName, health_check_headers, health_check_response,
};
use tracing::{info, warn};

use crate::serve::Metrics;

/// What each port answers for: the Service and its local endpoint count.
type Answers = Arc<Mutex<BTreeMap<u16, (ServiceName, usize)>>>;

/// The listeners of this node's health check node ports.
pub struct HealthCheckServer {
    listeners: BTreeMap<u16, Listener>,
    answers: Answers,
    metrics: Arc<Metrics>,
}

struct Listener {
    stop: Arc<AtomicBool>,
    port: u16,
}

impl HealthCheckServer {
    /// A server with no ports open; `metrics` tells whether the proxy is healthy.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            listeners: BTreeMap::new(),
            answers: Answers::default(),
            metrics,
        }
    }

    /// Opens a listener for every health check in `checks` that has none, closes those of
    /// Services that no longer have one, and updates every answer.
    pub fn update<'a>(&mut self, checks: impl IntoIterator<Item = (&'a ServiceName, HealthCheck)>) {
        let wanted: BTreeMap<u16, (ServiceName, usize)> = checks
            .into_iter()
            .map(|(name, check)| (check.node_port, (name.clone(), check.local_endpoints)))
            .collect();
        self.listeners.retain(|port, listener| {
            let keep = wanted.contains_key(port);
            if !keep {
                listener.close();
            }
            keep
        });
        *self.answers.lock().unwrap_or_else(PoisonError::into_inner) = wanted.clone();
        for (port, (service, _)) in wanted {
            if self.listeners.contains_key(&port) {
                continue;
            }
            match self.open(port) {
                Ok(listener) => {
                    info!(port, service = %format!("{}/{}", service.namespace, service.name), "health check node port open");
                    self.listeners.insert(port, listener);
                }
                // Retried on the next sync: the port may still be held by a closing listener.
                Err(e) => warn!(port, error = %e, "cannot open health check node port"),
            }
        }
    }

    fn open(&self, port: u16) -> std::io::Result<Listener> {
        // The IPv6 wildcard takes IPv4 too where the node allows it; not every node does.
        let socket = TcpListener::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)))
            .or_else(|_| TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))))?;
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::clone(&self.answers);
        let metrics = Arc::clone(&self.metrics);
        let stopped = Arc::clone(&stop);
        std::thread::Builder::new()
            .name(format!("healthcheck-{port}"))
            .spawn(move || {
                for stream in socket.incoming() {
                    if stopped.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        let _ = answer(stream, port, &answers, &metrics);
                    }
                }
            })?;
        Ok(Listener { stop, port })
    }
}

impl Drop for HealthCheckServer {
    fn drop(&mut self) {
        for listener in self.listeners.values() {
            listener.close();
        }
    }
}

impl Listener {
    /// Stops the accept loop: the flag, then a connection to wake the blocked `accept`.
    fn close(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect_timeout(
            &SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)),
            Duration::from_millis(200),
        );
    }
}

fn answer(
    stream: TcpStream,
    port: u16,
    answers: &Answers,
    metrics: &Metrics,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    // Read the request head: closing with unread bytes resets the connection.
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let entry = answers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&port)
        .cloned();
    let Some((service, local_endpoints)) = entry else {
        return Ok(());
    };
    let (status, body) = health_check_response(&service, local_endpoints, metrics.healthy());
    let reason = if status == 200 {
        "OK"
    } else {
        "Service Unavailable"
    };
    let mut head = format!("HTTP/1.1 {status} {reason}\r\n");
    for (name, value) in health_check_headers(local_endpoints) {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut stream = stream;
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn get(port: u16) -> std::io::Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(s, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    }

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[test]
    fn ports_open_answer_with_local_endpoints_and_close_when_the_check_goes() {
        let metrics = Metrics::new();
        metrics.record_sync(true, Duration::from_millis(1));
        let mut server = HealthCheckServer::new(Arc::clone(&metrics));
        let name = ServiceName {
            namespace: "default".into(),
            name: "web".into(),
        };
        let port = free_port();
        let check = |local_endpoints| HealthCheck {
            node_port: port,
            local_endpoints,
        };
        server.update([(&name, check(2))]);
        let ok = get(port).unwrap();
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.contains("X-Load-Balancing-Endpoint-Weight: 2\r\n"),
            "{ok}"
        );
        assert!(ok.contains("\"localEndpoints\": 2"), "{ok}");

        server.update([(&name, check(0))]);
        let unavailable = get(port).unwrap();
        assert!(unavailable.starts_with("HTTP/1.1 503 "), "{unavailable}");
        assert!(unavailable.contains("\"name\": \"web\""), "{unavailable}");

        server.update([]);
        // The listener closes: the port refuses (after the wake-up connection is served).
        let mut refused = false;
        for _ in 0..50 {
            if get(port).is_err() {
                refused = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(refused, "port {port} still open after its check went away");
    }
}

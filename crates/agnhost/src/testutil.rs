//! Test helpers: plain clients with timeouts, so each test's traffic is bounded in time.

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

/// The longest any test exchange may take.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(5);

/// The loopback address for a server bound to every address.
pub(crate) fn loopback(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
}

/// The kernel's hostname, which the servers must report.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim_end()
        .to_string()
}

/// A loopback TCP port with nothing listening: bound, then released.
pub(crate) fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Connects to `addr` with timeouts on every step.
pub(crate) fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    stream
}

/// Sends `raw` bytes and returns everything the server sends until it closes.
pub(crate) fn exchange(addr: SocketAddr, raw: &str) -> String {
    let mut stream = connect(addr);
    stream.write_all(raw.as_bytes()).unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// A response split into its status, head and body.
#[derive(Debug)]
pub(crate) struct Got {
    pub(crate) status: u16,
    pub(crate) head: String,
    pub(crate) body: String,
}

/// GETs `target` with `Connection: close`.
pub(crate) fn get(addr: SocketAddr, target: &str) -> Got {
    let raw = exchange(
        addr,
        &format!("GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"),
    );
    split_response(&raw)
}

/// Splits one raw response.
pub(crate) fn split_response(raw: &str) -> Got {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    Got {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// Sends one datagram to `addr` and returns the reply.
pub(crate) fn udp_ask(addr: SocketAddr, message: &str) -> (String, SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    socket.send_to(message.as_bytes(), addr).unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = socket.recv_from(&mut buf).unwrap();
    (
        String::from_utf8_lossy(&buf[..n]).into_owned(),
        socket.local_addr().unwrap(),
    )
}

/// Args for `run`, from string literals.
pub(crate) fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

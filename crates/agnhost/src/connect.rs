//! `connect`: tries one TCP or UDP connection and says how it failed, as upstream's
//! `connect.go`. Success exits 0 silently; every failure exits 1 with a message on stderr that
//! starts with the class tests check for: `UNKNOWN` (bad arguments), `TIMEOUT`, `DNS`, `REFUSED`,
//! `OTHER`. For TCP, `TIMEOUT` and `REFUSED` stand alone; for UDP they carry the error.
//!
//! TCP succeeds once the handshake completes. UDP sends `--udp-data` and a newline and succeeds
//! once any non-empty reply arrives, so it needs a server that answers (netexec's UDP does).
//! `--timeout` 0 (the default) means no timeout, as upstream.
//!
//! Difference from upstream: `--protocol=sctp` fails with `OTHER`, since podnet's kernels have
//! no SCTP sockets.

#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use clap::Parser;

use crate::compat::{go_error_text, split_host_port};
use crate::flags;
use crate::sock;

#[derive(Parser, Debug)]
#[command(name = "connect", args_override_self = true)]
struct Flags {
    /// Maximum time before returning an error.
    #[arg(long, default_value = "0", value_parser = flags::go_duration)]
    timeout: Duration,
    /// The protocol to use to perform the connection, can be tcp, udp or sctp.
    #[arg(long, default_value = "tcp")]
    protocol: String,
    /// The UDP payload send to the server.
    #[arg(long, default_value = "hostname")]
    udp_data: String,
    /// The SCTP payload send to the server (unused: no SCTP).
    #[arg(long, default_value = "hostname")]
    sctp_data: String,
    /// The destination, host:port.
    dest: String,
}

/// How a connection attempt failed; `Display` is exactly what upstream prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    Unknown(String),
    Dns(String),
    /// `None` for TCP, which upstream reports without detail.
    Timeout(Option<String>),
    /// `None` for TCP, which upstream reports without detail.
    Refused(Option<String>),
    Other(String),
    UnsupportedProtocol(String),
}

// === impl Failure ===

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Unknown(detail) => write!(f, "UNKNOWN: {detail}"),
            Failure::Dns(detail) => write!(f, "DNS: {detail}"),
            Failure::Timeout(None) => write!(f, "TIMEOUT"),
            Failure::Timeout(Some(detail)) => write!(f, "TIMEOUT: {detail}"),
            Failure::Refused(None) => write!(f, "REFUSED"),
            Failure::Refused(Some(detail)) => write!(f, "REFUSED: {detail}"),
            Failure::Other(detail) => write!(f, "OTHER: {detail}"),
            Failure::UnsupportedProtocol(protocol) => {
                write!(f, "Unsupported protocol\n{protocol}")
            }
        }
    }
}

impl std::error::Error for Failure {}

/// Runs `connect` with the container's args: 0 when connected, 1 on any failure, 2 on a bad
/// command line.
pub(crate) fn run(args: &[String]) -> i32 {
    let flags = match flags::parse::<Flags>(args) {
        Ok(flags) => flags,
        Err(code) => return code,
    };
    match connect(&flags.protocol, &flags.dest, flags.timeout, &flags.udp_data) {
        Ok(()) => 0,
        Err(failure) => {
            eprintln!("{failure}");
            1
        }
    }
}

/// Makes one attempt to reach `dest` over `protocol`.
pub(crate) fn connect(
    protocol: &str,
    dest: &str,
    timeout: Duration,
    udp_data: &str,
) -> Result<(), Failure> {
    match protocol {
        "" | "tcp" => connect_tcp(dest, timeout),
        "udp" => connect_udp(dest, timeout, udp_data),
        "sctp" => Err(Failure::Other(format!(
            "dial sctp {dest}: SCTP is not available on podnet's kernels"
        ))),
        other => Err(Failure::UnsupportedProtocol(other.to_string())),
    }
}

fn connect_tcp(dest: &str, timeout: Duration) -> Result<(), Failure> {
    let (host, port) = split_host_port(dest).map_err(Failure::Unknown)?;
    let addrs = sock::resolve(&host, &port).map_err(Failure::Dns)?;
    let deadline = (!timeout.is_zero()).then(|| Instant::now() + timeout);
    let mut first_error = None;
    for addr in addrs {
        match connect_tcp_addr(addr, deadline) {
            Ok(()) => return Ok(()),
            Err(err) => {
                first_error.get_or_insert((addr, err));
            }
        }
    }
    let Some((addr, err)) = first_error else {
        return Err(Failure::Dns(format!("lookup {host}: no such host")));
    };
    Err(classify_tcp(addr, &err))
}

/// One TCP handshake, bounded by `deadline` if there is one.
fn connect_tcp_addr(addr: SocketAddr, deadline: Option<Instant>) -> io::Result<()> {
    let stream = match deadline {
        None => TcpStream::connect(addr)?,
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            TcpStream::connect_timeout(&addr, left)?
        }
    };
    drop(stream);
    Ok(())
}

/// Upstream's classes for a failed TCP connect. Both our deadline and the kernel's ETIMEDOUT are
/// timeouts, as Go's `Timeout()` says of both.
fn classify_tcp(addr: SocketAddr, err: &io::Error) -> Failure {
    match err.kind() {
        io::ErrorKind::TimedOut => Failure::Timeout(None),
        io::ErrorKind::ConnectionRefused => Failure::Refused(None),
        _ => Failure::Other(format!("dial tcp {addr}: connect: {}", go_error_text(err))),
    }
}

fn connect_udp(dest: &str, timeout: Duration, data: &str) -> Result<(), Failure> {
    // Upstream only resolves here, so a malformed destination is a DNS failure too.
    let (host, port) = split_host_port(dest).map_err(Failure::Dns)?;
    let addr = sock::resolve_one(&host, &port).map_err(Failure::Dns)?;
    let (socket, local) = sock::dial_udp(addr)
        .map_err(|err| Failure::Other(format!("dial udp {addr}: {}", go_error_text(&err))))?;
    if !timeout.is_zero() {
        socket
            .set_read_timeout(Some(timeout))
            .and_then(|()| socket.set_write_timeout(Some(timeout)))
            .map_err(|err| Failure::Other(go_error_text(&err)))?;
    }
    let classify = |op: &str, err: io::Error| {
        let detail = format!("{op} udp {local}->{addr}: {}", go_error_text(&err));
        match err.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Failure::Timeout(Some(detail)),
            io::ErrorKind::ConnectionRefused => Failure::Refused(Some(detail)),
            _ => Failure::Unknown(detail),
        }
    };
    socket
        .send(format!("{data}\n").as_bytes())
        .map_err(|err| classify("write", err))?;
    let mut buffer = [0u8; 1024];
    let received = socket
        .recv(&mut buffer)
        .map_err(|err| classify("read", err))?;
    if received == 0 {
        return Err(Failure::Other(
            "No data received from the server. Cannot guarantee the server received the request."
                .to_string(),
        ));
    }
    Ok(())
}

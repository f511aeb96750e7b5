//! Sockets as agnhost's Go servers open them: bound to every address, IPv6 and IPv4 alike, with
//! peers shown as Go shows them; and the pod's hostname.

use std::io;
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, ToSocketAddrs as _, UdpSocket,
};
use std::thread;
use std::time::Duration;

use thiserror::Error;

use crate::compat::go_error_text;

/// Where the kernel keeps the hostname of the reading process's UTS namespace, i.e. the pod's.
const HOSTNAME_PATH: &str = "/proc/sys/kernel/hostname";

/// How long a server loop pauses after a failed accept or receive, so a persistent failure
/// (out of file descriptors) does not spin; upstream exits instead, we keep serving.
pub(crate) const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Why a server could not start. Upstream exits 1 for each (`log.Fatal`).
#[derive(Debug, Error)]
pub(crate) enum StartError {
    /// A listening socket could not be opened; the address is shown as Go shows it (`:8080`).
    #[error("listen {proto} {addr}: {}", go_error_text(.source))]
    Listen {
        proto: &'static str,
        addr: String,
        source: io::Error,
    },
    #[error("reading the hostname from {HOSTNAME_PATH}: {0}")]
    Hostname(io::Error),
    #[error("starting the {name} thread: {source}")]
    Thread { name: String, source: io::Error },
}

/// Opens a TCP listener on `port` of `ip`, or of every address when `ip` is `None`; returns it
/// with the address it is bound to (the port chosen, when `port` is 0).
pub(crate) fn listen_tcp(
    ip: Option<IpAddr>,
    port: u16,
) -> Result<(TcpListener, SocketAddr), StartError> {
    bind(ip, port, TcpListener::bind, TcpListener::local_addr)
        .map_err(|source| listen_error("tcp", ip, port, source))
}

/// Binds a UDP socket like [`listen_tcp`].
pub(crate) fn bind_udp(
    ip: Option<IpAddr>,
    port: u16,
) -> Result<(UdpSocket, SocketAddr), StartError> {
    bind(ip, port, UdpSocket::bind, UdpSocket::local_addr)
        .map_err(|source| listen_error("udp", ip, port, source))
}

/// Binds like Go's `":port"`: `[::]` takes IPv4 too (as v4-mapped addresses) unless the kernel
/// has no IPv6, in which case `0.0.0.0` does.
fn bind<S>(
    ip: Option<IpAddr>,
    port: u16,
    bind: impl Fn(SocketAddr) -> io::Result<S>,
    local_addr: impl Fn(&S) -> io::Result<SocketAddr>,
) -> io::Result<(S, SocketAddr)> {
    let socket = match ip {
        Some(ip) => bind(SocketAddr::new(ip, port)),
        None => match bind(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port)) {
            Err(err) if err.kind() != io::ErrorKind::AddrInUse => {
                bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port))
            }
            bound => bound,
        },
    }?;
    let addr = local_addr(&socket)?;
    Ok((socket, addr))
}

fn listen_error(
    proto: &'static str,
    ip: Option<IpAddr>,
    port: u16,
    source: io::Error,
) -> StartError {
    let addr = match ip {
        Some(ip) => SocketAddr::new(ip, port).to_string(),
        None => format!(":{port}"),
    };
    StartError::Listen {
        proto,
        addr,
        source,
    }
}

/// A peer address as Go shows it: an IPv4 client of a dual-stack socket is `1.2.3.4:5`, not
/// `[::ffff:1.2.3.4]:5`. `/clientip` answers depend on it.
pub(crate) fn unmapped(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

/// Resolves `host` and `port` (decimal) as Go's `net.Resolve*Addr` does for agnhost: IPv4
/// addresses first, and an empty host meaning this machine. The error names what failed.
pub(crate) fn resolve(host: &str, port: &str) -> Result<Vec<SocketAddr>, String> {
    let port: u16 = port
        .parse()
        .map_err(|_| format!("address {port:?}: invalid port"))?;
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    let mut addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|err| format!("lookup {host}: {}", go_error_text(&err)))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("lookup {host}: no such host"));
    }
    // Stable: each family keeps the resolver's order.
    addrs.sort_by_key(|addr| addr.is_ipv6());
    Ok(addrs)
}

/// The address [`resolve`] puts first, which Go's resolver also picks.
pub(crate) fn resolve_one(host: &str, port: &str) -> Result<SocketAddr, String> {
    resolve(host, port)?
        .first()
        .copied()
        .ok_or_else(|| format!("lookup {host}: no such host"))
}

/// A UDP socket connected to `addr` and its local address, as Go's `net.DialUDP` makes it: bound
/// to a free port of the same family. Nothing is sent yet.
pub(crate) fn dial_udp(addr: SocketAddr) -> io::Result<(UdpSocket, SocketAddr)> {
    let unspecified = match addr {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let socket = UdpSocket::bind(SocketAddr::new(unspecified, 0))?;
    socket.connect(addr)?;
    let local = socket.local_addr()?;
    Ok((socket, local))
}

/// The pod's hostname, as Go's `os.Hostname` reads it.
pub(crate) fn hostname() -> Result<String, StartError> {
    let name = std::fs::read_to_string(HOSTNAME_PATH).map_err(StartError::Hostname)?;
    Ok(name.trim_end_matches('\n').to_string())
}

/// Starts a named background thread.
pub(crate) fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> Result<(), StartError> {
    thread::Builder::new()
        .name(name.to_string())
        .spawn(body)
        .map(drop)
        .map_err(|source| StartError::Thread {
            name: name.to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmapped_shows_v4_clients_of_dual_stack_sockets_as_v4() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:4242".parse().unwrap();
        assert_eq!(unmapped(mapped).to_string(), "127.0.0.1:4242");
        let v6: SocketAddr = "[::1]:4242".parse().unwrap();
        assert_eq!(unmapped(v6).to_string(), "[::1]:4242");
    }

    #[test]
    fn listen_error_names_the_address_as_go_does() {
        let (_taken, addr) = listen_tcp(Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), 0).unwrap();
        let port = addr.port();
        let err = listen_tcp(Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), port).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("listen tcp 127.0.0.1:{port}: address already in use")
        );
    }

    #[test]
    fn resolve_puts_ipv4_first_and_names_bad_input() {
        let addrs = resolve("localhost", "80").unwrap();
        assert!(addrs[0].is_ipv4(), "{addrs:?}");
        assert_eq!(resolve("", "80").unwrap()[0].to_string(), "0.0.0.0:80");
        assert_eq!(
            resolve("127.0.0.1", "http"),
            Err("address \"http\": invalid port".to_string())
        );
    }

    #[test]
    fn hostname_is_the_kernel_hostname_without_newline() {
        let name = hostname().unwrap();
        assert!(!name.is_empty() && !name.ends_with('\n'), "{name:?}");
    }
}

//! `serve-hostname`: serves the pod's hostname over raw TCP, raw UDP or HTTP on one port, as
//! upstream's `serve_hostname.go`. The hostname is read once at start and sent without a newline;
//! TCP writes it and closes, UDP answers every datagram with it, HTTP answers every path with it.
//!
//! Differences from upstream: on SIGTERM upstream logs and lingers 60 s "awaiting pod deletion"
//! before exiting 0; std has no signal handlers, so SIGTERM's default action ends us at once.

#[cfg(test)]
mod tests;

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::{Arc, mpsc};
use std::thread;

use clap::{ArgAction, Parser};

use crate::flags;
use crate::http::{self, Reply, Response};
use crate::sock::{self, RETRY_PAUSE, StartError};

#[derive(Parser, Debug)]
#[command(name = "serve-hostname", args_override_self = true)]
struct Flags {
    /// Serve raw over TCP.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = flags::go_bool, action = ArgAction::Set)]
    tcp: bool,
    /// Serve raw over UDP.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = flags::go_bool, action = ArgAction::Set)]
    udp: bool,
    /// Serve HTTP.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "true", value_parser = flags::go_bool, action = ArgAction::Set)]
    http: bool,
    /// Close connection per each HTTP request.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = flags::go_bool, action = ArgAction::Set)]
    close: bool,
    /// Port number.
    #[arg(long, default_value_t = 9376)]
    port: u16,
}

/// What to serve, and where.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    pub(crate) tcp: bool,
    pub(crate) udp: bool,
    pub(crate) http: bool,
    pub(crate) close: bool,
    /// 0 picks a free port for each protocol, for tests.
    pub(crate) port: u16,
}

/// The servers started, by the addresses they are bound to.
#[derive(Debug)]
pub(crate) struct Running {
    pub(crate) tcp: Option<SocketAddr>,
    pub(crate) udp: Option<SocketAddr>,
    pub(crate) http: Option<SocketAddr>,
}

/// Runs `serve-hostname` with the container's args; returns only if it cannot start.
pub(crate) fn run(args: &[String]) -> i32 {
    let flags = match flags::parse::<Flags>(args) {
        Ok(flags) => flags,
        Err(code) => return code,
    };
    let options = Options {
        tcp: flags.tcp,
        udp: flags.udp,
        http: flags.http,
        close: flags.close,
        port: flags.port,
    };
    match start(options) {
        Ok(running) => {
            let bound = [running.tcp, running.udp, running.http];
            let port = bound
                .iter()
                .flatten()
                .next()
                .map_or(options.port, SocketAddr::port);
            log!("Serving on port {port}.");
            crate::block_forever()
        }
        Err(err) => {
            log!("{err}");
            1
        }
    }
}

/// Why `serve-hostname` could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    // Upstream's wording, typo included, so logs match.
    #[error("Can't server TCP/UDP mode and HTTP mode at the same time")]
    HttpWithRaw,
    #[error(transparent)]
    Start(#[from] StartError),
}

/// Binds the servers `options` asks for and serves them from background threads.
pub(crate) fn start(options: Options) -> Result<Running, Error> {
    if options.http && (options.tcp || options.udp) {
        return Err(Error::HttpWithRaw);
    }
    let hostname = sock::hostname()?;
    let mut running = Running {
        tcp: None,
        udp: None,
        http: None,
    };
    if options.tcp {
        let (listener, addr) = sock::listen_tcp(None, options.port)?;
        running.tcp = Some(addr);
        let hostname = hostname.clone();
        sock::spawn("tcp-hostname", move || serve_tcp(&listener, &hostname))?;
    }
    if options.udp {
        let (socket, addr) = sock::bind_udp(None, options.port)?;
        running.udp = Some(addr);
        let hostname = hostname.clone();
        sock::spawn("udp-hostname", move || serve_udp(&socket, &hostname))?;
    }
    if options.http {
        let (listener, addr) = sock::listen_tcp(None, options.port)?;
        running.http = Some(addr);
        let close = options.close;
        let handler = Arc::new(move |request: &http::Request| {
            log!("HTTP request from {}", request.remote_addr);
            Reply::Respond(Response {
                // Upstream adds `Connection: close`, which makes Go's server close after answering.
                close,
                ..Response::text(hostname.as_str())
            })
        });
        // Nothing here asks to exit, so no one listens for it.
        let (exit, _) = mpsc::channel();
        http::serve(listener, handler, exit)?;
    }
    Ok(running)
}

/// Writes the hostname to each connection and closes it.
fn serve_tcp(listener: &TcpListener, hostname: &str) {
    for stream in listener.incoming() {
        match stream {
            Ok(mut stream) => {
                if let Ok(peer) = stream.peer_addr() {
                    log!("TCP request from {}", sock::unmapped(peer));
                }
                // A client that leaves early is its own problem, as upstream ignores it too.
                let _ = stream.write_all(hostname.as_bytes());
            }
            Err(err) => {
                log!("Error from Accept(): {err}");
                thread::sleep(RETRY_PAUSE);
            }
        }
    }
}

/// Answers every datagram with the hostname.
fn serve_udp(socket: &UdpSocket, hostname: &str) {
    // Upstream reads into 16 bytes: the request's content does not matter, only that it came.
    let mut buffer = [0u8; 16];
    loop {
        match socket.recv_from(&mut buffer) {
            Ok((_, peer)) => {
                log!("UDP request from {}", sock::unmapped(peer));
                if let Err(err) = socket.send_to(hostname.as_bytes(), peer) {
                    log!("Error from WriteTo(): {err}");
                }
            }
            Err(err) => {
                log!("Error from ReadFrom(): {err}");
                thread::sleep(RETRY_PAUSE);
            }
        }
    }
}

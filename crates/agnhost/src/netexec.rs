//! `netexec`: the HTTP and UDP servers that most network e2e tests talk to, as upstream's
//! `netexec.go`.
//!
//! HTTP endpoints (any method, every other path answers like `/`): `/` (the time), `/clientip`,
//! `/dial` (see [`dial`]), `/echo`, `/exit`, `/header`, `/healthz`, `/readyz`, `/hostname` and
//! `/hostName`, `/redirect`, `/shell`, `/shutdown`. UDP commands: `hostname`, `echo <msg>`,
//! `clientip`. `--http-override` serves one fixed request for every request, as upstream.
//!
//! Differences from upstream, each because std alone cannot do it here:
//! - `--sctp-port` is accepted but starts nothing: podnet's kernels have no SCTP sockets.
//!   (Upstream would fail to start on such a kernel.)
//! - `--tls-cert-file` is refused: there is no TLS library, and serving plain HTTP where HTTPS was
//!   asked for would mislead.
//! - `/upload` answers 501: no multipart parser.
//! - `--delay-shutdown=N` (N > 0): SIGTERM makes `/readyz` answer 503 "shutting down" and the
//!   process exit N seconds later, serving meanwhile, as upstream; without it SIGTERM's default
//!   action ends the process at once, also as upstream.
//! - `/exit` with a timeout answers, then exits without waiting for other open connections.
//! - A failed UDP reply is logged and the server goes on; upstream exits.

mod dial;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::io::Read as _;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;

use crate::compat::{go_error_text, go_json, go_now};
use crate::flags::{self, PortOrOff};
use crate::http::{self, Reply, Request, Response};
use crate::sock::{self, RETRY_PAUSE, StartError};

/// The shell `/shell` runs commands with, as upstream.
const SHELL: &str = "/bin/sh";

/// Set once SIGTERM arrived under `--delay-shutdown`: the process is draining.
static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);

#[derive(Parser, Debug)]
#[command(name = "netexec", args_override_self = true)]
struct Flags {
    /// HTTP Listen Port.
    #[arg(long, default_value_t = 8080)]
    http_port: u16,
    /// UDP Listen Port; -1 turns the UDP server off.
    #[arg(long, default_value = "8081", value_parser = flags::port_or_off, allow_negative_numbers = true)]
    udp_port: PortOrOff,
    /// SCTP Listen Port; accepted, but podnet has no SCTP.
    #[arg(long, default_value = "-1", value_parser = flags::port_or_off, allow_negative_numbers = true)]
    sctp_port: PortOrOff,
    /// File containing an x509 certificate for HTTPS (not supported).
    #[arg(long, default_value = "")]
    tls_cert_file: String,
    /// File containing an x509 private key matching --tls-cert-file (not supported).
    #[arg(long, default_value = "")]
    tls_private_key_file: String,
    /// Override the HTTP handler to always respond as if it were a GET with this path & params.
    #[arg(long, default_value = "")]
    http_override: String,
    /// A comma separated list of ip addresses the udp servers listen from.
    #[arg(long, default_value = "")]
    udp_listen_addresses: String,
    /// Number of seconds to delay shutdown when receiving SIGTERM.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    delay_shutdown: i64,
}

/// What to serve, and where.
#[derive(Debug, Clone, Default)]
pub(crate) struct Options {
    /// 0 picks a free port, for tests.
    pub(crate) http_port: u16,
    /// `None` turns the UDP server off; 0 picks a free port.
    pub(crate) udp_port: Option<u16>,
    /// The addresses UDP servers bind; empty means every address, with one server.
    pub(crate) udp_listen_addresses: Vec<IpAddr>,
    /// Serve this target for every request.
    pub(crate) http_override: Option<String>,
}

/// A started netexec.
#[derive(Debug)]
pub(crate) struct Running {
    pub(crate) http: SocketAddr,
    pub(crate) udp: Vec<SocketAddr>,
    /// Receives the exit code `/exit` or `/shutdown` asks for.
    exit: mpsc::Receiver<i32>,
}

// === impl Running ===

impl Running {
    /// Blocks until a request asks the process to exit, and returns the code.
    pub(crate) fn wait(self) -> i32 {
        match self.exit.recv() {
            Ok(code) => code,
            // Every sender is gone, so nothing can ask any more: serve on until a signal.
            Err(_) => crate::block_forever(),
        }
    }
}

/// Runs `netexec` with the container's args; returns the code `/exit` asks for, or 1 if it
/// cannot start.
pub(crate) fn run(args: &[String]) -> i32 {
    let flags = match flags::parse::<Flags>(args) {
        Ok(flags) => flags,
        Err(code) => return code,
    };
    if !flags.tls_cert_file.is_empty() {
        eprintln!(
            "netexec: --tls-cert-file={:?}: HTTPS is not supported by podnet's agnhost",
            flags.tls_cert_file
        );
        return 1;
    }
    let udp_listen_addresses = match parse_addresses(&flags.udp_listen_addresses) {
        Ok(addresses) => addresses,
        Err(err) => {
            eprintln!("netexec: --udp-listen-addresses: {err}");
            return flags::USAGE_EXIT;
        }
    };
    if let Some(port) = flags.sctp_port.0 {
        log!(
            "Not starting an SCTP server on port {port}: SCTP is not available on podnet's kernels"
        );
    }
    if flags.delay_shutdown > 0 {
        // Before any server thread starts: threads inherit the blocked mask, so only the
        // waiting thread ever sees SIGTERM.
        if let Err(err) = delay_shutdown_on_sigterm(flags.delay_shutdown.unsigned_abs()) {
            log!("--delay-shutdown: cannot catch SIGTERM: {err}");
            return 1;
        }
    }
    let options = Options {
        http_port: flags.http_port,
        udp_port: flags.udp_port.0,
        udp_listen_addresses,
        http_override: Some(flags.http_override).filter(|target| !target.is_empty()),
    };
    match start(options) {
        Ok(running) => {
            for udp in &running.udp {
                log!("Started UDP server on {udp}");
            }
            log!("Started HTTP server on port {}", running.http.port());
            running.wait()
        }
        Err(err) => {
            log!("{err}");
            1
        }
    }
}

/// Blocks SIGTERM in this thread (and so in every thread started after) and waits for it in
/// one thread, which marks the server as shutting down and exits `seconds` later.
fn delay_shutdown_on_sigterm(seconds: u64) -> std::io::Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.thread_block().map_err(std::io::Error::from)?;
    thread::Builder::new()
        .name("sigterm".into())
        .spawn(move || {
            if set.wait().is_ok() {
                SHUTTING_DOWN.store(true, Ordering::Relaxed);
                log!("Sleeping {seconds} seconds before terminating...");
                thread::sleep(Duration::from_secs(seconds));
                std::process::exit(0);
            }
        })?;
    Ok(())
}

/// Parses `--udp-listen-addresses`: comma-separated IPs, deduplicated.
fn parse_addresses(list: &str) -> Result<Vec<IpAddr>, String> {
    if list.is_empty() {
        return Ok(Vec::new());
    }
    let mut addresses = list
        .split(',')
        .map(|address| {
            address
                .parse::<IpAddr>()
                .map_err(|_| format!("invalid address {address:?}: expected an IP address"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    addresses.sort();
    addresses.dedup();
    Ok(addresses)
}

/// Binds the HTTP server and the UDP servers, and serves them from background threads.
pub(crate) fn start(options: Options) -> Result<Running, StartError> {
    let mut udp = Vec::new();
    if let Some(port) = options.udp_port {
        let ips: Vec<Option<IpAddr>> = if options.udp_listen_addresses.is_empty() {
            vec![None]
        } else {
            options
                .udp_listen_addresses
                .iter()
                .copied()
                .map(Some)
                .collect()
        };
        for ip in ips {
            let (socket, addr) = sock::bind_udp(ip, port)?;
            sock::spawn("udp-netexec", move || serve_udp(&socket))?;
            udp.push(addr);
        }
    }
    let (listener, http) = sock::listen_tcp(None, options.http_port)?;
    let endpoints = Arc::new(Endpoints {
        // Upstream is ready once a UDP (or SCTP) server listens, and never without one.
        ready: !udp.is_empty(),
        started: Instant::now(),
        http_override: options.http_override,
    });
    let (exit_tx, exit) = mpsc::channel();
    http::serve(
        listener,
        Arc::new(move |request: &Request| endpoints.handle(request)),
        exit_tx,
    )?;
    Ok(Running { http, udp, exit })
}

/// The HTTP endpoints and the state they answer from.
struct Endpoints {
    ready: bool,
    started: Instant,
    http_override: Option<String>,
}

// === impl Endpoints ===

impl Endpoints {
    fn handle(&self, request: &Request) -> Reply {
        let Some(target) = &self.http_override else {
            return self.route(request);
        };
        // Upstream builds a fresh GET for the target: no headers, no body, and no RemoteAddr.
        match Request::synthetic_get(target) {
            Ok(overridden) => self.route(&overridden),
            Err(err) => Reply::Respond(Response::error(
                500,
                &format!("override request failed: {err}"),
            )),
        }
    }

    fn route(&self, request: &Request) -> Reply {
        log!("{} {}", request.method, request.target);
        let response = match request.path.as_str() {
            "/clientip" => Response::text(request.remote_addr.as_str()),
            "/dial" => dial::handle(request),
            "/echo" => return echo(request),
            "/exit" => return exit(request),
            "/header" => header(request),
            "/healthz" => Response::empty(if self.ready { 200 } else { 412 }),
            "/readyz" if SHUTTING_DOWN.load(Ordering::Relaxed) => {
                Response::error(503, "shutting down")
            }
            "/readyz" if self.ready => Response::text("ok"),
            "/readyz" => Response::empty(412),
            "/hostname" | "/hostName" => hostname(),
            "/redirect" => return redirect(request),
            "/shell" => shell(request),
            "/shutdown" => return Reply::ExitNow(0),
            "/upload" => Response::error(501, "upload is not implemented by podnet's agnhost"),
            _ => Response::text(format!("NOW: {}", go_now(self.started))),
        };
        Reply::Respond(response)
    }
}

fn hostname() -> Response {
    match sock::hostname() {
        Ok(name) => Response::text(name),
        Err(err) => Response::error(500, &err.to_string()),
    }
}

/// A handler's optional `code` argument, with upstream's message when it is not an integer.
fn code_argument(request: &Request, what: &str) -> Result<Option<i64>, Reply> {
    let text = request.form_value("code");
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        Reply::Respond(Response::text(format!(
            "argument 'code' must be an integer{what} or empty, got {text:?}\n"
        )))
    })
}

/// A status code Go accepts; Go panics on others, which drops the connection.
fn status(code: i64) -> Option<u16> {
    u16::try_from(code)
        .ok()
        .filter(|code| (100..=999).contains(code))
}

/// `/echo?msg=...&code=...`: the message, with the status `code`.
fn echo(request: &Request) -> Reply {
    let code = match code_argument(request, "") {
        Ok(code) => code,
        Err(reply) => return reply,
    };
    let response = Response::text(request.form_value("msg"));
    match code.map(status) {
        None => Reply::Respond(response),
        Some(Some(code)) => Reply::Respond(response.with_status(code)),
        Some(None) => Reply::Abort,
    }
}

/// `/exit?code=N&timeout=D&wait=D`: after `wait`, exit with `code`; at once without answering
/// when `timeout` is 0, else after answering.
fn exit(request: &Request) -> Reply {
    let duration = |name: &str| {
        let text = request.form_value(name);
        if text.is_empty() {
            return Ok(Duration::ZERO);
        }
        flags::go_duration(&text).map_err(|_| {
            Reply::Respond(Response::text(format!(
                "argument '{name}' must be a valid golang duration or empty, got {text:?}\n"
            )))
        })
    };
    let (timeout, wait) = match (duration("timeout"), duration("wait")) {
        (Ok(timeout), Ok(wait)) => (timeout, wait),
        (Err(reply), _) | (_, Err(reply)) => return reply,
    };
    let code = match code_argument(request, " [0-127]") {
        // Exit codes are truncated to 8 bits by the kernel whatever we pass.
        Ok(code) => i32::try_from(code.unwrap_or(0)).unwrap_or(i32::MAX),
        Err(reply) => return reply,
    };
    log!(
        "Will begin shutdown in {wait:?}, allowing {timeout:?} for connections to close, then will exit with {code}"
    );
    thread::sleep(wait);
    if timeout.is_zero() {
        Reply::ExitNow(code)
    } else {
        Reply::RespondThenExit(Response::empty(200), code)
    }
}

/// `/header?key=K`: that request header's value; without a key, every header as JSON.
fn header(request: &Request) -> Response {
    let key = request.form_value("key");
    if !key.is_empty() {
        return Response::text(request.header(&key).unwrap_or_default());
    }
    // Go's r.Header: canonical names, values in order, and no Host (Go moves it to r.Host).
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &request.headers {
        if !name.eq_ignore_ascii_case("Host") {
            headers
                .entry(canonical_header(name))
                .or_default()
                .push(value.clone());
        }
    }
    let json: serde_json::Map<String, serde_json::Value> = headers
        .into_iter()
        .map(|(name, values)| (name, values.into()))
        .collect();
    Response::text(go_json(&json.into()))
}

/// Go's canonical header name: `x-forwarded-for` becomes `X-Forwarded-For`.
fn canonical_header(name: &str) -> String {
    let mut upper = true;
    name.chars()
        .map(|c| {
            let out = if upper {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            upper = c == '-';
            out
        })
        .collect()
}

/// `/redirect?location=L&code=N`: a redirect to `location`, 302 unless `code` says otherwise.
fn redirect(request: &Request) -> Reply {
    let code = match code_argument(request, "") {
        Ok(code) => code.unwrap_or(302),
        Err(reply) => return reply,
    };
    let Some(code) = status(code) else {
        return Reply::Abort;
    };
    let mut location = request.form_value("location");
    // Go's http.Redirect makes a relative location relative to the request's directory.
    if !location.contains("://") && !location.starts_with('/') {
        let directory = request.path.rsplit_once('/').map_or("", |(dir, _)| dir);
        location = format!("{directory}/{location}");
    }
    let mut response = Response::empty(code).with_header("Location", &location);
    if matches!(request.method.as_str(), "GET" | "HEAD") {
        response.body = format!(
            "<a href=\"{}\">{}</a>.\n\n",
            html_escape(&location),
            http::reason(code)
        )
        .into_bytes();
        response = response.with_header("Content-Type", "text/html; charset=utf-8");
    }
    Reply::Respond(response)
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

/// `/shell?cmd=C` (or `shellCommand=C`): runs C with `/bin/sh -c` and returns JSON with its
/// combined output and, if it failed, Go's description of the failure.
fn shell(request: &Request) -> Response {
    let mut command = request.form_value("shellCommand");
    if command.is_empty() {
        command = request.form_value("cmd");
    }
    log!("GET /shell?cmd={command}");
    let (output, error) = run_shell(&command);
    let mut json = serde_json::Map::new();
    // Keys in sorted order, as Go's map marshalling has them.
    if let Some(error) = error {
        json.insert("error".into(), error.into());
    }
    if !output.is_empty() {
        json.insert("output".into(), output.into());
    }
    Response::text(go_json(&json.into()))
}

/// Runs `command` with its stdout and stderr on one pipe, as Go's `CombinedOutput`.
fn run_shell(command: &str) -> (String, Option<String>) {
    let spawn_failed = |err: std::io::Error| {
        (
            String::new(),
            Some(format!("fork/exec {SHELL}: {}", go_error_text(&err))),
        )
    };
    let (mut reader, writer) = match std::io::pipe() {
        Ok(pipe) => pipe,
        Err(err) => return spawn_failed(err),
    };
    let child = writer.try_clone().and_then(|stderr| {
        Command::new(SHELL)
            .arg("-c")
            .arg(command)
            .stdin(std::process::Stdio::null())
            .stdout(writer)
            .stderr(stderr)
            .spawn()
    });
    // The Command held the pipe's write ends; it is gone now, so the read ends at the child's exit.
    let mut child = match child {
        Ok(child) => child,
        Err(err) => return spawn_failed(err),
    };
    let mut output = Vec::new();
    let read = reader.read_to_end(&mut output);
    let status = child.wait();
    let output = String::from_utf8_lossy(&output).into_owned();
    let error = match (read, status) {
        (Err(err), _) | (_, Err(err)) => Some(go_error_text(&err)),
        (Ok(_), Ok(status)) => exit_description(status),
    };
    (output, error)
}

/// Go's `ExitError` text for a failed command: `exit status 1`, `signal: killed`.
fn exit_description(status: std::process::ExitStatus) -> Option<String> {
    use std::os::unix::process::ExitStatusExt as _;
    if status.success() {
        return None;
    }
    if let Some(code) = status.code() {
        return Some(format!("exit status {code}"));
    }
    let signal = status.signal().unwrap_or_default();
    let name = match signal {
        1 => "hangup".to_string(),
        2 => "interrupt".to_string(),
        6 => "aborted".to_string(),
        9 => "killed".to_string(),
        11 => "segmentation fault".to_string(),
        13 => "broken pipe".to_string(),
        15 => "terminated".to_string(),
        other => format!("signal {other}"),
    };
    Some(format!("signal: {name}"))
}

/// Answers the UDP commands `hostname`, `echo <msg>` and `clientip`; ignores anything else.
fn serve_udp(socket: &UdpSocket) {
    let mut buffer = [0u8; 2048];
    loop {
        let (len, peer) = match socket.recv_from(&mut buffer) {
            Ok(received) => received,
            Err(err) => {
                log!("failed accepting UDP connections: {err}");
                thread::sleep(RETRY_PAUSE);
                continue;
            }
        };
        let received = String::from_utf8_lossy(buffer.get(..len).unwrap_or_default());
        let peer_text = sock::unmapped(peer).to_string();
        let Some(reply) = udp_reply(&received, &peer_text) else {
            if !received.trim().is_empty() {
                log!("Unknown UDP command received from {peer_text}: {received}");
            }
            continue;
        };
        if let Err(err) = socket.send_to(reply.as_bytes(), peer) {
            log!("failed to write to UDP client {peer_text}: {err}");
        }
    }
}

/// The reply to one UDP command. Upstream lowercases and trims the command first, so an echoed
/// message comes back lowercased.
fn udp_reply(received: &str, peer: &str) -> Option<String> {
    let command = received.trim().to_lowercase();
    if command == "hostname" {
        // Upstream exits if the hostname cannot be read; an empty reply keeps us serving.
        return Some(sock::hostname().unwrap_or_default());
    }
    if command == "clientip" {
        return Some(peer.to_string());
    }
    command
        .strip_prefix("echo ")
        .map(|message| message.to_string())
}

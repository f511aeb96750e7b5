//! The HTTP server: a thread accepts, a thread per connection serves requests in order until the
//! client closes, asks to close, or goes idle.

use std::io::{self, BufRead, BufReader, Read as _, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::thread;
use std::time::Duration;

use super::{
    MAX_BODY_BYTES, MAX_HEADER_BYTES, Reply, Request, Response, WireError, find_header,
    read_headers, read_line, reason, split_target,
};
use crate::compat::http_date;
use crate::sock::{self, RETRY_PAUSE, StartError};

/// What serves requests: shared by every connection thread.
pub(crate) type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

/// How long an idle keep-alive connection is kept, so abandoned ones do not pin a thread for good.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a response write may block on a client that stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves HTTP on `listener` from background threads. A handler's request to exit is sent on
/// `exit`, for the subcommand's `run` to return.
pub(crate) fn serve(
    listener: TcpListener,
    handler: Arc<Handler>,
    exit: Sender<i32>,
) -> Result<(), StartError> {
    sock::spawn("http-accept", move || {
        for stream in listener.incoming() {
            match stream {
                Ok(stream) => {
                    let handler = Arc::clone(&handler);
                    let exit = exit.clone();
                    let spawned = sock::spawn("http-conn", move || {
                        serve_connection(stream, &*handler, &exit);
                    });
                    if let Err(err) = spawned {
                        log!("HTTP connection dropped: {err}");
                    }
                }
                Err(err) => {
                    // Go's server retries failed accepts (EMFILE and the like) after a pause.
                    log!("HTTP accept failed: {err}");
                    thread::sleep(RETRY_PAUSE);
                }
            }
        }
    })
}

/// Serves the requests of one connection in order.
fn serve_connection(stream: TcpStream, handler: &Handler, exit: &Sender<i32>) {
    let Ok(peer) = stream.peer_addr() else {
        return;
    };
    let remote_addr = sock::unmapped(peer).to_string();
    let reader = stream
        .set_read_timeout(Some(IDLE_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(WRITE_TIMEOUT)))
        .and_then(|()| stream.try_clone());
    let Ok(reader) = reader else {
        return;
    };
    let mut reader = BufReader::new(reader);
    let mut writer = stream;
    loop {
        let request = match read_request(&mut reader, &mut writer, &remote_addr) {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(err) => {
                if let Some(status) = status_for(&err) {
                    let body = format!("{status} {}: {err}", reason(status));
                    let response = Response {
                        close: true,
                        ..Response::text(body).with_status(status)
                    };
                    let _ = write_response(&mut writer, &response, false, 1);
                }
                return finish(&writer);
            }
        };
        let head_only = request.method == "HEAD";
        let version = request.minor_version;
        match handler(&request) {
            Reply::Respond(mut response) => {
                response.close |= !request.keep_alive();
                let written = write_response(&mut writer, &response, head_only, version);
                if written.is_err() || response.close {
                    return finish(&writer);
                }
            }
            Reply::RespondThenExit(mut response, code) => {
                response.close = true;
                let _ = write_response(&mut writer, &response, head_only, version);
                finish(&writer);
                let _ = exit.send(code);
                return;
            }
            Reply::ExitNow(code) => {
                let _ = exit.send(code);
                return;
            }
            Reply::Abort => return,
        }
    }
}

/// Ends a connection we chose to close: a FIN after the last response, so the client reads it
/// all before seeing the end.
fn finish(stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
}

/// The status to answer an unreadable request with; `None` when the client is gone or idle.
fn status_for(err: &WireError) -> Option<u16> {
    match err {
        WireError::Io(_) => None,
        WireError::HeaderTooLarge => Some(431),
        WireError::BodyTooLarge(_) => Some(413),
        WireError::ChunkedRequest => Some(501),
        WireError::Version(_) => Some(505),
        WireError::Malformed { .. } => Some(400),
    }
}

/// Reads one request; `Ok(None)` when the client closed the connection between requests.
fn read_request(
    reader: &mut impl BufRead,
    writer: &mut impl Write,
    remote_addr: &str,
) -> Result<Option<Request>, WireError> {
    let mut budget = MAX_HEADER_BYTES;
    // RFC 9112 asks servers to ignore blank lines before a request line.
    let line = loop {
        match read_line(reader, &mut budget)? {
            None => return Ok(None),
            Some(line) if line.is_empty() => continue,
            Some(line) => break line,
        }
    };
    let malformed = |what, text: &str| WireError::Malformed {
        what,
        text: text.to_string(),
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("request line", &line));
    };
    let minor_version = match version {
        "HTTP/1.1" => 1,
        "HTTP/1.0" => 0,
        other => return Err(WireError::Version(other.to_string())),
    };
    if method.is_empty() || target.is_empty() {
        return Err(malformed("request line", &line));
    }
    let (path, query) = split_target(target).map_err(|_| malformed("request target", target))?;
    let headers = read_headers(reader, &mut budget)?;

    if find_header(&headers, "Transfer-Encoding").is_some_and(|te| te != "identity") {
        return Err(WireError::ChunkedRequest);
    }
    let length = match find_header(&headers, "Content-Length") {
        None => 0,
        Some(text) => text
            .parse::<u64>()
            .map_err(|_| malformed("Content-Length", text))?,
    };
    if length > MAX_BODY_BYTES {
        return Err(WireError::BodyTooLarge(length));
    }
    let expects_continue =
        find_header(&headers, "Expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue"));
    if expects_continue && length > 0 && minor_version == 1 {
        // curl waits a second for this before sending a body of more than 1 KiB.
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        writer.flush()?;
    }
    let mut body = Vec::new();
    reader.by_ref().take(length).read_to_end(&mut body)?;
    if u64::try_from(body.len()).unwrap_or(u64::MAX) < length {
        return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
    }
    Ok(Some(Request {
        method: method.to_string(),
        target: target.to_string(),
        path,
        query,
        minor_version,
        headers,
        body,
        remote_addr: remote_addr.to_string(),
    }))
}

/// Writes `response` as Go's server would: a `Date`, a sniffed-like `Content-Type` for text, a
/// `Content-Length`, and the `Connection` header the version needs.
fn write_response(
    writer: &mut impl Write,
    response: &Response,
    head_only: bool,
    minor_version: u8,
) -> io::Result<()> {
    let status = response.status;
    // 1xx, 204 and 304 responses carry no body, and Go then sends no Content-Length either.
    let bodyless = status < 200 || status == 204 || status == 304;
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !bodyless && !response.body.is_empty() && !response.has_header("Content-Type") {
        // Every body agnhost writes is text (or JSON, which Go's sniffing also calls text).
        head.push_str("Content-Type: text/plain; charset=utf-8\r\n");
    }
    head.push_str(&format!("Date: {}\r\n", http_date()));
    if !bodyless {
        head.push_str(&format!("Content-Length: {}\r\n", response.body.len()));
    }
    if response.close && minor_version == 1 {
        head.push_str("Connection: close\r\n");
    } else if !response.close && minor_version == 0 {
        head.push_str("Connection: keep-alive\r\n");
    }
    head.push_str("\r\n");
    // One write, so Nagle's algorithm cannot hold the body back behind the head.
    let mut message = head.into_bytes();
    if !head_only && !bodyless {
        message.extend_from_slice(&response.body);
    }
    writer.write_all(&message)?;
    writer.flush()
}

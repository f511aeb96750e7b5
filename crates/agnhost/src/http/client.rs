//! The HTTP client behind netexec's `/dial`: one GET, as Go's `http.Client` with a timeout makes
//! it, with Go's error texts.

use std::io::{self, BufRead, BufReader, Read, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::{MAX_BODY_BYTES, MAX_HEADER_BYTES, WireError, find_header, read_headers, read_line};
use crate::compat::go_error_text;

/// What Go's client says when its overall timeout passes.
const DEADLINE_TEXT: &str =
    "context deadline exceeded (Client.Timeout exceeded while awaiting headers)";

/// GETs `http://{addr}/{request}` within `timeout` and returns the body of whatever response
/// comes back, whatever its status, as netexec's `dialHTTP` does. The error is Go's text,
/// `Get "http://...": dial tcp ...: connect: connection refused`.
pub(crate) fn get(addr: SocketAddr, request: &str, timeout: Duration) -> Result<String, String> {
    let url = format!("http://{addr}/{request}");
    let deadline = Instant::now() + timeout;
    let fail = |detail: String| format!("Get {url:?}: {detail}");

    let stream = TcpStream::connect_timeout(&addr, timeout).map_err(|err| {
        if err.kind() == io::ErrorKind::TimedOut {
            fail(DEADLINE_TEXT.to_string())
        } else {
            fail(format!("dial tcp {addr}: connect: {}", go_error_text(&err)))
        }
    })?;
    let head = format!(
        "GET /{} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: Go-http-client/1.1\r\nConnection: close\r\n\r\n",
        escape_target(request)
    );
    let mut reader = BufReader::new(DeadlineStream { stream, deadline });
    let sent = reader
        .get_mut()
        .stream
        .set_write_timeout(Some(timeout))
        .and_then(|()| reader.get_mut().stream.write_all(head.as_bytes()));
    sent.map_err(|err| fail(describe(&WireError::Io(err))))?;

    let (status, headers) = read_head(&mut reader).map_err(|err| fail(describe(&err)))?;
    // Upstream reads the body with an inner `err` that shadows the one it returns, so a body that
    // fails to arrive counts as an empty, successful response; we keep that behaviour.
    let body = read_body(&mut reader, status, &headers).unwrap_or_default();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Percent-encodes what cannot appear raw in a request target (spaces, controls, non-ASCII),
/// as Go's URL handling does before sending.
fn escape_target(request: &str) -> String {
    let mut out = String::with_capacity(request.len());
    for byte in request.bytes() {
        if byte <= b' ' || byte >= 0x7f {
            out.push_str(&format!("%{byte:02X}"));
        } else {
            out.push(char::from(byte));
        }
    }
    out
}

/// Go's words for a failed exchange.
fn describe(err: &WireError) -> String {
    match err {
        WireError::Io(io) if io.kind() == io::ErrorKind::TimedOut => DEADLINE_TEXT.to_string(),
        WireError::Io(io) if io.kind() == io::ErrorKind::UnexpectedEof => "EOF".to_string(),
        other => other.to_string(),
    }
}

/// Reads the status line and headers of the final response, skipping 1xx interim ones.
fn read_head(reader: &mut impl BufRead) -> Result<(u16, Vec<(String, String)>), WireError> {
    loop {
        let mut budget = MAX_HEADER_BYTES;
        let Some(line) = read_line(reader, &mut budget)? else {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        };
        let status = line
            .strip_prefix("HTTP/1.")
            .and_then(|rest| rest.get(2..5))
            .and_then(|code| code.parse::<u16>().ok());
        let Some(status) = status else {
            return Err(WireError::Malformed {
                what: "HTTP response",
                text: line,
            });
        };
        let headers = read_headers(reader, &mut budget)?;
        if status >= 200 {
            return Ok((status, headers));
        }
    }
}

/// Reads the body framed by `Transfer-Encoding: chunked`, `Content-Length`, or the end of the
/// connection, as the response says.
fn read_body(
    reader: &mut impl BufRead,
    status: u16,
    headers: &[(String, String)],
) -> Result<Vec<u8>, WireError> {
    let mut body = Vec::new();
    if status == 204 || status == 304 {
        return Ok(body);
    }
    if find_header(headers, "Transfer-Encoding").is_some_and(|te| te.contains("chunked")) {
        return read_chunked(reader);
    }
    let limit = match find_header(headers, "Content-Length") {
        Some(text) => text.parse::<u64>().map_err(|_| WireError::Malformed {
            what: "Content-Length",
            text: text.to_string(),
        })?,
        None => MAX_BODY_BYTES,
    };
    reader
        .by_ref()
        .take(limit.min(MAX_BODY_BYTES))
        .read_to_end(&mut body)?;
    Ok(body)
}

/// Decodes a chunked body, trailers included.
fn read_chunked(reader: &mut impl BufRead) -> Result<Vec<u8>, WireError> {
    let mut body = Vec::new();
    let mut budget = MAX_HEADER_BYTES;
    loop {
        let Some(line) = read_line(reader, &mut budget)? else {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        };
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = u64::from_str_radix(size_text, 16).map_err(|_| WireError::Malformed {
            what: "chunk size",
            text: line.clone(),
        })?;
        if size == 0 {
            // Trailers, if any, end with a blank line like headers.
            read_headers(reader, &mut budget)?;
            return Ok(body);
        }
        let total = u64::try_from(body.len()).unwrap_or(u64::MAX) + size;
        if total > MAX_BODY_BYTES {
            return Err(WireError::BodyTooLarge(total));
        }
        let mut chunk = Vec::new();
        reader.by_ref().take(size).read_to_end(&mut chunk)?;
        if u64::try_from(chunk.len()).unwrap_or(u64::MAX) < size {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        }
        body.extend_from_slice(&chunk);
        // The CRLF after each chunk.
        read_line(reader, &mut budget)?;
    }
}

/// A stream whose reads all end by one deadline, as Go's client timeout covers the whole exchange.
struct DeadlineStream {
    stream: TcpStream,
    deadline: Instant,
}

// === impl DeadlineStream ===

impl Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf).map_err(|err| {
            if err.kind() == io::ErrorKind::WouldBlock {
                io::ErrorKind::TimedOut.into()
            } else {
                err
            }
        })
    }
}

//! A small HTTP/1.1 server and client over std sockets: enough for agnhost's endpoints, for curl,
//! wget and Go's client (keep-alive, pipelining, `Expect: 100-continue`), and for netexec's own
//! `/dial`. Not a general HTTP stack: no TLS, no chunked request bodies, no compression.

mod client;
mod server;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::io::{self, BufRead, Read as _};

use thiserror::Error;

use crate::compat::go_error_text;

pub(crate) use client::get;
pub(crate) use server::serve;

/// The most header bytes we read for one request or response, as Go's server allows.
const MAX_HEADER_BYTES: usize = 1 << 20;

/// One parsed request, as handlers see it.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) method: String,
    /// The request target as sent (`/dial?host=...`).
    pub(crate) target: String,
    /// The target's path, percent-decoded, as Go's `r.URL.Path`.
    pub(crate) path: String,
    /// The target's query, undecoded.
    pub(crate) query: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub(crate) minor_version: u8,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    /// The peer as Go's `r.RemoteAddr` shows it (`1.2.3.4:5678`); empty for a synthetic request.
    pub(crate) remote_addr: String,
}

/// What a handler wants done with a request.
#[derive(Debug)]
pub(crate) enum Reply {
    Respond(Response),
    /// Send the response, then ask the process to exit with the code (netexec's graceful `/exit`).
    RespondThenExit(Response, i32),
    /// Exit at once without answering, as Go's `os.Exit` inside a handler does.
    ExitNow(i32),
    /// Drop the connection without answering, as Go does when a handler panics.
    Abort,
}

/// A response to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    pub(crate) status: u16,
    /// Headers besides `Date`, `Content-Length` and `Connection`, which the server writes.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    /// Close the connection after this response (`Connection: close`).
    pub(crate) close: bool,
}

// === impl Request ===

impl Request {
    /// Builds a bodiless GET for `target`, as Go's `http.NewRequest("GET", target, nil)`, which
    /// netexec's `--http-override` serves in place of every request.
    pub(crate) fn synthetic_get(target: &str) -> Result<Self, String> {
        let (path, query) = split_target(target)?;
        Ok(Request {
            method: "GET".to_string(),
            target: target.to_string(),
            path,
            query,
            minor_version: 1,
            headers: Vec::new(),
            body: Vec::new(),
            remote_addr: String::new(),
        })
    }

    /// The first value of header `name`, matched case-insensitively.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The first value of `key` in the query, as Go's `r.URL.Query().Get(key)`.
    pub(crate) fn query_value(&self, key: &str) -> Option<String> {
        first_value(&self.query, key)
    }

    /// Go's `r.FormValue(key)`: a url-encoded POST, PUT or PATCH body first, then the query;
    /// empty when absent.
    pub(crate) fn form_value(&self, key: &str) -> String {
        let form_body = matches!(self.method.as_str(), "POST" | "PUT" | "PATCH")
            && self.header("Content-Type").is_some_and(|ct| {
                ct.split(';')
                    .next()
                    .is_some_and(|mime| mime.trim() == "application/x-www-form-urlencoded")
            });
        let from_body = form_body
            .then(|| first_value(&String::from_utf8_lossy(&self.body), key))
            .flatten();
        from_body
            .or_else(|| self.query_value(key))
            .unwrap_or_default()
    }

    /// Whether the client expects the connection to stay open after the response.
    fn keep_alive(&self) -> bool {
        let has_token = |token: &str| {
            self.headers
                .iter()
                .filter(|(key, _)| key.eq_ignore_ascii_case("Connection"))
                .flat_map(|(_, value)| value.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        };
        if self.minor_version == 0 {
            has_token("keep-alive")
        } else {
            !has_token("close")
        }
    }
}

// === impl Response ===

impl Response {
    /// 200 with a text body.
    pub(crate) fn text(body: impl Into<String>) -> Self {
        Response {
            status: 200,
            headers: Vec::new(),
            body: body.into().into_bytes(),
            close: false,
        }
    }

    /// An empty body with `status`.
    pub(crate) fn empty(status: u16) -> Self {
        Response {
            status,
            ..Response::text("")
        }
    }

    /// What Go's `http.Error` sends: the message and a newline, marked not to be sniffed.
    pub(crate) fn error(status: u16, message: &str) -> Self {
        Response {
            status,
            ..Response::text(format!("{message}\n"))
        }
        .with_header("X-Content-Type-Options", "nosniff")
    }

    pub(crate) fn with_status(self, status: u16) -> Self {
        Response { status, ..self }
    }

    pub(crate) fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(key, _)| key.eq_ignore_ascii_case(name))
    }
}

/// The reason phrase Go writes for `status`, or Go's `status code N` for codes it does not name.
pub(crate) fn reason(status: u16) -> Cow<'static, str> {
    let known = match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Request Entity Too Large",
        417 => "Expectation Failed",
        418 => "I'm a teapot",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => return Cow::Owned(format!("status code {status}")),
    };
    Cow::Borrowed(known)
}

/// Splits a request target into its decoded path and raw query. An absolute-form target
/// (`http://host/path`, as proxies send) is reduced to its path.
fn split_target(target: &str) -> Result<(String, String), String> {
    let origin_form = match target.split_once("://") {
        Some((_, after_scheme)) if !target.starts_with('/') => {
            after_scheme.find('/').map_or("/", |i| &after_scheme[i..])
        }
        _ => target,
    };
    let (raw_path, query) = origin_form.split_once('?').unwrap_or((origin_form, ""));
    let path = percent_decode(raw_path, false)
        .ok_or_else(|| format!("invalid escape in request path {raw_path:?}"))?;
    Ok((path, query.to_string()))
}

/// The first value of `key` in a url-encoded form, as Go's `url.ParseQuery(s).Get(key)`: pairs
/// with a bad escape are skipped, as Go skips them.
fn first_value(form: &str, key: &str) -> Option<String> {
    form.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(k, true)?;
        if k == key {
            percent_decode(v, true)
        } else {
            None
        }
    })
}

/// Decodes `%XX` escapes, and `+` as a space in forms. `None` on a malformed escape. Bytes that
/// are not UTF-8 become U+FFFD, since every consumer here is text.
pub(crate) fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Why a request or response could not be read off the wire.
#[derive(Debug, Error)]
enum WireError {
    #[error("{}", go_error_text(.0))]
    Io(#[from] io::Error),
    #[error("header is larger than {MAX_HEADER_BYTES} bytes")]
    HeaderTooLarge,
    #[error("malformed {what} {text:?}")]
    Malformed { what: &'static str, text: String },
    #[error("body of {0} bytes is larger than the {MAX_BODY_BYTES} bytes allowed")]
    BodyTooLarge(u64),
    #[error("chunked request bodies are not supported")]
    ChunkedRequest,
    #[error("unsupported protocol version {0:?}")]
    Version(String),
}

/// The largest body we read: Go's limit for form bodies, and far above any agnhost payload.
const MAX_BODY_BYTES: u64 = 10 << 20;

/// Reads one CRLF- or LF-terminated line without its terminator, charging its length to
/// `budget`. `Ok(None)` at a clean end of stream.
fn read_line(reader: &mut impl BufRead, budget: &mut usize) -> Result<Option<String>, WireError> {
    let mut line = Vec::new();
    let limit = u64::try_from(*budget).unwrap_or(u64::MAX).saturating_add(1);
    let read = reader.by_ref().take(limit).read_until(b'\n', &mut line)?;
    if read == 0 {
        return Ok(None);
    }
    if read > *budget {
        return Err(WireError::HeaderTooLarge);
    }
    *budget -= read;
    if line.pop() != Some(b'\n') {
        return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

/// Reads header lines up to the blank line that ends them.
fn read_headers(
    reader: &mut impl BufRead,
    budget: &mut usize,
) -> Result<Vec<(String, String)>, WireError> {
    let mut headers = Vec::new();
    loop {
        let Some(line) = read_line(reader, budget)? else {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        };
        if line.is_empty() {
            return Ok(headers);
        }
        let parsed = line
            .split_once(':')
            .filter(|(name, _)| !name.is_empty() && !name.contains(char::is_whitespace));
        let Some((name, value)) = parsed else {
            return Err(WireError::Malformed {
                what: "header line",
                text: line,
            });
        };
        headers.push((name.to_string(), value.trim().to_string()));
    }
}

/// The value of header `name` in `headers`, matched case-insensitively.
fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

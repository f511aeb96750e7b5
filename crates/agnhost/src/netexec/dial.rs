//! netexec's `/dial`: the endpoint e2e tests use to test connectivity *from* a pod. It sends
//! `request` to `host:port` over `protocol` (`http`, the default, or `udp`) `tries` times and
//! returns JSON `{"errors":[...],"responses":[...]}` with upstream's quirks: always 200 once the
//! parameters are valid, `errors` only when some try failed, and `responses` only when the *last*
//! try returned something non-empty.

use std::net::SocketAddr;
use std::time::Duration;

use crate::compat::{go_error_text, go_json};
use crate::http::{self, Request, Response};
use crate::sock;

/// How long each try may take, as upstream's client timeout and UDP read deadline.
const TRY_TIMEOUT: Duration = Duration::from_secs(5);

/// The protocols `/dial` speaks.
#[derive(Debug, Clone, Copy)]
enum Protocol {
    Http,
    Udp,
    /// Accepted as upstream accepts it; every try fails, as there are no SCTP sockets here.
    Sctp,
}

/// Answers `/dial`.
pub(super) fn handle(request: &Request) -> Response {
    let value = |key: &str| request.query_value(key).unwrap_or_default();
    let (host, port, payload) = (value("host"), value("port"), value("request"));
    let (protocol, tries) = (value("protocol"), value("tries"));
    let tries = if tries.is_empty() {
        1
    } else {
        match tries.parse::<i64>() {
            Ok(tries) => tries,
            Err(_) => {
                return Response::error(
                    400,
                    &format!(
                        "tries parameter is invalid. strconv.Atoi: parsing {tries:?}: invalid syntax"
                    ),
                );
            }
        }
    };
    if payload.is_empty() {
        // Upstream prints its nil error here.
        return Response::error(400, "request parameter not specified. <nil>");
    }
    let protocol = match protocol.to_lowercase().as_str() {
        "" | "http" => Protocol::Http,
        "udp" => Protocol::Udp,
        "sctp" => Protocol::Sctp,
        _ => return Response::error(400, &format!("unsupported protocol. {protocol}")),
    };
    // Resolved once for every try, as upstream.
    let addr = match sock::resolve_one(&host, &port) {
        Ok(addr) => addr,
        Err(err) => {
            return Response::error(400, &format!("host and/or port param are invalid. {err}"));
        }
    };

    let mut responses = Vec::new();
    let mut errors = Vec::new();
    let mut last_response = String::new();
    for _ in 0..tries {
        match dial(protocol, &payload, addr) {
            Ok(response) => {
                last_response.clone_from(&response);
                responses.push(response);
            }
            Err(err) => {
                last_response.clear();
                errors.push(err);
            }
        }
    }
    let mut output = serde_json::Map::new();
    // Keys in sorted order, as Go's map marshalling has them.
    if !errors.is_empty() {
        output.insert("errors".into(), errors.into());
    }
    if !last_response.is_empty() {
        output.insert("responses".into(), responses.into());
    }
    Response::text(go_json(&output.into()))
}

fn dial(protocol: Protocol, payload: &str, addr: SocketAddr) -> Result<String, String> {
    match protocol {
        Protocol::Http => http::get(addr, payload, TRY_TIMEOUT),
        Protocol::Udp => dial_udp(payload, addr),
        Protocol::Sctp => Err(format!(
            "sctp dial failed. err:dial sctp {addr}: SCTP is not available on podnet's kernels"
        )),
    }
}

/// Sends `payload` in one datagram and returns the first reply, with upstream's error texts.
fn dial_udp(payload: &str, addr: SocketAddr) -> Result<String, String> {
    let (socket, local) = sock::dial_udp(addr).map_err(|err| {
        format!(
            "udp dial failed. err:dial udp {addr}: {}",
            go_error_text(&err)
        )
    })?;
    socket.send(payload.as_bytes()).map_err(|err| {
        format!(
            "udp connection write failed. err:write udp {local}->{addr}: {}",
            go_error_text(&err)
        )
    })?;
    let mut buffer = [0u8; 2048];
    let received = socket
        .set_read_timeout(Some(TRY_TIMEOUT))
        .and_then(|()| socket.recv(&mut buffer));
    match received {
        Ok(len) if len > 0 => {
            Ok(String::from_utf8_lossy(buffer.get(..len).unwrap_or_default()).into_owned())
        }
        Ok(_) => Err("reading from udp connection failed. err:'<nil>'".to_string()),
        Err(err) => Err(format!(
            "reading from udp connection failed. err:'read udp {local}->{addr}: {}'",
            go_error_text(&err)
        )),
    }
}

use std::sync::Arc;
use std::sync::mpsc;

use super::*;
use crate::sock;
use crate::testutil::{self, TIMEOUT, loopback};

/// Starts a server on an ephemeral port whose handler echoes the request back as text.
fn echo_server() -> (std::net::SocketAddr, mpsc::Receiver<i32>) {
    let (listener, addr) = sock::listen_tcp(None, 0).unwrap();
    let addr = loopback(addr);
    let (exit_tx, exit_rx) = mpsc::channel();
    let handler = Arc::new(|req: &Request| match req.path.as_str() {
        "/exit" => Reply::RespondThenExit(Response::text("bye"), 7),
        "/abort" => Reply::Abort,
        "/teapot" => Reply::Respond(Response::text("short and stout").with_status(418)),
        _ => Reply::Respond(Response::text(format!(
            "{} {} q={} body={} from={}",
            req.method,
            req.path,
            req.form_value("q"),
            String::from_utf8_lossy(&req.body),
            req.remote_addr
        ))),
    });
    serve(listener, handler, exit_tx).unwrap();
    (addr, exit_rx)
}

#[test]
fn serves_a_get_with_go_headers() {
    let (addr, _exit) = echo_server();
    let got = testutil::get(addr, "/a%20b?q=x+y&q=z");
    assert_eq!(got.status, 200);
    assert!(
        got.body.starts_with("GET /a b q=x y body= from=127.0.0.1:"),
        "{}",
        got.body
    );
    assert!(
        got.head.contains("Content-Type: text/plain; charset=utf-8"),
        "{}",
        got.head
    );
    assert!(got.head.contains("Connection: close"), "{}", got.head);
    assert!(
        got.head
            .contains(&format!("Content-Length: {}", got.body.len()))
    );
    assert!(got.head.contains("\r\nDate: "), "{}", got.head);
}

#[test]
fn keeps_the_connection_alive_for_pipelined_requests() {
    let (addr, _exit) = echo_server();
    let raw = testutil::exchange(
        addr,
        "GET /one HTTP/1.1\r\nHost: t\r\n\r\nGET /two HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(raw.matches("HTTP/1.1 200 OK").count(), 2, "{raw}");
    assert!(
        raw.contains("GET /one") && raw.contains("GET /two"),
        "{raw}"
    );
}

#[test]
fn http_1_0_closes_unless_asked_to_keep_alive() {
    let (addr, _exit) = echo_server();
    let raw = testutil::exchange(addr, "GET /x HTTP/1.0\r\n\r\n");
    assert!(raw.starts_with("HTTP/1.1 200 OK"), "{raw}");
    assert!(!raw.contains("Connection:"), "{raw}");
}

#[test]
fn reads_form_bodies_after_100_continue() {
    let (addr, _exit) = echo_server();
    let raw = testutil::exchange(
        addr,
        "POST /f?q=query HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: 6\r\nExpect: 100-continue\r\nConnection: close\r\n\r\nq=body",
    );
    assert!(
        raw.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK"),
        "{raw}"
    );
    assert!(raw.contains("POST /f q=body body=q=body"), "{raw}");
}

#[test]
fn head_gets_headers_without_body() {
    let (addr, _exit) = echo_server();
    let raw = testutil::exchange(
        addr,
        "HEAD /h HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(raw.ends_with("\r\n\r\n"), "{raw}");
    assert!(raw.contains("Content-Length: "), "{raw}");
}

#[test]
fn malformed_requests_get_400_naming_the_line() {
    let (addr, _exit) = echo_server();
    let raw = testutil::exchange(addr, "NONSENSE\r\n\r\n");
    assert!(raw.starts_with("HTTP/1.1 400 Bad Request"), "{raw}");
    assert!(raw.contains("malformed request line \"NONSENSE\""), "{raw}");
}

#[test]
fn chunked_request_bodies_are_refused_with_501() {
    let (addr, _exit) = echo_server();
    let raw = testutil::exchange(
        addr,
        "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    assert!(raw.starts_with("HTTP/1.1 501 Not Implemented"), "{raw}");
}

#[test]
fn respond_then_exit_answers_before_asking_to_exit() {
    let (addr, exit) = echo_server();
    assert_eq!(testutil::get(addr, "/exit").body, "bye");
    assert_eq!(exit.recv_timeout(TIMEOUT), Ok(7));
}

#[test]
fn abort_closes_without_an_answer() {
    let (addr, _exit) = echo_server();
    let raw = testutil::exchange(addr, "GET /abort HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(raw, "");
}

#[test]
fn client_gets_the_body_of_any_status() {
    let (addr, _exit) = echo_server();
    let body = get(addr, "path?q=1", TIMEOUT).unwrap();
    assert!(
        body.starts_with("GET /path q=1 body= from=127.0.0.1:"),
        "{body}"
    );
    assert_eq!(
        get(addr, "teapot", TIMEOUT),
        Ok("short and stout".to_string())
    );
}

#[test]
fn client_reports_refusal_in_go_words() {
    let addr = testutil::closed_port();
    let err = get(addr, "hostname", TIMEOUT).unwrap_err();
    assert_eq!(
        err,
        format!("Get \"http://{addr}/hostname\": dial tcp {addr}: connect: connection refused")
    );
}

#[test]
fn client_decodes_chunked_bodies() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        use std::io::{Read as _, Write as _};
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf).unwrap();
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n")
            .unwrap();
    });
    assert_eq!(get(addr, "x", TIMEOUT), Ok("abcde".to_string()));
    server.join().unwrap();
}

#[test]
fn query_values_follow_go_rules() {
    let req =
        Request::synthetic_get("/dial?request=echo%3Fmsg%3Dhi&bad=%zz&tries=3&tries=4").unwrap();
    assert_eq!(req.path, "/dial");
    assert_eq!(req.query_value("request").as_deref(), Some("echo?msg=hi"));
    assert_eq!(req.query_value("tries").as_deref(), Some("3"));
    assert_eq!(req.query_value("bad"), None);
    assert_eq!(req.remote_addr, "");
}

#[test]
fn unknown_status_codes_get_go_reason_text() {
    assert_eq!(reason(599), "status code 599");
    assert_eq!(reason(412), "Precondition Failed");
}

use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::testutil::{self, TIMEOUT, args, hostname, loopback};

/// A netexec on free ports: HTTP on every address, UDP on loopback.
fn netexec() -> (SocketAddr, SocketAddr, Running) {
    let running = start(Options {
        http_port: 0,
        udp_port: Some(0),
        udp_listen_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        http_override: None,
    })
    .unwrap();
    (loopback(running.http), running.udp[0], running)
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|err| panic!("{err}: {body}"))
}

#[test]
fn hostname_endpoints_return_the_hostname() {
    let (http, _, _running) = netexec();
    for path in ["/hostname", "/hostName"] {
        let got = testutil::get(http, path);
        assert_eq!((got.status, got.body), (200, hostname()), "{path}");
    }
}

#[test]
fn clientip_returns_the_peer_ip_and_port() {
    let (http, _, _running) = netexec();
    let mut stream = testutil::connect(http);
    let local = stream.local_addr().unwrap();
    use std::io::{Read as _, Write as _};
    stream
        .write_all(b"GET /clientip HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    assert_eq!(testutil::split_response(&raw).body, local.to_string());
    assert_eq!(local.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
}

#[test]
fn echo_echoes_with_optional_status() {
    let (http, _, _running) = netexec();
    let got = testutil::get(http, "/echo?msg=hello%20world");
    assert_eq!((got.status, got.body.as_str()), (200, "hello world"));
    let got = testutil::get(http, "/echo?msg=gone&code=404");
    assert_eq!((got.status, got.body.as_str()), (404, "gone"));
    let got = testutil::get(http, "/echo?msg=x&code=abc");
    assert_eq!(
        got.body,
        "argument 'code' must be an integer or empty, got \"abc\"\n"
    );
}

#[test]
fn root_returns_the_time_as_go_prints_it() {
    let (http, _, _running) = netexec();
    let got = testutil::get(http, "/some/unknown/path");
    assert!(
        got.body.starts_with("NOW: 20") && got.body.contains(" UTC m=+"),
        "{}",
        got.body
    );
}

#[test]
fn healthz_and_readyz_follow_the_udp_server() {
    let (http, _, _running) = netexec();
    assert_eq!(testutil::get(http, "/healthz").status, 200);
    assert_eq!(testutil::get(http, "/readyz").body, "ok");
    let without_udp = start(Options::default()).unwrap();
    let http = loopback(without_udp.http);
    assert_eq!(testutil::get(http, "/healthz").status, 412);
    assert_eq!(testutil::get(http, "/readyz").status, 412);
}

#[test]
fn header_returns_one_header_or_all_as_json() {
    let (http, _, _running) = netexec();
    let raw = testutil::exchange(
        http,
        "GET /header?key=x-forwarded-for HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 10.1.2.3\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(testutil::split_response(&raw).body, "10.1.2.3");
    let raw = testutil::exchange(
        http,
        "GET /header HTTP/1.1\r\nHost: t\r\nx-test: a\r\nX-Test: b\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        testutil::split_response(&raw).body,
        r#"{"Connection":["close"],"X-Test":["a","b"]}"#
    );
}

#[test]
fn redirect_sends_location_and_status() {
    let (http, _, _running) = netexec();
    let got = testutil::get(http, "/redirect?location=/echo%3Fmsg%3Dfoobar&code=307");
    assert_eq!(got.status, 307);
    assert!(
        got.head.contains("Location: /echo?msg=foobar"),
        "{}",
        got.head
    );
}

#[test]
fn shell_runs_the_command_and_reports_failure_as_go() {
    let (http, _, _running) = netexec();
    let got = testutil::get(http, "/shell?cmd=echo%20hi%3B%20echo%20err%201%3E%262");
    assert_eq!(got.body, r#"{"output":"hi\nerr\n"}"#);
    let got = testutil::get(http, "/shell?cmd=exit%203");
    assert_eq!(got.body, r#"{"error":"exit status 3"}"#);
}

#[test]
fn udp_answers_hostname_echo_and_clientip() {
    let (_, udp, _running) = netexec();
    assert_eq!(testutil::udp_ask(udp, "hostname\n").0, hostname());
    // Upstream lowercases the command, message included.
    assert_eq!(testutil::udp_ask(udp, "echo Hello There").0, "hello there");
    let (reply, local) = testutil::udp_ask(udp, "CLIENTIP");
    assert_eq!(reply, local.to_string());
}

#[test]
fn dial_http_reaches_another_netexec() {
    let (http, _, _running) = netexec();
    let (_, _, target) = netexec();
    let port = target.http.port();
    let got = testutil::get(
        http,
        &format!("/dial?request=hostname&protocol=http&host=127.0.0.1&port={port}&tries=2"),
    );
    assert_eq!(got.status, 200);
    assert_eq!(
        json(&got.body),
        serde_json::json!({"responses": [hostname(), hostname()]})
    );
    let got = testutil::get(
        http,
        &format!("/dial?request=echo%3Fmsg%3Dvia-dial&host=localhost&port={port}"),
    );
    assert_eq!(got.body, r#"{"responses":["via-dial"]}"#);
}

#[test]
fn dial_udp_reaches_another_netexec() {
    let (http, _, _running) = netexec();
    let (_, udp, _target) = netexec();
    let got = testutil::get(
        http,
        &format!(
            "/dial?request=hostname&protocol=udp&host=127.0.0.1&port={}",
            udp.port()
        ),
    );
    assert_eq!(
        json(&got.body),
        serde_json::json!({"responses": [hostname()]})
    );
}

#[test]
fn dial_to_a_closed_port_reports_errors_only() {
    let (http, _, _running) = netexec();
    let closed = testutil::closed_port();
    let got = testutil::get(
        http,
        &format!(
            "/dial?request=hostname&host=127.0.0.1&port={}&tries=2",
            closed.port()
        ),
    );
    assert_eq!(got.status, 200);
    let refused =
        format!("Get \"http://{closed}/hostname\": dial tcp {closed}: connect: connection refused");
    assert_eq!(
        json(&got.body),
        serde_json::json!({"errors": [refused, refused]})
    );

    let got = testutil::get(
        http,
        &format!(
            "/dial?request=hostname&protocol=udp&host=127.0.0.1&port={}",
            closed.port()
        ),
    );
    let errors = &json(&got.body)["errors"][0];
    assert!(
        errors
            .as_str()
            .unwrap()
            .ends_with(&format!("->{closed}: connection refused'")),
        "{errors}"
    );
}

#[test]
fn dial_rejects_bad_parameters_with_400() {
    let (http, _, _running) = netexec();
    let cases = [
        (
            "/dial?host=127.0.0.1&port=80",
            "request parameter not specified. <nil>\n",
        ),
        (
            "/dial?request=x&host=127.0.0.1&port=80&tries=many",
            "tries parameter is invalid. strconv.Atoi: parsing \"many\": invalid syntax\n",
        ),
        (
            "/dial?request=x&host=127.0.0.1&port=80&protocol=icmp",
            "unsupported protocol. icmp\n",
        ),
    ];
    for (target, message) in cases {
        let got = testutil::get(http, target);
        assert_eq!((got.status, got.body.as_str()), (400, message), "{target}");
    }
    let got = testutil::get(http, "/dial?request=x&host=127.0.0.1&port=http");
    assert_eq!(got.status, 400);
    assert!(
        got.body.starts_with("host and/or port param are invalid."),
        "{}",
        got.body
    );
}

#[test]
fn dial_sctp_fails_each_try_clearly() {
    let (http, _, _running) = netexec();
    let got = testutil::get(
        http,
        "/dial?request=hostname&protocol=sctp&host=127.0.0.1&port=9",
    );
    let body = json(&got.body);
    assert!(
        body["errors"][0]
            .as_str()
            .unwrap()
            .contains("SCTP is not available"),
        "{body}"
    );
    assert!(body.get("responses").is_none());
}

#[test]
fn exit_answers_then_exits_with_the_code() {
    let (http, _, running) = netexec();
    let got = testutil::get(http, "/exit?code=3&timeout=1s");
    assert_eq!((got.status, got.body.as_str()), (200, ""));
    assert_eq!(running.exit.recv_timeout(TIMEOUT), Ok(3));
}

#[test]
fn exit_without_timeout_and_shutdown_exit_at_once() {
    let (http, _, running) = netexec();
    assert_eq!(
        testutil::exchange(http, "GET /exit?code=5 HTTP/1.1\r\nHost: t\r\n\r\n"),
        ""
    );
    assert_eq!(running.exit.recv_timeout(TIMEOUT), Ok(5));
    let (http, _, running) = netexec();
    assert_eq!(
        testutil::exchange(http, "GET /shutdown HTTP/1.1\r\nHost: t\r\n\r\n"),
        ""
    );
    assert_eq!(running.wait(), 0);
}

#[test]
fn exit_rejects_a_bad_duration_and_keeps_serving() {
    let (http, _, running) = netexec();
    let got = testutil::get(http, "/exit?timeout=soon");
    assert_eq!(
        got.body,
        "argument 'timeout' must be a valid golang duration or empty, got \"soon\"\n"
    );
    assert!(running.exit.try_recv().is_err());
}

#[test]
fn http_override_serves_one_request_for_all() {
    let running = start(Options {
        http_override: Some("/echo?msg=fixed".to_string()),
        ..Options::default()
    })
    .unwrap();
    let got = testutil::get(loopback(running.http), "/hostname");
    assert_eq!(got.body, "fixed");
}

#[test]
fn udp_listen_addresses_are_parsed_and_deduplicated() {
    assert_eq!(
        parse_addresses("127.0.0.1,::1,127.0.0.1"),
        Ok(vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()])
    );
    assert_eq!(parse_addresses(""), Ok(vec![]));
    assert_eq!(
        parse_addresses("127.0.0.1,nope"),
        Err("invalid address \"nope\": expected an IP address".to_string())
    );
}

#[test]
fn bad_flags_exit_2_and_tls_exits_1() {
    for bad in [
        &["netexec", "--http-port=http"][..],
        &["netexec", "--udp-port=-5"],
        &["netexec", "--udp-listen-addresses=1.2.3"],
        &["netexec", "--no-such-flag"],
        &["netexec", "stray"],
    ] {
        assert_eq!(crate::run(&args(bad)), 2, "{bad:?}");
    }
    assert_eq!(
        crate::run(&args(&["netexec", "--tls-cert-file=/localhost.crt"])),
        1
    );
}

#[test]
fn run_returns_the_exit_code_an_endpoint_asks_for() {
    // Pick free ports, release them, and let `run` bind them: the window for a clash is tiny.
    let http_port = testutil::closed_port().port();
    let worker = thread::spawn(move || {
        crate::run(&args(&[
            "netexec",
            "-http-port",
            &http_port.to_string(),
            "--udp-port",
            "-1",
            "--sctp-port=9",
            "--v=2",
        ]))
    });
    let http = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), http_port);
    let deadline = Instant::now() + TIMEOUT;
    // Bounded wait for `run` to bind.
    while std::net::TcpStream::connect_timeout(&http, TIMEOUT).is_err() {
        assert!(Instant::now() < deadline, "netexec never listened");
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(testutil::get(http, "/healthz").status, 412);
    let _ = testutil::exchange(http, "GET /exit?code=4 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(worker.join().unwrap(), 4);
}

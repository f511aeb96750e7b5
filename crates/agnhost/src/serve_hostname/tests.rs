use std::io::Read as _;

use super::*;
use crate::testutil::{self, args, hostname, loopback};

fn options() -> Options {
    Options {
        tcp: false,
        udp: false,
        http: true,
        close: false,
        port: 0,
    }
}

#[test]
fn tcp_writes_the_hostname_and_closes() {
    let running = start(Options {
        tcp: true,
        http: false,
        ..options()
    })
    .unwrap();
    let mut stream = testutil::connect(loopback(running.tcp.unwrap()));
    let mut got = String::new();
    stream.read_to_string(&mut got).unwrap();
    assert_eq!(got, hostname());
}

#[test]
fn udp_answers_each_datagram_with_the_hostname() {
    let running = start(Options {
        udp: true,
        http: false,
        ..options()
    })
    .unwrap();
    let addr = loopback(running.udp.unwrap());
    for message in ["hello", "a longer request than sixteen bytes"] {
        assert_eq!(testutil::udp_ask(addr, message).0, hostname());
    }
}

#[test]
fn tcp_and_udp_serve_together() {
    let running = start(Options {
        tcp: true,
        udp: true,
        http: false,
        ..options()
    })
    .unwrap();
    assert!(running.tcp.is_some() && running.udp.is_some() && running.http.is_none());
}

#[test]
fn http_answers_any_path_with_the_hostname_and_no_newline() {
    let running = start(options()).unwrap();
    let got = testutil::get(loopback(running.http.unwrap()), "/anything?x=1");
    assert_eq!((got.status, got.body), (200, hostname()));
}

#[test]
fn close_flag_closes_each_http_connection() {
    let running = start(Options {
        close: true,
        ..options()
    })
    .unwrap();
    // A keep-alive request still gets `Connection: close` and an EOF after the answer.
    let raw = testutil::exchange(
        loopback(running.http.unwrap()),
        "GET / HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let got = testutil::split_response(&raw);
    assert!(got.head.contains("Connection: close"), "{}", got.head);
    assert_eq!(got.body, hostname());
}

#[test]
fn http_with_tcp_is_refused_as_upstream_does() {
    let err = start(Options {
        tcp: true,
        ..options()
    })
    .unwrap_err();
    assert!(matches!(err, Error::HttpWithRaw));
    // Through `run`, that is upstream's log.Fatal: exit 1.
    assert_eq!(
        crate::run(&args(&["serve-hostname", "--tcp", "--port=0"])),
        1
    );
}

#[test]
fn bad_flags_exit_2() {
    for bad in [
        &["serve-hostname", "--tcp=maybe"][..],
        &["serve-hostname", "--port=99999"],
        &["serve-hostname", "--bogus"],
        &["serve-hostname", "extra"],
    ] {
        assert_eq!(crate::run(&args(bad)), 2, "{bad:?}");
    }
}

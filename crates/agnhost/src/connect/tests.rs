use std::net::{IpAddr, Ipv4Addr, TcpListener, UdpSocket};

use super::*;
use crate::netexec;
use crate::testutil::{self, args};

const SHORT: Duration = Duration::from_millis(200);

#[test]
fn tcp_to_a_listening_port_exits_0() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let dest = listener.local_addr().unwrap().to_string();
    assert_eq!(connect("tcp", &dest, SHORT, "hostname"), Ok(()));
    assert_eq!(crate::run(&args(&["connect", &dest, "--timeout=1s"])), 0);
    assert_eq!(
        crate::run(&args(&[
            "connect",
            "-timeout",
            "1s",
            "-protocol=tcp",
            &dest
        ])),
        0
    );
}

#[test]
fn tcp_to_a_closed_port_is_refused_and_exits_1() {
    let dest = testutil::closed_port().to_string();
    assert_eq!(
        connect("tcp", &dest, SHORT, "hostname"),
        Err(Failure::Refused(None))
    );
    assert_eq!(Failure::Refused(None).to_string(), "REFUSED");
    assert_eq!(crate::run(&args(&["connect", &dest])), 1);
}

#[test]
fn tcp_timeouts_are_reported_as_timeout() {
    // A real TCP timeout needs a peer that drops SYNs: only a firewall rule (root) or a foreign
    // address could give one, and tests touch neither. So this pins the classification; the UDP
    // test below covers a real expired deadline.
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9);
    let deadline = io::Error::from(io::ErrorKind::TimedOut);
    assert_eq!(classify_tcp(addr, &deadline), Failure::Timeout(None));
    let kernel = io::Error::from_raw_os_error(110); // ETIMEDOUT
    assert_eq!(classify_tcp(addr, &kernel), Failure::Timeout(None));
    let unreachable = io::Error::from_raw_os_error(113); // EHOSTUNREACH
    assert_eq!(
        classify_tcp(addr, &unreachable).to_string(),
        "OTHER: dial tcp 127.0.0.1:9: connect: no route to host"
    );
    // An already-passed deadline times out without trying.
    let past = Instant::now().checked_sub(SHORT).unwrap();
    assert_eq!(
        connect_tcp_addr(addr, Some(past)).unwrap_err().kind(),
        io::ErrorKind::TimedOut
    );
}

#[test]
fn bad_destinations_are_unknown_or_dns() {
    assert_eq!(
        connect("tcp", "no-port", SHORT, "hostname"),
        Err(Failure::Unknown(
            "address no-port: missing port in address".to_string()
        ))
    );
    let failure = connect("tcp", "127.0.0.1:notaport", SHORT, "hostname").unwrap_err();
    assert!(matches!(failure, Failure::Dns(_)), "{failure}");
    assert_eq!(crate::run(&args(&["connect", "no-port"])), 1);
}

#[test]
fn udp_with_a_reply_exits_0() {
    let running = netexec::start(netexec::Options {
        http_port: 0,
        udp_port: Some(0),
        udp_listen_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        http_override: None,
    })
    .unwrap();
    let dest = running.udp[0].to_string();
    assert_eq!(
        connect("udp", &dest, Duration::from_secs(5), "hostname"),
        Ok(())
    );
    assert_eq!(
        crate::run(&args(&[
            "connect",
            "--protocol",
            "udp",
            "--timeout=5s",
            &dest
        ])),
        0
    );
}

#[test]
fn udp_to_a_closed_port_is_refused() {
    let closed = {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.local_addr().unwrap()
    };
    let failure = connect(
        "udp",
        &closed.to_string(),
        Duration::from_secs(5),
        "hostname",
    );
    let Err(Failure::Refused(Some(detail))) = failure else {
        panic!("{failure:?}");
    };
    assert!(
        detail.ends_with(&format!("->{closed}: connection refused")),
        "{detail}"
    );
}

#[test]
fn udp_without_a_reply_times_out() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dest = silent.local_addr().unwrap().to_string();
    let started = Instant::now();
    let failure = connect("udp", &dest, SHORT, "hostname").unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        failure
            .to_string()
            .starts_with("TIMEOUT: read udp 127.0.0.1:"),
        "{failure}"
    );
    assert!(failure.to_string().ends_with(": i/o timeout"), "{failure}");
    assert_eq!(
        crate::run(&args(&[
            "connect",
            "--protocol=udp",
            "--timeout=200ms",
            &dest
        ])),
        1
    );
}

#[test]
fn sctp_and_unknown_protocols_fail_with_1() {
    let failure = connect("sctp", "127.0.0.1:9", SHORT, "hostname").unwrap_err();
    assert!(matches!(failure, Failure::Other(_)), "{failure}");
    assert!(
        failure.to_string().contains("SCTP is not available"),
        "{failure}"
    );
    assert_eq!(
        connect("icmp", "127.0.0.1:9", SHORT, "hostname")
            .unwrap_err()
            .to_string(),
        "Unsupported protocol\nicmp"
    );
    assert_eq!(
        crate::run(&args(&["connect", "--protocol=icmp", "127.0.0.1:9"])),
        1
    );
}

#[test]
fn bad_command_lines_exit_2() {
    for bad in [
        &["connect"][..],
        &["connect", "127.0.0.1:1", "127.0.0.1:2"],
        &["connect", "--timeout=5", "127.0.0.1:1"],
        &["connect", "--bogus", "127.0.0.1:1"],
    ] {
        assert_eq!(crate::run(&args(bad)), 2, "{bad:?}");
    }
}

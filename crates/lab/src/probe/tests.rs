use std::net::TcpListener;

use k8s_openapi::api::core::v1::{ContainerPort, TCPSocketAction};

use super::*;

fn target() -> Target {
    Target {
        name: "default/p/c".into(),
        pod_ip: Some("127.0.0.1".into()),
        netns: "ns".into(),
        podnet: "/bin/podnet".into(),
        hostname: "p".into(),
        env: Vec::new(),
    }
}

fn container_with_port(name: &str, port: i32) -> Container {
    Container {
        name: "c".into(),
        ports: Some(vec![ContainerPort {
            name: Some(name.into()),
            container_port: port,
            ..Default::default()
        }]),
        ..Default::default()
    }
}

#[test]
fn timing_has_kubernetes_defaults_and_minimums() {
    let t = timing(&Probe::default());
    assert_eq!(t.period, Duration::from_secs(10));
    assert_eq!(t.timeout, Duration::from_secs(1));
    assert_eq!((t.success_threshold, t.failure_threshold), (1, 3));
    let t = timing(&Probe {
        period_seconds: Some(0),
        initial_delay_seconds: Some(2),
        failure_threshold: Some(1),
        ..Default::default()
    });
    assert_eq!(t.period, Duration::from_secs(1));
    assert_eq!(t.initial_delay, Duration::from_secs(2));
    assert_eq!(t.failure_threshold, 1);
}

#[test]
fn named_probe_ports_resolve_from_the_container() {
    let c = container_with_port("http", 8080);
    let probe = Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String("http".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(matches!(
        action(&probe, &c, &target()),
        Action::Tcp { port: 8080, .. }
    ));
    let probe = Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String("admin".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let Action::Broken(why) = action(&probe, &c, &target()) else {
        panic!("an unknown port name resolved");
    };
    assert!(why.contains("admin"), "{why}");
}

#[test]
fn exec_probes_run_inside_the_pod() {
    let probe = Probe {
        exec: Some(k8s_openapi::api::core::v1::ExecAction {
            command: Some(vec!["cat".into(), "/tmp/ready".into()]),
        }),
        ..Default::default()
    };
    let Action::Exec { argv } = action(&probe, &Container::default(), &target()) else {
        panic!("not an exec action");
    };
    assert_eq!(
        argv.join(" "),
        "ip netns exec ns /bin/podnet lab container-init --hostname p -- cat /tmp/ready"
    );
}

#[test]
fn http_probes_succeed_on_2xx_and_3xx_only() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        for (status, stream) in ["200 OK", "302 Found", "500 Oops"]
            .into_iter()
            .zip(listener.incoming())
        {
            let stream = stream.unwrap();
            let mut reader = BufReader::new(&stream);
            let mut request = String::new();
            while !request.ends_with("\r\n\r\n") {
                reader.read_line(&mut request).unwrap();
            }
            assert!(request.starts_with("GET /healthz HTTP/1.1"), "{request}");
            let mut writer = &stream;
            write!(writer, "HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").unwrap();
            // Close only after the prober did: closing with anything unread would reset the
            // connection under the prober's read.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        }
    });
    let probe = |_| http_get("127.0.0.1", port, "/healthz", &[], Duration::from_secs(2));
    assert_eq!(probe(0), Ok(()));
    assert_eq!(probe(1), Ok(()));
    let e = probe(2).unwrap_err();
    assert!(e.contains("500"), "{e}");
    server.join().unwrap();
    // Nothing listens on port 1. (Not the server's port once it closed: a test running
    // beside this one may fork while the listener is open, and the child's copy, alive until
    // it execs, would accept the connection and then reset it.)
    let e = http_get("127.0.0.1", 1, "/", &[], Duration::from_secs(1)).unwrap_err();
    assert!(e.contains("dial tcp"), "{e}");
}

#[test]
fn exec_probes_fail_on_a_nonzero_exit_and_on_timeout() {
    assert_eq!(exec(&["true".into()], &[], Duration::from_secs(5)), Ok(()));
    assert!(exec(&["false".into()], &[], Duration::from_secs(5)).is_err());
    let started = Instant::now();
    let e = exec(
        &["sleep".into(), "5".into()],
        &[],
        Duration::from_millis(200),
    )
    .unwrap_err();
    assert!(e.contains("timed out"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

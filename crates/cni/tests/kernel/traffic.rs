//! Real packets: pods on a bridge and on ptp routes reach each other and their gateway, over
//! IPv4 and IPv6; hostPorts answer from the node.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use podnet_testkit::Netns;
use serde_json::json;

use crate::{Node, first_ip};

#[test]
fn bridge_pods_ping_each_other_and_the_gateway() {
    let node = Node::bridge("10.99.1.0/24");
    let (a, b) = (Netns::new("a"), Netns::new("b"));
    let ra = node.add("pod-a", &a);
    let rb = node.add("pod-b", &b);
    assert!(b.ping(&first_ip(&ra), 3), "b cannot reach a");
    assert!(a.ping(&first_ip(&rb), 3), "a cannot reach b");
    assert!(a.ping("10.99.1.1", 3), "a cannot reach its gateway");
    // The pod end is named CNI_IFNAME and has the MTU on both ends.
    assert!(a.link_names().contains(&"eth0".to_owned()));
    assert_eq!(
        node.ns.ip_json(&["link", "show", "cni0"])[0]["operstate"],
        "UP"
    );
}

#[test]
fn dual_stack_pods_get_one_address_per_family_and_reach_each_other_over_both() {
    let mut node = Node::bridge("10.99.2.0/24");
    node.conf["ipam"]["ranges"] =
        json!([[{"subnet": "10.99.2.0/24"}], [{"subnet": "fd00:99:2::/64"}]]);
    node.conf["mtu"] = json!(1400);
    let (a, b) = (Netns::new("a"), Netns::new("b"));
    let ra = node.add("pod-a", &a);
    node.add("pod-b", &b);
    let ips: Vec<&str> = ra["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["address"].as_str().unwrap())
        .collect();
    assert_eq!(ips.len(), 2, "{ra}");
    assert!(
        ips[0].starts_with("10.99.2.") && ips[1].starts_with("fd00:99:2::"),
        "{ips:?}"
    );
    let v6 = ips[1].split('/').next().unwrap();
    // No DAD wait: the address is usable at once (a "tentative" flag would make ping fail).
    assert!(b.ping(v6, 2), "b cannot reach a over IPv6");
    assert!(b.ping("fd00:99:2::1", 2), "b cannot reach the IPv6 gateway");
    assert_eq!(a.ip_json(&["link", "show", "eth0"])[0]["mtu"], 1400);
    let host_end = node.veths().into_iter().next().unwrap();
    assert_eq!(
        node.ns.ip_json(&["link", "show", &host_end])[0]["mtu"],
        1400
    );
    assert_eq!(
        a.exec("sysctl", &["-n", "net.ipv6.conf.eth0.accept_dad"])
            .1
            .trim(),
        "0"
    );
}

#[test]
fn ptp_pods_are_routed_with_a_host_route_each_and_reach_each_other() {
    let mut node = Node::bridge("10.99.3.0/24");
    node.conf["mode"] = json!("ptp");
    node.conf["ipMasq"] = json!(true);
    let (a, b) = (Netns::new("a"), Netns::new("b"));
    let ra = node.add("pod-a", &a);
    let rb = node.add("pod-b", &b);
    assert!(first_ip(&ra).starts_with("10.99.3."));
    assert_eq!(
        ra["ips"][0]["address"].as_str().unwrap().split('/').nth(1),
        Some("32"),
        "{ra}"
    );
    assert!(
        !node.ns.link_names().contains(&"cni0".to_owned()),
        "ptp must not create a bridge"
    );
    let routes = node.ns.ip(&["route"]);
    assert!(
        routes.contains(&format!("{} dev pn", first_ip(&ra))),
        "no host route to a: {routes}"
    );
    assert!(b.ping(&first_ip(&ra), 3), "b cannot reach a");
    assert!(a.ping(&first_ip(&rb), 3), "a cannot reach b");
    assert!(a.ping("10.99.3.1", 3), "a cannot reach its gateway");
    // Masquerade skips the whole pod subnet, not just the pod's own /32.
    let (_, skip, _) = node.ns.exec(
        "nft",
        &["list", "set", "inet", "podnet_cni", "masq_skip_v4"],
    );
    assert!(
        skip.contains(&format!("{} . 10.99.3.0/24", first_ip(&ra))),
        "{skip}"
    );
}

#[test]
fn host_port_forwards_from_the_node_to_the_pod() {
    let mut node = Node::bridge("10.99.4.0/24");
    node.conf["capabilities"] = json!({"portMappings": true});
    node.conf["runtimeConfig"] =
        json!({"portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]});
    let pod = Netns::new("web");
    let r = node.add("web", &pod);
    let listener = pod.run(|| TcpListener::bind("0.0.0.0:80")).unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(b"hello from the pod").unwrap();
    });
    // From the node itself to its own gateway address on the host port.
    let got = node.ns.run(|| {
        let mut s = TcpStream::connect_timeout(
            &"10.99.4.1:18080".parse().unwrap(),
            Duration::from_secs(3),
        )?;
        let mut buf = String::new();
        s.read_to_string(&mut buf)?;
        std::io::Result::Ok(buf)
    });
    server.join().unwrap();
    assert_eq!(got.unwrap(), "hello from the pod");
    assert!(
        node.nft_table().contains("dnat ip to 10.99.4."),
        "{}",
        node.nft_table()
    );
    // DEL without the mappings (the runtime need not resend them) still removes the rules.
    let mut plain = node.conf.clone();
    plain.as_object_mut().unwrap().remove("runtimeConfig");
    let out = node.call_with("DEL", "web", "eth0", Some(pod.path()), &plain);
    assert_eq!(out.code, 0, "{}", out.stdout);
    let table = node.nft_table();
    assert!(
        !table.contains("18080") && !table.contains("dnat"),
        "rules left after DEL: {table}"
    );
    let _ = r;
}

#[test]
fn ip_masq_hides_pods_behind_the_node_address_outside_the_pod_network() {
    let mut node = Node::bridge("10.99.5.0/24");
    node.conf["ipMasq"] = json!(true);
    let pod = Netns::new("pod");
    let outside = Netns::new("out");
    // The outside host: a veth to the node, 192.0.2.0/24, no route back to the pod network.
    let peer = format!("/run/netns/{}", outside.name());
    node.ns.ip(&[
        "link", "add", "uplink", "type", "veth", "peer", "name", "eth0", "netns", &peer,
    ]);
    node.ns
        .ip(&["addr", "add", "192.0.2.1/24", "dev", "uplink"]);
    node.ns.ip(&["link", "set", "uplink", "up"]);
    outside.ip(&["addr", "add", "192.0.2.2/24", "dev", "eth0"]);
    outside.ip(&["link", "set", "eth0", "up"]);
    node.add("pod", &pod);
    let listener = outside.run(|| TcpListener::bind("192.0.2.2:8080")).unwrap();
    let server =
        std::thread::spawn(move || listener.accept().map(|(_, peer)| peer.ip().to_string()));
    let connected = pod.run(|| {
        TcpStream::connect_timeout(&"192.0.2.2:8080".parse().unwrap(), Duration::from_secs(3))
    });
    assert!(
        connected.is_ok(),
        "pod cannot reach the outside host: {connected:?}"
    );
    assert_eq!(
        server.join().unwrap().unwrap(),
        "192.0.2.1",
        "source was not masqueraded to the node"
    );
}

/// A pod answering every TCP connection on port 80 with `name`, for `conns` connections.
fn serve_name(pod: &Netns, name: &'static str, conns: usize) -> std::thread::JoinHandle<()> {
    let listener = pod.run(|| TcpListener::bind("0.0.0.0:80")).unwrap();
    std::thread::spawn(move || {
        for _ in 0..conns {
            let (mut conn, _) = listener.accept().unwrap();
            conn.write_all(name.as_bytes()).unwrap();
        }
    })
}

fn fetch_from(node: &Node, addr: &str) -> String {
    let addr = addr.parse().unwrap();
    node.ns
        .run(|| {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
            let mut buf = String::new();
            s.read_to_string(&mut buf)?;
            std::io::Result::Ok(buf)
        })
        .unwrap_or_else(|e| panic!("{addr}: {e}"))
}

#[test]
fn host_ports_share_a_port_across_host_ips_and_answer_on_localhost() {
    let node = Node::bridge("10.99.7.0/24");
    node.ns.ip(&["addr", "add", "192.0.2.10/32", "dev", "lo"]);
    node.ns.ip(&["addr", "add", "192.0.2.11/32", "dev", "lo"]);
    let with_ports = |mappings: serde_json::Value| {
        let mut conf = node.conf.clone();
        conf["capabilities"] = json!({"portMappings": true});
        conf["runtimeConfig"] = json!({ "portMappings": mappings });
        conf
    };
    let (a, b, c) = (Netns::new("a"), Netns::new("b"), Netns::new("c"));
    for (cid, pod, mappings) in [
        (
            "a",
            &a,
            json!([{"hostPort": 18090, "containerPort": 80, "protocol": "tcp", "hostIP": "192.0.2.10"}]),
        ),
        (
            "b",
            &b,
            json!([{"hostPort": 18090, "containerPort": 80, "protocol": "tcp", "hostIP": "192.0.2.11"}]),
        ),
        (
            "c",
            &c,
            json!([{"hostPort": 18091, "containerPort": 80, "protocol": "tcp"}]),
        ),
    ] {
        let out = node.call_with("ADD", cid, "eth0", Some(pod.path()), &with_ports(mappings));
        assert_eq!(out.code, 0, "ADD {cid}: {}", out.stdout);
    }
    let servers = [
        serve_name(&a, "a", 1),
        serve_name(&b, "b", 1),
        serve_name(&c, "c", 2),
    ];
    assert_eq!(fetch_from(&node, "192.0.2.10:18090"), "a");
    assert_eq!(fetch_from(&node, "192.0.2.11:18090"), "b");
    assert_eq!(
        fetch_from(&node, "127.0.0.1:18091"),
        "c",
        "hostPort on localhost"
    );
    assert_eq!(fetch_from(&node, "10.99.7.1:18091"), "c");
    for s in servers {
        s.join().unwrap();
    }
    // Removing one of the two sharing a port leaves the other's entry alone.
    node.del("a", Some(&a), None);
    let table = node.nft_table();
    assert!(table.contains("192.0.2.11 . tcp . 18090"), "{table}");
    assert!(!table.contains("192.0.2.10 . tcp . 18090"), "{table}");
}

#[test]
fn a_udp_client_follows_a_host_port_to_its_new_pod() {
    use std::net::UdpSocket;
    let node = Node::bridge("10.99.8.0/24");
    let mut conf = node.conf.clone();
    conf["capabilities"] = json!({"portMappings": true});
    conf["runtimeConfig"] =
        json!({"portMappings": [{"hostPort": 18095, "containerPort": 53, "protocol": "udp"}]});
    let ask = |client: &UdpSocket| -> Option<String> {
        let mut buf = [0u8; 64];
        for _ in 0..5 {
            client.send_to(b"who", "10.99.8.1:18095").ok()?;
            if let Ok(n) = client.recv(&mut buf) {
                return Some(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        None
    };
    let answer = |pod: &Netns, name: &'static str| {
        let sock = pod.run(|| UdpSocket::bind("0.0.0.0:53")).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while let Ok((_, from)) = sock.recv_from(&mut buf) {
                let _ = sock.send_to(name.as_bytes(), from);
            }
        })
    };
    let old = Netns::new("old");
    let out = node.call_with("ADD", "old", "eth0", Some(old.path()), &conf);
    assert_eq!(out.code, 0, "{}", out.stdout);
    let _old_server = answer(&old, "old");
    // One client socket for the whole test: its flow is what conntrack remembers.
    let client = node.ns.run(|| UdpSocket::bind("10.99.8.1:0")).unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert_eq!(ask(&client).as_deref(), Some("old"));
    node.del("old", Some(&old), None);
    drop(old);

    let new = Netns::new("new");
    let out = node.call_with("ADD", "new", "eth0", Some(new.path()), &conf);
    assert_eq!(out.code, 0, "{}", out.stdout);
    let _new_server = answer(&new, "new");
    assert_eq!(
        ask(&client).as_deref(),
        Some("new"),
        "the client's flow still leads to the old pod"
    );
}

//! The service proxy at scale: N Services × 10 endpoints (N = 100, 1k, 10k, 30k) programmed
//! into a throwaway node namespace by the agent's own service proxy (compile, render, then
//! rules through `nft -f -` and elements through netlink; a change recompiles only the
//! Services whose objects changed), and in the same run:
//!
//! - full sync time (compile + render + load), and the load alone;
//! - one added Service and one changed endpoint applied as a diff on top of N;
//! - TCP connect latency from a pod through a ClusterIP (median, p99) with N installed, as a
//!   ratio to N = 100, and straight to the pod IP as the floor;
//! - requests per second (a new connection per request) through the ClusterIP against straight
//!   to the pod IP;
//! - the memory the proxy's inputs and compiled state take at N (RSS growth of this process).
//!
//! Topology: a node namespace routing between client pods (a fresh one per phase, so no phase
//! meets another's conntrack or TIME_WAIT entries) and a server pod (10.244.2.2–11, one TCP
//! server on all ten; clients close first, as HTTP clients do). The measured Service's ten endpoints are the
//! server's addresses; every other Service's endpoints are addresses nobody has.
//!
//! Usage: `services-scale [--sizes 100,1000,10000,30000] [--connects 2000] [--seconds 3]`.
//! Needs root; everything happens in throwaway namespaces removed at exit.

use podnet_agent::serve::Metrics;
use podnet_agent::services::ServiceProxy;
use podnet_bench::{percentile, rss_kib, wait_reachable};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use podnet_model::service::NodeFacts;
use podnet_testkit::Netns;

const ENDPOINTS_PER_SERVICE: u32 = 10;
const SERVER_PORT: u16 = 8080;
const SERVER_FIRST_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 2);
/// The measured Service's address: the first of the Service CIDR.
const MEASURED_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

struct Options {
    sizes: Vec<u32>,
    connects: usize,
    seconds: u64,
}

fn options() -> Result<Options> {
    let mut o = Options {
        sizes: vec![100, 1000, 10_000, 30_000],
        connects: 2000,
        seconds: 3,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--sizes" => {
                o.sizes = value
                    .split(',')
                    .map(|s| {
                        s.parse()
                            .with_context(|| format!("--sizes: {s:?} is not a number"))
                    })
                    .collect::<Result<_>>()?
            }
            "--connects" => o.connects = value.parse().context("--connects: expected a number")?,
            "--seconds" => o.seconds = value.parse().context("--seconds: expected a number")?,
            other => bail!("unknown flag {other:?}: expected --sizes, --connects or --seconds"),
        }
    }
    if o.sizes.is_empty() || o.sizes.iter().any(|n| *n == 0 || *n > 60_000) {
        bail!("--sizes: each size must be 1..=60000");
    }
    Ok(o)
}

fn main() -> Result<()> {
    let o = options()?;
    let lab = Topology::new(o.sizes.len() + 2)?;
    let mut phase = lab.clients.iter();
    let mut next_client = move || phase.next().context("out of client pods");
    let stop = Arc::new(AtomicBool::new(false));
    lab.start_server(Arc::clone(&stop))?;
    let facts = NodeFacts {
        name: "node-1".into(),
        zone: None,
        node_ips: vec!["192.168.100.11".parse()?],
        cluster_cidrs: vec!["10.244.0.0/16".parse()?],
        service_cidrs: vec!["10.96.0.0/12".parse()?],
    };
    let metrics = Metrics::new();
    // The direct baseline takes the endpoints in turn, as the ClusterIP spreads over them:
    // the same address and port pairs, so TIME_WAIT reuse hits both alike.
    let direct: Vec<SocketAddr> = (0..ENDPOINTS_PER_SERVICE)
        .map(|k| SocketAddr::from((Ipv4Addr::from(u32::from(SERVER_FIRST_IP) + k), SERVER_PORT)))
        .collect();
    let vip = [SocketAddr::from((MEASURED_VIP, 80))];
    let client = next_client()?;
    wait_reachable(client, direct[0])?;

    // The direct path first, before any rule exists, and again at the end.
    let before = requests_per_second(client, &direct, o.seconds)?;
    println!("services-scale: {ENDPOINTS_PER_SERVICE} endpoints per Service, TCP");
    println!("direct to the pod IPs, no rules loaded: {before:.0} rps");
    println!(
        "{:>6} {:>9} {:>9} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>8} {:>9}",
        "N",
        "sync_ms",
        "load_ms",
        "add_ms",
        "ep_ms",
        "conn_p50",
        "conn_p99",
        "p50/N100",
        "p99/N100",
        "rps",
        "mem_MiB"
    );
    let mut base: Option<(f64, f64)> = None;
    let mut rps_vip = Vec::new();
    for &n in &o.sizes {
        let rss_before = rss_kib();
        let (services, slices) = generate(n);
        // The agent's own service proxy, in the node: tracker, render, rules through
        // `nft -f`, elements through its netlink socket, kept open.
        let mut proxy = ServiceProxy::new();
        let started = Instant::now();
        in_node(&lab.node, || {
            proxy.sync(&services, &slices, &facts, &metrics)
        })?
        .context("loading the full ruleset")?;
        let sync = started.elapsed();
        let steps = proxy.last_steps();
        eprintln!(
            "N={n}: compile and render {:.1} ms, rules {:.1} ms, elements {:.1} ms",
            ms(sync.saturating_sub(steps.rules + steps.elements + steps.cleanup)),
            ms(steps.rules),
            ms(steps.elements)
        );
        let load = steps.rules + steps.elements + steps.cleanup;
        let mem_mib = rss_kib().saturating_sub(rss_before) as f64 / 1024.0;

        let add = timed_change(
            &lab,
            &mut proxy,
            &facts,
            &metrics,
            &services,
            &slices,
            Change::AddService,
        )?;
        let ep = timed_change(
            &lab,
            &mut proxy,
            &facts,
            &metrics,
            &services,
            &slices,
            Change::MoveEndpoint,
        )?;

        let client = next_client()?;
        wait_reachable(client, vip[0])?;
        let lat = connect_latencies(client, &vip, o.connects)?;
        let (p50, p99) = (percentile(&lat, 50.0), percentile(&lat, 99.0));
        let (b50, b99) = *base.get_or_insert((p50, p99));
        let rps = requests_per_second(client, &vip, o.seconds)?;
        rps_vip.push((n, rps));
        println!(
            "{n:>6} {:>9.1} {:>9.1} {:>8.2} {:>8.2} {:>8.0}µs {:>8.0}µs {:>9.3} {:>9.3} {:>8.0} {:>9.1}",
            ms(sync),
            ms(load),
            ms(add),
            ms(ep),
            p50,
            p99,
            p50 / b50,
            p99 / b99,
            rps,
            mem_mib
        );
        drop((proxy, services, slices));
    }

    let largest = o.sizes.iter().copied().max().unwrap_or(0);
    if largest > 100 {
        alternating_rounds(&facts, largest, o.connects, &vip, &direct, &stop)?;
    }

    let client = next_client()?;
    let lat = connect_latencies(client, &direct, o.connects)?;
    let rps_direct = requests_per_second(client, &direct, o.seconds)?;
    println!(
        "direct to the pod IPs: connect p50 {:.0}µs p99 {:.0}µs, {rps_direct:.0} rps",
        percentile(&lat, 50.0),
        percentile(&lat, 99.0)
    );
    for (n, rps) in rps_vip {
        println!(
            "ClusterIP / direct (no rules loaded) requests per second at N={n}: {:.3} (/ direct after: {:.3})",
            rps / before,
            rps / rps_direct
        );
    }
    println!(
        "(first sizes' connect latencies are the N=100 baseline; goals: sync 10k ≤ 1 s, 30k ≤ 3 s, one change at 30k ≤ 10 ms, p99 at 30k ≤ 1.1× N=100, ClusterIP ≥ 0.95× direct)"
    );
    stop.store(true, Ordering::Relaxed);
    Ok(())
}

/// Connect latency with 100 and with `largest` Services installed, side by side: two node
/// namespaces loaded once, measured in 20 alternating rounds, so that drift on a shared
/// machine hits both alike (the per-size figures above are measured minutes apart). Then,
/// with `largest` loaded, requests per second through the ClusterIP and straight to the
/// pods in alternating rounds, each from a fresh client pod (one pod's connections would
/// reuse address and port pairs, and their conntrack and TIME_WAIT entries, from round to
/// round: ten times as often through the one ClusterIP as to the ten pods).
const RPS_ROUNDS: usize = 10;

fn alternating_rounds(
    facts: &NodeFacts,
    largest: u32,
    connects: usize,
    vip: &[SocketAddr],
    direct: &[SocketAddr],
    stop: &Arc<AtomicBool>,
) -> Result<()> {
    let mut sides = Vec::new();
    for n in [100, largest] {
        let lab = Topology::new(1 + 2 * RPS_ROUNDS)?;
        lab.start_server(Arc::clone(stop))?;
        let (services, slices) = generate(n);
        lab.node
            .run(|| ServiceProxy::new().sync(&services, &slices, facts, &Metrics::new()))
            .context("loading a ruleset for the alternating rounds")?;
        wait_reachable(&lab.clients[0], vip[0])?;
        sides.push((n, lab, Vec::with_capacity(connects)));
    }
    const ROUNDS: usize = 20;
    for _ in 0..ROUNDS {
        for (_, lab, samples) in &mut sides {
            samples.extend(connect_latencies(
                &lab.clients[0],
                vip,
                connects.div_ceil(ROUNDS),
            )?);
        }
    }
    let stats: Vec<(u32, f64, f64)> = sides
        .iter_mut()
        .map(|(n, _, samples)| {
            samples.sort_by(f64::total_cmp);
            (*n, percentile(samples, 50.0), percentile(samples, 99.0))
        })
        .collect();
    if let [(_, s50, s99), (n, b50, b99)] = stats.as_slice() {
        println!(
            "alternating rounds ({ROUNDS} × {} connects each): N=100 p50 {s50:.0}µs p99 {s99:.0}µs, \
             N={n} p50 {b50:.0}µs p99 {b99:.0}µs: ratio p50 {:.3} p99 {:.3}",
            connects.div_ceil(ROUNDS),
            b50 / s50,
            b99 / s99
        );
    }

    let (n, lab, _) = &sides[1];
    let (mut through_vip, mut straight) = (0.0, 0.0);
    for round in 0..RPS_ROUNDS {
        let (a, b) = (&lab.clients[1 + 2 * round], &lab.clients[2 + 2 * round]);
        wait_reachable(a, vip[0])?;
        wait_reachable(b, direct[0])?;
        through_vip += requests_per_second(a, vip, 1)?;
        straight += requests_per_second(b, direct, 1)?;
    }
    println!(
        "alternating rounds ({RPS_ROUNDS} × 1 s each) at N={n}: ClusterIP {:.0} rps, direct {:.0} rps: ratio {:.3}",
        through_vip / RPS_ROUNDS as f64,
        straight / RPS_ROUNDS as f64,
        through_vip / straight
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A node namespace routing between a client pod and a server pod.
struct Topology {
    node: Netns,
    /// One client pod per measurement phase: its connections never share an address and
    /// port pair (and so a conntrack or TIME_WAIT entry) with another phase's.
    clients: Vec<Netns>,
    server: Netns,
}

impl Topology {
    fn new(phases: usize) -> Result<Topology> {
        let t = Topology {
            node: Netns::new("svcnode"),
            clients: (0..phases).map(|_| Netns::new("svcclient")).collect(),
            server: Netns::new("svcserver"),
        };
        let mut pods: Vec<(&Netns, String, String, String)> = t
            .clients
            .iter()
            .enumerate()
            .map(|(k, c)| {
                let net = 10 + k;
                (
                    c,
                    format!("vc{k}"),
                    format!("10.244.{net}.1/24"),
                    format!("10.244.{net}.2"),
                )
            })
            .collect();
        pods.push((
            &t.server,
            "vs".into(),
            "10.244.2.1/24".into(),
            SERVER_FIRST_IP.to_string(),
        ));
        for (pod, link, gw, first) in &pods {
            let (link, gw) = (link.as_str(), gw.as_str());
            t.node.ip(&[
                "link",
                "add",
                link,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                pod.name(),
            ]);
            t.node.ip(&["addr", "add", gw, "dev", link]);
            t.node.ip(&["link", "set", link, "up"]);
            pod.ip(&["addr", "add", &format!("{first}/24"), "dev", "eth0"]);
            pod.ip(&["link", "set", "eth0", "up"]);
            let gw_ip = gw.split('/').next().unwrap_or_default();
            pod.ip(&["route", "add", "default", "via", gw_ip]);
        }
        for i in 1..ENDPOINTS_PER_SERVICE {
            let ip = Ipv4Addr::from(u32::from(SERVER_FIRST_IP) + i);
            t.server
                .ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
        }
        let (ok, _, err) = t.node.exec("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
        if !ok {
            bail!("enabling forwarding in the node namespace: {err}");
        }
        Ok(t)
    }

    /// A TCP server on every server address: reads a request, answers, closes.
    fn start_server(&self, stop: Arc<AtomicBool>) -> Result<()> {
        let listener = self
            .server
            .run(|| TcpListener::bind(("0.0.0.0", SERVER_PORT)))
            .context("binding the server")?;
        for _ in 0..2 {
            let listener = listener.try_clone()?;
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    if let Ok(mut s) = stream {
                        let mut buf = [0u8; 512];
                        let _ = s.read(&mut buf);
                        let _ = s.write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        );
                    }
                }
            });
        }
        Ok(())
    }
}

/// `count` sequential TCP connects from `ns` to the addresses `to` in turn, in microseconds,
/// sorted.
fn connect_latencies(ns: &Netns, to: &[SocketAddr], count: usize) -> Result<Vec<f64>> {
    ns.run(|| {
        let mut out = Vec::with_capacity(count);
        for to in to.iter().cycle().take(count) {
            let started = Instant::now();
            let s = TcpStream::connect_timeout(to, Duration::from_secs(2))
                .with_context(|| format!("connecting to {to}"))?;
            out.push(started.elapsed().as_secs_f64() * 1e6);
            drop(s);
        }
        out.sort_by(f64::total_cmp);
        Ok(out)
    })
}

/// Requests per second from two client threads in `ns`, each request on a new connection, to
/// the addresses `to` in turn.
fn requests_per_second(ns: &Netns, to: &[SocketAddr], seconds: u64) -> Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..2 {
            let (done, failed) = (Arc::clone(&done), Arc::clone(&failed));
            scope.spawn(move || {
                ns.run(|| {
                    let until = Instant::now() + Duration::from_secs(seconds);
                    for to in to.iter().cycle() {
                        if Instant::now() >= until {
                            break;
                        }
                        match request(*to) {
                            Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                            Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                })
            });
        }
    });
    let failed = failed.load(Ordering::Relaxed);
    if failed > 0 {
        bail!("{failed} requests to {to:?} failed");
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// One request and its whole answer, then the client closes.
fn request(to: SocketAddr) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")?;
    let mut got = Vec::with_capacity(128);
    let mut buf = [0u8; 128];
    while !got.ends_with(b"\r\n\r\nok") {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::Error::other("closed before the whole answer"));
        }
        got.extend_from_slice(&buf[..n]);
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Change {
    AddService,
    MoveEndpoint,
}

/// Applies one change on top of the loaded state through the agent's service proxy, as a
/// watch cache hands it over (every other object the same `Arc` as before), times it, then
/// puts the old state back.
fn timed_change(
    lab: &Topology,
    proxy: &mut ServiceProxy,
    facts: &NodeFacts,
    metrics: &Metrics,
    original_services: &[Arc<Service>],
    original_slices: &[Arc<EndpointSlice>],
    change: Change,
) -> Result<Duration> {
    let mut services = original_services.to_vec();
    let mut slices = original_slices.to_vec();
    match change {
        Change::AddService => {
            let n = u32::try_from(services.len()).unwrap_or(u32::MAX);
            let (s, e) = service_with_endpoints(n + 1, fake_endpoints(n + 1));
            services.push(Arc::new(s));
            slices.push(Arc::new(e));
        }
        Change::MoveEndpoint => {
            // The last Service's first endpoint moves to another address.
            if let Some(last) = slices.last_mut() {
                let mut slice = EndpointSlice::clone(last);
                if let Some(ep) = slice.endpoints.as_mut().and_then(|e| e.first_mut()) {
                    ep.addresses = vec!["10.250.255.254".into()];
                }
                slice.metadata.resource_version = Some("2".into());
                *last = Arc::new(slice);
            }
        }
    }
    let started = Instant::now();
    in_node(&lab.node, || proxy.sync(&services, &slices, facts, metrics))?
        .context("applying one change")?;
    let took = started.elapsed();
    let steps = proxy.last_steps();
    eprintln!(
        "  {change:?}: {:.2} ms: compile and render {:.2} ms, rules {:.2} ms, elements {:.2} ms, cleanup {:.2} ms",
        ms(took),
        ms(took.saturating_sub(steps.rules + steps.elements + steps.cleanup)),
        ms(steps.rules),
        ms(steps.elements),
        ms(steps.cleanup)
    );
    in_node(&lab.node, || {
        proxy.sync(original_services, original_slices, facts, metrics)
    })?
    .context("undoing the change")?;
    Ok(took)
}

/// Runs `f` on this thread inside the node's namespace, as the agent syncs on a thread of
/// its own that lives there: a thread made per sync would add its start and its first
/// allocations (a fresh malloc arena: page faults) to every figure, about 5 ms at 30k.
fn in_node<T>(node: &Netns, f: impl FnOnce() -> T) -> Result<T> {
    podnet_kernel::netns::visit(node.file(), f).context("entering the node's namespace")
}

/// `n` Services; the first is the measured one (endpoints: the server's addresses). Shared,
/// as a watch cache holds them.
fn generate(n: u32) -> (Vec<Arc<Service>>, Vec<Arc<EndpointSlice>>) {
    (0..n)
        .map(|i| {
            let endpoints = if i == 0 {
                (0..ENDPOINTS_PER_SERVICE)
                    .map(|k| Ipv4Addr::from(u32::from(SERVER_FIRST_IP) + k))
                    .collect()
            } else {
                fake_endpoints(i)
            };
            let (service, slice) = service_with_endpoints(i, endpoints);
            (Arc::new(service), Arc::new(slice))
        })
        .unzip()
}

/// Ten addresses nobody has, distinct per Service.
fn fake_endpoints(i: u32) -> Vec<Ipv4Addr> {
    (0..ENDPOINTS_PER_SERVICE)
        .map(|k| Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + i * 16 + k))
        .collect()
}

/// Service `svc-i` (port 80 → 8080/TCP) with its EndpointSlice.
fn service_with_endpoints(i: u32, endpoints: Vec<Ipv4Addr>) -> (Service, EndpointSlice) {
    let name = format!("svc-{i}");
    let vip = IpAddr::V4(Ipv4Addr::from(u32::from(MEASURED_VIP) + i));
    let service = Service {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some("bench".into()),
            resource_version: Some("1".into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: Some(vip.to_string()),
            cluster_ips: Some(vec![vip.to_string()]),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let slice = EndpointSlice {
        metadata: ObjectMeta {
            name: Some(format!("{name}-abcde")),
            namespace: Some("bench".into()),
            labels: Some([("kubernetes.io/service-name".to_owned(), name)].into()),
            resource_version: Some("1".into()),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: Some(
            endpoints
                .into_iter()
                .map(|ip| Endpoint {
                    addresses: vec![ip.to_string()],
                    conditions: Some(EndpointConditions {
                        ready: Some(true),
                        serving: Some(true),
                        terminating: Some(false),
                    }),
                    node_name: Some("node-2".into()),
                    ..Default::default()
                })
                .collect(),
        ),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(i32::from(SERVER_PORT)),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
    };
    (service, slice)
}

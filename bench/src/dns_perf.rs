//! Cluster DNS throughput and latency: `dnsperf` against podnet's DNS server and against NSD (a
//! Debian authoritative server) serving the same records, on the same machine, in the same run:
//!
//! - queries per second per core (each server on core 0, `dnsperf` on core 1; the server's CPU
//!   time during the run is measured, so a server that is not saturated is not flattered or
//!   penalised), as a ratio podnet / NSD;
//! - average latency at full load (mostly queueing: `dnsperf` keeps up to 100 queries in flight,
//!   so it is about 100 / qps), and at a fixed moderate rate where neither server queues;
//! - the memory a zone takes per 1,000 Services (RSS growth of this process building a zone of
//!   10,000 Services, divided by 10), beside NSD's for the same records.
//!
//! The cluster: N ClusterIP Services with two named ports (A + two SRV each) and N/20 headless
//! Services with three ready endpoints each (A on the Service and on each hostname, SRV), across
//! 20 namespaces. NSD's zone file is written from podnet's own zone (every record of every name
//! the queries ask about), and before measuring, every query in the query file is asked of both
//! servers and their answer sections compared, so both serve the same records. The PTR records
//! go into NSD's `10.in-addr.arpa.` zone and are compared too, though `dnsperf` does not ask
//! for them.
//!
//! Run it as `bench/dns-perf.sh`, which pins this driver (and so podnet's server) to core 0.
//! Usage: `dns-perf [--services 1000] [--seconds 10] [--runs 2] [--clients 4] [--rate 20000]
//! [--memory-services 10000]`. Needs `nsd`, `dnsperf` and `taskset`; everything on 127.0.0.1.

use podnet_bench::rss_kib;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use podnet_dns::proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use podnet_dns::proto::rr::{DNSClass, Name, Record, RecordType};
use podnet_dns::{Lookup, Server, ServerConfig, Zone, ZoneBuilder, ZoneConfig};

const NAMESPACES: u32 = 20;
/// One headless Service per this many ClusterIP Services.
const HEADLESS_EVERY: u32 = 20;
const ENDPOINTS_PER_HEADLESS: u32 = 3;
/// One query in this many asks for a name that does not exist (NXDOMAIN).
const NXDOMAIN_EVERY: usize = 10;
/// The CPU `taskset` gives each server; `dnsperf` gets the other.
const SERVER_CPU: &str = "0";
const CLIENT_CPU: &str = "1";
/// NSD's default: positive answers carry the NS RRset in the authority section and the SRV
/// targets' addresses in the additional section. podnet adds the SRV targets but not the NS;
/// `minimal-responses: yes` would drop both, so neither setting makes the packets identical
/// (the average response sizes are printed).
const NSD_MINIMAL_RESPONSES: &str = "no";

struct Options {
    services: u32,
    seconds: u64,
    runs: u32,
    clients: u32,
    rate: u32,
    memory_services: u32,
}

fn options() -> Result<Options> {
    let mut o = Options {
        services: 1000,
        seconds: 10,
        runs: 2,
        clients: 4,
        rate: 20_000,
        memory_services: 10_000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        let number = |what: &str| -> Result<u64> {
            value
                .parse()
                .with_context(|| format!("{what}: {value:?} is not a number"))
        };
        match flag.as_str() {
            "--services" => o.services = u32::try_from(number("--services")?)?,
            "--seconds" => o.seconds = number("--seconds")?,
            "--runs" => o.runs = u32::try_from(number("--runs")?)?,
            "--clients" => o.clients = u32::try_from(number("--clients")?)?,
            "--rate" => o.rate = u32::try_from(number("--rate")?)?,
            "--memory-services" => {
                o.memory_services = u32::try_from(number("--memory-services")?)?;
            }
            other => bail!(
                "unknown flag {other:?}: expected --services, --seconds, --runs, --clients, \
                 --rate or --memory-services"
            ),
        }
    }
    ensure!(
        (HEADLESS_EVERY..=200_000).contains(&o.services),
        "--services must be {HEADLESS_EVERY}..=200000"
    );
    ensure!(
        o.memory_services >= 1000,
        "--memory-services must be at least 1000"
    );
    ensure!(
        o.seconds > 0 && o.runs > 0 && o.clients > 0 && o.rate > 0,
        "--seconds, --runs, --clients and --rate must be positive"
    );
    Ok(o)
}

fn main() -> Result<()> {
    let o = options()?;
    let clock_ticks = clock_ticks()?;

    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    // Memory first, while the heap is fresh.
    let per_thousand = f64::from(o.memory_services) / 1000.0;
    let (memory, nsd_memory) = {
        let cluster = Cluster::generate(o.memory_services);
        let before = rss_kib();
        let zone = cluster.zone()?;
        let podnet = rss_kib().saturating_sub(before) as f64 / 1024.0 / per_thousand;
        let nsd = nsd_memory_kib(dir.path(), &zone, &cluster)? / 1024.0 / per_thousand;
        (podnet, nsd)
    };

    let cluster = Cluster::generate(o.services);
    let zone = cluster.zone()?;
    let queries = cluster.queries();
    let records = write_zone_files(&zone, &queries, &cluster.addresses(), dir.path())?;
    let query_file = dir.path().join("queries.txt");
    let mut text = String::new();
    for (name, rtype) in &queries {
        writeln!(text, "{name} {rtype}")?;
    }
    std::fs::write(&query_file, text).context("writing the dnsperf query file")?;

    let server = Server::bind(
        ServerConfig {
            listen: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))],
            upstreams: Vec::new(),
            udp_workers: 1,
            ..ServerConfig::default()
        },
        zone,
    )
    .context("binding podnet's DNS server")?;
    let podnet_addr = *server
        .local_addrs()
        .first()
        .context("podnet's DNS server bound no address")?;
    let stop = server.stop_handle();
    let podnet_thread = thread::Builder::new()
        .name("dns-server".into())
        .spawn(move || server.run())
        .context("starting podnet's DNS server")?;
    let podnet = Target {
        name: "podnet",
        addr: podnet_addr,
        pid: std::process::id(),
        children: false,
    };

    let result = (|| {
        let nsd = Nsd::start(dir.path())?;
        let nsd_target = Target {
            name: "nsd",
            addr: nsd.addr,
            pid: nsd.child.id(),
            children: true,
        };
        wait_answering(&podnet)?;
        wait_answering(&nsd_target)?;
        let reverse: Vec<(String, RecordType)> = cluster
            .addresses()
            .iter()
            .map(|ip| (Name::from(IpAddr::V4(*ip)).to_string(), RecordType::PTR))
            .collect();
        compare_answers(&queries, &podnet, &nsd_target)?;
        compare_answers(&reverse, &podnet, &nsd_target)?;
        measure(&o, &query_file, &[&podnet, &nsd_target], clock_ticks)
    })();
    stop.stop();
    if podnet_thread.join().is_err() {
        eprintln!("podnet's DNS server thread panicked");
    }
    let report = result?;

    println!(
        "dns-perf: {} ClusterIP Services (2 named ports) + {} headless ({} endpoints), {} zone \
         records, {} queries ({}% NXDOMAIN); servers on CPU {SERVER_CPU}, dnsperf on CPU \
         {CLIENT_CPU} (-c {} -T 1), {} s per run, {} runs interleaved",
        o.services,
        o.services / HEADLESS_EVERY,
        ENDPOINTS_PER_HEADLESS,
        records,
        queries.len(),
        100 / NXDOMAIN_EVERY,
        o.clients,
        o.seconds,
        o.runs,
    );
    report.print(&o);
    println!(
        "memory per 1,000 Services: podnet {memory:.2} MiB (zone, RSS growth of this process), \
         nsd {nsd_memory:.2} MiB (PSS of its processes, less an empty zone's), podnet / nsd \
         {:.3}; measured at {} Services",
        memory / nsd_memory,
        o.memory_services
    );
    Ok(())
}

// === the cluster ===

/// The generated Services and EndpointSlices.
struct Cluster {
    services: Vec<Service>,
    slices: Vec<EndpointSlice>,
    cluster_ip: u32,
    headless: u32,
}

impl Cluster {
    /// `n` ClusterIP Services plus `n / HEADLESS_EVERY` headless ones with endpoints.
    fn generate(n: u32) -> Self {
        let headless = n / HEADLESS_EVERY;
        let mut services = Vec::new();
        let mut slices = Vec::new();
        for i in 0..n {
            let vip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 10)) + i);
            services.push(service(
                &format!("svc-{i}"),
                &namespace(i),
                &vip.to_string(),
                &[("http", 80), ("metrics", 9090)],
            ));
        }
        for j in 0..headless {
            let (name, ns) = (format!("db-{j}"), namespace(j));
            services.push(service(&name, &ns, "None", &[("peer", 7000)]));
            let endpoints = (0..ENDPOINTS_PER_HEADLESS)
                .map(|k| {
                    let ip =
                        Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 244, 0, 0)) + j * 4 + k + 1);
                    Endpoint {
                        addresses: vec![ip.to_string()],
                        hostname: Some(format!("{name}-{k}")),
                        conditions: Some(EndpointConditions {
                            ready: Some(true),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }
                })
                .collect();
            slices.push(EndpointSlice {
                metadata: ObjectMeta {
                    name: Some(format!("{name}-abcde")),
                    namespace: Some(ns),
                    labels: Some([("kubernetes.io/service-name".to_owned(), name)].into()),
                    ..Default::default()
                },
                address_type: "IPv4".into(),
                endpoints: Some(endpoints),
                ports: Some(vec![EndpointPort {
                    name: Some("peer".into()),
                    port: Some(7000),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
            });
        }
        Self {
            services,
            slices,
            cluster_ip: n,
            headless,
        }
    }

    /// Every ClusterIP and endpoint address (each has a PTR record).
    fn addresses(&self) -> Vec<Ipv4Addr> {
        let services = self
            .services
            .iter()
            .filter_map(|s| s.spec.as_ref()?.cluster_ip.as_ref());
        let endpoints = self
            .slices
            .iter()
            .flat_map(|s| s.endpoints.iter().flatten())
            .flat_map(|e| &e.addresses);
        services
            .chain(endpoints)
            .filter_map(|ip| ip.parse().ok())
            .collect()
    }

    fn zone(&self) -> Result<Zone> {
        let mut builder = ZoneBuilder::new(&ZoneConfig::default())?;
        for service in &self.services {
            builder.add_service(service);
        }
        for slice in &self.slices {
            builder.add_endpoint_slice(slice);
        }
        Ok(builder.build())
    }

    /// The questions `dnsperf` replays: A and SRV for every Service, A for every headless
    /// hostname, and one in `NXDOMAIN_EVERY` a name that does not exist; shuffled, so neither
    /// server walks its tables in order.
    fn queries(&self) -> Vec<(String, RecordType)> {
        let mut out = Vec::new();
        for i in 0..self.cluster_ip {
            let svc = format!("svc-{i}.{}.svc.cluster.local.", namespace(i));
            out.push((svc.clone(), RecordType::A));
            out.push((format!("_http._tcp.{svc}"), RecordType::SRV));
            out.push((format!("_metrics._tcp.{svc}"), RecordType::SRV));
        }
        for j in 0..self.headless {
            let svc = format!("db-{j}.{}.svc.cluster.local.", namespace(j));
            out.push((svc.clone(), RecordType::A));
            out.push((format!("_peer._tcp.{svc}"), RecordType::SRV));
            for k in 0..ENDPOINTS_PER_HEADLESS {
                out.push((format!("db-{j}-{k}.{svc}"), RecordType::A));
            }
        }
        let missing = out.len() / (NXDOMAIN_EVERY - 1);
        for m in 0..missing {
            let ns = namespace(u32::try_from(m).unwrap_or(0));
            out.push((
                format!("missing-{m}.{ns}.svc.cluster.local."),
                RecordType::A,
            ));
        }
        // A fixed xorshift shuffle: the same file every run.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in (1..out.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let j = usize::try_from(x % (i as u64 + 1)).unwrap_or(0);
            out.swap(i, j);
        }
        out
    }
}

fn namespace(i: u32) -> String {
    format!("team-{}", i % NAMESPACES)
}

fn service(name: &str, ns: &str, cluster_ip: &str, ports: &[(&str, i32)]) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: Some(cluster_ip.into()),
            cluster_ips: Some(vec![cluster_ip.into()]),
            ports: Some(
                ports
                    .iter()
                    .map(|(name, port)| ServicePort {
                        name: Some((*name).into()),
                        port: *port,
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The reverse zone NSD serves podnet's PTR records in (every address here is in 10.0.0.0/8).
const REVERSE_ZONE: &str = "10.in-addr.arpa.";

/// Writes every record podnet's `zone` holds at the apex, at the queried names and at the
/// `addresses`' reverse names as NSD zone files in `dir` (`cluster.local.zone`,
/// `10.in-addr.arpa.zone`); returns how many records.
fn write_zone_files(
    zone: &Zone,
    queries: &[(String, RecordType)],
    addresses: &[Ipv4Addr],
    dir: &Path,
) -> Result<usize> {
    let mut owners: BTreeSet<Name> = BTreeSet::new();
    owners.insert(zone.origin().clone());
    owners.insert(Name::from_ascii("dns-version.cluster.local.")?);
    for (name, _) in queries {
        owners.insert(Name::from_ascii(name)?);
    }
    let records = |owners: &BTreeSet<Name>| -> Vec<Record> {
        owners
            .iter()
            .filter_map(
                |owner| match zone.lookup(owner, RecordType::ANY, DNSClass::IN) {
                    Lookup::Answer(answer) => Some(answer.answers),
                    Lookup::NotOurs => None,
                },
            )
            .flatten()
            .collect()
    };
    let mut forward = records(&owners);
    // NSD wants the SOA first; the reverse zone gets the same SOA and NS at its own apex.
    forward.sort_by_key(|r| r.record_type() != RecordType::SOA);
    let apex: Vec<Record> = forward
        .iter()
        .filter(|r| matches!(r.record_type(), RecordType::SOA | RecordType::NS))
        .cloned()
        .collect();
    ensure!(
        apex.first().map(Record::record_type) == Some(RecordType::SOA),
        "podnet's zone has no SOA"
    );
    let reverse_apex = Name::from_ascii(REVERSE_ZONE)?;
    let mut reverse: Vec<Record> = apex
        .into_iter()
        .map(|mut r| {
            r.name = reverse_apex.clone();
            r
        })
        .collect();
    let reverse_owners = addresses
        .iter()
        .map(|ip| Name::from(IpAddr::V4(*ip)))
        .collect();
    reverse.extend(records(&reverse_owners));
    let mut count = 0;
    for (origin, records) in [
        (zone.origin().to_string(), forward),
        (REVERSE_ZONE.to_owned(), reverse),
    ] {
        let mut text = format!("$ORIGIN {origin}\n");
        let mut seen = BTreeSet::new();
        for record in &records {
            let line = record.to_string();
            if seen.insert(line.clone()) {
                writeln!(text, "{line}")?;
            }
        }
        count += seen.len();
        let path = dir.join(format!("{}zone", origin));
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(count)
}

// === the servers ===

/// A server under test: where it answers, and the process whose CPU time it spends.
struct Target {
    name: &'static str,
    addr: SocketAddr,
    pid: u32,
    /// Count the CPU time of `pid`'s descendants too (NSD answers in a grandchild process;
    /// podnet's children are the `dnsperf` runs).
    children: bool,
}

/// NSD in the foreground on its own port, stopped (with its children) when dropped.
struct Nsd {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    pidfile: PathBuf,
}

impl Nsd {
    /// Starts NSD serving the zone files [`write_zone_files`] wrote into `dir`.
    fn start(dir: &Path) -> Result<Self> {
        let port = free_port()?;
        let d = dir.display();
        let conf = dir.join("nsd.conf");
        let log = dir.join("nsd.log");
        // Debian builds NSD with response rate limiting on (200 qps per /24): a benchmark from
        // one address would be mostly dropped, so it is off, as podnet has none.
        let mut config = format!(
            "server:\n  server-count: 1\n  ip-address: 127.0.0.1\n  port: {port}\n  do-ip6: no\n  \
             username: \"\"\n  chroot: \"\"\n  zonesdir: \"{d}\"\n  database: \"\"\n  \
             zonelistfile: \"{d}/zone.list\"\n  pidfile: \"{d}/nsd.pid\"\n  \
             xfrdfile: \"{d}/xfrd.state\"\n  logfile: \"{}\"\n  verbosity: 1\n  \
             minimal-responses: {NSD_MINIMAL_RESPONSES}\n  \
             rrl-ratelimit: 0\n  rrl-whitelist-ratelimit: 0\n\
             remote-control:\n  control-enable: no\n",
            log.display(),
        );
        for origin in ["cluster.local.", REVERSE_ZONE] {
            let zone_file = dir.join(format!("{origin}zone"));
            writeln!(
                config,
                "zone:\n  name: {origin}\n  zonefile: \"{}\"",
                zone_file.display()
            )?;
            let checked = Command::new("nsd-checkzone")
                .arg(origin)
                .arg(&zone_file)
                .output()
                .context("running nsd-checkzone (apt-get install nsd)")?;
            ensure!(
                checked.status.success(),
                "nsd-checkzone rejects {}: {}{}",
                zone_file.display(),
                String::from_utf8_lossy(&checked.stdout),
                String::from_utf8_lossy(&checked.stderr)
            );
        }
        std::fs::write(&conf, config).context("writing nsd.conf")?;
        let child = Command::new("taskset")
            .args(["-c", SERVER_CPU, "nsd", "-d", "-c"])
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nsd (apt-get install nsd)")?;
        Ok(Self {
            child,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            log,
            pidfile: dir.join("nsd.pid"),
        })
    }
}

impl Drop for Nsd {
    fn drop(&mut self) {
        // The process we start becomes NSD's xfrd; it forks the main process, which forks the
        // server (and restarts it if it dies alone). SIGTERM to main stops all three; whatever is
        // left after 5 s is killed.
        let pid = self.child.id();
        let mut family = descendants(pid);
        family.push(pid);
        let main = std::fs::read_to_string(&self.pidfile)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
            .filter(|p| family.contains(p))
            .unwrap_or(pid);
        let _ = Command::new("kill")
            .args(["-TERM", &main.to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut exited = false;
        while Instant::now() < deadline {
            exited = exited || matches!(self.child.try_wait(), Ok(Some(_)));
            if exited && family.iter().all(|p| !running(*p)) {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "nsd did not stop on SIGTERM; killing it (log: {})",
            self.log.display()
        );
        family.extend(descendants(pid));
        for member in family.iter().filter(|p| running(**p)) {
            let _ = Command::new("kill")
                .args(["-KILL", &member.to_string()])
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How much more memory (KiB) NSD's processes take serving `zone` (its records at `cluster`'s
/// names and addresses) than serving an empty zone: the sum of their proportional set sizes, so pages the
/// forked processes share count once.
fn nsd_memory_kib(dir: &Path, zone: &Zone, cluster: &Cluster) -> Result<f64> {
    let mut pss = Vec::new();
    for (label, zone, queries, addresses) in [
        (
            "empty",
            &Zone::empty(&ZoneConfig::default())?,
            Vec::new(),
            Vec::new(),
        ),
        ("full", zone, cluster.queries(), cluster.addresses()),
    ] {
        let dir = dir.join(format!("nsd-memory-{label}"));
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        write_zone_files(zone, &queries, &addresses, &dir)?;
        let nsd = Nsd::start(&dir)?;
        wait_answering(&Target {
            name: "nsd",
            addr: nsd.addr,
            pid: nsd.child.id(),
            children: true,
        })?;
        let pid = nsd.child.id();
        let mut family = descendants(pid);
        family.push(pid);
        pss.push(family.iter().map(|p| pss_kib(*p)).sum::<u64>());
    }
    Ok(pss[1].saturating_sub(pss[0]) as f64)
}

/// A process's proportional set size in KiB (0 if unreadable).
fn pss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A port free for both UDP and TCP on 127.0.0.1 (free when asked; NSD binds it right after).
fn free_port() -> Result<u16> {
    for _ in 0..16 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = udp.local_addr()?.port();
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no port free for both UDP and TCP on 127.0.0.1")
}

/// Asks `name`/`rtype` of `server` over UDP, one attempt with a 2 s timeout.
fn ask(
    socket: &UdpSocket,
    server: SocketAddr,
    id: u16,
    name: &str,
    rtype: RecordType,
) -> Result<Message> {
    let mut query = Message::new(id, MessageType::Query, OpCode::Query);
    query
        .queries
        .push(Query::query(Name::from_ascii(name)?, rtype));
    socket.send_to(&query.to_vec()?, server)?;
    let mut buf = [0u8; 4096];
    loop {
        let (len, from) = socket
            .recv_from(&mut buf)
            .with_context(|| format!("no answer from {server} to {name} {rtype}"))?;
        let reply = Message::from_vec(&buf[..len])?;
        if from == server && reply.metadata.id == id {
            return Ok(reply);
        }
    }
}

fn client_socket() -> Result<UdpSocket> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    socket.set_read_timeout(Some(Duration::from_secs(2)))?;
    Ok(socket)
}

/// Waits up to 10 s for `target` to answer the zone's SOA.
fn wait_answering(target: &Target) -> Result<()> {
    let socket = client_socket()?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match ask(&socket, target.addr, 1, "cluster.local.", RecordType::SOA) {
            Ok(reply) if reply.metadata.response_code == ResponseCode::NoError => return Ok(()),
            Ok(reply) if Instant::now() > deadline => bail!(
                "{} at {} answers the SOA with {}",
                target.name,
                target.addr,
                reply.metadata.response_code
            ),
            Err(e) if Instant::now() > deadline => {
                return Err(e.context(format!("{} never answered", target.name)));
            }
            _ => thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Asks every query of both servers and fails unless the response codes and answer sections
/// (owner, TTL, class, type, data) are the same.
fn compare_answers(queries: &[(String, RecordType)], a: &Target, b: &Target) -> Result<()> {
    let socket = client_socket()?;
    let answer = |target: &Target, id: u16, name: &str, rtype: RecordType| -> Result<_> {
        let reply = ask(&socket, target.addr, id, name, rtype)?;
        let mut records: Vec<String> = reply.answers.iter().map(ToString::to_string).collect();
        records.sort();
        Ok((reply.metadata.response_code, records))
    };
    for (i, (name, rtype)) in queries.iter().enumerate() {
        let id = u16::try_from(i % 65_536).unwrap_or(0);
        let from_a = answer(a, id, name, *rtype)?;
        let from_b = answer(b, id, name, *rtype)?;
        ensure!(
            from_a == from_b,
            "{name} {rtype}: {} answers {from_a:?}, {} answers {from_b:?}",
            a.name,
            b.name
        );
    }
    Ok(())
}

// === the measurement ===

/// What one `dnsperf` run reported, and the server's CPU time meanwhile.
#[derive(Clone, Debug, Default)]
struct Run {
    qps: f64,
    latency_us: f64,
    lost: u64,
    response_bytes: f64,
    /// Server CPU seconds per wall second during the run (1.0 = one core fully busy).
    cpu: f64,
    /// The same for `dnsperf`: near 1.0, the client, not the server, may be the limit.
    client_cpu: f64,
}

impl Run {
    /// Queries per second of server CPU time: throughput per fully used core.
    fn per_core(&self) -> f64 {
        if self.cpu > 0.0 {
            self.qps / self.cpu
        } else {
            0.0
        }
    }
}

struct Report {
    /// Per target: full-load runs, then fixed-rate runs.
    load: Vec<Vec<Run>>,
    paced: Vec<Vec<Run>>,
}

fn measure(o: &Options, query_file: &Path, targets: &[&Target], ticks: f64) -> Result<Report> {
    let mut report = Report {
        load: vec![Vec::new(); targets.len()],
        paced: vec![Vec::new(); targets.len()],
    };
    for (rate, runs) in [(None, &mut report.load), (Some(o.rate), &mut report.paced)] {
        for _ in 0..o.runs {
            for (target, runs) in targets.iter().zip(runs.iter_mut()) {
                runs.push(dnsperf(o, query_file, target, rate, ticks)?);
            }
        }
    }
    Ok(report)
}

/// One `dnsperf` run on the client CPU against `target`, at full speed or at `rate` queries per
/// second.
fn dnsperf(
    o: &Options,
    query_file: &Path,
    target: &Target,
    rate: Option<u32>,
    ticks: f64,
) -> Result<Run> {
    let mut command = Command::new("taskset");
    command
        .args(["-c", CLIENT_CPU, "dnsperf", "-s"])
        .arg(target.addr.ip().to_string())
        .arg("-p")
        .arg(target.addr.port().to_string())
        .arg("-d")
        .arg(query_file)
        .args(["-c", &o.clients.to_string(), "-T", "1"])
        .args(["-l", &o.seconds.to_string()]);
    if let Some(rate) = rate {
        command.args(["-Q", &rate.to_string()]);
    }
    let cpu_before = cpu_ticks(target.pid, target.children)?;
    let client_before = reaped_children_ticks();
    let started = Instant::now();
    let output = command
        .output()
        .context("running dnsperf (apt-get install dnsperf)")?;
    let wall = started.elapsed().as_secs_f64();
    let cpu = (cpu_ticks(target.pid, target.children)? - cpu_before) as f64 / ticks / wall;
    let client_cpu = (reaped_children_ticks() - client_before) as f64 / ticks / wall;
    let text = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "dnsperf against {} failed: {text}{}",
        target.name,
        String::from_utf8_lossy(&output.stderr)
    );
    let field = |label: &str| -> Result<&str> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .map(str::trim)
            .with_context(|| format!("dnsperf printed no {label:?} line:\n{text}"))
    };
    let first_number = |label: &str| -> Result<f64> {
        let value = field(label)?;
        value
            .split(|c: char| c.is_whitespace() || c == ',')
            .find_map(|w| w.parse().ok())
            .with_context(|| format!("dnsperf's {label:?} line {value:?} has no number"))
    };
    // "Average packet size:  request 40, response 95"
    let sizes = field("Average packet size:")?;
    let response_bytes = sizes
        .split("response")
        .nth(1)
        .and_then(|s| s.trim().parse().ok())
        .with_context(|| format!("dnsperf's packet size line {sizes:?}"))?;
    Ok(Run {
        qps: first_number("Queries per second:")?,
        latency_us: first_number("Average Latency (s):")? * 1e6,
        lost: first_number("Queries lost:")? as u64,
        response_bytes,
        cpu,
        client_cpu,
    })
}

impl Report {
    fn print(&self, o: &Options) {
        let mean = |runs: &[Run], f: fn(&Run) -> f64| -> f64 {
            runs.iter().map(f).sum::<f64>() / runs.len().max(1) as f64
        };
        let names = ["podnet", "nsd"];
        println!(
            "{:<7} {:<12} {:>4} {:>10} {:>7} {:>12} {:>11} {:>6} {:>8} {:>12}",
            "server",
            "load",
            "run",
            "qps",
            "cpu",
            "qps/core",
            "latency",
            "lost",
            "resp_B",
            "dnsperf_cpu"
        );
        for (label, all) in [
            ("full", &self.load),
            (&*format!("{} qps", o.rate), &self.paced),
        ] {
            for (name, runs) in names.iter().zip(all.iter()) {
                for (k, r) in runs.iter().enumerate() {
                    println!(
                        "{name:<7} {label:<12} {:>4} {:>10.0} {:>6.0}% {:>12.0} {:>9.0}µs {:>6} {:>8.0} {:>11.0}%",
                        k + 1,
                        r.qps,
                        r.cpu * 100.0,
                        r.per_core(),
                        r.latency_us,
                        r.lost,
                        r.response_bytes,
                        r.client_cpu * 100.0
                    );
                }
            }
        }
        let [podnet, nsd] = [&self.load[0], &self.load[1]];
        let [podnet_paced, nsd_paced] = [&self.paced[0], &self.paced[1]];
        let (pq, nq) = (mean(podnet, |r| r.qps), mean(nsd, |r| r.qps));
        let (pc, nc) = (mean(podnet, Run::per_core), mean(nsd, Run::per_core));
        let (pl, nl) = (mean(podnet, |r| r.latency_us), mean(nsd, |r| r.latency_us));
        let (ppl, npl) = (
            mean(podnet_paced, |r| r.latency_us),
            mean(nsd_paced, |r| r.latency_us),
        );
        println!(
            "mean, full load: podnet {pq:.0} qps ({pc:.0} per core), nsd {nq:.0} qps ({nc:.0} per \
             core); latency podnet {pl:.0}µs, nsd {nl:.0}µs"
        );
        println!(
            "mean, {} qps: latency podnet {ppl:.0}µs, nsd {npl:.0}µs",
            o.rate
        );
        println!(
            "podnet / nsd: qps {:.3}, qps per core {:.3}, latency at full load {:.3}, latency at \
             {} qps {:.3}",
            pq / nq,
            pc / nc,
            pl / nl,
            o.rate,
            ppl / npl
        );
        println!(
            "(goals: qps per core ≥ 0.8× nsd, ≥ 50000 qps per core on cluster names; latency \
             ratio < 1 is podnet faster)"
        );
    }
}

/// Clock ticks per second, the unit of `/proc/<pid>/stat`'s CPU times.
fn clock_ticks() -> Result<f64> {
    let out = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .context("running getconf CLK_TCK")?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("getconf CLK_TCK printed no number")
}

/// User + system CPU ticks of `pid` (all its threads) and, with `children`, of all its live
/// descendants.
fn cpu_ticks(pid: u32, children: bool) -> Result<u64> {
    let mut pids = vec![pid];
    if children {
        pids.extend(descendants(pid));
    }
    let mut total = 0;
    for pid in pids {
        let Some(fields) = stat_fields(pid) else {
            continue;
        };
        let ticks = |k: usize| {
            fields
                .get(k)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        // After the command name: state(0) ppid(1) … utime(11) stime(12).
        total += ticks(11) + ticks(12);
    }
    Ok(total)
}

/// User + system CPU ticks of this process's waited-for children (the finished `dnsperf` runs).
fn reaped_children_ticks() -> u64 {
    let fields = stat_fields(std::process::id()).unwrap_or_default();
    // cutime(13) cstime(14).
    [13, 14]
        .iter()
        .filter_map(|k| fields.get(*k)?.parse::<u64>().ok())
        .sum()
}

/// The fields of `/proc/<pid>/stat` after the command name, or `None` if `pid` is gone.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// Whether `pid` exists and is not a zombie.
fn running(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().map(String::as_str) != Some("Z"))
}

/// Every process descending from `pid`, children first.
fn descendants(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| Some((p, stat_fields(p)?.get(1)?.parse().ok()?)))
        .collect();
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for (child, _) in parents.iter().filter(|(_, pp)| *pp == parent) {
            out.push(*child);
            frontier.push(*child);
        }
    }
    out
}

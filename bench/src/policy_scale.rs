//! NetworkPolicy at scale: P policies (P = 10, 1k, 10k) over 1000 pods, all on one node,
//! compiled, rendered and loaded into a throwaway node namespace exactly as the agent does it
//! (`compile`, `render_full`, one `nft -f -` transaction replacing `inet podnet_policy`), and in
//! the same run:
//!
//! - full programming time (compile + render + load into a node without the table);
//! - one change at 1k (one added policy; one pod's label changed), the whole sync as the agent
//!   runs it: compile everything, render the table, send the kernel the changes from the
//!   table it has (median of a few); and, for comparison, replacing the whole table instead;
//! - TCP connect latency from a client pod to a server pod (p50, p99) with P installed, as a
//!   ratio to P = 10, and on a node without the table as the floor; plus a control at the
//!   largest P whose background policies spare the client's and server's apps, telling the
//!   table's size apart from the length of the two pods' own chains;
//! - the memory the agent's inputs, compiled state and last table take (RSS growth).
//!
//! Topology, as the agent's CNI config wires pods: per P, a node namespace with bridge `cni0`
//! (gateway 10.244.0.1/22, the node's pod CIDR) and an underlay address 192.168.100.11 (the
//! pods' `status.hostIPs`), a client pod 10.244.0.26 and a server pod 10.244.2.4 on the
//! bridge. Same-node pod traffic is bridged, so it meets the table's `forward` hook through
//! `br_netfilter` (checked at start). The nodes (no table, 10, 1k, 10k, the control) live side
//! by side and the latency rounds alternate between them, so drift on a shared machine hits
//! all alike.
//!
//! The cluster: 10 namespaces (`team` t0–t2), 1000 pods (`app` a0–a333, three replicas each,
//! named port `http` = 8080), addresses 10.244.0.16 onwards. The server's own policies (five
//! ingress, three of which admit the client on 8080 by different peers) and the client's egress
//! policy are in every P; the rest spread over all apps (the server's included), each admitting
//! another app on a port and `http`, one in five with an `ipBlock` egress section. A probe to a
//! port no policy admits must time out, proving the connection walks the rules.
//!
//! Usage: `policy-scale [--sizes 10,1000,10000] [--connects 2000] [--repeats 5]`.
//! Needs root; everything happens in throwaway namespaces removed at exit.

use podnet_bench::{percentile, rss_kib, wait_reachable};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use podnet_model::policy::{self, Direction, NodeView, PolicyInputs, PolicyState, PolicyTable};
use podnet_model::service::Protocol;
use podnet_testkit::Netns;
use serde_json::{Value, json};

const PODS: u32 = 1000;
const NAMESPACES: u32 = 10;
/// Pods per app (a Deployment's replicas).
const REPLICAS: u32 = 3;
const APPS: u32 = PODS.div_ceil(REPLICAS);
const FIRST_POD_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 16);
const GATEWAY: &str = "10.244.0.1/22";
const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 11);
/// Pod indexes of the two real pods; every other pod is an address nobody has.
const CLIENT: u32 = 10;
const SERVER: u32 = 500;
const SERVER_PORT: u16 = 8080;
/// Listened on by the server, admitted by no policy: the probe that must be dropped.
const DENIED_PORT: u16 = 8081;
/// Latency rounds: each node gets `connects / ROUNDS` per round, nodes in rotating order.
const ROUNDS: usize = 20;

struct Options {
    sizes: Vec<u32>,
    connects: usize,
    repeats: usize,
}

fn options() -> Result<Options> {
    let mut o = Options {
        sizes: vec![10, 1000, 10_000],
        connects: 2000,
        repeats: 5,
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
            "--repeats" => o.repeats = value.parse().context("--repeats: expected a number")?,
            other => bail!("unknown flag {other:?}: expected --sizes, --connects or --repeats"),
        }
    }
    let own = server_policies().len() as u32;
    if o.sizes.is_empty() || o.sizes.iter().any(|p| *p < own || *p > 100_000) {
        bail!(
            "--sizes: each size must be {own}..=100000 (the server's and client's own policies are always in)"
        );
    }
    if o.connects < ROUNDS || o.repeats == 0 {
        bail!("--connects must be at least {ROUNDS}, --repeats at least 1");
    }
    Ok(o)
}

/// One table to measure: `p` policies; `spared`: the background ones select neither the
/// server's nor the client's app (the control isolating the table's size from their chains').
#[derive(Clone, Copy, PartialEq, Eq)]
struct Case {
    p: u32,
    spared: bool,
}

impl Case {
    fn label(self) -> String {
        if self.spared {
            format!("{} spared", self.p)
        } else {
            self.p.to_string()
        }
    }
}

fn main() -> Result<()> {
    let o = options()?;
    let client_ip = pod_ip(CLIENT);
    let server_ip = pod_ip(SERVER);
    let node_ips = [
        IpAddr::from(Ipv4Addr::new(10, 244, 0, 1)),
        IpAddr::from(NODE_IP),
    ];
    let mut cases: Vec<Case> = o.sizes.iter().map(|&p| Case { p, spared: false }).collect();
    if let Some(&p) = o.sizes.iter().max() {
        cases.push(Case { p, spared: true });
    }
    let floor = Node::new("floor")?;
    let mut nodes = Vec::new();
    for case in &cases {
        nodes.push((*case, Node::new(&format!("p{}", case.p))?));
    }
    let to = SocketAddr::from((server_ip, SERVER_PORT));
    wait_reachable(&floor.client, to)?;

    println!(
        "policy-scale: {PODS} pods in {NAMESPACES} namespaces, all on one node; client {client_ip} → server {server_ip}:{SERVER_PORT}/TCP"
    );
    println!(
        "{:>13} {:>8} {:>7} {:>7} {:>8} {:>10} {:>7} {:>9} {:>9} {:>7}",
        "P",
        "compile",
        "render",
        "load",
        "total_ms",
        "script_KiB",
        "rules",
        "srv_chain",
        "cli_chain",
        "mem_MiB"
    );
    let mut held = Vec::new();
    for (case, node) in &nodes {
        let rss_before = rss_kib();
        let world = World::generate(*case)?;
        let started = Instant::now();
        let state = policy::compile(&world.inputs());
        let compiled = started.elapsed();
        let view = NodeView::for_node_ips(&state, &node_ips);
        let table = policy::render(&state, &view);
        let script = table.script();
        let rendered = started.elapsed() - compiled;
        let loading = Instant::now();
        node.node
            .run(|| podnet_kernel::nft::apply(&script))
            .with_context(|| format!("loading the table of {} policies", case.label()))?;
        let load = loading.elapsed();
        let total = started.elapsed();
        // What the agent keeps between syncs: the objects, and the table it last applied
        // (the compiled state is kept here too, as the change below needs it).
        // The control comes after the same size, whose freed allocations it reuses: no
        // honest figure of its own.
        let mem_mib = if case.spared {
            "-".to_owned()
        } else {
            format!(
                "{:.1}",
                rss_kib().saturating_sub(rss_before) as f64 / 1024.0
            )
        };
        if !state.warnings.is_empty() {
            bail!(
                "{} policies: the generator made objects policy skips: {:?}",
                case.label(),
                state.warnings.first()
            );
        }
        let server = walk(
            &state,
            &script,
            SERVER,
            Direction::Ingress,
            client_ip.into(),
        )?;
        let client = walk(&state, &script, CLIENT, Direction::Egress, server_ip.into())?;
        println!(
            "{:>13} {:>8.1} {:>7.1} {:>7.1} {:>8.1} {:>10.0} {:>7} {:>9} {:>9} {:>7}",
            case.label(),
            ms(compiled),
            ms(rendered),
            ms(load),
            ms(total),
            script.len() as f64 / 1024.0,
            rule_lines(&script),
            server,
            client,
            mem_mib
        );
        drop(script);
        held.push((*case, world, table));
    }
    println!(
        "(total = compile + render + load into a node without the table; srv_chain / cli_chain: the rules of the server's ingress / the client's egress chain / the elements of the sets and maps they look up; mem: RSS growth holding the objects, compiled state and table)"
    );

    for (case, world, table) in &held {
        if case.p != 1000 || case.spared {
            continue;
        }
        let Some((_, node)) = nodes.iter().find(|(c, _)| c == case) else {
            continue;
        };
        let mut added = world.clone();
        let next = case.p - server_policies().len() as u32;
        added.nps.push(background_policy(next, false)?);
        let add = timed_sync(node, &added, &node_ips, table, o.repeats)?;
        let mut relabelled = world.clone();
        let moved = 700;
        let pod = relabelled
            .pods
            .get_mut(moved as usize)
            .context("pod 700 is missing")?;
        pod.metadata.labels = Some(pod_labels(moved + REPLICAS));
        let label = timed_sync(node, &relabelled, &node_ips, table, o.repeats)?;
        println!(
            "one change at P={} (compile + render + apply the changes, as the agent syncs; median of {}): add a policy {:.1} ms (load {:.1}), relabel a pod {:.1} ms (load {:.1})",
            case.p,
            o.repeats,
            ms(add.changes.0),
            ms(add.changes.1),
            ms(label.changes.0),
            ms(label.changes.1)
        );
        println!(
            "  the same replacing the whole table instead: add a policy {:.1} ms (load {:.1}), relabel a pod {:.1} ms (load {:.1})",
            ms(add.whole.0),
            ms(add.whole.1),
            ms(label.whole.0),
            ms(label.whole.1)
        );
    }

    let denied = SocketAddr::from((server_ip, DENIED_PORT));
    for (case, node) in &nodes {
        wait_reachable(&node.client, to).with_context(|| format!("P={}", case.label()))?;
        let probe = node
            .client
            .run(|| TcpStream::connect_timeout(&denied, Duration::from_millis(300)));
        if probe.is_ok() {
            bail!(
                "P={}: the client reached {denied}, which no policy admits: the table is not in the path (is br_netfilter on?)",
                case.label()
            );
        }
    }
    if floor
        .client
        .run(|| TcpStream::connect_timeout(&denied, Duration::from_secs(1)))
        .is_err()
    {
        bail!("the floor node's client cannot reach {denied} without any table");
    }

    let mut all: Vec<&Node> = vec![&floor];
    all.extend(nodes.iter().map(|(_, n)| n));
    let lat = interleaved_latencies(&all, to, o.connects)?;
    let base = cases.first().map(|c| c.p).unwrap_or(0);
    println!(
        "connect latency, {} sequential connects per node in {ROUNDS} alternating rounds (a probe to {denied}, admitted by no policy, is dropped on every node with a table):",
        o.connects
    );
    println!(
        "{:>13} {:>8} {:>8} {:>9} {:>9} {:>10} {:>10}",
        "P",
        "p50",
        "p99",
        format!("p50/P{base}"),
        format!("p99/P{base}"),
        "p50/floor",
        "p99/floor"
    );
    let (f50, f99) = (percentile(&lat[0], 50.0), percentile(&lat[0], 99.0));
    let (b50, b99) = (percentile(&lat[1], 50.0), percentile(&lat[1], 99.0));
    for (k, samples) in lat.iter().enumerate() {
        let (p50, p99) = (percentile(samples, 50.0), percentile(samples, 99.0));
        let (name, r50, r99) = match k.checked_sub(1).and_then(|i| cases.get(i)) {
            None => ("no table".to_owned(), "-".to_owned(), "-".to_owned()),
            Some(case) => (
                case.label(),
                format!("{:.3}", p50 / b50),
                format!("{:.3}", p99 / b99),
            ),
        };
        println!(
            "{name:>13} {p50:>6.0}µs {p99:>6.0}µs {r50:>9} {r99:>9} {:>10.3} {:>10.3}",
            p50 / f50,
            p99 / f99
        );
    }
    println!(
        "(goal: connect latency with 10k policies within 1.1× of {base}; \"spared\": the same count, none selecting the client or server)"
    );
    drop(held);
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Rules in a rendered script: lines inside chains that are not declarations.
fn rule_lines(script: &str) -> usize {
    let mut in_chain = false;
    let mut n = 0;
    for line in script.lines() {
        let t = line.trim();
        if t.starts_with("chain ") {
            in_chain = true;
        } else if t == "}" {
            in_chain = false;
        } else if in_chain && !t.starts_with("type ") {
            n += 1;
        }
    }
    n
}

/// `rules/elements`: the rules of pod `index`'s chain (one direction) and the elements of the
/// sets and maps it looks the packet up in, as `script` has them (the connection to `remote`
/// must be allowed by the compiled state). `-` if no chain.
fn walk(
    state: &PolicyState,
    script: &str,
    index: u32,
    direction: Direction,
    remote: IpAddr,
) -> Result<String> {
    let ip = IpAddr::from(pod_ip(index));
    let pod = state
        .by_ip
        .get(&ip)
        .and_then(|i| state.pods.get(*i))
        .with_context(|| format!("pod {ip} is not in the compiled state"))?;
    let dp = match direction {
        Direction::Ingress => &pod.ingress,
        Direction::Egress => &pod.egress,
    };
    if !dp.admin.is_empty() || !dp.baseline.is_empty() {
        bail!("pod {ip} has ClusterNetworkPolicy rules, which this count leaves out");
    }
    if !dp.isolated {
        return Ok("-".to_owned());
    }
    let (src, dst) = match direction {
        Direction::Ingress => (remote, ip),
        Direction::Egress => (ip, remote),
    };
    if !policy::allows(state, src, dst, Protocol::Tcp, SERVER_PORT).is_allowed() {
        bail!("no rule of pod {ip} admits the connection");
    }
    let chain = format!("{direction}-{}/{}", pod.namespace, pod.name);
    let header = format!("chain {chain} {{");
    let body: Vec<&str> = script
        .lines()
        .skip_while(|l| l.trim() != header)
        .skip(1)
        .take_while(|l| l.trim() != "}")
        .collect();
    if body.is_empty() {
        bail!("{header} is not in the script");
    }
    let mut elements = 0;
    for line in &body {
        let Some(lookup) = line.split_whitespace().find_map(|w| w.strip_prefix('@')) else {
            continue;
        };
        let declared = script
            .lines()
            .skip_while(|l| {
                let t = l.trim();
                t != format!("set {lookup} {{") && t != format!("map {lookup} {{")
            })
            .take_while(|l| l.trim() != "}")
            .find_map(|l| l.trim().strip_prefix("elements = { "));
        elements += declared.map_or(0, |e| e.split(", ").count());
    }
    Ok(format!("{}/{elements}", body.len()))
}

/// One change's sync times, medians of (whole sync, load alone).
struct SyncTimes {
    /// Sending the kernel the changes from the table it has, as the agent does.
    changes: (Duration, Duration),
    /// Replacing the whole table.
    whole: (Duration, Duration),
}

/// Compiles `world`, renders its table and applies it to the node's, which holds `original`,
/// `repeats` times each way (the original table put back untimed in between): as changes
/// from `original`, and as a whole table.
fn timed_sync(
    node: &Node,
    world: &World,
    node_ips: &[IpAddr],
    original: &PolicyTable,
    repeats: usize,
) -> Result<SyncTimes> {
    let original_script = original.script();
    let mut times: [(Vec<Duration>, Vec<Duration>); 2] = Default::default();
    for _ in 0..repeats {
        for (whole, (total, load)) in [false, true].into_iter().zip(times.iter_mut()) {
            let started = Instant::now();
            let state = policy::compile(&world.inputs());
            let view = NodeView::for_node_ips(&state, node_ips);
            let table = policy::render(&state, &view);
            if table == *original {
                bail!("the change left the table as it was");
            }
            let script = if whole {
                table.script()
            } else {
                table.changes_from(original)
            };
            let loading = Instant::now();
            node.node
                .run(|| podnet_kernel::nft::apply(&script))
                .context("applying one change")?;
            load.push(loading.elapsed());
            total.push(started.elapsed());
            node.node
                .run(|| podnet_kernel::nft::apply(&original_script))
                .context("putting the table back")?;
        }
    }
    let median = |(total, load): &mut (Vec<Duration>, Vec<Duration>)| {
        total.sort();
        load.sort();
        (total[total.len() / 2], load[load.len() / 2])
    };
    Ok(SyncTimes {
        changes: median(&mut times[0]),
        whole: median(&mut times[1]),
    })
}

/// A node namespace with bridge `cni0` and the two real pods on it.
struct Node {
    node: Netns,
    client: Netns,
    server: Netns,
}

impl Node {
    fn new(label: &str) -> Result<Node> {
        let n = Node {
            node: Netns::new(&format!("pol{label}")),
            client: Netns::new("polclient"),
            server: Netns::new("polserver"),
        };
        let bridge_nf = n
            .node
            .run(|| std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables"));
        if bridge_nf.map(|v| v.trim().to_owned()).ok().as_deref() != Some("1") {
            bail!(
                "bridged pod traffic would bypass the table: br_netfilter is not loaded or net.bridge.bridge-nf-call-iptables is not 1 in a new namespace"
            );
        }
        // The underlay link (no dummy driver everywhere: a veth whose peer stays unused).
        n.node.ip(&[
            "link", "add", "eth0", "type", "veth", "peer", "name", "underlay",
        ]);
        n.node
            .ip(&["addr", "add", &format!("{NODE_IP}/24"), "dev", "eth0"]);
        n.node.ip(&["link", "set", "eth0", "up"]);
        n.node.ip(&["link", "add", "cni0", "type", "bridge"]);
        n.node.ip(&["addr", "add", GATEWAY, "dev", "cni0"]);
        n.node.ip(&["link", "set", "cni0", "up"]);
        for (pod, veth, index) in [
            (&n.client, "vclient", CLIENT),
            (&n.server, "vserver", SERVER),
        ] {
            n.node.ip(&[
                "link",
                "add",
                veth,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                pod.name(),
            ]);
            n.node.ip(&["link", "set", veth, "master", "cni0"]);
            n.node.ip(&["link", "set", veth, "up"]);
            pod.ip(&[
                "addr",
                "add",
                &format!("{}/22", pod_ip(index)),
                "dev",
                "eth0",
            ]);
            pod.ip(&["link", "set", "eth0", "up"]);
            pod.ip(&["route", "add", "default", "via", "10.244.0.1"]);
        }
        n.start_server()?;
        Ok(n)
    }

    /// A TCP server on the admitted and the denied port that accepts and closes: one thread
    /// per port and none per connection, so the server's work competes little with the
    /// client's connects on a small machine (`connect` returns on the SYN-ACK anyway).
    fn start_server(&self) -> Result<()> {
        for port in [SERVER_PORT, DENIED_PORT] {
            let listener = self
                .server
                .run(|| TcpListener::bind(("0.0.0.0", port)))
                .with_context(|| format!("binding the server on {port}"))?;
            std::thread::spawn(move || listener.incoming().for_each(drop));
        }
        Ok(())
    }
}

/// `count` sequential connects from each node's client to `to`, in `ROUNDS` rounds that visit
/// the nodes in rotating order; microseconds per node, sorted.
fn interleaved_latencies(nodes: &[&Node], to: SocketAddr, count: usize) -> Result<Vec<Vec<f64>>> {
    let mut out = vec![Vec::with_capacity(count); nodes.len()];
    let per_round = count / ROUNDS;
    for round in 0..ROUNDS {
        for k in 0..nodes.len() {
            let i = (k + round) % nodes.len();
            let samples = nodes[i].client.run(|| -> Result<Vec<f64>> {
                let mut v = Vec::with_capacity(per_round);
                for _ in 0..per_round {
                    let started = Instant::now();
                    let s = TcpStream::connect_timeout(&to, Duration::from_secs(2))
                        .with_context(|| format!("connecting to {to}"))?;
                    v.push(started.elapsed().as_secs_f64() * 1e6);
                    drop(s);
                }
                Ok(v)
            })?;
            out[i].extend(samples);
        }
    }
    for v in &mut out {
        v.sort_by(f64::total_cmp);
    }
    Ok(out)
}

/// The objects the agent reads.
#[derive(Clone)]
struct World {
    nps: Vec<NetworkPolicy>,
    pods: Vec<Pod>,
    namespaces: Vec<Namespace>,
}

impl World {
    /// The cluster with `p` policies: the server's and the client's own, then background ones.
    fn generate(case: Case) -> Result<World> {
        let namespaces = (0..NAMESPACES)
            .map(|n| {
                from(json!({"metadata": {"name": format!("ns{n}"),
                    "labels": {"team": format!("t{}", n % 3)}}}))
            })
            .collect::<Result<_>>()?;
        let pods = (0..PODS).map(pod).collect::<Result<_>>()?;
        let mut nps = server_policies()
            .into_iter()
            .map(from)
            .collect::<Result<Vec<NetworkPolicy>>>()?;
        let own = nps.len() as u32;
        for k in 0..case.p.saturating_sub(own) {
            nps.push(background_policy(k, case.spared)?);
        }
        Ok(World {
            nps,
            pods,
            namespaces,
        })
    }

    fn inputs(&self) -> PolicyInputs<'_> {
        PolicyInputs {
            network_policies: &self.nps,
            pods: &self.pods,
            namespaces: &self.namespaces,
            ..Default::default()
        }
    }
}

fn from<T: k8s_openapi::serde::de::DeserializeOwned>(v: Value) -> Result<T> {
    serde_json::from_value(v).context("building an object")
}

fn pod_ip(index: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(FIRST_POD_IP) + index)
}

fn app(index: u32) -> u32 {
    index / REPLICAS
}

fn namespace_of(app: u32) -> String {
    format!("ns{}", app % NAMESPACES)
}

fn pod_labels(index: u32) -> std::collections::BTreeMap<String, String> {
    let mut labels =
        std::collections::BTreeMap::from([("app".to_owned(), format!("a{}", app(index) % APPS))]);
    if index == CLIENT {
        labels.insert("role".to_owned(), "client".to_owned());
    }
    labels
}

/// Pod `index`: a replica of app `index / 3`, running on this node.
fn pod(index: u32) -> Result<Pod> {
    let mut pod: Pod = from(json!({
        "metadata": {"namespace": namespace_of(app(index)), "name": format!("pod-{index}")},
        "spec": {"containers": [{"name": "c", "ports": [
            {"name": "http", "protocol": "TCP", "containerPort": SERVER_PORT}]}]},
        "status": {"phase": "Running", "podIPs": [{"ip": pod_ip(index).to_string()}],
                   "hostIPs": [{"ip": NODE_IP.to_string()}]},
    }))?;
    pod.metadata.labels = Some(pod_labels(index));
    Ok(pod)
}

/// The policies around the measured connection: five selecting the server (three admit the
/// client on 8080, each by another peer; two admit others) and the client's egress policy.
fn server_policies() -> Vec<Value> {
    let (server_app, client_app) = (format!("a{}", app(SERVER)), format!("a{}", app(CLIENT)));
    let (server_ns, client_ns) = (namespace_of(app(SERVER)), namespace_of(app(CLIENT)));
    let client_team = format!("t{}", (app(CLIENT) % NAMESPACES) % 3);
    let other_team = format!("t{}", (app(CLIENT) % NAMESPACES + 1) % 3);
    let ingress = |name: &str, from: Value, ports: Value| {
        json!({"metadata": {"namespace": server_ns, "name": name}, "spec": {
            "podSelector": {"matchLabels": {"app": server_app}},
            "ingress": [{"from": from, "ports": ports}]}})
    };
    vec![
        ingress(
            "web-allow-monitoring",
            json!([{"namespaceSelector": {"matchLabels": {"team": other_team}}}]),
            json!([{"port": 9090}]),
        ),
        ingress(
            "web-allow-same-namespace",
            json!([{"podSelector": {}}]),
            json!([{"port": SERVER_PORT}]),
        ),
        ingress(
            "web-from-frontend",
            json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": client_ns}},
                    "podSelector": {"matchLabels": {"app": client_app}}}]),
            json!([{"port": SERVER_PORT}]),
        ),
        ingress(
            "web-from-clients",
            json!([{"namespaceSelector": {}, "podSelector": {"matchLabels": {"role": "client"}}}]),
            json!([{"port": SERVER_PORT}, {"port": 8443}]),
        ),
        ingress(
            "web-from-team",
            json!([{"namespaceSelector": {"matchLabels": {"team": client_team}}}]),
            json!([{"port": "http"}]),
        ),
        json!({"metadata": {"namespace": client_ns, "name": "client-egress"}, "spec": {
            "podSelector": {"matchLabels": {"role": "client"}},
            "policyTypes": ["Egress"],
            "egress": [
                {"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": server_app}}}],
                 "ports": [{"port": SERVER_PORT}]},
                {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
                 "ports": [{"protocol": "UDP", "port": 53}]}]}}),
    ]
}

/// Background policy `k`: isolates app `k mod 334` and admits another app (which one depends
/// on `k`, so the policies on one app differ) on a port and on `http`; one in five also has an
/// egress section (the pod range minus a /28, and DNS).
fn background_policy(k: u32, spared: bool) -> Result<NetworkPolicy> {
    let target = if spared {
        // Every app but the client's and the server's (the client's comes first).
        let t = k % (APPS - 2);
        let t = if t >= app(CLIENT) { t + 1 } else { t };
        if t >= app(SERVER) { t + 1 } else { t }
    } else {
        k % APPS
    };
    let peer = (target + 1 + k / APPS) % APPS;
    let mut spec = json!({
        "podSelector": {"matchLabels": {"app": format!("a{target}")}},
        "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": format!("a{peer}")}}}],
                     "ports": [{"port": 9000 + k % 100}, {"port": "http"}]}],
    });
    if k.is_multiple_of(5) {
        spec["egress"] = json!([
            {"to": [{"ipBlock": {"cidr": "10.244.0.0/16",
                                  "except": [format!("10.244.{}.{}/28", 4 + k % 4, (k / 4 % 16) * 16)]}}]},
            {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
             "ports": [{"protocol": "UDP", "port": 53}]},
        ]);
    }
    from(
        json!({"metadata": {"namespace": namespace_of(target), "name": format!("np-{k}")},
        "spec": spec}),
    )
}

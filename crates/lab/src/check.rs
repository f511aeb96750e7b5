//! `podnet lab check`: real probes between every pair of running pods, printed as tables.
//!
//! Two kinds of table. The ping table (ICMP) shows plain connectivity; a failed ping counts
//! only between pods no policy restricts. The policy tables, one per probed protocol/port,
//! put the reachability the policy model predicts (`podnet_model::policy::reachability`,
//! compiled from the same objects the agents read) beside what real TCP/UDP probes observe;
//! any cell where they differ is a failure. Upstream's e2e suite ignores the diagonal (a pod
//! reaching its own address never leaves it), and so does the comparison.

use std::fmt;
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use podnet_kernel::netns;
pub use podnet_model::policy::Reachability;
use podnet_model::policy::{self, PolicyInputs, PolicyState};
pub use podnet_model::service::Protocol;

use crate::control::Lab;

/// How long a TCP probe waits for its connection (the kernel resends the SYN after 1 s).
const TCP_TIMEOUT: Duration = Duration::from_millis(2000);
/// How long a UDP probe waits for each of its answers.
const UDP_TIMEOUT: Duration = Duration::from_millis(500);
/// How many UDP requests a probe sends before calling the port blocked.
const UDP_TRIES: usize = 3;
/// Probes run at once (each is a thread that enters the source pod's namespace).
const PARALLEL: usize = 96;

/// One running pod, as a probe source or target.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `namespace/name`.
    pub name: String,
    /// Its node.
    pub node: String,
    /// Its namespace in the kernel.
    pub netns: String,
    /// Its first address.
    pub ip: String,
}

/// The observed matrix: `reachable[i][j]` is whether pod i reached pod j.
#[derive(Debug, Clone)]
pub struct Matrix {
    /// The pods, in row/column order.
    pub pods: Vec<Endpoint>,
    /// Results.
    pub reachable: Vec<Vec<bool>>,
}

impl Matrix {
    /// Number of failed cells.
    pub fn failures(&self) -> usize {
        self.reachable.iter().flatten().filter(|ok| !**ok).count()
    }

    /// The table, one row per source, `✓`/`✗` per target.
    pub fn render(&self) -> String {
        let label = |i: usize, p: &Endpoint| format!("{}. {}", i + 1, p.name);
        let width = self
            .pods
            .iter()
            .enumerate()
            .map(|(i, p)| label(i, p).len())
            .max()
            .unwrap_or(0)
            .max("FROM \\ TO".len());
        let mut out = format!("{:width$}  ", "FROM \\ TO");
        for (j, _) in self.pods.iter().enumerate() {
            out.push_str(&format!("{:>4}", j + 1));
        }
        out.push('\n');
        for (i, p) in self.pods.iter().enumerate() {
            out.push_str(&format!("{:width$}  ", label(i, p)));
            for ok in &self.reachable[i] {
                out.push_str(if *ok { "   ✓" } else { "   ✗" });
            }
            out.push('\n');
        }
        out.push_str("\n#  pod                 node       IP\n");
        for (i, p) in self.pods.iter().enumerate() {
            out.push_str(&format!(
                "{:<3}{:<20}{:<11}{}\n",
                i + 1,
                p.name,
                p.node,
                p.ip
            ));
        }
        out
    }
}

/// The namespace of the cluster's own pods, which the check leaves out.
const SYSTEM_NAMESPACE: &str = "kube-system";

/// The running pods with an address, but the cluster's own.
pub fn endpoints(lab: &Lab) -> Result<Vec<Endpoint>> {
    let store = lab.store()?;
    Ok(store
        .pods()?
        .into_iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        // The cluster's own pods (DNS) are not the workloads the check is about.
        .filter(|p| p.metadata.namespace.as_deref() != Some(SYSTEM_NAMESPACE))
        .filter_map(|p| {
            let ns = p.metadata.namespace.clone().unwrap_or_default();
            let name = p.metadata.name.clone().unwrap_or_default();
            Some(Endpoint {
                netns: lab.paths.pod_netns(&ns, &name),
                node: p.spec.as_ref()?.node_name.clone().unwrap_or_default(),
                ip: p.status.as_ref()?.pod_ip.clone()?,
                name: format!("{ns}/{name}"),
            })
        })
        .collect())
}

/// Pings every pod from every pod (ICMP, one echo, one second), a few probes in parallel.
pub fn probe_all(pods: &[Endpoint]) -> Matrix {
    let pairs: Vec<(usize, usize)> = (0..pods.len())
        .flat_map(|i| (0..pods.len()).map(move |j| (i, j)))
        .collect();
    let mut reachable = vec![vec![false; pods.len()]; pods.len()];
    for chunk in pairs.chunks(16) {
        let results: Vec<((usize, usize), bool)> = std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|&(i, j)| s.spawn(move || ((i, j), ping(&pods[i].netns, &pods[j].ip))))
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        for ((i, j), ok) in results {
            reachable[i][j] = ok;
        }
    }
    Matrix {
        pods: pods.to_vec(),
        reachable,
    }
}

/// One ping from inside `netns` to `ip`, retried once (the first packet may wait for ARP).
pub fn ping(netns: &str, ip: &str) -> bool {
    (0..2).any(|_| {
        Command::new("ip")
            .args(["netns", "exec", netns, "ping", "-c1", "-W1", "-q", ip])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// A protocol and destination port to probe, written `80`, `tcp/80` or `udp/81`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbePort {
    /// TCP or UDP (the lab's kernel has no SCTP sockets).
    pub protocol: Protocol,
    /// The destination port on the pod.
    pub port: u16,
}

/// What one probe saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A TCP connection opened, or a UDP request was answered.
    Connected,
    /// The pod's kernel refused (RST, ICMP port unreachable): the packet passed every policy
    /// but nothing listens there.
    Refused,
    /// Nothing came back: dropped on the way.
    Blocked,
}

/// One protocol/port: the model's prediction beside the probes' observation.
#[derive(Debug, Clone)]
pub struct PolicyTable {
    /// What was probed.
    pub probe: ProbePort,
    /// What the policy model predicts, over the probed pods (`namespace/name`).
    pub predicted: Reachability,
    /// What the probes saw, `observed[from][to]` in the same order.
    pub observed: Vec<Vec<Outcome>>,
}

// === impl ProbePort ===

impl FromStr for ProbePort {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (protocol, port) = match s.split_once('/') {
            Some((p, port)) => (p, port),
            None => ("tcp", s),
        };
        let protocol = match protocol.to_ascii_lowercase().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "sctp" => return Err("the lab's kernel has no SCTP sockets: probe tcp or udp".into()),
            other => return Err(format!("protocol {other:?} is not tcp or udp")),
        };
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("port {port:?} is not a number from 1 to 65535"))?;
        Ok(ProbePort { protocol, port })
    }
}

impl fmt::Display for ProbePort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.protocol.nft_name(), self.port)
    }
}

// === impl Outcome ===

impl Outcome {
    /// Whether the packet got through policy (connected, or refused by the pod itself).
    pub fn reached(self) -> bool {
        !matches!(self, Outcome::Blocked)
    }
}

// === impl PolicyTable ===

impl PolicyTable {
    /// The cells (off the diagonal) where prediction and observation differ: `(from, to)`.
    pub fn mismatches(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (i, row) in self.observed.iter().enumerate() {
            for (j, seen) in row.iter().enumerate() {
                if i != j && self.predicted.allowed[i][j] != seen.reached() {
                    out.push((i, j));
                }
            }
        }
        out
    }

    /// The observation as a reachability table (refused counts as reached).
    pub fn observed_table(&self) -> Reachability {
        Reachability {
            pods: self.predicted.pods.clone(),
            allowed: self
                .observed
                .iter()
                .map(|row| row.iter().map(|o| o.reached()).collect())
                .collect(),
        }
    }

    /// Both tables side by side in upstream's layout (`.` allowed, `X` blocked), then every
    /// cell where they differ.
    pub fn render(&self) -> String {
        let predicted = self.predicted.to_string();
        let observed = self.observed_table().to_string();
        let width = predicted.lines().map(str::len).max().unwrap_or(0);
        let mut out = format!(
            "{}:\n{:<width$}   {}\n",
            self.probe, "predicted", "observed"
        );
        for (p, o) in predicted.lines().zip(observed.lines()) {
            out.push_str(&format!("{p:<width$}   {o}\n"));
        }
        let refused = self
            .observed
            .iter()
            .flatten()
            .filter(|o| **o == Outcome::Refused)
            .count();
        if refused > 0 {
            out.push_str(&format!(
                "({refused} probes were refused: nothing listens on {} there; counted as reached)\n",
                self.probe
            ));
        }
        for (i, j) in self.mismatches() {
            let word = |allowed: bool| if allowed { "allowed" } else { "blocked" };
            out.push_str(&format!(
                "MISMATCH {} -> {}: predicted {}, observed {}\n",
                self.predicted.pods[i],
                self.predicted.pods[j],
                word(self.predicted.allowed[i][j]),
                word(self.observed[i][j].reached()),
            ));
        }
        out
    }
}

/// The lab's objects compiled by the policy model: what the agents enforce.
pub fn predict(lab: &Lab) -> Result<PolicyState> {
    let store = lab.store()?;
    let (network_policies, pods) = (store.network_policies()?, store.pods()?);
    let cluster_network_policies = store.cluster_network_policies()?;
    let (namespaces, nodes) = (store.namespaces()?, store.nodes()?);
    Ok(policy::compile(&PolicyInputs {
        network_policies: &network_policies,
        cluster_network_policies: &cluster_network_policies,
        pods: &pods,
        namespaces: &namespaces,
        nodes: &nodes,
    }))
}

/// Predicts and probes `probe` between every pair of `pods` the model knows (host-network
/// pods are not policy's), in the model's order.
pub fn policy_table(state: &PolicyState, pods: &[Endpoint], probe: ProbePort) -> PolicyTable {
    let all = policy::reachability(state, probe.protocol, probe.port);
    let picked: Vec<(usize, &Endpoint)> = all
        .pods
        .iter()
        .enumerate()
        .filter_map(|(i, id)| Some((i, pods.iter().find(|e| e.name == *id)?)))
        .collect();
    let predicted = Reachability {
        pods: picked.iter().map(|(_, e)| e.name.clone()).collect(),
        allowed: picked
            .iter()
            .map(|(i, _)| picked.iter().map(|(j, _)| all.allowed[*i][*j]).collect())
            .collect(),
    };
    let endpoints: Vec<&Endpoint> = picked.iter().map(|(_, e)| *e).collect();
    let observed = probe_pairs(&endpoints, probe);
    PolicyTable {
        probe,
        predicted,
        observed,
    }
}

/// Whether no policy restricts traffic from `src` to `dst` in any way (neither the source's
/// egress nor the destination's ingress): a failed ping there is a plain network failure.
pub fn unrestricted(state: &PolicyState, src: &str, dst: &str) -> bool {
    let open = |ip: &str, ingress: bool| {
        let Ok(ip) = ip.parse::<IpAddr>() else {
            return true;
        };
        state.by_ip.get(&ip).is_none_or(|i| {
            let pod = &state.pods[*i];
            if ingress {
                pod.ingress.is_open()
            } else {
                pod.egress.is_open()
            }
        })
    };
    open(src, false) && open(dst, true)
}

/// The whole `podnet lab check`: the ping table, then one policy table per probe. Returns the
/// text and whether everything agreed.
pub fn check(lab: &Lab, probes: &[ProbePort]) -> Result<(String, bool)> {
    let pods = endpoints(lab)?;
    let state = predict(lab)?;
    let matrix = probe_all(&pods);
    let mut out = matrix.render();
    let mut ok = true;
    let mut plain = 0;
    let mut restricted = 0;
    for (i, row) in matrix.reachable.iter().enumerate() {
        for (j, reached) in row.iter().enumerate() {
            if *reached {
                continue;
            }
            if unrestricted(&state, &pods[i].ip, &pods[j].ip) {
                plain += 1;
            } else {
                restricted += 1;
            }
        }
    }
    let total = pods.len().pow(2);
    if plain > 0 {
        ok = false;
        out.push_str(&format!(
            "{plain} of {total} pings failed between pods no policy restricts\n"
        ));
    } else if restricted > 0 {
        out.push_str(&format!(
            "all pings between unrestricted pods succeeded ({restricted} failed where policy applies)\n"
        ));
    } else {
        out.push_str(&format!("all {total} probes succeeded\n"));
    }
    for w in &state.warnings {
        out.push_str(&format!("policy warning: {w}\n"));
    }
    for probe in probes {
        let table = policy_table(&state, &pods, *probe);
        out.push('\n');
        out.push_str(&table.render());
        let wrong = table.mismatches().len();
        if wrong > 0 {
            ok = false;
            out.push_str(&format!(
                "{wrong} cells differ from the policy model on {probe}\n"
            ));
        } else {
            out.push_str(&format!(
                "the probes agree with the policy model on {probe}\n"
            ));
        }
    }
    Ok((out, ok))
}

/// Probes every ordered pair, many at once.
fn probe_pairs(pods: &[&Endpoint], probe: ProbePort) -> Vec<Vec<Outcome>> {
    let pairs: Vec<(usize, usize)> = (0..pods.len())
        .flat_map(|i| (0..pods.len()).map(move |j| (i, j)))
        .collect();
    let mut observed = vec![vec![Outcome::Blocked; pods.len()]; pods.len()];
    for chunk in pairs.chunks(PARALLEL) {
        let results: Vec<((usize, usize), Outcome)> = std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|&(i, j)| s.spawn(move || ((i, j), probe_one(pods[i], pods[j], probe))))
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        for ((i, j), outcome) in results {
            observed[i][j] = outcome;
        }
    }
    observed
}

/// One probe from inside `from`'s namespace to `to`'s address; an error (no namespace, no
/// address) counts as blocked.
pub fn probe_one(from: &Endpoint, to: &Endpoint, probe: ProbePort) -> Outcome {
    let attempt = || -> Result<Outcome> {
        let ip: IpAddr = to.ip.parse().context("the pod's address")?;
        let addr = SocketAddr::new(ip, probe.port);
        let ns = netns::open(&Path::new(netns::NETNS_RUN_DIR).join(&from.netns))?;
        Ok(netns::run_in(&ns, || match probe.protocol {
            Protocol::Tcp => probe_tcp(addr),
            Protocol::Udp => probe_udp(addr),
            Protocol::Sctp => Outcome::Blocked,
        })?)
    };
    attempt().unwrap_or(Outcome::Blocked)
}

fn probe_tcp(addr: SocketAddr) -> Outcome {
    match TcpStream::connect_timeout(&addr, TCP_TIMEOUT) {
        Ok(_) => Outcome::Connected,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Outcome::Refused,
        Err(_) => Outcome::Blocked,
    }
}

/// agnhost netexec's UDP protocol: `hostname` is answered with the pod's name.
fn probe_udp(addr: SocketAddr) -> Outcome {
    let ask = || -> std::io::Result<Outcome> {
        let any: SocketAddr = if addr.is_ipv6() {
            "[::]:0".parse().map_err(std::io::Error::other)?
        } else {
            "0.0.0.0:0".parse().map_err(std::io::Error::other)?
        };
        let socket = UdpSocket::bind(any)?;
        socket.connect(addr)?;
        socket.set_read_timeout(Some(UDP_TIMEOUT))?;
        let mut buf = [0u8; 512];
        for _ in 0..UDP_TRIES {
            socket.send(b"hostname")?;
            match socket.recv(&mut buf) {
                Ok(_) => return Ok(Outcome::Connected),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    return Ok(Outcome::Refused);
                }
                Err(_) => {}
            }
        }
        Ok(Outcome::Blocked)
    };
    ask().unwrap_or(Outcome::Blocked)
}

/// Parses the probes given on the command line; none means `tcp/80`.
pub fn parse_probes(args: &[String]) -> Result<Vec<ProbePort>> {
    if args.is_empty() {
        return Ok(vec![ProbePort {
            protocol: Protocol::Tcp,
            port: 80,
        }]);
    }
    args.iter()
        .map(|a| a.parse().map_err(anyhow::Error::msg))
        .collect::<Result<Vec<_>>>()
        .and_then(|v| {
            if v.is_empty() {
                bail!("no probe given")
            }
            Ok(v)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_ports_parse_with_tcp_as_the_default_protocol() {
        assert_eq!(
            "80".parse::<ProbePort>(),
            Ok(ProbePort {
                protocol: Protocol::Tcp,
                port: 80
            })
        );
        assert_eq!(
            "UDP/81".parse::<ProbePort>(),
            Ok(ProbePort {
                protocol: Protocol::Udp,
                port: 81
            })
        );
        assert!("sctp/80".parse::<ProbePort>().unwrap_err().contains("SCTP"));
        assert!("tcp/0".parse::<ProbePort>().is_err());
        assert!("icmp/1".parse::<ProbePort>().is_err());
    }

    #[test]
    fn mismatches_ignore_the_diagonal_and_count_refused_as_reached() {
        let table = PolicyTable {
            probe: "80".parse().unwrap(),
            predicted: Reachability {
                pods: vec!["x/a".into(), "x/b".into()],
                allowed: vec![vec![false, true], vec![false, true]],
            },
            observed: vec![
                vec![Outcome::Connected, Outcome::Refused],
                vec![Outcome::Connected, Outcome::Blocked],
            ],
        };
        assert_eq!(table.mismatches(), vec![(1, 0)]);
        let text = table.render();
        assert!(
            text.contains("MISMATCH x/b -> x/a: predicted blocked, observed allowed"),
            "{text}"
        );
        assert!(text.contains("1 probes were refused"), "{text}");
    }
}

//! `podnet lab check`: real probes between every pair of running pods, printed as a table.

use std::process::{Command, Stdio};

use anyhow::Result;

use crate::control::Lab;

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

/// The running pods with an address.
pub fn endpoints(lab: &Lab) -> Result<Vec<Endpoint>> {
    let store = lab.store()?;
    Ok(store
        .pods()?
        .into_iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
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

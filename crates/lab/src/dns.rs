//! The lab's cluster DNS, set up the way a kubeadm cluster has it: the `kube-dns` Service at the
//! service CIDR's tenth address in front of a two-replica Deployment running `podnet dns`
//! ([`cluster_dns_manifest`]), an upstream resolver on the outside host for names outside the
//! cluster (dnsmasq, [`upstream_dns_command`]), and each pod's `/etc/resolv.conf` as kubelet
//! composes it from `dnsPolicy` and `dnsConfig` ([`pod_resolv_conf`]).
//!
//! Every node also runs `podnet dns` as NodeLocal DNSCache runs ([`node_local_dns_args`]): it
//! takes the kube-dns ClusterIP as a local address and answers pods' queries on their own node,
//! without conntrack, so the conntrack race that loses one of glibc's parallel A/AAAA queries
//! (and costs a 5-second timeout) cannot happen. The kube-dns pods still serve whoever asks
//! them directly, as the cluster DNS does where there is no node-local cache.

use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Pod;

use crate::paths::LabPaths;
use crate::topology::LabConfig;

/// The domain the outside host's resolver answers for itself (`www.example.test` and every other
/// name under it resolve to the outside host): names pods can look up outside the cluster
/// without the lab ever asking a real resolver.
pub const UPSTREAM_DOMAIN: &str = "example.test";

/// How many `podnet dns` pods run behind the `kube-dns` Service (kubeadm runs two CoreDNS).
pub const REPLICAS: usize = 2;
/// The label of the DNS pods, which the `kube-dns` Service selects.
pub const APP_LABEL: (&str, &str) = ("k8s-app", "kube-dns");

/// kubelet's limit on nameservers (`validation.MaxDNSNameservers`).
const MAX_NAMESERVERS: usize = 3;
/// kubelet's limits on search paths (`MaxDNSSearchPathsExpanded`, `MaxDNSSearchListCharsExpanded`).
const MAX_SEARCH_PATHS: usize = 32;
const MAX_SEARCH_CHARS: usize = 2048;
/// Longer search paths make glibc abort; kubelet drops them (DNS-1123 subdomain length).
const MAX_SEARCH_PATH_LEN: usize = 253;

/// The cluster DNS Service's address: the service CIDR's tenth address, as kubeadm picks it.
pub fn cluster_dns_ip(config: &LabConfig) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(config.service_cidr.network()).saturating_add(10))
}

/// The `kube-dns` Service and the Deployment behind it, for `lab apply`: two replicas of
/// `podnet dns` (run from `podnet`, reading the object store at `store`) with `dnsPolicy:
/// Default`, forwarding to the outside host.
pub fn cluster_dns_manifest(podnet: &Path, store: &Path, config: &LabConfig) -> String {
    let command: Vec<String> = std::iter::once(podnet.display().to_string())
        .chain(server_args(store, config))
        .collect();
    let command = serde_json::to_string(&command).unwrap_or_default();
    let ip = cluster_dns_ip(config);
    let (key, value) = APP_LABEL;
    format!(
        r#"apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {{{key}: {value}, kubernetes.io/name: podnet-dns}}
spec:
  clusterIP: {ip}
  selector: {{{key}: {value}}}
  ports:
  - {{name: dns, port: 53, protocol: UDP, targetPort: 53}}
  - {{name: dns-tcp, port: 53, protocol: TCP, targetPort: 53}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: podnet-dns
  namespace: kube-system
  labels: {{{key}: {value}}}
spec:
  replicas: {REPLICAS}
  selector:
    matchLabels: {{{key}: {value}}}
  template:
    metadata:
      labels: {{{key}: {value}}}
    spec:
      dnsPolicy: Default
      containers:
      - name: dns
        image: podnet
        command: {command}
        ports:
        - {{name: dns, containerPort: 53, protocol: UDP}}
        - {{name: dns-tcp, containerPort: 53, protocol: TCP}}
        readinessProbe:
          tcpSocket: {{port: 53}}
          periodSeconds: 1
"#
    )
}

/// The link-local address every node serves DNS on (NodeLocal DNSCache's default).
pub const NODE_LOCAL_DNS: Ipv4Addr = Ipv4Addr::new(169, 254, 20, 10);

/// `podnet dns` arguments for a node's own DNS server, NodeLocal DNSCache style: it answers the
/// kube-dns ClusterIP (and [`NODE_LOCAL_DNS`]) on the node itself, untracked by conntrack, so
/// pods' queries never go through Service DNAT. It reads the cluster itself, so it needs no
/// cluster DNS upstream; other names go to the outside host.
pub fn node_local_dns_args(store: &Path, config: &LabConfig) -> Vec<String> {
    let mut args = server_args(store, config);
    for ip in [NODE_LOCAL_DNS, cluster_dns_ip(config)] {
        args.extend(["--listen".into(), format!("{ip}:53")]);
        args.extend(["--node-local".into(), ip.to_string()]);
    }
    args
}

/// `podnet dns` arguments every lab DNS server shares: the store, the outside host as upstream,
/// and the service and pod ranges as its reverse zones.
fn server_args(store: &Path, config: &LabConfig) -> Vec<String> {
    vec![
        "dns".into(),
        "--store".into(),
        store.display().to_string(),
        "--upstream".into(),
        format!("{}:53", config.outside_ip),
        "--reverse-cidr".into(),
        config.service_cidr.to_string(),
        "--reverse-cidr".into(),
        config.cluster_cidr.to_string(),
    ]
}

/// The outside host's resolver: dnsmasq answering `*.example.test` with the outside host's
/// address and nothing else (no `/etc/resolv.conf`, no `/etc/hosts`: it never forwards), bound
/// to the outside host's underlay address only. Program and arguments.
pub fn upstream_dns_command(config: &LabConfig, pid_file: &Path) -> (String, Vec<String>) {
    let ip = config.outside_ip;
    let args = vec![
        "--keep-in-foreground".into(),
        "--conf-file=/dev/null".into(),
        "--no-resolv".into(),
        "--no-hosts".into(),
        format!("--address=/{UPSTREAM_DOMAIN}/{ip}"),
        format!("--listen-address={ip}"),
        "--bind-interfaces".into(),
        format!("--pid-file={}", pid_file.display()),
        "--log-facility=-".into(),
        "--log-queries".into(),
    ];
    ("dnsmasq".into(), args)
}

/// The resolv.conf of the lab's nodes and outside host: the outside host's resolver, which a
/// real node would have from DHCP.
pub fn host_resolv_conf(config: &LabConfig) -> String {
    ResolvConf {
        nameservers: vec![config.outside_ip.to_string()],
        ..ResolvConf::default()
    }
    .render()
}

/// Writes a lab role's resolv.conf (see [`LabPaths::netns_etc`]), so that nothing run in its
/// namespace asks the machine's own resolvers.
pub fn write_host_resolv_conf(paths: &LabPaths, role: &str, config: &LabConfig) -> Result<()> {
    let dir = paths.netns_etc(role);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("resolv.conf"), host_resolv_conf(config))
        .with_context(|| format!("writing {}/resolv.conf", dir.display()))
}

/// A resolv.conf's settings, as kubelet reads and writes them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    /// `nameserver` lines, in order.
    pub nameservers: Vec<String>,
    /// The `search` list (the last `search` line wins; trailing dots dropped).
    pub searches: Vec<String>,
    /// The `options` (the last `options` line wins), e.g. `ndots:5`.
    pub options: Vec<String>,
}

// === impl ResolvConf ===

impl ResolvConf {
    /// Parses resolv.conf text as kubelet does (`parseResolvConf`); `#` comments and unknown
    /// lines are skipped.
    pub fn parse(text: &str) -> Self {
        let mut conf = Self::default();
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            match fields.next() {
                Some("nameserver") => conf.nameservers.extend(fields.next().map(str::to_owned)),
                Some("search") => {
                    conf.searches = fields
                        .map(|s| s.strip_suffix('.').unwrap_or(s).to_owned())
                        .collect();
                }
                Some("options") => conf.options = fields.map(str::to_owned).collect(),
                _ => {}
            }
        }
        conf
    }

    /// The file as the container runtime writes it: `search`, `nameserver`s, `options`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if !self.searches.is_empty() {
            out.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        for server in &self.nameservers {
            out.push_str(&format!("nameserver {server}\n"));
        }
        if !self.options.is_empty() {
            out.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        out
    }
}

/// A pod's `/etc/resolv.conf` as kubelet composes it (`GetPodDNS`): `ClusterFirst` (the default;
/// `Default` for host-network pods) → the cluster DNS servers, the pod's namespace, `svc` and
/// cluster domain ahead of the node's search list, `ndots:5`; `ClusterFirstWithHostNet` → the
/// same for host-network pods; `Default` → the node's resolv.conf (`node`); `None` → nothing
/// but `dnsConfig`. Then `dnsConfig` is merged in (nameservers and searches appended without
/// duplicates, options overriding by name), and the result cut to kubelet's limits.
pub fn pod_resolv_conf(
    pod: &Pod,
    node: &ResolvConf,
    cluster_dns: &[String],
    cluster_domain: &str,
) -> ResolvConf {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let policy = spec.and_then(|s| s.dns_policy.as_deref());
    let mut conf = match policy {
        Some("None") => ResolvConf::default(),
        Some("Default") => node.clone(),
        Some("ClusterFirst") | None if host_network => node.clone(),
        // ClusterFirst, ClusterFirstWithHostNet, and (as kubelet falls back) anything else.
        _ if cluster_dns.is_empty() => node.clone(),
        _ => {
            let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
            let cluster = [
                format!("{namespace}.svc.{cluster_domain}"),
                format!("svc.{cluster_domain}"),
                cluster_domain.to_owned(),
            ];
            ResolvConf {
                nameservers: cluster_dns.to_vec(),
                searches: dedup(cluster.into_iter().chain(node.searches.iter().cloned())),
                options: vec!["ndots:5".into()],
            }
        }
    };
    if let Some(extra) = spec.and_then(|s| s.dns_config.as_ref()) {
        let servers = extra.nameservers.iter().flatten().cloned();
        conf.nameservers = dedup(conf.nameservers.into_iter().chain(servers));
        let searches = extra.searches.iter().flatten().cloned();
        conf.searches = dedup(conf.searches.into_iter().chain(searches));
        for option in extra.options.iter().flatten() {
            let Some(name) = option.name.as_deref() else {
                continue;
            };
            let rendered = match option.value.as_deref() {
                Some(value) if !value.is_empty() => format!("{name}:{value}"),
                _ => name.to_owned(),
            };
            // The pod's value replaces the base's option of the same name, in its place.
            let same = |o: &String| o.split(':').next() == Some(name);
            match conf.options.iter_mut().find(|o| same(o)) {
                Some(existing) => *existing = rendered,
                None => conf.options.push(rendered),
            }
        }
    }
    conf.nameservers.truncate(MAX_NAMESERVERS);
    conf.searches = fit_searches(conf.searches);
    conf
}

/// `items` without repeats, first occurrence kept.
fn dedup(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// kubelet's `formDNSSearchFitsLimits`: at most 32 paths, none longer than 253 characters, and
/// a search line of at most 2048 characters (cut from the end).
fn fit_searches(mut searches: Vec<String>) -> Vec<String> {
    searches.truncate(MAX_SEARCH_PATHS);
    searches.retain(|s| s.len() <= MAX_SEARCH_PATH_LEN);
    while searches.join(" ").len() > MAX_SEARCH_CHARS {
        searches.pop();
    }
    searches
}

#[cfg(test)]
mod tests;

//! `podnet dns`: the cluster DNS server (CoreDNS's place). It reads the cluster through the same
//! [`ClusterSource`] the agent uses, builds a [`Zone`] from every snapshot and swaps it into the
//! running server, which answers the cluster domain itself and forwards everything else.
//!
//! With `--node-local` it runs on a node the way NodeLocal DNSCache does, which makes the
//! conntrack race that drops one of glibc's parallel A/AAAA queries impossible: the addresses
//! it serves (the kube-dns ClusterIP among them) are the node's own, and DNS to and from them
//! is never connection-tracked, so no Service DNAT entry is ever created for a query, let alone
//! raced by two of them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use podnet_agent::source::{ClusterSource, DirSource, Snapshot};
use podnet_dns::{PodsMode, Server, ServerConfig, Zone, ZoneBuilder, ZoneConfig, ZoneError};
use podnet_kernel::netlink::Netlink;
use tracing::{debug, info, warn};

/// Where the default upstreams come from, as for CoreDNS's `forward . /etc/resolv.conf`.
const RESOLV_CONF: &str = "/etc/resolv.conf";
/// The nftables table exempting node-local DNS from connection tracking.
const NOTRACK_TABLE: &str = "podnet_node_local_dns";

/// Flags of `podnet dns`.
#[derive(clap::Args)]
pub(crate) struct DnsArgs {
    /// The lab's object store directory to read cluster state from.
    #[arg(long)]
    store: PathBuf,
    /// Address to serve on, over UDP and TCP (repeatable).
    #[arg(long, default_value = "0.0.0.0:53")]
    listen: Vec<SocketAddr>,
    /// The cluster domain.
    #[arg(long, default_value = "cluster.local")]
    domain: String,
    /// TTL of the cluster's records, in seconds.
    #[arg(long, default_value_t = 30)]
    ttl: u32,
    /// Pod records `a-b-c-d.<ns>.pod.<domain>`, as CoreDNS's `pods` option.
    #[arg(long, value_enum, default_value_t = Pods::Verified)]
    pods: Pods,
    /// Resolver for names outside the cluster, `IP` or `IP:PORT` (repeatable; default: the
    /// nameservers of /etc/resolv.conf).
    #[arg(long, value_parser = parse_upstream)]
    upstream: Vec<SocketAddr>,
    /// A reverse range this server is authoritative for, e.g. the service CIDR (repeatable):
    /// PTR queries for unknown addresses in it get NXDOMAIN instead of being forwarded.
    #[arg(long)]
    reverse_cidr: Vec<ipnet::IpNet>,
    /// Serve this address as the node's own, without connection tracking (repeatable), as
    /// NodeLocal DNSCache does: it is added to `lo`, and DNS to and from it skips conntrack and
    /// so Service DNAT. Give the kube-dns ClusterIP to answer pods' queries on their node.
    #[arg(long)]
    node_local: Vec<Ipv4Addr>,
}

/// `--pods`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Pods {
    /// Only addresses of running pods in that namespace.
    Verified,
    /// Any well-formed address.
    Insecure,
    /// No pod records.
    Disabled,
}

impl From<Pods> for PodsMode {
    fn from(p: Pods) -> Self {
        match p {
            Pods::Verified => PodsMode::Verified,
            Pods::Insecure => PodsMode::Insecure,
            Pods::Disabled => PodsMode::Disabled,
        }
    }
}

/// `IP` (port 53) or `IP:PORT`.
fn parse_upstream(s: &str) -> Result<SocketAddr, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    s.parse()
        .map_err(|_| format!("{s:?}: expected IP or IP:PORT"))
}

/// Serves until the process ends: the server on its own threads, this thread rebuilding the
/// zone on every change of the cluster.
pub(crate) fn run(args: DnsArgs) -> Result<()> {
    let store = podnet_store::dir::ObjectStore::open(&args.store)
        .with_context(|| format!("--store {}", args.store.display()))?;
    let mut source = DirSource::new(store);
    let config = ZoneConfig {
        domain: args.domain,
        ttl: args.ttl,
        pods: args.pods.into(),
        reverse_cidrs: args.reverse_cidr,
        nameserver_ips: Vec::new(),
    };
    // Fails on a bad --domain before anything is bound.
    let empty = Zone::empty(&config).context("--domain")?;
    let upstreams = if args.upstream.is_empty() {
        let text = std::fs::read_to_string(RESOLV_CONF).unwrap_or_default();
        podnet_dns::parse_resolv_conf(&text)
    } else {
        args.upstream
    };
    if upstreams.is_empty() {
        warn!("no upstream resolvers: names outside the cluster domain get REFUSED");
    }
    if !args.node_local.is_empty() {
        take_node_local(&args.node_local)?;
        info!(addresses = ?args.node_local, "serving node-local addresses without conntrack");
    }
    // Serve the cluster as it is from the first answer on, not an empty zone.
    let zone = match source.snapshot() {
        Ok(snapshot) => build_zone(&config, &snapshot)?,
        Err(error) => {
            warn!(%error, "cannot read the cluster yet; serving an empty zone");
            empty
        }
    };
    let server = Server::bind(
        ServerConfig {
            listen: args.listen,
            upstreams: upstreams.clone(),
            ..ServerConfig::default()
        },
        zone,
    )?;
    info!(
        listen = ?server.local_addrs(),
        upstreams = ?upstreams,
        domain = %config.domain,
        pods = ?config.pods,
        "DNS server starting"
    );
    let setter = server.zone_setter();
    let serving = std::thread::Builder::new()
        .name("dns-server".into())
        .spawn(move || server.run())
        .context("starting the DNS server thread")?;

    let mut last_counts = None;
    loop {
        if serving.is_finished() {
            return match serving.join() {
                Ok(Ok(())) => bail!("the DNS server stopped"),
                Ok(Err(e)) => Err(e.into()),
                Err(_) => bail!("the DNS server thread panicked"),
            };
        }
        let outcome = source.snapshot();
        match &outcome {
            Ok(snapshot) => {
                setter.set(build_zone(&config, snapshot)?);
                let counts = (
                    snapshot.services.len(),
                    snapshot.endpoint_slices.len(),
                    snapshot.pods.len(),
                );
                if last_counts != Some(counts) {
                    info!(
                        services = counts.0,
                        endpoint_slices = counts.1,
                        pods = counts.2,
                        "zone updated"
                    );
                    last_counts = Some(counts);
                } else {
                    debug!("zone updated");
                }
            }
            Err(error) => warn!(%error, "cannot read the cluster; keeping the last zone"),
        }
        source.wait_for_change(if outcome.is_ok() {
            Duration::from_secs(10)
        } else {
            Duration::from_secs(1)
        });
    }
}

/// Makes `addrs` this node's (on `lo`) and exempts DNS to and from them from conntrack.
/// Idempotent: a restarted server finds them in place.
fn take_node_local(addrs: &[Ipv4Addr]) -> Result<()> {
    let mut netlink = Netlink::open().context("opening netlink")?;
    let lo = netlink.link("lo")?.context("this namespace has no lo")?;
    netlink.set_up(lo.index)?;
    for ip in addrs {
        let net = ipnet::IpNet::from(ipnet::Ipv4Net::from(*ip));
        match netlink.add_address(lo.index, net, true) {
            Err(e) if e.is_exists() => {}
            other => other.with_context(|| format!("adding {ip} to lo"))?,
        }
    }
    podnet_kernel::nft::apply(&notrack_rules(addrs)).context("exempting DNS from conntrack")?;
    Ok(())
}

/// The nftables table that keeps DNS to and from `addrs` out of conntrack: queries arriving
/// (prerouting) or sent from this node (output), and the answers. Untracked packets skip every
/// NAT chain, so the Service rules never DNAT them. Replaces the table atomically.
fn notrack_rules(addrs: &[Ipv4Addr]) -> String {
    let set = addrs
        .iter()
        .map(Ipv4Addr::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let rules = format!(
        "    ip daddr {{ {set} }} meta l4proto {{ tcp, udp }} th dport 53 notrack\n    ip saddr {{ {set} }} meta l4proto {{ tcp, udp }} th sport 53 notrack\n"
    );
    format!(
        "table ip {NOTRACK_TABLE} {{}}\ndelete table ip {NOTRACK_TABLE}\ntable ip {NOTRACK_TABLE} {{\n  chain prerouting {{\n    type filter hook prerouting priority raw; policy accept;\n{rules}  }}\n  chain output {{\n    type filter hook output priority raw; policy accept;\n{rules}  }}\n}}\n"
    )
}

/// The zone of one snapshot. Its SOA serial is the time it was built, so caches and replicas
/// can tell zones apart.
fn build_zone(config: &ZoneConfig, snapshot: &Snapshot) -> Result<Zone, ZoneError> {
    let mut builder = ZoneBuilder::new(config)?;
    let serial = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
    builder.serial(serial);
    for namespace in &snapshot.namespaces {
        builder.add_namespace(namespace);
    }
    for service in &snapshot.services {
        builder.add_service(service);
    }
    for slice in &snapshot.endpoint_slices {
        builder.add_endpoint_slice(slice);
    }
    for pod in &snapshot.pods {
        builder.add_pod(pod);
    }
    Ok(builder.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_take_an_ip_or_an_ip_and_port() {
        assert_eq!(
            parse_upstream("192.168.100.200"),
            Ok("192.168.100.200:53".parse().unwrap())
        );
        assert_eq!(
            parse_upstream("10.0.0.1:5353"),
            Ok("10.0.0.1:5353".parse().unwrap())
        );
        assert!(
            parse_upstream("dns.example")
                .unwrap_err()
                .contains("IP:PORT")
        );
    }

    #[test]
    fn node_local_dns_is_exempt_from_conntrack_both_ways() {
        let rules = notrack_rules(&[
            "169.254.20.10".parse().unwrap(),
            "10.96.0.10".parse().unwrap(),
        ]);
        assert!(rules.starts_with(
            "table ip podnet_node_local_dns {}\ndelete table ip podnet_node_local_dns\n"
        ));
        for hook in ["prerouting", "output"] {
            assert!(
                rules.contains(&format!("type filter hook {hook} priority raw;")),
                "{rules}"
            );
        }
        let queries =
            "ip daddr { 169.254.20.10, 10.96.0.10 } meta l4proto { tcp, udp } th dport 53 notrack";
        assert_eq!(rules.matches(queries).count(), 2, "{rules}");
        assert_eq!(rules.matches("th sport 53 notrack").count(), 2, "{rules}");
    }
}

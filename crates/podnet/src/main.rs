//! The `podnet` command: the lab (the main job: `podnet lab demo`), the node agent, the cluster
//! DNS server, podnet's agnhost, and the CNI plugin demo.

mod demo;
mod dns;
mod lab;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// podnet: Kubernetes networking, complete, in Rust.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// A multi-node cluster of network namespaces on this machine, driven by Kubernetes YAML.
    Lab(lab::LabArgs),
    /// The node agent: CNI config, routes between nodes' pod CIDRs, masquerade.
    Agent(AgentArgs),
    /// The cluster DNS server: Services and pods by name, everything else forwarded upstream.
    Dns(dns::DnsArgs),
    /// podnet's implementation of the e2e test image's agnhost subcommands
    /// (`netexec`, `serve-hostname`, `connect`, `pause`).
    #[command(disable_help_flag = true)]
    Agnhost {
        /// The subcommand and its flags, as given to agnhost.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The CNI plugin alone: a throwaway node with two pods wired by podnet-cni, pinged, removed.
    CniDemo {
        /// The podnet-cni binary (default: next to this one, then /opt/cni/bin).
        #[arg(long)]
        plugin: Option<PathBuf>,
        /// Keep the namespaces after the demo, to explore with `ip netns exec`.
        #[arg(long)]
        keep: bool,
    },
}

/// Flags of `podnet agent`.
#[derive(clap::Args)]
struct AgentArgs {
    /// This node's name (its Node object).
    #[arg(long, env = "NODE_NAME")]
    node: String,
    /// The lab's object store directory to read cluster state from.
    #[arg(long)]
    store: PathBuf,
    /// How pod CIDRs are routed between nodes: host-gw, vxlan or cross-subnet.
    #[arg(long, default_value = "vxlan")]
    backend: String,
    /// The cluster's pod CIDR(s); traffic from pods to anything else is masqueraded.
    #[arg(long, value_delimiter = ',', default_value = "10.244.0.0/16")]
    cluster_cidr: Vec<ipnet::IpNet>,
    /// The Service CIDR(s): traffic to unallocated addresses inside is dropped.
    #[arg(long, value_delimiter = ',', default_value = "10.96.0.0/16")]
    service_cidr: Vec<ipnet::IpNet>,
    /// Where to write the CNI config.
    #[arg(long, default_value = "/etc/cni/net.d")]
    cni_conf_dir: PathBuf,
    /// podnet-cni's IPAM data directory (default: the plugin's own).
    #[arg(long)]
    cni_data_dir: Option<String>,
    /// Where to serve /healthz and /metrics (the node's localhost).
    #[arg(long, default_value = "127.0.0.1:9765")]
    serve: SocketAddr,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Cmd::Agnhost { args } = &cli.command {
        let code = podnet_agnhost::run(args);
        return std::process::ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let outcome = match cli.command {
        Cmd::Lab(args) => lab::run(args),
        Cmd::Agent(args) => agent(args).map(|()| 0),
        Cmd::Dns(args) => dns::run(args).map(|()| 0),
        Cmd::CniDemo { plugin, keep } => demo::run(plugin, keep).map(|()| 0),
        Cmd::Agnhost { .. } => Ok(0),
    };
    match outcome {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn agent(args: AgentArgs) -> anyhow::Result<()> {
    let store = podnet_store::dir::ObjectStore::open(&args.store)?;
    let config = podnet_agent::agent::AgentConfig {
        node: args.node,
        backend: args.backend.parse()?,
        cluster_cidrs: args.cluster_cidr,
        service_cidrs: args.service_cidr,
        cni_conf_dir: args.cni_conf_dir,
        cni_data_dir: args.cni_data_dir,
        serve_addr: args.serve,
    };
    Ok(podnet_agent::agent::run(
        config,
        podnet_agent::source::DirSource::new(store),
    )?)
}

//! The `podnet` command. Until the lab lands, its main job is `podnet demo`: the CNI plugin
//! wiring pods of a throwaway node together, step by step.

mod demo;

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
    /// Build a throwaway node with two pods using podnet-cni, show their wiring, ping between them,
    /// then remove everything. Needs root; never touches this machine's own network namespace.
    Demo {
        /// The podnet-cni binary (default: next to this one, then /opt/cni/bin).
        #[arg(long)]
        plugin: Option<std::path::PathBuf>,
        /// Keep the namespaces after the demo, to explore with `ip netns exec`.
        #[arg(long)]
        keep: bool,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Demo { plugin, keep } => demo::run(plugin, keep),
    }
}

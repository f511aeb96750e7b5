//! `podnet lab …`: the lab's command line, kubectl-shaped.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use podnet_lab::check;
use podnet_lab::control::Lab;
use podnet_lab::paths::{DEFAULT_LAB, LabPaths};
use podnet_store::object::Kind;
use podnet_store::table;

/// The example workload `lab demo` applies.
const HELLO: &str = include_str!("../../../examples/hello.yaml");

/// `podnet lab`.
#[derive(Args)]
pub(crate) struct LabArgs {
    /// Which lab (several can run side by side).
    #[arg(long = "lab", global = true, env = "PODNET_LAB", default_value = DEFAULT_LAB)]
    lab: String,
    #[command(subcommand)]
    command: LabCmd,
}

#[derive(Subcommand)]
enum LabCmd {
    /// Build the lab: nodes, underlay switch, outside host; start each node's agent and kubelet.
    Up {
        /// How many nodes.
        #[arg(long, default_value_t = 3)]
        nodes: u32,
        /// Pod routing between nodes: host-gw, vxlan or cross-subnet.
        #[arg(long, default_value = "vxlan")]
        backend: String,
    },
    /// Remove everything the lab made.
    Down,
    /// Create or update objects from a manifest (Namespaces, Pods, Deployments, Services, …).
    Apply {
        /// The manifest file (`-` for stdin).
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
    },
    /// Delete objects: `-f FILE`, or `KIND NAME`.
    Delete {
        /// The manifest whose objects to delete.
        #[arg(short = 'f', long = "filename")]
        file: Option<PathBuf>,
        /// Kind and name (`pod web-0`, `deploy web`).
        args: Vec<String>,
        /// Namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
    },
    /// List objects as kubectl does: `get pods -o wide`, `get nodes`, `get svc -A`, `-o yaml`.
    Get {
        /// Kind (pods, nodes, services, deployments, namespaces, …).
        kind: String,
        /// One object's name.
        name: Option<String>,
        /// Namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// All namespaces.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Output: wide, json or yaml.
        #[arg(short = 'o', long)]
        output: Option<String>,
    },
    /// Run a command in a pod (`[ns/]pod`), a node (`node/<name>`), `outside`, `router`, `switch`.
    Exec {
        /// Where.
        target: String,
        /// The command.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// A container's output.
    Logs {
        /// `[ns/]pod`.
        pod: String,
        /// The container (default: the first).
        #[arg(short = 'c', long)]
        container: Option<String>,
    },
    /// Probe every pod from every pod: a ping table, and per port the reachability the
    /// NetworkPolicy model predicts beside what probes observe; exit 1 on any cell where they
    /// differ, or a failed ping no policy explains.
    Check {
        /// A protocol and port to probe: `80`, `tcp/81`, `udp/80` (repeatable; default tcp/80).
        #[arg(long = "port", value_name = "[PROTOCOL/]PORT")]
        ports: Vec<String>,
    },
    /// Bring up a 3-node lab with example workloads, print the connectivity table, leave it up.
    Demo {
        /// Pod routing between nodes.
        #[arg(long, default_value = "vxlan")]
        backend: String,
    },
    /// Add or remove nodes.
    #[command(subcommand)]
    Node(NodeCmd),
    /// (internal) The lab's kubelet for one node; runs inside the node's namespace.
    #[command(hide = true)]
    Kubelet {
        #[arg(long)]
        node: String,
        #[arg(long)]
        cni_bin_dir: PathBuf,
    },
    /// (internal) The lab's controller-manager: EndpointSlices, load balancers, Deployment
    /// status; runs inside the outside host's namespace.
    #[command(hide = true)]
    ControllerManager,
    /// (internal) A container's first process: takes the pod's hostname, runs the command.
    #[command(hide = true)]
    ContainerInit {
        #[arg(long)]
        hostname: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

#[derive(Subcommand)]
enum NodeCmd {
    /// Add a node (it joins the cluster's routing).
    Add,
    /// Remove a node and its pods (every other node drops its routes).
    Remove {
        /// The node's name.
        name: String,
    },
    /// Kill a node's agent (SIGKILL) and start a new one: established traffic keeps flowing.
    RestartAgent {
        /// The node's name.
        name: String,
    },
}

/// Runs a lab subcommand; returns the exit code.
pub(crate) fn run(args: LabArgs) -> Result<u8> {
    let paths = LabPaths::new(&args.lab).map_err(anyhow::Error::msg)?;
    let podnet = std::env::current_exe().context("finding the podnet binary")?;
    let lab = Lab::new(paths, podnet);
    match args.command {
        LabCmd::Up { nodes, backend } => {
            if lab.up(nodes, &backend)? {
                println!(
                    "lab {:?} is up: {nodes} nodes, backend {backend}",
                    lab.paths.name()
                );
            } else {
                println!("lab {:?} is already up", lab.paths.name());
            }
        }
        LabCmd::Down => {
            lab.down()?;
            println!("lab {:?} is down", lab.paths.name());
        }
        LabCmd::Apply { file } => {
            for line in lab.apply(&read_manifest(&file)?)? {
                println!("{line}");
            }
        }
        LabCmd::Delete {
            file,
            args,
            namespace,
        } => return delete(&lab, file, &args, &namespace),
        LabCmd::Get {
            kind,
            name,
            namespace,
            all_namespaces,
            output,
        } => get(&lab, &kind, name, &namespace, all_namespaces, output)?,
        LabCmd::Exec { target, command } => {
            let target = lab.target(&target)?;
            let status = lab.exec_command(&target, &command).status()?;
            return Ok(u8::try_from(status.code().unwrap_or(1)).unwrap_or(1));
        }
        LabCmd::Logs { pod, container } => logs(&lab, &pod, container)?,
        LabCmd::Check { ports } => {
            lab.require()?;
            let (report, ok) = check::check(&lab, &check::parse_probes(&ports)?)?;
            print!("{report}");
            if !ok {
                return Ok(1);
            }
        }
        LabCmd::Demo { backend } => return demo(&lab, &backend),
        LabCmd::Node(NodeCmd::Add) => {
            let node = lab.add_node()?;
            println!(
                "node {} joined ({}, pods {})",
                node.name, node.ip, node.pod_cidr
            );
        }
        LabCmd::Node(NodeCmd::Remove { name }) => {
            lab.remove_node(&name)?;
            println!("node {name} removed");
        }
        LabCmd::Node(NodeCmd::RestartAgent { name }) => {
            lab.restart_agent(&name)?;
            println!("agent of {name} restarted");
        }
        LabCmd::Kubelet { node, cni_bin_dir } => {
            let kubelet = podnet_lab::kubelet::Kubelet::new(
                lab.paths.clone(),
                &node,
                cni_bin_dir,
                lab.podnet,
            )?;
            kubelet.run()?;
        }
        LabCmd::ControllerManager => {
            podnet_lab::controller::ControllerManager::new(lab.paths.clone())?.run()?;
        }
        LabCmd::ContainerInit { hostname, command } => {
            podnet_lab::kubelet::container_init(&hostname, &command)?;
        }
    }
    Ok(0)
}

fn read_manifest(file: &PathBuf) -> Result<String> {
    if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)?;
        return Ok(text);
    }
    std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
}

fn delete(lab: &Lab, file: Option<PathBuf>, args: &[String], namespace: &str) -> Result<u8> {
    lab.require()?;
    let mut targets = Vec::new();
    if let Some(file) = file {
        for o in podnet_store::manifest::parse(&read_manifest(&file)?)? {
            targets.push((
                o.kind(),
                o.namespace().map(str::to_owned),
                o.name().to_owned(),
            ));
        }
    } else {
        let [kind, name] = args else {
            bail!("delete: give -f FILE, or KIND NAME (e.g. `delete pod web-0`)");
        };
        targets.push((
            Kind::from_user(kind)?,
            Some(namespace.to_owned()),
            name.clone(),
        ));
    }
    let mut missing = 0;
    for (kind, ns, name) in targets {
        if lab.delete(kind, ns.as_deref(), &name)? {
            println!("{} \"{name}\" deleted", kind.kind_name().to_lowercase());
        } else {
            eprintln!(
                "Error from server (NotFound): {} \"{name}\" not found",
                kind.plural()
            );
            missing += 1;
        }
    }
    Ok(u8::from(missing > 0))
}

fn get(
    lab: &Lab,
    kind: &str,
    name: Option<String>,
    namespace: &str,
    all_namespaces: bool,
    output: Option<String>,
) -> Result<()> {
    lab.require()?;
    let kind = Kind::from_user(kind)?;
    let store = lab.store()?;
    let mut objects = store.list(kind)?;
    if kind.namespaced() && !all_namespaces {
        objects.retain(|o| o.namespace() == Some(namespace));
    }
    if let Some(name) = &name {
        objects.retain(|o| o.name() == name);
        if objects.is_empty() {
            bail!(
                "Error from server (NotFound): {} \"{name}\" not found",
                kind.plural()
            );
        }
    }
    match output.as_deref() {
        None | Some("wide") => {
            let text = table::render(
                kind,
                &objects,
                output.is_some(),
                all_namespaces,
                podnet_store::now(),
            );
            if text.is_empty() {
                let ns = (kind.namespaced() && !all_namespaces).then_some(namespace);
                eprintln!("{}", table::no_resources(ns));
            }
            print!("{text}");
        }
        Some("json") => print!("{}", table::to_json(&objects, name.is_some())?),
        Some("yaml") => print!("{}", table::to_yaml(&objects, name.is_some())?),
        Some(other) => bail!("-o {other:?}: expected wide, json or yaml"),
    }
    Ok(())
}

fn logs(lab: &Lab, pod: &str, container: Option<String>) -> Result<()> {
    let (ns, name) = pod.split_once('/').unwrap_or(("default", pod));
    let store = lab.store()?;
    let Some(podnet_store::object::Object::Pod(p)) = store.get(Kind::Pod, Some(ns), name)? else {
        bail!("no pod {ns}/{name}");
    };
    let container = match container {
        Some(c) => c,
        None => p
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .map(|c| c.name.clone())
            .context("the pod has no containers")?,
    };
    let path = lab.paths.pod_dir(ns, name).join(format!("{container}.log"));
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("no logs for {ns}/{name} {container}"))?;
    print!("{text}");
    Ok(())
}

/// The main job: a 3-node lab with the example workloads and its connectivity table.
fn demo(lab: &Lab, backend: &str) -> Result<u8> {
    if lab.up(3, backend)? {
        println!(
            "lab {:?} is up: 3 nodes, backend {backend}",
            lab.paths.name()
        );
    } else {
        println!(
            "lab {:?} is already up; applying the examples",
            lab.paths.name()
        );
    }
    for line in lab.apply(HELLO)? {
        println!("{line}");
    }
    let pending = lab.wait_pods_running(Duration::from_secs(60))?;
    if !pending.is_empty() {
        bail!("pods not running after 60s: {}", pending.join(", "));
    }
    let store = lab.store()?;
    print!(
        "\n{}",
        table::render(
            Kind::Pod,
            &store.list(Kind::Pod)?,
            true,
            true,
            podnet_store::now()
        )
    );
    println!("\nConnectivity (ping from every pod to every pod):");
    let matrix = check::probe_all(&check::endpoints(lab)?);
    print!("{}", matrix.render());
    println!(
        "\nThe lab stays up. Try:\n  podnet lab get pods -o wide\n  podnet lab exec default/web-0 -- ip route\n  podnet lab exec node/node-1 -- ip route\n  podnet lab exec node/node-1 -- bridge fdb show dev podnet.1\n  podnet lab exec default/client -- dig +search +short web\n  podnet lab exec node/node-1 -- nft list table ip podnet_services\n  podnet lab down"
    );
    Ok(u8::from(matrix.failures() > 0))
}

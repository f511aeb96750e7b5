//! The lab's control plane, run by `podnet lab …`: bring the lab up and down, add and remove
//! nodes, accept manifests (playing the API server's Service defaulting and allocation, the
//! scheduler and the Deployment controller), and start the daemons: each node's agent and kubelet
//! inside its namespace, and the lab's controller-manager ([`crate::controller`]).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    Namespace, Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus, Pod, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use podnet_kernel::netns;
use podnet_store::dir::ObjectStore;
use podnet_store::manifest;
use podnet_store::object::{Kind, Object};

use crate::deployments;
use crate::dns;
use crate::paths::LabPaths;
use crate::scheduler::Scheduler;
use crate::services::ServiceAllocator;
use crate::topology::{self, LabConfig, NodeConfig, Process};

/// How long `up` and `node add` wait for a node's agent and kubelet.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Where each node's agent serves `/metrics` (its default `--serve`), on the node's localhost.
const AGENT_METRICS: ([u8; 4], u16) = ([127, 0, 0, 1], 9765);
/// The role (in `lab.json`) of the lab's controller-manager process.
const CONTROLLER_MANAGER: &str = "controller-manager";
/// The role (in `lab.json`) of the outside host's DNS resolver process.
const UPSTREAM_DNS: &str = "upstream-dns";
/// `lab up` brings up cluster DNS ([`crate::dns`]) unless this is `0` (or `false`): the
/// outside host's resolver, a node-local DNS server on every node, the `kube-dns` Service and
/// its pods in `kube-system`.
pub const CLUSTER_DNS_ENV: &str = "PODNET_LAB_CLUSTER_DNS";

/// The lab: its paths and, once up, its plan.
pub struct Lab {
    /// Where it lives.
    pub paths: LabPaths,
    /// The `podnet` binary, started in each node as agent and kubelet.
    pub podnet: PathBuf,
    /// Where `podnet-cni` is (the nodes' `CNI_PATH`).
    pub cni_bin_dir: PathBuf,
}

impl Lab {
    /// The lab at `paths`, run with the `podnet` binary next to `podnet-cni`.
    pub fn new(paths: LabPaths, podnet: PathBuf) -> Self {
        let cni_bin_dir = podnet
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/opt/cni/bin"));
        Self {
            paths,
            podnet,
            cni_bin_dir,
        }
    }

    /// The saved plan, if the lab is up.
    pub fn config(&self) -> Result<Option<LabConfig>> {
        LabConfig::load(&self.paths)
    }

    fn save(&self, config: &LabConfig) -> Result<()> {
        let tmp = self.paths.root().join(".lab.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(config)?)?;
        std::fs::rename(&tmp, self.paths.config())?;
        Ok(())
    }

    /// The object store.
    pub fn store(&self) -> Result<ObjectStore> {
        Ok(ObjectStore::open(&self.paths.store())?)
    }

    /// The running lab's plan, or an error saying there is none.
    pub fn require(&self) -> Result<LabConfig> {
        self.config()?.with_context(|| {
            format!(
                "no lab {:?} is up (start one with `podnet lab up`)",
                self.paths.name()
            )
        })
    }

    /// Brings the lab up: fabric, nodes, their agents and kubelets, and cluster DNS (unless
    /// [`CLUSTER_DNS_ENV`] turns it off); returns when every node (and the DNS) is ready.
    /// `Ok(false)` if it was already up. A failure removes everything made so far.
    pub fn up(&self, nodes: u32, backend: &str) -> Result<bool> {
        if self.config()?.is_some() {
            return Ok(false);
        }
        let config = LabConfig::plan(nodes, backend)?;
        std::fs::create_dir_all(self.paths.root())?;
        let built = (|| -> Result<()> {
            self.save(&config)?;
            topology::build_fabric(&self.paths, &config)?;
            let store = self.store()?;
            for ns in ["default", "kube-system"] {
                store.put(&Object::Namespace(Namespace {
                    metadata: ObjectMeta {
                        name: Some(ns.into()),
                        ..Default::default()
                    },
                    ..Default::default()
                }))?;
            }
            let cluster_dns = cluster_dns_wanted();
            if cluster_dns {
                self.start_upstream_dns()?;
            }
            self.start_controller_manager()?;
            for node in config.nodes.clone() {
                self.start_node(&node)?;
            }
            for node in &config.nodes {
                self.wait_ready(&node.name)?;
            }
            self.wait_routed()?;
            if cluster_dns {
                self.start_cluster_dns()?;
            }
            Ok(())
        })();
        if let Err(e) = built {
            let _ = self.down();
            return Err(e);
        }
        Ok(true)
    }

    /// Adds a node to the running lab and waits until it is ready.
    pub fn add_node(&self) -> Result<NodeConfig> {
        let mut config = self.require()?;
        let node = config.add_node()?;
        self.save(&config)?;
        if let Err(e) = self
            .start_node(&node)
            .and_then(|()| self.wait_ready(&node.name))
            .and_then(|()| self.wait_routed())
        {
            let _ = self.remove_node(&node.name);
            return Err(e);
        }
        Ok(node)
    }

    /// Builds a planned node, registers its Node object, starts its daemons.
    fn start_node(&self, node: &NodeConfig) -> Result<()> {
        let config = self.require()?;
        topology::build_node(&self.paths, &config, node)?;
        self.store()?
            .put(&Object::Node(node_object(&config, node)))?;
        self.start_daemon(&node.name, Daemon::Agent)?;
        self.start_daemon(&node.name, Daemon::Kubelet)?;
        // A lab with cluster DNS (its outside resolver runs) has it on every node.
        if config.processes.iter().any(|p| p.role == UPSTREAM_DNS) {
            self.start_daemon(&node.name, Daemon::NodeLocalDns)?;
        }
        Ok(())
    }

    /// Starts one of a node's daemons and records its process.
    fn start_daemon(&self, node: &str, daemon: Daemon) -> Result<()> {
        let config = self.require()?;
        let dir = self.paths.node_dir(node);
        let store = self.paths.store().display().to_string();
        let cni_conf_dir = self.paths.cni_conf_dir(node).display().to_string();
        let ipam_dir = dir.join("ipam").display().to_string();
        let cni_bin_dir = self.cni_bin_dir.display().to_string();
        let cluster_cidr = config.cluster_cidr.to_string();
        let node_local_dns = dns::node_local_dns_args(&self.paths.store(), &config);
        let (log, args): (&str, Vec<&str>) = match daemon {
            Daemon::Agent => (
                "agent.log",
                vec![
                    "agent",
                    "--node",
                    node,
                    "--store",
                    &store,
                    "--backend",
                    &config.backend,
                    "--cluster-cidr",
                    &cluster_cidr,
                    "--cni-conf-dir",
                    &cni_conf_dir,
                    "--cni-data-dir",
                    &ipam_dir,
                ],
            ),
            Daemon::Kubelet => (
                "kubelet.log",
                vec![
                    "lab",
                    "--lab",
                    self.paths.name(),
                    "kubelet",
                    "--node",
                    node,
                    "--cni-bin-dir",
                    &cni_bin_dir,
                ],
            ),
            Daemon::NodeLocalDns => (
                "dns.log",
                node_local_dns.iter().map(String::as_str).collect(),
            ),
        };
        let pid = self.spawn_daemon(node, &dir.join(log), &args)?;
        let mut config = self.require()?;
        config.processes.push(Process {
            role: daemon.role(node),
            pid,
        });
        self.save(&config)
    }

    /// Starts the lab's controller-manager (EndpointSlices, load balancers, Deployment status)
    /// in the outside host's namespace, whose route to the load-balancer pool it keeps, and
    /// records its process.
    fn start_controller_manager(&self) -> Result<()> {
        let log = self.paths.root().join("controller-manager.log");
        let args = ["lab", "--lab", self.paths.name(), "controller-manager"];
        let pid = self.spawn_daemon("outside", &log, &args)?;
        let mut config = self.require()?;
        config.processes.push(Process {
            role: CONTROLLER_MANAGER.into(),
            pid,
        });
        self.save(&config)
    }

    /// Starts the outside host's resolver (dnsmasq, [`dns::upstream_dns_command`]) and records
    /// its process; returns once it serves.
    fn start_upstream_dns(&self) -> Result<()> {
        let config = self.require()?;
        let pid_file = self.paths.root().join("dnsmasq.pid");
        let log = self.paths.root().join("dnsmasq.log");
        let (program, args) = dns::upstream_dns_command(&config, &pid_file);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let pid = self
            .spawn_in("outside", &log, Path::new(&program), &args)
            .with_context(|| format!("starting {program} (Debian package dnsmasq-base)"))?;
        let mut config = self.require()?;
        config.processes.push(Process {
            role: UPSTREAM_DNS.into(),
            pid,
        });
        self.save(&config)?;
        // It writes its pid file once its sockets are bound.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pid_file.exists() {
            if !is_alive(pid) || Instant::now() > deadline {
                bail!("{program} did not start; its log:\n{}", tail(&log));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Applies the `kube-dns` Service and its Deployment ([`dns::cluster_dns_manifest`]) and
    /// waits until every DNS pod is ready.
    fn start_cluster_dns(&self) -> Result<()> {
        let config = self.require()?;
        let manifest = dns::cluster_dns_manifest(&self.podnet, &self.paths.store(), &config);
        self.apply(&manifest)?;
        let store = self.store()?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let pods: Vec<Pod> = store
                .pods()?
                .into_iter()
                .filter(|p| p.metadata.namespace.as_deref() == Some("kube-system"))
                .filter(|p| {
                    let labels = p.metadata.labels.as_ref();
                    labels
                        .and_then(|l| l.get(dns::APP_LABEL.0))
                        .map(String::as_str)
                        == Some(dns::APP_LABEL.1)
                })
                .collect();
            let ready = pods.iter().filter(|p| pod_ready(p)).count();
            if ready >= dns::REPLICAS {
                return Ok(());
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = pods
                    .iter()
                    .filter(|p| !pod_ready(p))
                    .map(|p| {
                        let name = p.metadata.name.as_deref().unwrap_or_default();
                        let status = p.status.as_ref();
                        let log = self.paths.pod_dir("kube-system", name).join("dns.log");
                        format!(
                            "{name} (phase {}, {}):\n{}",
                            status.and_then(|s| s.phase.as_deref()).unwrap_or("unknown"),
                            status
                                .and_then(|s| s.message.as_deref())
                                .unwrap_or("no message"),
                            tail(&log)
                        )
                    })
                    .collect();
                bail!(
                    "cluster DNS: {ready} of {} pods ready after {}s\n{}",
                    dns::REPLICAS,
                    READY_TIMEOUT.as_secs(),
                    logs.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills a node's agent with SIGKILL and starts a new one, as a crash and a DaemonSet
    /// restart would. The new agent adopts what the old one programmed.
    pub fn restart_agent(&self, node: &str) -> Result<()> {
        let mut config = self.require()?;
        let role = Daemon::Agent.role(node);
        let Some(old) = config.processes.iter().find(|p| p.role == role).cloned() else {
            bail!("no agent recorded for node {node:?}");
        };
        let pid = nix::unistd::Pid::from_raw(old.pid);
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        // Gone once the process is a zombie or reaped (`kill 0` still succeeds on a zombie).
        let deadline = Instant::now() + Duration::from_secs(5);
        while is_alive(old.pid) {
            if Instant::now() > deadline {
                bail!("agent {} of {node} did not die", old.pid);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        config.processes.retain(|p| p.role != role);
        self.save(&config)?;
        self.start_daemon(node, Daemon::Agent)
    }

    /// Starts `podnet ARGS` inside the namespace of `role` (a node, `outside`), detached,
    /// logging to `log`.
    fn spawn_daemon(&self, role: &str, log: &Path, args: &[&str]) -> Result<i32> {
        self.spawn_in(role, log, &self.podnet, args)
    }

    /// Starts `program ARGS` inside the namespace of `role`, detached (a process group of its
    /// own), logging to `log`.
    fn spawn_in(&self, role: &str, log: &Path, program: &Path, args: &[&str]) -> Result<i32> {
        let ns = topology::open_netns(&self.paths.netns(role))?;
        let out = std::fs::File::create(log)?;
        let err = out.try_clone()?;
        let program = program.to_path_buf();
        let child = netns::run_in(&ns, move || {
            Command::new(&program)
                .args(args)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .process_group(0)
                .spawn()
        })??;
        Ok(i32::try_from(child.id())?)
    }

    /// Waits until the node's kubelet reports Ready and its agent NetworkUnavailable=False.
    pub fn wait_ready(&self, node: &str) -> Result<()> {
        let store = self.store()?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(Object::Node(n)) = store.get(Kind::Node, None, node)? {
                let conditions = n.status.and_then(|s| s.conditions).unwrap_or_default();
                let is =
                    |t: &str, v: &str| conditions.iter().any(|c| c.type_ == t && c.status == v);
                if is("Ready", "True") && is("NetworkUnavailable", "False") {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                let dir = self.paths.node_dir(node);
                bail!(
                    "node {node} did not become ready in {}s; agent log:\n{}\nkubelet log:\n{}",
                    READY_TIMEOUT.as_secs(),
                    tail(&dir.join("agent.log")),
                    tail(&dir.join("kubelet.log"))
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until every node's agent routes to every other node (its `/metrics` counts them as
    /// `podnet_agent_peers`): a node is Ready once its own agent has synced, but the agents of
    /// the nodes before it learn of it a moment later.
    fn wait_routed(&self) -> Result<()> {
        let config = self.require()?;
        let want = config.nodes.len().saturating_sub(1);
        let deadline = Instant::now() + READY_TIMEOUT;
        for node in &config.nodes {
            let ns = topology::open_netns(&self.paths.netns(&node.name))?;
            loop {
                let peers = netns::run_in(&ns, agent_peers).ok().flatten();
                if peers == Some(want) {
                    break;
                }
                if Instant::now() > deadline {
                    bail!(
                        "the agent of {} routes to {} of the {want} other nodes after {}s; agent log:\n{}",
                        node.name,
                        peers.map_or_else(|| "an unknown number".to_owned(), |p| p.to_string()),
                        READY_TIMEOUT.as_secs(),
                        tail(&self.paths.node_dir(&node.name).join("agent.log"))
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// Removes a node: its daemons, its pods, its namespace, its Node object. Other agents see
    /// the Node go and drop their routes to it.
    pub fn remove_node(&self, name: &str) -> Result<()> {
        let mut config = self.require()?;
        if config.node(name).is_none() {
            bail!(
                "node {name:?} is not in the lab (nodes: {})",
                config
                    .nodes
                    .iter()
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let store = self.store()?;
        let pods: Vec<Pod> = store
            .pods()?
            .into_iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name))
            .collect();
        let mut namespaces = vec![self.paths.netns(name)];
        for p in &pods {
            let (ns, pod) = (
                p.metadata.namespace.clone().unwrap_or_default(),
                p.metadata.name.clone().unwrap_or_default(),
            );
            namespaces.push(self.paths.pod_netns(&ns, &pod));
        }
        kill_processes_in(&namespaces);
        for p in &pods {
            let (ns, pod) = (
                p.metadata.namespace.clone().unwrap_or_default(),
                p.metadata.name.clone().unwrap_or_default(),
            );
            let netns_name = self.paths.pod_netns(&ns, &pod);
            topology::remove_netns(&netns_name)?;
            let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(&netns_name));
            store.delete(Kind::Pod, Some(&ns), &pod)?;
        }
        topology::destroy_node(&self.paths, name)?;
        store.delete(Kind::Node, None, name)?;
        config.nodes.retain(|n| n.name != name);
        config
            .processes
            .retain(|p| !p.role.ends_with(&format!(" {name}")));
        self.save(&config)?;
        let _ = std::fs::remove_dir_all(self.paths.node_dir(name));
        Ok(())
    }

    /// Removes everything the lab made: processes in its namespaces, the namespaces, the pods'
    /// `/etc/netns` files, its directory. Succeeds when there is no lab.
    pub fn down(&self) -> Result<()> {
        let namespaces = topology::lab_namespaces(&self.paths);
        if let Ok(Some(config)) = self.config() {
            for p in &config.processes {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(p.pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        kill_processes_in(&namespaces);
        let mut first_error = None;
        for ns in &namespaces {
            if let Err(e) = topology::remove_netns(ns) {
                first_error.get_or_insert(e);
            }
            let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(ns));
        }
        match std::fs::remove_dir_all(self.paths.root()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                first_error.get_or_insert(e.into());
            }
            _ => {}
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Applies a manifest: validates it against the lab, defaults Services and allocates their
    /// cluster IPs and node ports (all before anything is stored, so a refused manifest changes
    /// nothing), rolls Deployments out to their pods, schedules pods without `spec.nodeName`,
    /// and stores everything. Returns what was stored, as `kind/name` lines like kubectl prints
    /// them.
    pub fn apply(&self, text: &str) -> Result<Vec<String>> {
        let config = self.require()?;
        let store = self.store()?;
        let objects = manifest::parse(text)?;
        let nodes: Vec<String> = config.nodes.iter().map(|n| n.name.clone()).collect();
        let namespaces: Vec<String> = store
            .namespaces()?
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect();
        manifest::validate_against(&objects, &nodes, &namespaces)?;

        let mut allocator = ServiceAllocator::new(config.service_cidr, &store.services()?);
        let objects = objects
            .into_iter()
            .map(|object| match object {
                Object::Service(service) => {
                    let stored = store.get(
                        Kind::Service,
                        service.metadata.namespace.as_deref(),
                        object_name(&service.metadata),
                    )?;
                    let stored = stored.and_then(|o| Service::try_from(o).ok());
                    Ok(Object::Service(
                        allocator.allocate(service, stored.as_ref())?,
                    ))
                }
                other => Ok(other),
            })
            .collect::<Result<Vec<_>>>()?;

        let mut scheduler = Scheduler::new(&nodes, &store.pods()?);
        let mut done = Vec::new();
        for object in objects {
            let label = format!(
                "{}/{}",
                object.kind().kind_name().to_lowercase(),
                object.name()
            );
            match object {
                Object::Pod(mut pod) => {
                    // A bound pod stays on its node (nodeName is immutable once set).
                    let stored = store.get(
                        Kind::Pod,
                        pod.metadata.namespace.as_deref(),
                        object_name(&pod.metadata),
                    )?;
                    if let Some(Object::Pod(stored)) = stored
                        && let Some(node) = stored.spec.and_then(|s| s.node_name)
                    {
                        pod.spec
                            .get_or_insert_with(Default::default)
                            .node_name
                            .get_or_insert(node);
                    }
                    scheduler.place(&mut pod)?;
                    store.put(&Object::Pod(pod))?;
                }
                Object::Deployment(d) => {
                    // Stored first, so the Deployment's pods point at its uid.
                    if let Object::Deployment(d) = store.put(&Object::Deployment(d))? {
                        self.roll_out(&store, &d, &mut scheduler)?;
                    }
                }
                other => {
                    store.put(&other)?;
                }
            }
            done.push(format!("{label} configured"));
        }
        Ok(done)
    }

    /// Marks a stored Deployment's extra and outdated pods for deletion
    /// ([`deployments::plan`]); the controller-manager creates the pods it is missing (the
    /// replacement of an outdated pod once its predecessor is gone), as the ReplicaSet
    /// controller would. So `apply` returns at once.
    fn roll_out(
        &self,
        store: &ObjectStore,
        d: &Deployment,
        scheduler: &mut Scheduler,
    ) -> Result<()> {
        let plan = deployments::plan(d, &store.pods()?);
        let namespace = d.metadata.namespace.as_deref().unwrap_or("default");
        for name in &plan.delete {
            mark_for_deletion(store, namespace, name)?;
            scheduler.forget(namespace, name);
        }
        Ok(())
    }

    /// Deletes an object. Pods are marked for deletion and stopped by their kubelet (with their
    /// grace period); Deployments take their pods along. Waits until pods are gone.
    pub fn delete(&self, kind: Kind, namespace: Option<&str>, name: &str) -> Result<bool> {
        let store = self.store()?;
        let ns = if kind.namespaced() {
            Some(namespace.unwrap_or("default"))
        } else {
            None
        };
        let Some(object) = store.get(kind, ns, name)? else {
            return Ok(false);
        };
        let mut pods = Vec::new();
        match &object {
            Object::Pod(_) => pods.push((ns.unwrap_or("default").to_owned(), name.to_owned())),
            Object::Deployment(_) => {
                for p in store.pods()? {
                    let owned = p
                        .metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|o| o.kind == "Deployment" && o.name == name);
                    if owned && p.metadata.namespace.as_deref() == ns {
                        pods.push((
                            ns.unwrap_or("default").to_owned(),
                            p.metadata.name.unwrap_or_default(),
                        ));
                    }
                }
                store.delete(kind, ns, name)?;
            }
            _ => {
                store.delete(kind, ns, name)?;
            }
        }
        // Gone means this pod, by uid: a Deployment's replacement takes the same name.
        let uid_of = |pns: &str, pname: &str| -> Result<Option<String>> {
            Ok(match store.get(Kind::Pod, Some(pns), pname)? {
                Some(Object::Pod(p)) => p.metadata.uid.or(Some(String::new())),
                _ => None,
            })
        };
        let mut doomed = Vec::new();
        for (pns, pname) in &pods {
            if let Some(uid) = uid_of(pns, pname)? {
                doomed.push((pns, pname, uid));
            }
        }
        for (pns, pname) in &pods {
            mark_for_deletion(&store, pns, pname)?;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        for (pns, pname, uid) in doomed {
            while uid_of(pns, pname)?.as_ref() == Some(&uid) {
                if Instant::now() > deadline {
                    bail!("pod {pns}/{pname} was not stopped within 60s");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(true)
    }

    /// Waits until every pod in the store is Running (or `timeout` passes); returns the pods
    /// that are not.
    pub fn wait_pods_running(&self, timeout: Duration) -> Result<Vec<String>> {
        let store = self.store()?;
        let deadline = Instant::now() + timeout;
        loop {
            let pending: Vec<String> = store
                .pods()?
                .into_iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Running"))
                .map(|p| {
                    format!(
                        "{}/{}",
                        p.metadata.namespace.unwrap_or_default(),
                        p.metadata.name.unwrap_or_default()
                    )
                })
                .collect();
            if pending.is_empty() || Instant::now() > deadline {
                return Ok(pending);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The namespace and hostname to run a command in for `target`: `node/<name>`, `outside`,
    /// `router`, `switch`, or a pod as `[namespace/]name`.
    pub fn target(&self, target: &str) -> Result<ExecTarget> {
        let config = self.require()?;
        if let Some(node) = target.strip_prefix("node/") {
            if config.node(node).is_none() {
                bail!("no node {node:?} in the lab");
            }
            return Ok(ExecTarget {
                netns: self.paths.netns(node),
                pod_hostname: None,
            });
        }
        if matches!(target, "outside" | "router" | "switch") {
            return Ok(ExecTarget {
                netns: self.paths.netns(target),
                pod_hostname: None,
            });
        }
        let (ns, name) = target.split_once('/').unwrap_or(("default", target));
        let store = self.store()?;
        let Some(Object::Pod(pod)) = store.get(Kind::Pod, Some(ns), name)? else {
            bail!(
                "no pod {ns}/{name} (targets: node/<name>, outside, router, switch, [namespace/]pod)"
            );
        };
        Ok(ExecTarget {
            netns: self.paths.pod_netns(ns, name),
            pod_hostname: Some(crate::kubelet::pod_hostname(&pod)),
        })
    }

    /// The command line that runs `argv` in `target` (through `ip netns exec`, and for pods
    /// `container-init`, so it sees what the pod's containers see).
    pub fn exec_command(&self, target: &ExecTarget, argv: &[String]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &target.netns]);
        if let Some(host) = &target.pod_hostname {
            cmd.arg(&self.podnet)
                .args(["lab", "container-init", "--hostname", host, "--"]);
        }
        cmd.args(argv);
        cmd
    }
}

/// Marks a pod for deletion as the API server does on a graceful delete: `deletionTimestamp`
/// now, `deletionGracePeriodSeconds` from the pod's spec (30 when it names none). Its kubelet
/// stops it and removes the object. A pod already marked keeps its mark.
fn mark_for_deletion(store: &ObjectStore, namespace: &str, name: &str) -> Result<()> {
    let now = Time(podnet_store::now());
    store.update(Kind::Pod, Some(namespace), name, |obj| {
        if let Object::Pod(pod) = obj
            && pod.metadata.deletion_timestamp.is_none()
        {
            let grace = pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
                .unwrap_or(30);
            pod.metadata.deletion_timestamp = Some(now.clone());
            pod.metadata.deletion_grace_period_seconds = Some(grace);
        }
        Ok(())
    })?;
    Ok(())
}

/// `metadata.name`, or `""`.
fn object_name(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

/// A node daemon the lab runs.
#[derive(Debug, Clone, Copy)]
enum Daemon {
    Agent,
    Kubelet,
    /// `podnet dns --node-local` ([`dns::node_local_dns_args`]).
    NodeLocalDns,
}

impl Daemon {
    fn role(self, node: &str) -> String {
        match self {
            Daemon::Agent => format!("agent {node}"),
            Daemon::Kubelet => format!("kubelet {node}"),
            Daemon::NodeLocalDns => format!("dns {node}"),
        }
    }
}

/// Whether `lab up` brings up cluster DNS ([`CLUSTER_DNS_ENV`]).
fn cluster_dns_wanted() -> bool {
    !std::env::var(CLUSTER_DNS_ENV).is_ok_and(|v| matches!(v.as_str(), "0" | "false"))
}

/// Whether a pod's `Ready` condition is `True`.
fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// True while `pid` runs (not a zombie).
fn is_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|st| st != "Z"))
        })
        .unwrap_or(false)
}

/// Where `lab exec` runs a command.
#[derive(Debug, Clone)]
pub struct ExecTarget {
    /// The network namespace.
    pub netns: String,
    /// For pods: the hostname its containers have.
    pub pod_hostname: Option<String>,
}

/// The Node object for a planned node, as kubelet would register it plus the lab's podCIDR.
fn node_object(config: &LabConfig, node: &NodeConfig) -> Node {
    let zone = config.underlays[node.underlay].zone.clone();
    let labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_owned(), node.name.clone()),
        ("kubernetes.io/os".to_owned(), "linux".to_owned()),
        ("topology.kubernetes.io/zone".to_owned(), zone),
    ]);
    let now = Time(podnet_store::now());
    Node {
        metadata: ObjectMeta {
            name: Some(node.name.clone()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: Some(node.pod_cidr.to_string()),
            pod_cidrs: Some(vec![node.pod_cidr.to_string()]),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: node.ip.addr().to_string(),
                },
                NodeAddress {
                    type_: "Hostname".into(),
                    address: node.name.clone(),
                },
            ]),
            conditions: Some(vec![
                NodeCondition {
                    type_: "Ready".into(),
                    status: "False".into(),
                    reason: Some("KubeletNotReady".into()),
                    last_transition_time: Some(now.clone()),
                    ..Default::default()
                },
                NodeCondition {
                    type_: "NetworkUnavailable".into(),
                    status: "True".into(),
                    reason: Some("NoRouteCreated".into()),
                    last_transition_time: Some(now),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }),
    }
}

/// SIGKILLs every process whose network namespace is one of `namespaces` (by name under
/// /run/netns), so nothing the lab started outlives it.
pub fn kill_processes_in(namespaces: &[String]) {
    let targets: Vec<(u64, u64)> = namespaces
        .iter()
        .filter_map(|n| std::fs::metadata(Path::new(netns::NETNS_RUN_DIR).join(n)).ok())
        .map(|m| (m.dev(), m.ino()))
        .collect();
    if targets.is_empty() {
        return;
    }
    let me = std::process::id();
    for _ in 0..3 {
        let mut any = false;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if pid as u32 == me {
                continue;
            }
            let Ok(m) = std::fs::metadata(entry.path().join("ns/net")) else {
                continue;
            };
            if targets.contains(&(m.dev(), m.ino())) {
                any = true;
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        if !any {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `podnet_agent_peers` from the agent's `/metrics` on this namespace's localhost; `None` if it
/// cannot be read (yet).
fn agent_peers() -> Option<usize> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(AGENT_METRICS);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("podnet_agent_peers "))
        .and_then(|v| v.trim().parse().ok())
}

/// The last lines of a log file, for error messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

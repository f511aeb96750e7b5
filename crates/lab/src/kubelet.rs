//! The lab's kubelet: one per node, running inside the node's namespace. It watches the store
//! for pods bound to its node and runs them the way kubelet + containerd do: a network namespace
//! per pod wired by the node's CNI config, containers as processes inside it, status written back.
//!
//! Containers have no images: `command`/`args` run as host binaries, and the e2e image `agnhost`
//! runs podnet's own agnhost (`podnet agnhost …`). Each container starts through
//! `ip netns exec <pod netns> podnet lab container-init`, which gives it the pod's `/etc/hosts`
//! and `/etc/resolv.conf` (from `/etc/netns/<pod netns>/`, in a mount namespace of its own) and
//! the pod's hostname (in a UTS namespace of its own).
//!
//! Readiness follows each container's `readinessProbe` ([`crate::probe`]; without one, a running
//! container is ready). Deleting a pod is graceful and never blocks the other pods: the kubelet
//! sends SIGTERM, keeps the pod (marked with its deletionTimestamp, still probed) while it runs
//! out its grace period, sends SIGKILL to what is left, then runs CNI DEL and only then removes
//! the object from the store.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus,
    Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use podnet_kernel::netns;
use podnet_store::dir::ObjectStore;
use podnet_store::object::{Kind, Object};
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::cni::{Attachment, CniRuntime, result_ips};
use crate::paths::LabPaths;
use crate::probe::{self, Prober};

/// How often the store is polled for changes and containers for exits.
const POLL: Duration = Duration::from_millis(100);

/// How many pod sandboxes are made at once.
const PARALLEL_SANDBOXES: usize = 16;

/// The cluster's DNS Service address and domain, as kubelet's `--cluster-dns`/`--cluster-domain`.
pub const CLUSTER_DNS: &str = "10.96.0.10";
/// The cluster domain.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// The grace period of a pod that names none, in seconds.
const DEFAULT_GRACE_SECONDS: i64 = 30;

/// A pod this kubelet runs.
struct RunningPod {
    uid: String,
    netns: String,
    cni_result: Value,
    containers: Vec<RunningContainer>,
    /// Its grace period as it was started (for a pod whose object vanished).
    grace: i64,
    /// Once it is being stopped: when what still runs gets SIGKILL.
    kill_at: Option<Instant>,
}

struct RunningContainer {
    name: String,
    child: Option<Child>,
    exit_code: Option<i32>,
    started: Timestamp,
    /// The readiness prober, while the container runs and has a readinessProbe.
    readiness: Option<Prober>,
}

/// The kubelet of one node.
pub struct Kubelet {
    paths: LabPaths,
    node: String,
    store: ObjectStore,
    cni: CniRuntime,
    podnet: PathBuf,
    pods: BTreeMap<(String, String), RunningPod>,
    /// Bumped by probers whenever a container's readiness flips.
    probe_changes: Arc<AtomicU64>,
}

impl Kubelet {
    /// A kubelet for `node`, running plugins from `cni_bin_dir` and containers through the
    /// `podnet` binary at `podnet`.
    pub fn new(paths: LabPaths, node: &str, cni_bin_dir: PathBuf, podnet: PathBuf) -> Result<Self> {
        let store = ObjectStore::open(&paths.store())?;
        let cni = CniRuntime {
            conf_dir: paths.cni_conf_dir(node),
            bin_dir: cni_bin_dir,
        };
        Ok(Self {
            paths,
            node: node.to_owned(),
            store,
            cni,
            podnet,
            pods: BTreeMap::new(),
            probe_changes: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Runs until the process is killed.
    pub fn run(mut self) -> Result<()> {
        info!(node = %self.node, "kubelet starting");
        let mut seen = None;
        let mut probes_seen = 0;
        let mut ready_reported = false;
        loop {
            let network = self.cni.network()?;
            if let Some(list) = &network {
                if !ready_reported {
                    self.report_node_ready()?;
                    ready_reported = true;
                }
                let revision = self.store.revision()?;
                let mut changed = self.reap_containers();
                changed |= self.finish_stopping(list);
                let probes = self.probe_changes.load(Ordering::Relaxed);
                changed |= probes != probes_seen;
                probes_seen = probes;
                if seen != Some(revision) || changed {
                    // Recorded before syncing: a change made meanwhile (or by this sync) is seen
                    // on the next poll, which converges without writing.
                    seen = Some(revision);
                    if let Err(e) = self.sync(list) {
                        warn!(error = %format!("{e:#}"), "sync failed");
                    }
                }
            }
            std::thread::sleep(POLL);
        }
    }

    fn report_node_ready(&self) -> Result<()> {
        let now = Time(podnet_store::now());
        self.store.update(Kind::Node, None, &self.node, |obj| {
            if let Object::Node(node) = obj {
                let status = node.status.get_or_insert_with(Default::default);
                let conditions = status.conditions.get_or_insert_with(Vec::new);
                conditions.retain(|c| c.type_ != "Ready");
                conditions.push(k8s_openapi::api::core::v1::NodeCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    reason: Some("KubeletReady".into()),
                    message: Some("lab kubelet is posting ready status".into()),
                    last_transition_time: Some(now.clone()),
                    last_heartbeat_time: Some(now.clone()),
                });
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Starts pods bound here that are not running, begins stopping pods that are gone or
    /// deleted, removes the objects of deleted pods that no longer run, writes statuses.
    fn sync(&mut self, network: &Value) -> Result<()> {
        let pods: Vec<Pod> = self
            .store
            .pods()?
            .into_iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(&self.node))
            .collect();
        let mut wanted = BTreeMap::new();
        for pod in &pods {
            let key = pod_key(pod);
            if pod.metadata.deletion_timestamp.is_none() {
                wanted.insert(key, pod.metadata.uid.clone().unwrap_or_default());
            }
        }
        // Stop what is no longer wanted (deleted, gone, or replaced by a pod of the same name).
        let stale: Vec<((String, String), i64)> = self
            .pods
            .iter()
            .filter(|(k, p)| p.kill_at.is_none() && wanted.get(*k) != Some(&p.uid))
            .map(|(k, p)| {
                let grace = pods
                    .iter()
                    .find(|q| pod_key(q) == *k && q.metadata.uid.as_ref() == Some(&p.uid))
                    .map_or(p.grace, grace_period);
                (k.clone(), grace)
            })
            .collect();
        for (key, grace) in stale {
            self.begin_stop(&key, grace);
        }
        // Finalize deletions: the object goes once its pod is stopped.
        for pod in &pods {
            let key = pod_key(pod);
            if pod.metadata.deletion_timestamp.is_some() && !self.pods.contains_key(&key) {
                self.store
                    .delete(Kind::Pod, Some(&key.0), &key.1)
                    .context("removing a deleted pod")?;
            }
        }
        let starting: Vec<&Pod> = pods
            .iter()
            .filter(|pod| {
                let key = pod_key(pod);
                wanted.contains_key(&key) && !self.pods.contains_key(&key)
            })
            .collect();
        // Sandboxes in parallel, as kubelet's pod workers make them: each ADD waits for the
        // agent to program its pod's policy, and one agent sync serves every ADD waiting.
        let sandboxes: Vec<Result<Sandbox>> = std::thread::scope(|scope| {
            let (paths, node, cni) = (&self.paths, self.node.as_str(), &self.cni);
            let mut out = Vec::with_capacity(starting.len());
            for batch in starting.chunks(PARALLEL_SANDBOXES) {
                let workers: Vec<_> = batch
                    .iter()
                    .map(|pod| scope.spawn(move || sandbox(paths, node, cni, network, pod)))
                    .collect();
                for worker in workers {
                    out.push(
                        worker
                            .join()
                            .unwrap_or_else(|_| Err(anyhow::anyhow!("sandbox set-up panicked"))),
                    );
                }
            }
            out
        });
        for (pod, sandbox) in starting.into_iter().zip(sandboxes) {
            let key = pod_key(pod);
            if let Err(e) = sandbox.and_then(|s| self.start(network, pod, s)) {
                let message = format!("{e:#}");
                warn!(pod = %format!("{}/{}", key.0, key.1), error = %message, "cannot start pod");
                self.set_failed(&key, &message)?;
            }
        }
        self.write_statuses()
    }

    /// Starts the containers of a pod whose sandbox is made.
    fn start(&mut self, network: &Value, pod: &Pod, sandbox: Sandbox) -> Result<()> {
        let (namespace, name) = pod_key(pod);
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let Sandbox {
            netns_name,
            result,
            ips,
            pod_dir,
        } = sandbox;

        let mut running = RunningPod {
            uid,
            netns: netns_name,
            cni_result: result,
            containers: Vec::new(),
            grace: grace_period(pod),
            kill_at: None,
        };
        for c in &spec.containers {
            match self.start_container(pod, c, &running.netns, &pod_dir, &ips) {
                Ok(container) => running.containers.push(container),
                Err(e) => {
                    // Nothing of the pod may outlive the failure: its other containers, its
                    // network.
                    self.teardown(network, &(namespace, name), running);
                    return Err(e.context(format!("starting container {}", c.name)));
                }
            }
        }
        info!(pod = %format!("{namespace}/{name}"), ips = ?ips, "pod running");
        self.pods.insert((namespace, name), running);
        Ok(())
    }

    /// Starts a container and, if it has a readinessProbe, its prober.
    fn start_container(
        &self,
        pod: &Pod,
        c: &Container,
        netns_name: &str,
        pod_dir: &Path,
        ips: &[String],
    ) -> Result<RunningContainer> {
        let child = self.spawn_container(pod, c, netns_name, pod_dir, ips)?;
        let mut container = RunningContainer {
            name: c.name.clone(),
            child: Some(child),
            exit_code: None,
            started: podnet_store::now(),
            readiness: None,
        };
        if let Some(p) = &c.readiness_probe {
            let (namespace, name) = pod_key(pod);
            let target = probe::Target {
                name: format!("{namespace}/{name}/{}", c.name),
                pod_ip: ips.first().cloned(),
                netns: netns_name.to_owned(),
                podnet: self.podnet.clone(),
                hostname: pod_hostname(pod),
                env: container_env(pod, c, &self.node, ips),
            };
            match Prober::start(p, c, target, Arc::clone(&self.probe_changes)) {
                Ok(prober) => container.readiness = Some(prober),
                Err(e) => {
                    if let Some(child) = &container.child {
                        signal_group(child.id(), nix::sys::signal::Signal::SIGKILL);
                    }
                    return Err(e).context("starting its readiness prober");
                }
            }
        }
        Ok(container)
    }

    fn spawn_container(
        &self,
        pod: &Pod,
        c: &Container,
        netns_name: &str,
        pod_dir: &Path,
        ips: &[String],
    ) -> Result<Child> {
        let argv = container_argv(c, &self.podnet);
        let log = File::create(pod_dir.join(format!("{}.log", c.name)))?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns_name])
            .arg(&self.podnet)
            .args(["lab", "container-init", "--hostname"])
            .arg(pod_hostname(pod))
            .arg("--")
            .args(&argv)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOSTNAME", pod_hostname(pod))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .current_dir("/");
        for (k, v) in container_env(pod, c, &self.node, ips) {
            cmd.env(k, v);
        }
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        Ok(cmd.spawn()?)
    }

    /// Begins stopping a pod: SIGTERM to its containers now, SIGKILL to what is left after
    /// `grace` seconds ([`Kubelet::finish_stopping`]). The pod keeps running (and being probed)
    /// meanwhile; other pods are served as usual.
    fn begin_stop(&mut self, key: &(String, String), grace: i64) {
        let Some(pod) = self.pods.get_mut(key) else {
            return;
        };
        let grace = Duration::from_secs(u64::try_from(grace.clamp(0, 300)).unwrap_or(0));
        pod.kill_at = Some(Instant::now() + grace);
        for c in &pod.containers {
            if let Some(child) = &c.child {
                signal_group(child.id(), nix::sys::signal::Signal::SIGTERM);
            }
        }
        info!(pod = %format!("{}/{}", key.0, key.1), grace = ?grace, "pod stopping");
    }

    /// Tears down the pods being stopped whose containers have all exited or whose grace period
    /// is over; true if any was.
    fn finish_stopping(&mut self, network: &Value) -> bool {
        let now = Instant::now();
        let done: Vec<(String, String)> = self
            .pods
            .iter()
            .filter(|(_, p)| {
                p.kill_at
                    .is_some_and(|at| now >= at || p.containers.iter().all(|c| c.child.is_none()))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in &done {
            if let Some(pod) = self.pods.remove(key) {
                self.teardown(network, key, pod);
            }
        }
        !done.is_empty()
    }

    /// Ends a pod: SIGKILL to whatever of its containers is left, CNI DEL, its namespace and
    /// files removed. Problems are logged: teardown goes on regardless.
    fn teardown(&self, network: &Value, key: &(String, String), mut pod: RunningPod) {
        for c in &mut pod.containers {
            c.readiness = None;
            if let Some(mut child) = c.child.take() {
                signal_group(child.id(), nix::sys::signal::Signal::SIGKILL);
                let _ = child.wait();
            }
        }
        let netns_path = Path::new(netns::NETNS_RUN_DIR).join(&pod.netns);
        let container_id = sandbox_id(&key.0, &key.1, &pod.uid);
        let attachment = Attachment {
            container_id: &container_id,
            netns: &netns_path,
            ifname: "eth0",
            pod: (&key.0, &key.1),
            capabilities: json!({}),
        };
        if let Err(e) = self.cni.del(network, &attachment, Some(&pod.cni_result)) {
            warn!(error = %format!("{e:#}"), "CNI DEL failed");
        }
        let _ = netns::delete_named(&pod.netns);
        let _ = fs::remove_dir_all(Path::new("/etc/netns").join(&pod.netns));
        info!(pod = %format!("{}/{}", key.0, key.1), "pod stopped");
    }

    /// Collects exited containers; true if any exited since the last call.
    fn reap_containers(&mut self) -> bool {
        let mut any = false;
        for pod in self.pods.values_mut() {
            for c in &mut pod.containers {
                if let Some(child) = &mut c.child
                    && let Ok(Some(status)) = child.try_wait()
                {
                    c.exit_code = Some(status.code().unwrap_or(137));
                    c.child = None;
                    c.readiness = None;
                    any = true;
                }
            }
        }
        any
    }

    fn set_failed(&self, key: &(String, String), message: &str) -> Result<()> {
        self.store.update(Kind::Pod, Some(&key.0), &key.1, |obj| {
            if let Object::Pod(p) = obj {
                let status = p.status.get_or_insert_with(Default::default);
                status.phase = Some("Failed".into());
                status.message = Some(message.to_owned());
                status.reason = Some("SandboxFailed".into());
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Writes each running pod's status where it differs from the stored one.
    fn write_statuses(&self) -> Result<()> {
        // The node's address is the same for every pod: read the Node once per pass.
        let host_ip = self.host_ip();
        for ((namespace, name), pod) in &self.pods {
            let desired = self.status_of(pod, host_ip.clone());
            self.store.update(Kind::Pod, Some(namespace), name, |obj| {
                // Only onto the incarnation this is the status of.
                if let Object::Pod(p) = obj
                    && p.metadata.uid.as_ref() == Some(&pod.uid)
                    && !same_status(p.status.as_ref(), &desired)
                {
                    p.status = Some(desired.clone());
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    fn status_of(&self, pod: &RunningPod, host_ip: Option<String>) -> PodStatus {
        let ips = result_ips(&pod.cni_result);
        let running = pod.containers.iter().all(|c| c.exit_code.is_none());
        let phase = if running {
            "Running"
        } else if pod.containers.iter().all(|c| c.exit_code == Some(0)) {
            "Succeeded"
        } else if pod.containers.iter().all(|c| c.exit_code.is_some()) {
            "Failed"
        } else {
            "Running"
        };
        let started = pod
            .containers
            .iter()
            .map(|c| c.started)
            .min()
            .unwrap_or_else(podnet_store::now);
        let container_ready = |c: &RunningContainer| {
            c.exit_code.is_none() && c.readiness.as_ref().is_none_or(Prober::ready)
        };
        let ready = if pod.containers.iter().all(container_ready) {
            "True"
        } else {
            "False"
        };
        let ready_since = pod
            .containers
            .iter()
            .filter_map(|c| c.readiness.as_ref().map(Prober::since))
            .chain([started])
            .max()
            .unwrap_or(started);
        let condition = |t: &str, s: &str, since: Timestamp| PodCondition {
            type_: t.into(),
            status: s.into(),
            last_transition_time: Some(Time(since)),
            ..Default::default()
        };
        PodStatus {
            phase: Some(phase.into()),
            pod_ip: ips.first().cloned(),
            pod_ips: Some(ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect()),
            host_ip: host_ip.clone(),
            host_ips: host_ip.map(|ip| vec![k8s_openapi::api::core::v1::HostIP { ip }]),
            start_time: Some(Time(started)),
            conditions: Some(vec![
                condition("PodReadyToStartContainers", "True", started),
                condition("Initialized", "True", started),
                condition("Ready", ready, ready_since),
                condition("ContainersReady", ready, ready_since),
                condition("PodScheduled", "True", started),
            ]),
            container_statuses: Some(
                pod.containers
                    .iter()
                    .map(|c| ContainerStatus {
                        name: c.name.clone(),
                        ready: container_ready(c),
                        started: Some(c.exit_code.is_none()),
                        restart_count: 0,
                        image: String::new(),
                        image_id: String::new(),
                        state: Some(match c.exit_code {
                            None => ContainerState {
                                running: Some(ContainerStateRunning {
                                    started_at: Some(Time(c.started)),
                                }),
                                ..Default::default()
                            },
                            Some(code) => ContainerState {
                                terminated: Some(ContainerStateTerminated {
                                    exit_code: code,
                                    reason: Some(
                                        if code == 0 { "Completed" } else { "Error" }.into(),
                                    ),
                                    ..Default::default()
                                }),
                                ..Default::default()
                            },
                        }),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn host_ip(&self) -> Option<String> {
        let obj = self.store.get(Kind::Node, None, &self.node).ok()??;
        let Object::Node(node) = obj else { return None };
        node.status?
            .addresses?
            .into_iter()
            .find(|a| a.type_ == "InternalIP")
            .map(|a| a.address)
    }
}

/// Statuses compared without timestamps that are recomputed on every sync.
fn same_status(a: Option<&PodStatus>, b: &PodStatus) -> bool {
    let Some(a) = a else { return false };
    a.phase == b.phase
        && a.pod_ips == b.pod_ips
        && a.host_ip == b.host_ip
        && a.container_statuses.as_ref().map(|s| {
            s.iter()
                .map(|c| (c.name.clone(), c.ready, c.state.clone()))
                .collect::<Vec<_>>()
        }) == b.container_statuses.as_ref().map(|s| {
            s.iter()
                .map(|c| (c.name.clone(), c.ready, c.state.clone()))
                .collect::<Vec<_>>()
        })
}

/// The seconds a pod has to stop: `metadata.deletionGracePeriodSeconds` (set on deletion),
/// else `spec.terminationGracePeriodSeconds`, else 30.
fn grace_period(pod: &Pod) -> i64 {
    pod.metadata
        .deletion_grace_period_seconds
        .or_else(|| pod.spec.as_ref()?.termination_grace_period_seconds)
        .unwrap_or(DEFAULT_GRACE_SECONDS)
}

/// A pod's network, made and ready for its containers.
struct Sandbox {
    netns_name: String,
    result: Value,
    ips: Vec<String>,
    pod_dir: PathBuf,
}

/// Makes a pod's sandbox: its network namespace, CNI ADD (podnet-cni, waiting for the agent's
/// policy), its CNI result and `/etc` files. Free of the kubelet, so that several run at once.
fn sandbox(
    paths: &LabPaths,
    node: &str,
    cni: &CniRuntime,
    network: &Value,
    pod: &Pod,
) -> Result<Sandbox> {
    let (namespace, name) = pod_key(pod);
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let netns_name = paths.pod_netns(&namespace, &name);
    let netns_path = netns::create_named(&netns_name)
        .or_else(|e| {
            // A leftover from a crashed kubelet: start afresh.
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                netns::delete_named(&netns_name)?;
                netns::create_named(&netns_name)
            } else {
                Err(e)
            }
        })
        .with_context(|| format!("creating netns {netns_name}"))?;
    let container_id = sandbox_id(&namespace, &name, &uid);
    let ports: Vec<Value> = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let host_port = p.host_port?;
            Some(json!({
                "hostPort": host_port,
                "containerPort": p.container_port,
                "protocol": p.protocol.as_deref().unwrap_or("TCP").to_lowercase(),
                "hostIP": p.host_ip.clone().unwrap_or_default(),
            }))
        })
        .collect();
    let attachment = Attachment {
        container_id: &container_id,
        netns: &netns_path,
        ifname: "eth0",
        pod: (&namespace, &name),
        capabilities: json!({ "portMappings": ports }),
    };
    let result = match cni.add(network, &attachment) {
        Ok(r) => r,
        Err(e) => {
            let _ = netns::delete_named(&netns_name);
            return Err(e);
        }
    };
    let ips = result_ips(&result);
    let pod_dir = paths.pod_dir(&namespace, &name);
    fs::create_dir_all(&pod_dir)?;
    fs::write(pod_dir.join("cni-result.json"), result.to_string())?;
    write_etc_files(&netns_name, pod, &namespace, &ips, &paths.netns_etc(node))?;
    Ok(Sandbox {
        netns_name,
        result,
        ips,
        pod_dir,
    })
}

fn pod_key(pod: &Pod) -> (String, String) {
    (
        pod.metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

/// A sandbox ID like containerd's: 64 hex digits, unique per pod incarnation (the uid).
fn sandbox_id(namespace: &str, name: &str, uid: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{namespace}\0{name}\0{uid}"));
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The pod's hostname: `spec.hostname` or its name, as Kubernetes sets it.
pub fn pod_hostname(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default()
}

/// What a container runs. `agnhost` images run podnet's agnhost; everything else runs its
/// `command` + `args` as host binaries (a container with neither just waits, like `pause`).
pub fn container_argv(c: &Container, podnet: &Path) -> Vec<String> {
    let command = c.command.clone().unwrap_or_default();
    let args = c.args.clone().unwrap_or_default();
    let image = c.image.as_deref().unwrap_or_default();
    let podnet = podnet.display().to_string();
    if image.contains("agnhost") {
        // The image's entrypoint is /agnhost; manifests pass the subcommand as args, or as
        // `command: ["/agnhost", "netexec", …]`.
        let mut rest: Vec<String> = match command.first() {
            Some(first) if first.ends_with("agnhost") => command[1..].to_vec(),
            Some(_) => command.clone(),
            None => Vec::new(),
        };
        rest.extend(args);
        if rest.is_empty() {
            rest.push("pause".into());
        }
        return [podnet, "agnhost".into()].into_iter().chain(rest).collect();
    }
    let argv: Vec<String> = command.into_iter().chain(args).collect();
    if argv.is_empty() {
        return vec![podnet, "agnhost".into(), "pause".into()];
    }
    argv
}

/// The container's environment: its `env` values, including the downward API fields the e2e
/// manifests use.
pub(crate) fn container_env(
    pod: &Pod,
    c: &Container,
    node: &str,
    ips: &[String],
) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for e in c.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            Some(v.clone())
        } else if let Some(field) = e
            .value_from
            .as_ref()
            .and_then(|f| f.field_ref.as_ref())
            .map(|f| f.field_path.as_str())
        {
            match field {
                "metadata.name" => pod.metadata.name.clone(),
                "metadata.namespace" => pod.metadata.namespace.clone(),
                "metadata.uid" => pod.metadata.uid.clone(),
                "spec.nodeName" => Some(node.to_owned()),
                "status.podIP" => ips.first().cloned(),
                "status.podIPs" => Some(ips.join(",")),
                _ => None,
            }
        } else {
            None
        };
        env.push((e.name.clone(), value.unwrap_or_default()));
    }
    env
}

/// `/etc/netns/<netns>/hosts` and `resolv.conf`, which `ip netns exec` mounts over `/etc/…` for
/// the pod's processes. The resolv.conf is what kubelet composes from the pod's `dnsPolicy` and
/// `dnsConfig` ([`crate::dns::pod_resolv_conf`]), with the node's own resolv.conf (in
/// `node_etc`, as kubelet's `--resolv-conf`) for `dnsPolicy: Default`.
fn write_etc_files(
    netns_name: &str,
    pod: &Pod,
    namespace: &str,
    ips: &[String],
    node_etc: &Path,
) -> Result<()> {
    let dir = Path::new("/etc/netns").join(netns_name);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let hostname = pod_hostname(pod);
    let fqdn = pod
        .spec
        .as_ref()
        .and_then(|s| s.subdomain.as_ref())
        .map(|sub| format!(" {hostname}.{sub}.{namespace}.svc.{CLUSTER_DOMAIN}"))
        .unwrap_or_default();
    let mut hosts = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    for ip in ips {
        hosts.push_str(&format!("{ip}\t{hostname}{fqdn}\n"));
    }
    fs::write(dir.join("hosts"), hosts)?;
    // A node without one (a lab from before it was written) has no resolver: like an empty file.
    let node_resolv = fs::read_to_string(node_etc.join("resolv.conf")).unwrap_or_default();
    let resolv = crate::dns::pod_resolv_conf(
        pod,
        &crate::dns::ResolvConf::parse(&node_resolv),
        &[CLUSTER_DNS.to_owned()],
        CLUSTER_DOMAIN,
    );
    fs::write(dir.join("resolv.conf"), resolv.render())?;
    // `ip netns exec` mounts every file of the directory over /etc; the hostname file keeps
    // tools that read /etc/hostname consistent with the UTS name.
    fs::write(dir.join("hostname"), format!("{hostname}\n"))?;
    Ok(())
}

fn signal_group(pid: u32, signal: nix::sys::signal::Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), signal);
    }
}

/// `podnet lab container-init --hostname H -- ARGV…`: the first process of a container, already
/// inside the pod's network and mount namespaces (`ip netns exec`). Takes a UTS namespace of its
/// own with the pod's hostname, then becomes the container's command.
pub fn container_init(hostname: &str, argv: &[String]) -> Result<std::convert::Infallible> {
    use std::os::unix::process::CommandExt;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUTS).context("unshare(CLONE_NEWUTS)")?;
    nix::unistd::sethostname(hostname).with_context(|| format!("sethostname({hostname})"))?;
    let (program, args) = argv
        .split_first()
        .context("container-init: no command given")?;
    let e = Command::new(program).args(args).exec();
    Err(e).with_context(|| format!("running {program}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, PodSpec};

    fn container(image: &str, command: &[&str], args: &[&str]) -> Container {
        Container {
            name: "c".into(),
            image: Some(image.into()),
            command: (!command.is_empty()).then(|| command.iter().map(|s| s.to_string()).collect()),
            args: (!args.is_empty()).then(|| args.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn agnhost_images_run_podnets_agnhost_with_their_args() {
        let p = Path::new("/bin/podnet");
        let a = container(
            "registry.k8s.io/e2e-test-images/agnhost:2.53",
            &[],
            &["netexec", "--http-port=8080"],
        );
        assert_eq!(
            container_argv(&a, p),
            ["/bin/podnet", "agnhost", "netexec", "--http-port=8080"]
        );
        let b = container("agnhost", &["/agnhost", "serve-hostname"], &["--port=80"]);
        assert_eq!(
            container_argv(&b, p),
            ["/bin/podnet", "agnhost", "serve-hostname", "--port=80"]
        );
        assert_eq!(
            container_argv(&container("agnhost", &[], &[]), p),
            ["/bin/podnet", "agnhost", "pause"]
        );
    }

    #[test]
    fn other_images_run_their_command_on_the_host() {
        let p = Path::new("/bin/podnet");
        let c = container("busybox", &["sleep"], &["3600"]);
        assert_eq!(container_argv(&c, p), ["sleep", "3600"]);
        assert_eq!(
            container_argv(&container("busybox", &[], &[]), p),
            ["/bin/podnet", "agnhost", "pause"]
        );
    }

    #[test]
    fn downward_api_env_is_filled_in() {
        let mut pod = Pod::default();
        pod.metadata.name = Some("web-0".into());
        pod.metadata.namespace = Some("x".into());
        pod.spec = Some(PodSpec::default());
        let field = |path: &str| EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut c = container("agnhost", &[], &[]);
        c.env = Some(vec![
            EnvVar {
                name: "POD_IP".into(),
                value_from: Some(field("status.podIP")),
                ..Default::default()
            },
            EnvVar {
                name: "NODE".into(),
                value_from: Some(field("spec.nodeName")),
                ..Default::default()
            },
            EnvVar {
                name: "PLAIN".into(),
                value: Some("v".into()),
                ..Default::default()
            },
        ]);
        let env = container_env(&pod, &c, "node-2", &["10.244.2.5".into()]);
        assert_eq!(
            env,
            [
                ("POD_IP".to_owned(), "10.244.2.5".to_owned()),
                ("NODE".to_owned(), "node-2".to_owned()),
                ("PLAIN".to_owned(), "v".to_owned()),
            ]
        );
    }

    #[test]
    fn sandbox_ids_look_like_containerds_and_differ_per_incarnation() {
        let a = sandbox_id("default", "web-0", "uid-1");
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, sandbox_id("default", "web-0", "uid-2"));
        assert_eq!(a, sandbox_id("default", "web-0", "uid-1"));
    }
}

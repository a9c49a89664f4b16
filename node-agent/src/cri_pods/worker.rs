//! One pod's worker (kubelet's pod worker + PLEG relist for that pod): every tick, and on
//! every change of the pod, it compares the spec with what CRI shows and acts: sandbox
//! first, init containers in order, then the containers, restarts under the restart
//! policy with crash-loop back-off, probes; it posts the status when it changed. A pod
//! being deleted is stopped within its grace period (preStop first) and then deleted for
//! good; a pod gone from the API is torn down.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::{json, Value};
use tokio::sync::watch;

use super::config::{self, LABEL_CONTAINER_NAME, LABEL_POD_UID};
use super::env::{self, Sources};
use super::events;
use super::probes::{Probes, Target};
use super::registry::{ContainerEntry, PodEntry, Registry};
use super::status::{self, ContainerView, Observed, Run, RunState};
use super::tokens::Tokens;
use super::volumes;
use crate::client::ApiClient;
use crate::cluster_dns::resolv::{self, ClusterDns};
use crate::runtime::cri::Cri;

/// How often a worker looks at its pod without being told of a change.
const TICK: Duration = Duration::from_secs(1);
/// kubelet's crash-loop back-off: 10 s, doubling, at most 5 minutes.
const BACKOFF_BASE: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Grace period of a pod that vanished from the API (force-deleted).
const GONE_GRACE: Duration = Duration::from_secs(2);

/// What every worker of a node shares.
pub struct NodeContext {
    pub name: String,
    pub host_ip: String,
    pub cri: Cri,
    pub api: Arc<ApiClient>,
    /// `{state}/pods/{uid}`: the pods' volumes.
    pub pods_dir: PathBuf,
    /// `{state}/logs`: the pods' container logs, kubelet's layout.
    pub logs_dir: String,
    pub registry: Registry,
    /// The cluster DNS pods are given (its address appears with the node's pod CIDR).
    pub dns: watch::Receiver<ClusterDns>,
}

impl NodeContext {
    /// The DNS config of `pod`'s sandbox (kubelet reads the host's resolv.conf each time).
    pub fn pod_dns(&self, pod: &Pod) -> cri::DnsConfig {
        let cluster = self.dns.borrow().clone();
        resolv::pod_dns(pod, &cluster, &resolv::host())
    }
}

/// The pause to wait before restart number `restarts + 1` (the first restart is at once).
pub fn backoff(restarts: u32) -> Duration {
    if restarts == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32 << (restarts - 1).min(5);
    (BACKOFF_BASE * factor).min(BACKOFF_MAX)
}

fn timestamp(nanos: i64) -> Timestamp {
    Timestamp::from_nanosecond(i128::from(nanos)).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn run_of(status: &cri::ContainerStatus) -> Run {
    let attempt = status.metadata.as_ref().map_or(0, |m| m.attempt);
    let state = match cri::ContainerState::try_from(status.state) {
        Ok(cri::ContainerState::ContainerRunning) => RunState::Running { started: timestamp(status.started_at) },
        Ok(cri::ContainerState::ContainerExited) => RunState::Exited {
            exit_code: status.exit_code,
            reason: status.reason.clone(),
            message: status.message.clone(),
            started: timestamp(status.started_at),
            finished: timestamp(status.finished_at),
        },
        _ => RunState::Created,
    };
    Run { id: status.id.clone(), image_ref: status.image_ref.clone(), attempt, state }
}

/// Whether a container that ended with `exit_code` runs again under `policy`.
fn restarts(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

struct Sandbox {
    id: String,
    config: cri::PodSandboxConfig,
    ip: Option<String>,
}

/// A container's runs in the current sandbox: latest first.
#[derive(Default)]
struct Runs(Vec<Run>);

/// One pod's worker state.
pub struct Worker {
    node: Arc<NodeContext>,
    pod: Pod,
    sandbox: Option<Sandbox>,
    start_time: Option<Timestamp>,
    /// Probes of each container's current run.
    probes: HashMap<String, Probes>,
    /// Why a container could not be started, by name (cleared when it starts).
    waiting: HashMap<String, (String, String)>,
    /// The last status read of each container, by id: a run the list shows in the same
    /// state is not asked about again (an ended run never changes; a running one only by
    /// ending, which the list shows).
    known: HashMap<String, Run>,
    /// Status last written, to skip writing it again before the watch shows it.
    last_written: Option<Value>,
    /// The sandbox of a pod that finished was stopped.
    finished: bool,
    /// Back-off events already sent, per container and run.
    backoff_told: HashMap<String, u32>,
    /// Something was started or stopped in this look: look again at once, so the status
    /// shows it without waiting a tick.
    acted: bool,
    /// Warnings already sent (container, reason, message): a failure repeated every tick
    /// is told once, until the container starts.
    warned: Mutex<HashSet<(String, String, String)>>,
    /// The pod's projected ServiceAccount tokens.
    tokens: Tokens,
}

fn policy(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always")
}

fn grace_period(pod: &Pod) -> Duration {
    let seconds = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
        .unwrap_or(30);
    Duration::from_secs(seconds.max(0) as u64)
}

impl Worker {
    pub fn new(node: Arc<NodeContext>, pod: Pod) -> Worker {
        Worker {
            node,
            pod,
            sandbox: None,
            start_time: None,
            probes: HashMap::new(),
            waiting: HashMap::new(),
            known: HashMap::new(),
            last_written: None,
            finished: false,
            backoff_told: HashMap::new(),
            warned: Mutex::new(HashSet::new()),
            acted: false,
            tokens: Tokens::default(),
        }
    }

    fn uid(&self) -> String {
        config::uid(&self.pod).to_string()
    }

    fn pod_dir(&self) -> PathBuf {
        self.node.pods_dir.join(config::uid(&self.pod))
    }

    fn event(&self, container: Option<&str>, warning: bool, reason: &str, message: String) {
        if warning {
            let key = (container.unwrap_or_default().to_string(), reason.to_string(), message.clone());
            if !self.warned.lock().unwrap_or_else(PoisonError::into_inner).insert(key) {
                return;
            }
        }
        events::record(&self.node.api, &self.node.name, &self.pod, container, warning, reason, message);
    }

    /// Every sandbox the runtime has of this pod (any attempt, any state).
    async fn sandboxes(&self) -> Result<Vec<cri::PodSandbox>, crate::runtime::cri::Error> {
        self.node.cri.list_pod_sandboxes(HashMap::from([(LABEL_POD_UID.to_string(), self.uid())])).await
    }

    /// The ready sandbox of this pod: adopted from the runtime, or made.
    async fn ensure_sandbox(&mut self) -> Result<(), String> {
        if let Some(sandbox) = &self.sandbox {
            match self.node.cri.pod_sandbox_status(&sandbox.id).await {
                Ok(Some(s)) if s.state == cri::PodSandboxState::SandboxReady as i32 => return Ok(()),
                Ok(_) | Err(_) => {
                    tracing::info!(pod = config::name(&self.pod), "sandbox not ready: making a new one");
                    self.event(
                        None,
                        false,
                        "SandboxChanged",
                        "Pod sandbox changed, it will be killed and re-created.".into(),
                    );
                    let id = sandbox.id.clone();
                    self.sandbox = None;
                    self.known.clear();
                    let _ = self.node.cri.stop_pod_sandbox(&id).await;
                }
            }
        }
        let listed = self.sandboxes().await.map_err(|e| e.to_string())?;
        // A fresh attempt number: containerd keeps a sandbox's name reserved until it is removed.
        let attempt = listed.iter().filter_map(|s| s.metadata.as_ref()).map(|m| m.attempt + 1).max().unwrap_or(0);
        let ready =
            listed.iter().filter(|s| s.state == cri::PodSandboxState::SandboxReady as i32).max_by_key(|s| s.created_at);
        let (id, attempt) = match ready {
            Some(existing) => (existing.id.clone(), existing.metadata.as_ref().map_or(0, |m| m.attempt)),
            None => {
                if !config::host_network(&self.pod) {
                    if let Some(why) = self.node.cri.network_not_ready().await.map_err(|e| e.to_string())? {
                        let message = format!("network is not ready: container runtime network not ready: {why}");
                        self.event(None, true, "NetworkNotReady", message.clone());
                        return Err(message);
                    }
                }
                let dns = self.node.pod_dns(&self.pod);
                tracing::debug!(pod = config::name(&self.pod), resolv = %resolv::render(&dns), "sandbox DNS");
                let config = config::sandbox(&self.pod, &self.node.logs_dir, attempt, dns);
                let began = Instant::now();
                let id = self.node.cri.run_pod_sandbox(config).await.map_err(|e| {
                    let message = format!("Failed to create pod sandbox: {e}");
                    self.event(None, true, "FailedCreatePodSandBox", message.clone());
                    message
                })?;
                tracing::debug!(pod = config::name(&self.pod), ms = began.elapsed().as_millis() as u64, "sandbox made");
                (id, attempt)
            }
        };
        self.remove_dead_sandboxes(&listed, &id).await;
        let status = self.node.cri.pod_sandbox_status(&id).await.map_err(|e| e.to_string())?;
        let ip = status.and_then(|s| s.network).map(|n| n.ip).filter(|ip| !ip.is_empty());
        let config = config::sandbox(&self.pod, &self.node.logs_dir, attempt, self.node.pod_dns(&self.pod));
        self.sandbox = Some(Sandbox { id, config, ip });
        self.start_time.get_or_insert_with(Timestamp::now);
        Ok(())
    }

    /// Removes this pod's sandboxes, other than `current`, that are not ready and hold no
    /// containers: those whose making failed part way (containerd keeps a sandbox whose
    /// network setup failed). kubelet's sandbox garbage collection does the same.
    async fn remove_dead_sandboxes(&self, listed: &[cri::PodSandbox], current: &str) {
        let ready = cri::PodSandboxState::SandboxReady as i32;
        for dead in listed.iter().filter(|s| s.id != current && s.state != ready) {
            if !self.node.cri.list_containers(&dead.id).await.is_ok_and(|c| c.is_empty()) {
                continue;
            }
            match self.node.cri.remove_pod_sandbox(&dead.id).await {
                Ok(()) => tracing::debug!(pod = config::name(&self.pod), sandbox = %dead.id, "dead sandbox removed"),
                Err(error) => tracing::warn!(pod = config::name(&self.pod), %error, "removing a dead sandbox failed"),
            }
        }
    }

    /// Each container name's runs in the sandbox, latest first.
    async fn runs(&mut self, sandbox: &str) -> Result<HashMap<String, Runs>, String> {
        let listed = self.node.cri.list_containers(sandbox).await.map_err(|e| e.to_string())?;
        let mut by_name: HashMap<String, Vec<cri::Container>> = HashMap::new();
        for c in listed {
            let name = c.labels.get(LABEL_CONTAINER_NAME).cloned().unwrap_or_default();
            by_name.entry(name).or_default().push(c);
        }
        let mut out = HashMap::new();
        for (name, mut containers) in by_name {
            containers.sort_by_key(|c| std::cmp::Reverse((c.metadata.as_ref().map_or(0, |m| m.attempt), c.created_at)));
            let mut runs = Vec::new();
            for (i, c) in containers.iter().enumerate() {
                if i >= 2 {
                    // Older runs than the previous one are not shown anywhere: removed.
                    let _ = self.node.cri.remove_container(&c.id).await;
                    self.known.remove(&c.id);
                    continue;
                }
                let listed = cri::ContainerState::try_from(c.state).ok();
                let unchanged = self.known.get(&c.id).filter(|run| match run.state {
                    RunState::Running { .. } => listed == Some(cri::ContainerState::ContainerRunning),
                    RunState::Exited { .. } => true,
                    RunState::Created => false,
                });
                if let Some(run) = unchanged {
                    runs.push(run.clone());
                    continue;
                }
                match self.node.cri.container_status(&c.id).await {
                    Ok(Some(status)) => {
                        let run = run_of(&status);
                        self.known.insert(c.id.clone(), run.clone());
                        runs.push(run);
                    }
                    Ok(None) => {}
                    Err(error) if error.is_not_found() => {}
                    Err(error) => return Err(error.to_string()),
                }
            }
            out.insert(name, Runs(runs));
        }
        Ok(out)
    }

    /// The ConfigMaps and Secrets of the pod's namespace that `container` and the volumes
    /// read; absent ones are left out (the caller reports them).
    async fn sources(&self, container: &Container) -> Sources {
        let (mut maps, mut secrets) = env::references(container);
        let (vol_maps, vol_secrets) = volumes::references(&self.pod);
        maps.extend(vol_maps);
        secrets.extend(vol_secrets);
        let namespace = config::namespace(&self.pod);
        Sources {
            config_maps: get_all::<ConfigMap>(&self.node.api, namespace, maps).await,
            secrets: get_all::<Secret>(&self.node.api, namespace, secrets).await,
            tokens: self.tokens.current(),
            services: self.linked_services(namespace).await,
        }
    }

    /// The Services whose variables the containers get (kubelet's `getServiceEnvVarMap`):
    /// those of the pod's namespace unless `enableServiceLinks: false`, and always the API's
    /// own, `default/kubernetes`. A list that fails leaves the namespace's out (warned).
    async fn linked_services(&self, namespace: &str) -> Vec<Service> {
        let links = self.pod.spec.as_ref().and_then(|s| s.enable_service_links) != Some(false);
        let mut out = Vec::new();
        if links {
            let listed =
                self.node
                    .api
                    .call("list", |c| async move {
                        Api::<Service>::namespaced(c, namespace).list(&Default::default()).await
                    })
                    .await;
            match listed {
                Ok(list) => out.extend(list.items),
                Err(error) => tracing::warn!(pod = config::name(&self.pod), %error, "listing the namespace's Services"),
            }
        }
        if !(links && namespace == "default") {
            out.extend(get_all::<Service>(&self.node.api, "default", vec!["kubernetes".into()]).await.into_values());
        }
        out
    }

    /// Gets the pod's projected ServiceAccount tokens that are missing or due for renewal,
    /// and writes renewed ones into the volumes already set up (a volume set up later gets
    /// the current token then).
    async fn refresh_tokens(&mut self) {
        let (renewed, errors) = self.tokens.refresh(&self.node.api, &self.pod, std::time::SystemTime::now()).await;
        for error in errors {
            tracing::warn!(pod = config::name(&self.pod), %error, "no ServiceAccount token");
            self.event(None, true, "FailedMount", format!("MountVolume.SetUp failed: {error}"));
        }
        let current = self.tokens.current();
        for projection in renewed {
            let dir = self.pod_dir().join("volumes").join(&projection.volume);
            let Some(token) = current.get(&projection.key()).filter(|_| dir.is_dir()) else { continue };
            let written =
                volumes::write_file(&projection.volume, &dir, &projection.path, token.as_bytes(), projection.mode);
            if let Err(error) = written {
                tracing::warn!(pod = config::name(&self.pod), %error, "writing a renewed ServiceAccount token");
            }
        }
    }

    /// Creates and starts run `attempt` of `container`; on failure, the waiting reason.
    async fn start(&mut self, container: &Container, attempt: u32) -> Result<(), (String, String)> {
        let Some(sandbox) = &self.sandbox else {
            return Err(("ContainerCreating".into(), String::new()));
        };
        let began = Instant::now();
        let (sandbox_id, sandbox_config, pod_ip) =
            (sandbox.id.clone(), sandbox.config.clone(), sandbox.ip.clone().unwrap_or_default());
        let image = container.image.clone().unwrap_or_default();
        match self.node.cri.image_id(&image).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                // This node pulls from no registry: an image is imported, or it is missing.
                let message = format!(
                    "Container image \"{image}\" is not present on the node, which pulls from no registry \
                     (import it with `flotilla images import`)"
                );
                self.event(Some(&container.name), true, "ErrImageNeverPull", message.clone());
                return Err(("ErrImageNeverPull".into(), message));
            }
            Err(error) => return Err(("ErrImagePull".into(), error.to_string())),
        }
        let sources = self.sources(container).await;
        let env = env::resolve(&self.pod, container, &sources, &pod_ip, &self.node.host_ip).map_err(|e| {
            self.event(Some(&container.name), true, "Failed", format!("Error: {e}"));
            ("CreateContainerConfigError".to_string(), e.to_string())
        })?;
        let paths = volumes::prepare(&self.pod, &self.pod_dir(), &sources).map_err(|e| {
            self.event(None, true, "FailedMount", format!("MountVolume.SetUp failed: {e}"));
            ("ContainerCreating".to_string(), e.to_string())
        })?;
        let mounts = volumes::mounts(container, &paths)
            .map_err(|e| ("CreateContainerConfigError".to_string(), e.to_string()))?;
        let config = config::container(&self.pod, container, &env, mounts, attempt);
        let id = self.node.cri.create_container(&sandbox_id, config, sandbox_config).await.map_err(|e| {
            self.event(Some(&container.name), true, "Failed", format!("Error: {e}"));
            ("CreateContainerError".to_string(), e.to_string())
        })?;
        self.event(Some(&container.name), false, "Created", format!("Created container {}", container.name));
        self.node.cri.start_container(&id).await.map_err(|e| {
            self.event(Some(&container.name), true, "Failed", format!("Error: {e}"));
            ("RunContainerError".to_string(), e.to_string())
        })?;
        self.event(Some(&container.name), false, "Started", format!("Started container {}", container.name));
        let ms = began.elapsed().as_millis() as u64;
        tracing::debug!(pod = config::name(&self.pod), container = %container.name, ms, "container started");
        self.warned.lock().unwrap_or_else(PoisonError::into_inner).clear();
        self.probes.insert(container.name.clone(), Probes::new(container, &id, Instant::now()));
        Ok(())
    }

    /// Brings one container towards its spec; what the status shows of it.
    async fn step(&mut self, container: &Container, runs: Runs, init: bool) -> ContainerView {
        let name = container.name.clone();
        let mut view = ContainerView {
            name: name.clone(),
            image: container.image.clone().unwrap_or_default(),
            current: runs.0.first().cloned(),
            previous: runs.0.get(1).cloned(),
            waiting: None,
            ready: false,
            started: false,
        };
        let next_attempt = view.current.as_ref().map_or(0, |r| r.attempt + 1);
        let wants_start = match view.current.as_ref().map(|r| &r.state) {
            None => true,
            Some(RunState::Created) => {
                // Created but never started (an agent stopped in between): start it now.
                let id = view.current.as_ref().map(|r| r.id.clone()).unwrap_or_default();
                let _ = self.node.cri.start_container(&id).await;
                false
            }
            Some(RunState::Running { .. }) => false,
            Some(RunState::Exited { exit_code, finished, .. }) => {
                let again = if init {
                    *exit_code != 0 && policy(&self.pod) != "Never"
                } else {
                    restarts(policy(&self.pod), *exit_code)
                };
                if again {
                    let restarts_so_far = view.current.as_ref().map_or(0, |r| r.attempt);
                    let wait = backoff(restarts_so_far);
                    let ready_at = finished.as_millisecond() + wait.as_millis() as i64;
                    if Timestamp::now().as_millisecond() >= ready_at {
                        true
                    } else {
                        let pod =
                            format!("{}_{}({})", config::name(&self.pod), config::namespace(&self.pod), self.uid());
                        let message =
                            format!("back-off {}s restarting failed container={name} pod={pod}", wait.as_secs());
                        if self.backoff_told.get(&name) != Some(&restarts_so_far) {
                            self.backoff_told.insert(name.clone(), restarts_so_far);
                            self.event(Some(&name), true, "BackOff", "Back-off restarting failed container".into());
                        }
                        view.waiting = Some(("CrashLoopBackOff".into(), message));
                        false
                    }
                } else {
                    false
                }
            }
        };
        if wants_start {
            self.acted = true;
            match self.start(container, next_attempt).await {
                Ok(()) => {
                    self.waiting.remove(&name);
                    // Shown as it is at the next look; until then, still being created.
                    view.previous = view.current.take().or(view.previous);
                    view.waiting = None;
                    view.current = Some(Run {
                        id: self.probes.get(&name).map(|p| p.run_id.clone()).unwrap_or_default(),
                        image_ref: String::new(),
                        attempt: next_attempt,
                        state: RunState::Created,
                    });
                }
                Err(why) => {
                    self.waiting.insert(name.clone(), why.clone());
                    view.waiting = Some(why);
                }
            }
        }
        // Probes of a running container.
        if let Some(Run { id, state: RunState::Running { .. }, .. }) = view.current.clone() {
            let probes = self.probes.entry(name.clone()).or_insert_with(|| Probes::new(container, &id, Instant::now()));
            if probes.run_id != id {
                *probes = Probes::new(container, &id, Instant::now());
            }
            let pod_ip = self.sandbox.as_ref().and_then(|s| s.ip.clone()).unwrap_or_else(|| self.node.host_ip.clone());
            let target = Target { cri: &self.node.cri, container_id: &id, container, pod_ip: &pod_ip };
            let failures = probes.round(&target, Instant::now()).await;
            let verdict = probes.verdict();
            for failure in failures {
                self.event(
                    Some(&name),
                    true,
                    "Unhealthy",
                    format!("{} probe failed: {}", failure.kind, failure.output),
                );
            }
            view.ready = verdict.ready;
            view.started = verdict.started;
            if verdict.kill && !init {
                let why = if verdict.started { "liveness" } else { "startup" };
                self.event(
                    Some(&name),
                    false,
                    "Killing",
                    format!("Container {name} failed {why} probe, will be restarted"),
                );
                let _ = self.node.cri.stop_container(&id, grace_period(&self.pod)).await;
                self.probes.remove(&name);
                self.acted = true;
            }
        }
        view
    }

    /// One look at the pod: act, then post the status if it changed.
    pub async fn sync(&mut self) {
        let phase = self.pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
        if phase == "Succeeded" || phase == "Failed" {
            if !self.finished {
                if let Some(sandbox) = &self.sandbox {
                    let _ = self.node.cri.stop_pod_sandbox(&sandbox.id).await;
                }
                self.finished = true;
            }
            return;
        }
        if let Err(message) = self.ensure_sandbox().await {
            tracing::warn!(pod = config::name(&self.pod), %message, "no sandbox");
            return;
        }
        let Some(sandbox_id) = self.sandbox.as_ref().map(|s| s.id.clone()) else { return };
        self.refresh_tokens().await;
        let mut runs = match self.runs(&sandbox_id).await {
            Ok(runs) => runs,
            Err(message) => {
                tracing::warn!(pod = config::name(&self.pod), %message, "listing containers failed");
                return;
            }
        };
        let spec = self.pod.spec.clone().unwrap_or_default();
        let mut observed = Observed {
            sandbox_ready: true,
            pod_ip: self.sandbox.as_ref().and_then(|s| s.ip.clone()),
            host_ip: self.node.host_ip.clone(),
            start_time: self.start_time,
            ..Observed::default()
        };
        let mut initialized = true;
        for init in spec.init_containers.iter().flatten() {
            if !initialized {
                observed.init.push(ContainerView {
                    name: init.name.clone(),
                    image: init.image.clone().unwrap_or_default(),
                    waiting: Some(("PodInitializing".into(), String::new())),
                    ..ContainerView::default()
                });
                continue;
            }
            let view = self.step(init, runs.remove(&init.name).unwrap_or_default(), true).await;
            initialized =
                matches!(view.current.as_ref().map(|r| &r.state), Some(RunState::Exited { exit_code: 0, .. }));
            observed.init.push(view);
        }
        for container in &spec.containers {
            let view = if initialized {
                self.step(container, runs.remove(&container.name).unwrap_or_default(), false).await
            } else {
                ContainerView {
                    name: container.name.clone(),
                    image: container.image.clone().unwrap_or_default(),
                    waiting: Some(("PodInitializing".into(), String::new())),
                    ..ContainerView::default()
                }
            };
            observed.containers.push(view);
        }
        self.publish(&observed);
        // What was just started shows at the second look, which follows at once: one
        // status write, not a Pending one and then a Running one.
        if !self.acted {
            self.write_status(&observed).await;
        }
    }

    /// Tells the kubelet endpoint where this pod's containers are.
    fn publish(&self, observed: &Observed) {
        let Some(sandbox) = &self.sandbox else { return };
        let containers: BTreeMap<String, ContainerEntry> = observed
            .init
            .iter()
            .chain(&observed.containers)
            .filter_map(|v| {
                let run = v.current.as_ref()?;
                Some((
                    v.name.clone(),
                    ContainerEntry {
                        id: run.id.clone(),
                        attempt: run.attempt,
                        running: matches!(run.state, RunState::Running { .. } | RunState::Created),
                    },
                ))
            })
            .collect();
        self.node.registry.put(
            config::namespace(&self.pod),
            config::name(&self.pod),
            PodEntry {
                uid: self.uid(),
                sandbox_id: sandbox.id.clone(),
                log_dir: config::log_directory(&self.node.logs_dir, &self.pod),
                containers,
            },
        );
    }

    async fn write_status(&mut self, observed: &Observed) {
        let wanted = status::status(&self.pod, observed, Timestamp::now());
        if status::shows(&self.pod, &wanted) || self.last_written.as_ref() == Some(&wanted) {
            return;
        }
        let (namespace, name) = (config::namespace(&self.pod).to_string(), config::name(&self.pod).to_string());
        let patch = json!({"metadata": {"uid": self.uid()}, "status": wanted.clone()});
        let result = self
            .node
            .api
            .call("patch pod status", |c| {
                let (namespace, name, patch) = (&namespace, &name, &patch);
                async move {
                    Api::<Pod>::namespaced(c, namespace)
                        .patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
                        .await
                }
            })
            .await;
        match result {
            Ok(pod) => {
                tracing::debug!(pod = %name, phase = ?wanted.get("phase"), "status written");
                self.pod = pod;
                self.last_written = Some(wanted);
            }
            Err(error) => {
                tracing::warn!(pod = %name, %error, "status write failed");
                self.last_written = None;
            }
        }
    }

    /// Stops the containers (preStop hooks first) within `grace`, then the sandbox.
    pub async fn stop(&mut self, grace: Duration) {
        let sandboxes = self.sandboxes().await.unwrap_or_default();
        let deadline = Instant::now() + grace;
        let spec = self.pod.spec.clone().unwrap_or_default();
        let mut stops = Vec::new();
        for sandbox in &sandboxes {
            for c in self.node.cri.list_containers(&sandbox.id).await.unwrap_or_default() {
                if c.state != cri::ContainerState::ContainerRunning as i32 {
                    continue;
                }
                let name = c.labels.get(LABEL_CONTAINER_NAME).cloned().unwrap_or_default();
                let pre_stop = spec
                    .containers
                    .iter()
                    .find(|s| s.name == name)
                    .and_then(|s| s.lifecycle.as_ref()?.pre_stop.as_ref()?.exec.as_ref()?.command.clone());
                let cri = self.node.cri.clone();
                self.event(Some(&name), false, "Killing", format!("Stopping container {name}"));
                stops.push(tokio::spawn(async move {
                    if let Some(command) = pre_stop {
                        let left = deadline.saturating_duration_since(Instant::now());
                        let _ = cri.exec_sync(&c.id, command, left.max(Duration::from_secs(1))).await;
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    let _ = cri.stop_container(&c.id, left).await;
                }));
            }
        }
        for stop in stops {
            let _ = stop.await;
        }
        for sandbox in &sandboxes {
            if let Err(error) = self.node.cri.stop_pod_sandbox(&sandbox.id).await {
                tracing::warn!(pod = config::name(&self.pod), %error, "stopping sandbox failed");
            }
        }
    }

    /// Removes every trace of the pod from the node: sandboxes, containers, volumes, logs.
    pub async fn remove(&mut self) {
        let sandboxes = self.sandboxes().await.unwrap_or_default();
        for sandbox in sandboxes {
            if let Err(error) = self.node.cri.stop_and_remove_pod_sandbox(&sandbox.id).await {
                tracing::warn!(pod = config::name(&self.pod), %error, "removing sandbox failed");
            }
        }
        if !self.uid().is_empty() {
            let _ = tokio::fs::remove_dir_all(self.pod_dir()).await;
            let _ = tokio::fs::remove_dir_all(config::log_directory(&self.node.logs_dir, &self.pod)).await;
        }
        self.node.registry.remove(config::namespace(&self.pod), config::name(&self.pod), &self.uid());
        self.sandbox = None;
    }

    /// Deletes the pod from the API for good, once its containers stopped (grace 0, on
    /// the condition that it is still this pod); whether that is done.
    async fn delete_from_api(&self) -> bool {
        let (namespace, name) = (config::namespace(&self.pod).to_string(), config::name(&self.pod).to_string());
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid: Some(self.uid()), resource_version: None }),
            ..DeleteParams::default()
        };
        let result = self
            .node
            .api
            .call("delete pod", |c| {
                let (namespace, name, params) = (&namespace, &name, &params);
                async move { Api::<Pod>::namespaced(c, namespace).delete(name, params).await }
            })
            .await;
        match result {
            Ok(_) => true,
            Err(e) if e.is_not_found() || e.is_conflict() => true,
            Err(error) => {
                tracing::warn!(pod = %name, %error, "final delete failed");
                false
            }
        }
    }
}

/// The objects of `names` in `namespace` that exist (a failed read counts as absent).
async fn get_all<K>(api: &ApiClient, namespace: &str, names: Vec<String>) -> HashMap<String, K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let mut found = HashMap::new();
    for name in names {
        let got = api
            .call("get", |c| {
                let name = &name;
                async move { Api::<K>::namespaced(c, namespace).get_opt(name).await }
            })
            .await;
        if let Ok(Some(object)) = got {
            found.insert(name, object);
        }
    }
    found
}

/// Runs a worker until its pod is gone (`None` on the channel) and torn down.
pub async fn run(node: Arc<NodeContext>, mut pods: watch::Receiver<Option<Pod>>) {
    let Some(pod) = pods.borrow_and_update().clone() else { return };
    let mut worker = Worker::new(node, pod);
    let mut stopped = false;
    loop {
        if worker.pod.metadata.deletion_timestamp.is_some() {
            if !stopped {
                worker.stop(grace_period(&worker.pod)).await;
                stopped = true;
            }
            worker.delete_from_api().await;
        } else {
            worker.acted = false;
            worker.sync().await;
            if worker.acted {
                // Show what was just started (or stopped) now, not a tick later.
                worker.acted = false;
                worker.sync().await;
            }
        }
        tokio::select! {
            changed = pods.changed() => {
                let next = if changed.is_ok() { pods.borrow_and_update().clone() } else { None };
                match next {
                    Some(pod) => worker.pod = pod,
                    None => {
                        if !stopped {
                            worker.stop(GONE_GRACE).await;
                        }
                        worker.remove().await;
                        return;
                    }
                }
            }
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_ten_seconds_to_five_minutes_and_the_first_restart_is_at_once() {
        let waits: Vec<u64> = (0..8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [0, 10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn restart_policies() {
        assert!(restarts("Always", 0));
        assert!(restarts("OnFailure", 1));
        assert!(!restarts("OnFailure", 0));
        assert!(!restarts("Never", 1));
    }
}

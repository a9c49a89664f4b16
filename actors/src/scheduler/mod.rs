//! The scheduler: kube-scheduler's default profile as a controller over pods. Start at
//! [`Scheduler`], the [`Reconciler`] whose keys are pods (and nodes, to take their changes
//! in); one reconcile of an unscheduled pod runs, in order:
//!
//! - [`pod_info`]: the pod as the scheduler reads it; [`resources`]: its requests.
//! - [`cache`]: the nodes ([`node_info`]) and what the pods on them use, including pods
//!   assumed onto a node before their binding comes back through the watch.
//! - [`schedule_one`]: one decision: [`filters`] and [`inter_pod`] (affinity, topology
//!   spread) find the nodes that fit, [`scores`] ranks them; or kube's FitError message.
//! - [`binding`]: the binding write, or the pod's `PodScheduled` condition and a
//!   `FailedScheduling` event; [`queue`]: when a pod that found no node is tried again.
//!
//! [`bench`] measures throughput on a store in one process.

pub mod bench;
pub mod binding;
pub mod cache;
pub mod filters;
pub mod inter_pod;
pub mod node_info;
pub mod pod_info;
pub mod queue;
pub mod resources;
pub mod schedule_one;
pub mod scores;

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::LocalBoxFuture;
use serde_json::Value;

use crate::api_error::ApiError;
use crate::controller::{Action, Ctx, Lister, ObjectKey, Reconciler, Watched};
use crate::kinds::{self, ResourceKind};
use cache::{Cache, PodState};
use node_info::NodeObj;
use pod_info::{is_terminal, node_name, PodInfo};
use queue::{fingerprint, Gate, Unschedulable};
use schedule_one::{schedule, Rng};

/// The `spec.schedulerName` this scheduler serves (and the source of its events).
pub const SCHEDULER_NAME: &str = "default-scheduler";
/// How often the cache is checked against the informers' copies (what a relist after a
/// leadership change does not report as gone).
const SWEEP_EVERY: Duration = Duration::from_secs(30);
/// Reconciles at once: decisions are made one at a time (before any write); this many
/// bindings may be in flight.
const WORKERS: usize = 128;

fn kind(resource: &str) -> &'static ResourceKind {
    kinds::find("", "v1", resource).unwrap_or(&kinds::BUILTIN[0])
}

fn meta<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.pointer(&format!("/metadata/{field}")).and_then(Value::as_str).unwrap_or("")
}

/// The scheduler's state, shared by its reconciles and its informers' key functions (all
/// on the controller's thread; never borrowed across an `.await`).
struct State {
    cache: Cache,
    pending: Unschedulable,
    /// Nodes whose events arrived since the cache last read them.
    dirty_nodes: HashSet<String>,
    /// The pods informer's copy, once a reconcile has seen it (key functions use it to
    /// tell a deleted pod from an updated one).
    pods: Option<Lister>,
    rng: Rng,
    last_sweep: Instant,
}

/// What a reconcile decided before writing anything.
enum Step {
    Done,
    Requeue(Duration),
    Bind { pod: Arc<Value>, node: String },
    Unschedulable { pod: Arc<Value>, reason: &'static str, message: String, after: Option<Duration> },
}

/// kube-scheduler's default profile. Keys are pods (`namespace/name`) and nodes (no
/// namespace).
pub struct Scheduler {
    state: Rc<RefCell<State>>,
}

impl Default for Scheduler {
    fn default() -> Self {
        let seed =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        let state = State {
            cache: Cache::default(),
            pending: Unschedulable::default(),
            dirty_nodes: HashSet::new(),
            pods: None,
            rng: Rng::new(seed),
            last_sweep: Instant::now(),
        };
        Scheduler { state: Rc::new(RefCell::new(state)) }
    }
}

impl State {
    /// Reads the nodes whose events arrived since the last reconcile.
    fn sync_nodes(&mut self, nodes: &Lister) {
        for name in std::mem::take(&mut self.dirty_nodes) {
            match nodes.get(&ObjectKey::new(None, &name)) {
                Some(node) => {
                    self.cache.set_node(&name, NodeObj::parse(&node));
                }
                None => self.cache.remove_node(&name),
            }
        }
    }

    /// Drops what the informers no longer have: nodes, and pods gone, finished or bound
    /// elsewhere (bindings of this scheduler not yet seen are kept).
    fn sweep(&mut self, pods: &Lister, nodes: &Lister, now: Instant) {
        if now.duration_since(self.last_sweep) < SWEEP_EVERY || !pods.has_synced() || !nodes.has_synced() {
            return;
        }
        self.last_sweep = now;
        for name in self.cache.node_names() {
            if nodes.get(&ObjectKey::new(None, &name)).is_none() {
                self.cache.remove_node(&name);
            }
        }
        for node in nodes.list(None) {
            let name = meta(&node, "name");
            if self.cache.node(name).is_none_or(|n| n.node.is_none()) {
                self.dirty_nodes.insert(name.to_string());
            }
        }
        let stale: Vec<ObjectKey> = self
            .cache
            .pods()
            .filter(|(key, cached)| match pods.get(key) {
                None => cached.state != PodState::Binding,
                Some(pod) => {
                    cached.state == PodState::Observed
                        && (meta(&pod, "uid") != cached.info.uid
                            || node_name(&pod) != Some(cached.node.as_str())
                            || is_terminal(&pod))
                }
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in stale {
            self.cache.remove_pod(&key);
        }
        for key in self.pending.keys() {
            if pods.get(&key).is_none() {
                self.pending.forget(&key);
            }
        }
        metrics::gauge!("flotilla_scheduler_pending_pods").set(self.pending.len() as f64);
    }

    /// What to do about the pod at `key` (`None`: gone).
    fn pod_step(&mut self, key: &ObjectKey, pod: Option<Arc<Value>>, now: Instant) -> Step {
        let Some(pod) = pod else {
            self.cache.remove_pod(key);
            self.pending.forget(key);
            return Step::Done;
        };
        let uid = meta(&pod, "uid");
        if let Some(node) = node_name(&pod) {
            self.pending.forget(key);
            if is_terminal(&pod) {
                self.cache.remove_pod(key);
            } else if let Some(info) = PodInfo::parse(&pod) {
                self.cache.add_pod(Rc::new(info), node, PodState::Observed);
            }
            return Step::Done;
        }
        if let Some(cached) = self.cache.pod(key) {
            if cached.info.uid == uid && cached.state != PodState::Observed {
                // Bound (or being bound) by this scheduler; the informer is behind.
                return Step::Done;
            }
            self.cache.remove_pod(key);
        }
        let ours = matches!(pod.pointer("/spec/schedulerName").and_then(Value::as_str), None | Some(SCHEDULER_NAME));
        let Some(info) = PodInfo::parse(&pod).filter(|i| ours && !i.deleting) else {
            self.pending.forget(key);
            return Step::Done;
        };
        if info.gated {
            self.pending.forget(key);
            let message = "Scheduling is blocked due to non-empty scheduling gates".to_string();
            return Step::Unschedulable { pod, reason: "SchedulingGated", message, after: None };
        }
        let print = fingerprint(&pod);
        match self.pending.gate(key, uid, self.cache.generation, print, now) {
            Gate::Wait(Some(after)) => return Step::Requeue(after),
            Gate::Wait(None) => return Step::Done,
            Gate::Attempt => {}
        }
        match schedule(&mut self.cache, &info, &mut self.rng) {
            Ok(node) => {
                self.pending.forget(key);
                self.cache.add_pod(Rc::new(info), &node, PodState::Binding);
                Step::Bind { pod, node }
            }
            Err(message) => {
                let after = self.pending.failed(key, uid, self.cache.generation, print, now);
                metrics::counter!("flotilla_scheduler_attempts_total", "result" => "unschedulable").increment(1);
                Step::Unschedulable { pod, reason: "Unschedulable", message, after: Some(after) }
            }
        }
    }

    /// Forgets an assumption whose binding failed.
    fn forget_binding(&mut self, key: &ObjectKey, uid: &str) {
        if self.cache.pod(key).is_some_and(|c| c.info.uid == uid && c.state == PodState::Binding) {
            self.cache.remove_pod(key);
        }
    }

    /// The pending pods to try again (and the cluster marked changed), for a key function.
    fn wake(&mut self) -> Vec<ObjectKey> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        self.cache.generation += 1;
        self.pending.keys()
    }
}

impl Scheduler {
    /// Everything up to the first write, without awaiting.
    fn step(&self, ctx: &Ctx, key: &ObjectKey) -> Step {
        let (Some(pods), Some(nodes)) = (ctx.lister(kind("pods")), ctx.lister(kind("nodes"))) else {
            return Step::Done;
        };
        let Ok(mut state) = self.state.try_borrow_mut() else { return Step::Requeue(Duration::from_millis(10)) };
        if state.pods.is_none() {
            state.pods = Some(pods.clone());
        }
        let now = Instant::now();
        state.sync_nodes(nodes);
        state.sweep(pods, nodes, now);
        if key.namespace.is_none() {
            return Step::Done;
        }
        state.pod_step(key, pods.get(key), now)
    }

    async fn bind(&self, ctx: &Ctx, key: &ObjectKey, pod: &Value, node: &str) -> Result<Action, ApiError> {
        match binding::bind(ctx, pod, node).await {
            Ok(_) => {
                if let Ok(mut state) = self.state.try_borrow_mut() {
                    if state.cache.pod(key).is_some_and(|c| c.state == PodState::Binding) {
                        state.cache.set_state(key, PodState::Bound);
                    }
                }
                metrics::counter!("flotilla_scheduler_attempts_total", "result" => "scheduled").increment(1);
                let message =
                    format!("Successfully assigned {}/{} to {node}", meta(pod, "namespace"), meta(pod, "name"));
                ctx.event(pod, "Normal", "Scheduled", &message).await;
                Ok(Action::Done)
            }
            Err(e) => {
                if let Ok(mut state) = self.state.try_borrow_mut() {
                    state.forget_binding(key, meta(pod, "uid"));
                }
                metrics::counter!("flotilla_scheduler_attempts_total", "result" => "error").increment(1);
                match e {
                    // Gone, bound by someone else, being deleted, or replaced: the watch
                    // brings the pod's new state.
                    ApiError::NotFound(_) | ApiError::Unfulfilled { .. } => Ok(Action::Done),
                    e => Err(e),
                }
            }
        }
    }
}

impl Reconciler for Scheduler {
    fn name(&self) -> &'static str {
        SCHEDULER_NAME
    }

    fn watches(&self) -> Vec<Watched> {
        let state = self.state.clone();
        // A pod's own key; and, when a bound pod finishes or goes, the pending pods.
        let pod_keys = move |pod: &Value, _: Option<&Value>| -> Vec<ObjectKey> {
            let Some(key) = ObjectKey::of(pod) else { return Vec::new() };
            let mut keys = vec![key];
            if node_name(pod).is_some() {
                if let Ok(mut state) = state.try_borrow_mut() {
                    let gone = state.pods.as_ref().is_some_and(|l| l.get(&keys[0]).is_none());
                    if gone || is_terminal(pod) {
                        keys.extend(state.wake());
                    }
                }
            }
            keys
        };
        let state = self.state.clone();
        // A node's key (its change is read at the next reconcile); and, when it is new or
        // changed in what scheduling reads, the pending pods.
        let node_keys = move |node: &Value, old: Option<&Value>| -> Vec<ObjectKey> {
            let name = meta(node, "name");
            if name.is_empty() {
                return Vec::new();
            }
            let mut keys = vec![ObjectKey::new(None, name)];
            if let Ok(mut state) = state.try_borrow_mut() {
                state.dirty_nodes.insert(name.to_string());
                if old.is_none_or(|old| NodeObj::parse(old) != NodeObj::parse(node)) {
                    keys.extend(state.wake());
                }
            }
            keys
        };
        vec![Watched::with(kind("pods"), pod_keys), Watched::with(kind("nodes"), node_keys)]
    }

    fn reconcile(self: Rc<Self>, ctx: Ctx, key: ObjectKey) -> LocalBoxFuture<'static, Result<Action, ApiError>> {
        Box::pin(async move {
            match self.step(&ctx, &key) {
                Step::Done => Ok(Action::Done),
                Step::Requeue(after) => Ok(Action::RequeueAfter(after)),
                Step::Bind { pod, node } => self.bind(&ctx, &key, &pod, &node).await,
                Step::Unschedulable { pod, reason, message, after } => {
                    match binding::set_unscheduled_condition(&ctx, &pod, reason, &message).await {
                        Ok(()) | Err(ApiError::NotFound(_)) => {}
                        Err(e) => tracing::debug!(pod = %key, error = %e, "setting PodScheduled failed"),
                    }
                    if after.is_some() {
                        ctx.event(&pod, "Warning", "FailedScheduling", &message).await;
                    }
                    Ok(after.map_or(Action::Done, Action::RequeueAfter))
                }
            }
        })
    }

    fn workers(&self) -> usize {
        WORKERS
    }
}

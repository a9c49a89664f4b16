//! The scheduler: kube-scheduler's default profile as a controller over pods. Start at
//! [`Scheduler`], the [`Reconciler`] whose keys are pods (and nodes, to take their changes
//! in); its decisions are [`state`]'s, made without awaiting. One reconcile:
//!
//! - takes in what its key says: [`pod_info`] (the pod as the scheduler reads it,
//!   [`resources`] its requests, [`priority`] resolved from its PriorityClass), [`cache`]
//!   (the nodes, [`node_info`], and what the pods on them use, including pods assumed
//!   onto a node before their binding comes back through the watch);
//! - pops the first pod of [`active`] (higher priority first, then older) and decides it:
//!   [`schedule_one`]: [`filters`] and [`inter_pod`] (affinity, topology spread) find the
//!   nodes that fit, [`scores`] ranks them; [`extender`]s configured by [`config`] filter
//!   and score further; or kube's FitError message, and [`preemption`] of lower-priority
//!   pods;
//! - writes ([`binding`]): the binding, or the pod's `PodScheduled` condition and a
//!   `FailedScheduling` event, preemption's evictions; [`queue`]: when a pod that found no
//!   node is tried again.
//!
//! [`bench`] measures throughput on a store in one process.

pub mod active;
pub mod bench;
pub mod binding;
pub mod cache;
pub mod config;
pub mod extender;
pub mod filters;
pub mod inter_pod;
pub mod node_info;
pub mod pod_info;
pub mod preemption;
pub mod priority;
pub mod queue;
pub mod resources;
pub mod schedule_one;
pub mod scores;
pub mod state;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::LocalBoxFuture;
use serde_json::Value;

use crate::api_error::ApiError;
use crate::controller::{Action, Ctx, ObjectKey, Reconciler, Watched};
use crate::kinds::{self, ResourceKind};
use config::SchedulerConfig;
use node_info::NodeObj;
use pod_info::{is_terminal, node_name};
use state::{Decision, Extending, Plan, State};

/// The `spec.schedulerName` this scheduler serves by default (and the source of its events).
pub const SCHEDULER_NAME: &str = "default-scheduler";
/// Reconciles at once: decisions are made one at a time (before any write); this many
/// bindings may be in flight.
const WORKERS: usize = 128;

fn kind(group: &str, resource: &str) -> &'static ResourceKind {
    let version = if group.is_empty() { "v1" } else { kinds::preferred_version(group).unwrap_or("v1") };
    kinds::find(group, version, resource).unwrap_or(&kinds::BUILTIN[0])
}

fn meta<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.pointer(&format!("/metadata/{field}")).and_then(Value::as_str).unwrap_or("")
}

/// kube-scheduler with the profiles and extenders of its configuration. Keys are pods
/// (`namespace/name`) and nodes (no namespace).
pub struct Scheduler {
    state: Rc<RefCell<State>>,
}

impl Default for Scheduler {
    /// The configuration [`config::install`]ed in this process, or the default one.
    fn default() -> Self {
        Scheduler::new(config::installed())
    }
}

impl Scheduler {
    pub fn new(config: Arc<SchedulerConfig>) -> Self {
        let seed =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        Scheduler { state: Rc::new(RefCell::new(State::new(config, seed))) }
    }

    /// Everything up to the first write, without awaiting.
    fn step(&self, ctx: &Ctx, key: &ObjectKey) -> Plan {
        let (Some(pods), Some(nodes)) = (ctx.lister(kind("", "pods")), ctx.lister(kind("", "nodes"))) else {
            return Plan::default();
        };
        let Ok(mut state) = self.state.try_borrow_mut() else {
            return Plan { decision: None, requeue: Some(Duration::from_millis(10)) };
        };
        if state.pods.is_none() {
            state.pods = Some(pods.clone());
        }
        if state.classes.is_none() {
            state.classes = ctx.lister(kind("scheduling.k8s.io", "priorityclasses")).cloned();
            state.reorder(pods);
        }
        state.step(key, pods, nodes, Instant::now())
    }

    /// Asks the extenders about a pod, then decides it.
    async fn extend(&self, e: Extending) -> Option<Decision> {
        let extenders = self.state.try_borrow().map(|s| s.extenders.clone()).unwrap_or_default();
        let answer = extender::extend(&extenders, &e.pod, e.nodes.clone()).await;
        let mut state = self.state.try_borrow_mut().ok()?;
        state.extended(e, answer, Instant::now())
    }

    async fn bind(&self, ctx: &Ctx, pod: &Value, node: &str) -> Result<Action, ApiError> {
        let Some(key) = ObjectKey::of(pod) else { return Ok(Action::Done) };
        let extenders = self.state.try_borrow().map(|s| s.extenders.clone()).unwrap_or_default();
        let written = match extenders.iter().find(|e| e.binds() && e.interested(pod)) {
            Some(binder) => binder.bind(pod, node).await.map_err(|e| ApiError::ServiceUnavailable(e.to_string())),
            None => binding::bind(ctx, pod, node).await.map(|_| ()),
        };
        match written {
            Ok(()) => {
                if let Ok(mut state) = self.state.try_borrow_mut() {
                    if state.cache.pod(&key).is_some_and(|c| c.state == cache::PodState::Binding) {
                        state.cache.set_state(&key, cache::PodState::Bound);
                    }
                }
                metrics::counter!("flotilla_scheduler_attempts_total", "result" => "scheduled").increment(1);
                let message =
                    format!("Successfully assigned {}/{} to {node}", meta(pod, "namespace"), meta(pod, "name"));
                ctx.event(pod, "Normal", "Scheduled", &message).await;
                Ok(Action::Done)
            }
            Err(e) => {
                // Gone, bound by someone else, being deleted, or replaced: the watch brings
                // the pod's new state. Anything else: the pod is tried again.
                let settled = matches!(e, ApiError::NotFound(_) | ApiError::Unfulfilled { .. });
                if let Ok(mut state) = self.state.try_borrow_mut() {
                    state.forget_binding(&key, pod, !settled);
                }
                metrics::counter!("flotilla_scheduler_attempts_total", "result" => "error").increment(1);
                if settled {
                    Ok(Action::Done)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Writes one decision; returns when to look again.
    async fn write(&self, ctx: &Ctx, decision: Decision) -> Result<Option<Duration>, ApiError> {
        match decision {
            Decision::Extend(e) => match self.extend(*e).await {
                Some(Decision::Extend(_)) | None => Ok(None),
                Some(decision) => Box::pin(self.write(ctx, decision)).await,
            },
            Decision::Bind { pod, node, profile } => {
                let ctx = as_profile(ctx, profile);
                self.bind(&ctx, &pod, &node).await.map(|_| None)
            }
            Decision::Unschedulable { pod, profile, reason, message, after, preempt } => {
                let ctx = as_profile(ctx, profile);
                if let Some(candidate) = &preempt {
                    binding::preempt_victims(&ctx, &pod, profile, &candidate.node, &candidate.victims).await;
                }
                let nominated = preempt.as_ref().map(|c| c.node.as_str());
                match binding::set_unscheduled_condition(&ctx, &pod, reason, &message, nominated).await {
                    Ok(()) | Err(ApiError::NotFound(_)) => {}
                    Err(e) => tracing::debug!(pod = meta(&pod, "name"), error = %e, "setting PodScheduled failed"),
                }
                if after.is_some() {
                    ctx.event(&pod, "Warning", "FailedScheduling", &message).await;
                }
                Ok(after)
            }
        }
    }
}

/// The context of a profile's writes: its events name the profile's scheduler.
fn as_profile(ctx: &Ctx, profile: &'static str) -> Ctx {
    let mut ctx = ctx.clone();
    ctx.manager = profile;
    ctx
}

impl Reconciler for Scheduler {
    fn name(&self) -> &'static str {
        SCHEDULER_NAME
    }

    fn watches(&self) -> Vec<Watched> {
        let state = self.state.clone();
        // A pod's own key (queued for an attempt if it waits for a node); and, when a
        // bound pod finishes or goes, the pending pods.
        let pod_keys = move |pod: &Value, _: Option<&Value>| -> Vec<ObjectKey> {
            let Some(key) = ObjectKey::of(pod) else { return Vec::new() };
            let Ok(mut state) = state.try_borrow_mut() else { return vec![key] };
            let gone = state.pods.as_ref().is_some_and(|l| l.get(&key).is_none());
            let mut keys = vec![key.clone()];
            if node_name(pod).is_some() {
                if gone || is_terminal(pod) {
                    keys.extend(state.wake());
                }
            } else {
                state.enqueue(&key, pod);
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
        // PriorityClasses are read where pods are (no keys of their own).
        let classes = |_: &Value, _: Option<&Value>| Vec::new();
        vec![
            Watched::with(kind("", "pods"), pod_keys),
            Watched::with(kind("", "nodes"), node_keys),
            Watched::with(kind("scheduling.k8s.io", "priorityclasses"), classes),
        ]
    }

    fn reconcile(self: Rc<Self>, ctx: Ctx, key: ObjectKey) -> LocalBoxFuture<'static, Result<Action, ApiError>> {
        // Decided now, in the order the work queue hands keys out.
        let plan = self.step(&ctx, &key);
        Box::pin(async move {
            let mut requeue = plan.requeue;
            if let Some(decision) = plan.decision {
                if let Some(after) = self.write(&ctx, decision).await? {
                    requeue = Some(requeue.map_or(after, |r| r.min(after)));
                }
            }
            Ok(requeue.map_or(Action::Done, Action::RequeueAfter))
        })
    }

    fn workers(&self) -> usize {
        WORKERS
    }
}

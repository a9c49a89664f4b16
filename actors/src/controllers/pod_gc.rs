//! The pod garbage collector (kube-controller-manager's `pod-garbage-collector`): pods
//! bound to a Node that no longer exists (checked against the store, not only the copy;
//! a Node never seen must stay missing for [`QUARANTINE`] first) are marked `Failed` with a
//! `DisruptionTarget` condition and force-deleted; so are
//! unscheduled pods being deleted (no kubelet will finish them); and past
//! [`TERMINATED_POD_THRESHOLD`] finished pods, the oldest go. Each pod event looks at that
//! pod; a Node that went, and a timer, sweep every pod.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{join_all, LocalBoxFuture};
use serde_json::{json, Value};

use super::pods::{self, by_creation, name, namespace, str_at, terminating, timestamp, uid};
use crate::api_error::ApiError;
use crate::controller::{Action, Ctx, Lister, ObjectKey, Reconciler, Watched};
use crate::deletion::DeleteOptions;
use crate::kinds::ResourceKind;
use crate::object_store::Part;

/// Finished pods kept at most (kube's `--terminated-pod-gc-threshold` default).
pub const TERMINATED_POD_THRESHOLD: usize = 12500;
/// How long a pod's Node must have been missing before the pod counts as orphaned (kube's
/// `quarantineTime`): a pod bound to a Node about to be registered is left alone.
pub const QUARANTINE: Duration = Duration::from_secs(40);
/// How often every pod is looked at (kube's `gcCheckPeriod`).
pub const SWEEP_EVERY: Duration = Duration::from_secs(20);

fn nodes() -> &'static ResourceKind {
    pods::kind("", "nodes")
}

/// The key of a sweep over every pod (no pod has an empty name).
fn sweep_key() -> ObjectKey {
    ObjectKey::new(None, "")
}

fn node_name(pod: &Value) -> &str {
    str_at(pod, "/spec/nodeName")
}

fn finished(pod: &Value) -> bool {
    matches!(str_at(pod, "/status/phase"), "Succeeded" | "Failed")
}

/// The controller; keys are pods, and the sweep.
pub struct PodGc {
    threshold: usize,
    /// The Node informer's copy (known once the first reconcile ran), so that only Nodes
    /// that went start a sweep.
    nodes: Rc<RefCell<Option<Lister>>>,
    /// Nodes this collector has seen exist: once gone, their pods are orphans at once.
    known: Rc<RefCell<HashSet<String>>>,
    /// When each missing Node (never seen) was first found missing.
    missing_since: Rc<RefCell<std::collections::HashMap<String, std::time::Instant>>>,
    quarantine: Duration,
}

impl Default for PodGc {
    fn default() -> Self {
        PodGc::new()
    }
}

impl PodGc {
    pub fn new() -> Self {
        PodGc::with_threshold(TERMINATED_POD_THRESHOLD)
    }

    /// A collector that keeps at most `threshold` finished pods (0: no limit).
    pub fn with_threshold(threshold: usize) -> Self {
        PodGc {
            threshold,
            nodes: Rc::default(),
            known: Rc::default(),
            missing_since: Rc::default(),
            quarantine: QUARANTINE,
        }
    }

    /// A collector with another quarantine (tests).
    pub fn with_quarantine(mut self, quarantine: Duration) -> Self {
        self.quarantine = quarantine;
        self
    }

    /// Pods of `candidates` whose Node is gone, confirmed by reading each Node from the
    /// store.
    async fn orphans(&self, ctx: &Ctx, node_lister: &Lister, candidates: Vec<Arc<Value>>) -> Vec<Arc<Value>> {
        let mut missing: HashSet<&str> = HashSet::new();
        for node in candidates.iter().map(|p| node_name(p)).filter(|n| !n.is_empty()) {
            if node_lister.get(&ObjectKey::new(None, node)).is_some() {
                self.known.borrow_mut().insert(node.to_string());
            } else {
                missing.insert(node);
            }
        }
        let mut gone: HashSet<&str> = HashSet::new();
        for node in missing {
            if let Err(ApiError::NotFound(_)) = ctx.get(nodes(), None, node).await {
                if self.known.borrow().contains(node) {
                    gone.insert(node);
                    continue;
                }
                let since =
                    *self.missing_since.borrow_mut().entry(node.to_string()).or_insert_with(std::time::Instant::now);
                if since.elapsed() >= self.quarantine {
                    gone.insert(node);
                }
            } else {
                self.missing_since.borrow_mut().remove(node);
            }
        }
        candidates.iter().filter(|p| gone.contains(node_name(p))).cloned().collect()
    }

    async fn sweep(&self, ctx: &Ctx, pod_lister: &Lister, node_lister: &Lister) -> Result<(), ApiError> {
        let all = pod_lister.list(None);
        let bound: Vec<Arc<Value>> = all.iter().filter(|p| !node_name(p).is_empty()).cloned().collect();
        let orphans = self.orphans(ctx, node_lister, bound).await;
        let mut first_error = collect(join_all(orphans.iter().map(|p| orphan(ctx, p))).await);
        let unscheduled: Vec<&Arc<Value>> = all.iter().filter(|p| node_name(p).is_empty() && terminating(p)).collect();
        let results = join_all(unscheduled.iter().map(|p| fail_and_delete(ctx, p, None))).await;
        first_error = first_error.or(collect(results));
        if self.threshold > 0 {
            let mut done: Vec<Arc<Value>> = all.iter().filter(|p| finished(p) && !terminating(p)).cloned().collect();
            if done.len() > self.threshold {
                done.sort_by(|a, b| by_creation(a, b));
                let excess = done.len() - self.threshold;
                let results = join_all(done.iter().take(excess).map(|p| force_delete(ctx, p))).await;
                first_error = first_error.or(collect(results));
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn sync(&self, ctx: &Ctx, key: &ObjectKey) -> Result<Action, ApiError> {
        let (Some(pod_lister), Some(node_lister)) = (ctx.lister(pods::pods()).cloned(), ctx.lister(nodes()).cloned())
        else {
            return Ok(Action::Done);
        };
        self.nodes.borrow_mut().get_or_insert_with(|| node_lister.clone());
        if *key == sweep_key() {
            self.sweep(ctx, &pod_lister, &node_lister).await?;
            return Ok(Action::RequeueAfter(SWEEP_EVERY));
        }
        let Some(pod) = pod_lister.get(key) else { return Ok(Action::Done) };
        if node_name(&pod).is_empty() {
            if terminating(&pod) {
                fail_and_delete(ctx, &pod, None).await?;
            }
            return Ok(Action::Done);
        }
        if !self.orphans(ctx, &node_lister, vec![pod.clone()]).await.is_empty() {
            orphan(ctx, &pod).await?;
        } else if self.missing_since.borrow().contains_key(node_name(&pod)) {
            // Its Node is missing but still in quarantine: look again once that is over.
            return Ok(Action::RequeueAfter(self.quarantine));
        }
        if self.threshold > 0 && finished(&pod) {
            let done = pod_lister.list_where(None, |p| finished(p) && !terminating(p)).len();
            if done > self.threshold {
                self.sweep(ctx, &pod_lister, &node_lister).await?;
            }
        }
        Ok(Action::Done)
    }
}

fn collect(results: Vec<Result<(), ApiError>>) -> Option<ApiError> {
    results.into_iter().find_map(Result::err)
}

/// Deletes a pod at once (grace period 0), this very pod only.
async fn force_delete(ctx: &Ctx, pod: &Value) -> Result<(), ApiError> {
    let options =
        DeleteOptions { grace_period_seconds: Some(0), uid: Some(uid(pod).to_string()), ..DeleteOptions::default() };
    match ctx.delete(pods::pods(), (Some(namespace(pod)), name(pod)), options).await {
        Ok(_) | Err(ApiError::NotFound(_)) => Ok(()),
        // Another pod of that name now.
        Err(ApiError::Unfulfilled { .. } | ApiError::Conflict(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A pod whose Node is gone: `Failed` with a `DisruptionTarget` condition, then deleted.
async fn orphan(ctx: &Ctx, pod: &Value) -> Result<(), ApiError> {
    let condition = json!({
        "type": "DisruptionTarget",
        "status": "True",
        "reason": "DeletionByPodGC",
        "message": "PodGC: node no longer exists",
        "lastTransitionTime": timestamp(pods::now()),
    });
    fail_and_delete(ctx, pod, Some(condition)).await
}

/// kube's `markFailedAndDeletePodWithCondition`: a pod not finished yet is marked `Failed`
/// (with `condition`), then force-deleted.
async fn fail_and_delete(ctx: &Ctx, pod: &Value, condition: Option<Value>) -> Result<(), ApiError> {
    if !finished(pod) {
        let mut status = json!({"phase": "Failed"});
        if let Some(condition) = condition {
            let kind = str_at(&condition, "/type").to_string();
            let mut conditions: Vec<Value> =
                pod.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
            conditions.retain(|c| str_at(c, "/type") != kind);
            conditions.push(condition);
            status["conditions"] = Value::Array(conditions);
        }
        let patch = json!({"status": status});
        match ctx.merge_patch(pods::pods(), (Some(namespace(pod)), name(pod)), Part::Status, &patch).await {
            Ok(_) => {}
            Err(ApiError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    force_delete(ctx, pod).await
}

impl Reconciler for PodGc {
    fn name(&self) -> &'static str {
        "podgc"
    }

    fn watches(&self) -> Vec<Watched> {
        let threshold = self.threshold;
        let pod_keys = move |pod: &Value, _: Option<&Value>| {
            let relevant = !node_name(pod).is_empty() || terminating(pod) || (threshold > 0 && finished(pod));
            ObjectKey::of(pod).filter(|_| relevant).into_iter().collect()
        };
        let known = self.nodes.clone();
        let node_keys = move |node: &Value, _: Option<&Value>| {
            // A Node that is still there changes nothing.
            let still = known.borrow().as_ref().is_some_and(|l| l.get(&ObjectKey::new(None, name(node))).is_some());
            if still {
                Vec::new()
            } else {
                vec![sweep_key()]
            }
        };
        vec![Watched::with(pods::pods(), pod_keys), Watched::with(nodes(), node_keys)]
    }

    fn reconcile(self: Rc<Self>, ctx: Ctx, key: ObjectKey) -> LocalBoxFuture<'static, Result<Action, ApiError>> {
        Box::pin(async move { self.sync(&ctx, &key).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_has_a_key_no_pod_has() {
        let pod = json!({"metadata": {"name": "p", "namespace": "default"}});
        assert_ne!(ObjectKey::of(&pod), Some(sweep_key()));
        assert!(finished(&json!({"status": {"phase": "Failed"}})));
        assert!(!finished(&json!({"status": {"phase": "Running"}})));
    }
}

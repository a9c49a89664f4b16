//! The ReplicaSet controller (kube-controller-manager's `replicaset-controller`): keeps
//! `spec.replicas` active pods matching each ReplicaSet's selector, creating them from its
//! template (in slow-start batches) and deleting the surplus in kube's order; adopts
//! matching orphans and releases pods that stopped matching; writes `status` (replicas,
//! fullyLabeled, ready, available, observedGeneration, the `ReplicaFailure` condition).
//!
//! Expectations, as upstream's: after creating or deleting pods, a ReplicaSet is not
//! managed again until its informer has seen those writes (or [`EXPECTATIONS_TIMEOUT`]
//! passed), so a stale copy never creates twice.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{join_all, LocalBoxFuture};
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::expectations::Expectations;
use super::pods::{
    self, claim, controller_ref, deletion_order, int_at, is_active, is_available, is_ready, name, now, spec_replicas,
    status_count, terminating, Selector,
};
use crate::api_error::ApiError;
use crate::controller::informer::resource_version;
use crate::controller::{controller_of, Action, Ctx, Lister, ObjectKey, Reconciler, Watched};
use crate::object_store::Part;

/// At most this many pods created or deleted per reconcile (upstream's `burstReplicas`).
pub const BURST_REPLICAS: usize = 500;
pub use super::expectations::EXPECTATIONS_TIMEOUT;

/// The controller; keys are ReplicaSets.
#[derive(Default)]
pub struct ReplicaSets {
    expectations: Expectations,
    /// The ReplicaSet informer's copy, for mapping orphan pods to ReplicaSets (known once
    /// the first reconcile ran; by then every ReplicaSet was queued by the first list).
    replica_sets: Rc<RefCell<Option<Lister>>>,
}

impl ReplicaSets {
    pub fn new() -> Self {
        ReplicaSets::default()
    }

    /// Creates or deletes pods so that `pods` (the active ones it controls) number
    /// `spec.replicas`.
    async fn manage_replicas(
        &self,
        ctx: &Ctx,
        key: &ObjectKey,
        rs: &Value,
        pods: &[Arc<Value>],
    ) -> Result<(), ApiError> {
        let diff = pods.len() as i64 - spec_replicas(rs);
        let ns = key.namespace.as_deref();
        if diff < 0 {
            let want = ((-diff) as usize).min(BURST_REPLICAS);
            let pod = pods::pod_from_template(rs, "ReplicaSet");
            let (mut created, mut remaining, mut batch) = (0, want, 1);
            let mut failed = None;
            // Slow start: 1, 2, 4, ... at once, stopping after a batch with a failure.
            while remaining > 0 && failed.is_none() {
                let n = batch.min(remaining);
                let results = join_all((0..n).map(|_| ctx.create(pods::pods(), ns, pod.clone()))).await;
                let mut events = Vec::new();
                for result in results {
                    match result {
                        Ok(p) => {
                            created = created.max(resource_version(&p).unwrap_or(0));
                            events.push(("Normal", "SuccessfulCreate", format!("Created pod: {}", name(&p))));
                        }
                        // The namespace is going: every create would fail.
                        Err(ApiError::Forbidden { .. }) => {
                            failed.get_or_insert(None);
                        }
                        Err(e) => {
                            events.push(("Warning", "FailedCreate", format!("Error creating: {e}")));
                            failed = Some(Some(e));
                        }
                    }
                }
                join_all(events.iter().map(|(t, reason, msg)| ctx.event(rs, t, reason, msg))).await;
                remaining -= n;
                batch *= 2;
            }
            self.expectations.expect(key, created, Vec::new());
            return match failed {
                Some(Some(e)) => Err(e),
                _ => Ok(()),
            };
        }
        if diff > 0 {
            let mut ranked: Vec<Arc<Value>> = pods.to_vec();
            ranked.sort_by(|a, b| deletion_order(a, b));
            ranked.truncate((diff as usize).min(BURST_REPLICAS));
            let doomed: Vec<&Arc<Value>> = ranked.iter().collect();
            let (deleted, failed) = pods::delete_burst(ctx, rs, ns, &doomed).await;
            self.expectations.expect(key, 0, deleted);
            if let Some(e) = failed {
                return Err(e);
            }
        }
        Ok(())
    }
}

/// The status of `rs` with `pods` (the active pods it controls) at `now`; `failure` is the
/// error of the last create or delete, which sets `ReplicaFailure` (upstream's
/// `calculateStatus`).
pub fn calculate_status(rs: &Value, pods: &[Arc<Value>], failure: Option<&ApiError>, now: OffsetDateTime) -> Value {
    let mut status = rs.get("status").filter(|s| s.is_object()).cloned().unwrap_or_else(|| json!({}));
    let template_labels = rs.pointer("/spec/template/metadata/labels").and_then(Value::as_object);
    let min_ready = int_at(rs, "/spec/minReadySeconds");
    let (mut fully_labeled, mut ready, mut available) = (0, 0, 0);
    for pod in pods {
        let labels = pod.pointer("/metadata/labels");
        if template_labels.into_iter().flatten().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v)) {
            fully_labeled += 1;
        }
        if is_ready(pod) {
            ready += 1;
            if is_available(pod, min_ready, now) {
                available += 1;
            }
        }
    }
    let has_failure = pods::condition(&status, "ReplicaFailure").is_some();
    match failure {
        Some(e) if !has_failure => {
            let diff = pods.len() as i64 - spec_replicas(rs);
            let reason = if diff < 0 { "FailedCreate" } else { "FailedDelete" };
            let cond = json!({
                "type": "ReplicaFailure",
                "status": "True",
                "lastTransitionTime": pods::timestamp(now),
                "reason": reason,
                "message": e.to_string(),
            });
            pods::set_condition(&mut status, cond);
        }
        None if has_failure => pods::remove_condition(&mut status, "ReplicaFailure"),
        _ => {}
    }
    status["replicas"] = json!(pods.len());
    status["fullyLabeledReplicas"] = json!(fully_labeled);
    status["readyReplicas"] = json!(ready);
    status["availableReplicas"] = json!(available);
    status["observedGeneration"] = json!(int_at(rs, "/metadata/generation"));
    status
}

/// Writes `status` through the status subresource unless it is what `rs` has.
async fn write_status(ctx: &Ctx, rs: &Value, status: Value) -> Result<Value, ApiError> {
    if pods::normalized(rs.get("status")) == pods::normalized(Some(&status)) {
        return Ok(rs.clone());
    }
    let mut updated = rs.clone();
    pods::set_path(&mut updated, &["status"], status);
    ctx.update(pods::replica_sets(), Part::Status, updated).await
}

/// When a ready pod of `rs` not yet available becomes available.
fn next_available(rs: &Value, pods: &[Arc<Value>], now: OffsetDateTime) -> Option<Duration> {
    let min_ready = int_at(rs, "/spec/minReadySeconds");
    if min_ready <= 0 {
        return None;
    }
    let since = |p: &Value| {
        let conditions = p.pointer("/status/conditions").and_then(Value::as_array)?;
        let ready = conditions.iter().find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))?;
        pods::parse_time(ready.get("lastTransitionTime").and_then(Value::as_str)?)
    };
    pods.iter()
        .filter(|p| is_ready(p) && !is_available(p, min_ready, now))
        .map(|p| match since(p) {
            Some(at) => at.checked_add(time::Duration::seconds(min_ready)).map_or(time::Duration::ZERO, |at| at - now),
            None => time::Duration::seconds(min_ready),
        })
        .min()
        .map(|wait| Duration::from_millis(wait.whole_milliseconds().clamp(0, i64::MAX as i128) as u64 + 1000))
}

impl Reconciler for ReplicaSets {
    fn name(&self) -> &'static str {
        "replicaset"
    }

    fn watches(&self) -> Vec<Watched> {
        let observe = self.expectations.observer();
        let replica_sets = self.replica_sets.clone();
        let pod_keys = move |pod: &Value, old: Option<&Value>| {
            observe(pod);
            let mut keys: Vec<ObjectKey> = Vec::new();
            for p in std::iter::once(pod).chain(old) {
                let found: Vec<ObjectKey> = match controller_ref(p) {
                    Some(_) => controller_of(p, "ReplicaSet").into_iter().collect(),
                    // An orphan: every ReplicaSet that may adopt it.
                    None => match replica_sets.borrow().as_ref() {
                        Some(lister) => lister
                            .list(Some(pods::namespace(p)))
                            .iter()
                            .filter(|rs| Selector::of(rs).matches(p))
                            .filter_map(|rs| ObjectKey::of(rs))
                            .collect(),
                        None => Vec::new(),
                    },
                };
                for key in found {
                    if !keys.contains(&key) {
                        keys.push(key);
                    }
                }
            }
            keys
        };
        vec![Watched::objects(pods::replica_sets()), Watched::with(pods::pods(), pod_keys)]
    }

    fn reconcile(self: Rc<Self>, ctx: Ctx, key: ObjectKey) -> LocalBoxFuture<'static, Result<Action, ApiError>> {
        Box::pin(async move {
            let (Some(rs_lister), Some(pod_lister)) =
                (ctx.lister(pods::replica_sets()).cloned(), ctx.lister(pods::pods()).cloned())
            else {
                return Ok(Action::Done);
            };
            *self.replica_sets.borrow_mut() = Some(rs_lister.clone());
            let Some(rs) = rs_lister.get(&key) else {
                self.expectations.forget(&key);
                return Ok(Action::Done);
            };
            let selector = Selector::of(&rs);
            let active: Vec<Arc<Value>> =
                pod_lister.list(key.namespace.as_deref()).into_iter().filter(|p| is_active(p)).collect();
            let pods = claim(&ctx, pods::pods(), &rs, "ReplicaSet", &selector, active).await?;
            let satisfied = self.expectations.satisfied(&key, &pod_lister);
            let mut failure = None;
            if satisfied && !terminating(&rs) {
                failure = self.manage_replicas(&ctx, &key, &rs, &pods).await.err();
            }
            let at = now();
            let status = calculate_status(&rs, &pods, failure.as_ref(), at);
            let written = write_status(&ctx, &rs, status).await?;
            if let Some(e) = failure {
                return Err(e);
            }
            if !satisfied {
                return Ok(Action::RequeueAfter(EXPECTATIONS_TIMEOUT));
            }
            let (ready, available) =
                (status_count(&written, "readyReplicas"), status_count(&written, "availableReplicas"));
            let replicas = spec_replicas(&written);
            if ready == replicas && available != replicas {
                if let Some(after) = next_available(&written, &pods, at) {
                    return Ok(Action::RequeueAfter(after));
                }
            }
            Ok(Action::Done)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(labels: Value, ready: bool) -> Arc<Value> {
        let status = if ready { "True" } else { "False" };
        Arc::new(json!({
            "metadata": {"name": "p", "labels": labels},
            "status": {"conditions": [{"type": "Ready", "status": status, "lastTransitionTime": "2024-01-01T00:00:00Z"}]},
        }))
    }

    #[test]
    fn status_counts_fully_labeled_ready_and_available_pods() {
        let rs = json!({
            "metadata": {"generation": 3},
            "spec": {"replicas": 3, "minReadySeconds": 10, "template": {"metadata": {"labels": {"app": "web", "tier": "fe"}}}},
        });
        let pods = vec![
            pod(json!({"app": "web", "tier": "fe"}), true),
            pod(json!({"app": "web"}), true),
            pod(json!({"app": "web", "tier": "fe"}), false),
        ];
        let at = pods::parse_time("2024-01-01T00:00:30Z").unwrap();
        let status = calculate_status(&rs, &pods, None, at);
        assert_eq!(
            status,
            json!({"replicas": 3, "fullyLabeledReplicas": 2, "readyReplicas": 2, "availableReplicas": 2, "observedGeneration": 3})
        );
        let early = pods::parse_time("2024-01-01T00:00:05Z").unwrap();
        assert_eq!(calculate_status(&rs, &pods, None, early)["availableReplicas"], 0);
    }

    #[test]
    fn a_failed_create_sets_replica_failure_until_one_succeeds() {
        let rs = json!({"metadata": {"generation": 1}, "spec": {"replicas": 2}});
        let quota = ApiError::BadRequest("exceeded quota".into());
        let failed = calculate_status(&rs, &[], Some(&quota), now());
        let cond = pods::condition(&failed, "ReplicaFailure").unwrap();
        assert_eq!((cond["reason"].as_str(), cond["message"].as_str()), (Some("FailedCreate"), Some("exceeded quota")));
        let rs = json!({"metadata": {"generation": 1}, "spec": {"replicas": 2}, "status": failed});
        assert!(pods::condition(&calculate_status(&rs, &[], None, now()), "ReplicaFailure").is_none());
    }
}

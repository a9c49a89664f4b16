//! The disruption controller (kube-controller-manager's `disruption-controller`): keeps each
//! PodDisruptionBudget's status, the figures `pods/eviction` decides by: `currentHealthy`
//! (the Ready pods it selects, less those being deleted or just evicted), `desiredHealthy`
//! (`minAvailable`, or `expectedPods` less `maxUnavailable`; percentages of the pods'
//! controllers' scale), `expectedPods`, `disruptionsAllowed`, the `DisruptionAllowed`
//! condition (`SufficientPods`/`InsufficientPods`; `SyncFailed` when the figures cannot be
//! made, with no disruption allowed) and `disruptedPods`, the evictions not yet seen through
//! (forgotten once the pod is being deleted, or after two minutes).
//!
//! [`StalePodDisruption`] clears a pod's `DisruptionTarget` condition when the disruption it
//! announced did not happen within two minutes (an eviction whose delete failed).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use super::pods::{self, int_at, is_ready, kind, name, namespace, now, parse_time, str_at, terminating, Selector};
use crate::api_error::ApiError;
use crate::controller::{Action, Ctx, Lister, ObjectKey, Reconciler, Watched};
use crate::kinds::ResourceKind;
use crate::object_store::Part;

/// An evicted pod not being deleted after this long counts as healthy again (kube's
/// `DeletionTimeout`).
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);
/// A `DisruptionTarget` condition older than this on a pod not being deleted is cleared.
pub const STALE_DISRUPTION_TIMEOUT: Duration = Duration::from_secs(120);
/// The condition type, and its reasons.
pub const DISRUPTION_ALLOWED: &str = "DisruptionAllowed";
pub const SUFFICIENT_PODS: &str = "SufficientPods";
pub const INSUFFICIENT_PODS: &str = "InsufficientPods";
pub const SYNC_FAILED: &str = "SyncFailed";

pub fn budgets() -> &'static ResourceKind {
    kind("policy", "poddisruptionbudgets")
}

fn stateful_sets() -> &'static ResourceKind {
    kind("apps", "statefulsets")
}

/// Whether `pdb` selects `pod`: same namespace; no selector selects nothing, `{}` every pod
/// (policy/v1).
pub fn selects(pdb: &Value, pod: &Value) -> bool {
    namespace(pdb) == namespace(pod) && Selector::of(pdb).matches(pod)
}

/// An int-or-percent of `total` (kube's `GetScaledValueFromIntOrPercent`).
pub fn scaled(value: &Value, total: i64, round_up: bool) -> Result<i64, String> {
    match value {
        Value::Number(n) => Ok(n.as_i64().unwrap_or(0)),
        Value::String(s) => {
            let Some(digits) = s.strip_suffix('%') else {
                return Err("invalid value for IntOrString: invalid type: string is not a percentage".into());
            };
            let percent: i64 = digits.parse().map_err(|e| format!("invalid value {s:?}: {e}"))?;
            let share = percent as f64 * total as f64 / 100.0;
            Ok(if round_up { share.ceil() } else { share.floor() } as i64)
        }
        _ => Ok(0),
    }
}

fn spec_field<'a>(pdb: &'a Value, field: &str) -> Option<&'a Value> {
    pdb.pointer(&format!("/spec/{field}")).filter(|v| !v.is_null())
}

/// Whether the budget's figures need its pods' controllers' scale: `maxUnavailable`, or a
/// percentage `minAvailable`.
pub fn needs_scale(pdb: &Value) -> bool {
    spec_field(pdb, "maxUnavailable").is_some() || spec_field(pdb, "minAvailable").is_some_and(Value::is_string)
}

/// `(expectedPods, desiredHealthy)` of a budget selecting `pods` pods whose controllers want
/// `scale` (kube's `getExpectedPodCount`): an integer `minAvailable` expects the pods there
/// are; otherwise the controllers' scale is expected.
pub fn expected_and_desired(pdb: &Value, pods: i64, scale: i64) -> Result<(i64, i64), String> {
    if let Some(max) = spec_field(pdb, "maxUnavailable") {
        let max = scaled(max, scale, true)?;
        return Ok((scale, (scale - max).max(0)));
    }
    match spec_field(pdb, "minAvailable") {
        Some(min @ Value::String(_)) => Ok((scale, scaled(min, scale, true)?)),
        Some(min) => Ok((pods, min.as_i64().unwrap_or(0))),
        None => Ok((0, 0)),
    }
}

/// The evictions of `disruptedPods` still to be seen through at `now`: those of pods that
/// exist and are not being deleted, less than [`DELETION_TIMEOUT`] old (kube's
/// `buildDisruptedPodMap`); also when the oldest kept one expires, and the pods whose
/// eviction expired without a delete.
pub fn live_disruptions(
    pdb: &Value,
    pods: &[Arc<Value>],
    now: OffsetDateTime,
) -> (Map<String, Value>, Option<Duration>, Vec<Arc<Value>>) {
    let (mut live, mut recheck, mut expired) = (Map::new(), None::<Duration>, Vec::new());
    let Some(recorded) = pdb.pointer("/status/disruptedPods").and_then(Value::as_object) else {
        return (live, recheck, expired);
    };
    let timeout = time::Duration::try_from(DELETION_TIMEOUT).unwrap_or(time::Duration::MINUTE * 2);
    for pod in pods.iter().filter(|p| !terminating(p)) {
        let Some(at) = recorded.get(name(pod)) else { continue };
        let Some(deadline) = at.as_str().and_then(parse_time).and_then(|t| t.checked_add(timeout)) else {
            continue;
        };
        if deadline < now {
            expired.push(pod.clone());
            continue;
        }
        let wait = Duration::try_from(deadline - now).unwrap_or_default();
        recheck = Some(recheck.map_or(wait, |r| r.min(wait)));
        live.insert(name(pod).to_string(), at.clone());
    }
    (live, recheck, expired)
}

/// The Ready pods, less those being deleted and those just evicted (kube's `countHealthyPods`).
pub fn count_healthy(pods: &[Arc<Value>], disrupted: &Map<String, Value>) -> i64 {
    pods.iter().filter(|p| !terminating(p) && !disrupted.contains_key(name(p)) && is_ready(p)).count() as i64
}

/// Sets a `metav1.Condition` as kube's `SetStatusCondition`: the transition time moves only
/// when the status does.
pub fn set_status_condition(
    status: &mut Value,
    (kind, cond_status, reason, message): (&str, &str, &str, &str),
    observed_generation: i64,
    now: OffsetDateTime,
) {
    let mut cond = json!({"type": kind, "status": cond_status, "lastTransitionTime": pods::timestamp(now),
        "reason": reason, "message": message});
    if observed_generation != 0 {
        cond["observedGeneration"] = json!(observed_generation);
    }
    if let Some(current) = pods::condition(status, kind) {
        if current.get("status") == cond.get("status") {
            if let Some(at) = current.get("lastTransitionTime") {
                cond["lastTransitionTime"] = at.clone();
            }
        }
    }
    let mut conditions: Vec<Value> = status.get("conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    match conditions.iter_mut().find(|c| str_at(c, "/type") == kind) {
        Some(slot) => *slot = cond,
        None => conditions.push(cond),
    }
    pods::set_path(status, &["conditions"], Value::Array(conditions));
}

/// Sets `DisruptionAllowed` from `status.disruptionsAllowed` (kube's
/// `UpdateDisruptionAllowedCondition`; the eviction subresource calls it too).
pub fn update_allowed_condition(status: &mut Value, now: OffsetDateTime) {
    let allowed = int_at(status, "/disruptionsAllowed");
    let observed = int_at(status, "/observedGeneration");
    let cond = if allowed > 0 {
        (DISRUPTION_ALLOWED, "True", SUFFICIENT_PODS, "")
    } else {
        (DISRUPTION_ALLOWED, "False", INSUFFICIENT_PODS, "")
    };
    set_status_condition(status, cond, observed, now);
}

/// Whether the condition says what `disruptionsAllowed` does, for the current generation
/// (kube's `ConditionsAreUpToDate`).
fn condition_up_to_date(pdb: &Value) -> bool {
    let status = pdb.get("status").unwrap_or(&Value::Null);
    let Some(cond) = pods::condition(status, DISRUPTION_ALLOWED) else { return false };
    if int_at(status, "/observedGeneration") != int_at(pdb, "/metadata/generation") {
        return false;
    }
    let want = if int_at(status, "/disruptionsAllowed") > 0 {
        ("True", SUFFICIENT_PODS)
    } else {
        ("False", INSUFFICIENT_PODS)
    };
    (str_at(cond, "/status"), str_at(cond, "/reason")) == want
}

/// A budget's computed figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    pub current_healthy: i64,
    pub desired_healthy: i64,
    pub expected_pods: i64,
    pub disrupted: Map<String, Value>,
}

impl Figures {
    /// `currentHealthy - desiredHealthy`, none while no pods are expected.
    pub fn disruptions_allowed(&self) -> i64 {
        let allowed = self.current_healthy - self.desired_healthy;
        if self.expected_pods <= 0 || allowed <= 0 {
            0
        } else {
            allowed
        }
    }
}

/// The budget's new status, or `None` when it says this already (kube's `updatePdbStatus`).
pub fn new_status(pdb: &Value, figures: &Figures, now: OffsetDateTime) -> Option<Value> {
    let status = pdb.get("status").unwrap_or(&Value::Null);
    let generation = int_at(pdb, "/metadata/generation");
    let allowed = figures.disruptions_allowed();
    let recorded = status.get("disruptedPods").and_then(Value::as_object).cloned().unwrap_or_default();
    let same = int_at(status, "/currentHealthy") == figures.current_healthy
        && int_at(status, "/desiredHealthy") == figures.desired_healthy
        && int_at(status, "/expectedPods") == figures.expected_pods
        && int_at(status, "/disruptionsAllowed") == allowed
        && recorded == figures.disrupted
        && int_at(status, "/observedGeneration") == generation
        && condition_up_to_date(pdb);
    if same {
        return None;
    }
    let mut new = json!({
        "disruptionsAllowed": allowed,
        "currentHealthy": figures.current_healthy,
        "desiredHealthy": figures.desired_healthy,
        "expectedPods": figures.expected_pods,
    });
    if generation != 0 {
        new["observedGeneration"] = json!(generation);
    }
    if !figures.disrupted.is_empty() {
        new["disruptedPods"] = Value::Object(figures.disrupted.clone());
    }
    if let Some(conditions) = status.get("conditions").filter(|c| !pods::is_empty(c)) {
        new["conditions"] = conditions.clone();
    }
    update_allowed_condition(&mut new, now);
    Some(new)
}

/// The listers the scale lookups read.
struct Controllers {
    replica_sets: Lister,
    deployments: Lister,
    stateful_sets: Lister,
}

fn api_group(reference: &Value) -> &str {
    str_at(reference, "/apiVersion").split_once('/').map_or("", |(group, _)| group)
}

/// The controller a pod's controller reference names, as `(uid, scale)`: a ReplicaSet (its
/// Deployment when one controls it), a StatefulSet, or any kind with a `scale` subresource
/// (kube's finders). `None` when it is not there (or is another object of the name).
async fn controller_scale(
    ctx: &Ctx,
    listers: &Controllers,
    reference: &Value,
    ns: &str,
) -> Result<Option<(String, i64)>, String> {
    let (kind_name, ref_name, ref_uid) =
        (str_at(reference, "/kind"), str_at(reference, "/name"), str_at(reference, "/uid"));
    let group = api_group(reference);
    let key = ObjectKey::new(Some(ns), ref_name);
    let apps = matches!(group, "apps" | "extensions");
    if kind_name == "ReplicaSet" && apps {
        let Some(rs) = listers.replica_sets.get(&key).filter(|rs| pods::uid(rs) == ref_uid) else { return Ok(None) };
        if let Some(owner) = pods::controller_ref(&rs).filter(|r| str_at(r, "/kind") == "Deployment") {
            let d_key = ObjectKey::new(Some(ns), str_at(owner, "/name"));
            let deployment = listers.deployments.get(&d_key).filter(|d| pods::uid(d) == str_at(owner, "/uid"));
            if let Some(d) = deployment.filter(|_| matches!(api_group(owner), "apps" | "extensions")) {
                return Ok(Some((pods::uid(&d).to_string(), pods::spec_replicas(&d))));
            }
        }
        // Its own scale (kube's scale lookup, when no Deployment answers for it).
        return Ok(Some((pods::uid(&rs).to_string(), pods::spec_replicas(&rs))));
    }
    if kind_name == "StatefulSet" && group == "apps" {
        let set = listers.stateful_sets.get(&key).filter(|s| pods::uid(s) == ref_uid);
        return Ok(set.map(|s| (pods::uid(&s).to_string(), pods::spec_replicas(&s))));
    }
    // Any other kind: through its scale subresource.
    let api_version = str_at(reference, "/apiVersion");
    let version = api_version.rsplit('/').next().unwrap_or("");
    let Some(kind) =
        crate::kinds::all().into_iter().find(|k| k.group == group && k.version == version && k.kind == kind_name)
    else {
        return Err(format!("no matches for kind {kind_name:?} in version {api_version:?}"));
    };
    if !kind.subresources.iter().any(|s| s.name == "scale") {
        let resource =
            if kind.group.is_empty() { kind.resource.to_string() } else { format!("{}.{}", kind.resource, kind.group) };
        return Err(format!("{resource} does not implement the scale subresource"));
    }
    match ctx.get(kind, Some(ns), ref_name).await {
        Ok(obj) => {
            let scale = crate::objects::scale_of(kind, &obj);
            if str_at(&scale, "/metadata/uid") != ref_uid {
                return Ok(None);
            }
            Ok(Some((ref_uid.to_string(), int_at(&scale, "/spec/replicas"))))
        }
        Err(ApiError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// The sum of the scales of the controllers of `pods`, and the pods with no controller
/// (kube's `getExpectedScale`).
async fn expected_scale(ctx: &Ctx, listers: &Controllers, pods: &[Arc<Value>]) -> Result<(i64, Vec<String>), String> {
    let mut scales: HashMap<String, i64> = HashMap::new();
    let mut resolved: HashMap<String, String> = HashMap::new();
    let mut unmanaged = Vec::new();
    for pod in pods {
        let Some(reference) = pods::controller_ref(pod) else {
            unmanaged.push(name(pod).to_string());
            continue;
        };
        let ref_uid = str_at(reference, "/uid").to_string();
        if resolved.contains_key(&ref_uid) {
            continue;
        }
        match controller_scale(ctx, listers, reference, namespace(pod)).await? {
            Some((uid, scale)) => {
                scales.insert(uid.clone(), scale);
                resolved.insert(ref_uid, uid);
            }
            None => return Err(format!("found no controllers for pod {:?}", name(pod))),
        }
    }
    Ok((scales.values().sum(), unmanaged))
}

/// Why a sync failed: a lost race (retried), or figures that cannot be made (the budget is
/// made to allow nothing).
enum SyncError {
    Write(ApiError),
    Figures(String),
}

/// The controller; keys are PodDisruptionBudgets.
#[derive(Default)]
pub struct Disruption {
    /// The budget informer's copy, for mapping pods to the budgets selecting them.
    budgets: Rc<RefCell<Option<Lister>>>,
}

impl Disruption {
    async fn try_sync(
        &self,
        ctx: &Ctx,
        pdb: &Value,
        pods: &Lister,
        listers: &Controllers,
    ) -> Result<Action, SyncError> {
        let selected: Vec<Arc<Value>> =
            pods.list(Some(namespace(pdb))).into_iter().filter(|p| selects(pdb, p)).collect();
        let (scale, unmanaged) = if needs_scale(pdb) {
            match expected_scale(ctx, listers, &selected).await {
                Ok(found) => found,
                Err(e) => {
                    let message = format!("Failed to calculate the number of expected pods: {e}");
                    ctx.event(pdb, "Warning", "CalculateExpectedPodCountFailed", &message).await;
                    return Err(SyncError::Figures(e));
                }
            }
        } else {
            (0, Vec::new())
        };
        let (expected, desired) =
            expected_and_desired(pdb, selected.len() as i64, scale).map_err(SyncError::Figures)?;
        let at = now();
        let (disrupted, recheck, expired) = live_disruptions(pdb, &selected, at);
        for pod in &expired {
            let message =
                format!("Pod was expected by PDB {}/{} to be deleted but it wasn't", namespace(pdb), name(pdb));
            ctx.event(pod, "Warning", "NotDeleted", &message).await;
        }
        let figures = Figures {
            current_healthy: count_healthy(&selected, &disrupted),
            desired_healthy: desired,
            expected_pods: expected,
            disrupted,
        };
        if let Some(status) = new_status(pdb, &figures, at) {
            // kube records these on every sync; here on the syncs that change something.
            if selected.is_empty() {
                ctx.event(pdb, "Normal", "NoPods", "No matching pods found").await;
            }
            if !unmanaged.is_empty() {
                let message = format!(
                    "Pods selected by this PodDisruptionBudget (selector: {}) were found to be unmanaged. As a result, \
                     the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To \
                     account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value.",
                    crate::objects::selector_string(pdb.pointer("/spec/selector").unwrap_or(&Value::Null))
                );
                ctx.event(pdb, "Warning", "UnmanagedPods", &message).await;
            }
            let mut updated = pdb.clone();
            updated["status"] = status;
            ctx.update(budgets(), Part::Status, updated).await.map_err(SyncError::Write)?;
        }
        Ok(recheck.map_or(Action::Done, |after| Action::RequeueAfter(after + Duration::from_secs(1))))
    }

    /// Allows no disruption, with `SyncFailed` saying why (kube's `failSafe`: the
    /// observedGeneration stays, so a changed budget also refuses evictions).
    async fn fail_safe(ctx: &Ctx, pdb: &Value, why: &str) -> Result<(), ApiError> {
        let mut updated = pdb.clone();
        let mut status = pdb.get("status").filter(|s| s.is_object()).cloned().unwrap_or_else(|| json!({}));
        status["disruptionsAllowed"] = json!(0);
        let observed = int_at(&status, "/observedGeneration");
        set_status_condition(&mut status, (DISRUPTION_ALLOWED, "False", SYNC_FAILED, why), observed, now());
        if pdb.get("status") == Some(&status) {
            return Ok(());
        }
        updated["status"] = status;
        ctx.update(budgets(), Part::Status, updated).await.map(|_| ())
    }
}

impl Reconciler for Disruption {
    fn name(&self) -> &'static str {
        "disruption"
    }

    fn watches(&self) -> Vec<Watched> {
        let budgets_copy = self.budgets.clone();
        let pod_keys = move |pod: &Value, old: Option<&Value>| {
            let Some(lister) = budgets_copy.try_borrow().ok().and_then(|b| b.clone()) else { return Vec::new() };
            let candidates = lister.list(Some(namespace(pod)));
            candidates
                .iter()
                .filter(|pdb| selects(pdb, pod) || old.is_some_and(|o| selects(pdb, o)))
                .filter_map(|pdb| ObjectKey::of(pdb))
                .collect()
        };
        // The controllers' copies serve scale lookups; their changes show in their pods.
        let none = |_: &Value, _: Option<&Value>| Vec::new();
        vec![
            Watched::objects(budgets()),
            Watched::with(pods::pods(), pod_keys),
            Watched::with(pods::replica_sets(), none),
            Watched::with(pods::deployments(), none),
            Watched::with(stateful_sets(), none),
        ]
    }

    fn reconcile(self: Rc<Self>, ctx: Ctx, key: ObjectKey) -> LocalBoxFuture<'static, Result<Action, ApiError>> {
        Box::pin(async move {
            let listers = (
                ctx.lister(budgets()).cloned(),
                ctx.lister(pods::pods()).cloned(),
                ctx.lister(pods::replica_sets()).cloned(),
                ctx.lister(pods::deployments()).cloned(),
                ctx.lister(stateful_sets()).cloned(),
            );
            let (Some(budget_lister), Some(pods), Some(replica_sets), Some(deployments), Some(stateful_sets)) = listers
            else {
                return Ok(Action::Done);
            };
            *self.budgets.borrow_mut() = Some(budget_lister.clone());
            let Some(pdb) = budget_lister.get(&key) else { return Ok(Action::Done) };
            let controllers = Controllers { replica_sets, deployments, stateful_sets };
            match self.try_sync(&ctx, &pdb, &pods, &controllers).await {
                Ok(action) => Ok(action),
                Err(SyncError::Write(e)) => Err(e),
                Err(SyncError::Figures(why)) => {
                    tracing::debug!(pdb = %key, error = %why, "pdb sync failed; allowing no disruption");
                    Self::fail_safe(&ctx, &pdb, &why).await.map(|()| Action::Done)
                }
            }
        })
    }
}

// ---------------------------------------------------------------------------------------
// Stale DisruptionTarget conditions

/// The `DisruptionTarget` condition when it is `True`.
fn disruption_target(pod: &Value) -> Option<&Value> {
    pods::condition(pod.get("status")?, "DisruptionTarget").filter(|c| str_at(c, "/status") == "True")
}

/// How long until the pod's `DisruptionTarget` condition is stale (zero: it is), or `None`
/// when it has none that can be (kube's `nonTerminatingPodHasStaleDisruptionCondition`):
/// pods being deleted or finished, and the kubelet's own conditions, keep theirs.
pub fn stale_in(pod: &Value, now: OffsetDateTime) -> Option<Duration> {
    if terminating(pod) || matches!(str_at(pod, "/status/phase"), "Succeeded" | "Failed") {
        return None;
    }
    let cond = disruption_target(pod)?;
    if str_at(cond, "/reason") == "TerminationByKubelet" {
        return None;
    }
    let since = parse_time(str_at(cond, "/lastTransitionTime")).unwrap_or(now);
    let timeout = time::Duration::try_from(STALE_DISRUPTION_TIMEOUT).unwrap_or(time::Duration::MINUTE * 2);
    Some(Duration::try_from(since + timeout - now).unwrap_or_default())
}

/// The controller; keys are pods with a `DisruptionTarget` condition.
#[derive(Default)]
pub struct StalePodDisruption;

impl Reconciler for StalePodDisruption {
    fn name(&self) -> &'static str {
        "disruption-stale-pods"
    }

    fn watches(&self) -> Vec<Watched> {
        let keys = |pod: &Value, _: Option<&Value>| {
            if stale_in(pod, now()).is_some() {
                ObjectKey::of(pod).into_iter().collect()
            } else {
                Vec::new()
            }
        };
        vec![Watched::with(pods::pods(), keys)]
    }

    fn reconcile(self: Rc<Self>, ctx: Ctx, key: ObjectKey) -> LocalBoxFuture<'static, Result<Action, ApiError>> {
        Box::pin(async move {
            let Some(pod) = ctx.lister(pods::pods()).and_then(|l| l.get(&key)) else { return Ok(Action::Done) };
            let at = now();
            match stale_in(&pod, at) {
                None => return Ok(Action::Done),
                Some(wait) if !wait.is_zero() => return Ok(Action::RequeueAfter(wait + Duration::from_secs(1))),
                Some(_) => {}
            }
            let mut updated = (*pod).clone();
            if let Some(conditions) = updated.pointer_mut("/status/conditions").and_then(Value::as_array_mut) {
                for cond in conditions.iter_mut().filter(|c| str_at(c, "/type") == "DisruptionTarget") {
                    cond["status"] = json!("False");
                    cond["lastTransitionTime"] = json!(pods::timestamp(at));
                }
            }
            match ctx.update(pods::pods(), Part::Status, updated).await {
                Ok(_) | Err(ApiError::NotFound(_)) => Ok(Action::Done),
                Err(e) => Err(e),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdb(spec: Value) -> Value {
        let mut spec = spec;
        spec["selector"] = json!({"matchLabels": {"app": "web"}});
        json!({"metadata": {"name": "b", "namespace": "d", "generation": 2}, "spec": spec})
    }

    fn pod(name: &str, ready: bool) -> Arc<Value> {
        Arc::new(json!({
            "metadata": {"name": name, "namespace": "d", "labels": {"app": "web"}},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
        }))
    }

    fn at(ts: &str) -> OffsetDateTime {
        parse_time(ts).unwrap()
    }

    #[test]
    fn budgets_expect_pods_or_their_controllers_scale() {
        assert_eq!(expected_and_desired(&pdb(json!({"minAvailable": 2})), 3, 0), Ok((3, 2)));
        assert!(!needs_scale(&pdb(json!({"minAvailable": 2}))));
        assert!(needs_scale(&pdb(json!({"minAvailable": "50%"}))));
        // 50% of 5, rounded up.
        assert_eq!(expected_and_desired(&pdb(json!({"minAvailable": "50%"})), 4, 5), Ok((5, 3)));
        // maxUnavailable 25% of 4, rounded up: 1; 3 must stay healthy.
        assert_eq!(expected_and_desired(&pdb(json!({"maxUnavailable": "25%"})), 4, 4), Ok((4, 3)));
        assert_eq!(expected_and_desired(&pdb(json!({"maxUnavailable": 10})), 4, 4), Ok((4, 0)));
        assert!(expected_and_desired(&pdb(json!({"maxUnavailable": "x"})), 4, 4).is_err());
        assert_eq!(expected_and_desired(&pdb(json!({})), 4, 4), Ok((0, 0)));
    }

    #[test]
    fn status_counts_ready_pods_not_being_evicted_and_sets_the_condition() {
        let now = at("2024-01-01T00:01:00Z");
        let mut budget = pdb(json!({"minAvailable": 2}));
        budget["status"] = json!({"disruptedPods": {"a": "2024-01-01T00:00:30Z", "b": "2023-12-31T23:50:00Z", "gone": "2024-01-01T00:00:59Z"}});
        let pods = [pod("a", true), pod("b", true), pod("c", true), pod("d", false)];
        let (live, recheck, expired) = live_disruptions(&budget, &pods, now);
        assert_eq!(live.keys().collect::<Vec<_>>(), ["a"], "b expired, gone has no pod");
        assert_eq!(recheck, Some(Duration::from_secs(90)));
        assert_eq!(expired.len(), 1);
        let figures = Figures {
            current_healthy: count_healthy(&pods, &live),
            desired_healthy: 2,
            expected_pods: 4,
            disrupted: live,
        };
        assert_eq!((figures.current_healthy, figures.disruptions_allowed()), (2, 0));
        let status = new_status(&budget, &figures, now).unwrap();
        assert_eq!(status["observedGeneration"], 2);
        assert_eq!(status["disruptedPods"], json!({"a": "2024-01-01T00:00:30Z"}));
        let cond = pods::condition(&status, DISRUPTION_ALLOWED).unwrap();
        assert_eq!((cond["status"].as_str(), cond["reason"].as_str()), (Some("False"), Some(INSUFFICIENT_PODS)));
        budget["status"] = status;
        assert_eq!(new_status(&budget, &figures, now), None, "nothing to write twice");
        let more = Figures { current_healthy: 3, ..figures };
        let status = new_status(&budget, &more, now).unwrap();
        let cond = pods::condition(&status, DISRUPTION_ALLOWED).unwrap();
        assert_eq!((status["disruptionsAllowed"].as_i64(), cond["reason"].as_str()), (Some(1), Some(SUFFICIENT_PODS)));
        // No expected pods: nothing allowed whatever is healthy.
        let none = Figures { current_healthy: 3, desired_healthy: 0, expected_pods: 0, disrupted: Map::new() };
        assert_eq!(none.disruptions_allowed(), 0);
    }

    #[test]
    fn a_disruption_target_goes_stale_after_two_minutes() {
        let mut p = (*pod("a", true)).clone();
        p["status"]["conditions"] = json!([{"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
            "lastTransitionTime": "2024-01-01T00:00:00Z"}]);
        assert_eq!(stale_in(&p, at("2024-01-01T00:01:00Z")), Some(Duration::from_secs(60)));
        assert_eq!(stale_in(&p, at("2024-01-01T00:03:00Z")), Some(Duration::ZERO));
        p["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:01Z");
        assert_eq!(stale_in(&p, at("2024-01-01T00:03:00Z")), None);
        assert!(selects(&pdb(json!({})), &pod("x", true)));
        let mut other_ns = (*pod("x", true)).clone();
        other_ns["metadata"]["namespace"] = json!("e");
        assert!(!selects(&pdb(json!({})), &other_ns));
    }
}

//! The Job controller (kube-controller-manager's `job-controller`): runs a Job's pods to
//! completion. Pods come from the template with kube's labels, a `batch/v1` controller
//! reference and the `batch.kubernetes.io/job-tracking` finalizer; at most `parallelism` run,
//! never more than the completions left (Indexed Jobs: one pod per pending index, with its
//! index in an annotation, a label, the hostname and `JOB_COMPLETION_INDEX`). Finished pods
//! are counted as kube does: their UIDs first go to `status.uncountedTerminatedPods`, then
//! their finalizer is removed, then they move to `succeeded`/`failed`, so a pod is counted
//! once even if it is deleted meanwhile. Failed pods past `backoffLimit`, or a run past
//! `activeDeadlineSeconds`, fail the Job (`FailureTarget`, active pods deleted, then
//! `Failed`); enough successes complete it (`SuccessCriteriaMet`, then `Complete`). Failed
//! pods are replaced after an exponential backoff; `suspend` deletes the active pods.
//!
//! - [`pod`]: a Job's pods (from the template; classified).
//! - [`status`]: conditions, deadline and backoff.
//! - [`indexes`]: `completedIndexes` and pods' completion indexes.

pub mod indexes;
pub mod pod;
pub mod status;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{join_all, LocalBoxFuture};
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::pods::{self, controlled_by, controller_ref, is_ready, name, set_path, str_at, terminating, uid};
use super::replica_set::EXPECTATIONS_TIMEOUT;
use crate::api_error::ApiError;
use crate::controller::informer::resource_version;
use crate::controller::{controller_of, Action, Ctx, Lister, ObjectKey, Reconciler, Watched};
use crate::deletion::DeleteOptions;
use crate::kinds::ResourceKind;
use crate::object_store::Part;
use pod::{has_finalizer, is_active, is_terminating, succeeded};
use status::Finish;

/// At most this many pods created or deleted per sync (kube's `MaxPodCreateDeletePerSync`).
pub const BURST: usize = 500;
/// A Job whose copy is older than the controller's last write of it is looked at again
/// after this long, if its own update has not arrived by then.
const STALE_COPY_RETRY: Duration = Duration::from_secs(1);
/// The label with the name of a pod's Job.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// The controller that manages Jobs without `spec.managedBy` (or with this value).
pub const MANAGED_BY: &str = "kubernetes.io/job-controller";

pub fn jobs() -> &'static ResourceKind {
    pods::kind("batch", "jobs")
}

/// Writes a sync made that the pod informer has not shown yet.
#[derive(Debug)]
struct Expectation {
    /// The highest resourceVersion among the pods it created.
    created: i64,
    /// Pods it deleted (name, uid): seen once gone or being deleted.
    deleted: Vec<(String, String)>,
    /// Pods it removed the tracking finalizer of: seen once gone or without it.
    released: Vec<(String, String)>,
    since: Instant,
}

/// Failed pods since the last success, and when the last failed (for the backoff).
#[derive(Debug, Clone, Copy)]
struct Backoff {
    failures: u32,
    last: OffsetDateTime,
}

/// The controller; keys are Jobs.
pub struct Jobs {
    expectations: RefCell<HashMap<ObjectKey, Expectation>>,
    /// The highest pod resourceVersion the pod informer has applied.
    seen_pods: Rc<Cell<i64>>,
    /// The resourceVersion of each Job's last status write.
    written: RefCell<HashMap<ObjectKey, i64>>,
    backoffs: RefCell<HashMap<ObjectKey, Backoff>>,
    /// The first delay before a failed pod is replaced.
    pod_failure_backoff: Duration,
}

impl Default for Jobs {
    fn default() -> Self {
        Jobs::new()
    }
}

impl Jobs {
    pub fn new() -> Self {
        Jobs::with_backoff(status::POD_FAILURE_BACKOFF)
    }

    /// A controller whose failed pods are replaced after `base`, `2 * base`, ...
    pub fn with_backoff(base: Duration) -> Self {
        Jobs {
            expectations: RefCell::default(),
            seen_pods: Rc::default(),
            written: RefCell::default(),
            backoffs: RefCell::default(),
            pod_failure_backoff: base,
        }
    }

    fn forget(&self, key: &ObjectKey) {
        self.expectations.borrow_mut().remove(key);
        self.written.borrow_mut().remove(key);
        self.backoffs.borrow_mut().remove(key);
    }

    /// Whether the pod writes of the last sync of `key` are all seen (forgets them if so).
    fn satisfied(&self, key: &ObjectKey, pods: &Lister) -> bool {
        let mut expectations = self.expectations.borrow_mut();
        let Some(e) = expectations.get(key) else { return true };
        let current = |(name, id): &(String, String)| {
            pods.get(&ObjectKey::new(key.namespace.as_deref(), name)).filter(|p| pods::uid(p) == id)
        };
        let done = (self.seen_pods.get() >= e.created
            && e.deleted.iter().all(|p| current(p).is_none_or(|p| terminating(&p)))
            && e.released.iter().all(|p| current(p).is_none_or(|p| !has_finalizer(&p))))
            || e.since.elapsed() > EXPECTATIONS_TIMEOUT;
        if done {
            expectations.remove(key);
        }
        done
    }

    fn expect(&self, key: &ObjectKey, e: Expectation) {
        if e.created == 0 && e.deleted.is_empty() && e.released.is_empty() {
            return;
        }
        self.expectations.borrow_mut().insert(key.clone(), e);
    }

    /// The backoff before pods replace failed ones, after `new_failed` more failures and
    /// `new_succeeded` successes seen now.
    fn record(&self, key: &ObjectKey, new_succeeded: usize, new_failed: usize, now: OffsetDateTime) -> Duration {
        let mut backoffs = self.backoffs.borrow_mut();
        let entry = backoffs.entry(key.clone()).or_insert(Backoff { failures: 0, last: now });
        if new_succeeded > 0 {
            entry.failures = 0;
        }
        if new_failed > 0 {
            entry.failures = entry.failures.saturating_add(new_failed as u32);
            entry.last = now;
        }
        status::backoff_remaining(entry.failures, entry.last, self.pod_failure_backoff, now)
    }

    async fn sync(&self, ctx: &Ctx, key: &ObjectKey) -> Result<Action, ApiError> {
        let (Some(job_lister), Some(pod_lister)) = (ctx.lister(jobs()).cloned(), ctx.lister(pods::pods()).cloned())
        else {
            return Ok(Action::Done);
        };
        let ns = key.namespace.as_deref();
        // Pods this Job name made: controlled by a Job of that name, or orphans (released,
        // or their Job deleted with `Orphan` propagation) still labelled with it.
        let named = |p: &Value| match controller_ref(p) {
            Some(r) => {
                str_at(r, "/kind") == "Job"
                    && str_at(r, "/name") == key.name
                    && str_at(r, "/apiVersion").starts_with("batch/")
            }
            None => job_label(p) == Some(key.name.as_str()),
        };
        let Some(job) = job_lister.get(key) else {
            // Pods of a Job that is gone keep no finalizer.
            self.forget(key);
            let orphans = pod_lister.list_where(ns, |p| named(p) && has_finalizer(p));
            release(ctx, &orphans).await?;
            return Ok(Action::Done);
        };
        let managed_by = str_at(&job, "/spec/managedBy");
        if !managed_by.is_empty() && managed_by != MANAGED_BY {
            return Ok(Action::Done);
        }
        let written = self.written.borrow().get(key).copied();
        if written.is_some_and(|rv| resource_version(&job).unwrap_or(0) < rv) {
            return Ok(Action::RequeueAfter(STALE_COPY_RETRY));
        }
        // Pods of an earlier Job of this name.
        let orphans = pod_lister.list_where(ns, |p| named(p) && has_finalizer(p) && !controlled_by(p, &job));
        release(ctx, &orphans).await?;
        let owned = pod_lister.list_where(ns, |p| controlled_by(p, &job));
        if status::is_finished(&job) {
            let left: Vec<Arc<Value>> = owned.into_iter().filter(|p| has_finalizer(p)).collect();
            release(ctx, &left).await?;
            return Ok(Action::Done);
        }
        if !self.satisfied(key, &pod_lister) {
            return Ok(Action::RequeueAfter(EXPECTATIONS_TIMEOUT));
        }
        let mut sync = Sync::new(ctx, key, (*job).clone(), owned);
        let result = self.run(&mut sync).await;
        self.expect(key, std::mem::replace(&mut sync.expect, new_expectation()));
        if let Some(rv) = sync.written {
            self.written.borrow_mut().insert(key.clone(), rv);
        }
        let action = result?;
        match sync.error.take() {
            Some(e) => Err(e),
            None => Ok(action),
        }
    }

    /// One sync of a Job that is not finished, as kube's `syncJob`.
    async fn run(&self, s: &mut Sync<'_>) -> Result<Action, ApiError> {
        let (new_succeeded, new_failed) = s.track().await?;
        let wait = self.record(s.key, new_succeeded, new_failed, s.now);
        let suspended = status::is_suspended(&s.job);
        if s.status.get("startTime").is_none() && !suspended {
            s.status["startTime"] = json!(pods::timestamp(s.now));
        }
        let (succeeded, failed) = s.totals();
        let mut finish = status::decided(&s.job);
        if finish.is_none() {
            if failed > status::backoff_limit(&s.job) || status::past_backoff_limit_on_failure(&s.job, &s.active) {
                finish = Some(Finish::failure(status::BACKOFF_LIMIT_EXCEEDED));
            } else if !suspended && past_deadline(&s.job, &s.status, s.now) {
                finish = Some(Finish::failure(status::DEADLINE_EXCEEDED));
            }
        }
        if finish.is_some() {
            let all = s.active.clone();
            s.delete(&all).await;
        } else {
            let manage = !terminating(&s.job);
            if manage {
                if suspended {
                    let all = s.active.clone();
                    s.delete(&all).await;
                } else {
                    // During a backoff, surplus pods still go but none are created.
                    s.hold_creates = !wait.is_zero();
                    if status::is_indexed(&s.job) {
                        s.manage_indexed(succeeded).await;
                    } else {
                        s.manage(succeeded).await;
                    }
                }
            }
            let complete = match status::completions(&s.job) {
                None => succeeded > 0 && s.active.is_empty(),
                Some(c) => succeeded >= c && s.active.is_empty(),
            };
            if complete {
                finish = Some(Finish::Success);
            } else if manage {
                s.suspension(suspended).await;
            }
        }
        if let Some(finish) = &finish {
            status::add_interim(&mut s.status, finish, s.now);
            let idle = s.active.is_empty() && s.terminating == 0 && s.uncounted_empty();
            if idle && status::add_terminal(&mut s.status, finish, s.now) {
                let (kind, reason, message) = match finish {
                    Finish::Success => ("Normal", "Completed", "Job completed"),
                    Finish::Failure { reason, message } => ("Warning", reason.as_str(), message.as_str()),
                };
                s.ctx.event(&s.job, kind, reason, message).await;
            }
        }
        s.write().await?;
        // What to look at again: the backoff, the deadline.
        let mut after: Option<Duration> = (!wait.is_zero()).then_some(wait);
        if finish.is_none() && !suspended {
            if let Some(at) = status::deadline(&s.written_job()) {
                let left = status::until(at, s.now) + Duration::from_millis(100);
                after = Some(after.map_or(left, |a| a.min(left)));
            }
        }
        Ok(after.map_or(Action::Done, Action::RequeueAfter))
    }
}

/// The Job name a pod is labelled with.
fn job_label(pod: &Value) -> Option<&str> {
    let labels = pod.pointer("/metadata/labels")?;
    labels.get(JOB_NAME_LABEL).or_else(|| labels.get("job-name"))?.as_str()
}

fn past_deadline(job: &Value, status: &Value, now: OffsetDateTime) -> bool {
    let mut with = job.clone();
    with["status"] = status.clone();
    status::past_deadline(&with, now)
}

fn new_expectation() -> Expectation {
    Expectation { created: 0, deleted: Vec::new(), released: Vec::new(), since: Instant::now() }
}

/// Removes the tracking finalizer of `pod`, reading it again after a conflict. The pod as
/// written, `None` if it is gone.
async fn remove_finalizer(ctx: &Ctx, pod: &Value) -> Result<Option<Value>, ApiError> {
    match ctx.update(pods::pods(), Part::Main, pod::without_finalizer(pod)).await {
        Ok(p) => Ok(Some(p)),
        Err(ApiError::NotFound(_)) => Ok(None),
        Err(ApiError::Conflict(_)) => {
            let fresh = match ctx.get(pods::pods(), Some(pods::namespace(pod)), name(pod)).await {
                Ok(p) => p,
                Err(ApiError::NotFound(_)) => return Ok(None),
                Err(e) => return Err(e),
            };
            if uid(&fresh) != uid(pod) || !has_finalizer(&fresh) {
                return Ok(None);
            }
            match ctx.update(pods::pods(), Part::Main, pod::without_finalizer(&fresh)).await {
                Ok(p) => Ok(Some(p)),
                Err(ApiError::NotFound(_)) => Ok(None),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Removes the tracking finalizer of every pod of `pods`.
async fn release(ctx: &Ctx, pods: &[Arc<Value>]) -> Result<(), ApiError> {
    let results = join_all(pods.iter().map(|p| remove_finalizer(ctx, p))).await;
    results.into_iter().find_map(Result::err).map_or(Ok(()), Err)
}

/// The UIDs at `status.uncountedTerminatedPods.{field}`.
fn uncounted(status: &Value, field: &str) -> Vec<String> {
    let list = status.pointer(&format!("/uncountedTerminatedPods/{field}")).and_then(Value::as_array);
    list.into_iter().flatten().filter_map(Value::as_str).map(String::from).collect()
}

/// Sets `status.{field}` to `n`, leaving it out when 0 (Go's `omitempty`).
fn set_count(status: &mut Value, field: &str, n: i64) {
    match status.as_object_mut() {
        Some(map) if n == 0 => {
            map.remove(field);
        }
        _ => status[field] = json!(n),
    }
}

/// The state of one sync: the Job as last written, the status being built, its pods.
struct Sync<'a> {
    ctx: &'a Ctx,
    key: &'a ObjectKey,
    job: Value,
    status: Value,
    pods: Vec<Arc<Value>>,
    /// Its pods running or waiting to, as the sync changes them.
    active: Vec<Arc<Value>>,
    /// Its pods being deleted before they finished.
    terminating: i64,
    uncounted_succeeded: Vec<String>,
    uncounted_failed: Vec<String>,
    /// Indexed Jobs: the indexes with a succeeded pod.
    completed: BTreeSet<i64>,
    now: OffsetDateTime,
    expect: Expectation,
    /// The resourceVersion of the last status write.
    written: Option<i64>,
    /// The first failed pod write (the sync goes on; it is retried after).
    error: Option<ApiError>,
    /// No pods are created (a failure backoff runs).
    hold_creates: bool,
}

impl<'a> Sync<'a> {
    fn new(ctx: &'a Ctx, key: &'a ObjectKey, job: Value, pods: Vec<Arc<Value>>) -> Self {
        let status = job.get("status").filter(|s| s.is_object()).cloned().unwrap_or_else(|| json!({}));
        let completions = status::completions(&job).unwrap_or(0);
        let completed = if status::is_indexed(&job) {
            indexes::parse(str_at(&status, "/completedIndexes"), completions)
        } else {
            BTreeSet::new()
        };
        Sync {
            ctx,
            key,
            active: pods.iter().filter(|p| is_active(p)).cloned().collect(),
            terminating: pods.iter().filter(|p| is_terminating(p)).count() as i64,
            uncounted_succeeded: uncounted(&status, "succeeded"),
            uncounted_failed: uncounted(&status, "failed"),
            completed,
            job,
            status,
            pods,
            now: pods::now(),
            expect: new_expectation(),
            written: None,
            error: None,
            hold_creates: false,
        }
    }

    fn ns(&self) -> Option<&str> {
        self.key.namespace.as_deref()
    }

    fn fail(&mut self, e: ApiError) {
        self.error.get_or_insert(e);
    }

    fn uncounted_empty(&self) -> bool {
        self.uncounted_succeeded.is_empty() && self.uncounted_failed.is_empty()
    }

    /// Succeeded and failed pods, counted or not yet.
    fn totals(&self) -> (i64, i64) {
        let succeeded = if status::is_indexed(&self.job) {
            self.completed.len() as i64
        } else {
            pods::int_at(&self.status, "/succeeded") + self.uncounted_succeeded.len() as i64
        };
        (succeeded, pods::int_at(&self.status, "/failed") + self.uncounted_failed.len() as i64)
    }

    fn set_uncounted(&mut self) {
        let mut uncounted = serde_json::Map::new();
        for (field, uids) in [("succeeded", &self.uncounted_succeeded), ("failed", &self.uncounted_failed)] {
            if !uids.is_empty() {
                uncounted.insert(field.into(), json!(uids));
            }
        }
        self.status["uncountedTerminatedPods"] = Value::Object(uncounted);
        if status::is_indexed(&self.job) {
            let text = indexes::format(&self.completed);
            if text.is_empty() {
                if let Some(map) = self.status.as_object_mut() {
                    map.remove("completedIndexes");
                }
            } else {
                self.status["completedIndexes"] = json!(text);
            }
            set_count(&mut self.status, "succeeded", self.completed.len() as i64);
        }
    }

    /// Counts the pods that finished (kube's `trackJobStatusAndRemoveFinalizers`): new ones
    /// go to `uncountedTerminatedPods` (written first), then lose their finalizer, then
    /// move to `succeeded`/`failed`. The pods newly seen succeeded and failed.
    async fn track(&mut self) -> Result<(usize, usize), ApiError> {
        let indexed = status::is_indexed(&self.job);
        let completions = status::completions(&self.job).unwrap_or(0);
        let suspended = status::is_suspended(&self.job);
        let (mut new_succeeded, mut new_failed) = (0, 0);
        // Pods whose finalizer goes without their being counted (an Indexed pod without a
        // valid index).
        let mut uncountable: HashSet<String> = HashSet::new();
        let before = self.completed.clone();
        for pod in self.pods.iter().filter(|p| has_finalizer(p)) {
            let id = uid(pod).to_string();
            if self.uncounted_succeeded.contains(&id) || self.uncounted_failed.contains(&id) {
                continue;
            }
            if succeeded(pod) {
                if indexed {
                    match indexes::of_pod(pod, completions) {
                        Some(ix) => {
                            self.completed.insert(ix);
                        }
                        None => {
                            uncountable.insert(id);
                            continue;
                        }
                    }
                }
                self.uncounted_succeeded.push(id);
                new_succeeded += 1;
            } else if pod::phase(pod) == "Failed" || (terminating(pod) && !suspended) {
                self.uncounted_failed.push(id);
                new_failed += 1;
            } else if terminating(pod) {
                // Deleted while suspended: not a failure.
                uncountable.insert(id);
            }
        }
        if new_succeeded + new_failed > 0 || before != self.completed {
            self.set_uncounted();
            self.write().await?;
        }
        // Their finalizers.
        let counted: HashSet<&String> = self.uncounted_succeeded.iter().chain(&self.uncounted_failed).collect();
        let with_finalizer: Vec<Arc<Value>> = self
            .pods
            .iter()
            .filter(|p| has_finalizer(p) && (counted.contains(&uid(p).to_string()) || uncountable.contains(uid(p))))
            .cloned()
            .collect();
        let results = join_all(with_finalizer.iter().map(|p| remove_finalizer(self.ctx, p))).await;
        let mut still: HashSet<String> = HashSet::new();
        for (pod, result) in with_finalizer.iter().zip(results) {
            match result {
                Ok(_) => self.expect.released.push((name(pod).to_string(), uid(pod).to_string())),
                Err(e) => {
                    still.insert(uid(pod).to_string());
                    self.fail(e);
                }
            }
        }
        // Those without their finalizer now are counted for good.
        let (moved_succeeded, moved_failed) = {
            let before = (self.uncounted_succeeded.len(), self.uncounted_failed.len());
            self.uncounted_succeeded.retain(|id| still.contains(id));
            self.uncounted_failed.retain(|id| still.contains(id));
            (before.0 - self.uncounted_succeeded.len(), before.1 - self.uncounted_failed.len())
        };
        if moved_succeeded + moved_failed > 0 {
            if !indexed {
                let n = pods::int_at(&self.status, "/succeeded") + moved_succeeded as i64;
                set_count(&mut self.status, "succeeded", n);
            }
            let n = pods::int_at(&self.status, "/failed") + moved_failed as i64;
            set_count(&mut self.status, "failed", n);
            self.set_uncounted();
        }
        Ok((new_succeeded, new_failed))
    }

    /// How many pods should be active (kube's `wantActive`).
    fn want(&self, succeeded: i64) -> i64 {
        let parallelism = status::parallelism(&self.job);
        match status::completions(&self.job) {
            None if succeeded > 0 => self.active.len() as i64,
            None => parallelism,
            Some(c) => (c - succeeded).clamp(0, parallelism),
        }
    }

    /// Pods being deleted count as active while the Job only replaces failed pods.
    fn replacing_terminating(&self) -> bool {
        str_at(&self.job, "/spec/podReplacementPolicy") != "Failed"
    }

    /// NonIndexed: creates or deletes pods so that `want` are active.
    async fn manage(&mut self, succeeded: i64) {
        let want = self.want(succeeded);
        let active = self.active.len() as i64;
        if active > want {
            let mut ranked = self.active.clone();
            ranked.sort_by(|a, b| pod::removal_order(a, b));
            ranked.truncate(((active - want) as usize).min(BURST));
            self.delete(&ranked).await;
            return;
        }
        let mut diff = want - active;
        if !self.replacing_terminating() {
            diff -= self.terminating;
        }
        let n = diff.clamp(0, BURST as i64) as usize;
        self.create(vec![None; n]).await;
    }

    /// Indexed: one pod per pending index, surplus pods (no valid index, a completed one, a
    /// duplicate) deleted.
    async fn manage_indexed(&mut self, succeeded: i64) {
        let completions = status::completions(&self.job).unwrap_or(0);
        let mut by_index: BTreeMap<i64, Vec<Arc<Value>>> = BTreeMap::new();
        let mut surplus: Vec<Arc<Value>> = Vec::new();
        for p in &self.active {
            match indexes::of_pod(p, completions) {
                Some(ix) if !self.completed.contains(&ix) => by_index.entry(ix).or_default().push(p.clone()),
                _ => surplus.push(p.clone()),
            }
        }
        for pods in by_index.values_mut() {
            pods.sort_by(|a, b| pod::removal_order(a, b));
            let keep = pods.pop();
            surplus.append(pods);
            pods.extend(keep);
        }
        if !surplus.is_empty() {
            surplus.truncate(BURST);
            self.delete(&surplus).await;
        }
        let want = self.want(succeeded);
        let active = self.active.len() as i64;
        if active > want {
            let mut ranked = self.active.clone();
            ranked.sort_by(|a, b| pod::removal_order(a, b));
            ranked.truncate(((active - want) as usize).min(BURST));
            self.delete(&ranked).await;
            return;
        }
        let mut busy: BTreeSet<i64> = self.active.iter().filter_map(|p| indexes::of_pod(p, completions)).collect();
        if !self.replacing_terminating() {
            busy.extend(self.pods.iter().filter(|p| is_terminating(p)).filter_map(|p| indexes::of_pod(p, completions)));
        }
        let n = (want - active).clamp(0, BURST as i64) as usize;
        let pending: Vec<Option<i64>> = (0..completions)
            .filter(|ix| !self.completed.contains(ix) && !busy.contains(ix))
            .take(n)
            .map(Some)
            .collect();
        self.create(pending).await;
    }

    /// Creates a pod for each entry (`Some(index)` for Indexed Jobs), in slow-start
    /// batches of 1, 2, 4, ... that stop after a batch with a failure.
    async fn create(&mut self, mut todo: Vec<Option<i64>>) {
        if self.hold_creates {
            return;
        }
        let mut batch = 1;
        while !todo.is_empty() {
            let now: Vec<Option<i64>> = todo.drain(..batch.min(todo.len())).collect();
            let creates = now.iter().map(|ix| self.ctx.create(pods::pods(), self.ns(), pod::new_pod(&self.job, *ix)));
            let results = join_all(creates).await;
            let mut failed = false;
            for result in results {
                match result {
                    Ok(p) => {
                        self.expect.created = self.expect.created.max(resource_version(&p).unwrap_or(0));
                        let message = format!("Created pod: {}", name(&p));
                        self.ctx.event(&self.job, "Normal", "SuccessfulCreate", &message).await;
                        self.active.push(Arc::new(p));
                    }
                    // The namespace is going: every create would fail.
                    Err(ApiError::Forbidden { .. }) => failed = true,
                    Err(e) => {
                        self.ctx.event(&self.job, "Warning", "FailedCreate", &format!("Error creating: {e}")).await;
                        self.fail(e);
                        failed = true;
                    }
                }
            }
            if failed {
                return;
            }
            batch *= 2;
        }
    }

    /// Deletes `victims` (active pods); they count as terminating.
    async fn delete(&mut self, victims: &[Arc<Value>]) {
        let deletes =
            victims.iter().map(|p| self.ctx.delete(pods::pods(), (self.ns(), name(p)), DeleteOptions::default()));
        let results = join_all(deletes).await;
        for (pod, result) in victims.iter().zip(results) {
            match result {
                Ok(_) | Err(ApiError::NotFound(_)) => {
                    self.expect.deleted.push((name(pod).to_string(), uid(pod).to_string()));
                    self.active.retain(|p| uid(p) != uid(pod));
                    self.terminating += 1;
                    let message = format!("Deleted pod: {}", name(pod));
                    self.ctx.event(&self.job, "Normal", "SuccessfulDelete", &message).await;
                }
                Err(e) => {
                    self.ctx.event(&self.job, "Warning", "FailedDelete", &format!("Error deleting: {e}")).await;
                    self.fail(e);
                }
            }
        }
    }

    /// The `Suspended` condition, and a new start time on resuming.
    async fn suspension(&mut self, suspended: bool) {
        if suspended {
            if status::ensure_condition(
                &mut self.status,
                "Suspended",
                "True",
                ("JobSuspended", "Job suspended"),
                self.now,
            ) {
                self.ctx.event(&self.job, "Normal", "Suspended", "Job suspended").await;
            }
        } else if status::ensure_condition(
            &mut self.status,
            "Suspended",
            "False",
            ("JobResumed", "Job resumed"),
            self.now,
        ) {
            self.ctx.event(&self.job, "Normal", "Resumed", "Job resumed").await;
            self.status["startTime"] = json!(pods::timestamp(self.now));
        }
    }

    /// The Job with the status built so far.
    fn written_job(&self) -> Value {
        let mut job = self.job.clone();
        job["status"] = self.status.clone();
        job
    }

    /// Writes the status (counts, conditions) unless the Job has it already.
    async fn write(&mut self) -> Result<(), ApiError> {
        let ready = self.active.iter().filter(|p| is_ready(p)).count() as i64;
        set_count(&mut self.status, "active", self.active.len() as i64);
        self.status["ready"] = json!(ready);
        self.status["terminating"] = json!(self.terminating);
        if self.status.get("uncountedTerminatedPods").is_none() {
            self.status["uncountedTerminatedPods"] = json!({});
        }
        if pods::normalized(self.job.get("status")) == pods::normalized(Some(&self.status)) {
            return Ok(());
        }
        let mut updated = self.job.clone();
        set_path(&mut updated, &["status"], self.status.clone());
        let written = self.ctx.update(jobs(), Part::Status, updated).await?;
        self.written = resource_version(&written);
        self.job = written;
        Ok(())
    }
}

impl Reconciler for Jobs {
    fn name(&self) -> &'static str {
        "job"
    }

    fn watches(&self) -> Vec<Watched> {
        let seen = self.seen_pods.clone();
        let pod_keys = move |pod: &Value, old: Option<&Value>| {
            if let Some(rv) = resource_version(pod) {
                seen.set(seen.get().max(rv));
            }
            let mut keys: Vec<ObjectKey> = Vec::new();
            for p in std::iter::once(pod).chain(old) {
                let key = controller_of(p, "Job").or_else(|| {
                    // An orphan that still has the finalizer: the Job of its label frees it.
                    let orphan = controller_ref(p).is_none() && has_finalizer(p);
                    job_label(p).filter(|_| orphan).map(|job| ObjectKey::new(Some(pods::namespace(p)), job))
                });
                if let Some(key) = key.filter(|k| !keys.contains(k)) {
                    keys.push(key);
                }
            }
            keys
        };
        vec![Watched::objects(jobs()), Watched::with(pods::pods(), pod_keys)]
    }

    fn reconcile(self: Rc<Self>, ctx: Ctx, key: ObjectKey) -> LocalBoxFuture<'static, Result<Action, ApiError>> {
        Box::pin(async move { self.sync(&ctx, &key).await })
    }
}

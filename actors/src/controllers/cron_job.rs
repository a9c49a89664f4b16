//! The CronJob controller (kube-controller-manager's `cronjob-controller`, v2): creates a
//! Job named `{cronjob}-{scheduled time in minutes since the epoch}` from `jobTemplate` at
//! each time of `schedule` (in `timeZone`), honouring `suspend`,
//! `startingDeadlineSeconds` and `concurrencyPolicy` (Allow, Forbid, Replace); keeps
//! `status.active`, `lastScheduleTime` and `lastSuccessfulTime`; deletes the oldest finished
//! Jobs past `successfulJobsHistoryLimit`/`failedJobsHistoryLimit`; and looks again at the
//! next scheduled time. Its clock can be replaced ([`CronJobs::with_clock`]) for tests.
//!
//! - [`schedule`]: cron expressions and descriptors.
//! - [`zone`]: time zones from the tz database.

pub mod schedule;
pub mod zone;

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use serde_json::{json, Map, Value};
use time::format_description::well_known::{Rfc2822, Rfc3339};
use time::OffsetDateTime;

use super::job::status::{is_finished, true_condition};
use super::job::{self as job_controller};
use super::pods::{self, controlled_by, name, parse_time, set_path, str_at, terminating, timestamp, uid};
use crate::api_error::ApiError;
use crate::controller::{Action, Ctx, ObjectKey, Reconciler, Watched};
use crate::deletion::DeleteOptions;
use crate::kinds::ResourceKind;
use crate::object_store::Part;
use schedule::Schedule;
use zone::Zone;

/// The annotation with a Job's scheduled time, in the CronJob's zone.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// More missed runs than this get a `TooManyMissedTimes` warning.
pub const MAX_MISSED: usize = 100;
/// How long after a scheduled time the CronJob is looked at (kube's `nextScheduleDelta`).
const NEXT_DELTA: Duration = Duration::from_millis(100);

/// The controller's idea of now.
pub type Clock = Rc<dyn Fn() -> OffsetDateTime>;

pub fn cron_jobs() -> &'static ResourceKind {
    pods::kind("batch", "cronjobs")
}

/// The controller; keys are CronJobs.
pub struct CronJobs {
    clock: Clock,
}

impl Default for CronJobs {
    fn default() -> Self {
        CronJobs::new()
    }
}

impl CronJobs {
    pub fn new() -> Self {
        CronJobs::with_clock(Rc::new(pods::now))
    }

    /// A controller whose now is `clock()`.
    pub fn with_clock(clock: Clock) -> Self {
        CronJobs { clock }
    }
}

/// The Job of `cj` for `scheduled` (kube's `getJobFromTemplate2`).
pub fn job_for(cj: &Value, scheduled: OffsetDateTime, zone: &Zone) -> Value {
    let template = cj.pointer("/spec/jobTemplate").cloned().unwrap_or(Value::Null);
    let mut annotations: Map<String, Value> =
        template.pointer("/metadata/annotations").and_then(Value::as_object).cloned().unwrap_or_default();
    let at = zone.in_zone(scheduled).format(&Rfc3339).unwrap_or_else(|_| timestamp(scheduled));
    annotations.insert(SCHEDULED_TIMESTAMP.into(), json!(at));
    let mut metadata = json!({
        "name": job_name(cj, scheduled),
        "annotations": annotations,
        "ownerReferences": [{
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "name": name(cj),
            "uid": uid(cj),
            "controller": true,
            "blockOwnerDeletion": true,
        }],
    });
    if let Some(labels) = template.pointer("/metadata/labels").filter(|l| !pods::is_empty(l)) {
        metadata["labels"] = labels.clone();
    }
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": template.get("spec").cloned().unwrap_or_else(|| json!({})),
    })
}

/// `{cronjob}-{minutes since the epoch}`.
pub fn job_name(cj: &Value, scheduled: OffsetDateTime) -> String {
    format!("{}-{}", name(cj), scheduled.unix_timestamp().div_euclid(60))
}

/// A reference to `job` for `status.active`.
fn reference(job: &Value) -> Value {
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "namespace": pods::namespace(job),
        "name": name(job),
        "uid": uid(job),
        "resourceVersion": str_at(job, "/metadata/resourceVersion"),
    })
}

/// When a schedule next runs after `now`, in `zone`.
fn next_run(schedule: &Schedule, zone: &Zone, after: OffsetDateTime) -> Option<OffsetDateTime> {
    schedule.next(zone.local(after)).map(|t| zone.instant(t))
}

/// `Complete` or `Failed`: how a finished Job ended.
fn finished_as(job: &Value) -> Option<&'static str> {
    if true_condition(job, "Complete").is_some() {
        Some("Complete")
    } else if true_condition(job, "Failed").is_some() {
        Some("Failed")
    } else {
        None
    }
}

/// kube's `byJobStartTime`: by start time (none last), then name.
fn by_start_time(a: &Arc<Value>, b: &Arc<Value>) -> std::cmp::Ordering {
    let start = |j: &Value| parse_time(str_at(j, "/status/startTime"));
    match (start(a), start(b)) {
        (Some(x), Some(y)) => x.cmp(&y).then_with(|| name(a).cmp(name(b))),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => name(a).cmp(name(b)),
    }
}

/// One sync of a CronJob.
struct Sync<'a> {
    ctx: &'a Ctx,
    cj: Arc<Value>,
    status: Value,
    now: OffsetDateTime,
}

impl Sync<'_> {
    fn ns(&self) -> &str {
        pods::namespace(&self.cj)
    }

    fn active(&self) -> Vec<Value> {
        self.status.get("active").and_then(Value::as_array).cloned().unwrap_or_default()
    }

    fn set_active(&mut self, active: Vec<Value>) {
        match self.status.as_object_mut() {
            Some(map) if active.is_empty() => {
                map.remove("active");
            }
            _ => self.status["active"] = Value::Array(active),
        }
    }

    fn drop_active(&mut self, job_uid: &str) {
        let mut active = self.active();
        active.retain(|r| str_at(r, "/uid") != job_uid);
        self.set_active(active);
    }

    async fn event(&self, kind: &str, reason: &str, message: &str) {
        self.ctx.event(&self.cj, kind, reason, message).await;
    }

    /// Brings `status.active` and `lastSuccessfulTime` in line with the Jobs it owns.
    async fn track(&mut self, jobs: &[Arc<Value>]) -> Result<(), ApiError> {
        for job in jobs {
            let id = uid(job);
            let found = self.active().iter().any(|r| str_at(r, "/uid") == id);
            let finished = finished_as(job);
            match (found, finished) {
                (false, None) => {
                    // Created before a crash, or by someone else: say so, unless the
                    // stored CronJob lists it (this copy is behind).
                    let fresh = self.ctx.get(cron_jobs(), Some(self.ns()), name(&self.cj)).await?;
                    let listed = fresh
                        .pointer("/status/active")
                        .and_then(Value::as_array)
                        .is_some_and(|a| a.iter().any(|r| str_at(r, "/uid") == id));
                    if !listed {
                        let message = format!("Saw a job that the controller did not create or forgot: {}", name(job));
                        self.event("Warning", "UnexpectedJob", &message).await;
                    }
                }
                (true, Some(condition)) => {
                    self.drop_active(id);
                    let message = format!("Saw completed job: {}, condition: {condition}", name(job));
                    self.event("Normal", "SawCompletedJob", &message).await;
                }
                _ => {}
            }
            if finished == Some("Complete") {
                let completed = parse_time(str_at(job, "/status/completionTime"));
                let last = parse_time(str_at(&self.status, "/lastSuccessfulTime"));
                if let Some(at) = completed.filter(|c| last.is_none_or(|l| *c > l)) {
                    self.status["lastSuccessfulTime"] = json!(timestamp(at));
                }
            }
        }
        // Active Jobs that are gone.
        for r in self.active() {
            let id = str_at(&r, "/uid");
            if jobs.iter().any(|j| uid(j) == id) {
                continue;
            }
            let job_name = str_at(&r, "/name");
            match self.ctx.get(job_controller::jobs(), Some(self.ns()), job_name).await {
                Ok(j) if uid(&j) == id => {}
                Ok(_) | Err(ApiError::NotFound(_)) => {
                    self.drop_active(id);
                    self.event("Normal", "MissingJob", &format!("Active job went missing: {job_name}")).await;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Deletes a Job (its pods in the background) and drops it from `status.active`.
    async fn delete_job(&mut self, job_name: &str, job_uid: &str) -> Result<(), ApiError> {
        let options = DeleteOptions { propagation_policy: Some("Background".into()), ..DeleteOptions::default() };
        match self.ctx.delete(job_controller::jobs(), (Some(self.ns()), job_name), options).await {
            Ok(_) | Err(ApiError::NotFound(_)) => {
                self.drop_active(job_uid);
                self.event("Normal", "SuccessfulDelete", &format!("Deleted job {job_name}")).await;
                Ok(())
            }
            Err(e) => {
                self.event("Warning", "FailedDelete", &format!("Deleted job: {e}")).await;
                Err(e)
            }
        }
    }

    /// Deletes the oldest finished Jobs past the history limits.
    async fn clean_up(&mut self, jobs: &[Arc<Value>]) -> Result<(), ApiError> {
        for (condition, limit) in [("Complete", "successfulJobsHistoryLimit"), ("Failed", "failedJobsHistoryLimit")] {
            let Some(limit) = self.cj.pointer(&format!("/spec/{limit}")).and_then(Value::as_i64) else { continue };
            let mut finished: Vec<Arc<Value>> =
                jobs.iter().filter(|j| !terminating(j) && finished_as(j) == Some(condition)).cloned().collect();
            let excess = finished.len() as i64 - limit.max(0);
            if excess <= 0 {
                continue;
            }
            finished.sort_by(by_start_time);
            for job in finished.iter().take(excess as usize) {
                self.delete_job(name(job), uid(job)).await?;
            }
        }
        Ok(())
    }

    /// Starts the run at `scheduled` if it is due; what to requeue after.
    async fn run_due(&mut self, schedule: &Schedule, zone: &Zone) -> Result<(), ApiError> {
        let cj = self.cj.clone();
        let created = parse_time(str_at(&cj, "/metadata/creationTimestamp")).unwrap_or(self.now);
        let mut earliest = parse_time(str_at(&self.status, "/lastScheduleTime")).unwrap_or(created);
        let deadline = cj.pointer("/spec/startingDeadlineSeconds").and_then(Value::as_i64);
        if let Some(limit) = deadline.and_then(|s| self.now.checked_sub(time::Duration::seconds(s))) {
            earliest = earliest.max(limit);
        }
        let Some((latest, missed)) = schedule.most_recent(zone.local(earliest), zone.local(self.now), MAX_MISSED)
        else {
            return Ok(());
        };
        if missed > MAX_MISSED {
            let message = format!(
                "too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"
            );
            self.event("Warning", "TooManyMissedTimes", &message).await;
        }
        let scheduled = zone.instant(latest);
        let too_late = |s: i64| scheduled.checked_add(time::Duration::seconds(s)).is_some_and(|at| at < self.now);
        if deadline.is_some_and(too_late) {
            let at = scheduled.format(&Rfc2822).unwrap_or_else(|_| timestamp(scheduled));
            self.event("Warning", "MissSchedule", &format!("Missed scheduled time to start a job: {at}")).await;
            return Ok(());
        }
        let job_name = job_name(&cj, scheduled);
        let already = self.active().iter().any(|r| str_at(r, "/name") == job_name)
            || parse_time(str_at(&self.status, "/lastScheduleTime")) == Some(scheduled);
        if already {
            return Ok(());
        }
        match str_at(&cj, "/spec/concurrencyPolicy") {
            "Forbid" if !self.active().is_empty() => {
                let message = "Not starting job because prior execution is running and concurrency policy is Forbid";
                self.event("Normal", "JobAlreadyActive", message).await;
                return Ok(());
            }
            "Replace" => {
                for r in self.active() {
                    self.delete_job(str_at(&r, "/name"), str_at(&r, "/uid")).await?;
                }
            }
            _ => {}
        }
        let job = match self.ctx.create(job_controller::jobs(), Some(self.ns()), job_for(&cj, scheduled, zone)).await {
            Ok(job) => {
                self.event("Normal", "SuccessfulCreate", &format!("Created job {}", name(&job))).await;
                job
            }
            Err(ApiError::AlreadyExists(_)) => {
                let job = self.ctx.get(job_controller::jobs(), Some(self.ns()), &job_name).await?;
                if !controlled_by(&job, &cj) {
                    let message = format!("Error creating job: jobs.batch {job_name:?} already exists");
                    self.event("Warning", "FailedCreate", &message).await;
                    self.status["lastScheduleTime"] = json!(timestamp(scheduled));
                    return Ok(());
                }
                job
            }
            Err(e) => {
                self.event("Warning", "FailedCreate", &format!("Error creating job: {e}")).await;
                return Err(e);
            }
        };
        if !is_finished(&job) && !self.active().iter().any(|r| str_at(r, "/uid") == uid(&job)) {
            let mut active = self.active();
            active.push(reference(&job));
            self.set_active(active);
        }
        self.status["lastScheduleTime"] = json!(timestamp(scheduled));
        Ok(())
    }

    /// Writes the status unless the CronJob has it already.
    async fn write(&self) -> Result<(), ApiError> {
        if pods::normalized(self.cj.get("status")) == pods::normalized(Some(&self.status)) {
            return Ok(());
        }
        let mut updated = (*self.cj).clone();
        set_path(&mut updated, &["status"], self.status.clone());
        self.ctx.update(cron_jobs(), Part::Status, updated).await.map(|_| ())
    }
}

impl CronJobs {
    async fn sync(&self, ctx: &Ctx, key: &ObjectKey) -> Result<Action, ApiError> {
        let (Some(cron_lister), Some(job_lister)) =
            (ctx.lister(cron_jobs()).cloned(), ctx.lister(job_controller::jobs()).cloned())
        else {
            return Ok(Action::Done);
        };
        let Some(cj) = cron_lister.get(key) else { return Ok(Action::Done) };
        let jobs = job_lister.list_where(key.namespace.as_deref(), |j| controlled_by(j, &cj));
        let status = cj.get("status").filter(|s| s.is_object()).cloned().unwrap_or_else(|| json!({}));
        let mut s = Sync { ctx, cj: cj.clone(), status, now: (self.clock)() };
        s.track(&jobs).await?;
        s.clean_up(&jobs).await?;
        if terminating(&cj) {
            s.write().await?;
            return Ok(Action::Done);
        }
        let zone = match cj.pointer("/spec/timeZone").and_then(Value::as_str) {
            None => Zone::utc(),
            Some(tz) => match Zone::load(tz) {
                Ok(zone) => zone,
                Err(e) => {
                    s.event("Warning", "UnknownTimeZone", &format!("invalid timeZone: {tz:?}: {e}")).await;
                    s.write().await?;
                    return Ok(Action::Done);
                }
            },
        };
        if cj.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true) {
            s.write().await?;
            return Ok(Action::Done);
        }
        let spec = str_at(&cj, "/spec/schedule");
        let schedule = match schedule::parse(spec) {
            Ok(schedule) => schedule,
            Err(e) => {
                s.event("Warning", "UnparseableSchedule", &format!("unparseable schedule: {spec:?} : {e}")).await;
                s.write().await?;
                return Ok(Action::Done);
            }
        };
        let result = s.run_due(&schedule, &zone).await;
        s.write().await?;
        result?;
        // The next run: after the last one for `@every`, else after now.
        let last = parse_time(str_at(&s.status, "/lastScheduleTime"));
        let base = match (&schedule, last) {
            (Schedule::Every(_), Some(last)) => last,
            _ => s.now,
        };
        let next =
            next_run(&schedule, &zone, base).filter(|n| *n > s.now).or_else(|| next_run(&schedule, &zone, s.now));
        Ok(match next {
            Some(at) => Action::RequeueAfter(job_controller::status::until(at, s.now) + NEXT_DELTA),
            None => Action::Done,
        })
    }
}

impl Reconciler for CronJobs {
    fn name(&self) -> &'static str {
        "cronjob"
    }

    fn watches(&self) -> Vec<Watched> {
        vec![Watched::objects(cron_jobs()), Watched::owned_by(job_controller::jobs(), "CronJob")]
    }

    fn reconcile(self: Rc<Self>, ctx: Ctx, key: ObjectKey) -> LocalBoxFuture<'static, Result<Action, ApiError>> {
        Box::pin(async move { self.sync(&ctx, &key).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_are_named_by_their_minute_and_carry_the_template_and_owner() {
        let cj = json!({
            "metadata": {"name": "hello", "namespace": "default", "uid": "u1"},
            "spec": {"jobTemplate": {"metadata": {"labels": {"a": "b"}}, "spec": {"template": {"spec": {"restartPolicy": "Never"}}}}},
        });
        let at = parse_time("2024-01-01T00:05:00Z").unwrap();
        let job = job_for(&cj, at, &Zone::utc());
        assert_eq!(job["metadata"]["name"], format!("hello-{}", at.unix_timestamp() / 60));
        assert_eq!(job["metadata"]["annotations"][SCHEDULED_TIMESTAMP], "2024-01-01T00:05:00Z");
        assert_eq!(job["metadata"]["labels"]["a"], "b");
        assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "CronJob");
        assert!(controlled_by(&job, &cj));
        assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
    }

    #[test]
    fn older_finished_jobs_sort_first() {
        let job = |name: &str, start: Option<&str>| {
            Arc::new(
                json!({"metadata": {"name": name}, "status": start.map(|s| json!({"startTime": s})).unwrap_or(json!({}))}),
            )
        };
        let mut jobs = [
            job("c", None),
            job("b", Some("2024-01-01T00:02:00Z")),
            job("a", Some("2024-01-01T00:03:00Z")),
            job("d", Some("2024-01-01T00:02:00Z")),
        ];
        jobs.sort_by(by_start_time);
        let names: Vec<&str> = jobs.iter().map(|j| name(j)).collect();
        assert_eq!(names, ["b", "d", "a", "c"]);
    }
}

//! A Job's conditions and timers as kube's Job controller writes them: the interim
//! `SuccessCriteriaMet` / `FailureTarget` and the terminal `Complete` / `Failed` (added once
//! no pod is left running or terminating), `Suspended`, the active deadline and the pod
//! failure backoff.

use std::time::Duration;

use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::controllers::pods::{self, int_at, parse_time, str_at, timestamp};

/// Why and how a Job fails once it has too many failed pods.
pub const BACKOFF_LIMIT_EXCEEDED: (&str, &str) =
    ("BackoffLimitExceeded", "Job has reached the specified backoff limit");
/// Why and how a Job fails once it ran past `activeDeadlineSeconds`.
pub const DEADLINE_EXCEEDED: (&str, &str) = ("DeadlineExceeded", "Job was active longer than specified deadline");
/// Why and how a Job succeeds once enough pods did.
pub const COMPLETIONS_REACHED: (&str, &str) = ("CompletionsReached", "Reached expected number of succeeded pods");

/// The first backoff after a failed pod (kube's `DefaultJobPodFailureBackOff`), doubled for
/// each further failure since the last success.
pub const POD_FAILURE_BACKOFF: Duration = Duration::from_secs(10);
/// The longest backoff (kube's `MaxJobPodFailureBackOff`).
pub const MAX_POD_FAILURE_BACKOFF: Duration = Duration::from_secs(600);

/// How a Job ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    Success,
    Failure { reason: String, message: String },
}

impl Finish {
    pub fn failure((reason, message): (&str, &str)) -> Finish {
        Finish::Failure { reason: reason.into(), message: message.into() }
    }

    /// The interim condition's type, reason and message.
    fn interim(&self) -> (&str, &str, &str) {
        match self {
            Finish::Success => ("SuccessCriteriaMet", COMPLETIONS_REACHED.0, COMPLETIONS_REACHED.1),
            Finish::Failure { reason, message } => ("FailureTarget", reason, message),
        }
    }

    /// The terminal condition's type.
    pub fn terminal(&self) -> &'static str {
        match self {
            Finish::Success => "Complete",
            Finish::Failure { .. } => "Failed",
        }
    }
}

/// The condition of type `kind` of `job` if its status is `True`.
pub fn true_condition<'a>(job: &'a Value, kind: &str) -> Option<&'a Value> {
    let status = job.get("status")?;
    pods::condition(status, kind).filter(|c| c.get("status").and_then(Value::as_str) == Some("True"))
}

/// Finished: `Complete` or `Failed` (kube's `IsJobFinished`).
pub fn is_finished(job: &Value) -> bool {
    true_condition(job, "Complete").is_some() || true_condition(job, "Failed").is_some()
}

/// How the Job ends if an interim condition already says so.
pub fn decided(job: &Value) -> Option<Finish> {
    if let Some(c) = true_condition(job, "FailureTarget") {
        return Some(Finish::Failure {
            reason: str_at(c, "/reason").to_string(),
            message: str_at(c, "/message").to_string(),
        });
    }
    true_condition(job, "SuccessCriteriaMet").map(|_| Finish::Success)
}

fn new_condition(kind: &str, status: &str, reason: &str, message: &str, now: OffsetDateTime) -> Value {
    let at = timestamp(now);
    json!({
        "type": kind,
        "status": status,
        "lastProbeTime": at,
        "lastTransitionTime": at,
        "reason": reason,
        "message": message,
    })
}

/// Sets condition `kind` as kube's `ensureJobConditionStatus`: replaced in place when its
/// status, reason or message differ; added only if `True`. Whether anything changed.
pub fn ensure_condition(
    status: &mut Value,
    kind: &str,
    cond_status: &str,
    (reason, message): (&str, &str),
    now: OffsetDateTime,
) -> bool {
    let fresh = new_condition(kind, cond_status, reason, message, now);
    if let Some(conditions) = status.get_mut("conditions").and_then(Value::as_array_mut) {
        if let Some(c) = conditions.iter_mut().find(|c| c.get("type").and_then(Value::as_str) == Some(kind)) {
            let same = str_at(c, "/status") == cond_status
                && str_at(c, "/reason") == reason
                && str_at(c, "/message") == message;
            if same {
                return false;
            }
            *c = fresh;
            return true;
        }
    }
    if cond_status != "True" {
        return false;
    }
    match status.get_mut("conditions").and_then(Value::as_array_mut) {
        Some(conditions) => conditions.push(fresh),
        None => pods::set_path(status, &["conditions"], json!([fresh])),
    }
    true
}

/// Adds the interim condition of `finish` if missing.
pub fn add_interim(status: &mut Value, finish: &Finish, now: OffsetDateTime) -> bool {
    let (kind, reason, message) = finish.interim();
    ensure_condition(status, kind, "True", (reason, message), now)
}

/// Adds the terminal condition (with the interim one's reason and message), and for a
/// success `completionTime`.
pub fn add_terminal(status: &mut Value, finish: &Finish, now: OffsetDateTime) -> bool {
    let (_, reason, message) = finish.interim();
    let added = ensure_condition(status, finish.terminal(), "True", (reason, message), now);
    if added && *finish == Finish::Success {
        pods::set_path(status, &["completionTime"], json!(timestamp(now)));
    }
    added
}

/// When `activeDeadlineSeconds` runs out, counted from `status.startTime`.
pub fn deadline(job: &Value) -> Option<OffsetDateTime> {
    let seconds = job.pointer("/spec/activeDeadlineSeconds").and_then(Value::as_i64)?;
    let start = parse_time(str_at(job, "/status/startTime"))?;
    start.checked_add(time::Duration::seconds(seconds))
}

/// Whether `job` ran past its deadline at `now` (kube's `pastActiveDeadline`).
pub fn past_deadline(job: &Value, now: OffsetDateTime) -> bool {
    deadline(job).is_some_and(|at| at <= now)
}

/// How long until `at`, from `now` (zero if past).
pub fn until(at: OffsetDateTime, now: OffsetDateTime) -> Duration {
    let ms = (at - now).whole_milliseconds().clamp(0, i64::MAX as i128);
    Duration::from_millis(ms as u64)
}

/// How long pod creation still waits after `failures` failures since the last success,
/// the last at `last` (kube's `backoffRecord.getRemainingTime`).
pub fn backoff_remaining(failures: u32, last: OffsetDateTime, base: Duration, now: OffsetDateTime) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let backoff = base.saturating_mul(1 << (failures - 1).min(20)).min(MAX_POD_FAILURE_BACKOFF);
    let since = until(now, last);
    backoff.saturating_sub(since)
}

/// `spec.backoffLimit` (kube's default 6).
pub fn backoff_limit(job: &Value) -> i64 {
    job.pointer("/spec/backoffLimit").and_then(Value::as_i64).unwrap_or(6)
}

/// Whether the container restarts of running and pending pods of an `OnFailure` Job
/// reach `backoffLimit` (kube's `pastBackoffLimitOnFailure`).
pub fn past_backoff_limit_on_failure(job: &Value, pods: &[impl std::ops::Deref<Target = Value>]) -> bool {
    if str_at(job, "/spec/template/spec/restartPolicy") != "OnFailure" {
        return false;
    }
    let restarts: i64 = pods
        .iter()
        .filter(|p| matches!(str_at(p, "/status/phase"), "Running" | "Pending"))
        .flat_map(|p| {
            ["initContainerStatuses", "containerStatuses"].into_iter().flat_map(move |list| {
                p.pointer(&format!("/status/{list}")).and_then(Value::as_array).into_iter().flatten()
            })
        })
        .map(|c| int_at(c, "/restartCount"))
        .sum();
    match backoff_limit(job) {
        0 => restarts > 0,
        limit => restarts >= limit,
    }
}

/// `spec.parallelism` (default 1).
pub fn parallelism(job: &Value) -> i64 {
    job.pointer("/spec/parallelism").and_then(Value::as_i64).unwrap_or(1).max(0)
}

/// `spec.completions`, `None` for a work queue.
pub fn completions(job: &Value) -> Option<i64> {
    job.pointer("/spec/completions").and_then(Value::as_i64)
}

pub fn is_indexed(job: &Value) -> bool {
    str_at(job, "/spec/completionMode") == "Indexed"
}

pub fn is_suspended(job: &Value) -> bool {
    job.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> OffsetDateTime {
        parse_time(s).unwrap()
    }

    #[test]
    fn a_failure_is_decided_first_then_terminal_with_the_same_reason() {
        let now = at("2024-01-01T00:00:00Z");
        let mut status = json!({});
        let finish = Finish::failure(BACKOFF_LIMIT_EXCEEDED);
        assert!(add_interim(&mut status, &finish, now));
        assert!(!add_interim(&mut status, &finish, now));
        let job = json!({"status": status.clone()});
        assert_eq!(decided(&job), Some(finish.clone()));
        assert!(!is_finished(&job));
        assert!(add_terminal(&mut status, &finish, now));
        let job = json!({"status": status});
        assert!(is_finished(&job));
        let failed = true_condition(&job, "Failed").unwrap();
        assert_eq!(failed["reason"], "BackoffLimitExceeded");
        assert_eq!(failed["message"], "Job has reached the specified backoff limit");
        assert!(job["status"].get("completionTime").is_none());
    }

    #[test]
    fn a_success_sets_the_completion_time() {
        let now = at("2024-01-01T00:00:05Z");
        let mut status = json!({});
        add_interim(&mut status, &Finish::Success, now);
        add_terminal(&mut status, &Finish::Success, now);
        assert_eq!(status["completionTime"], "2024-01-01T00:00:05Z");
        let types: Vec<&str> =
            status["conditions"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["SuccessCriteriaMet", "Complete"]);
        assert_eq!(status["conditions"][1]["reason"], "CompletionsReached");
    }

    #[test]
    fn a_false_condition_is_only_written_over_an_existing_one() {
        let now = at("2024-01-01T00:00:00Z");
        let mut status = json!({});
        assert!(!ensure_condition(&mut status, "Suspended", "False", ("JobResumed", "Job resumed"), now));
        assert!(ensure_condition(&mut status, "Suspended", "True", ("JobSuspended", "Job suspended"), now));
        assert!(ensure_condition(&mut status, "Suspended", "False", ("JobResumed", "Job resumed"), now));
        assert_eq!(status["conditions"].as_array().unwrap().len(), 1);
        assert_eq!(status["conditions"][0]["reason"], "JobResumed");
    }

    #[test]
    fn the_backoff_doubles_per_failure_from_the_last_one() {
        let last = at("2024-01-01T00:00:00Z");
        let base = POD_FAILURE_BACKOFF;
        assert_eq!(backoff_remaining(0, last, base, last), Duration::ZERO);
        assert_eq!(backoff_remaining(1, last, base, at("2024-01-01T00:00:04Z")), Duration::from_secs(6));
        assert_eq!(backoff_remaining(3, last, base, at("2024-01-01T00:00:10Z")), Duration::from_secs(30));
        assert_eq!(backoff_remaining(30, last, base, last), MAX_POD_FAILURE_BACKOFF);
        assert_eq!(backoff_remaining(1, last, base, at("2024-01-01T00:01:00Z")), Duration::ZERO);
    }

    #[test]
    fn container_restarts_count_against_the_backoff_limit_of_on_failure_jobs() {
        let job = |policy: &str, limit: i64| json!({"spec": {"backoffLimit": limit, "template": {"spec": {"restartPolicy": policy}}}});
        let pod = |phase: &str, restarts: i64| json!({"status": {"phase": phase, "containerStatuses": [{"restartCount": restarts}], "initContainerStatuses": [{"restartCount": 1}]}});
        let pods = vec![Box::new(pod("Running", 1)), Box::new(pod("Failed", 9))];
        assert!(past_backoff_limit_on_failure(&job("OnFailure", 2), &pods));
        assert!(!past_backoff_limit_on_failure(&job("OnFailure", 3), &pods));
        assert!(!past_backoff_limit_on_failure(&job("Never", 1), &pods));
        let quiet = vec![Box::new(json!({"status": {"phase": "Pending"}}))];
        assert!(!past_backoff_limit_on_failure(&job("OnFailure", 0), &quiet));
        assert!(past_backoff_limit_on_failure(&job("OnFailure", 0), &pods));
    }

    #[test]
    fn the_deadline_counts_from_the_start_time() {
        let job = json!({"spec": {"activeDeadlineSeconds": 30}, "status": {"startTime": "2024-01-01T00:00:00Z"}});
        assert!(!past_deadline(&job, at("2024-01-01T00:00:29Z")));
        assert!(past_deadline(&job, at("2024-01-01T00:00:30Z")));
        assert!(!past_deadline(&json!({"spec": {}}), at("2030-01-01T00:00:00Z")));
    }
}

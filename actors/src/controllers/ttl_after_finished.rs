//! The TTL-after-finished controller (kube-controller-manager's
//! `ttl-after-finished-controller`): a finished Job (`Complete` or `Failed`) with
//! `spec.ttlSecondsAfterFinished` is deleted, its pods in the background, that many seconds
//! after the finishing condition's transition time. The Job is read again from the store
//! before it goes, and deleted only at the version that was checked.

use std::rc::Rc;

use futures::future::LocalBoxFuture;
use serde_json::Value;
use time::OffsetDateTime;

use super::job::status::{true_condition, until};
use super::job::{self as job_controller};
use super::pods::{self, name, parse_time, str_at, terminating};
use crate::api_error::ApiError;
use crate::controller::{Action, Ctx, ObjectKey, Reconciler, Watched};
use crate::deletion::DeleteOptions;

/// The controller; keys are Jobs.
#[derive(Default)]
pub struct TtlAfterFinished;

/// When `job` may be deleted: its finish time plus its TTL; `None` if it has no TTL, is
/// not finished, or is being deleted.
pub fn expires(job: &Value) -> Option<OffsetDateTime> {
    let ttl = job.pointer("/spec/ttlSecondsAfterFinished").and_then(Value::as_i64)?;
    if terminating(job) {
        return None;
    }
    let condition = true_condition(job, "Complete").or_else(|| true_condition(job, "Failed"))?;
    let finished = parse_time(str_at(condition, "/lastTransitionTime"))?;
    finished.checked_add(time::Duration::seconds(ttl))
}

impl TtlAfterFinished {
    async fn sync(&self, ctx: &Ctx, key: &ObjectKey) -> Result<Action, ApiError> {
        let Some(job) = ctx.lister(job_controller::jobs()).and_then(|l| l.get(key)) else {
            return Ok(Action::Done);
        };
        let Some(at) = expires(&job) else { return Ok(Action::Done) };
        let now = pods::now();
        if at > now {
            return Ok(Action::RequeueAfter(until(at, now)));
        }
        // The copy may be behind (a new TTL, a new Job of the same name): check the stored one.
        let fresh = match ctx.get(job_controller::jobs(), key.namespace.as_deref(), &key.name).await {
            Ok(fresh) => fresh,
            Err(ApiError::NotFound(_)) => return Ok(Action::Done),
            Err(e) => return Err(e),
        };
        let Some(at) = expires(&fresh) else { return Ok(Action::Done) };
        if at > now {
            return Ok(Action::RequeueAfter(until(at, now)));
        }
        let options = DeleteOptions {
            propagation_policy: Some("Background".into()),
            resource_version: Some(str_at(&fresh, "/metadata/resourceVersion").to_string()),
            ..DeleteOptions::default()
        };
        match ctx.delete(job_controller::jobs(), (key.namespace.as_deref(), name(&fresh)), options).await {
            Ok(_) | Err(ApiError::NotFound(_)) => Ok(Action::Done),
            Err(e) => Err(e),
        }
    }
}

impl Reconciler for TtlAfterFinished {
    fn name(&self) -> &'static str {
        "ttlafterfinished"
    }

    fn watches(&self) -> Vec<Watched> {
        vec![Watched::objects(job_controller::jobs())]
    }

    fn reconcile(self: Rc<Self>, ctx: Ctx, key: ObjectKey) -> LocalBoxFuture<'static, Result<Action, ApiError>> {
        Box::pin(async move { self.sync(&ctx, &key).await })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_finished_job_expires_its_ttl_after_the_finishing_condition() {
        let job = |ttl: Value, condition: &str| {
            json!({
                "metadata": {"name": "pi"},
                "spec": {"ttlSecondsAfterFinished": ttl},
                "status": {"conditions": [{"type": condition, "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}]},
            })
        };
        assert_eq!(expires(&job(json!(30), "Complete")), parse_time("2024-01-01T00:00:30Z"));
        assert_eq!(expires(&job(json!(0), "Failed")), parse_time("2024-01-01T00:00:00Z"));
        assert_eq!(expires(&job(json!(30), "SuccessCriteriaMet")), None);
        assert_eq!(expires(&job(Value::Null, "Complete")), None);
        let mut deleting = job(json!(30), "Complete");
        deleting["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:01Z");
        assert_eq!(expires(&deleting), None);
    }
}

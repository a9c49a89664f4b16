//! The scheduler's writes: the binding (kube's `pods/binding` subresource: `spec.nodeName`
//! and the `PodScheduled` condition in one write, refused for a pod already bound, being
//! deleted or replaced by another of the same name) and the `PodScheduled` condition of a
//! pod that cannot be scheduled.

use serde_json::{json, Value};

use crate::api_error::{ApiError, ApiResult};
use crate::controller::Ctx;
use crate::kind_actor::Patch;
use crate::kinds::{self, ResourceKind};
use crate::object_store::{self, Part};
use crate::patch::PatchKind;
use crate::FieldValidation;

/// The field manager of the scheduler's writes, as kube-scheduler's.
pub const FIELD_MANAGER: &str = "kube-scheduler";

pub fn pods() -> ApiResult<&'static ResourceKind> {
    kinds::find("", "v1", "pods").ok_or_else(|| ApiError::InternalError("no pods kind".into()))
}

fn now() -> String {
    crate::objects::timestamp(time::OffsetDateTime::now_utc())
}

fn meta<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.pointer(&format!("/metadata/{field}")).and_then(Value::as_str).unwrap_or("")
}

/// `status.conditions` with the `PodScheduled` condition set to `status`/`reason`/
/// `message` (its transition time kept if the status is unchanged); `None` if it is so
/// already.
pub fn with_scheduled_condition(pod: &Value, status: &str, reason: &str, message: &str) -> Option<Vec<Value>> {
    let mut conditions = pod.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    let at = conditions.iter().position(|c| c.get("type").and_then(Value::as_str) == Some("PodScheduled"));
    let field = |c: &Value, f: &str| c.get(f).and_then(Value::as_str).unwrap_or("").to_string();
    let mut condition =
        json!({"type": "PodScheduled", "status": status, "lastProbeTime": null, "lastTransitionTime": now()});
    if !reason.is_empty() {
        condition["reason"] = json!(reason);
    }
    if !message.is_empty() {
        condition["message"] = json!(message);
    }
    match at {
        Some(i) => {
            let old = &conditions[i];
            if field(old, "status") == status && field(old, "reason") == reason && field(old, "message") == message {
                return None;
            }
            if field(old, "status") == status {
                condition["lastTransitionTime"] = old.get("lastTransitionTime").cloned().unwrap_or(Value::Null);
            }
            conditions[i] = condition;
        }
        None => conditions.push(condition),
    }
    Some(conditions)
}

fn refused(name: &str, why: String) -> ApiError {
    ApiError::Unfulfilled { group: "", what: "pods", name: name.to_string(), why }
}

/// Binds `pod` (as the scheduler last saw it) to `node`. A 409 if it is bound already,
/// being deleted, or not the same pod (uid); a 404 if it is gone.
pub async fn bind(ctx: &Ctx, pod: &Value, node: &str) -> ApiResult<Value> {
    let kind = pods()?;
    let (ns, name, uid) = (meta(pod, "namespace"), meta(pod, "name"), meta(pod, "uid"));
    let change = |current: &Value| -> ApiResult<Value> {
        let current_uid = meta(current, "uid");
        if current_uid != uid {
            return Err(refused(
                name,
                format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {current_uid}"),
            ));
        }
        if let Some(bound) = super::pod_info::node_name(current) {
            return Err(refused(name, format!("pod {name} is already assigned to node {bound:?}")));
        }
        if current.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()) {
            return Err(refused(name, format!("pod {name} is being deleted, cannot be assigned to a host")));
        }
        let mut new = current.clone();
        let malformed = || ApiError::InternalError(format!("pod {name} is not an object with a spec"));
        let pod = new.as_object_mut().ok_or_else(malformed)?;
        let spec = pod.get_mut("spec").and_then(Value::as_object_mut).ok_or_else(malformed)?;
        spec.insert("nodeName".into(), json!(node));
        if let Some(conditions) = with_scheduled_condition(current, "True", "", "") {
            let status = pod.entry("status").or_insert_with(|| json!({}));
            if !status.is_object() {
                *status = json!({});
            }
            if let Some(status) = status.as_object_mut() {
                status.insert("conditions".into(), Value::Array(conditions));
            }
        }
        Ok(new)
    };
    object_store::update_with(&ctx.node, kind, Some(ns), name, Some(FIELD_MANAGER), change).await
}

/// Sets the `PodScheduled` condition of an unscheduled pod (a strategic merge patch of its
/// status, as kube-scheduler's `updatePod`); does nothing if it is set so already.
pub async fn set_unscheduled_condition(ctx: &Ctx, pod: &Value, reason: &str, message: &str) -> ApiResult<()> {
    let Some(conditions) = with_scheduled_condition(pod, "False", reason, message) else { return Ok(()) };
    let Some(condition) =
        conditions.into_iter().find(|c| c.get("type").and_then(Value::as_str) == Some("PodScheduled"))
    else {
        return Ok(());
    };
    let kind = pods()?;
    let actor = ctx.actors.get(kind).ok_or_else(|| ApiError::ServiceUnavailable("no actor for pods".into()))?;
    let body = json!({"status": {"conditions": [condition]}});
    let msg = Patch {
        namespace: Some(meta(pod, "namespace").into()),
        name: meta(pod, "name").into(),
        patch_kind: PatchKind::Strategic,
        body: body.to_string().into_bytes(),
        field_manager: Some(FIELD_MANAGER.into()),
        force: false,
        part: Part::Status,
        field_validation: FieldValidation::Ignore,
    };
    actor.send(msg).await.map_err(|e| ApiError::ServiceUnavailable(format!("pods actor: {e}")))??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_condition_is_rewritten_only_when_it_changes() {
        let pod = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}});
        let set = with_scheduled_condition(&pod, "False", "Unschedulable", "0/1 nodes").unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set[1]["reason"], "Unschedulable");
        let pod = json!({"status": {"conditions": set}});
        assert!(with_scheduled_condition(&pod, "False", "Unschedulable", "0/1 nodes").is_none());
        let moved = with_scheduled_condition(&pod, "False", "Unschedulable", "0/2 nodes").unwrap();
        assert_eq!(moved[1]["lastTransitionTime"], pod["status"]["conditions"][1]["lastTransitionTime"]);
        let bound = with_scheduled_condition(&pod, "True", "", "").unwrap();
        assert_eq!(
            bound[1],
            json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null,
            "lastTransitionTime": bound[1]["lastTransitionTime"]})
        );
    }
}

//! The scheduler's writes: the binding ([`Binding`], also what kube's `pods/binding`
//! subresource writes: `spec.nodeName` and the `PodScheduled` condition in one store
//! transaction, refused for a pod already bound, being deleted or replaced by another of
//! the same name), the `PodScheduled` condition (and nominated node) of a pod that cannot
//! be scheduled, and preemption's evictions.

use raft_store::StoreNode;
use serde_json::{json, Map, Value};

use std::rc::Rc;
use std::sync::Arc;

use super::pod_info::PodInfo;
use crate::admission::{Admit, Attributes, Chain, Operation, UserInfo};
use crate::api_error::{ApiError, ApiResult, FieldCause};
use crate::controller::Ctx;
use crate::deletion::DeleteOptions;
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

/// A binding of one pod to a node: what the scheduler decided, or what a `pods/binding`
/// request (a `v1` `Binding`) asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub namespace: String,
    pub name: String,
    /// Preconditions: the pod's uid and resourceVersion, when given.
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub node: String,
    /// Copied onto the pod.
    pub annotations: Map<String, Value>,
}

impl Binding {
    /// The binding of `pod` (as the scheduler last saw it: its uid is a precondition).
    pub fn of(pod: &Value, node: &str) -> Binding {
        Binding {
            namespace: meta(pod, "namespace").into(),
            name: meta(pod, "name").into(),
            uid: Some(meta(pod, "uid").to_string()).filter(|u| !u.is_empty()),
            resource_version: None,
            node: node.into(),
            annotations: Map::new(),
        }
    }

    /// A `Binding` object POSTed to `pods/{name}/binding` in `namespace`: 400 if it names
    /// another pod, 422 without a target node (kube's `ValidatePodBinding`).
    pub fn parse(namespace: &str, name: &str, obj: &Value) -> ApiResult<Binding> {
        if !obj.is_object() {
            return Err(ApiError::BadRequest("the body is not a Binding object".into()));
        }
        let body_name = meta(obj, "name");
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::BadRequest("name in URL does not match name in Binding object".into()));
        }
        let subject = crate::api_error::Subject { group: "", resource: "bindings", kind: "Binding", name: name.into() };
        let target_kind = obj.pointer("/target/kind").and_then(Value::as_str).unwrap_or("");
        let node = obj.pointer("/target/name").and_then(Value::as_str).unwrap_or("");
        let mut causes = Vec::new();
        if !target_kind.is_empty() && target_kind != "Node" {
            causes.push(FieldCause::not_supported("target.kind", target_kind, &["Node", "<empty>"]));
        }
        if node.is_empty() {
            causes.push(FieldCause::required("target.name", ""));
        }
        if !causes.is_empty() {
            return Err(ApiError::Invalid { subject, causes });
        }
        let text = |field: &str| Some(meta(obj, field).to_string()).filter(|v| !v.is_empty());
        Ok(Binding {
            namespace: namespace.into(),
            name: name.into(),
            uid: text("uid"),
            resource_version: text("resourceVersion"),
            node: node.into(),
            annotations: obj.pointer("/metadata/annotations").and_then(Value::as_object).cloned().unwrap_or_default(),
        })
    }

    /// The pod with this binding made: `spec.nodeName`, the annotations and `PodScheduled`
    /// True; refused (409 naming `what`) for a pod already bound, being deleted, or not
    /// the one the preconditions name.
    pub fn apply(&self, what: &'static str, current: &Value) -> ApiResult<Value> {
        let name = self.name.as_str();
        let refused = |why: String| ApiError::Unfulfilled { group: "", what, name: name.to_string(), why };
        let current_uid = meta(current, "uid");
        if let Some(uid) = self.uid.as_deref().filter(|u| *u != current_uid) {
            return Err(refused(format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {current_uid}"
            )));
        }
        if let Some(rv) = self.resource_version.as_deref() {
            let current_rv = meta(current, "resourceVersion");
            if rv != current_rv {
                return Err(refused(format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {current_rv}"
                )));
            }
        }
        if let Some(bound) = super::pod_info::node_name(current) {
            return Err(refused(format!("pod {name} is already assigned to node {bound:?}")));
        }
        if current.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()) {
            return Err(refused(format!("pod {name} is being deleted, cannot be assigned to a host")));
        }
        let mut new = current.clone();
        let malformed = || ApiError::InternalError(format!("pod {name} is not an object with a spec"));
        let pod = new.as_object_mut().ok_or_else(malformed)?;
        let spec = pod.get_mut("spec").and_then(Value::as_object_mut).ok_or_else(malformed)?;
        spec.insert("nodeName".into(), json!(self.node));
        if !self.annotations.is_empty() {
            let metadata = pod.entry("metadata").or_insert_with(|| json!({}));
            if let Some(metadata) = metadata.as_object_mut() {
                let annotations = metadata.entry("annotations").or_insert_with(|| json!({}));
                if !annotations.is_object() {
                    *annotations = json!({});
                }
                if let Some(annotations) = annotations.as_object_mut() {
                    annotations.extend(self.annotations.clone());
                }
            }
        }
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
    }

    /// Writes the binding in one store transaction (retried on a concurrent write), as
    /// `manager`; `what` names the resource in refusals. 404 if the pod is gone.
    pub async fn write(&self, store: &StoreNode, what: &'static str, manager: &str) -> ApiResult<Value> {
        self.write_fenced(store, what, manager, None).await
    }

    /// [`Self::write`], fenced to the Raft leadership of `term` when there is one (the
    /// scheduler's bindings: a deposed leader's scheduler cannot bind).
    pub async fn write_fenced(
        &self,
        store: &StoreNode,
        what: &'static str,
        manager: &str,
        term: Option<u64>,
    ) -> ApiResult<Value> {
        let kind = pods()?;
        let change = |current: &Value| self.apply(what, current);
        let fence = term.map(|term| Admit {
            chain: Arc::new(Chain::default()),
            attrs: Attributes {
                kind,
                subresource: Some("binding"),
                operation: Operation::Create,
                namespace: Some(self.namespace.clone()),
                name: self.name.clone(),
                user: UserInfo::control_plane(),
                dry_run: false,
            },
            leader_term: Some(term),
            warnings: Default::default(),
        });
        let (ns, name) = (Some(self.namespace.as_str()), self.name.as_str());
        object_store::update_with_admitted(store, kind, ns, name, Some(manager), change, fence.as_ref()).await
    }
}

/// Binds `pod` (as the scheduler last saw it) to `node`. A 409 if it is bound already,
/// being deleted, or not the same pod (uid); a 404 if it is gone.
pub async fn bind(ctx: &Ctx, pod: &Value, node: &str) -> ApiResult<Value> {
    Binding::of(pod, node).write_fenced(&ctx.node, "pods", FIELD_MANAGER, ctx.leader_term).await
}

/// Sets the `PodScheduled` condition of an unscheduled pod, and its
/// `status.nominatedNodeName` when preemption nominated a node (a strategic merge patch
/// of its status, as kube-scheduler's `updatePod`); does nothing if it is so already.
pub async fn set_unscheduled_condition(
    ctx: &Ctx,
    pod: &Value,
    reason: &str,
    message: &str,
    nominated: Option<&str>,
) -> ApiResult<()> {
    let nominated = nominated.filter(|n| pod.pointer("/status/nominatedNodeName").and_then(Value::as_str) != Some(n));
    let condition = with_scheduled_condition(pod, "False", reason, message).and_then(|conditions| {
        conditions.into_iter().find(|c| c.get("type").and_then(Value::as_str) == Some("PodScheduled"))
    });
    let mut status = Map::new();
    if let Some(condition) = condition {
        status.insert("conditions".into(), json!([condition]));
    }
    if let Some(node) = nominated {
        status.insert("nominatedNodeName".into(), json!(node));
    }
    if status.is_empty() {
        return Ok(());
    }
    patch_status(ctx, (meta(pod, "namespace"), meta(pod, "name")), json!({"status": status})).await
}

async fn patch_status(ctx: &Ctx, (namespace, name): (&str, &str), body: Value) -> ApiResult<()> {
    let kind = pods()?;
    let actor = ctx.actors.get(kind).ok_or_else(|| ApiError::ServiceUnavailable("no actor for pods".into()))?;
    let msg = Patch {
        namespace: Some(namespace.into()),
        name: name.into(),
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

/// Evicts preemption's victims on `node` for `preemptor` (of scheduler `profile`), as
/// kube's DefaultPreemption: each gets the `DisruptionTarget` condition, is deleted with
/// its own grace period, and gets a `Preempted` event. Failures are logged; the preemptor
/// is tried again as its victims go.
pub async fn preempt_victims(ctx: &Ctx, preemptor: &Value, profile: &str, node: &str, victims: &[Rc<PodInfo>]) {
    let Ok(kind) = pods() else { return };
    let condition = json!({"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
        "message": format!("{profile}: preempting to accommodate a higher priority pod"),
        "lastProbeTime": null, "lastTransitionTime": now()});
    let message = format!("Preempted by pod {} on node {node}", meta(preemptor, "uid"));
    for victim in victims {
        let (ns, name) = (victim.namespace.as_str(), victim.key.name.as_str());
        let body = json!({"status": {"conditions": [condition]}});
        if let Err(e) = patch_status(ctx, (ns, name), body).await {
            tracing::debug!(pod = %victim.key, error = %e, "marking a preemption victim failed");
        }
        let options =
            DeleteOptions { uid: Some(victim.uid.clone()).filter(|u| !u.is_empty()), ..DeleteOptions::default() };
        match ctx.delete(kind, (Some(ns), name), options).await {
            Ok(_) | Err(ApiError::NotFound(_)) => {}
            Err(e) => tracing::debug!(pod = %victim.key, error = %e, "deleting a preemption victim failed"),
        }
        let involved = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"namespace": ns, "name": name, "uid": victim.uid}});
        ctx.event(&involved, "Normal", "Preempted", &message).await;
        metrics::counter!("flotilla_scheduler_preemption_victims_total").increment(1);
    }
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

    #[test]
    fn a_binding_sets_the_node_once_and_refuses_what_kube_refuses() {
        let body =
            json!({"metadata": {"name": "p", "annotations": {"a": "b"}}, "target": {"kind": "Node", "name": "n1"}});
        let binding = Binding::parse("d", "p", &body).unwrap();
        let pod = json!({"metadata": {"name": "p", "namespace": "d", "uid": "u", "resourceVersion": "7"}, "spec": {}});
        let bound = binding.apply("pods/binding", &pod).unwrap();
        assert_eq!(bound["spec"]["nodeName"], "n1");
        assert_eq!(bound["metadata"]["annotations"]["a"], "b");
        assert_eq!(bound["status"]["conditions"][0]["status"], "True");
        let again = binding.apply("pods/binding", &bound).unwrap_err();
        assert_eq!(
            again.to_string(),
            r#"Operation cannot be fulfilled on pods/binding "p": pod p is already assigned to node "n1""#
        );
        let stale = Binding { uid: Some("other".into()), ..binding.clone() };
        assert!(stale.apply("pods", &pod).unwrap_err().to_string().contains("UID in precondition: other"));
        assert!(matches!(Binding::parse("d", "q", &body), Err(ApiError::BadRequest(_))));
        let no_target = Binding::parse("d", "p", &json!({"target": {"kind": "Pod"}})).unwrap_err();
        assert_eq!(no_target.code(), 422);
        assert!(no_target.to_string().contains("target.kind"), "{no_target}");
    }
}

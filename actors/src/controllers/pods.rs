//! What the workload controllers share: pod readiness and availability, kube's order for
//! deleting surplus pods, pods from templates, controller owner references, claiming objects
//! by label selector (adopt and release, as client-go's `ControllerRefManager`), and status
//! conditions.

use std::cmp::Ordering;
use std::sync::Arc;

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::api_error::ApiError;
use crate::controller::Ctx;
use crate::kinds::{self, ResourceKind};
use crate::object_store::Part;
use crate::selectors::LabelSelector;

/// The label a Deployment adds to its ReplicaSets' selectors and templates.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// Lower costs go first when a ReplicaSet scales down.
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// A built-in kind (the first built-in if it is missing, which cannot happen).
pub fn kind(group: &str, resource: &str) -> &'static ResourceKind {
    kinds::find(group, "v1", resource).unwrap_or(&kinds::BUILTIN[0])
}

pub fn pods() -> &'static ResourceKind {
    kind("", "pods")
}

pub fn replica_sets() -> &'static ResourceKind {
    kind("apps", "replicasets")
}

pub fn deployments() -> &'static ResourceKind {
    kind("apps", "deployments")
}

// ---------------------------------------------------------------------------------------
// Fields

pub fn str_at<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

pub fn int_at(obj: &Value, pointer: &str) -> i64 {
    obj.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

pub fn name(obj: &Value) -> &str {
    str_at(obj, "/metadata/name")
}

pub fn namespace(obj: &Value) -> &str {
    str_at(obj, "/metadata/namespace")
}

pub fn uid(obj: &Value) -> &str {
    str_at(obj, "/metadata/uid")
}

/// `spec.replicas`, 1 when unset (kube's default).
pub fn spec_replicas(obj: &Value) -> i64 {
    obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)
}

/// `status.{field}`, 0 when unset.
pub fn status_count(obj: &Value, field: &str) -> i64 {
    obj.get("status").and_then(|s| s.get(field)).and_then(Value::as_i64).unwrap_or(0)
}

pub fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.pointer("/metadata/annotations").and_then(|a| a.get(key)).and_then(Value::as_str)
}

/// Whether the object is marked for deletion.
pub fn terminating(obj: &Value) -> bool {
    crate::deletion::being_deleted(obj)
}

pub fn parse_time(ts: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(ts, &Rfc3339).ok()
}

pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// A timestamp as kube writes them (RFC 3339, whole seconds, UTC).
pub fn timestamp(at: OffsetDateTime) -> String {
    crate::objects::timestamp(at)
}

pub fn created(obj: &Value) -> Option<OffsetDateTime> {
    parse_time(str_at(obj, "/metadata/creationTimestamp"))
}

/// Oldest first; ties by name (client-go's `ByCreationTimestamp`).
pub fn by_creation(a: &Value, b: &Value) -> Ordering {
    created(a).cmp(&created(b)).then_with(|| name(a).cmp(name(b)))
}

// ---------------------------------------------------------------------------------------
// Pods

fn ready_condition(pod: &Value) -> Option<&Value> {
    pod.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
}

/// Ready: the `Ready` condition is `True`.
pub fn is_ready(pod: &Value) -> bool {
    ready_condition(pod).and_then(|c| c.get("status")).and_then(Value::as_str) == Some("True")
}

/// When the pod last became ready.
fn ready_since(pod: &Value) -> Option<OffsetDateTime> {
    if !is_ready(pod) {
        return None;
    }
    ready_condition(pod).and_then(|c| c.get("lastTransitionTime")).and_then(Value::as_str).and_then(parse_time)
}

/// Available: ready for at least `min_ready_seconds` at `now` (kube's `IsPodAvailable`).
pub fn is_available(pod: &Value, min_ready_seconds: i64, now: OffsetDateTime) -> bool {
    if !is_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    ready_since(pod)
        .and_then(|since| since.checked_add(time::Duration::seconds(min_ready_seconds)))
        .is_some_and(|at| at < now)
}

fn phase(pod: &Value) -> &str {
    str_at(pod, "/status/phase")
}

/// Counted by its controller: not finished (`Succeeded`, `Failed`) and not being deleted.
pub fn is_active(pod: &Value) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && !terminating(pod)
}

fn restarts(pod: &Value) -> i64 {
    let statuses = pod.pointer("/status/containerStatuses").and_then(Value::as_array);
    statuses.into_iter().flatten().filter_map(|s| s.get("restartCount").and_then(Value::as_i64)).max().unwrap_or(0)
}

fn deletion_cost(pod: &Value) -> i64 {
    annotation(pod, POD_DELETION_COST).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// `a` before `b` when a is later, or when either is unknown, `a` is the unknown one
/// (kube's `afterOrZero`).
fn after_or_zero(a: Option<OffsetDateTime>, b: Option<OffsetDateTime>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => b.cmp(&a),
    }
}

/// The order in which a ReplicaSet deletes surplus pods (kube's `ActivePods`): unscheduled
/// before scheduled, pending before unknown before running, not ready before ready, lower
/// deletion cost first, ready for less time first, more restarts first, newer first.
pub fn deletion_order(a: &Value, b: &Value) -> Ordering {
    let scheduled = |p: &Value| !str_at(p, "/spec/nodeName").is_empty();
    let phase_rank = |p: &Value| match phase(p) {
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    };
    scheduled(a)
        .cmp(&scheduled(b))
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        .then_with(|| is_ready(a).cmp(&is_ready(b)))
        .then_with(|| deletion_cost(a).cmp(&deletion_cost(b)))
        .then_with(|| {
            if is_ready(a) && is_ready(b) {
                after_or_zero(ready_since(a), ready_since(b))
            } else {
                Ordering::Equal
            }
        })
        .then_with(|| restarts(b).cmp(&restarts(a)))
        .then_with(|| after_or_zero(created(a), created(b)))
}

/// A new pod of ReplicaSet `rs` from its template (kube's `GetPodFromTemplate`).
pub fn pod_from_template(rs: &Value, owner_kind: &str) -> Value {
    let template = rs.pointer("/spec/template").cloned().unwrap_or(Value::Null);
    let mut metadata = json!({
        "generateName": format!("{}-", name(rs)),
        "ownerReferences": [owner_reference(rs, owner_kind)],
    });
    for field in ["labels", "annotations", "finalizers"] {
        if let Some(value) = template.pointer(&format!("/metadata/{field}")).filter(|v| !is_empty(v)) {
            metadata[field] = value.clone();
        }
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": template.get("spec").cloned().unwrap_or_else(|| json!({})),
    })
}

// ---------------------------------------------------------------------------------------
// Owners

/// The `ownerReferences` entry with `controller: true`.
pub fn controller_ref(obj: &Value) -> Option<&Value> {
    obj.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
}

/// Whether `owner` controls `obj` (by uid).
pub fn controlled_by(obj: &Value, owner: &Value) -> bool {
    controller_ref(obj).is_some_and(|r| r.get("uid").and_then(Value::as_str) == Some(uid(owner)))
}

/// The controller reference to `owner` (an apps/v1 object of Kind `owner_kind`).
pub fn owner_reference(owner: &Value, owner_kind: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": owner_kind,
        "name": name(owner),
        "uid": uid(owner),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

// ---------------------------------------------------------------------------------------
// Selectors

/// A parsed `spec.selector`; an invalid or missing one selects nothing (as kube's
/// `LabelSelectorAsSelector` errors), an empty one everything.
#[derive(Debug, Clone)]
pub struct Selector(Option<LabelSelector>);

impl Selector {
    /// The selector at `/spec/selector` of `obj`.
    pub fn of(obj: &Value) -> Selector {
        match obj.pointer("/spec/selector") {
            Some(sel) if sel.is_object() => Selector(LabelSelector::parse(&crate::objects::selector_string(sel)).ok()),
            _ => Selector(None),
        }
    }

    /// Whether `obj`'s labels satisfy it.
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.as_ref().is_some_and(|s| s.matches(obj.pointer("/metadata/labels")))
    }

    /// Whether it selects every object (`{}`).
    pub fn is_everything(&self) -> bool {
        self.0.as_ref().is_some_and(LabelSelector::is_empty)
    }
}

/// Sets the value at `path`, making each step on the way an object (replacing anything
/// else there).
pub fn set_path(obj: &mut Value, path: &[&str], value: Value) {
    match path.split_first() {
        None => *obj = value,
        Some((key, rest)) => {
            if !obj.is_object() {
                *obj = Value::Object(serde_json::Map::new());
            }
            if let Value::Object(map) = obj {
                set_path(map.entry(key.to_string()).or_insert(Value::Null), rest, value);
            }
        }
    }
}

/// Null, `{}`, `[]` and `""`.
pub fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// The objects of `candidates` that `owner` should control, adopting orphans its selector
/// matches and releasing those it controls that no longer match (client-go's
/// `ClaimObject`). Objects another controller owns are left alone; an owner being deleted
/// adopts nothing and releases nothing.
pub async fn claim(
    ctx: &Ctx,
    kind: &'static ResourceKind,
    owner: &Value,
    owner_kind: &str,
    selector: &Selector,
    candidates: Vec<Arc<Value>>,
) -> Result<Vec<Arc<Value>>, ApiError> {
    let owner_deleting = terminating(owner);
    let mut claimed = Vec::new();
    let mut first_error = None;
    let mut may_adopt: Option<bool> = None;
    for obj in candidates {
        if let Some(reference) = controller_ref(&obj) {
            if reference.get("uid").and_then(Value::as_str) != Some(uid(owner)) {
                continue;
            }
            if selector.matches(&obj) {
                claimed.push(obj);
                continue;
            }
            if owner_deleting {
                continue;
            }
            // Release it: it no longer matches.
            let mut released = (*obj).clone();
            if let Some(meta) = released.get_mut("metadata").and_then(Value::as_object_mut) {
                let refs = meta.get("ownerReferences").and_then(Value::as_array).cloned().unwrap_or_default();
                let kept: Vec<Value> =
                    refs.into_iter().filter(|r| r.get("uid").and_then(Value::as_str) != Some(uid(owner))).collect();
                if kept.is_empty() {
                    meta.remove("ownerReferences");
                } else {
                    meta.insert("ownerReferences".into(), Value::Array(kept));
                }
            }
            match ctx.update(kind, Part::Main, released).await {
                Ok(_) | Err(ApiError::NotFound(_)) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
            continue;
        }
        // An orphan.
        if owner_deleting || terminating(&obj) || !selector.matches(&obj) {
            continue;
        }
        // Adopt only if the owner, read fresh, is still the same and not being deleted.
        let may = match may_adopt {
            Some(may) => may,
            None => {
                let fresh = ctx.get(owner_kind_resource(owner_kind), Some(namespace(owner)), name(owner)).await;
                let may = matches!(&fresh, Ok(f) if uid(f) == uid(owner) && !terminating(f));
                may_adopt = Some(may);
                may
            }
        };
        if !may {
            continue;
        }
        let mut adopted = (*obj).clone();
        let reference = owner_reference(owner, owner_kind);
        match adopted.pointer_mut("/metadata/ownerReferences").and_then(Value::as_array_mut) {
            Some(refs) => refs.push(reference),
            None => {
                if let Some(meta) = adopted.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.insert("ownerReferences".into(), json!([reference]));
                }
            }
        }
        match ctx.update(kind, Part::Main, adopted).await {
            Ok(written) => claimed.push(Arc::new(written)),
            Err(ApiError::NotFound(_)) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(claimed),
    }
}

fn owner_kind_resource(owner_kind: &str) -> &'static ResourceKind {
    match owner_kind {
        "Deployment" => deployments(),
        "DaemonSet" => crate::kinds::find("apps", "v1", "daemonsets").unwrap_or_else(replica_sets),
        "StatefulSet" => crate::kinds::find("apps", "v1", "statefulsets").unwrap_or_else(replica_sets),
        _ => replica_sets(),
    }
}

// ---------------------------------------------------------------------------------------
// Conditions

/// The condition of type `kind` in `status.conditions`.
pub fn condition<'a>(status: &'a Value, kind: &str) -> Option<&'a Value> {
    status.get("conditions")?.as_array()?.iter().find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
}

/// Sets `cond` in `status.conditions` as kube's `SetDeploymentCondition`/`SetCondition`:
/// nothing changes if one of its type has the same status and reason; the transition time
/// stays if the status does; the new one goes last.
pub fn set_condition(status: &mut Value, mut cond: Value) {
    let kind = cond.get("type").and_then(Value::as_str).unwrap_or_default().to_string();
    if let Some(current) = condition(status, &kind) {
        let same_status = current.get("status") == cond.get("status");
        if same_status && current.get("reason") == cond.get("reason") {
            return;
        }
        if same_status {
            if let Some(at) = current.get("lastTransitionTime").cloned() {
                set_path(&mut cond, &["lastTransitionTime"], at);
            }
        }
    }
    remove_condition(status, &kind);
    match status.get_mut("conditions").and_then(Value::as_array_mut) {
        Some(conditions) => conditions.push(cond),
        None => set_path(status, &["conditions"], json!([cond])),
    }
}

/// Removes the condition of type `kind`.
pub fn remove_condition(status: &mut Value, kind: &str) {
    let Some(conditions) = status.get_mut("conditions").and_then(Value::as_array_mut) else { return };
    conditions.retain(|c| c.get("type").and_then(Value::as_str) != Some(kind));
    if conditions.is_empty() {
        if let Some(map) = status.as_object_mut() {
            map.remove("conditions");
        }
    }
}

/// A status without Go's `omitempty` zeros and empty lists, for comparing what is stored
/// with what was computed.
pub fn normalized(status: Option<&Value>) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(map) = status.and_then(Value::as_object) {
        for (k, v) in map {
            let zero = v.as_i64() == Some(0) || is_empty(v);
            if !zero {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// Deletes `doomed` (pods of `owner` in `ns`) at once and records an Event per pod on the
/// owner, as the ReplicaSet and DaemonSet controllers do: the (name, uid) of each pod deleted
/// (gone already counts as neither), and the first error.
pub async fn delete_burst(
    ctx: &Ctx,
    owner: &Value,
    ns: Option<&str>,
    doomed: &[&Arc<Value>],
) -> (Vec<(String, String)>, Option<ApiError>) {
    let name = |p: &'_ Value| crate::objects::name_of(p).unwrap_or_default().to_string();
    let names: Vec<String> = doomed.iter().map(|p| name(p)).collect();
    let deletes = names.iter().map(|n| ctx.delete(pods(), (ns, n.as_str()), Default::default()));
    let results = futures::future::join_all(deletes).await;
    let (mut deleted, mut events, mut failure) = (Vec::new(), Vec::new(), None);
    for (pod, result) in doomed.iter().zip(results) {
        match result {
            Ok(_) => {
                deleted.push((name(pod), uid(pod).to_string()));
                events.push(("Normal", "SuccessfulDelete", format!("Deleted pod: {}", name(pod))));
            }
            Err(ApiError::NotFound(_)) => {}
            Err(e) => {
                events.push(("Warning", "FailedDelete", format!("Error deleting: {e}")));
                failure.get_or_insert(e);
            }
        }
    }
    futures::future::join_all(events.iter().map(|(t, reason, msg)| ctx.event(owner, t, reason, msg))).await;
    (deleted, failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, node: &str, phase: &str, ready: bool, created: &str) -> Value {
        json!({
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"nodeName": node},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}, "lastTransitionTime": created}]},
        })
    }

    #[test]
    fn surplus_pods_go_unscheduled_then_pending_then_not_ready_then_newest() {
        let mut pods = [
            pod("ready-old", "n", "Running", true, "2024-01-01T00:00:00Z"),
            pod("ready-new", "n", "Running", true, "2024-01-02T00:00:00Z"),
            pod("not-ready", "n", "Running", false, "2024-01-01T00:00:00Z"),
            pod("pending", "n", "Pending", false, "2024-01-01T00:00:00Z"),
            pod("unscheduled", "", "Pending", false, "2024-01-01T00:00:00Z"),
        ];
        pods.sort_by(deletion_order);
        let names: Vec<&str> = pods.iter().map(name).collect();
        assert_eq!(names, ["unscheduled", "pending", "not-ready", "ready-new", "ready-old"]);
    }

    #[test]
    fn a_pod_is_available_once_ready_for_min_ready_seconds() {
        let p = pod("p", "", "Running", true, "2024-01-01T00:00:00Z");
        let at = parse_time("2024-01-01T00:00:05Z").unwrap();
        assert!(is_available(&p, 0, at));
        assert!(is_available(&p, 4, at));
        assert!(!is_available(&p, 5, at));
        assert!(!is_available(&pod("q", "", "Running", false, "2024-01-01T00:00:00Z"), 0, at));
    }

    #[test]
    fn selectors_match_labels_and_an_empty_one_matches_everything() {
        let rs = json!({"spec": {"selector": {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]}}});
        let s = Selector::of(&rs);
        assert!(s.matches(&json!({"metadata": {"labels": {"app": "web"}}})));
        assert!(!s.matches(&json!({"metadata": {"labels": {"app": "web", "tier": "db"}}})));
        assert!(!Selector::of(&json!({"spec": {}})).matches(&json!({"metadata": {}})));
        assert!(Selector::of(&json!({"spec": {"selector": {}}})).is_everything());
    }

    #[test]
    fn conditions_keep_their_transition_time_while_the_status_holds() {
        let mut status = json!({});
        let cond = |status: &str, reason: &str, at: &str| json!({"type": "Progressing", "status": status, "reason": reason, "lastTransitionTime": at, "lastUpdateTime": at});
        set_condition(&mut status, cond("True", "A", "t1"));
        set_condition(&mut status, cond("True", "A", "t2"));
        assert_eq!(
            condition(&status, "Progressing").unwrap()["lastUpdateTime"],
            "t1",
            "same status and reason: unchanged"
        );
        set_condition(&mut status, cond("True", "B", "t3"));
        let c = condition(&status, "Progressing").unwrap();
        assert_eq!((c["reason"].as_str(), c["lastTransitionTime"].as_str()), (Some("B"), Some("t1")));
        set_condition(&mut status, cond("False", "C", "t4"));
        assert_eq!(condition(&status, "Progressing").unwrap()["lastTransitionTime"], "t4");
        remove_condition(&mut status, "Progressing");
        assert_eq!(status, json!({}));
    }

    #[test]
    fn pods_from_a_template_carry_its_labels_and_a_controller_reference() {
        let rs = json!({
            "metadata": {"name": "web-1", "uid": "u1"},
            "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}},
        });
        let p = pod_from_template(&rs, "ReplicaSet");
        assert_eq!(p["metadata"]["generateName"], "web-1-");
        assert_eq!(p["metadata"]["labels"], json!({"app": "web"}));
        assert!(controlled_by(&p, &rs));
        assert_eq!(p["metadata"]["ownerReferences"][0]["blockOwnerDeletion"], true);
        assert_eq!(p["spec"]["containers"][0]["image"], "i");
    }
}

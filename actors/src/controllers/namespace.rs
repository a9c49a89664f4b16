//! The namespace controller (kube-controller-manager's `namespace-controller`): a namespace
//! being deleted that still has the `kubernetes` finalizer in `spec.finalizers` has all its
//! content deleted, every namespaced kind (built-in and custom), then loses the finalizer,
//! which lets it go.
//!
//! Each pass deletes each kind's objects in the namespace (deletecollection, `Background`),
//! lists what is left, and writes the five deletion conditions to the namespace's status as
//! kube's `namespaceConditionUpdater` does (`NamespaceContentRemaining`: "Some resources are
//! remaining: configmaps. has 1 resource instances", `NamespaceFinalizersRemaining`, ...).
//! While something is left it looks again after half the longest pod grace period left,
//! plus a second (kube's estimate); once nothing is, the finalizer goes.
//!
//! A namespace's DELETE already deletes its content inline (see [`crate::deletion`]); this
//! controller finishes what that could not: content held by finalizers or grace periods.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::api_error::{ApiError, ApiResult};
use crate::controller::{Action, Ctx, ObjectKey, Reconciler, Watched};
use crate::custom_kinds;
use crate::deletion::{being_deleted, finalizers_of, DeleteOptions, NAMESPACE_FINALIZER};
use crate::kind_actor::{DeleteCollection, List};
use crate::kinds::{self, ResourceKind, BUILTIN};
use crate::object_store::Part;

fn namespaces() -> &'static ResourceKind {
    kinds::find("", "v1", "namespaces").unwrap_or(&BUILTIN[0])
}

/// The namespace controller. Keys are namespaces.
pub struct Namespaces;

/// The condition types kube writes while a namespace terminates, in its order, with the
/// reason and message of each when nothing is wrong.
pub const CONDITIONS: [(&str, &str, &str); 5] = [
    ("NamespaceDeletionDiscoveryFailure", "ResourcesDiscovered", "All resources successfully discovered"),
    ("NamespaceDeletionGroupVersionParsingFailure", "ParsedGroupVersions", "All legacy kube types successfully parsed"),
    (
        "NamespaceDeletionContentFailure",
        "ContentDeleted",
        "All content successfully deleted, may be waiting on finalization",
    ),
    ("NamespaceContentRemaining", "ContentRemoved", "All content successfully removed"),
    ("NamespaceFinalizersRemaining", "ContentHasNoFinalizers", "All content-preserving finalizers finished"),
];

/// What one pass over a namespace's content found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Errors deleting or listing, one per kind.
    pub failures: Vec<String>,
    /// Objects left, by `{resource}.{group}`.
    pub remaining: BTreeMap<String, usize>,
    /// Objects left, by finalizer.
    pub finalizers: BTreeMap<String, usize>,
    /// Seconds until the last pod left is past its grace period.
    pub estimate: i64,
}

impl Pass {
    /// Whether anything is left (or could not be looked at).
    pub fn done(&self) -> bool {
        self.failures.is_empty() && self.remaining.is_empty()
    }

    /// The conditions that are not as they should be: (type, reason, message).
    pub fn problems(&self) -> Vec<(&'static str, &'static str, String)> {
        let mut out = Vec::new();
        if !self.failures.is_empty() {
            let errors = match self.failures.as_slice() {
                [one] => one.clone(),
                many => format!("[{}]", many.join(", ")),
            };
            let message = format!("Failed to delete all resource types, {} remaining: {errors}", self.failures.len());
            out.push((CONDITIONS[2].0, "ContentDeletionFailed", message));
        }
        if !self.remaining.is_empty() {
            let left: Vec<String> =
                self.remaining.iter().map(|(r, n)| format!("{r} has {n} resource instances")).collect();
            let message = format!("Some resources are remaining: {}", left.join(", "));
            out.push((CONDITIONS[3].0, "SomeResourcesRemain", message));
        }
        if !self.finalizers.is_empty() {
            let left: Vec<String> =
                self.finalizers.iter().map(|(f, n)| format!("{f} in {n} resource instances")).collect();
            let message = format!("Some content in the namespace has finalizers remaining: {}", left.join(", "));
            out.push((CONDITIONS[4].0, "SomeFinalizersRemain", message));
        }
        out
    }
}

/// `status.conditions` of `namespace` after `pass` (kube's `namespaceConditionUpdater`):
/// each of the five types as the pass found it, its transition time kept unless its status,
/// reason or message changed. `None` if nothing changed.
pub fn updated_conditions(namespace: &Value, pass: &Pass, now: &str) -> Option<Vec<Value>> {
    let mut conditions: Vec<Value> =
        namespace.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    let problems = pass.problems();
    let mut changed = false;
    for (kind, ok_reason, ok_message) in CONDITIONS {
        let (status, reason, message) = match problems.iter().find(|(t, _, _)| *t == kind) {
            Some((_, reason, message)) => ("True", *reason, message.clone()),
            None => ("False", ok_reason, ok_message.to_string()),
        };
        let wanted = json!({"type": kind, "status": status, "lastTransitionTime": now, "reason": reason,
            "message": message});
        let same = |c: &Value| ["status", "reason", "message"].iter().all(|f| c.get(*f) == wanted.get(*f));
        match conditions.iter_mut().find(|c| c.get("type").and_then(Value::as_str) == Some(kind)) {
            Some(old) if same(old) => {}
            Some(old) => {
                *old = wanted;
                changed = true;
            }
            None => {
                conditions.push(wanted);
                changed = true;
            }
        }
    }
    changed.then_some(conditions)
}

/// Every namespaced kind served now: the built-in ones, then each custom kind's storage
/// version.
fn namespaced_kinds() -> Vec<&'static ResourceKind> {
    let custom = custom_kinds::all().into_iter().map(|c| c.storage_kind());
    BUILTIN.iter().chain(custom).filter(|k| k.namespaced).collect()
}

fn spec_finalizers(namespace: &Value) -> Vec<&str> {
    let list = namespace.pointer("/spec/finalizers").and_then(Value::as_array);
    list.into_iter().flatten().filter_map(Value::as_str).collect()
}

/// Seconds until `pod`'s deletion is due (0 if past or not marked).
fn grace_left(pod: &Value, now: OffsetDateTime) -> i64 {
    let at = pod.pointer("/metadata/deletionTimestamp").and_then(Value::as_str);
    let at = at.and_then(|at| OffsetDateTime::parse(at, &Rfc3339).ok());
    at.map_or(0, |at| (at - now).whole_seconds().max(0))
}

/// Deletes every object of `kind` in `namespace` and counts what is left into `pass`.
async fn delete_kind(ctx: &Ctx, kind: &'static ResourceKind, namespace: &str, pass: &mut Pass) {
    let Some(actor) = ctx.actors.get(kind) else { return };
    let resource = format!("{}.{}", kind.resource, kind.group);
    let options = DeleteOptions { propagation_policy: Some("Background".into()), ..DeleteOptions::default() };
    let delete = DeleteCollection { namespace: Some(namespace.into()), options, ..DeleteCollection::default() };
    let unreachable = |e: actix::MailboxError| ApiError::ServiceUnavailable(format!("{}: {e}", kind.resource));
    let deleted = actor.send(delete).await.map_err(unreachable).and_then(|r| r);
    if let Err(e) = deleted {
        pass.failures.push(format!("failed to delete {resource}: {e}"));
        return;
    }
    let list = List { namespace: Some(namespace.into()), ..List::default() };
    let left = match actor.send(list).await.map_err(unreachable).and_then(|page| page?.items()) {
        Ok(left) => left,
        Err(e) => {
            pass.failures.push(format!("failed to list {resource}: {e}"));
            return;
        }
    };
    if left.is_empty() {
        return;
    }
    pass.remaining.insert(resource, left.len());
    let now = OffsetDateTime::now_utc();
    for obj in &left {
        for finalizer in finalizers_of(obj) {
            *pass.finalizers.entry(finalizer).or_default() += 1;
        }
        if kind.group.is_empty() && kind.resource == "pods" {
            pass.estimate = pass.estimate.max(grace_left(obj, now));
        }
    }
}

async fn finalize(ctx: &Ctx, name: &str) -> ApiResult<Action> {
    let kind = namespaces();
    let mut latest = match ctx.get(kind, None, name).await {
        Ok(latest) => latest,
        Err(ApiError::NotFound(_)) => return Ok(Action::Done),
        Err(e) => return Err(e),
    };
    let Some(list) = latest.pointer_mut("/spec/finalizers").and_then(Value::as_array_mut) else {
        return Ok(Action::Done);
    };
    let before = list.len();
    list.retain(|f| f.as_str() != Some(NAMESPACE_FINALIZER));
    if list.len() == before {
        return Ok(Action::Done);
    }
    tracing::debug!(namespace = name, "content gone; removing the kubernetes finalizer");
    match ctx.update(kind, Part::Main, latest).await {
        Ok(_) | Err(ApiError::NotFound(_)) => Ok(Action::Done),
        Err(e) => Err(e),
    }
}

async fn reconcile(ctx: Ctx, key: ObjectKey) -> ApiResult<Action> {
    let Some(namespace) = ctx.lister(namespaces()).and_then(|l| l.get(&key)) else {
        return Ok(Action::Done);
    };
    if !being_deleted(&namespace) || !spec_finalizers(&namespace).contains(&NAMESPACE_FINALIZER) {
        return Ok(Action::Done);
    }
    let name = key.name.as_str();
    let mut pass = Pass::default();
    for kind in namespaced_kinds() {
        delete_kind(&ctx, kind, name, &mut pass).await;
    }
    let now = crate::objects::timestamp(OffsetDateTime::now_utc());
    if let Some(conditions) = updated_conditions(&namespace, &pass, &now) {
        let mut written = (*namespace).clone();
        let status = written.as_object_mut().map(|o| o.entry("status").or_insert_with(|| json!({})));
        if let Some(status) = status.and_then(Value::as_object_mut) {
            status.insert("conditions".into(), Value::Array(conditions));
        }
        match ctx.update(namespaces(), Part::Status, written).await {
            Ok(_) | Err(ApiError::NotFound(_)) => {}
            // A newer copy is on its way: the next pass writes them.
            Err(ApiError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
    if !pass.done() {
        let after = u64::try_from(pass.estimate / 2 + 1).unwrap_or(1);
        return Ok(Action::RequeueAfter(Duration::from_secs(after)));
    }
    finalize(&ctx, name).await
}

impl Reconciler for Namespaces {
    fn name(&self) -> &'static str {
        "namespace"
    }

    fn watches(&self) -> Vec<Watched> {
        vec![Watched::objects(namespaces())]
    }

    fn reconcile(self: Rc<Self>, ctx: Ctx, key: ObjectKey) -> LocalBoxFuture<'static, Result<Action, ApiError>> {
        Box::pin(reconcile(ctx, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_say_what_is_left_in_kubes_words_and_change_only_when_it_changes() {
        let ns = json!({"metadata": {"name": "t"}, "status": {"phase": "Terminating"}});
        let mut pass = Pass::default();
        pass.remaining.insert("configmaps.".into(), 1);
        pass.remaining.insert("deployments.apps".into(), 2);
        pass.finalizers.insert("example.com/hold".into(), 1);
        let conditions = updated_conditions(&ns, &pass, "2024-01-01T00:00:00Z").unwrap();
        let types: Vec<&str> = conditions.iter().map(|c| c["type"].as_str().unwrap()).collect();
        assert_eq!(types, CONDITIONS.map(|(t, _, _)| t));
        assert_eq!(conditions[2]["status"], "False");
        assert_eq!(conditions[3]["status"], "True");
        assert_eq!(
            conditions[3]["message"],
            "Some resources are remaining: configmaps. has 1 resource instances, deployments.apps has 2 resource instances"
        );
        assert_eq!(
            conditions[4]["message"],
            "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
        );
        let written = json!({"status": {"conditions": conditions}});
        assert_eq!(updated_conditions(&written, &pass, "2024-01-01T00:00:09Z"), None);
        let cleared = updated_conditions(&written, &Pass::default(), "2024-01-01T00:00:09Z").unwrap();
        assert_eq!(cleared[3]["reason"], "ContentRemoved");
        assert_eq!(cleared[3]["lastTransitionTime"], "2024-01-01T00:00:09Z");
        assert_eq!(cleared[0]["lastTransitionTime"], "2024-01-01T00:00:00Z", "unchanged ones keep their time");
    }

    #[test]
    fn deletion_failures_are_one_condition() {
        let pass = Pass { failures: vec!["a".into(), "b".into()], ..Pass::default() };
        assert!(!pass.done());
        let problems = pass.problems();
        assert_eq!(problems[0].2, "Failed to delete all resource types, 2 remaining: [a, b]");
    }
}

//! The resourcequota controller (kube-controller-manager's `resourcequota-controller`):
//! each ResourceQuota's `status.hard` is its `spec.hard`, and its `status.used` what the
//! objects of its namespace use, measured as the quota admission plugin measures a write
//! ([`crate::admission::resource_quota::usage`]). Admission charges creates as they come;
//! this controller corrects the figures where objects go (or stop counting) and makes the
//! first ones of a new quota.
//!
//! As kube's, it recomputes a quota when it appears or its `spec.hard` changes, when an
//! object in its namespace is deleted or its usage changes (a pod ending, a claim growing,
//! a Service becoming a LoadBalancer), and every 5 minutes. It does not react to creates
//! or to its own status writes: a recount racing with a create that admission charged but
//! that is not stored yet would under-count it.
//!
//! Pods, Services and claims are measured from the informers' copies; any other object
//! count (`configmaps`, `count/deployments.apps`, ...) is a count of the store's keys.

use std::rc::Rc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use raft_store::RangeRequest;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::admission::quantity::{self, list_of, Quantity, ResourceList};
use crate::admission::resource_quota::usage::{self, Evaluator, Scope};
use crate::api_error::{ApiError, ApiResult};
use crate::controller::{Action, Ctx, ObjectKey, Reconciler, Watched};
use crate::kinds::{self, ResourceKind, BUILTIN};
use crate::object_store::Part;

/// How often each quota is recomputed whatever happens (kube's `--resource-quota-sync-period`).
pub const RESYNC: Duration = Duration::from_secs(5 * 60);

fn kind(resource: &str) -> &'static ResourceKind {
    kinds::find("", "v1", resource).unwrap_or(&BUILTIN[0])
}

fn quotas() -> &'static ResourceKind {
    kind("resourcequotas")
}

/// The kinds measured from informers, with their evaluators.
fn measured() -> [(&'static ResourceKind, Evaluator); 3] {
    [
        (kind("pods"), Evaluator::Pods),
        (kind("services"), Evaluator::Services),
        (kind("persistentvolumeclaims"), Evaluator::Claims),
    ]
}

/// The kinds whose deletes are watched to recount object counts (others wait for the resync).
const COUNTED: [&str; 3] = ["configmaps", "secrets", "replicationcontrollers"];

/// Whether two objects differ in nothing but their resourceVersion: an informer's `DELETED`
/// event carries the last state at the deletion's revision.
fn same_but_version(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else { return a == b };
    let meta_equal = |x: Option<&Value>, y: Option<&Value>| {
        let strip = |m: Option<&Value>| {
            let mut m = m.and_then(Value::as_object).cloned().unwrap_or_default();
            m.remove("resourceVersion");
            m
        };
        strip(x) == strip(y)
    };
    a.len() == b.len()
        && a.iter().all(|(k, v)| if k == "metadata" { meta_equal(Some(v), b.get(k)) } else { b.get(k) == Some(v) })
}

/// The namespace key (empty name: every quota of the namespace) of an object that went or
/// whose usage changed; nothing for creates.
fn released(evaluator: Option<Evaluator>) -> impl Fn(&Value, Option<&Value>) -> Vec<ObjectKey> {
    move |obj: &Value, old: Option<&Value>| {
        let Some(old) = old else { return Vec::new() };
        let changed = match &evaluator {
            Some(e) => {
                let now = OffsetDateTime::now_utc();
                e.usage(obj, now) != e.usage(old, now)
            }
            None => false,
        };
        let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str);
        match ns {
            Some(ns) if changed || same_but_version(obj, old) => vec![ObjectKey::new(Some(ns), "")],
            _ => Vec::new(),
        }
    }
}

/// The controller; keys are quotas, or a namespace (empty name) for all of its quotas.
#[derive(Default)]
pub struct ResourceQuotaController;

impl Reconciler for ResourceQuotaController {
    fn name(&self) -> &'static str {
        "resourcequota"
    }

    fn watches(&self) -> Vec<Watched> {
        // A quota is recomputed when it appears or its limits change, not on status writes.
        let spec_changed = |quota: &Value, old: Option<&Value>| {
            let hard = |q: &Value| q.pointer("/spec/hard").cloned();
            match old {
                Some(old) if hard(old) == hard(quota) => Vec::new(),
                _ => ObjectKey::of(quota).into_iter().collect(),
            }
        };
        let mut watched = vec![Watched::with(quotas(), spec_changed)];
        for (kind, evaluator) in measured() {
            watched.push(Watched::with(kind, released(Some(evaluator))));
        }
        for resource in COUNTED {
            watched.push(Watched::with(kind(resource), released(None)));
        }
        watched
    }

    fn reconcile(self: Rc<Self>, ctx: Ctx, key: ObjectKey) -> LocalBoxFuture<'static, Result<Action, ApiError>> {
        Box::pin(async move {
            let Some(lister) = ctx.lister(quotas()).cloned() else { return Ok(Action::Done) };
            if key.name.is_empty() {
                for quota in lister.list(key.namespace.as_deref()) {
                    sync(&ctx, &quota).await?;
                }
                return Ok(Action::Done);
            }
            let Some(quota) = lister.get(&key) else { return Ok(Action::Done) };
            sync(&ctx, &quota).await?;
            Ok(Action::RequeueAfter(RESYNC))
        })
    }

    fn workers(&self) -> usize {
        // A recount reads whole namespaces; a few at a time is plenty.
        2
    }
}

/// Writes the quota's status as its namespace's objects say, if that changes it.
async fn sync(ctx: &Ctx, quota: &Value) -> ApiResult<()> {
    let Some(ns) = quota.pointer("/metadata/namespace").and_then(Value::as_str) else { return Ok(()) };
    let hard = list_of(quota.pointer("/spec/hard"));
    let names: Vec<String> = hard.keys().cloned().collect();
    // Figures no evaluator computes are kept as they were (kube starts from the old `used`).
    let mut used = list_of(quota.pointer("/status/used"));
    used.extend(measure(ctx, ns, &names, &usage::scopes_of(quota)).await?);
    let used = quantity::mask(&used, &names);
    let status = json!({"hard": quantity::list_to_json(&hard), "used": quantity::list_to_json(&used)});
    let current = quota.get("status").cloned().unwrap_or(Value::Null);
    let same = list_of(current.get("hard")) == hard
        && list_of(current.get("used")) == used
        && current.get("hard").is_some()
        && current.get("used").is_some();
    if same {
        return Ok(());
    }
    let mut updated = quota.clone();
    if let Some(map) = updated.as_object_mut() {
        map.insert("status".into(), status);
    }
    ctx.update(quotas(), Part::Status, updated).await.map(|_| ())
}

/// The usage of namespace `ns` of the quota resources `names`, for a quota with `scopes`.
pub async fn measure(ctx: &Ctx, ns: &str, names: &[String], scopes: &[Scope]) -> ApiResult<ResourceList> {
    let now = OffsetDateTime::now_utc();
    let mut out = ResourceList::new();
    let mut covered: Vec<String> = Vec::new();
    for (kind, evaluator) in measured() {
        let matching = evaluator.matching(names);
        if matching.is_empty() {
            continue;
        }
        let mut total: ResourceList = matching.iter().map(|n| (n.clone(), Quantity::default())).collect();
        let objects = ctx.lister(kind).map(|l| l.list(Some(ns))).unwrap_or_default();
        for obj in objects.iter().filter(|o| evaluator.in_scopes(scopes, o)) {
            quantity::add_into(&mut total, &evaluator.usage(obj, now));
        }
        out.extend(quantity::mask(&total, &matching));
        covered.extend(matching);
    }
    for name in names.iter().filter(|n| !covered.contains(n)) {
        let Some((group, resource)) = usage::counted_kind(name) else { continue };
        let Some(kind) = find_kind(&group, &resource) else { continue };
        if !kind.namespaced {
            continue;
        }
        // Scoped quotas count pods only.
        let count = if scopes.is_empty() { count_objects(ctx, kind, ns).await? } else { 0 };
        out.insert(name.clone(), Quantity::units(count));
    }
    Ok(out)
}

/// The kind of `(group, resource)`, built-in or custom, any version.
fn find_kind(group: &str, resource: &str) -> Option<&'static ResourceKind> {
    BUILTIN.iter().find(|k| k.group == group && k.resource == resource).or_else(|| {
        let custom = crate::custom_kinds::get(group, resource)?;
        Some(custom.storage_kind())
    })
}

/// How many objects of `kind` namespace `ns` holds in the store.
async fn count_objects(ctx: &Ctx, kind: &ResourceKind, ns: &str) -> ApiResult<i64> {
    let mut req = RangeRequest::prefix(crate::objects::list_prefix(kind, Some(ns)));
    req.count_only = true;
    let found = ctx.node.range(req, true).await?;
    Ok(i64::try_from(found.count).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletes_and_usage_changes_queue_the_namespace_but_creates_do_not() {
        let keys = released(Some(Evaluator::Pods));
        let pod =
            json!({"metadata": {"namespace": "a", "name": "p", "resourceVersion": "5"}, "spec": {"containers": []}});
        assert!(keys(&pod, None).is_empty(), "a create");
        let mut gone = pod.clone();
        gone["metadata"]["resourceVersion"] = json!("9");
        assert_eq!(keys(&gone, Some(&pod)), [ObjectKey::new(Some("a"), "")]);
        let mut bound = gone.clone();
        bound["spec"]["nodeName"] = json!("n1");
        assert!(keys(&bound, Some(&pod)).is_empty(), "an update that changes no usage");
        let mut ended = bound.clone();
        ended["status"] = json!({"phase": "Failed"});
        assert_eq!(keys(&ended, Some(&bound)), [ObjectKey::new(Some("a"), "")]);
    }
}

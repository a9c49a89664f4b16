//! The ResourceQuota admission plugin, as kube-apiserver's (last of its chain): a create (or
//! an update that changes usage) in a namespace with ResourceQuotas is measured
//! ([`usage`]), checked against each quota that covers it (`status.used` + the request
//! <= `status.hard`), and charged to those quotas' `status.used` before the object is
//! written, so two racing creates cannot both take the last unit.
//!
//! - Over a limit: 403 `exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2`.
//! - A quota on cpu or memory and a container that does not state it: 403
//!   `failed quota: q: must specify limits.cpu for: app`.
//! - A quota whose usage the controller has not computed yet for a resource the write uses:
//!   403 `status unknown for quota: q, resources: pods`.
//!
//! Each charge is an optimistic-concurrency update of the quota (read, check, write if
//! unchanged; a lost race checks again). A write that fails after its charge leaves the
//! quota over-charged until the resourcequota controller recomputes it, as in kube. Dry
//! runs are checked but not charged.

pub mod usage;

use raft_store::{RangeRequest, StoreNode};
use serde_json::Value;
use time::OffsetDateTime;

use self::usage::Evaluator;
use super::quantity::{self, list_of, ResourceList};
use super::{Admission, Attributes, Operation, Step};
use crate::api_error::{ApiError, ApiResult, Subject};
use crate::kinds::ResourceKind;

/// What one quota is charged for a write.
#[derive(Debug, Clone, PartialEq)]
pub struct Charge {
    pub quota: String,
    pub delta: ResourceList,
}

fn quota_name(quota: &Value) -> &str {
    quota.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default()
}

fn hard_names(quota: &Value) -> Vec<String> {
    list_of(quota.pointer("/status/hard")).into_keys().collect()
}

/// `quota` with `delta` added to its `status.used`, or kube's `exceeded quota` message if
/// that passes `status.hard` for a resource the delta uses.
pub fn charged(quota: &Value, delta: &ResourceList) -> Result<Value, String> {
    let hard = list_of(quota.pointer("/status/hard"));
    let used = list_of(quota.pointer("/status/used"));
    let requested = quantity::mask(delta, &hard.keys().cloned().collect::<Vec<_>>());
    let new_used = quantity::add(&used, &requested);
    let exceeded: Vec<String> = requested
        .keys()
        .filter(|name| matches!((new_used.get(*name), hard.get(*name)), (Some(u), Some(h)) if u > h))
        .cloned()
        .collect();
    if !exceeded.is_empty() {
        return Err(format!(
            "exceeded quota: {}, requested: {}, used: {}, limited: {}",
            quota_name(quota),
            quantity::pretty(&quantity::mask(&requested, &exceeded)),
            quantity::pretty(&quantity::mask(&used, &exceeded)),
            quantity::pretty(&quantity::mask(&hard, &exceeded)),
        ));
    }
    let mut out = quota.clone();
    if let Some(status) = out.get_mut("status").and_then(Value::as_object_mut) {
        status.insert("used".into(), quantity::list_to_json(&new_used));
    }
    Ok(out)
}

/// kube's `CheckRequest`: what a write of `obj` (replacing `old` on update) charges to each
/// of `quotas`, or why it is refused.
pub fn check(
    evaluator: &Evaluator,
    quotas: &[Value],
    (operation, obj, old): (Operation, &Value, Option<&Value>),
    now: OffsetDateTime,
) -> Result<Vec<Charge>, String> {
    let mut covering: Vec<&Value> = Vec::new();
    for quota in quotas {
        let hard = hard_names(quota);
        let scopes = usage::scopes_of(quota);
        if !evaluator.covers(&hard, &scopes, obj) {
            continue;
        }
        let restricted = evaluator.matching(&hard);
        evaluator.constraints(&restricted, obj).map_err(|e| format!("failed quota: {}: {e}", quota_name(quota)))?;
        let used = list_of(quota.pointer("/status/used"));
        let unknown: Vec<&String> = restricted.iter().filter(|r| !used.contains_key(*r)).collect();
        if !unknown.is_empty() {
            let names: Vec<&str> = unknown.iter().map(|s| s.as_str()).collect();
            return Err(format!("status unknown for quota: {}, resources: {}", quota_name(quota), names.join(",")));
        }
        covering.push(quota);
    }
    if covering.is_empty() {
        return Ok(Vec::new());
    }
    let input = evaluator.usage(obj, now);
    let negative: Vec<&str> = input.iter().filter(|(_, q)| q.milli() < 0).map(|(k, _)| k.as_str()).collect();
    if !negative.is_empty() {
        return Err(format!("quota usage is negative for resource(s): {}", negative.join(",")));
    }
    // On update, only what grows is charged (kube's `SubtractWithNonNegativeResult`), to
    // the quotas that covered the old object too.
    let grown = old.filter(|_| operation == Operation::Update).map(|old| {
        let before = evaluator.usage(old, now);
        let grown: ResourceList = input
            .iter()
            .filter_map(|(name, q)| {
                let mut delta = *q;
                if let Some(b) = before.get(name) {
                    delta.sub(*b);
                }
                (delta.milli() > 0).then(|| (name.clone(), delta))
            })
            .collect();
        (grown, old)
    });
    let mut charges = Vec::new();
    for quota in covering {
        let mut delta = input.clone();
        if let Some((grown, old)) = &grown {
            if evaluator.covers(&hard_names(quota), &usage::scopes_of(quota), old) {
                delta = grown.clone();
            }
        }
        delta.retain(|_, q| !q.is_zero());
        if delta.is_empty() {
            continue;
        }
        charged(quota, &delta)?;
        charges.push(Charge { quota: quota_name(quota).to_string(), delta });
    }
    Ok(charges)
}

fn quotas_kind() -> Option<&'static ResourceKind> {
    crate::kinds::find("", "v1", "resourcequotas")
}

/// The ResourceQuota admission plugin; it reads and charges quotas in the store.
pub struct ResourceQuota {
    pub node: StoreNode,
}

impl ResourceQuota {
    /// The namespace's quotas, from this member's applied state (kube reads a cache; the
    /// charge re-reads each quota linearizably).
    async fn quotas(&self, kind: &ResourceKind, ns: &str) -> ApiResult<Vec<Value>> {
        let found = self.node.range(RangeRequest::prefix(crate::objects::list_prefix(kind, Some(ns))), false).await?;
        Ok(found.kvs.iter().filter_map(|kv| serde_json::from_slice(&kv.value).ok()).collect())
    }

    /// Adds `charge` to its quota's `status.used`, checking again against the quota as it
    /// is now; a quota gone meanwhile charges nothing.
    async fn charge(
        &self,
        kind: &ResourceKind,
        ns: &str,
        charge: &Charge,
        refuse: impl Fn(String) -> ApiError,
    ) -> ApiResult<()> {
        let change = |current: &Value| charged(current, &charge.delta).map_err(&refuse);
        match crate::object_store::update_with(&self.node, kind, Some(ns), &charge.quota, None, change).await {
            Ok(_) | Err(ApiError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Admission for ResourceQuota {
    fn mutate<'a>(&'a self, _: &'a Attributes, _: &'a mut Value, _: Option<&'a Value>) -> Step<'a> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn validate<'a>(&'a self, attrs: &'a Attributes, obj: &'a Value, old: Option<&'a Value>) -> Step<'a> {
        Box::pin(async move {
            // Subresources, cluster-scoped kinds and deletes never charge quota.
            let ns = attrs.namespace.as_deref().filter(|ns| !ns.is_empty());
            let (Some(ns), None, true) = (ns, attrs.subresource, attrs.kind.namespaced) else {
                return Ok(Vec::new());
            };
            if !matches!(attrs.operation, Operation::Create | Operation::Update) {
                return Ok(Vec::new());
            }
            let Some(evaluator) = Evaluator::for_kind(attrs.kind.group, attrs.kind.resource) else {
                return Ok(Vec::new());
            };
            let Some(kind) = quotas_kind() else { return Ok(Vec::new()) };
            if !evaluator.handles(attrs.operation, obj, old) {
                return Ok(Vec::new());
            }
            let quotas = self.quotas(kind, ns).await?;
            if quotas.is_empty() {
                return Ok(Vec::new());
            }
            let refuse = |why: String| ApiError::Forbidden {
                subject: Subject::of(attrs.kind, attrs.name.clone()),
                why,
                causes: Vec::new(),
            };
            let now = OffsetDateTime::now_utc();
            let charges = check(&evaluator, &quotas, (attrs.operation, obj, old), now).map_err(refuse)?;
            if attrs.dry_run {
                return Ok(Vec::new());
            }
            for charge in &charges {
                self.charge(kind, ns, charge, refuse).await?;
            }
            Ok(Vec::new())
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn quota(name: &str, hard: Value, used: Value) -> Value {
        json!({"metadata": {"name": name}, "spec": {"hard": hard}, "status": {"hard": hard, "used": used}})
    }

    fn pod(cpu: &str) -> Value {
        json!({"spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": cpu}, "limits": {"cpu": cpu}}}]}})
    }

    #[test]
    fn creates_are_charged_until_a_limit_is_exceeded() {
        let now = OffsetDateTime::now_utc();
        let q = quota("q", json!({"pods": "2", "requests.cpu": "1"}), json!({"pods": "1", "requests.cpu": "500m"}));
        let charges =
            check(&Evaluator::Pods, std::slice::from_ref(&q), (Operation::Create, &pod("250m"), None), now).unwrap();
        assert_eq!(charges.len(), 1);
        assert_eq!(
            quantity::pretty(&charges[0].delta),
            "count/pods=1,cpu=250m,limits.cpu=250m,pods=1,requests.cpu=250m"
        );
        let after = charged(&q, &charges[0].delta).unwrap();
        assert_eq!(after["status"]["used"], json!({"pods": "2", "requests.cpu": "750m"}));
        assert_eq!(
            check(&Evaluator::Pods, &[after], (Operation::Create, &pod("250m"), None), now).unwrap_err(),
            "exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
        );
        assert_eq!(
            check(&Evaluator::Pods, &[q], (Operation::Create, &pod("1"), None), now).unwrap_err(),
            "exceeded quota: q, requested: requests.cpu=1, used: requests.cpu=500m, limited: requests.cpu=1"
        );
    }

    #[test]
    fn quotas_refuse_pods_without_compute_resources_and_wait_for_their_status() {
        let now = OffsetDateTime::now_utc();
        let q = quota("compute", json!({"limits.memory": "1Gi"}), json!({"limits.memory": "0"}));
        let plain = json!({"spec": {"containers": [{"name": "app"}]}});
        assert_eq!(
            check(&Evaluator::Pods, &[q], (Operation::Create, &plain, None), now).unwrap_err(),
            "failed quota: compute: must specify limits.memory for: app"
        );
        let fresh = quota("fresh", json!({"pods": "1"}), json!({}));
        assert_eq!(
            check(&Evaluator::Pods, &[fresh], (Operation::Create, &plain, None), now).unwrap_err(),
            "status unknown for quota: fresh, resources: pods"
        );
        // Before the controller fills `status.hard`, a quota covers nothing.
        let new = json!({"metadata": {"name": "new"}, "spec": {"hard": {"pods": "1"}}});
        assert_eq!(check(&Evaluator::Pods, &[new], (Operation::Create, &plain, None), now).unwrap(), []);
    }

    #[test]
    fn updates_charge_only_what_grows() {
        let now = OffsetDateTime::now_utc();
        let q = quota("storage", json!({"requests.storage": "10Gi"}), json!({"requests.storage": "5Gi"}));
        let claim = |size: &str| json!({"spec": {"resources": {"requests": {"storage": size}}}});
        let (old, new) = (claim("5Gi"), claim("8Gi"));
        let charges =
            check(&Evaluator::Claims, std::slice::from_ref(&q), (Operation::Update, &new, Some(&old)), now).unwrap();
        assert_eq!(quantity::pretty(&charges[0].delta), "requests.storage=3Gi");
        let shrunk = check(&Evaluator::Claims, &[q], (Operation::Update, &old, Some(&new)), now).unwrap();
        assert!(shrunk.is_empty());
    }
}

//! What an object uses of the resources a ResourceQuota tracks, as kube's quota evaluators
//! (`pkg/quota/v1/evaluator/core`) measure it: pods (`pods`, `count/pods`, `requests.cpu`,
//! `limits.memory`, `cpu` and `memory` as aliases of the requests, ephemeral storage,
//! hugepages, extended resources), services (`services`, `services.nodeports`,
//! `services.loadbalancers`), claims (`persistentvolumeclaims`, `requests.storage`, per
//! storage class), and for every other kind its object count `count/<resource>.<group>`
//! (plus the legacy names `configmaps`, `secrets`, `replicationcontrollers`,
//! `resourcequotas`). Also the quota scopes (`Terminating`, `BestEffort`, `PriorityClass`,
//! ...) and the rule that a quota on cpu or memory needs every container to say its own.
//!
//! Shared by the admission plugin (the usage a write adds) and the resourcequota controller
//! (the usage a namespace has).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use time::OffsetDateTime;

use crate::admission::limit_ranger::pod_total;
use crate::admission::quantity::{self, list_of, Quantity, ResourceList};
use crate::admission::Operation;

/// Resources the pod evaluator tracks by name.
const POD_RESOURCES: &[&str] = &[
    "count/pods",
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
];
/// The compute resources a quota makes every container state (kube's `validationSet`).
const MUST_SPECIFY: &[&str] = &["cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"];
const SERVICE_RESOURCES: &[&str] = &["count/services", "services", "services.loadbalancers", "services.nodeports"];
const CLAIM_RESOURCES: &[&str] = &["count/persistentvolumeclaims", "persistentvolumeclaims", "requests.storage"];
/// `<class>.storageclass.storage.k8s.io/requests.storage`: usage charged to a storage class.
const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";
/// Kinds quota never counts: virtual ones, and events.
const IGNORED: &[(&str, &str)] = &[
    ("", "bindings"),
    ("", "componentstatuses"),
    ("", "events"),
    ("events.k8s.io", "events"),
    ("authentication.k8s.io", "tokenreviews"),
    ("authentication.k8s.io", "selfsubjectreviews"),
    ("authorization.k8s.io", "subjectaccessreviews"),
    ("authorization.k8s.io", "selfsubjectaccessreviews"),
    ("authorization.k8s.io", "localsubjectaccessreviews"),
    ("authorization.k8s.io", "selfsubjectrulesreviews"),
];

/// `count/<resource>` in the core group, `count/<resource>.<group>` elsewhere.
pub fn count_name(group: &str, resource: &str) -> String {
    if group.is_empty() {
        format!("count/{resource}")
    } else {
        format!("count/{resource}.{group}")
    }
}

/// The legacy quota name of a core kind's object count.
fn legacy_alias(group: &str, resource: &str) -> Option<&'static str> {
    match (group, resource) {
        ("", "configmaps") => Some("configmaps"),
        ("", "secrets") => Some("secrets"),
        ("", "replicationcontrollers") => Some("replicationcontrollers"),
        ("", "resourcequotas") => Some("resourcequotas"),
        _ => None,
    }
}

/// The `(group, resource)` whose objects a quota resource name counts: `count/x.y`, or a
/// legacy alias.
pub fn counted_kind(name: &str) -> Option<(String, String)> {
    if let Some(rest) = name.strip_prefix("count/") {
        return Some(match rest.split_once('.') {
            Some((resource, group)) => (group.to_string(), resource.to_string()),
            None => (String::new(), rest.to_string()),
        });
    }
    match name {
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => {
            Some((String::new(), name.to_string()))
        }
        _ => None,
    }
}

/// One scope a quota is limited to: `spec.scopes` (as `Exists`) and
/// `spec.scopeSelector.matchExpressions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub name: String,
    pub operator: String,
    pub values: Vec<String>,
}

/// The scopes of a quota.
pub fn scopes_of(quota: &Value) -> Vec<Scope> {
    let plain = quota.pointer("/spec/scopes").and_then(Value::as_array).into_iter().flatten();
    let mut scopes: Vec<Scope> = plain
        .filter_map(Value::as_str)
        .map(|s| Scope { name: s.to_string(), operator: "Exists".into(), values: Vec::new() })
        .collect();
    let expressions = quota.pointer("/spec/scopeSelector/matchExpressions").and_then(Value::as_array);
    for e in expressions.into_iter().flatten() {
        let text = |f: &str| e.get(f).and_then(Value::as_str).unwrap_or_default().to_string();
        let values = e.get("values").and_then(Value::as_array).into_iter().flatten();
        let values = values.filter_map(Value::as_str).map(String::from).collect();
        scopes.push(Scope { name: text("scopeName"), operator: text("operator"), values });
    }
    scopes
}

/// How usage of one kind is measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evaluator {
    Pods,
    Services,
    Claims,
    /// Any other kind: its object count, and a legacy name for some core kinds.
    Count {
        count: String,
        alias: Option<&'static str>,
    },
}

impl Evaluator {
    /// The evaluator of a kind; `None` for kinds quota ignores.
    pub fn for_kind(group: &str, resource: &str) -> Option<Evaluator> {
        if IGNORED.contains(&(group, resource)) {
            return None;
        }
        Some(match (group, resource) {
            ("", "pods") => Evaluator::Pods,
            ("", "services") => Evaluator::Services,
            ("", "persistentvolumeclaims") => Evaluator::Claims,
            _ => Evaluator::Count { count: count_name(group, resource), alias: legacy_alias(group, resource) },
        })
    }

    /// Of the quota resources `names`, those this evaluator measures.
    pub fn matching(&self, names: &[String]) -> Vec<String> {
        let tracked = |n: &String| match self {
            Evaluator::Pods => {
                POD_RESOURCES.contains(&n.as_str())
                    || n.starts_with("hugepages-")
                    || n.starts_with("requests.hugepages-")
                    || n.strip_prefix("requests.").is_some_and(is_extended)
            }
            Evaluator::Services => SERVICE_RESOURCES.contains(&n.as_str()),
            Evaluator::Claims => {
                CLAIM_RESOURCES.contains(&n.as_str())
                    || n.split_once(STORAGE_CLASS_SUFFIX)
                        .is_some_and(|(_, r)| r == "requests.storage" || r == "persistentvolumeclaims")
            }
            Evaluator::Count { count, alias } => n == count || alias.is_some_and(|a| a == n),
        };
        names.iter().filter(|n| tracked(n)).cloned().collect()
    }

    /// Whether a write of this kind can change usage: creates, and the updates kube charges
    /// (a pod entering or leaving the `Terminating` scope, any service or claim update).
    pub fn handles(&self, operation: Operation, obj: &Value, old: Option<&Value>) -> bool {
        match (self, operation) {
            (_, Operation::Create) => true,
            (Evaluator::Pods, Operation::Update) => old.is_some_and(|old| terminating(old) != terminating(obj)),
            (Evaluator::Services | Evaluator::Claims, Operation::Update) => true,
            _ => false,
        }
    }

    /// Whether `obj` is in every one of `scopes` (only pods are in any scope).
    pub fn in_scopes(&self, scopes: &[Scope], obj: &Value) -> bool {
        scopes.iter().all(|s| *self == Evaluator::Pods && pod_in_scope(s, obj))
    }

    /// Whether a quota with these `hard` resource names and `scopes` covers `obj`.
    pub fn covers(&self, hard: &[String], scopes: &[Scope], obj: &Value) -> bool {
        !self.matching(hard).is_empty() && self.in_scopes(scopes, obj)
    }

    /// What `obj` uses.
    pub fn usage(&self, obj: &Value, now: OffsetDateTime) -> ResourceList {
        match self {
            Evaluator::Pods => pod_usage(obj, now),
            Evaluator::Services => service_usage(obj),
            Evaluator::Claims => claim_usage(obj),
            Evaluator::Count { count, alias } => {
                let mut out = ResourceList::from([(count.clone(), Quantity::units(1))]);
                if let Some(alias) = alias {
                    out.insert(alias.to_string(), Quantity::units(1));
                }
                out
            }
        }
    }

    /// kube's pod `Constraints`: a quota on cpu or memory (`required`) needs every container
    /// to state that request or limit; the message lists what is missing where:
    /// `must specify limits.cpu for: app; requests.cpu for: app,sidecar`.
    pub fn constraints(&self, required: &[String], obj: &Value) -> Result<(), String> {
        if *self != Evaluator::Pods {
            return Ok(());
        }
        let required: BTreeSet<&str> =
            required.iter().map(String::as_str).filter(|r| MUST_SPECIFY.contains(r)).collect();
        if required.is_empty() {
            return Ok(());
        }
        let mut missing: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for list in ["containers", "initContainers"] {
            let containers = obj.pointer(&format!("/spec/{list}")).and_then(Value::as_array).into_iter().flatten();
            for container in containers {
                let resources = container.get("resources");
                let requests = list_of(resources.and_then(|r| r.get("requests")));
                let limits = list_of(resources.and_then(|r| r.get("limits")));
                let has = compute_usage(&requests, &limits);
                let name = container.get("name").and_then(Value::as_str).unwrap_or_default();
                for r in required.iter().filter(|r| !has.contains_key(**r)) {
                    missing.entry(r).or_default().insert(name.to_string());
                }
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let parts: Vec<String> = missing
            .iter()
            .map(|(r, names)| format!("{r} for: {}", names.iter().cloned().collect::<Vec<_>>().join(",")))
            .collect();
        Err(format!("must specify {}", parts.join("; ")))
    }
}

/// An extended resource (`example.com/gpu`): domain-prefixed, outside `kubernetes.io/`.
fn is_extended(name: &str) -> bool {
    name.contains('/') && !name.contains("kubernetes.io/")
}

/// A pod with `activeDeadlineSeconds` (kube's `IsTerminating`).
fn terminating(pod: &Value) -> bool {
    pod.pointer("/spec/activeDeadlineSeconds").and_then(Value::as_i64).is_some_and(|s| s >= 0)
}

fn pod_in_scope(scope: &Scope, pod: &Value) -> bool {
    match scope.name.as_str() {
        "Terminating" => terminating(pod),
        "NotTerminating" => !terminating(pod),
        "BestEffort" => crate::objects::qos_class(pod) == "BestEffort",
        "NotBestEffort" => crate::objects::qos_class(pod) != "BestEffort",
        "PriorityClass" => {
            let class = pod.pointer("/spec/priorityClassName").and_then(Value::as_str).unwrap_or_default();
            // A pod without a class has the label `PriorityClass=""` for the selector.
            match scope.operator.as_str() {
                "Exists" => !class.is_empty(),
                "In" => scope.values.iter().any(|v| v == class),
                "NotIn" => !scope.values.iter().any(|v| v == class),
                _ => false,
            }
        }
        "CrossNamespacePodAffinity" => cross_namespace_affinity(pod),
        _ => false,
    }
}

/// A pod affinity or anti-affinity term that names namespaces or selects them.
fn cross_namespace_affinity(pod: &Value) -> bool {
    let mut terms: Vec<&Value> = Vec::new();
    for kind in ["podAffinity", "podAntiAffinity"] {
        let Some(affinity) = pod.pointer(&format!("/spec/affinity/{kind}")) else { continue };
        let required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution").and_then(Value::as_array);
        terms.extend(required.into_iter().flatten());
        let preferred = affinity.get("preferredDuringSchedulingIgnoredDuringExecution").and_then(Value::as_array);
        terms.extend(preferred.into_iter().flatten().filter_map(|p| p.get("podAffinityTerm")));
    }
    terms.into_iter().any(|t| {
        t.get("namespaceSelector").is_some_and(|s| !s.is_null())
            || t.get("namespaces").and_then(Value::as_array).is_some_and(|n| !n.is_empty())
    })
}

/// kube's `QuotaV1Pod`: a pod counts until it ends, or until its deletion's grace passes.
fn counts_for_quota(pod: &Value, now: OffsetDateTime) -> bool {
    if matches!(pod.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed")) {
        return false;
    }
    let deleted = pod.pointer("/metadata/deletionTimestamp").and_then(Value::as_str);
    let grace = pod.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64);
    if let (Some(deleted), Some(grace)) = (deleted, grace) {
        let at = OffsetDateTime::parse(deleted, &time::format_description::well_known::Rfc3339).ok();
        if at.is_some_and(|at| now > at + time::Duration::seconds(grace)) {
            return false;
        }
    }
    true
}

/// kube's `podComputeUsageHelper`: the quota resources of requests and limits.
fn compute_usage(requests: &ResourceList, limits: &ResourceList) -> ResourceList {
    let mut out = ResourceList::from([("pods".to_string(), Quantity::units(1))]);
    for name in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(q) = requests.get(name) {
            out.insert(name.to_string(), *q);
            out.insert(format!("requests.{name}"), *q);
        }
        if let Some(q) = limits.get(name) {
            out.insert(format!("limits.{name}"), *q);
        }
    }
    for (name, q) in requests {
        if name.starts_with("hugepages-") {
            out.insert(name.clone(), *q);
            out.insert(format!("requests.{name}"), *q);
        } else if is_extended(name) {
            out.insert(format!("requests.{name}"), *q);
        }
    }
    out
}

/// A pod's usage: `count/pods` always, the rest while it counts (kube's `PodUsageFunc`).
pub fn pod_usage(pod: &Value, now: OffsetDateTime) -> ResourceList {
    let count = ResourceList::from([("count/pods".to_string(), Quantity::units(1))]);
    if !counts_for_quota(pod, now) {
        return count;
    }
    let overhead = list_of(pod.pointer("/spec/overhead"));
    let mut requests = pod_total(pod, "requests");
    quantity::add_into(&mut requests, &overhead);
    let mut limits = pod_total(pod, "limits");
    // Overhead adds to the limits a pod has, never makes new ones.
    for (name, q) in &overhead {
        if let Some(limit) = limits.get_mut(name) {
            limit.add(*q);
        }
    }
    quantity::add(&count, &compute_usage(&requests, &limits))
}

fn service_usage(service: &Value) -> ResourceList {
    let ports = service.pointer("/spec/ports").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let mut out = ResourceList::from([
        ("count/services".to_string(), Quantity::units(1)),
        ("services".to_string(), Quantity::units(1)),
        ("services.loadbalancers".to_string(), Quantity::default()),
        ("services.nodeports".to_string(), Quantity::default()),
    ]);
    let count = |n: usize| Quantity::units(i64::try_from(n).unwrap_or(i64::MAX));
    match service.pointer("/spec/type").and_then(Value::as_str) {
        Some("NodePort") => {
            out.insert("services.nodeports".into(), count(ports.len()));
        }
        Some("LoadBalancer") => {
            let allocate = service.pointer("/spec/allocateLoadBalancerNodePorts").and_then(Value::as_bool);
            let node_ports = match allocate {
                Some(false) => {
                    ports.iter().filter(|p| p.get("nodePort").and_then(Value::as_i64).unwrap_or(0) != 0).count()
                }
                _ => ports.len(),
            };
            out.insert("services.nodeports".into(), count(node_ports));
            out.insert("services.loadbalancers".into(), Quantity::units(1));
        }
        _ => {}
    }
    out
}

/// A claim's storage class: `spec.storageClassName`, or the beta annotation.
fn storage_class(claim: &Value) -> Option<&str> {
    let annotation = claim.pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class");
    annotation.or_else(|| claim.pointer("/spec/storageClassName")).and_then(Value::as_str).filter(|c| !c.is_empty())
}

fn claim_usage(claim: &Value) -> ResourceList {
    let mut out = ResourceList::from([
        ("count/persistentvolumeclaims".to_string(), Quantity::units(1)),
        ("persistentvolumeclaims".to_string(), Quantity::units(1)),
    ]);
    let class = storage_class(claim);
    if let Some(class) = class {
        out.insert(format!("{class}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"), Quantity::units(1));
    }
    let requested = list_of(claim.pointer("/spec/resources/requests")).get("storage").copied();
    let allocated = list_of(claim.pointer("/status/allocatedResources")).get("storage").copied();
    // The larger of what was asked and what was allocated, in whole bytes.
    let storage = match (requested, allocated) {
        (Some(r), Some(a)) => Some(r.max(a)),
        (r, _) => r,
    };
    if let Some(storage) = storage.map(round_up_units) {
        out.insert("requests.storage".into(), storage);
        if let Some(class) = class {
            out.insert(format!("{class}{STORAGE_CLASS_SUFFIX}requests.storage"), storage);
        }
    }
    out
}

/// Rounded up to a whole unit (storage is counted in whole bytes).
fn round_up_units(q: Quantity) -> Quantity {
    let rest = q.milli().rem_euclid(1000);
    let mut out = q;
    if rest != 0 {
        out.add(Quantity::parse(&Value::String(format!("{}m", 1000 - rest))).unwrap_or_default());
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn names(list: &ResourceList) -> Vec<&str> {
        list.keys().map(String::as_str).collect()
    }

    #[test]
    fn pods_use_their_requests_and_limits_until_they_end() {
        let now = OffsetDateTime::now_utc();
        let mut pod = json!({"spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "500m"}}},
            {"name": "b", "resources": {"requests": {"cpu": "250m", "example.com/gpu": "1"}}},
        ]}});
        let used = pod_usage(&pod, now);
        assert_eq!(
            quantity::pretty(&used),
            "count/pods=1,cpu=500m,limits.cpu=500m,memory=64Mi,pods=1,requests.cpu=500m,requests.example.com/gpu=1,requests.memory=64Mi"
        );
        pod["status"] = json!({"phase": "Succeeded"});
        assert_eq!(names(&pod_usage(&pod, now)), ["count/pods"]);
    }

    #[test]
    fn services_count_node_ports_and_load_balancers() {
        let lb = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}, {"port": 443}]}});
        assert_eq!(
            quantity::pretty(&service_usage(&lb)),
            "count/services=1,services=1,services.loadbalancers=1,services.nodeports=2"
        );
        let plain = json!({"spec": {"ports": [{"port": 80}]}});
        assert_eq!(service_usage(&plain)["services.nodeports"].to_string(), "0");
    }

    #[test]
    fn claims_charge_storage_to_their_class() {
        let claim = json!({"spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "5Gi"}}}});
        let used = claim_usage(&claim);
        assert_eq!(used["requests.storage"].to_string(), "5Gi");
        assert_eq!(used["fast.storageclass.storage.k8s.io/requests.storage"].to_string(), "5Gi");
        assert_eq!(used["fast.storageclass.storage.k8s.io/persistentvolumeclaims"].to_string(), "1");
        let hard = vec!["requests.storage".to_string(), "gold.storageclass.storage.k8s.io/requests.storage".into()];
        assert_eq!(Evaluator::Claims.matching(&hard), hard);
    }

    #[test]
    fn evaluators_match_their_names_and_scopes() {
        let hard: Vec<String> =
            ["pods", "requests.cpu", "configmaps", "count/deployments.apps"].map(String::from).into();
        assert_eq!(Evaluator::Pods.matching(&hard), ["pods", "requests.cpu"]);
        let cm = Evaluator::for_kind("", "configmaps").unwrap();
        assert_eq!(cm.matching(&hard), ["configmaps"]);
        let deploy = Evaluator::for_kind("apps", "deployments").unwrap();
        assert_eq!(deploy.matching(&hard), ["count/deployments.apps"]);
        assert_eq!(counted_kind("count/deployments.apps"), Some(("apps".into(), "deployments".into())));
        assert_eq!(counted_kind("secrets"), Some(("".into(), "secrets".into())));
        assert!(Evaluator::for_kind("", "events").is_none());

        let best_effort = json!({"spec": {"containers": [{"name": "c"}]}});
        let quota = json!({"spec": {"scopes": ["BestEffort"], "scopeSelector": {"matchExpressions": [
            {"scopeName": "PriorityClass", "operator": "NotIn", "values": ["high"]}]}}});
        let scopes = scopes_of(&quota);
        assert!(Evaluator::Pods.in_scopes(&scopes, &best_effort));
        assert!(!cm.in_scopes(&scopes, &best_effort), "only pods are in scopes");
        let mut high = best_effort.clone();
        high["spec"]["priorityClassName"] = json!("high");
        assert!(!Evaluator::Pods.in_scopes(&scopes, &high));
    }

    #[test]
    fn quotas_on_compute_resources_need_every_container_to_state_them() {
        let required: Vec<String> = ["pods", "requests.cpu", "limits.cpu", "limits.memory"].map(String::from).into();
        let pod = json!({"spec": {"containers": [
            {"name": "app", "resources": {"requests": {"cpu": "1"}}},
            {"name": "side", "resources": {"requests": {"cpu": "1"}, "limits": {"cpu": "1", "memory": "1Gi"}}},
        ]}});
        assert_eq!(
            Evaluator::Pods.constraints(&required, &pod).unwrap_err(),
            "must specify limits.cpu for: app; limits.memory for: app"
        );
        assert!(Evaluator::Pods.constraints(&["pods".into()], &pod).is_ok());
    }
}

//! The LimitRanger admission plugin, as kube-apiserver's: the LimitRange objects of a
//! namespace default and bound the resources of its pods and claims.
//!
//! - Mutating (pod creates): a container without a request or limit of a resource that a
//!   `Container` item has a `defaultRequest` or `default` for gets it, and the pod is
//!   annotated `kubernetes.io/limit-ranger: LimitRanger plugin set: cpu, memory request for
//!   container app; cpu limit for container app`.
//! - Validating (pod creates; claim creates and updates): `Container` items bound each
//!   container (`min`, `max`, `maxLimitRequestRatio`), `Pod` items the pod's sums,
//!   `PersistentVolumeClaim` items a claim's storage request; a violation is 403 with kube's
//!   words (`maximum cpu usage per Container is 1, but limit is 2`).
//!
//! LimitRanges are read as kube's API defaults would have stored them
//! ([`item_defaults`]: `default` from `max`, `defaultRequest` from `default` or `min`).

use std::collections::BTreeSet;

use raft_store::{RangeRequest, StoreNode};
use serde_json::{json, Map, Value};

use super::quantity::{self, list_of, Quantity, ResourceList};
use super::{Admission, Attributes, Operation, Step};
use crate::api_error::{ApiError, ApiResult, Subject};

/// The annotation that records what the plugin set on a pod.
pub const ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// Which writes the plugin looks at: pods and claims (not their subresources), never pod
/// updates (containers' resources cannot change), nothing being deleted.
fn supports(attrs: &Attributes, old: Option<&Value>) -> bool {
    if attrs.subresource.is_some() || !attrs.kind.group.is_empty() {
        return false;
    }
    if old.is_some_and(crate::deletion::being_deleted) {
        return false;
    }
    matches!(
        (attrs.kind.resource, attrs.operation),
        ("pods", Operation::Create) | ("persistentvolumeclaims", Operation::Create | Operation::Update)
    )
}

/// `SetDefaults_LimitRangeItem`: a `Container` item's `default` comes from `max`, its
/// `defaultRequest` from `default`, then from `min`.
pub fn item_defaults(item: &mut Value) {
    let Some(item) = item.as_object_mut() else { return };
    if item.get("type").and_then(Value::as_str) != Some("Container") {
        return;
    }
    let copy_missing = |item: &mut Map<String, Value>, from: &str, to: &str| {
        let source = item.get(from).and_then(Value::as_object).cloned().unwrap_or_default();
        let target = item.entry(to).or_insert_with(|| json!({}));
        let Some(target) = target.as_object_mut() else { return };
        for (name, value) in source {
            target.entry(name).or_insert(value);
        }
    };
    copy_missing(item, "max", "default");
    copy_missing(item, "default", "defaultRequest");
    copy_missing(item, "min", "defaultRequest");
}

/// The items of a LimitRange, defaulted.
fn items(range: &Value) -> Vec<Value> {
    let list = range.pointer("/spec/limits").and_then(Value::as_array).cloned().unwrap_or_default();
    list.into_iter()
        .map(|mut item| {
            item_defaults(&mut item);
            item
        })
        .collect()
}

fn item_type(item: &Value) -> &str {
    item.get("type").and_then(Value::as_str).unwrap_or_default()
}

/// The containers of a pod spec as `(list, index)`: containers, then init containers.
const CONTAINER_LISTS: [(&str, &str); 2] = [("containers", "container"), ("initContainers", "init container")];

/// Sets the container defaults of `range` on `pod` (kube's `PodMutateLimitFunc`).
pub fn mutate_pod(range: &Value, pod: &mut Value) {
    let (mut requests, mut limits) = (ResourceList::new(), ResourceList::new());
    for item in items(range).iter().filter(|i| item_type(i) == "Container") {
        requests.extend(list_of(item.get("defaultRequest")));
        limits.extend(list_of(item.get("default")));
    }
    if requests.is_empty() && limits.is_empty() {
        return;
    }
    let mut notes: Vec<String> = Vec::new();
    for (list, noun) in CONTAINER_LISTS {
        let Some(containers) = pod.pointer_mut(&format!("/spec/{list}")).and_then(Value::as_array_mut) else {
            continue;
        };
        for container in containers.iter_mut() {
            let name = container.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            let Some(container) = container.as_object_mut() else { continue };
            let resources = container.entry("resources").or_insert_with(|| json!({}));
            let Some(resources) = resources.as_object_mut() else { continue };
            let set_requests = fill(resources, "requests", &requests);
            let set_limits = fill(resources, "limits", &limits);
            if !set_requests.is_empty() {
                notes.push(format!("{} request for {noun} {name}", set_requests.join(", ")));
            }
            if !set_limits.is_empty() {
                notes.push(format!("{} limit for {noun} {name}", set_limits.join(", ")));
            }
        }
    }
    if notes.is_empty() {
        return;
    }
    let Some(metadata) = pod.get_mut("metadata").and_then(Value::as_object_mut) else { return };
    let annotations = metadata.entry("annotations").or_insert_with(|| json!({}));
    if let Some(annotations) = annotations.as_object_mut() {
        annotations.insert(ANNOTATION.into(), json!(format!("LimitRanger plugin set: {}", notes.join("; "))));
    }
}

/// Adds each of `defaults` missing from `resources[field]`; returns the names added, sorted.
fn fill(resources: &mut Map<String, Value>, field: &str, defaults: &ResourceList) -> Vec<String> {
    if defaults.is_empty() {
        return Vec::new();
    }
    let list = resources.entry(field).or_insert_with(|| json!({}));
    let Some(list) = list.as_object_mut() else { return Vec::new() };
    let mut set = Vec::new();
    for (name, value) in defaults {
        if !list.contains_key(name) {
            list.insert(name.clone(), value.to_json());
            set.push(name.clone());
        }
    }
    set
}

/// Go's `%f`.
fn go_float(f: f64) -> String {
    format!("{f:.6}")
}

/// kube's `minConstraint`.
fn min_constraint(ty: &str, name: &str, enforced: Quantity, req: &ResourceList, lim: &ResourceList) -> Option<String> {
    let Some(request) = req.get(name) else {
        return Some(format!("minimum {name} usage per {ty} is {enforced}.  No request is specified"));
    };
    if *request < enforced {
        return Some(format!("minimum {name} usage per {ty} is {enforced}, but request is {request}"));
    }
    match lim.get(name) {
        Some(limit) if *limit < enforced => {
            Some(format!("minimum {name} usage per {ty} is {enforced}, but limit is {limit}"))
        }
        _ => None,
    }
}

/// kube's `maxConstraint`.
fn max_constraint(ty: &str, name: &str, enforced: Quantity, req: &ResourceList, lim: &ResourceList) -> Option<String> {
    let Some(limit) = lim.get(name) else {
        return Some(format!("maximum {name} usage per {ty} is {enforced}.  No limit is specified"));
    };
    if *limit > enforced {
        return Some(format!("maximum {name} usage per {ty} is {enforced}, but limit is {limit}"));
    }
    match req.get(name) {
        Some(request) if *request > enforced => {
            Some(format!("maximum {name} usage per {ty} is {enforced}, but request is {request}"))
        }
        _ => None,
    }
}

/// kube's `maxRequestConstraint` (claims have no limits).
fn max_request_constraint(ty: &str, name: &str, enforced: Quantity, req: &ResourceList) -> Option<String> {
    match req.get(name) {
        None => Some(format!("maximum {name} usage per {ty} is {enforced}.  No request is specified")),
        Some(request) if *request > enforced => {
            Some(format!("maximum {name} usage per {ty} is {enforced}, but request is {request}"))
        }
        Some(_) => None,
    }
}

/// kube's `limitRequestRatioConstraint`.
fn ratio_constraint(
    ty: &str,
    name: &str,
    enforced: Quantity,
    req: &ResourceList,
    lim: &ResourceList,
) -> Option<String> {
    let request = req.get(name).map_or(0, Quantity::milli);
    if request == 0 {
        return Some(format!(
            "{name} max limit to request ratio per {ty} is {enforced}, but no request is specified or request is 0"
        ));
    }
    let limit = lim.get(name).map_or(0, Quantity::milli);
    if limit == 0 {
        return Some(format!(
            "{name} max limit to request ratio per {ty} is {enforced}, but no limit is specified or limit is 0"
        ));
    }
    let observed = limit as f64 / request as f64;
    if observed * 1000.0 > enforced.milli() as f64 {
        return Some(format!(
            "{name} max limit to request ratio per {ty} is {enforced}, but provided ratio is {}",
            go_float(observed)
        ));
    }
    None
}

/// `min`, `max` and `maxLimitRequestRatio` of one item against requests and limits.
fn bound(item: &Value, ty: &str, req: &ResourceList, lim: &ResourceList, errors: &mut Vec<String>) {
    for (name, enforced) in list_of(item.get("min")) {
        errors.extend(min_constraint(ty, &name, enforced, req, lim));
    }
    for (name, enforced) in list_of(item.get("max")) {
        errors.extend(max_constraint(ty, &name, enforced, req, lim));
    }
    for (name, enforced) in list_of(item.get("maxLimitRequestRatio")) {
        errors.extend(ratio_constraint(ty, &name, enforced, req, lim));
    }
}

fn container_lists(pod: &Value) -> impl Iterator<Item = &Value> {
    CONTAINER_LISTS
        .into_iter()
        .filter_map(move |(list, _)| pod.pointer(&format!("/spec/{list}")).and_then(Value::as_array))
        .flatten()
}

fn container_list(container: &Value, field: &str) -> ResourceList {
    list_of(container.get("resources").and_then(|r| r.get(field)))
}

/// A pod's total of `field` (`requests` or `limits`), as the plugin's `podRequests` and
/// `podLimits`: the containers and sidecars summed, or the largest init container (with the
/// sidecars started before it) if larger.
pub fn pod_total(pod: &Value, field: &str) -> ResourceList {
    let list = |name: &str| pod.pointer(&format!("/spec/{name}")).and_then(Value::as_array).cloned();
    let mut total = ResourceList::new();
    for container in list("containers").unwrap_or_default() {
        quantity::add_into(&mut total, &container_list(&container, field));
    }
    let (mut sidecars, mut init_max) = (ResourceList::new(), ResourceList::new());
    for container in list("initContainers").unwrap_or_default() {
        let own = container_list(&container, field);
        let counted = if container.get("restartPolicy").and_then(Value::as_str) == Some("Always") {
            quantity::add_into(&mut total, &own);
            quantity::add_into(&mut sidecars, &own);
            sidecars.clone()
        } else {
            quantity::add(&own, &sidecars)
        };
        quantity::max_into(&mut init_max, &counted);
    }
    quantity::max_into(&mut total, &init_max);
    total
}

/// kube's `utilerrors.NewAggregate(errs).Error()`: one message as it is, several in
/// brackets, duplicates once.
fn aggregate(errors: Vec<String>) -> Option<String> {
    let mut seen = BTreeSet::new();
    let unique: Vec<String> = errors.into_iter().filter(|e| seen.insert(e.clone())).collect();
    match unique.len() {
        0 => None,
        1 => unique.into_iter().next(),
        _ => Some(format!("[{}]", unique.join(", "))),
    }
}

/// What `range` refuses of `pod` (kube's `PodValidateLimitFunc`).
pub fn validate_pod(range: &Value, pod: &Value) -> Option<String> {
    let mut errors = Vec::new();
    for item in items(range) {
        match item_type(&item) {
            "Container" => {
                for container in container_lists(pod) {
                    let (req, lim) = (container_list(container, "requests"), container_list(container, "limits"));
                    bound(&item, "Container", &req, &lim, &mut errors);
                }
            }
            "Pod" => bound(&item, "Pod", &pod_total(pod, "requests"), &pod_total(pod, "limits"), &mut errors),
            _ => {}
        }
    }
    aggregate(errors)
}

/// What `range` refuses of `claim`'s storage request (kube's
/// `PersistentVolumeClaimValidateLimitFunc`).
pub fn validate_claim(range: &Value, claim: &Value) -> Option<String> {
    let mut errors = Vec::new();
    let requests = list_of(claim.pointer("/spec/resources/requests"));
    for item in items(range).iter().filter(|i| item_type(i) == "PersistentVolumeClaim") {
        for (name, enforced) in list_of(item.get("min")) {
            errors.extend(min_constraint("PersistentVolumeClaim", &name, enforced, &requests, &ResourceList::new()));
        }
        for (name, enforced) in list_of(item.get("max")) {
            errors.extend(max_request_constraint("PersistentVolumeClaim", &name, enforced, &requests));
        }
    }
    aggregate(errors)
}

/// The LimitRanger admission plugin; it reads LimitRanges from the store.
pub struct LimitRanger {
    pub node: StoreNode,
}

impl LimitRanger {
    /// The namespace's LimitRanges, by name, from this member's applied state (kube reads
    /// them from an informer's cache).
    async fn ranges(&self, ns: &str) -> ApiResult<Vec<Value>> {
        let Some(kind) = crate::kinds::find("", "v1", "limitranges") else { return Ok(Vec::new()) };
        let found = self.node.range(RangeRequest::prefix(crate::objects::list_prefix(kind, Some(ns))), false).await?;
        Ok(found.kvs.iter().filter_map(|kv| serde_json::from_slice(&kv.value).ok()).collect())
    }

    fn forbidden(attrs: &Attributes, why: String) -> ApiError {
        ApiError::Forbidden { subject: Subject::of(attrs.kind, attrs.name.clone()), why, causes: Vec::new() }
    }
}

impl Admission for LimitRanger {
    fn mutate<'a>(&'a self, attrs: &'a Attributes, obj: &'a mut Value, old: Option<&'a Value>) -> Step<'a> {
        Box::pin(async move {
            let Some(ns) = attrs.namespace.as_deref() else { return Ok(Vec::new()) };
            if !supports(attrs, old) || attrs.kind.resource != "pods" {
                return Ok(Vec::new());
            }
            for range in self.ranges(ns).await? {
                mutate_pod(&range, obj);
            }
            Ok(Vec::new())
        })
    }

    fn validate<'a>(&'a self, attrs: &'a Attributes, obj: &'a Value, old: Option<&'a Value>) -> Step<'a> {
        Box::pin(async move {
            let Some(ns) = attrs.namespace.as_deref() else { return Ok(Vec::new()) };
            if !supports(attrs, old) {
                return Ok(Vec::new());
            }
            for range in self.ranges(ns).await? {
                let refused = match attrs.kind.resource {
                    "pods" => validate_pod(&range, obj),
                    _ => validate_claim(&range, obj),
                };
                if let Some(why) = refused {
                    return Err(Self::forbidden(attrs, why));
                }
            }
            Ok(Vec::new())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(limits: Value) -> Value {
        json!({"metadata": {"name": "limits"}, "spec": {"limits": limits}})
    }

    #[test]
    fn container_defaults_fill_what_is_missing_and_annotate_the_pod() {
        let lr = range(
            json!([{"type": "Container", "default": {"cpu": "500m", "memory": "256Mi"}, "defaultRequest": {"cpu": "100m"}}]),
        );
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "app", "resources": {"limits": {"memory": "1Gi"}}},
            {"name": "side"},
        ]}});
        mutate_pod(&lr, &mut pod);
        let app = &pod["spec"]["containers"][0]["resources"];
        assert_eq!(app["limits"], json!({"cpu": "500m", "memory": "1Gi"}));
        // defaultRequest of memory comes from default (LimitRange defaulting).
        assert_eq!(app["requests"], json!({"cpu": "100m", "memory": "256Mi"}));
        assert_eq!(
            pod["metadata"]["annotations"][ANNOTATION],
            "LimitRanger plugin set: cpu, memory request for container app; cpu limit for container app; \
             cpu, memory request for container side; cpu, memory limit for container side"
        );
        let mut untouched = json!({"metadata": {}, "spec": {"containers": [{"name": "c"}]}});
        mutate_pod(&range(json!([{"type": "Pod", "max": {"cpu": "2"}}])), &mut untouched);
        assert!(untouched["metadata"].get("annotations").is_none());
    }

    #[test]
    fn violations_are_reported_in_kubes_words() {
        let lr = range(json!([{"type": "Container", "max": {"cpu": "1"}, "min": {"memory": "64Mi"}}]));
        let pod = |res: Value| json!({"spec": {"containers": [{"name": "app", "resources": res}]}});
        let big = pod(json!({"limits": {"cpu": "2", "memory": "128Mi"}, "requests": {"cpu": "2", "memory": "128Mi"}}));
        assert_eq!(validate_pod(&lr, &big).unwrap(), "maximum cpu usage per Container is 1, but limit is 2");
        let both = pod(json!({"limits": {"cpu": "2"}, "requests": {"cpu": "2", "memory": "32Mi"}}));
        assert_eq!(
            validate_pod(&lr, &both).unwrap(),
            "[minimum memory usage per Container is 64Mi, but request is 32Mi, maximum cpu usage per Container is 1, but limit is 2]"
        );
        let fine = pod(json!({"limits": {"cpu": "500m"}, "requests": {"cpu": "500m", "memory": "64Mi"}}));
        assert_eq!(validate_pod(&lr, &fine), None);
        let ratio = range(json!([{"type": "Container", "maxLimitRequestRatio": {"cpu": "2"}}]));
        let skewed = pod(json!({"limits": {"cpu": "1"}, "requests": {"cpu": "250m"}}));
        assert_eq!(
            validate_pod(&ratio, &skewed).unwrap(),
            "cpu max limit to request ratio per Container is 2, but provided ratio is 4.000000"
        );
        let per_pod = range(json!([{"type": "Pod", "max": {"memory": "1Gi"}}]));
        let two = json!({"spec": {"containers": [
            {"name": "a", "resources": {"limits": {"memory": "768Mi"}}},
            {"name": "b", "resources": {"limits": {"memory": "512Mi"}}},
        ]}});
        assert_eq!(validate_pod(&per_pod, &two).unwrap(), "maximum memory usage per Pod is 1Gi, but limit is 1280Mi");
    }

    #[test]
    fn claims_are_bounded_by_their_storage_request() {
        let lr =
            range(json!([{"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "10Gi"}}]));
        let claim = |size: &str| json!({"spec": {"resources": {"requests": {"storage": size}}}});
        assert_eq!(
            validate_claim(&lr, &claim("20Gi")).unwrap(),
            "maximum storage usage per PersistentVolumeClaim is 10Gi, but request is 20Gi"
        );
        assert_eq!(
            validate_claim(&lr, &claim("500Mi")).unwrap(),
            "minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 500Mi"
        );
        assert_eq!(validate_claim(&lr, &claim("5Gi")), None);
    }
}

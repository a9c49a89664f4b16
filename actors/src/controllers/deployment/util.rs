//! The Deployment controller's arithmetic as plain functions (upstream's
//! `deployment/util`): surge and unavailability fenceposts, the pod-template hash, revisions
//! and the annotations kept on ReplicaSets, proportions for scaling, the status and its
//! Available/Progressing conditions.

use std::cmp::Ordering;
use std::time::Duration;

use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::controllers::pods::{
    self, annotation, by_creation, int_at, is_empty, spec_replicas, status_count, str_at, POD_TEMPLATE_HASH,
};

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// Deployment annotations not copied to its ReplicaSets.
const NOT_COPIED: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];
/// The longest `revision-history` annotation.
pub const MAX_REVISION_HISTORY_CHARS: usize = 2000;

/// Condition reasons, as upstream words them.
pub mod reason {
    pub const FAILED_RS_CREATE: &str = "ReplicaSetCreateError";
    pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
    pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
    pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
    pub const RS_UPDATED: &str = "ReplicaSetUpdated";
    pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
    pub const PAUSED: &str = "DeploymentPaused";
    pub const RESUMED: &str = "DeploymentResumed";
    pub const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
    pub const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
}

pub fn is_recreate(d: &Value) -> bool {
    str_at(d, "/spec/strategy/type") == "Recreate"
}

pub fn is_rolling(d: &Value) -> bool {
    matches!(str_at(d, "/spec/strategy/type"), "RollingUpdate" | "")
}

/// An int-or-percent of `total`: percents round up or down (upstream's
/// `GetScaledValueFromIntOrPercent`); anything else (rejected by validation) is 0.
pub fn scaled_value(value: Option<&Value>, total: i64, round_up: bool) -> i64 {
    match value {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => {
            let Some(percent) = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else { return 0 };
            let scaled = percent as f64 * total as f64 / 100.0;
            (if round_up { scaled.ceil() } else { scaled.floor() }) as i64
        }
        _ => 0,
    }
}

/// (maxSurge, maxUnavailable) of a rolling update for `replicas`; both 0 resolve to an
/// unavailability of 1 (upstream's `ResolveFenceposts`).
fn fenceposts(d: &Value, replicas: i64) -> (i64, i64) {
    let rolling = d.pointer("/spec/strategy/rollingUpdate");
    let surge = scaled_value(rolling.and_then(|r| r.get("maxSurge")), replicas, true);
    let unavailable = scaled_value(rolling.and_then(|r| r.get("maxUnavailable")), replicas, false);
    if surge == 0 && unavailable == 0 {
        return (0, 1);
    }
    (surge, unavailable)
}

/// How many pods above `spec.replicas` a rollout may run.
pub fn max_surge(d: &Value) -> i64 {
    if !is_rolling(d) {
        return 0;
    }
    fenceposts(d, spec_replicas(d)).0
}

/// How many of `spec.replicas` may be unavailable during a rollout.
pub fn max_unavailable(d: &Value) -> i64 {
    let replicas = spec_replicas(d);
    if !is_rolling(d) || replicas == 0 {
        return 0;
    }
    fenceposts(d, replicas).1.min(replicas)
}

/// The revision annotation of a ReplicaSet (0 when missing or not a number).
pub fn revision(rs: &Value) -> i64 {
    annotation(rs, REVISION).and_then(|r| r.parse().ok()).unwrap_or(0)
}

/// A copy of `metadata.annotations`.
pub fn annotations_of(obj: &Value) -> Map<String, Value> {
    obj.pointer("/metadata/annotations").and_then(Value::as_object).cloned().unwrap_or_default()
}

/// Replaces `metadata.annotations` (dropped when empty).
pub fn put_annotations(obj: &mut Value, annotations: Map<String, Value>) {
    if annotations.is_empty() {
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("annotations");
        }
    } else {
        pods::set_path(obj, &["metadata", "annotations"], Value::Object(annotations));
    }
}

// ---------------------------------------------------------------------------------------
// The pod-template hash

/// FNV-1a, 32 bits.
fn fnv32a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |hash, b| (hash ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

/// Go's `rand.SafeEncodeString`: each byte as one of 27 characters no word can be spelt with.
pub fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes().map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char).collect()
}

/// JSON with object keys sorted at every level.
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical(&map[k.as_str()])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => format!("[{}]", items.iter().map(canonical).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// The `pod-template-hash` of a template: FNV-1a of its canonical JSON plus the collision
/// count, as upstream's `ComputeHash` (which hashes Go's dump of the struct instead), encoded
/// as `SafeEncodeString` of the decimal number.
pub fn template_hash(template: &Value, collision_count: Option<i64>) -> String {
    let mut bytes = canonical(&pruned(template)).into_bytes();
    if let Some(count) = collision_count {
        bytes.extend_from_slice(&(count as u32).to_le_bytes());
        bytes.extend_from_slice(&[0; 4]);
    }
    safe_encode(&fnv32a(&bytes).to_string())
}

/// Without nulls, empty objects, lists and strings, at every level (Go's zero values).
fn pruned(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), pruned(v))).filter(|(_, v)| !is_empty(v)).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(pruned).collect()),
        other => other.clone(),
    }
}

fn without_hash(template: Option<&Value>) -> Value {
    let mut t = template.cloned().unwrap_or(Value::Null);
    if let Some(labels) = t.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
        labels.remove(POD_TEMPLATE_HASH);
    }
    pruned(&t)
}

/// Whether two pod templates are the same but for the `pod-template-hash` label.
pub fn equal_ignore_hash(a: Option<&Value>, b: Option<&Value>) -> bool {
    without_hash(a) == without_hash(b)
}

/// The ReplicaSet (index into `rses`) whose template is the Deployment's: the oldest if
/// several are.
pub fn find_new(d: &Value, rses: &[Value]) -> Option<usize> {
    let template = d.pointer("/spec/template");
    let mut order: Vec<usize> = (0..rses.len()).collect();
    order.sort_by(|a, b| by_creation(&rses[*a], &rses[*b]));
    order.into_iter().find(|i| equal_ignore_hash(rses[*i].pointer("/spec/template"), template))
}

// ---------------------------------------------------------------------------------------
// Annotations

fn annotation_int(rs: &Value, key: &str) -> Option<i64> {
    annotation(rs, key)?.parse().ok()
}

pub fn desired_replicas(rs: &Value) -> Option<i64> {
    annotation_int(rs, DESIRED_REPLICAS)
}

/// Sets `desired-replicas` and `max-replicas`; whether anything changed.
pub fn set_replicas_annotations(rs: &mut Value, desired: i64, max: i64) -> bool {
    let mut annotations = annotations_of(rs);
    let mut changed = false;
    for (key, value) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let value = value.to_string();
        if annotations.get(key).and_then(Value::as_str) != Some(&value) {
            annotations.insert(key.into(), json!(value));
            changed = true;
        }
    }
    if changed {
        put_annotations(rs, annotations);
    }
    changed
}

pub fn replicas_annotations_need_update(rs: &Value, desired: i64, max: i64) -> bool {
    annotation(rs, DESIRED_REPLICAS) != Some(&desired.to_string())
        || annotation(rs, MAX_REPLICAS) != Some(&max.to_string())
}

/// Copies the Deployment's annotations (but those it keeps to itself) onto the ReplicaSet;
/// whether anything changed.
fn copy_annotations(d: &Value, rs: &mut Value) -> bool {
    let mut to = annotations_of(rs);
    let mut changed = false;
    for (k, v) in annotations_of(d) {
        if NOT_COPIED.contains(&k.as_str()) || to.get(&k) == Some(&v) {
            continue;
        }
        to.insert(k, v);
        changed = true;
    }
    if changed {
        put_annotations(rs, to);
    }
    changed
}

/// The annotations of the Deployment's new ReplicaSet (upstream's
/// `SetNewReplicaSetAnnotations`): the Deployment's, the revision (moving an older revision
/// into `revision-history` when an old ReplicaSet becomes new again), and for a ReplicaSet
/// about to be created the replica annotations. Whether anything changed.
pub fn set_new_rs_annotations(d: &Value, rs: &mut Value, new_revision: i64, exists: bool) -> bool {
    let mut changed = copy_annotations(d, rs);
    let mut annotations = annotations_of(rs);
    let old = annotations.get(REVISION).and_then(Value::as_str).map(String::from);
    let old_revision = match old.as_deref() {
        None | Some("") => 0,
        Some(r) => match r.parse::<i64>() {
            Ok(r) => r,
            Err(_) => return changed,
        },
    };
    if old_revision < new_revision {
        annotations.insert(REVISION.into(), json!(new_revision.to_string()));
        changed = true;
        if let Some(old) = old.filter(|o| !o.is_empty()) {
            let history = annotations.get(REVISION_HISTORY).and_then(Value::as_str).unwrap_or("").to_string();
            if history.is_empty() {
                annotations.insert(REVISION_HISTORY.into(), json!(old));
            } else {
                let mut revisions: Vec<&str> = history.split(',').collect();
                let mut total = history.len() + old.len() + 1;
                let mut start = 0;
                while total > MAX_REVISION_HISTORY_CHARS && start < revisions.len() {
                    total = total.saturating_sub(revisions[start].len() + 1);
                    start += 1;
                }
                if total <= MAX_REVISION_HISTORY_CHARS {
                    revisions = revisions.split_off(start);
                    revisions.push(&old);
                    annotations.insert(REVISION_HISTORY.into(), json!(revisions.join(",")));
                }
            }
        }
        put_annotations(rs, annotations);
    }
    if !exists {
        let replicas = spec_replicas(d);
        if set_replicas_annotations(rs, replicas, replicas + max_surge(d)) {
            changed = true;
        }
    }
    changed
}

// ---------------------------------------------------------------------------------------
// Counts and proportions

pub fn spec_total<'a>(rses: impl IntoIterator<Item = &'a Value>) -> i64 {
    rses.into_iter().map(spec_replicas).sum()
}

pub fn status_total<'a>(rses: impl IntoIterator<Item = &'a Value>, field: &str) -> i64 {
    rses.into_iter().map(|rs| status_count(rs, field)).sum()
}

/// The replicas the new ReplicaSet may have now (upstream's `NewRSNewReplicas`).
pub fn new_rs_new_replicas(d: &Value, all: &[&Value], new_rs: &Value) -> i64 {
    let replicas = spec_replicas(d);
    if !is_rolling(d) {
        return replicas;
    }
    let surge = scaled_value(d.pointer("/spec/strategy/rollingUpdate/maxSurge"), replicas, true);
    let current = spec_total(all.iter().copied());
    let max_total = replicas + surge;
    if current >= max_total {
        return spec_replicas(new_rs);
    }
    let up = (max_total - current).min(replicas - spec_replicas(new_rs));
    spec_replicas(new_rs) + up
}

/// The new ReplicaSet has all the Deployment's replicas, all available.
pub fn is_saturated(d: &Value, rs: &Value) -> bool {
    let replicas = spec_replicas(d);
    desired_replicas(rs) == Some(replicas)
        && spec_replicas(rs) == replicas
        && status_count(rs, "availableReplicas") == replicas
}

/// Go's `math.Round`: halves away from zero.
fn round(x: f64) -> i64 {
    x.round() as i64
}

/// How many replicas to add to (or remove from) `rs` in a proportional scale (upstream's
/// `GetReplicaSetProportion`).
pub fn rs_proportion(rs: &Value, d: &Value, to_add: i64, added: i64) -> i64 {
    if spec_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = rs_fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

fn rs_fraction(rs: &Value, d: &Value) -> i64 {
    let replicas = spec_replicas(d);
    if replicas == 0 {
        return -spec_replicas(rs);
    }
    let max_now = replicas + max_surge(d);
    let before = match annotation_int(rs, MAX_REPLICAS) {
        Some(before) if before != 0 => before,
        _ => status_count(d, "replicas"),
    };
    if before == 0 {
        return 0;
    }
    let size = (spec_replicas(rs) * max_now) as f64 / before as f64;
    round(size) - spec_replicas(rs)
}

/// Larger first; among equals, newer first (scaling up) or older first (scaling down).
pub fn by_size(a: &Value, b: &Value, newer_first: bool) -> Ordering {
    spec_replicas(b).cmp(&spec_replicas(a)).then_with(|| {
        let order = by_creation(a, b);
        if newer_first {
            order.reverse()
        } else {
            order
        }
    })
}

/// Lower revisions first, then older.
pub fn by_revision(a: &Value, b: &Value) -> Ordering {
    revision(a).cmp(&revision(b)).then_with(|| by_creation(a, b))
}

// ---------------------------------------------------------------------------------------
// Status

pub fn has_progress_deadline(d: &Value) -> bool {
    d.pointer("/spec/progressDeadlineSeconds").and_then(Value::as_i64).is_some_and(|s| s != i64::from(i32::MAX))
}

/// A Deployment condition stamped `now`.
pub fn new_condition(kind: &str, status: &str, reason: &str, message: &str, now: OffsetDateTime) -> Value {
    let at = pods::timestamp(now);
    json!({
        "type": kind,
        "status": status,
        "lastUpdateTime": at,
        "lastTransitionTime": at,
        "reason": reason,
        "message": message,
    })
}

/// Removes Go's `omitempty` zeros (all of a Deployment's counts are optional).
pub fn omit_zeros(mut status: Value, keep: &[&str]) -> Value {
    if let Some(map) = status.as_object_mut() {
        map.retain(|k, v| keep.contains(&k.as_str()) || !(v.as_i64() == Some(0) || is_empty(v)));
    }
    status
}

/// The status a Deployment has with these ReplicaSets (upstream's `calculateStatus`).
pub fn calculate_status(all: &[&Value], new_rs: Option<&Value>, d: &Value, now: OffsetDateTime) -> Value {
    let available = status_total(all.iter().copied(), "availableReplicas");
    let total = spec_total(all.iter().copied());
    let mut status = json!({
        "observedGeneration": int_at(d, "/metadata/generation"),
        "replicas": status_total(all.iter().copied(), "replicas"),
        "updatedReplicas": status_total(new_rs, "replicas"),
        "readyReplicas": status_total(all.iter().copied(), "readyReplicas"),
        "availableReplicas": available,
        "unavailableReplicas": (total - available).max(0),
    });
    if let Some(count) = d.pointer("/status/collisionCount").filter(|c| c.is_number()) {
        status["collisionCount"] = count.clone();
    }
    if let Some(conditions) = d.pointer("/status/conditions").filter(|c| c.is_array()) {
        status["conditions"] = conditions.clone();
    }
    let cond = if available >= spec_replicas(d) - max_unavailable(d) {
        new_condition("Available", "True", reason::MIN_AVAILABLE, "Deployment has minimum availability.", now)
    } else {
        new_condition(
            "Available",
            "False",
            reason::MIN_UNAVAILABLE,
            "Deployment does not have minimum availability.",
            now,
        )
    };
    pods::set_condition(&mut status, cond);
    omit_zeros(status, &[])
}

/// Every replica updated and available, and the latest spec observed.
pub fn deployment_complete(d: &Value, status: &Value) -> bool {
    let replicas = spec_replicas(d);
    status_of(status, "updatedReplicas") == replicas
        && status_of(status, "replicas") == replicas
        && status_of(status, "availableReplicas") == replicas
        && status_of(status, "observedGeneration") >= int_at(d, "/metadata/generation")
}

fn status_of(status: &Value, field: &str) -> i64 {
    status.get(field).and_then(Value::as_i64).unwrap_or(0)
}

/// Whether `new` shows progress over the Deployment's current status.
pub fn deployment_progressing(d: &Value, new: &Value) -> bool {
    let old = d.get("status").cloned().unwrap_or(Value::Null);
    let old_old = status_of(&old, "replicas") - status_of(&old, "updatedReplicas");
    let new_old = status_of(new, "replicas") - status_of(new, "updatedReplicas");
    status_of(new, "updatedReplicas") > status_of(&old, "updatedReplicas")
        || new_old < old_old
        || status_of(new, "readyReplicas") > status_of(&old, "readyReplicas")
        || status_of(new, "availableReplicas") > status_of(&old, "availableReplicas")
}

fn progress_deadline(d: &Value) -> time::Duration {
    time::Duration::seconds(int_at(d, "/spec/progressDeadlineSeconds"))
}

fn last_update(cond: &Value) -> Option<OffsetDateTime> {
    cond.get("lastUpdateTime").and_then(Value::as_str).and_then(pods::parse_time)
}

/// Whether the rollout has made no progress for `progressDeadlineSeconds`.
pub fn deployment_timed_out(d: &Value, new: &Value, now: OffsetDateTime) -> bool {
    if !has_progress_deadline(d) {
        return false;
    }
    let Some(cond) = pods::condition(new, "Progressing") else { return false };
    match cond.get("reason").and_then(Value::as_str) {
        Some(reason::NEW_RS_AVAILABLE) => false,
        Some(reason::TIMED_OUT) => true,
        _ => last_update(cond).and_then(|from| from.checked_add(progress_deadline(d))).is_some_and(|at| at < now),
    }
}

/// When to look at a Deployment again to see whether its rollout timed out (upstream's
/// `requeueStuckDeployment`); `None` when there is nothing to wait for.
pub fn requeue_stuck(d: &Value, new: &Value, now: OffsetDateTime) -> Option<Duration> {
    let current = d.get("status").and_then(|s| pods::condition(s, "Progressing"))?;
    if !has_progress_deadline(d)
        || deployment_complete(d, new)
        || current.get("reason").and_then(Value::as_str) == Some(reason::TIMED_OUT)
    {
        return None;
    }
    let after = last_update(current)?.checked_add(progress_deadline(d))? - now;
    let millis = after.whole_milliseconds().clamp(0, i128::from(u32::MAX)) as u64;
    Some(Duration::from_millis(millis.max(100) + 1000))
}

/// The first `ReplicaFailure` of the new ReplicaSet, else of any, as a Deployment condition.
pub fn replica_failure(all: &[&Value], new_rs: Option<&Value>) -> Option<Value> {
    let failure = |rs: &Value| {
        pods::condition(rs.get("status")?, "ReplicaFailure").map(|c| {
            json!({
                "type": "ReplicaFailure",
                "status": c.get("status").cloned().unwrap_or(Value::Null),
                "lastUpdateTime": c.get("lastTransitionTime").cloned().unwrap_or(Value::Null),
                "lastTransitionTime": c.get("lastTransitionTime").cloned().unwrap_or(Value::Null),
                "reason": c.get("reason").cloned().unwrap_or(Value::Null),
                "message": c.get("message").cloned().unwrap_or(Value::Null),
            })
        })
    };
    new_rs.and_then(failure).or_else(|| all.iter().find_map(|rs| failure(rs)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy(replicas: i64, surge: Value, unavailable: Value) -> Value {
        json!({"spec": {"replicas": replicas, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}}})
    }

    #[test]
    fn percents_round_surge_up_and_unavailability_down() {
        let d = deploy(10, json!("25%"), json!("25%"));
        assert_eq!((max_surge(&d), max_unavailable(&d)), (3, 2));
        let d = deploy(3, json!(0), json!("10%"));
        assert_eq!((max_surge(&d), max_unavailable(&d)), (0, 1), "both zero: one may be unavailable");
        let d = deploy(2, json!(1), json!(5));
        assert_eq!(max_unavailable(&d), 2, "never more than the replicas");
        let recreate = json!({"spec": {"replicas": 3, "strategy": {"type": "Recreate"}}});
        assert_eq!((max_surge(&recreate), max_unavailable(&recreate)), (0, 0));
    }

    #[test]
    fn the_template_hash_is_stable_ignores_empties_and_changes_with_collisions() {
        let t =
            json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
        let same = json!({"metadata": {"labels": {"app": "web"}, "annotations": {}}, "spec": {"containers": [{"image": "nginx", "name": "c"}]}});
        assert_eq!(template_hash(&t, None), template_hash(&same, None));
        assert_ne!(template_hash(&t, None), template_hash(&t, Some(1)));
        let hash = template_hash(&t, None);
        assert!(hash.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)), "{hash}");
        assert_eq!(safe_encode("123"), "567");
    }

    #[test]
    fn templates_compare_without_the_hash_label() {
        let rs = json!({"metadata": {"labels": {"app": "web", "pod-template-hash": "abc"}}, "spec": {"x": 1}});
        let d = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"x": 1}});
        assert!(equal_ignore_hash(Some(&rs), Some(&d)));
        assert!(!equal_ignore_hash(
            Some(&rs),
            Some(&json!({"metadata": {"labels": {"app": "web"}}, "spec": {"x": 2}}))
        ));
    }

    #[test]
    fn an_old_replica_set_made_new_again_keeps_its_revisions_in_history() {
        let d = json!({"metadata": {"annotations": {"team": "a", REVISION: "3"}}, "spec": {"replicas": 2, "strategy": {"rollingUpdate": {"maxSurge": 1}}}});
        let mut rs = json!({"metadata": {"annotations": {REVISION: "1"}}});
        assert!(set_new_rs_annotations(&d, &mut rs, 4, true));
        let a = &rs["metadata"]["annotations"];
        assert_eq!(
            (a[REVISION].as_str(), a[REVISION_HISTORY].as_str(), a["team"].as_str()),
            (Some("4"), Some("1"), Some("a"))
        );
        assert!(a.get(DESIRED_REPLICAS).is_none(), "only a new one gets replica annotations here");
        assert!(!set_new_rs_annotations(&d, &mut rs, 4, true));
        let mut fresh = json!({});
        set_new_rs_annotations(&d, &mut fresh, 1, false);
        assert_eq!(fresh["metadata"]["annotations"][MAX_REPLICAS], "3");
    }

    #[test]
    fn a_new_replica_set_grows_within_the_surge() {
        let d = deploy(10, json!(3), json!(2));
        let old = json!({"spec": {"replicas": 10}});
        let new = json!({"spec": {"replicas": 0}});
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new], &new), 3);
        let old = json!({"spec": {"replicas": 5}});
        let new = json!({"spec": {"replicas": 8}});
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new], &new), 8);
    }

    #[test]
    fn status_is_available_when_enough_replicas_are() {
        let d = json!({"metadata": {"generation": 2}, "spec": {"replicas": 4, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}}}});
        let rs =
            json!({"spec": {"replicas": 4}, "status": {"replicas": 4, "readyReplicas": 3, "availableReplicas": 3}});
        let s = calculate_status(&[&rs], Some(&rs), &d, pods::now());
        assert_eq!(
            (s["replicas"].as_i64(), s["updatedReplicas"].as_i64(), s["unavailableReplicas"].as_i64()),
            (Some(4), Some(4), Some(1))
        );
        assert_eq!(pods::condition(&s, "Available").unwrap()["reason"], reason::MIN_AVAILABLE);
        let rs = json!({"spec": {"replicas": 4}, "status": {"replicas": 4, "availableReplicas": 2}});
        let s = calculate_status(&[&rs], Some(&rs), &d, pods::now());
        assert_eq!(pods::condition(&s, "Available").unwrap()["status"], "False");
    }

    #[test]
    fn proportional_scaling_follows_the_max_replicas_annotation() {
        let d = json!({"spec": {"replicas": 20, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}}});
        let rs = json!({"metadata": {"annotations": {MAX_REPLICAS: "10"}}, "spec": {"replicas": 5}});
        assert_eq!(rs_proportion(&rs, &d, 10, 0), 5);
        assert_eq!(rs_proportion(&rs, &d, 3, 0), 3, "never more than allowed");
    }
}

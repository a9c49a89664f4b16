//! A StatefulSet's ControllerRevisions (kube's `controller_history.go` and the set's use of
//! it): each revision stores a strategic merge patch that restores one pod template (what
//! `kubectl rollout history/undo sts` read and apply), named `{set}-{hash}`, numbered in
//! order of use; the set's template becomes the update revision, the revision named in
//! `status.currentRevision` the current one.

use std::cmp::Ordering;

use serde_json::{json, Value};

use crate::controllers::daemon_set::{revision_data, REVISION_HASH};
use crate::controllers::deployment::util::safe_encode;
use crate::controllers::pods::{self, int_at, name, namespace, owner_reference, str_at};

/// A revision's number.
pub fn number(cr: &Value) -> i64 {
    int_at(cr, "/revision")
}

/// Oldest first: by number, then creation, then name (kube's `SortControllerRevisions`).
pub fn by_number(a: &Value, b: &Value) -> Ordering {
    number(a).cmp(&number(b)).then_with(|| pods::by_creation(a, b))
}

/// The number after the highest of `revisions` (1 for none).
pub fn next_number(revisions: &[Value]) -> i64 {
    revisions.iter().map(number).max().unwrap_or(0) + 1
}

/// `status.collisionCount`, 0 when unset.
pub fn collision_count(set: &Value) -> i64 {
    set.pointer("/status/collisionCount").and_then(Value::as_i64).unwrap_or(0)
}

/// JSON with object keys sorted at every level: the bytes a revision's hash is taken of.
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> =
                keys.into_iter().map(|k| format!("{}:{}", Value::String(k.clone()), canonical(&map[k]))).collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => format!("[{}]", items.iter().map(canonical).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// FNV-1 (32 bits), the hash kube's `HashControllerRevision` takes.
fn fnv32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |hash, b| hash.wrapping_mul(0x0100_0193) ^ u32::from(*b))
}

/// The hash of revision data with a collision count (kube's `HashControllerRevision`).
pub fn hash(data: &Value, collision_count: i64) -> String {
    let mut bytes = canonical(data).into_bytes();
    bytes.extend_from_slice(collision_count.to_string().as_bytes());
    safe_encode(&fnv32(&bytes).to_string())
}

/// The revision name of `data` for `set` (kube's `ControllerRevisionName`: the prefix cut at
/// 223 characters).
pub fn revision_name(set: &Value, data: &Value, collision_count: i64) -> String {
    let prefix: String = name(set).chars().take(223).collect();
    format!("{prefix}-{}", hash(data, collision_count))
}

/// The revision of the set's template as it would be created (kube's `newRevision`): the
/// template's labels and the hash label, the set's annotations, controlled by the set.
pub fn new_revision(set: &Value, number: i64, collision_count: i64) -> Value {
    let data = revision_data(set);
    let hash = hash(&data, collision_count);
    let mut labels =
        set.pointer("/spec/template/metadata/labels").and_then(Value::as_object).cloned().unwrap_or_default();
    labels.insert(REVISION_HASH.into(), json!(hash));
    let mut metadata = json!({
        "name": revision_name(set, &data, collision_count),
        "namespace": namespace(set),
        "labels": labels,
        "ownerReferences": [owner_reference(set, "StatefulSet")],
    });
    if let Some(annotations) = set.pointer("/metadata/annotations").filter(|a| !pods::is_empty(a)) {
        metadata["annotations"] = annotations.clone();
    }
    json!({"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": metadata, "data": data, "revision": number})
}

/// Whether two revisions restore the same template (kube's `EqualRevision`).
pub fn same_data(a: &Value, b: &Value) -> bool {
    a.get("data") == b.get("data")
}

/// The set with the template of `revision` (kube's `ApplyRevision`: the revision's patch
/// replaces `spec.template`).
pub fn apply_revision(set: &Value, revision: &Value) -> Value {
    let mut applied = set.clone();
    if let Some(template) = revision.pointer("/data/spec/template") {
        let mut template = template.clone();
        if let Some(t) = template.as_object_mut() {
            t.remove("$patch");
        }
        pods::set_path(&mut applied, &["spec", "template"], template);
    }
    applied
}

/// What becomes of the update revision given the history (oldest first) and the revision
/// the set's template would make (kube's `getStatefulSetRevisions`).
#[derive(Debug, PartialEq)]
pub enum UpdateRevision {
    /// The newest revision already holds the template.
    Newest(usize),
    /// An older revision holds it (a rollback): it is renumbered to the next number.
    Renumber(usize),
    /// No revision holds it: created.
    Create,
}

pub fn choose_update(history: &[Value], candidate: &Value) -> UpdateRevision {
    match history.iter().rposition(|cr| same_data(cr, candidate)) {
        Some(i) if i + 1 == history.len() => UpdateRevision::Newest(i),
        Some(i) => UpdateRevision::Renumber(i),
        None => UpdateRevision::Create,
    }
}

/// The revisions to delete to keep `revisionHistoryLimit` (default 10) revisions no pod,
/// nor the current or update revision, uses: the oldest first (kube's `truncateHistory`).
pub fn to_truncate<'a>(set: &Value, history: &'a [Value], live: &[&str]) -> Vec<&'a Value> {
    let limit = set.pointer("/spec/revisionHistoryLimit").and_then(Value::as_i64).unwrap_or(10).max(0) as usize;
    let idle: Vec<&Value> = history.iter().filter(|cr| !live.contains(&name(cr))).collect();
    let excess = idle.len().saturating_sub(limit);
    idle.into_iter().take(excess).collect()
}

/// The revision name `status.currentRevision` holds.
pub fn status_current(set: &Value) -> &str {
    str_at(set, "/status/currentRevision")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(image: &str) -> Value {
        json!({
            "metadata": {"name": "web", "namespace": "d", "uid": "u", "annotations": {"note": "x"}},
            "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": image}]}}},
        })
    }

    fn rev(s: &Value, number: i64) -> Value {
        new_revision(s, number, 0)
    }

    #[test]
    fn revisions_patch_the_template_back_and_are_named_by_its_hash() {
        let v1 = set("nginx:1");
        let cr = rev(&v1, 1);
        assert!(name(&cr).starts_with("web-"));
        assert_eq!(name(&cr), format!("web-{}", cr["metadata"]["labels"][REVISION_HASH].as_str().unwrap()));
        assert_eq!(cr["metadata"]["labels"]["app"], "web");
        assert_eq!(cr["metadata"]["annotations"]["note"], "x");
        assert_eq!(cr["data"]["spec"]["template"]["$patch"], "replace");
        assert_eq!(cr["revision"], 1);
        assert_ne!(name(&new_revision(&v1, 1, 1)), name(&cr), "a collision count changes the name");
        assert_ne!(name(&rev(&set("nginx:2"), 2)), name(&cr));
        let restored = apply_revision(&set("nginx:2"), &cr);
        assert_eq!(restored["spec"]["template"], v1["spec"]["template"]);
    }

    #[test]
    fn the_update_revision_is_the_newest_a_renumbered_older_or_a_new_one() {
        let (v1, v2) = (set("nginx:1"), set("nginx:2"));
        let history = vec![rev(&v1, 1), rev(&v2, 2)];
        assert_eq!(choose_update(&history, &rev(&v2, 3)), UpdateRevision::Newest(1));
        assert_eq!(choose_update(&history, &rev(&v1, 3)), UpdateRevision::Renumber(0));
        assert_eq!(choose_update(&history, &rev(&set("nginx:3"), 3)), UpdateRevision::Create);
        assert_eq!(next_number(&history), 3);
        assert_eq!(next_number(&[]), 1);
    }

    #[test]
    fn history_keeps_the_limit_of_idle_revisions() {
        let mut s = set("nginx:1");
        s["spec"]["revisionHistoryLimit"] = json!(1);
        let history: Vec<Value> = (1..=4).map(|n| rev(&set(&format!("nginx:{n}")), n)).collect();
        let live = [name(&history[3]), name(&history[0])];
        let gone: Vec<i64> = to_truncate(&s, &history, &live).into_iter().map(number).collect();
        assert_eq!(gone, [2], "revision 1 is live (a pod runs it); 3 stays as the one kept");
    }
}

//! Server-side apply and field ownership (`metadata.managedFields`), on generic JSON.
//!
//! Every write records which manager set which fields: an update hands the fields it
//! changed to its manager (operation `Update`); an apply ([`apply`]) makes the applied
//! configuration the manager's whole set (operation `Apply`), merges it into the live
//! object, removes the fields the manager applied before and no longer does (unless
//! another manager also owns them), and refuses, as a 409 listing each field, to change
//! a field another manager owns unless forced, which moves the field to the applier.

use serde_json::{json, Value};

use crate::api_error::{ApiError, ApiResult, ApplyConflict, Subject};
use crate::field_sets::{display, fields_of, from_fields_v1, remove_at, to_fields_v1, value_at, FieldSet};
use crate::kinds::ResourceKind;
use crate::strategic_merge::{Cursor, ListStrategy};

/// One entry of `metadata.managedFields`.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: String,
    subresource: Option<String>,
    fields: FieldSet,
}

impl Entry {
    fn to_json(&self) -> Value {
        let mut entry = json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": to_fields_v1(&self.fields),
        });
        if let Some(sub) = &self.subresource {
            entry["subresource"] = json!(sub);
        }
        entry
    }

    fn from_json(value: &Value) -> Option<Entry> {
        let text = |field: &str| value.get(field).and_then(Value::as_str).map(String::from);
        Some(Entry {
            manager: text("manager")?,
            operation: text("operation").unwrap_or_else(|| "Update".into()),
            api_version: text("apiVersion").unwrap_or_default(),
            time: text("time").unwrap_or_default(),
            subresource: text("subresource"),
            fields: value.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
        })
    }
}

/// Who writes, with what, when: the context of a tracked write.
#[derive(Debug, Clone, Copy)]
pub struct Writer<'a> {
    pub manager: &'a str,
    pub kind: &'a ResourceKind,
    /// The time written into changed entries (RFC 3339).
    pub now: &'a str,
}

fn entries_of(obj: &Value) -> Vec<Entry> {
    let list = obj.pointer("/metadata/managedFields").and_then(Value::as_array);
    list.map(|l| l.iter().filter_map(Entry::from_json).collect()).unwrap_or_default()
}

fn set_entries(obj: &mut Value, entries: Vec<Entry>) {
    let Some(metadata) = obj.get_mut("metadata").and_then(Value::as_object_mut) else { return };
    let entries: Vec<Value> = entries.iter().filter(|e| !e.fields.is_empty()).map(Entry::to_json).collect();
    if entries.is_empty() {
        metadata.remove("managedFields");
    } else {
        metadata.insert("managedFields".into(), Value::Array(entries));
    }
}

/// Records an update (or, with no `old`, a create) by `writer`: the fields whose values it
/// changed become its own (operation `Update`) and leave other managers; removed fields
/// leave everyone. Managed fields the client sent that differ from the stored ones replace
/// them first (`[{}]` clears them), as kube-apiserver allows.
pub fn track_update(old: Option<&Value>, new: &mut Value, writer: Writer, cursor: Cursor) {
    let old_entries = old.map(entries_of).unwrap_or_default();
    let sent = new.pointer("/metadata/managedFields").cloned();
    let mut entries = match (&sent, old) {
        (Some(sent), Some(old)) if Some(sent) != old.pointer("/metadata/managedFields") => entries_of(new),
        (Some(_), None) => entries_of(new),
        _ => old_entries,
    };
    let old_set = old.map(|o| fields_of(o, cursor)).unwrap_or_default();
    let new_set = fields_of(new, cursor);
    let changed: FieldSet = new_set
        .iter()
        .filter(|p| !old_set.contains(*p) || old.and_then(|o| value_at(o, p)) != value_at(new, p))
        .cloned()
        .collect();
    let removed: FieldSet = old_set.difference(&new_set).cloned().collect();
    for entry in &mut entries {
        let before = entry.fields.len();
        entry.fields.retain(|p| !changed.contains(p) && !removed.contains(p));
        if entry.fields.len() != before {
            entry.time = writer.now.into();
        }
    }
    if !changed.is_empty() {
        let mine = find_or_add(&mut entries, writer, "Update");
        mine.fields.extend(changed);
        mine.time = writer.now.into();
    }
    set_entries(new, entries);
}

fn find_or_add<'e>(entries: &'e mut Vec<Entry>, writer: Writer, operation: &str) -> &'e mut Entry {
    let api_version = writer.kind.group_version();
    let at = entries.iter().position(|e| {
        e.manager == writer.manager
            && e.operation == operation
            && e.subresource.is_none()
            && e.api_version == api_version
    });
    let at = match at {
        Some(at) => at,
        None => {
            entries.push(Entry {
                manager: writer.manager.into(),
                operation: operation.into(),
                api_version,
                time: writer.now.into(),
                subresource: None,
                fields: FieldSet::new(),
            });
            entries.len() - 1
        }
    };
    &mut entries[at]
}

/// Checks an apply configuration and strips what it may not set: it must be an object
/// naming the URL's object; `status` is ignored; `managedFields` must be absent.
pub fn check_config(name: &str, config: &mut Value) -> ApiResult<()> {
    let Some(map) = config.as_object_mut() else {
        return Err(ApiError::BadRequest("the apply configuration is not a JSON object".into()));
    };
    for field in ["apiVersion", "kind"] {
        if map.get(field).and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(ApiError::BadRequest(format!("{field} must be set in an apply configuration")));
        }
    }
    map.remove("status");
    if let Some(metadata) = map.get_mut("metadata").and_then(Value::as_object_mut) {
        match metadata.remove("managedFields") {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) if a.is_empty() => {}
            Some(_) => return Err(ApiError::BadRequest("metadata.managedFields must be nil".into())),
        }
        match metadata.get("name").and_then(Value::as_str) {
            Some(n) if n != name => {
                return Err(ApiError::BadRequest(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )))
            }
            _ => {}
        }
    }
    Ok(())
}

/// The object a first apply creates: the configuration, owned wholly by `writer`.
pub fn created(config: &Value, writer: Writer, cursor: Cursor) -> Value {
    let mut obj = config.clone();
    let entry = Entry {
        manager: writer.manager.into(),
        operation: "Apply".into(),
        api_version: writer.kind.group_version(),
        time: writer.now.into(),
        subresource: None,
        fields: fields_of(config, cursor),
    };
    set_entries(&mut obj, vec![entry]);
    obj
}

/// Applies `config` as `writer` to the live object `live` (see the module doc); 409 with
/// every conflicting field unless `force`.
pub fn apply(
    live: &Value,
    config: &Value,
    writer: Writer,
    force: bool,
    cursor: Cursor,
    name: &str,
) -> ApiResult<Value> {
    let mut entries = entries_of(live);
    let applied = fields_of(config, cursor);
    let mut conflicts = Vec::new();
    // A manager's updates are another party than its applies, as in kube-apiserver.
    for entry in entries.iter_mut().filter(|e| !(e.manager == writer.manager && e.operation == "Apply")) {
        let taken: Vec<_> = applied
            .iter()
            .filter(|p| entry.fields.contains(*p) && !is_item(p) && value_at(live, p) != value_at(config, p))
            .cloned()
            .collect();
        for path in taken {
            if force {
                entry.fields.remove(&path);
            } else {
                conflicts.push(ApplyConflict {
                    manager: entry.manager.clone(),
                    api_version: entry.api_version.clone(),
                    field: display(&path),
                });
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(ApiError::ApplyConflict { subject: Subject::of(writer.kind, name), conflicts });
    }
    let mut merged = live.clone();
    merge_config(&mut merged, config, cursor);
    let previous = entries
        .iter()
        .find(|e| e.manager == writer.manager && e.operation == "Apply")
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let others: FieldSet = entries
        .iter()
        .filter(|e| !(e.manager == writer.manager && e.operation == "Apply"))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    let mut dropped: Vec<_> = previous.difference(&applied).collect();
    // Deepest first, so that an emptied parent goes after its children.
    dropped.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for path in dropped {
        let shared = others.iter().any(|o| o.starts_with(path));
        if !shared {
            remove_at(&mut merged, path);
        }
    }
    let mine = find_or_add(&mut entries, writer, "Apply");
    if mine.fields != applied {
        mine.fields = applied;
        mine.time = writer.now.into();
    }
    set_entries(&mut merged, entries);
    Ok(merged)
}

/// Whether a path names a list item (its presence), not a value.
fn is_item(path: &[crate::field_sets::Element]) -> bool {
    !matches!(path.last(), Some(crate::field_sets::Element::Field(_)))
}

/// Merges an apply configuration into an object: objects field by field, keyed lists item
/// by item, sets as unions; anything else is replaced by the configuration's value.
fn merge_config(live: &mut Value, config: &Value, cursor: Cursor) {
    let (Some(live_map), Some(config_map)) = (live.as_object_mut(), config.as_object()) else {
        *live = config.clone();
        return;
    };
    for (key, value) in config_map {
        match (live_map.get_mut(key), value) {
            (Some(existing @ Value::Object(_)), Value::Object(_)) => merge_config(existing, value, cursor.field(key)),
            (Some(Value::Array(existing)), Value::Array(items)) => merge_list(existing, items, cursor.list(key)),
            _ => {
                live_map.insert(key.clone(), value.clone());
            }
        }
    }
}

fn merge_list(existing: &mut Vec<Value>, items: &[Value], (strategy, item_cursor): (ListStrategy, Cursor)) {
    match strategy {
        ListStrategy::Replace => *existing = items.to_vec(),
        ListStrategy::Set => {
            for item in items {
                if !existing.contains(item) {
                    existing.push(item.clone());
                }
            }
        }
        ListStrategy::ByKey(key) => {
            for item in items {
                match existing.iter_mut().find(|e| e.get(key) == item.get(key)) {
                    Some(found) => merge_config(found, item, item_cursor),
                    None => existing.push(item.clone()),
                }
            }
        }
    }
}

/// The apply configuration in a request body: JSON (what kubectl and client libraries send).
pub fn parse_config(body: &[u8]) -> ApiResult<Value> {
    let config: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!("the apply configuration is not valid JSON (YAML bodies are not accepted): {e}"))
    })?;
    if !config.is_object() {
        return Err(ApiError::BadRequest("the apply configuration is not a JSON object".into()));
    }
    Ok(config)
}

/// The manager's name for writes that do not give `fieldManager`: the client's user agent
/// up to its first `/` (`kubectl`, `OpenAPI-Generator`), as kube-apiserver does.
pub fn manager_from_user_agent(user_agent: &str) -> String {
    let name = user_agent.split('/').next().unwrap_or("").trim();
    if name.is_empty() {
        "unknown".into()
    } else {
        name.chars().take(128).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::find;
    use serde_json::Map;

    fn defs() -> Map<String, Value> {
        json!({
            "D": {"properties": {
                "metadata": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
                "spec": {"$ref": "#/definitions/S"}}},
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {"properties": {}},
            "S": {"properties": {"template": {"$ref": "#/definitions/T"}}},
            "T": {"properties": {"spec": {"$ref": "#/definitions/io.k8s.api.core.v1.PodSpec"}}},
            "io.k8s.api.core.v1.PodSpec": {"properties": {
                "containers": {"type": "array", "items": {"$ref": "#/definitions/io.k8s.api.core.v1.Container"},
                    "x-kubernetes-patch-strategy": "merge", "x-kubernetes-patch-merge-key": "name"}}},
            "io.k8s.api.core.v1.Container": {"properties": {}},
        })
        .as_object()
        .unwrap()
        .clone()
    }

    fn writer(manager: &str) -> Writer<'_> {
        Writer { manager, kind: find("apps", "v1", "deployments").unwrap(), now: "2026-01-01T00:00:00Z" }
    }

    fn config(replicas: i64, labels: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": labels},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "web", "image": "nginx"}]}}}
        })
    }

    fn managers(obj: &Value) -> Vec<(String, String)> {
        entries_of(obj).into_iter().map(|e| (e.manager, e.operation)).collect()
    }

    #[test]
    fn a_first_apply_owns_every_field_it_sets() {
        let defs = defs();
        let cursor = Cursor::at(&defs, "D");
        let obj = created(&config(2, json!({"a": "1"})), writer("me"), cursor);
        let fields = &obj["metadata"]["managedFields"][0];
        assert_eq!((fields["manager"].as_str(), fields["operation"].as_str()), (Some("me"), Some("Apply")));
        assert_eq!(fields["fieldsV1"]["f:spec"]["f:replicas"], json!({}));
        assert_eq!(fields["fieldsV1"]["f:metadata"]["f:labels"]["f:a"], json!({}));
    }

    #[test]
    fn applying_again_merges_and_removes_what_the_manager_dropped() {
        let defs = defs();
        let cursor = Cursor::at(&defs, "D");
        let live = created(&config(2, json!({"a": "1", "b": "2"})), writer("me"), cursor);
        let out = apply(&live, &config(3, json!({"a": "1"})), writer("me"), false, cursor, "web").unwrap();
        assert_eq!(out["spec"]["replicas"], 3);
        assert_eq!(out["metadata"]["labels"], json!({"a": "1"}), "label b was dropped from the configuration");
        let same = apply(&out, &config(3, json!({"a": "1"})), writer("me"), false, cursor, "web").unwrap();
        assert_eq!(same, out, "an unchanged apply changes nothing, not even times");
    }

    #[test]
    fn another_managers_field_conflicts_unless_forced_or_equal() {
        let defs = defs();
        let cursor = Cursor::at(&defs, "D");
        let live = created(&config(2, json!({"a": "1"})), writer("me"), cursor);
        let err = apply(&live, &config(5, json!({"a": "1"})), writer("other"), false, cursor, "web").unwrap_err();
        assert_eq!(err.code(), 409);
        assert_eq!(
            err.to_string(),
            r#"Apply failed with 1 conflict: conflict with "me" using apps/v1: .spec.replicas"#
        );
        // The same value is shared, not a conflict.
        let shared = apply(&live, &config(2, json!({"a": "1"})), writer("other"), false, cursor, "web").unwrap();
        assert_eq!(managers(&shared), [("me".into(), "Apply".into()), ("other".into(), "Apply".into())]);
        let forced = apply(&live, &config(5, json!({"a": "1"})), writer("other"), true, cursor, "web").unwrap();
        assert_eq!(forced["spec"]["replicas"], 5);
        let mine = entries_of(&forced).into_iter().find(|e| e.manager == "me").unwrap();
        assert!(!mine.fields.iter().any(|p| display(p) == ".spec.replicas"), "forcing moves the field");
    }

    #[test]
    fn updates_take_the_fields_they_change_from_appliers() {
        let defs = defs();
        let cursor = Cursor::at(&defs, "D");
        let live = created(&config(2, json!({"a": "1"})), writer("me"), cursor);
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(4);
        track_update(Some(&live), &mut scaled, writer("kubectl"), cursor);
        assert_eq!(managers(&scaled), [("me".into(), "Apply".into()), ("kubectl".into(), "Update".into())]);
        let err = apply(&scaled, &config(2, json!({"a": "1"})), writer("me"), false, cursor, "web").unwrap_err();
        assert!(err.to_string().contains(r#"conflict with "kubectl" using apps/v1: .spec.replicas"#), "{err}");
        // Dropping a field the updater now owns leaves it in place.
        let mut without = config(2, json!({"a": "1"}));
        without["spec"].as_object_mut().unwrap().remove("replicas");
        let out = apply(&scaled, &without, writer("me"), false, cursor, "web").unwrap();
        assert_eq!(out["spec"]["replicas"], 4);
    }

    #[test]
    fn keyed_list_items_merge_by_key() {
        let defs = defs();
        let cursor = Cursor::at(&defs, "D");
        let mut live = created(&config(1, json!({})), writer("me"), cursor);
        live["spec"]["template"]["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80}]);
        let mut two = config(1, json!({}));
        two["spec"]["template"]["spec"]["containers"] =
            json!([{"name": "web", "image": "nginx:2"}, {"name": "side", "image": "b"}]);
        let out = apply(&live, &two, writer("me"), false, cursor, "web").unwrap();
        let containers = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["image"], "nginx:2");
        assert_eq!(containers[0]["ports"], json!([{"containerPort": 80}]), "unapplied fields of an item stay");
        assert_eq!(containers[1]["name"], "side");
    }

    #[test]
    fn configs_must_name_their_type_and_object_and_not_set_managed_fields() {
        let mut ok = config(1, json!({}));
        ok["status"] = json!({"replicas": 9});
        check_config("web", &mut ok).unwrap();
        assert!(ok.get("status").is_none());
        assert_eq!(check_config("other", &mut config(1, json!({}))).unwrap_err().code(), 400);
        let mut typeless = json!({"metadata": {"name": "web"}});
        assert_eq!(check_config("web", &mut typeless).unwrap_err().code(), 400);
        let mut managed = config(1, json!({}));
        managed["metadata"]["managedFields"] = json!([{"manager": "x"}]);
        assert_eq!(check_config("web", &mut managed).unwrap_err().code(), 400);
        assert_eq!(manager_from_user_agent("kubectl/v1.32.0 (linux/amd64)"), "kubectl");
        assert_eq!(manager_from_user_agent(""), "unknown");
    }
}

//! Server-side apply and field ownership (`metadata.managedFields`), on generic JSON.
//!
//! Every write records which manager set which fields: an update hands the fields it
//! changed to its manager (operation `Update`); an apply ([`apply`]) makes the applied
//! configuration the manager's whole set (operation `Apply`), merges it into the live
//! object, removes the fields the manager applied before and no longer does (unless
//! another manager also owns them), and refuses, as a 409 listing each field, to change
//! a field another manager owns unless forced, which moves the field to the applier.

use serde_json::{json, Map, Value};

use crate::api_error::{ApiError, ApiResult, ApplyConflict, Subject};
use crate::field_sets::{
    display, fields_of, from_fields_v1, item_key, remove_at, to_fields_v1, value_at, FieldSet, Path,
};
use crate::kinds::ResourceKind;
use crate::strategic_merge::{Cursor, ListType};

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
    let lookup = with_key_defaults(config, cursor);
    let mut conflicts = Vec::new();
    // A manager's updates are another party than its applies, as in kube-apiserver.
    for entry in entries.iter_mut().filter(|e| !(e.manager == writer.manager && e.operation == "Apply")) {
        let taken: Vec<_> = applied
            .iter()
            .filter(|p| entry.fields.contains(*p) && !is_item(p) && value_at(live, p) != value_at(&lookup, p))
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
    // Shallowest first: a removed list item goes whole, before its key fields could go and
    // leave it unfindable. What another manager owns stays, and so do the key fields of
    // the items that stay.
    dropped.sort_by_key(|p| p.len());
    let mut removed: Vec<&Path> = Vec::new();
    for path in dropped {
        let gone = removed.iter().any(|r| path.starts_with(r));
        let shared = others.iter().any(|o| o.starts_with(path));
        if !gone && !shared && !is_key_field(path) {
            remove_at(&mut merged, path);
            removed.push(path);
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

/// Whether a path names a key field of a keyed list's item (`[name="web"].name`).
fn is_key_field(path: &[crate::field_sets::Element]) -> bool {
    use crate::field_sets::Element;
    match path {
        [.., Element::Key(key), Element::Field(field)] => {
            serde_json::from_str::<Map<String, Value>>(key).is_ok_and(|key| key.contains_key(field))
        }
        _ => false,
    }
}

/// Whether a path names a list item (its presence), not a value.
fn is_item(path: &[crate::field_sets::Element]) -> bool {
    !matches!(path.last(), Some(crate::field_sets::Element::Field(_)))
}

/// Merges an apply configuration into an object: objects field by field (but atomic ones),
/// keyed lists item by item, sets as unions; anything else is replaced by the
/// configuration's value.
fn merge_config(live: &mut Value, config: &Value, cursor: Cursor) {
    let (Some(live_map), Some(config_map)) = (live.as_object_mut(), config.as_object()) else {
        *live = config.clone();
        return;
    };
    for (key, value) in config_map {
        match (live_map.get_mut(key), value) {
            (Some(existing @ Value::Object(_)), Value::Object(_)) if !cursor.is_atomic_field(key) => {
                merge_config(existing, value, cursor.field(key))
            }
            (Some(Value::Array(existing)), Value::Array(items)) => merge_list(existing, items, cursor.list_type(key)),
            _ => {
                live_map.insert(key.clone(), value.clone());
            }
        }
    }
}

fn merge_list(existing: &mut Vec<Value>, items: &[Value], (list_type, item_cursor): (ListType, Cursor)) {
    match list_type {
        ListType::Atomic => *existing = items.to_vec(),
        ListType::Set => {
            for item in items {
                if !existing.contains(item) {
                    existing.push(item.clone());
                }
            }
        }
        ListType::Map(keys) => {
            for item in items {
                let key = item_key(&keys, item, item_cursor);
                match existing.iter_mut().find(|e| item_key(&keys, e, item_cursor) == key) {
                    Some(found) if !item_cursor.is_atomic() => merge_config(found, item, item_cursor),
                    Some(found) => *found = item.clone(),
                    None => existing.push(item.clone()),
                }
            }
        }
    }
}

/// `config` with the key fields its keyed lists' items leave out set to their defaults, so
/// that the paths of its fields ([`fields_of`], which keys items so) find its values.
fn with_key_defaults(config: &Value, cursor: Cursor) -> Value {
    let Some(map) = config.as_object() else { return config.clone() };
    let mut out = Map::new();
    for (key, value) in map {
        let filled = match value {
            Value::Object(_) if !cursor.is_atomic_field(key) => with_key_defaults(value, cursor.field(key)),
            Value::Array(items) => match cursor.list_type(key) {
                (ListType::Map(keys), item_cursor) => {
                    let items = items.iter().map(|item| {
                        let mut item = with_key_defaults(item, item_cursor);
                        if let Some(fields) = item.as_object_mut() {
                            for key in &keys {
                                if let (false, Some(default)) =
                                    (fields.contains_key(*key), item_cursor.key_default(key))
                                {
                                    fields.insert((*key).into(), default);
                                }
                            }
                        }
                        item
                    });
                    Value::Array(items.collect())
                }
                _ => value.clone(),
            },
            _ => value.clone(),
        };
        out.insert(key.clone(), filled);
    }
    Value::Object(out)
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

    /// Server-side apply of custom objects, as the CRD's schema says.
    mod custom {
        use super::*;
        use crate::custom_kinds::{kind_for, Names};

        /// `spec.ports` keyed by name (its `protocol` defaulted), `spec.tags` a set, `spec.args`
        /// atomic (a list without a type), `spec.selector` an atomic map.
        fn schema() -> Value {
            json!({"type": "object", "properties": {
                "spec": {"type": "object", "properties": {
                    "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                        "items": {"type": "object", "required": ["name"], "properties": {
                            "name": {"type": "string"}, "port": {"type": "integer"}}}},
                    "endpoints": {"type": "array", "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["host", "protocol"],
                        "items": {"type": "object", "properties": {
                            "host": {"type": "string"}, "protocol": {"type": "string", "default": "TCP"},
                            "weight": {"type": "integer"}}}},
                    "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                    "args": {"type": "array", "items": {"type": "string"}},
                    "selector": {"type": "object", "x-kubernetes-map-type": "atomic",
                        "additionalProperties": {"type": "string"}}}}}})
        }

        fn writer(manager: &str) -> Writer<'_> {
            let names = Names { plural: "widgets".into(), kind: "Widget".into(), ..Default::default() };
            let kind = kind_for("example.com", "v1", &names, true, false, false);
            Writer { manager, kind, now: "2026-01-01T00:00:00Z" }
        }

        fn widget(spec: Value) -> Value {
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec})
        }

        /// Applies `spec` as `manager` to `live` (creating the object if there is none).
        fn apply_spec(live: Option<&Value>, manager: &str, spec: Value, force: bool) -> ApiResult<Value> {
            let schema = schema();
            let cursor = Cursor::crd(crate::schemas::definitions(), &schema);
            match live {
                None => Ok(created(&widget(spec), writer(manager), cursor)),
                Some(live) => apply(live, &widget(spec), writer(manager), force, cursor, "w"),
            }
        }

        fn fields_of_manager(obj: &Value, manager: &str) -> Value {
            let entries = obj["metadata"]["managedFields"].as_array().cloned().unwrap_or_default();
            let entry = entries.into_iter().find(|e| e["manager"] == manager);
            entry.map(|e| e["fieldsV1"].clone()).unwrap_or(Value::Null)
        }

        #[test]
        fn map_list_items_are_merged_and_owned_by_key() {
            let live = apply_spec(None, "a", json!({"ports": [{"name": "http", "port": 80}]}), false).unwrap();
            let both =
                apply_spec(Some(&live), "b", json!({"ports": [{"name": "metrics", "port": 9090}]}), false).unwrap();
            assert_eq!(both["spec"]["ports"], json!([{"name": "http", "port": 80}, {"name": "metrics", "port": 9090}]));
            assert_eq!(
                fields_of_manager(&both, "a"),
                json!({"f:spec": {"f:ports": {r#"k:{"name":"http"}"#: {".": {}, "f:name": {}, "f:port": {}}}}}),
                "as kube writes it"
            );
            assert_eq!(
                fields_of_manager(&both, "b"),
                json!({"f:spec": {"f:ports": {r#"k:{"name":"metrics"}"#: {".": {}, "f:name": {}, "f:port": {}}}}})
            );

            // Another manager's item: changing its field conflicts, unless forced.
            let take = json!({"ports": [{"name": "metrics", "port": 9090}, {"name": "http", "port": 8080}]});
            let err = apply_spec(Some(&both), "b", take.clone(), false).unwrap_err();
            assert_eq!(err.code(), 409);
            assert_eq!(
                err.to_string(),
                r#"Apply failed with 1 conflict: conflict with "a" using example.com/v1: .spec.ports[name="http"].port"#
            );
            let forced = apply_spec(Some(&both), "b", take, true).unwrap();
            assert_eq!(forced["spec"]["ports"][0], json!({"name": "http", "port": 8080}));
            assert_eq!(
                fields_of_manager(&forced, "a"),
                json!({"f:spec": {"f:ports": {r#"k:{"name":"http"}"#: {".": {}, "f:name": {}}}}}),
                "a keeps the item and its key, b took the port"
            );

            // Dropping an item removes it, but only where no one else manages it.
            let dropped = apply_spec(Some(&both), "a", json!({}), false).unwrap();
            assert_eq!(dropped["spec"]["ports"], json!([{"name": "metrics", "port": 9090}]));
            let shared = apply_spec(Some(&forced), "a", json!({}), false).unwrap();
            assert_eq!(shared["spec"]["ports"][0], json!({"name": "http", "port": 8080}), "b still owns its port");
        }

        #[test]
        fn key_fields_left_out_take_their_defaults() {
            let spec = json!({"endpoints": [{"host": "a.example", "weight": 1}]});
            let mut live = apply_spec(None, "a", spec, false).unwrap();
            // As the CRD's defaults leave it stored.
            live["spec"]["endpoints"][0]["protocol"] = json!("TCP");
            let key = r#"k:{"host":"a.example","protocol":"TCP"}"#;
            assert_eq!(fields_of_manager(&live, "a")["f:spec"]["f:endpoints"][key]["f:weight"], json!({}));
            let err = apply_spec(Some(&live), "b", json!({"endpoints": [{"host": "a.example", "weight": 2}]}), false)
                .unwrap_err();
            assert!(err.to_string().contains(r#".spec.endpoints[host="a.example",protocol="TCP"].weight"#), "{err}");
            let out =
                apply_spec(Some(&live), "b", json!({"endpoints": [{"host": "a.example", "weight": 2}]}), true).unwrap();
            assert_eq!(out["spec"]["endpoints"], json!([{"host": "a.example", "protocol": "TCP", "weight": 2}]));
        }

        #[test]
        fn set_items_are_owned_by_value() {
            let live = apply_spec(None, "a", json!({"tags": ["x"]}), false).unwrap();
            let both = apply_spec(Some(&live), "b", json!({"tags": ["y", "x"]}), false).unwrap();
            assert_eq!(both["spec"]["tags"], json!(["x", "y"]));
            assert_eq!(fields_of_manager(&both, "a"), json!({"f:spec": {"f:tags": {r#"v:"x""#: {}}}}));
            assert_eq!(fields_of_manager(&both, "b"), json!({"f:spec": {"f:tags": {r#"v:"x""#: {}, r#"v:"y""#: {}}}}));
            let dropped = apply_spec(Some(&both), "b", json!({"tags": []}), false).unwrap();
            assert_eq!(dropped["spec"]["tags"], json!(["x"]), "x is still a's");
        }

        #[test]
        fn atomic_lists_and_maps_are_owned_whole() {
            let spec = json!({"args": ["-a", "-b"], "selector": {"app": "w"}});
            let live = apply_spec(None, "a", spec, false).unwrap();
            assert_eq!(fields_of_manager(&live, "a"), json!({"f:spec": {"f:args": {}, "f:selector": {}}}));
            let err =
                apply_spec(Some(&live), "b", json!({"args": ["-c"], "selector": {"tier": "x"}}), false).unwrap_err();
            assert_eq!(
                err.to_string(),
                r#"Apply failed with 2 conflicts: conflicts with "a" using example.com/v1:
- .spec.args
- .spec.selector"#
            );
            let forced =
                apply_spec(Some(&live), "b", json!({"args": ["-c"], "selector": {"tier": "x"}}), true).unwrap();
            assert_eq!(forced["spec"], json!({"args": ["-c"], "selector": {"tier": "x"}}), "replaced, not merged");
            assert_eq!(fields_of_manager(&forced, "a"), Value::Null, "a owns nothing left");
        }

        #[test]
        fn metadata_is_object_meta() {
            let mut config = widget(json!({}));
            config["metadata"]["finalizers"] = json!(["example.com/x"]);
            config["metadata"]["labels"] = json!({"app": "w"});
            let schema = schema();
            let cursor = Cursor::crd(crate::schemas::definitions(), &schema);
            let obj = created(&config, writer("a"), cursor);
            assert_eq!(
                fields_of_manager(&obj, "a")["f:metadata"],
                json!({"f:finalizers": {r#"v:"example.com/x""#: {}}, "f:labels": {"f:app": {}}})
            );
        }
    }

    #[test]
    fn built_in_ports_are_keyed_by_port_and_protocol_and_selectors_are_atomic() {
        let defs = crate::schemas::definitions();
        let cursor = Cursor::at(defs, "io.k8s.api.apps.v1.Deployment");
        let mut deployment = config(1, json!({}));
        deployment["spec"]["selector"] = json!({"matchLabels": {"app": "web"}});
        deployment["spec"]["template"]["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80}]);
        let obj = created(&deployment, writer("me"), cursor);
        let fields = &obj["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"];
        assert_eq!(fields["f:selector"], json!({}));
        let container = &fields["f:template"]["f:spec"]["f:containers"][r#"k:{"name":"web"}"#];
        assert_eq!(
            container["f:ports"][r#"k:{"containerPort":80,"protocol":"TCP"}"#],
            json!({".": {}, "f:containerPort": {}})
        );
    }
}

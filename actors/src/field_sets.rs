//! Sets of field paths, as server-side apply tracks who manages what: the paths of an
//! object's fields, their `FieldsV1` JSON form (`{"f:spec": {"f:replicas": {}}}`) in
//! `metadata.managedFields`, and reading or removing the value at a path.
//!
//! A path walks fields (`f:name`), items of lists merged by key (`k:{"name":"web"}`) and
//! items of lists merged as sets (`v:"x"`), as the kind's schema says
//! (`Cursor::list_type`). Other lists, and maps marked atomic, are one leaf.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::strategic_merge::{Cursor, ListType};

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Element {
    /// A field of an object: `f:name`.
    Field(String),
    /// The item of a keyed list whose key fields are this JSON object: `k:{"name":"web"}`.
    Key(String),
    /// The item of a set of scalars equal to this JSON value: `v:"x"`.
    Value(String),
}

impl Element {
    fn encode(&self) -> String {
        match self {
            Element::Field(name) => format!("f:{name}"),
            Element::Key(key) => format!("k:{key}"),
            Element::Value(value) => format!("v:{value}"),
        }
    }

    fn decode(text: &str) -> Option<Element> {
        let (tag, rest) = text.split_once(':')?;
        match tag {
            "f" => Some(Element::Field(rest.into())),
            "k" => Some(Element::Key(rest.into())),
            "v" => Some(Element::Value(rest.into())),
            _ => None,
        }
    }
}

pub type Path = Vec<Element>;

/// A set of paths: leaves, and the items of keyed lists and sets.
pub type FieldSet = BTreeSet<Path>;

/// Top-level fields no manager owns: identity and bookkeeping the server sets.
const IGNORED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// The paths of every field `obj` sets, but identity, bookkeeping and `status`.
pub fn fields_of(obj: &Value, cursor: Cursor) -> FieldSet {
    let mut out = FieldSet::new();
    let Some(map) = obj.as_object() else { return out };
    for (key, value) in map {
        match key.as_str() {
            "apiVersion" | "kind" | "status" => {}
            "metadata" => {
                let Some(metadata) = value.as_object() else { continue };
                let path = vec![Element::Field("metadata".into())];
                let meta_cursor = cursor.field("metadata");
                for (field, v) in metadata.iter().filter(|(f, _)| !IGNORED_METADATA.contains(&f.as_str())) {
                    walk_field(&path, field, v, meta_cursor, &mut out);
                }
            }
            _ => walk_field(&[], key, value, cursor, &mut out),
        }
    }
    out
}

fn walk_field(prefix: &[Element], field: &str, value: &Value, parent: Cursor, out: &mut FieldSet) {
    let mut path = prefix.to_vec();
    path.push(Element::Field(field.into()));
    match value {
        Value::Object(map) if !map.is_empty() && !parent.is_atomic_field(field) => {
            walk_object(&path, map, parent.field(field), out)
        }
        Value::Array(items) => match parent.list_type(field) {
            (ListType::Map(keys), item_cursor) => {
                for item in items {
                    let Some(item_map) = item.as_object() else { continue };
                    let mut item_path = path.clone();
                    item_path.push(Element::Key(Value::Object(item_key(&keys, item, item_cursor)).to_string()));
                    out.insert(item_path.clone());
                    if !item_cursor.is_atomic() {
                        walk_object(&item_path, item_map, item_cursor, out);
                    }
                }
            }
            (ListType::Set, _) => {
                for item in items {
                    let mut item_path = path.clone();
                    item_path.push(Element::Value(item.to_string()));
                    out.insert(item_path);
                }
            }
            (ListType::Atomic, _) => {
                out.insert(path);
            }
        },
        _ => {
            out.insert(path);
        }
    }
}

fn walk_object(path: &[Element], map: &Map<String, Value>, cursor: Cursor, out: &mut FieldSet) {
    for (field, value) in map {
        walk_field(path, field, value, cursor, out);
    }
}

/// The key of a keyed list's item: its values of the key fields (`{"name":"web"}`), a key
/// field it leaves out taking its schema default (`null` without one). `items` is the
/// cursor of the list's items.
pub(crate) fn item_key(keys: &[&str], item: &Value, items: Cursor) -> Map<String, Value> {
    let mut map = Map::new();
    for key in keys {
        let value = item.get(*key).cloned().or_else(|| items.key_default(key)).unwrap_or(Value::Null);
        map.insert((*key).into(), value);
    }
    map
}

/// The `FieldsV1` JSON of a set: nested objects, `{}` at leaves, `".": {}` where an item
/// with children is itself in the set.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        insert_path(&mut root, path);
    }
    // Members with children need the "." marker; leaves are `{}`.
    for path in set {
        mark_member(&mut root, path);
    }
    Value::Object(root)
}

fn insert_path(node: &mut Map<String, Value>, path: &[Element]) {
    let Some((first, rest)) = path.split_first() else { return };
    let entry = node.entry(first.encode()).or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(child) = entry {
        insert_path(child, rest);
    }
}

fn mark_member(node: &mut Map<String, Value>, path: &[Element]) {
    match path.split_first() {
        None => {
            if !node.is_empty() {
                node.insert(".".into(), Value::Object(Map::new()));
            }
        }
        Some((first, rest)) => {
            if let Some(Value::Object(child)) = node.get_mut(&first.encode()) {
                mark_member(child, rest);
            }
        }
    }
}

/// The set a `FieldsV1` JSON value describes; unknown entries are skipped.
pub fn from_fields_v1(value: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    if let Some(map) = value.as_object() {
        read_node(&mut Vec::new(), map, &mut out);
    }
    out
}

fn read_node(path: &mut Path, map: &Map<String, Value>, out: &mut FieldSet) {
    for (key, child) in map {
        if key == "." {
            out.insert(path.clone());
            continue;
        }
        let Some(element) = Element::decode(key) else { continue };
        path.push(element);
        match child.as_object() {
            Some(children) if !children.is_empty() => read_node(path, children, out),
            _ => {
                out.insert(path.clone());
            }
        }
        path.pop();
    }
}

/// Whether `item` is the keyed-list item the key JSON names.
fn matches_key(item: &Value, key: &str) -> bool {
    let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(key) else { return false };
    fields.iter().all(|(k, v)| item.get(k).unwrap_or(&Value::Null) == v)
}

/// The value at `path` in `obj`, if there is one.
pub fn value_at<'a>(obj: &'a Value, path: &[Element]) -> Option<&'a Value> {
    let mut node = obj;
    for element in path {
        node = match element {
            Element::Field(name) => node.get(name)?,
            Element::Key(key) => node.as_array()?.iter().find(|item| matches_key(item, key))?,
            Element::Value(value) => {
                let wanted: Value = serde_json::from_str(value).ok()?;
                node.as_array()?.iter().find(|item| **item == wanted)?
            }
        };
    }
    Some(node)
}

/// Removes the value at `path` from `obj`, then any object or list it leaves empty on the
/// way up (but never `obj` itself).
pub fn remove_at(obj: &mut Value, path: &[Element]) {
    let Some((last, parent_path)) = path.split_last() else { return };
    let Some(parent) = value_at_mut(obj, parent_path) else { return };
    match (last, parent) {
        (Element::Field(name), Value::Object(map)) => {
            map.remove(name);
        }
        (Element::Key(key), Value::Array(items)) => items.retain(|item| !matches_key(item, key)),
        (Element::Value(value), Value::Array(items)) => {
            if let Ok(wanted) = serde_json::from_str::<Value>(value) {
                items.retain(|item| *item != wanted);
            }
        }
        _ => return,
    }
    let now_empty = value_at(obj, parent_path).is_some_and(|v| match v {
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    });
    if now_empty && !parent_path.is_empty() {
        remove_at(obj, parent_path);
    }
}

fn value_at_mut<'a>(obj: &'a mut Value, path: &[Element]) -> Option<&'a mut Value> {
    let mut node = obj;
    for element in path {
        node = match element {
            Element::Field(name) => node.get_mut(name)?,
            Element::Key(key) => node.as_array_mut()?.iter_mut().find(|item| matches_key(item, key))?,
            Element::Value(value) => {
                let wanted: Value = serde_json::from_str(value).ok()?;
                node.as_array_mut()?.iter_mut().find(|item| **item == wanted)?
            }
        };
    }
    Some(node)
}

/// A path as conflict messages write it: `.spec.containers[name="web"].image`.
pub fn display(path: &[Element]) -> String {
    let mut out = String::new();
    for element in path {
        match element {
            Element::Field(name) => {
                out.push('.');
                out.push_str(name);
            }
            Element::Key(key) => {
                let fields = match serde_json::from_str::<Value>(key) {
                    Ok(Value::Object(fields)) => {
                        fields.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
                    }
                    _ => key.clone(),
                };
                out.push_str(&format!("[{fields}]"));
            }
            Element::Value(value) => out.push_str(&format!("[={value}]")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn defs() -> Map<String, Value> {
        json!({
            "D": {"properties": {
                "metadata": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
                "spec": {"$ref": "#/definitions/io.k8s.api.core.v1.PodSpec"}}},
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {"properties": {
                "finalizers": {"type": "array", "items": {"type": "string"}, "x-kubernetes-patch-strategy": "merge"}}},
            "io.k8s.api.core.v1.PodSpec": {"properties": {
                "containers": {"type": "array", "items": {"$ref": "#/definitions/io.k8s.api.core.v1.Container"},
                    "x-kubernetes-patch-strategy": "merge", "x-kubernetes-patch-merge-key": "name"}}},
            "io.k8s.api.core.v1.Container": {"properties": {"args": {"type": "array"}}},
        })
        .as_object()
        .unwrap()
        .clone()
    }

    fn obj() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "uid": "u", "labels": {"app": "web"}, "finalizers": ["a"]},
            "spec": {"containers": [{"name": "web", "image": "nginx", "args": ["-x"]}], "nodeName": "n1"},
            "status": {"phase": "Running"}
        })
    }

    fn f(name: &str) -> Element {
        Element::Field(name.into())
    }

    #[test]
    fn fields_are_leaves_keyed_items_and_set_members_without_identity_or_status() {
        let defs = defs();
        let set = fields_of(&obj(), Cursor::at(&defs, "D"));
        let web = Element::Key(r#"{"name":"web"}"#.into());
        let expected: FieldSet = [
            vec![f("metadata"), f("labels"), f("app")],
            vec![f("metadata"), f("finalizers"), Element::Value("\"a\"".into())],
            vec![f("spec"), f("containers"), web.clone()],
            vec![f("spec"), f("containers"), web.clone(), f("name")],
            vec![f("spec"), f("containers"), web.clone(), f("image")],
            vec![f("spec"), f("containers"), web, f("args")],
            vec![f("spec"), f("nodeName")],
        ]
        .into_iter()
        .collect();
        assert_eq!(set, expected);
    }

    #[test]
    fn fields_v1_round_trips_with_dot_markers_on_items() {
        let defs = defs();
        let set = fields_of(&obj(), Cursor::at(&defs, "D"));
        let v1 = to_fields_v1(&set);
        assert_eq!(v1["f:spec"]["f:containers"][r#"k:{"name":"web"}"#]["."], json!({}));
        assert_eq!(v1["f:spec"]["f:nodeName"], json!({}));
        assert_eq!(v1["f:metadata"]["f:finalizers"]["v:\"a\""], json!({}));
        assert_eq!(from_fields_v1(&v1), set);
    }

    #[test]
    fn values_are_found_and_removed_by_path() {
        let web = Element::Key(r#"{"name":"web"}"#.into());
        let image = vec![f("spec"), f("containers"), web.clone(), f("image")];
        assert_eq!(value_at(&obj(), &image), Some(&json!("nginx")));
        assert_eq!(display(&image), r#".spec.containers[name="web"].image"#);
        let mut o = obj();
        remove_at(&mut o, &[f("metadata"), f("labels"), f("app")]);
        assert!(o["metadata"].get("labels").is_none(), "an emptied map goes too");
        remove_at(&mut o, &[f("spec"), f("containers"), web]);
        assert!(o["spec"].get("containers").is_none());
        remove_at(&mut o, &[f("metadata"), f("finalizers"), Element::Value("\"a\"".into())]);
        assert!(o["metadata"].get("finalizers").is_none());
        assert_eq!(o["spec"]["nodeName"], "n1");
    }
}

//! The checks kube-apiserver runs on a custom object beside the OpenAPI validation: embedded
//! resources carry `apiVersion` and `kind`, `x-kubernetes-list-type: set` items are unique,
//! and so are the keys of `x-kubernetes-list-type: map` items.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::node;
use super::report::{self, child, index, invalid, key, quoted, shown};
use crate::api_error::FieldCause;

/// Visits every value of `v` that a schema node covers, with that node and its field path
/// (`spec.a`, `spec.m[key]`, `spec.l[0]`), children after their parent.
pub(super) fn walk(v: &Value, s: &Value, path: &str, visit: &mut dyn FnMut(&Value, &Value, &str)) {
    visit(v, s, path);
    match v {
        Value::Object(map) => {
            for (k, sub) in map {
                if let Some(p) = node::property(s, k) {
                    walk(sub, p, &child(path, k), visit);
                } else if let Some(a) = node::additional_schema(s) {
                    walk(sub, a, &key(path, k), visit);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = node::items(s) {
                for (i, item) in items.iter().enumerate() {
                    walk(item, item_schema, &index(path, i), visit);
                }
            }
        }
        _ => {}
    }
}

/// Embedded resources (below the root, which kube-apiserver checks as the object itself)
/// must have a string `apiVersion` that parses as group/version and a string `kind`.
pub(super) fn embedded_resources(obj: &Value, schema: &Value) -> Vec<FieldCause> {
    let mut out = Vec::new();
    walk(obj, schema, "", &mut |v, s, path| {
        if let (false, true, Value::Object(map)) = (path.is_empty(), node::embedded(s), v) {
            out.extend(embedded_resource(map, path));
        }
    });
    out
}

/// The causes of one embedded resource.
fn embedded_resource(map: &Map<String, Value>, path: &str) -> Vec<FieldCause> {
    let mut out = Vec::new();
    for field in ["apiVersion", "kind"] {
        let field_path = child(path, field);
        match map.get(field) {
            None => out.push(FieldCause::required(field_path, "must not be empty")),
            Some(Value::String(s)) if s.is_empty() => out.push(invalid(field_path, quoted(s), "must not be empty")),
            Some(Value::String(s)) if field == "apiVersion" && s.matches('/').count() > 1 => {
                out.push(invalid(field_path, quoted(s), format!("unexpected GroupVersion string: {s}")))
            }
            Some(Value::String(_)) => {}
            Some(other) => out.push(invalid(field_path, shown(other), "must be a string")),
        }
    }
    out
}

/// `x-kubernetes-list-type` `set` and `map`: each repeated item (or key), after its first
/// appearance, is a `Duplicate value`.
pub(super) fn list_sets_and_maps(obj: &Value, schema: &Value, base: &str) -> Vec<FieldCause> {
    let mut out = Vec::new();
    walk(obj, schema, base, &mut |v, s, path| {
        let Value::Array(items) = v else { return };
        match node::list_type(s) {
            Some("set") => {
                for i in repeated(items.iter().map(|item| Some(item.clone()))) {
                    out.push(report::duplicate(index(path, i), shown(&items[i])));
                }
            }
            Some("map") => out.extend(list_map(items, s, path)),
            _ => {}
        }
    });
    out
}

/// The duplicated keys of a list-type map, or why its items are not objects.
fn list_map(items: &[Value], s: &Value, path: &str) -> Vec<FieldCause> {
    if let Some(i) = items.iter().position(|x| !x.is_object() && !x.is_null()) {
        let detail = "must be an object for an array of list-type map";
        return vec![invalid(index(path, i), shown(&items[i]), detail)];
    }
    let keys = node::list_map_keys(s);
    let item_schema = node::items(s);
    // The key of an item: its key fields, a missing one read as its default (if any).
    let key_of = |item: &Value| -> Option<Value> {
        let map = item.as_object()?;
        let mut key = Map::new();
        for k in &keys {
            let default = item_schema.and_then(|is| node::property(is, k)).and_then(node::default_of);
            if let Some(v) = map.get(*k).or(default) {
                key.insert((*k).to_string(), v.clone());
            }
        }
        Some(Value::Object(key))
    };
    repeated(items.iter().map(key_of))
        .into_iter()
        .map(|i| {
            let shown_key = key_of(&items[i]).map_or_else(|| "null".to_string(), |k| k.to_string());
            report::duplicate(index(path, i), shown_key)
        })
        .collect()
}

/// The indices where a value appears for the second time (kube reports each repeat once).
fn repeated(values: impl Iterator<Item = Option<Value>>) -> Vec<usize> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, v) in values.enumerate() {
        let Some(v) = v else { continue };
        let times = seen.entry(canonical(&v)).or_insert(0);
        *times += 1;
        if *times == 2 {
            out.push(i);
        }
    }
    out
}

/// A string equal for equal JSON values (object keys sorted, `1.0` as `1`).
fn canonical(v: &Value) -> String {
    match v {
        Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0 && f.abs() < 9.0e15) && !n.is_i64() => {
            format!("{}", n.as_f64().unwrap_or(0.0) as i64)
        }
        Value::Array(items) => format!("[{}]", items.iter().map(canonical).collect::<Vec<_>>().join(",")),
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let inner: Vec<String> = entries.iter().map(|(k, v)| format!("{}:{}", quoted(k), canonical(v))).collect();
            format!("{{{}}}", inner.join(","))
        }
        other => other.to_string(),
    }
}

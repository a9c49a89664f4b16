//! Pruning: removing the fields of a custom object that its schema does not specify, as
//! kube-apiserver does on every write (and reports as `unknown field` under
//! `fieldValidation` Strict or Warn).

use serde_json::Value;

use super::node::{self, FieldSchema, META_FIELDS};
use super::report::{child, index};

/// Prunes the custom object `obj`; returns the removed fields' paths in document order.
pub(super) fn prune_object(obj: &mut Value, schema: &Value) -> Vec<String> {
    let mut pruned = Vec::new();
    // The object itself is a resource: its apiVersion, kind and metadata always stay.
    prune(obj, Some(schema), true, "", &mut pruned);
    pruned
}

/// Prunes a value under the node `s`, as a resource if `resource`; returns the removed
/// fields' paths relative to the value.
pub(super) fn prune_value(v: &mut Value, s: &Value, resource: bool) -> Vec<String> {
    let mut pruned = Vec::new();
    prune(v, Some(s), resource, "", &mut pruned);
    pruned
}

/// Whether an object under an embedded resource (or the root) keeps `field` whatever the
/// schema says: a string `apiVersion` or `kind`, and `metadata` (kube-apiserver coerces
/// that as ObjectMeta itself).
fn kept_as_meta(field: &str, value: &Value) -> bool {
    match field {
        "apiVersion" | "kind" => value.is_string(),
        "metadata" => value.is_object(),
        _ => false,
    }
}

/// Prunes `v` under the node `s` (`None`: nothing below is known). `resource` marks the
/// custom object itself, pruned as an embedded resource.
fn prune(v: &mut Value, s: Option<&Value>, resource: bool, path: &str, out: &mut Vec<String>) {
    if let Some(s) = s.filter(|s| node::preserves_unknown(s)) {
        skip_prune(v, s, resource, path, out);
        return;
    }
    match v {
        Value::Object(map) => {
            let Some(s) = s else {
                out.extend(map.keys().map(|k| child(path, k)));
                map.clear();
                return;
            };
            let embedded = resource || node::embedded(s);
            let mut unknown = Vec::new();
            for (k, sub) in map.iter_mut() {
                if embedded && kept_as_meta(k, sub) {
                    continue;
                }
                match node::field_schema(s, k) {
                    FieldSchema::Property(p) | FieldSchema::Additional(Some(p)) => {
                        prune(sub, Some(p), false, &child(path, k), out)
                    }
                    // `additionalProperties: true` allows any value as it is.
                    FieldSchema::Additional(None) => {}
                    FieldSchema::Unknown => {
                        // A meta field of the root that is not kept (a non-string kind) goes quietly.
                        if !(path.is_empty() && META_FIELDS.contains(&k.as_str())) {
                            out.push(child(path, k));
                        }
                        unknown.push(k.clone());
                    }
                }
            }
            for k in unknown {
                map.remove(&k);
            }
        }
        Value::Array(items) => {
            let item_schema = s.and_then(node::items);
            for (i, item) in items.iter_mut().enumerate() {
                prune(item, item_schema, false, &index(path, i), out);
            }
        }
        _ => {}
    }
}

/// Below `x-kubernetes-preserve-unknown-fields`: unknown fields stay, but the fields the
/// schema does specify are still pruned inside.
fn skip_prune(v: &mut Value, s: &Value, resource: bool, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            let embedded = resource || node::embedded(s);
            for (k, sub) in map.iter_mut() {
                if embedded && META_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                if let Some(p) = node::schema_of_field(s, k) {
                    prune(sub, Some(p), false, &child(path, k), out);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = node::items(s) {
                for (i, item) in items.iter_mut().enumerate() {
                    skip_prune(item, item_schema, false, &index(path, i), out);
                }
            }
        }
        _ => {}
    }
}

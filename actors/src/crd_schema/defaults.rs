//! Defaulting: filling in the schema's `default`s, as kube-apiserver does after pruning.
//!
//! First the nulls the schema does not allow and cannot default are dropped, then every
//! missing property (and every disallowed null) with a default gets a copy of it, from the
//! top down, so defaults inside a defaulted object apply too.

use serde_json::Value;

use super::node;

/// Defaults the custom object `obj` in place.
pub(super) fn apply(obj: &mut Value, schema: &Value) {
    drop_disallowed_nulls(obj, Some(schema));
    default(obj, Some(schema));
}

/// A null where the schema allows none and has no default to put in its place.
fn disallowed_null(v: &Value, s: Option<&Value>) -> bool {
    v.is_null() && s.is_some_and(|s| !node::nullable(s) && node::default_of(s).is_none())
}

/// Removes object fields that are disallowed nulls (kube's
/// `PruneNonNullableNullsWithoutDefaults`; array elements stay).
fn drop_disallowed_nulls(v: &mut Value, s: Option<&Value>) {
    match v {
        Value::Object(map) => {
            map.retain(|k, sub| !disallowed_null(sub, s.and_then(|s| node::schema_of_field(s, k))));
            for (k, sub) in map.iter_mut() {
                drop_disallowed_nulls(sub, s.and_then(|s| node::schema_of_field(s, k)));
            }
        }
        Value::Array(items) => {
            let item_schema = s.and_then(node::items);
            for item in items {
                drop_disallowed_nulls(item, item_schema);
            }
        }
        _ => {}
    }
}

/// Whether a present value should be replaced by the node's default: a null the node does
/// not allow.
fn replaces(v: &Value, s: &Value) -> bool {
    v.is_null() && !node::nullable(s)
}

/// Applies the defaults of `s` to `v` and below (kube's `structuraldefaulting.Default`).
fn default(v: &mut Value, s: Option<&Value>) {
    let Some(s) = s else { return };
    match v {
        Value::Object(map) => {
            for (name, p) in node::properties(s).into_iter().flatten() {
                let Some(d) = node::default_of(p) else { continue };
                if map.get(name).is_none_or(|x| replaces(x, p)) {
                    map.insert(name.clone(), d.clone());
                }
            }
            let extra = node::additional_schema(s);
            for (k, sub) in map.iter_mut() {
                if let Some(p) = node::property(s, k) {
                    default(sub, Some(p));
                } else if let Some(a) = extra {
                    if let (true, Some(d)) = (replaces(sub, a), node::default_of(a)) {
                        *sub = d.clone();
                    }
                    default(sub, Some(a));
                }
            }
        }
        Value::Array(items) => {
            let Some(item_schema) = node::items(s) else { return };
            for item in items {
                if let (true, Some(d)) = (replaces(item, item_schema), node::default_of(item_schema)) {
                    *item = d.clone();
                }
                default(item, Some(item_schema));
            }
        }
        _ => {}
    }
}

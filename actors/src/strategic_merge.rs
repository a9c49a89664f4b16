//! Kubernetes' strategic merge patch on generic JSON: a merge patch whose lists of
//! structs merge by a key (containers by `name`) where the built-in types say so, with the
//! `$patch`, `$retainKeys`, `$setElementOrder/` and `$deleteFromPrimitiveList/` directives.
//!
//! Which lists merge, and by which key, comes from the `x-kubernetes-patch-strategy` and
//! `x-kubernetes-patch-merge-key` extensions on the fields of the kinds' schemas
//! ([`crate::schemas`], which takes them from the built-in types' Go struct tags).

use serde_json::{Map, Value};

use crate::api_error::{ApiError, ApiResult};

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_PRIMITIVES: &str = "$deleteFromPrimitiveList/";

/// Where the walk is in the kind's schema: the schema of the current value, where known.
#[derive(Clone, Copy)]
pub struct Cursor<'a> {
    defs: &'a Map<String, Value>,
    schema: Option<&'a Value>,
}

/// How a list field is patched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListStrategy<'a> {
    Replace,
    /// Merge as a set of scalars.
    Set,
    /// Merge elements with equal values of the key.
    ByKey(&'a str),
}

impl<'a> Cursor<'a> {
    /// A cursor at the definition `root` of `defs` (a kind's top-level type).
    pub fn at(defs: &'a Map<String, Value>, root: &'a str) -> Self {
        Cursor { defs, schema: defs.get(root) }
    }

    /// A cursor that knows no schema: every list is replaced.
    pub fn unknown(defs: &'a Map<String, Value>) -> Self {
        Cursor { defs, schema: None }
    }

    /// The cursor of a sub-schema, following a `$ref` (bare, or as the one entry of `allOf`).
    fn enter(&self, schema: Option<&'a Value>) -> Cursor<'a> {
        let Some(schema) = schema else { return Cursor::unknown(self.defs) };
        let reference = schema.get("$ref").or_else(|| schema.pointer("/allOf/0/$ref")).and_then(Value::as_str);
        match reference {
            Some(reference) => {
                let name = reference.rsplit('/').next().unwrap_or(reference);
                Cursor { defs: self.defs, schema: self.defs.get(name) }
            }
            None => Cursor { defs: self.defs, schema: Some(schema) },
        }
    }

    /// The cursor of field `name` of the current object (or of a map's values).
    pub(crate) fn field(&self, name: &str) -> Cursor<'a> {
        let field = self
            .schema
            .and_then(|s| s.get("properties").and_then(|p| p.get(name)).or_else(|| s.get("additionalProperties")));
        self.enter(field)
    }

    /// The strategy of list field `name` of the current object, and the cursor of its items.
    pub(crate) fn list(&self, name: &str) -> (ListStrategy<'a>, Cursor<'a>) {
        let items = self.field(name).schema.and_then(|s| s.get("items"));
        let items = self.enter(items);
        let property = self.schema.and_then(|s| s.get("properties")).and_then(|p| p.get(name));
        let extension = |ext: &str| property.and_then(|p| p.get(ext)).and_then(Value::as_str);
        let merges = extension("x-kubernetes-patch-strategy").is_some_and(|s| s.split(',').any(|s| s == "merge"));
        let strategy = match (merges, extension("x-kubernetes-patch-merge-key")) {
            (true, Some(key)) => ListStrategy::ByKey(key),
            (true, None) => ListStrategy::Set,
            (false, _) => ListStrategy::Replace,
        };
        (strategy, items)
    }
}

/// Applies the strategic merge patch `patch` to `original`; both are objects.
pub fn apply(original: &Value, patch: &Value, cursor: Cursor) -> ApiResult<Value> {
    let (Some(original), Some(patch)) = (original.as_object(), patch.as_object()) else {
        return Err(ApiError::BadRequest("a strategic merge patch must be a JSON object".into()));
    };
    let mut merged = original.clone();
    merge_map(&mut merged, patch, cursor)?;
    Ok(Value::Object(merged))
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::BadRequest(message.into())
}

fn merge_map(original: &mut Map<String, Value>, patch: &Map<String, Value>, cursor: Cursor) -> ApiResult<()> {
    match patch.get(PATCH) {
        None => {}
        Some(Value::String(d)) if d == "merge" => {}
        Some(Value::String(d)) if d == "replace" => {
            let mut replaced = Map::new();
            let rest: Map<String, Value> =
                patch.iter().filter(|(k, _)| *k != PATCH).map(|(k, v)| (k.clone(), v.clone())).collect();
            merge_map(&mut replaced, &rest, cursor)?;
            *original = replaced;
            return Ok(());
        }
        Some(Value::String(d)) if d == "delete" => {
            original.clear();
            return Ok(());
        }
        Some(other) => return Err(bad(format!("Unknown patch type: {other}"))),
    }
    if let Some(retain) = patch.get(RETAIN_KEYS) {
        let keys: Vec<&str> = match retain.as_array() {
            Some(keys) => keys.iter().filter_map(Value::as_str).collect(),
            None => return Err(bad("invalid patch: $retainKeys must be a list of strings")),
        };
        if let Some(extra) = patch.keys().find(|k| !k.starts_with('$') && !keys.contains(&k.as_str())) {
            return Err(ApiError::InvalidPatch(format!(
                "doesn't match the retain keys: {extra} is in the patch but not in $retainKeys"
            )));
        }
        original.retain(|k, _| keys.contains(&k.as_str()));
    }
    for (key, values) in patch.iter().filter(|(k, _)| k.starts_with(DELETE_PRIMITIVES)) {
        let field = &key[DELETE_PRIMITIVES.len()..];
        let Some(values) = values.as_array() else {
            return Err(bad(format!("invalid patch: {key} must be a list")));
        };
        if let Some(Value::Array(list)) = original.get_mut(field) {
            list.retain(|v| !values.contains(v));
        }
    }
    for (key, value) in patch.iter().filter(|(k, _)| !k.starts_with('$')) {
        if value.is_null() {
            original.remove(key);
            continue;
        }
        let order = patch.get(&format!("{SET_ORDER}{key}")).and_then(Value::as_array);
        let slot = original.entry(key.clone()).or_insert(Value::Null);
        match (slot, value) {
            (Value::Object(o), Value::Object(p)) => merge_map(o, p, cursor.field(key))?,
            (Value::Array(o), Value::Array(p)) => merge_list(o, p, cursor.list(key), order)?,
            (slot, Value::Object(p)) => {
                let mut fresh = Map::new();
                merge_map(&mut fresh, p, cursor.field(key))?;
                *slot = Value::Object(fresh);
            }
            (slot, Value::Array(p)) => {
                let mut fresh = Vec::new();
                merge_list(&mut fresh, p, cursor.list(key), order)?;
                *slot = Value::Array(fresh);
            }
            (slot, scalar) => *slot = scalar.clone(),
        }
    }
    // `$setElementOrder` of a list the patch leaves alone still orders it.
    for (key, order) in patch.iter().filter(|(k, _)| k.starts_with(SET_ORDER)) {
        let field = &key[SET_ORDER.len()..];
        if patch.contains_key(field) {
            continue;
        }
        if let (Some(Value::Array(list)), Some(order)) = (original.get_mut(field), order.as_array()) {
            let (strategy, _) = cursor.list(field);
            reorder(list, order, strategy);
        }
    }
    Ok(())
}

fn merge_list(
    original: &mut Vec<Value>,
    patch: &[Value],
    (strategy, items): (ListStrategy, Cursor),
    order: Option<&Vec<Value>>,
) -> ApiResult<()> {
    let replace_marker = |v: &Value| v.get(PATCH).and_then(Value::as_str) == Some("replace");
    if strategy == ListStrategy::Replace || patch.iter().any(replace_marker) {
        let mut fresh = Vec::with_capacity(patch.len());
        let delete_marker = |v: &Value| v.get(PATCH).and_then(Value::as_str) == Some("delete");
        for value in patch.iter().filter(|v| !replace_marker(v) && !delete_marker(v)) {
            fresh.push(without_directives(value, items)?);
        }
        *original = fresh;
        return Ok(());
    }
    match strategy {
        ListStrategy::Replace => {}
        ListStrategy::Set => {
            for value in patch {
                if value.is_object() || value.is_array() {
                    return Err(bad("invalid patch: a merging list of scalars holds an object or list"));
                }
                if !original.contains(value) {
                    original.push(value.clone());
                }
            }
        }
        ListStrategy::ByKey(key) => {
            for value in patch {
                let Some(element) = value.as_object() else {
                    return Err(bad(format!("invalid patch: the elements of a list merged by {key} must be objects")));
                };
                let Some(id) = element.get(key) else {
                    return Err(bad(format!("map: {value} does not contain declared merge key: {key}")));
                };
                let position = original.iter().position(|o| o.get(key) == Some(id));
                if element.get(PATCH).and_then(Value::as_str) == Some("delete") {
                    original.retain(|o| o.get(key) != Some(id));
                    continue;
                }
                match position.map(|i| &mut original[i]) {
                    Some(Value::Object(existing)) => merge_map(existing, element, items)?,
                    _ => original.push(without_directives(value, items)?),
                }
            }
        }
    }
    if let Some(order) = order {
        reorder(original, order, strategy);
    }
    Ok(())
}

/// A patch value as a fresh value: directives applied to nothing, nulls dropped.
fn without_directives(value: &Value, cursor: Cursor) -> ApiResult<Value> {
    match value {
        Value::Object(p) => {
            let mut fresh = Map::new();
            merge_map(&mut fresh, p, cursor)?;
            Ok(Value::Object(fresh))
        }
        other => Ok(other.clone()),
    }
}

/// Orders `list` as `$setElementOrder` says; elements it does not name keep their relative
/// order after the named ones.
fn reorder(list: &mut Vec<Value>, order: &[Value], strategy: ListStrategy) {
    let identity = |v: &Value| -> Value {
        match strategy {
            ListStrategy::ByKey(key) => v.get(key).cloned().unwrap_or(Value::Null),
            _ => v.clone(),
        }
    };
    let wanted: Vec<Value> = order.iter().map(&identity).collect();
    let mut named: Vec<(usize, Value)> = Vec::new();
    let mut rest = Vec::new();
    for v in list.drain(..) {
        match wanted.iter().position(|w| *w == identity(&v)) {
            Some(i) => named.push((i, v)),
            None => rest.push(v),
        }
    }
    named.sort_by_key(|(i, _)| *i);
    list.extend(named.into_iter().map(|(_, v)| v));
    list.extend(rest);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A small schema: Deployment -> spec -> template -> PodSpec -> containers -> Container.
    fn defs() -> Map<String, Value> {
        let defs = json!({
            "io.k8s.api.apps.v1.Deployment": {"properties": {
                "metadata": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
                "spec": {"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"}}},
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {"properties": {
                "finalizers": {"type": "array", "items": {"type": "string"}, "x-kubernetes-patch-strategy": "merge"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}}}},
            "io.k8s.api.apps.v1.DeploymentSpec": {"properties": {
                "template": {"$ref": "#/components/schemas/io.k8s.api.core.v1.PodTemplateSpec"}}},
            "io.k8s.api.core.v1.PodTemplateSpec": {"properties": {
                "spec": {"$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec"}}},
            "io.k8s.api.core.v1.PodSpec": {"properties": {
                "containers": {"type": "array", "items": {"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"},
                    "x-kubernetes-patch-strategy": "merge", "x-kubernetes-patch-merge-key": "name"},
                "tolerations": {"type": "array", "items": {"type": "object"}}}},
            "io.k8s.api.core.v1.Container": {"properties": {
                "args": {"type": "array", "items": {"type": "string"}},
                "env": {"type": "array", "items": {"type": "object"}},
                "ports": {"type": "array", "items": {"type": "object"}}}},
        });
        defs.as_object().unwrap().clone()
    }

    fn deployment() -> Value {
        json!({
            "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}, "finalizers": ["a"]},
            "spec": {"replicas": 2, "template": {"spec": {
                "containers": [
                    {"name": "web", "image": "nginx:1", "env": [{"name": "A", "value": "1"}], "args": ["-x"]},
                    {"name": "side", "image": "busybox"}
                ],
                "tolerations": [{"key": "k"}]
            }}}
        })
    }

    fn patch(original: &Value, patch: Value) -> ApiResult<Value> {
        let defs = defs();
        apply(original, &patch, Cursor::at(&defs, "io.k8s.api.apps.v1.Deployment"))
    }

    fn containers(v: &Value) -> &Value {
        &v["spec"]["template"]["spec"]["containers"]
    }

    #[test]
    fn maps_merge_and_nulls_delete() {
        let out =
            patch(&deployment(), json!({"metadata": {"labels": {"tier": null, "new": "x"}}, "spec": {"replicas": 3}}))
                .unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"app": "web", "new": "x"}));
        assert_eq!(out["spec"]["replicas"], 3);
        assert_eq!(containers(&out).as_array().unwrap().len(), 2);
    }

    #[test]
    fn containers_merge_by_name_and_other_lists_are_replaced() {
        let p = json!({"spec": {"template": {"spec": {
            "containers": [{"name": "web", "image": "nginx:2", "args": ["-y"]}, {"name": "new", "image": "x"}],
            "tolerations": [{"key": "other"}]
        }}}});
        let out = patch(&deployment(), p).unwrap();
        let c = containers(&out);
        assert_eq!(
            c[0],
            json!({"name": "web", "image": "nginx:2", "env": [{"name": "A", "value": "1"}], "args": ["-y"]})
        );
        assert_eq!(c[1]["name"], "side");
        assert_eq!(c[2], json!({"name": "new", "image": "x"}));
        assert_eq!(out["spec"]["template"]["spec"]["tolerations"], json!([{"key": "other"}]));
    }

    #[test]
    fn patch_delete_removes_a_list_element_and_replace_swaps_the_list() {
        let p = json!({"spec": {"template": {"spec": {"containers": [{"name": "side", "$patch": "delete"}]}}}});
        let out = patch(&deployment(), p).unwrap();
        assert_eq!(containers(&out).as_array().unwrap().len(), 1);
        let p = json!({"spec": {"template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "i"}]}}}});
        let out = patch(&deployment(), p).unwrap();
        assert_eq!(containers(&out), &json!([{"name": "only", "image": "i"}]));
    }

    #[test]
    fn map_directives_replace_and_delete() {
        let out = patch(&deployment(), json!({"metadata": {"labels": {"$patch": "replace", "only": "1"}}})).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"only": "1"}));
        let out = patch(&deployment(), json!({"metadata": {"labels": {"$patch": "delete"}}})).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({}));
        assert_eq!(patch(&deployment(), json!({"$patch": "bogus"})).unwrap_err().code(), 400);
    }

    #[test]
    fn scalar_sets_merge_and_delete_from_primitive_list() {
        let out = patch(&deployment(), json!({"metadata": {"finalizers": ["b", "a"]}})).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b"]));
        let out = patch(&deployment(), json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}})).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!([]));
    }

    #[test]
    fn retain_keys_clears_what_it_does_not_name() {
        let original = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let out =
            patch(&original, json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}})).unwrap();
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        let err = patch(&original, json!({"spec": {"strategy": {"$retainKeys": ["type"], "other": 1}}})).unwrap_err();
        assert_eq!(err.code(), 422);
    }

    #[test]
    fn set_element_order_orders_merged_lists() {
        let p = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "side"}, {"name": "web"}],
            "containers": [{"name": "web", "image": "nginx:3"}]
        }}}});
        let out = patch(&deployment(), p).unwrap();
        assert_eq!(containers(&out)[0]["name"], "side");
        assert_eq!(containers(&out)[1]["image"], "nginx:3");
    }

    #[test]
    fn new_values_lose_directives_and_nulls() {
        let original = json!({"metadata": {"name": "x"}});
        let p =
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "gone": null, "$patch": "merge"}]}}}});
        let out = patch(&original, p).unwrap();
        assert_eq!(containers(&out), &json!([{"name": "a"}]));
    }

    #[test]
    fn malformed_patches_are_bad_requests() {
        let no_key = json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}});
        assert_eq!(patch(&deployment(), no_key).unwrap_err().code(), 400);
        assert_eq!(patch(&deployment(), json!([1])).unwrap_err().code(), 400);
    }

    #[test]
    fn without_a_schema_lists_are_replaced() {
        let defs = Map::new();
        let out = apply(&deployment(), &json!({"metadata": {"finalizers": ["b"]}}), Cursor::unknown(&defs)).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
        let p =
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}, {"name": "b", "$patch": "delete"}]}}}});
        let out = apply(&deployment(), &p, Cursor::unknown(&defs)).unwrap();
        assert_eq!(containers(&out), &json!([{"name": "a"}]), "a deleted element of a replaced list is left out");
    }
}

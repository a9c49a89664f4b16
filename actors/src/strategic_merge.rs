//! Kubernetes' strategic merge patch on generic JSON: a merge patch whose lists of
//! structs merge by a key (containers by `name`) where the built-in types say so, with the
//! `$patch`, `$retainKeys`, `$setElementOrder/` and `$deleteFromPrimitiveList/` directives.
//!
//! Which lists merge, and by which key, comes from the `x-kubernetes-patch-strategy` and
//! `x-kubernetes-patch-merge-key` extensions on the fields of the kinds' schemas
//! ([`crate::schemas`], which takes them from the built-in types' Go struct tags).
//!
//! The schema [`Cursor`] also serves server-side apply ([`crate::apply`]): it walks a
//! built-in kind's definitions or a CRD's `openAPIV3Schema` and says, as kube's
//! structured-merge-diff does, which lists are maps by key, sets or atomic and which maps
//! are atomic.

use serde_json::{Map, Value};

use crate::api_error::{ApiError, ApiResult};

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_PRIMITIVES: &str = "$deleteFromPrimitiveList/";

/// Where the walk is in a kind's schema: the schema of the current value, where known.
///
/// It walks one of two trees: the built-in kinds' definitions ([`crate::schemas`]), whose
/// fields name other definitions by `$ref` ([`Cursor::at`]), or a CustomResourceDefinition's
/// self-contained `openAPIV3Schema` ([`Cursor::crd`]), whose objects' `metadata` (at the
/// root, and in `x-kubernetes-embedded-resource` objects) is the built-in ObjectMeta.
#[derive(Clone, Copy)]
pub struct Cursor<'a> {
    defs: &'a Map<String, Value>,
    schema: Option<&'a Value>,
    tree: Tree,
}

/// Which tree a [`Cursor`] walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tree {
    /// The built-in definitions, joined by `$ref`.
    Definitions,
    /// Inside a CRD's schema.
    Crd,
    /// A CRD schema's root or an embedded resource in it: `metadata` is ObjectMeta.
    CrdObject,
}

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// How a list field is patched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListStrategy<'a> {
    Replace,
    /// Merge as a set of scalars.
    Set,
    /// Merge elements with equal values of the key.
    ByKey(&'a str),
}

/// How server-side apply treats a list: structured-merge-diff's element relationship, from
/// `x-kubernetes-list-type` and `x-kubernetes-list-map-keys`, else the patch strategy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ListType<'a> {
    /// One value, owned and replaced whole (lists without a type).
    Atomic,
    /// Items owned and merged by value: `v:"a"`.
    Set,
    /// Items owned and merged by the values of these key fields: `k:{"name":"a"}`.
    Map(Vec<&'a str>),
}

/// What kube-apiserver's OpenAPI says of some built-in lists (the `+listType=map` and
/// `+listMapKey` Go tags) and k8s-openapi's schemas leave out, where its keys differ from
/// the patch merge key: `(definition, field, keys)`.
const LIST_MAP_KEYS: &[(&str, &str, &[&str])] = &[
    ("io.k8s.api.core.v1.Container", "ports", &["containerPort", "protocol"]),
    ("io.k8s.api.core.v1.EphemeralContainer", "ports", &["containerPort", "protocol"]),
    ("io.k8s.api.core.v1.ServiceSpec", "ports", &["port", "protocol"]),
    ("io.k8s.api.core.v1.PodSpec", "topologySpreadConstraints", &["topologyKey", "whenUnsatisfiable"]),
    ("io.k8s.api.core.v1.ResourceRequirements", "claims", &["name"]),
];

/// Built-in types kube-apiserver's OpenAPI marks `x-kubernetes-map-type: atomic` (the
/// `+structType=atomic` Go tag) and k8s-openapi's schemas do not: owned and applied whole.
const ATOMIC_DEFINITIONS: &[&str] = &[
    "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector",
    "io.k8s.api.core.v1.LocalObjectReference",
    "io.k8s.api.core.v1.ObjectReference",
    "io.k8s.api.core.v1.TypedLocalObjectReference",
    "io.k8s.api.core.v1.SecretReference",
    "io.k8s.api.core.v1.NodeSelector",
    "io.k8s.api.core.v1.NodeSelectorTerm",
    "io.k8s.api.core.v1.TopologySelectorTerm",
    "io.k8s.api.core.v1.ConfigMapKeySelector",
    "io.k8s.api.core.v1.SecretKeySelector",
    "io.k8s.api.core.v1.ObjectFieldSelector",
    "io.k8s.api.core.v1.ResourceFieldSelector",
];

/// Built-in map fields marked `x-kubernetes-map-type: atomic` (`+mapType=atomic`).
const ATOMIC_FIELDS: &[(&str, &str)] = &[("io.k8s.api.core.v1.PodSpec", "nodeSelector")];

impl<'a> Cursor<'a> {
    /// A cursor at the definition `root` of `defs` (a kind's top-level type).
    pub fn at(defs: &'a Map<String, Value>, root: &'a str) -> Self {
        Cursor { defs, schema: defs.get(root), tree: Tree::Definitions }
    }

    /// A cursor that knows no schema: every list is replaced.
    pub fn unknown(defs: &'a Map<String, Value>) -> Self {
        Cursor { defs, schema: None, tree: Tree::Definitions }
    }

    /// A cursor at the root of a CRD version's `openAPIV3Schema`; `defs` are the built-in
    /// definitions, where `metadata` (ObjectMeta) is found.
    pub fn crd(defs: &'a Map<String, Value>, schema: &'a Value) -> Self {
        Cursor { defs, schema: Some(schema), tree: Tree::CrdObject }
    }

    /// Whether `schema` is the definition `name`.
    fn is_definition(&self, schema: &Value, name: &str) -> bool {
        self.tree == Tree::Definitions && self.defs.get(name).is_some_and(|d| std::ptr::eq(d, schema))
    }

    /// The cursor of a sub-schema, following a `$ref` (bare, or as the one entry of `allOf`).
    fn enter(&self, schema: Option<&'a Value>) -> Cursor<'a> {
        let Some(schema) = schema.filter(|s| s.is_object()) else {
            return Cursor { defs: self.defs, schema: None, tree: self.inner_tree() };
        };
        if self.tree != Tree::Definitions {
            let embedded = schema.get("x-kubernetes-embedded-resource").and_then(Value::as_bool) == Some(true);
            let tree = if embedded { Tree::CrdObject } else { Tree::Crd };
            return Cursor { defs: self.defs, schema: Some(schema), tree };
        }
        let reference = schema.get("$ref").or_else(|| schema.pointer("/allOf/0/$ref")).and_then(Value::as_str);
        match reference {
            Some(reference) => {
                let name = reference.rsplit('/').next().unwrap_or(reference);
                Cursor { schema: self.defs.get(name), ..*self }
            }
            None => Cursor { schema: Some(schema), ..*self },
        }
    }

    /// The tree below the current node.
    fn inner_tree(&self) -> Tree {
        match self.tree {
            Tree::Definitions => Tree::Definitions,
            Tree::Crd | Tree::CrdObject => Tree::Crd,
        }
    }

    /// The schema of field `name` of the current object, or of a map's values, as written.
    fn property(&self, name: &str) -> Option<&'a Value> {
        let schema = self.schema?;
        schema.get("properties").and_then(|p| p.get(name)).or_else(|| schema.get("additionalProperties"))
    }

    /// The cursor of field `name` of the current object (or of a map's values).
    pub(crate) fn field(&self, name: &str) -> Cursor<'a> {
        if self.tree == Tree::CrdObject && name == "metadata" {
            return Cursor { defs: self.defs, schema: self.defs.get(OBJECT_META), tree: Tree::Definitions };
        }
        self.enter(self.property(name))
    }

    /// Whether the current object is one value to server-side apply: a map or struct marked
    /// `x-kubernetes-map-type: atomic`. Maps are granular otherwise.
    pub(crate) fn is_atomic(&self) -> bool {
        let Some(schema) = self.schema else { return false };
        schema.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic")
            || ATOMIC_DEFINITIONS.iter().any(|d| self.is_definition(schema, d))
    }

    /// Whether field `name` of the current object is one value to server-side apply (see
    /// [`Cursor::is_atomic`]).
    pub(crate) fn is_atomic_field(&self, name: &str) -> bool {
        let listed =
            self.schema.is_some_and(|s| ATOMIC_FIELDS.iter().any(|(d, f)| *f == name && self.is_definition(s, d)));
        listed || self.field(name).is_atomic()
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

    /// How server-side apply treats list field `name` of the current object, and the cursor
    /// of its items, as kube's schema conversion decides: `x-kubernetes-list-type` (and its
    /// `x-kubernetes-list-map-keys`) first, then a merging patch strategy (by its merge key,
    /// or as a set without one); atomic otherwise.
    pub(crate) fn list_type(&self, name: &str) -> (ListType<'a>, Cursor<'a>) {
        let field = self.field(name);
        let items = field.enter(field.schema.and_then(|s| s.get("items")));
        if let Some(schema) = self.schema {
            let listed = LIST_MAP_KEYS.iter().find(|(d, f, _)| *f == name && self.is_definition(schema, d));
            if let Some((_, _, keys)) = listed {
                return (ListType::Map(keys.to_vec()), items);
            }
        }
        let property = self.property(name);
        let extension = |ext: &str| property.and_then(|p| p.get(ext));
        let text = |ext: &str| extension(ext).and_then(Value::as_str);
        let list_type = match text("x-kubernetes-list-type") {
            Some("atomic") => ListType::Atomic,
            Some("set") => ListType::Set,
            Some("map") => {
                let keys = extension("x-kubernetes-list-map-keys").and_then(Value::as_array);
                let keys: Vec<&'a str> = keys.map(|k| k.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
                if keys.is_empty() {
                    ListType::Atomic
                } else {
                    ListType::Map(keys)
                }
            }
            _ => {
                let merges = text("x-kubernetes-patch-strategy").is_some_and(|s| s.split(',').any(|s| s == "merge"));
                match (merges, text("x-kubernetes-patch-merge-key")) {
                    (true, Some(key)) => ListType::Map(vec![key]),
                    (true, None) => ListType::Set,
                    (false, _) => ListType::Atomic,
                }
            }
        };
        (list_type, items)
    }

    /// The value a keyed list's item has for key field `key` when it leaves it out: the
    /// field's schema default (kube-apiserver's OpenAPI defaults the `protocol` keys of
    /// ports to `TCP`, which k8s-openapi's schemas leave out).
    pub(crate) fn key_default(&self, key: &str) -> Option<Value> {
        let property = self.schema.and_then(|s| s.get("properties")).and_then(|p| p.get(key));
        match property.and_then(|p| p.get("default")) {
            Some(value) => Some(value.clone()),
            None if self.tree == Tree::Definitions && key == "protocol" => Some(Value::String("TCP".into())),
            None => None,
        }
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
    fn apply_list_types_prefer_the_list_type_to_the_patch_strategy() {
        let defs = defs();
        let pod_spec = Cursor::at(&defs, "io.k8s.api.core.v1.PodSpec");
        assert_eq!(pod_spec.list_type("containers").0, ListType::Map(vec!["name"]));
        assert_eq!(pod_spec.list_type("tolerations").0, ListType::Atomic);
        let meta = Cursor::at(&defs, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta");
        assert_eq!(meta.list_type("finalizers").0, ListType::Set);
        let real = crate::schemas::definitions();
        let container = Cursor::at(real, "io.k8s.api.core.v1.Container");
        assert_eq!(container.list_type("ports").0, ListType::Map(vec!["containerPort", "protocol"]));
        assert_eq!(container.list_type("ports").1.key_default("protocol"), Some(json!("TCP")));

        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "a": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name", "port"],
                "x-kubernetes-patch-strategy": "merge", "x-kubernetes-patch-merge-key": "name",
                "items": {"type": "object", "properties": {"name": {"type": "string", "default": "x"}}}},
            "s": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "l": {"type": "array", "items": {"type": "string"}},
            "m": {"type": "object", "x-kubernetes-map-type": "atomic"},
            "e": {"type": "object", "x-kubernetes-embedded-resource": true}}}}});
        let spec = Cursor::crd(&defs, &schema).field("spec");
        let (a, items) = spec.list_type("a");
        assert_eq!(a, ListType::Map(vec!["name", "port"]));
        assert_eq!(items.key_default("name"), Some(json!("x")));
        assert_eq!(spec.list_type("s").0, ListType::Set);
        assert_eq!(spec.list_type("l").0, ListType::Atomic);
        assert!(spec.is_atomic_field("m") && !spec.is_atomic_field("e"));
        assert_eq!(spec.field("e").field("metadata").list_type("finalizers").0, ListType::Set, "embedded metadata");
        assert_eq!(Cursor::crd(&defs, &schema).field("metadata").list_type("finalizers").0, ListType::Set);
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

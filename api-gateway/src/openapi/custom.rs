//! The OpenAPI definitions of custom resources, built from their CRDs' schemas as
//! kube-apiserver's CRD OpenAPI builder (`apiextensions-apiserver/pkg/controller/openapi/builder`)
//! does:
//!
//! - named `{reversed group}.{version}.{Kind}` (`com.kuar.beta.v1.LoadTest`) and `...List`;
//! - the version's `openAPIV3Schema` with `apiVersion`, `kind` and `metadata` (a reference to
//!   `ObjectMeta`) set as properties, the same three on every `x-kubernetes-embedded-resource`,
//!   `x-kubernetes-int-or-string` unfolded into `anyOf: [integer, string]`, and
//!   `x-kubernetes-group-version-kind`;
//! - for Swagger 2.0, first made what kubectl's v2 models read (`ToStructuralOpenAPIV2`): no
//!   `allOf`/`anyOf`/`oneOf`/`not`, nullable and unknown-field-preserving schemas untyped, and
//!   no defaults; a kind that preserves unknown fields at its root is a bare `type: object`.
//!
//! References are written in the OpenAPI 3 form; the v2 document rewrites them.

use std::sync::Arc;

use actors::custom_kinds::{self, CustomKind, CustomVersion};
use actors::kinds::ResourceKind;
use actors::schemas;
use serde_json::{json, Map, Value};

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const METADATA_DOC: &str =
    "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const LIST_METADATA_DOC: &str =
    "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
const API_VERSION_DOC: &str = "APIVersion defines the versioned schema of this representation of an object. Servers \
should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: \
https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const KIND_DOC: &str = "Kind is a string value representing the REST resource this object represents. Servers may \
infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: \
https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
const EMBEDDED_API_VERSION_DOC: &str = "apiVersion defines the versioned schema of this representation of an object. \
More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const EMBEDDED_KIND_DOC: &str = "kind is a string value representing the type of this object. In CamelCase. More \
info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

/// `com.kuar.beta.v1.LoadTest` for `beta.kuar.com`/`v1`/`LoadTest`: kube's REST-friendly name.
pub(super) fn definition_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

/// The definition names of a custom kind's objects and lists; `None` for a kind that is not
/// a served version of a custom resource.
pub(super) fn names_of(kind: &ResourceKind) -> Option<(&'static str, &'static str)> {
    let custom = custom_kinds::of(kind)?;
    custom.version(kind.version)?;
    let object = definition_name(kind.group, kind.version, kind.kind);
    let list = format!("{object}List");
    // Interned: bounded by the distinct custom kinds ever served, as their `ResourceKind`s.
    Some((custom_kinds::intern(&object), custom_kinds::intern(&list)))
}

/// The definitions of every served version of every custom kind, by name; `v2`: in the form
/// the Swagger 2.0 document takes (references still in the OpenAPI 3 form).
pub(super) fn definitions(kinds: &[Arc<CustomKind>], v2: bool) -> Map<String, Value> {
    let mut out = Map::new();
    for custom in kinds {
        for version in &custom.versions {
            let k = version.kind;
            let name = definition_name(k.group, k.version, k.kind);
            out.insert(format!("{name}List"), list_schema(k, &name));
            out.insert(name, object_schema(custom, version, v2));
        }
    }
    out
}

/// The schema of one version's objects.
fn object_schema(custom: &CustomKind, version: &CustomVersion, v2: bool) -> Value {
    let k = version.kind;
    let schema = version.schema.as_ref().filter(|s| s.is_object());
    let preserves_root = custom.preserve_unknown_fields || schema.is_some_and(preserves_unknown_fields);
    let mut out = match schema {
        Some(schema) if !(v2 && preserves_root) => {
            let mut schema = schema.clone();
            unfold_int_or_string(&mut schema);
            if v2 {
                to_structural_v2(&mut schema);
                prune_defaults(&mut schema);
            }
            if let Some(map) = schema.as_object_mut() {
                let properties = map.entry("properties").or_insert_with(|| json!({}));
                if let Some(properties) = properties.as_object_mut() {
                    properties.insert("metadata".into(), described_ref(OBJECT_META, METADATA_DOC));
                    properties.insert("apiVersion".into(), type_meta("apiVersion", API_VERSION_DOC));
                    properties.insert("kind".into(), type_meta("kind", KIND_DOC));
                }
            }
            add_embedded_properties(&mut schema, v2);
            schema
        }
        // No schema, or (for v2) one that keeps unknown fields: kubectl must not read it as
        // closed to all but apiVersion, kind and metadata.
        _ => json!({"type": "object"}),
    };
    if let Some(map) = out.as_object_mut() {
        map.insert(schemas::GVK_EXTENSION.into(), schemas::gvk_list(k.group, k.version, k.kind));
    }
    out
}

/// The schema of one version's lists (`LoadTestList`). The CRD's own `listKind` is not kept
/// by the registry, so it is kube's default: the Kind and `List`.
fn list_schema(k: &ResourceKind, object: &str) -> Value {
    let list_kind = format!("{}List", k.kind);
    let items_doc = format!(
        "List of {}. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md",
        k.resource
    );
    json!({
        "description": format!("{list_kind} is a list of {}", k.kind),
        "required": ["items"],
        "properties": {
            "apiVersion": type_meta("apiVersion", API_VERSION_DOC),
            "kind": type_meta("kind", KIND_DOC),
            "items": {"type": "array", "items": {"$ref": format!("{}{object}", schemas::V3_REF_PREFIX)}, "description": items_doc},
            "metadata": described_ref(schemas::LIST_META, LIST_METADATA_DOC),
        },
        (schemas::GVK_EXTENSION): schemas::gvk_list(k.group, k.version, &list_kind),
    })
}

/// A reference with a description beside it, as kube writes one in OpenAPI 3.
fn described_ref(name: &str, description: &str) -> Value {
    json!({"allOf": [{"$ref": format!("{}{name}", schemas::V3_REF_PREFIX)}], "description": description})
}

/// `TypeMeta`'s `apiVersion` or `kind` property (as the built-in kinds have it).
fn type_meta(field: &str, fallback: &str) -> Value {
    schemas::definition("io.k8s.api.core.v1.ConfigMap")
        .and_then(|d| d.pointer(&format!("/properties/{field}")))
        .cloned()
        .unwrap_or_else(|| json!({"type": "string", "description": fallback}))
}

fn flag(schema: &Map<String, Value>, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn preserves_unknown_fields(schema: &Value) -> bool {
    schema.as_object().is_some_and(|s| flag(s, "x-kubernetes-preserve-unknown-fields"))
}

/// Calls `visit` on `schema` and then on each schema below it: properties, items,
/// additionalProperties and (unless `structural_only`) the junctors.
fn visit(schema: &mut Value, structural_only: bool, visit_one: &mut dyn FnMut(&mut Map<String, Value>)) {
    let Some(map) = schema.as_object_mut() else { return };
    visit_one(map);
    if let Some(Value::Object(properties)) = map.get_mut("properties") {
        for property in properties.values_mut() {
            visit(property, structural_only, visit_one);
        }
    }
    match map.get_mut("items") {
        Some(Value::Array(items)) => items.iter_mut().for_each(|i| visit(i, structural_only, visit_one)),
        Some(items) => visit(items, structural_only, visit_one),
        None => {}
    }
    if let Some(additional) = map.get_mut("additionalProperties") {
        visit(additional, structural_only, visit_one);
    }
    if structural_only {
        return;
    }
    for junctor in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(schemas)) = map.get_mut(junctor) {
            schemas.iter_mut().for_each(|s| visit(s, structural_only, visit_one));
        }
    }
    if let Some(not) = map.get_mut("not") {
        visit(not, structural_only, visit_one);
    }
}

/// kube's `Structural.Unfold`: `x-kubernetes-int-or-string` is spelled out as
/// `anyOf: [{type: integer}, {type: string}]` (or that `anyOf` prepended to `allOf` when the
/// schema has an `anyOf` of its own that is not already this one).
fn unfold_int_or_string(schema: &mut Value) {
    visit(schema, true, &mut |s| {
        if !flag(s, "x-kubernetes-int-or-string") {
            return;
        }
        let pattern = json!([{"type": "integer"}, {"type": "string"}]);
        let first_all_of_any_of = s.get("allOf").and_then(|a| a.get(0)).and_then(|a| a.get("anyOf"));
        if s.get("anyOf") == Some(&pattern) || first_all_of_any_of == Some(&pattern) {
            return;
        }
        if !s.contains_key("anyOf") {
            s.insert("anyOf".into(), pattern);
        } else {
            let mut all_of = vec![json!({"anyOf": pattern})];
            if let Some(Value::Array(rest)) = s.remove("allOf") {
                all_of.extend(rest);
            }
            s.insert("allOf".into(), Value::Array(all_of));
        }
    });
}

/// kube's `ToStructuralOpenAPIV2`: what kubectl's Swagger 2.0 models cannot read is dropped.
fn to_structural_v2(schema: &mut Value) {
    visit(schema, true, &mut |s| {
        for junctor in ["allOf", "oneOf", "anyOf", "not"] {
            s.remove(junctor);
        }
        if flag(s, "nullable") {
            for key in ["type", "items", "properties"] {
                s.remove(key);
            }
        }
        s.remove("nullable");
        let preserves = flag(s, "x-kubernetes-preserve-unknown-fields");
        if preserves {
            s.remove("items");
            s.remove("properties");
        }
        let ty = s.get("type").and_then(Value::as_str).unwrap_or("");
        if (ty == "array" && !s.contains_key("items")) || (ty == "object" && preserves) {
            s.remove("type");
        }
        let nullable = |v: &Value| v.get("nullable").and_then(Value::as_bool).unwrap_or(false);
        let nullable_properties: Vec<String> = s
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.iter().filter(|(_, v)| nullable(v)).map(|(k, _)| k.clone()).collect())
            .unwrap_or_default();
        if let Some(Value::Array(required)) = s.get_mut("required") {
            required.retain(|r| !r.as_str().is_some_and(|r| nullable_properties.iter().any(|n| n == r)));
            if required.is_empty() {
                s.remove("required");
            }
        }
        if s.get("additionalProperties").is_some_and(nullable) {
            s.remove("required");
        }
    });
}

/// Removes every `default` (kube prunes them from the v2 document).
fn prune_defaults(schema: &mut Value) {
    visit(schema, false, &mut |s| {
        s.remove("default");
    });
}

/// kube's `addEmbeddedProperties`: an `x-kubernetes-embedded-resource` gets `apiVersion`, `kind`
/// and `metadata` properties, `apiVersion` and `kind` required; in v2, not below a schema that
/// keeps unknown fields.
fn add_embedded_properties(schema: &mut Value, v2: bool) {
    let Some(map) = schema.as_object_mut() else { return };
    if let Some(Value::Object(properties)) = map.get_mut("properties") {
        properties.values_mut().for_each(|p| add_embedded_properties(p, v2));
    }
    if let Some(items) = map.get_mut("items") {
        add_embedded_properties(items, v2);
    }
    if let Some(additional) = map.get_mut("additionalProperties") {
        add_embedded_properties(additional, v2);
    }
    if v2 && flag(map, "x-kubernetes-preserve-unknown-fields") {
        return;
    }
    if !flag(map, "x-kubernetes-embedded-resource") {
        return;
    }
    let properties = map.entry("properties").or_insert_with(|| json!({}));
    if let Some(properties) = properties.as_object_mut() {
        properties.insert("apiVersion".into(), type_meta_described("apiVersion", EMBEDDED_API_VERSION_DOC));
        properties.insert("kind".into(), type_meta_described("kind", EMBEDDED_KIND_DOC));
        properties.insert("metadata".into(), described_ref(OBJECT_META, METADATA_DOC));
    }
    let required = map.entry("required").or_insert_with(|| json!([]));
    if let Some(required) = required.as_array_mut() {
        for field in ["kind", "apiVersion"] {
            if !required.iter().any(|r| r == field) {
                required.push(json!(field));
            }
        }
    }
}

fn type_meta_described(field: &str, description: &str) -> Value {
    let mut out = type_meta(field, description);
    if let Some(map) = out.as_object_mut() {
        map.insert("description".into(), json!(description));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_reverse_the_group() {
        assert_eq!(definition_name("beta.kuar.com", "v1", "LoadTest"), "com.kuar.beta.v1.LoadTest");
        assert_eq!(definition_name("example", "v1alpha1", "Thing"), "example.v1alpha1.Thing");
    }

    #[test]
    fn v2_schemas_drop_what_kubectl_cannot_read() {
        let mut schema = json!({
            "type": "object",
            "required": ["a", "b"],
            "properties": {
                "a": {"type": "string", "nullable": true, "default": "x"},
                "b": {"type": "array", "x-kubernetes-preserve-unknown-fields": true, "items": {"type": "string"}},
                "c": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"d": {}}},
                "e": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                "default": {"type": "integer", "default": 3, "oneOf": [{"minimum": 1}]},
            },
        });
        unfold_int_or_string(&mut schema);
        to_structural_v2(&mut schema);
        prune_defaults(&mut schema);
        assert_eq!(
            schema,
            json!({
                "type": "object",
                "required": ["b"],
                "properties": {
                    "a": {},
                    "b": {"x-kubernetes-preserve-unknown-fields": true},
                    "c": {"x-kubernetes-preserve-unknown-fields": true},
                    "e": {"x-kubernetes-int-or-string": true},
                    "default": {"type": "integer"},
                },
            })
        );
    }

    #[test]
    fn int_or_string_unfolds_into_any_of() {
        let mut schema = json!({"properties": {"port": {"x-kubernetes-int-or-string": true}}});
        unfold_int_or_string(&mut schema);
        assert_eq!(schema["properties"]["port"]["anyOf"], json!([{"type": "integer"}, {"type": "string"}]));
        let mut schema = json!({"x-kubernetes-int-or-string": true, "anyOf": [{"maximum": 3}]});
        unfold_int_or_string(&mut schema);
        assert_eq!(schema["allOf"][0]["anyOf"], json!([{"type": "integer"}, {"type": "string"}]));
    }

    #[test]
    fn embedded_resources_get_type_and_object_meta() {
        let mut schema = json!({"properties": {"template": {"type": "object", "x-kubernetes-embedded-resource": true,
            "x-kubernetes-preserve-unknown-fields": true}}});
        add_embedded_properties(&mut schema, false);
        let template = &schema["properties"]["template"];
        assert_eq!(template["required"], json!(["kind", "apiVersion"]));
        assert!(template["properties"]["metadata"]["allOf"][0]["$ref"].as_str().unwrap().ends_with("ObjectMeta"));
        let mut v2 = json!({"properties": {"template": {"type": "object", "x-kubernetes-embedded-resource": true,
            "x-kubernetes-preserve-unknown-fields": true}}});
        add_embedded_properties(&mut v2, true);
        assert!(v2["properties"]["template"].get("properties").is_none());
    }
}

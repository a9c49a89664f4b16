//! Reading one `JSONSchemaProps` node held as JSON: its keywords and Kubernetes extensions.
//!
//! Every accessor tolerates any JSON (a node that is not an object reads as empty), so the
//! engine never panics on a malformed schema; `check_structural` is what reports the damage.

use serde_json::{Map, Value};

/// The extension that keeps unknown fields below a node.
pub(super) const PRESERVE_UNKNOWN: &str = "x-kubernetes-preserve-unknown-fields";
/// The extension that marks a node as a whole Kubernetes object (apiVersion, kind, metadata).
pub(super) const EMBEDDED: &str = "x-kubernetes-embedded-resource";
/// The extension that types a node as integer or string.
pub(super) const INT_OR_STRING: &str = "x-kubernetes-int-or-string";
/// The CEL rules of a node.
pub(super) const VALIDATIONS: &str = "x-kubernetes-validations";

/// The fields a Kubernetes object carries beside its schema's own.
pub(super) const META_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// What `additionalProperties` says.
pub(super) enum Additional<'a> {
    /// Not given.
    Absent,
    /// `true` or `false`.
    Allowed(bool),
    /// A schema for every field not in `properties`.
    Schema(&'a Value),
}

/// Which schema applies to one field of an object.
pub(super) enum FieldSchema<'a> {
    /// A field named in `properties`.
    Property(&'a Value),
    /// A field covered by `additionalProperties`: its schema, or none for `true`.
    Additional(Option<&'a Value>),
    /// A field the schema does not know.
    Unknown,
}

/// A string keyword (`type`, `format`, `pattern`, ...).
pub(super) fn str_of<'a>(s: &'a Value, key: &str) -> Option<&'a str> {
    s.get(key).and_then(Value::as_str)
}

/// The `type`, or `""` when there is none.
pub(super) fn type_of(s: &Value) -> &str {
    str_of(s, "type").unwrap_or("")
}

/// A boolean keyword or extension that is `true`.
pub(super) fn flag(s: &Value, key: &str) -> bool {
    s.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// `nullable: true`.
pub(super) fn nullable(s: &Value) -> bool {
    flag(s, "nullable")
}

/// `x-kubernetes-preserve-unknown-fields: true`.
pub(super) fn preserves_unknown(s: &Value) -> bool {
    flag(s, PRESERVE_UNKNOWN)
}

/// `x-kubernetes-embedded-resource: true`.
pub(super) fn embedded(s: &Value) -> bool {
    flag(s, EMBEDDED)
}

/// `x-kubernetes-int-or-string: true`.
pub(super) fn int_or_string(s: &Value) -> bool {
    flag(s, INT_OR_STRING)
}

/// The types a value may have: both for int-or-string (as kube-openapi sees it), else the
/// `type` if any.
pub(super) fn types(s: &Value) -> Vec<&str> {
    if int_or_string(s) {
        return vec!["integer", "string"];
    }
    match type_of(s) {
        "" => vec![],
        t => vec![t],
    }
}

/// `properties`, when it is an object.
pub(super) fn properties(s: &Value) -> Option<&Map<String, Value>> {
    s.get("properties").and_then(Value::as_object)
}

/// The schema of one named property.
pub(super) fn property<'a>(s: &'a Value, name: &str) -> Option<&'a Value> {
    properties(s).and_then(|p| p.get(name))
}

/// `additionalProperties`.
pub(super) fn additional(s: &Value) -> Additional<'_> {
    match s.get("additionalProperties") {
        None | Some(Value::Null) => Additional::Absent,
        Some(Value::Bool(b)) => Additional::Allowed(*b),
        Some(schema) => Additional::Schema(schema),
    }
}

/// The schema of `additionalProperties`, when it is one.
pub(super) fn additional_schema(s: &Value) -> Option<&Value> {
    match additional(s) {
        Additional::Schema(a) => Some(a),
        _ => None,
    }
}

/// Which schema applies to the field `name` of an object under `s`.
pub(super) fn field_schema<'a>(s: &'a Value, name: &str) -> FieldSchema<'a> {
    if let Some(p) = property(s, name) {
        return FieldSchema::Property(p);
    }
    match additional(s) {
        Additional::Schema(a) => FieldSchema::Additional(Some(a)),
        Additional::Allowed(true) => FieldSchema::Additional(None),
        _ => FieldSchema::Unknown,
    }
}

/// The schema of a field (a property or `additionalProperties`), if it has one.
pub(super) fn schema_of_field<'a>(s: &'a Value, name: &str) -> Option<&'a Value> {
    match field_schema(s, name) {
        FieldSchema::Property(p) | FieldSchema::Additional(Some(p)) => Some(p),
        _ => None,
    }
}

/// `items`, when it is a single schema (structural schemas allow no other form).
pub(super) fn items(s: &Value) -> Option<&Value> {
    s.get("items").filter(|i| i.is_object())
}

/// `default`, unless absent or null.
pub(super) fn default_of(s: &Value) -> Option<&Value> {
    s.get("default").filter(|d| !d.is_null())
}

/// A numeric keyword (`minimum`, `multipleOf`, ...).
pub(super) fn number(s: &Value, key: &str) -> Option<f64> {
    s.get(key).and_then(Value::as_f64)
}

/// A count keyword (`maxLength`, `minItems`, ...), when it is a non-negative integer.
pub(super) fn count(s: &Value, key: &str) -> Option<u64> {
    let v = s.get(key)?;
    v.as_u64().or_else(|| v.as_f64().filter(|f| *f >= 0.0 && f.fract() == 0.0).map(|f| f as u64))
}

/// The schemas of `allOf`, `anyOf` or `oneOf`.
pub(super) fn junction<'a>(s: &'a Value, key: &str) -> &'a [Value] {
    s.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// `required`: the names that are strings.
pub(super) fn required(s: &Value) -> Vec<&str> {
    junction(s, "required").iter().filter_map(Value::as_str).collect()
}

/// `x-kubernetes-list-type`.
pub(super) fn list_type(s: &Value) -> Option<&str> {
    str_of(s, "x-kubernetes-list-type")
}

/// `x-kubernetes-list-map-keys`: the names that are strings.
pub(super) fn list_map_keys(s: &Value) -> Vec<&str> {
    junction(s, "x-kubernetes-list-map-keys").iter().filter_map(Value::as_str).collect()
}

/// `x-kubernetes-map-type`.
pub(super) fn map_type(s: &Value) -> Option<&str> {
    str_of(s, "x-kubernetes-map-type")
}

/// The `x-kubernetes-validations` rules.
pub(super) fn rules(s: &Value) -> &[Value] {
    junction(s, VALIDATIONS)
}

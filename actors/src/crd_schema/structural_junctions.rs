//! Value validations inside a CRD schema (`allOf`, `anyOf`, `oneOf`, `not`) as structural
//! schemas allow them: they only restrict values (no types, defaults or extensions, save
//! kube's two int-or-string spellings), and only of fields the structure specifies.

use serde_json::Value;

use super::node::{self, Additional, EMBEDDED, INT_OR_STRING, PRESERVE_UNKNOWN};
use super::report::{child, index, invalid, key, shown};
use super::structural::openapi_subset;
use crate::api_error::FieldCause;

/// `allOf`, `anyOf` and `oneOf` with their schemas.
pub(super) fn junctions(s: &Value) -> [(&'static str, &[Value]); 3] {
    [
        ("allOf", node::junction(s, "allOf")),
        ("anyOf", node::junction(s, "anyOf")),
        ("oneOf", node::junction(s, "oneOf")),
    ]
}

/// Whether `subs` is exactly `[{type: integer}, {type: string}]`.
fn is_int_or_string_any_of(subs: &[Value]) -> bool {
    let only_type = |v: &Value, t: &str| v.as_object().is_some_and(|m| m.len() == 1 && node::type_of(v) == t);
    subs.len() == 2 && only_type(&subs[0], "integer") && only_type(&subs[1], "string")
}

/// The two spellings of int-or-string kube-apiserver allows to name types in value
/// validations: `anyOf: [{type: integer}, {type: string}]`, or that as the first `allOf`.
pub(super) fn int_or_string_patterns(s: &Value) -> (bool, bool) {
    let any_of = is_int_or_string_any_of(node::junction(s, "anyOf"));
    let first_all_of =
        node::junction(s, "allOf").first().is_some_and(|first| is_int_or_string_any_of(node::junction(first, "anyOf")));
    (any_of, first_all_of)
}

/// Checks the value validations (`allOf`, `anyOf`, `oneOf`, `not`) of a node.
pub(super) fn value_validations(
    s: &Value,
    path: &str,
    skip_any_of: bool,
    skip_first_all_of: bool,
    out: &mut Vec<FieldCause>,
) {
    if !skip_any_of {
        for (i, sub) in node::junction(s, "anyOf").iter().enumerate() {
            nested(sub, &index(&child(path, "anyOf"), i), false, false, out);
        }
    }
    for (i, sub) in node::junction(s, "allOf").iter().enumerate() {
        nested(sub, &index(&child(path, "allOf"), i), skip_first_all_of && i == 0, false, out);
    }
    for (i, sub) in node::junction(s, "oneOf").iter().enumerate() {
        nested(sub, &index(&child(path, "oneOf"), i), false, false, out);
    }
    if let Some(not) = s.get("not") {
        nested(not, &child(path, "not"), false, false, out);
    }
}

/// A schema inside a value validation: it may only restrict values, never specify
/// structure (type, defaults, extensions...), which the structural node above does.
fn nested(v: &Value, path: &str, skip_any_of: bool, skip_first_all_of: bool, out: &mut Vec<FieldCause>) {
    if !v.is_object() {
        out.push(invalid(path, shown(v), "must be a JSON object"));
        return;
    }
    openapi_subset(v, path, out);
    value_validations(v, path, skip_any_of, skip_first_all_of, out);
    if let Some(item_schema) = v.get("items").filter(|i| i.is_object()) {
        nested(item_schema, &child(path, "items"), false, false, out);
    }
    for (name, p) in node::properties(v).into_iter().flatten() {
        nested(p, &key(&child(path, "properties"), name), false, false, out);
    }
    let forbidden = |keyword: &str, detail: &str| FieldCause::forbidden(child(path, keyword), detail);
    if !node::type_of(v).is_empty() {
        out.push(forbidden("type", "must be empty to be structural"));
    }
    if !matches!(node::additional(v), Additional::Absent) {
        out.push(forbidden("additionalProperties", "must be undefined to be structural"));
    }
    if node::default_of(v).is_some() {
        out.push(forbidden("default", "must be undefined to be structural"));
    }
    for keyword in ["title", "description"] {
        if node::str_of(v, keyword).is_some_and(|t| !t.is_empty()) {
            out.push(forbidden(keyword, "must be empty to be structural"));
        }
    }
    if node::nullable(v) {
        out.push(forbidden("nullable", "must be false to be structural"));
    }
    for keyword in [PRESERVE_UNKNOWN, EMBEDDED, INT_OR_STRING] {
        if node::flag(v, keyword) {
            out.push(forbidden(keyword, "must be false to be structural"));
        }
    }
    if !node::list_map_keys(v).is_empty() {
        out.push(forbidden("x-kubernetes-list-map-keys", "must be empty to be structural"));
    }
    if node::list_type(v).is_some() {
        out.push(forbidden("x-kubernetes-list-type", "must be undefined to be structural"));
    }
    if node::property(v, "metadata").is_some() {
        let detail = "must not be specified in a nested context";
        out.push(FieldCause::forbidden(key(&child(path, "properties"), "metadata"), detail));
    }
}

/// Every field or item a value validation `v` (at `v_path`) restricts must be specified by
/// the structure `s` (at `s_path`) too.
pub(super) fn completeness(v: &Value, s: Option<&Value>, s_path: &str, v_path: &str, out: &mut Vec<FieldCause>) {
    let Some(s) = s else {
        out.push(FieldCause::required(s_path, format!("because it is defined in {v_path}")));
        return;
    };
    for (key_name, subs) in junctions(v) {
        for (i, sub) in subs.iter().enumerate() {
            completeness(sub, Some(s), s_path, &index(&child(v_path, key_name), i), out);
        }
    }
    if let Some(not) = v.get("not") {
        completeness(not, Some(s), s_path, &child(v_path, "not"), out);
    }
    if let Some(v_items) = v.get("items").filter(|i| i.is_object()) {
        completeness(v_items, node::items(s), &child(s_path, "items"), &child(v_path, "items"), out);
    }
    for (name, v_prop) in node::properties(v).into_iter().flatten() {
        let s_prop_path = key(&child(s_path, "properties"), name);
        let v_prop_path = key(&child(v_path, "properties"), name);
        match node::property(s, name) {
            Some(s_prop) => completeness(v_prop, Some(s_prop), &s_prop_path, &v_prop_path, out),
            // Since kube 1.30 a map's value validations may name keys.
            None if node::additional_schema(s).is_some() => {}
            None => out.push(FieldCause::required(s_prop_path, format!("because it is defined in {v_prop_path}"))),
        }
    }
}

//! Field paths and messages in kube-apiserver's words: how it joins paths, prints bad values
//! (Go's `%q` and `%v`) and builds the causes this module returns.

use serde_json::Value;

use crate::api_error::{CauseType, FieldCause};

/// `path.name`, or `name` at the top: a field (`field.Path.Child`).
pub(super) fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// `path[i]`: an array element (`field.Path.Index`).
pub(super) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// `path[key]`: a map entry (`field.Path.Key`).
pub(super) fn key(path: &str, key: &str) -> String {
    format!("{path}[{key}]")
}

/// How kube-openapi names a value in its messages: `spec.x in body`.
pub(super) fn in_body(path: &str) -> String {
    if path.is_empty() {
        "in body".to_string()
    } else {
        format!("{path} in body")
    }
}

/// Go's `%q` of a string, as the rest of the crate prints it.
pub(super) fn quoted(s: &str) -> String {
    format!("{s:?}")
}

/// The JSON type of a value as kube-openapi names it (`integer` for whole numbers as JSON
/// decodes them into int64, `number` for the others).
pub(super) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A number that is whole, however JSON wrote it (`1` or `1.0`).
pub(super) fn is_integral(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.is_finite() && f.fract() == 0.0),
        _ => false,
    }
}

/// Go's `%v` of a float64: the shortest digits, in `e` notation when the exponent is below
/// -4 or at least 6 (`1e+06`, `1.5`, `0.0001`).
pub(super) fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    if f == 0.0 {
        return "0".into();
    }
    let sci = format!("{f:e}");
    let Some((mantissa, exp)) = sci.split_once('e') else { return sci };
    let Ok(exp) = exp.parse::<i32>() else { return sci };
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{f}")
    }
}

/// A bad value as kube-apiserver prints it in a cause: strings quoted, numbers and booleans
/// bare, `"null"` for null, JSON for objects and arrays.
pub(super) fn shown(v: &Value) -> String {
    match v {
        Value::Null => quoted("null"),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.to_string(),
            (_, Some(u)) => u.to_string(),
            _ => go_float(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => quoted(s),
        Value::Array(_) | Value::Object(_) => v.to_string(),
    }
}

/// An `Invalid value` cause with the value already printed.
pub(super) fn invalid(field: impl Into<String>, shown: String, detail: impl Into<String>) -> FieldCause {
    FieldCause::invalid_shown(field, shown, detail)
}

/// `Too many: N: must have at most M items` (kube's `field.TooMany`).
pub(super) fn too_many(field: impl Into<String>, actual: usize, max: u64) -> FieldCause {
    let noun = if max == 1 { "item" } else { "items" };
    FieldCause {
        field: field.into(),
        kind: CauseType::TooMany,
        value: Some(actual.to_string()),
        detail: format!("must have at most {max} {noun}"),
    }
}

/// `Duplicate value: shown`.
pub(super) fn duplicate(field: impl Into<String>, shown: String) -> FieldCause {
    FieldCause { field: field.into(), kind: CauseType::Duplicate, value: Some(shown), detail: String::new() }
}

/// `Unsupported value: shown: supported values: "a", "b"`, the values already quoted.
pub(super) fn not_supported(field: impl Into<String>, shown: String, supported: &[String]) -> FieldCause {
    let detail =
        if supported.is_empty() { String::new() } else { format!("supported values: {}", supported.join(", ")) };
    FieldCause { field: field.into(), kind: CauseType::NotSupported, value: Some(shown), detail }
}

/// `Unsupported value` for a keyword of the schema itself, its allowed values given bare.
pub(super) fn not_supported_str(field: impl Into<String>, value: &str, supported: &[&str]) -> FieldCause {
    FieldCause::not_supported(field, value, supported)
}

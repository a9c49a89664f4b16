//! The OpenAPI value validation of a custom object, keyword by keyword, as kube-openapi's
//! validator (which kube-apiserver runs on custom resources) does it, with its messages.
//!
//! Causes come out in kube-openapi's order for each node: type, `allOf`/`anyOf`/`oneOf`/
//! `not`, string, format, number, array, `enum`, object.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use regex::Regex;
use serde_json::{Map, Value};

use super::format;
use super::node::{self, Additional};
use super::report::{self, child, in_body, index, invalid, quoted, shown};
use crate::api_error::FieldCause;

/// What validating a value found.
#[derive(Default)]
pub(super) struct Outcome {
    pub causes: Vec<FieldCause>,
    /// Whether a cause is one kube-apiserver lets block the CEL rules: a wrong type, a
    /// missing required field, an unsupported enum value, a too long string or too many
    /// items or properties.
    pub blocking: bool,
}

impl Outcome {
    fn push(&mut self, cause: FieldCause, blocking: bool) {
        self.causes.push(cause);
        self.blocking |= blocking;
    }

    fn merge(&mut self, other: Outcome) {
        self.causes.extend(other.causes);
        self.blocking |= other.blocking;
    }

    /// Validates `data` against the schema node `s`; `path` names it (`""` at the top).
    /// `root` marks the custom object itself, whose `metadata` the schema may only restrict
    /// in `name` and `generateName`.
    pub(super) fn node(&mut self, data: &Value, s: &Value, path: &str, root: bool) {
        if !s.is_object() {
            return;
        }
        let types = node::types(s);
        if data.is_null() {
            // kube-openapi checks only the type (nullable or not) and the enum of a null.
            if !types.is_empty() && !node::nullable(s) {
                self.type_error(path, &types.join(","), "null");
            }
            self.enumeration(data, s, path);
            return;
        }
        self.type_check(data, &types, path);
        self.junctions(data, s, path);
        if let Value::String(text) = data {
            self.string(text, s, path);
            self.format(text, s, &types, path);
        }
        if data.is_number() {
            self.number(data, s, path);
        }
        if let Value::Array(items) = data {
            self.array(items, s, path);
        }
        self.enumeration(data, s, path);
        if let Value::Object(map) = data {
            self.object(map, s, path, root);
        }
    }

    /// `path in body must be of type integer: "string"`.
    fn type_error(&mut self, path: &str, expected: &str, actual: &str) {
        let detail = format!("{} must be of type {expected}: {}", in_body(path), quoted(actual));
        self.push(invalid(path, quoted(actual), detail), true);
    }

    /// `type`: whole numbers pass as `number` and integral floats (`1.0`) as `integer`.
    fn type_check(&mut self, data: &Value, types: &[&str], path: &str) {
        if types.is_empty() {
            return;
        }
        let actual = report::json_type(data);
        let ok = types.contains(&actual)
            || (actual == "number" && types.contains(&"integer") && report::is_integral(data))
            || (actual == "integer" && types.contains(&"number"));
        if !ok {
            self.type_error(path, &types.join(","), actual);
        }
    }

    /// A fresh validation of `data` against a sub-schema of `allOf`, `anyOf`, `oneOf` or `not`.
    fn sub(data: &Value, s: &Value, path: &str) -> Outcome {
        let mut out = Outcome::default();
        out.node(data, s, path, false);
        out
    }

    /// A failure of a whole junction: kube-openapi words it with the quoted path.
    fn junction_error(&mut self, path: &str, detail: String) {
        self.push(invalid(path, quoted(""), detail), false);
    }

    /// `allOf`, `anyOf`, `oneOf` and `not`.
    fn junctions(&mut self, data: &Value, s: &Value, path: &str) {
        let all_of = node::junction(s, "allOf");
        if !all_of.is_empty() {
            let mut validated = 0;
            for sub in all_of {
                let out = Self::sub(data, sub, path);
                if out.causes.is_empty() {
                    validated += 1;
                }
                self.merge(out);
            }
            if validated != all_of.len() {
                let extra = if validated == 0 { ". None validated" } else { "" };
                self.junction_error(path, format!("{} must validate all the schemas (allOf){extra}", quoted(path)));
            }
        }
        let any_of = node::junction(s, "anyOf");
        if !any_of.is_empty() {
            let mut best: Option<Outcome> = None;
            let mut matched = false;
            for sub in any_of {
                let out = Self::sub(data, sub, path);
                if out.causes.is_empty() {
                    matched = true;
                    break;
                }
                if best.as_ref().is_none_or(|b| out.causes.len() < b.causes.len()) {
                    best = Some(out);
                }
            }
            if !matched {
                self.junction_error(path, format!("{} must validate at least one schema (anyOf)", quoted(path)));
                if let Some(best) = best {
                    self.merge(best);
                }
            }
        }
        let one_of = node::junction(s, "oneOf");
        if !one_of.is_empty() {
            let mut best: Option<Outcome> = None;
            let mut validated = 0;
            for sub in one_of {
                let out = Self::sub(data, sub, path);
                if out.causes.is_empty() {
                    validated += 1;
                } else if best.as_ref().is_none_or(|b| out.causes.len() < b.causes.len()) {
                    best = Some(out);
                }
            }
            if validated != 1 {
                let found = if validated == 0 {
                    "Found none valid".to_string()
                } else {
                    format!("Found {validated} valid alternatives")
                };
                self.junction_error(
                    path,
                    format!("{} must validate one and only one schema (oneOf). {found}", quoted(path)),
                );
                if let (0, Some(best)) = (validated, best) {
                    self.merge(best);
                }
            }
        }
        if let Some(not) = s.get("not").filter(|n| n.is_object()) {
            if Self::sub(data, not, path).causes.is_empty() {
                self.junction_error(path, format!("{} must not validate the schema (not)", quoted(path)));
            }
        }
    }

    /// `maxLength` and `minLength` (in characters) and `pattern`.
    fn string(&mut self, text: &str, s: &Value, path: &str) {
        let len = text.chars().count() as u64;
        if let Some(max) = node::count(s, "maxLength") {
            if len > max {
                self.push(FieldCause::too_long(path, usize::try_from(max).unwrap_or(usize::MAX)), true);
            }
        }
        if let Some(min) = node::count(s, "minLength") {
            if len < min {
                let detail = format!("{} should be at least {min} chars long", in_body(path));
                self.push(invalid(path, quoted(text), detail), false);
            }
        }
        if let Some(pattern) = node::str_of(s, "pattern") {
            // A pattern that does not compile is `check_structural`'s to report.
            if compiled_pattern(pattern).is_some_and(|re| !re.is_match(text)) {
                let detail = format!("{} should match '{pattern}'", in_body(path));
                self.push(invalid(path, quoted(text), detail), false);
            }
        }
    }

    /// `format` on a string; kube-apiserver applies string formats to string (or untyped and
    /// int-or-string) nodes only.
    fn format(&mut self, text: &str, s: &Value, types: &[&str], path: &str) {
        let Some(format) = node::str_of(s, "format") else { return };
        if types.len() == 1 && types[0] != "string" {
            return;
        }
        if format::check(format, text) == Some(false) {
            let detail = format!("{} must be of type {format}: {}", in_body(path), quoted(text));
            self.push(invalid(path, quoted(text), detail), true);
        }
    }

    /// `multipleOf`, `maximum` and `minimum` (with their `exclusive` flags). Whole numbers
    /// compare with whole limits, as kube-openapi does for int64 values.
    fn number(&mut self, data: &Value, s: &Value, path: &str) {
        let Some(x) = data.as_f64() else { return };
        let whole = data.is_i64() || data.is_u64();
        let limit = |l: f64| if whole { format!("{}", l.trunc() as i64) } else { report::go_float(l) };
        let value = shown(data);
        if let Some(factor) = node::number(s, "multipleOf") {
            if factor > 0.0 && !is_multiple(x, factor) {
                let detail = format!("{} should be a multiple of {}", in_body(path), limit(factor));
                self.push(invalid(path, value.clone(), detail), false);
            }
        }
        if let Some(max) = node::number(s, "maximum") {
            let max = if whole { max.trunc() } else { max };
            let exclusive = node::flag(s, "exclusiveMaximum");
            if x > max || (exclusive && x >= max) {
                let how = if exclusive { "less than" } else { "less than or equal to" };
                let detail = format!("{} should be {how} {}", in_body(path), limit(max));
                self.push(invalid(path, value.clone(), detail), false);
            }
        }
        if let Some(min) = node::number(s, "minimum") {
            let min = if whole { min.trunc() } else { min };
            let exclusive = node::flag(s, "exclusiveMinimum");
            if x < min || (exclusive && x <= min) {
                let how = if exclusive { "greater than" } else { "greater than or equal to" };
                let detail = format!("{} should be {how} {}", in_body(path), limit(min));
                self.push(invalid(path, value, detail), false);
            }
        }
    }

    /// `items` (each element), then `minItems`, `maxItems` and `uniqueItems`.
    fn array(&mut self, items: &[Value], s: &Value, path: &str) {
        if let Some(item_schema) = node::items(s) {
            for (i, item) in items.iter().enumerate() {
                self.node(item, item_schema, &index(path, i), false);
            }
        }
        let len = items.len();
        if let Some(min) = node::count(s, "minItems") {
            if (len as u64) < min {
                let detail = format!("{} should have at least {min} items", in_body(path));
                self.push(invalid(path, len.to_string(), detail), false);
            }
        }
        if let Some(max) = node::count(s, "maxItems") {
            if len as u64 > max {
                self.push(report::too_many(path, len, max), true);
            }
        }
        if node::flag(s, "uniqueItems") {
            let duplicated = items.iter().enumerate().any(|(i, a)| items[..i].iter().any(|b| json_eq(a, b)));
            if duplicated {
                let detail = format!("{} shouldn't contain duplicates", in_body(path));
                self.push(invalid(path, quoted(""), detail), false);
            }
        }
    }

    /// `enum`: `Unsupported value: "ftp": supported values: "http", "https"`.
    fn enumeration(&mut self, data: &Value, s: &Value, path: &str) {
        let values = node::junction(s, "enum");
        if values.is_empty() || values.iter().any(|v| json_eq(v, data)) {
            return;
        }
        // kube quotes every allowed value, printing the non-strings as JSON first.
        let supported: Vec<String> = values
            .iter()
            .map(|v| match v {
                Value::String(text) => quoted(text),
                other => quoted(&other.to_string()),
            })
            .collect();
        self.push(report::not_supported(path, shown(data), &supported), true);
    }

    /// `maxProperties`, `minProperties`, `additionalProperties`, `properties` and `required`.
    fn object(&mut self, map: &Map<String, Value>, s: &Value, path: &str, root: bool) {
        let count = map.len();
        if let Some(min) = node::count(s, "minProperties") {
            if (count as u64) < min {
                let detail = format!("{} should have at least {min} properties", in_body(path));
                self.push(invalid(path, count.to_string(), detail), false);
            }
        }
        if let Some(max) = node::count(s, "maxProperties") {
            if count as u64 > max {
                self.push(report::too_many(path, count, max), true);
            }
        }
        let properties = node::properties(s);
        let known = |k: &str| properties.is_some_and(|p| p.contains_key(k));
        match node::additional(s) {
            Additional::Allowed(false) => {
                for k in map.keys().filter(|k| !known(k)) {
                    let detail = format!("{} is a forbidden property", in_body(&child(path, k)));
                    self.push(invalid(path, quoted(k), detail), false);
                }
            }
            Additional::Schema(extra) => {
                for (k, v) in map.iter().filter(|(k, _)| !known(k)) {
                    self.node(v, extra, &child(path, k), false);
                }
            }
            Additional::Absent | Additional::Allowed(true) => {}
        }
        for (name, sub) in properties.into_iter().flatten() {
            let Some(v) = map.get(name) else { continue };
            if root && name == "metadata" {
                self.metadata(v, sub);
            } else {
                self.node(v, sub, &child(path, name), false);
            }
        }
        for name in node::required(s) {
            if !map.contains_key(name) {
                self.push(FieldCause::required(child(path, name), ""), true);
            }
        }
    }

    /// The custom object's `metadata`: kube-apiserver validates ObjectMeta itself, and the
    /// schema may only restrict `name` and `generateName`.
    fn metadata(&mut self, metadata: &Value, s: &Value) {
        for field in ["name", "generateName"] {
            if let (Some(v), Some(sub)) = (metadata.get(field), node::property(s, field)) {
                self.node(v, sub, &child("metadata", field), false);
            }
        }
    }
}

/// Whether `x` is a whole multiple of `factor`, within float rounding (kube-openapi divides
/// and checks the quotient is integral).
fn is_multiple(x: f64, factor: f64) -> bool {
    let quotient = if factor < 1.0 { (1.0 / factor) * x } else { x / factor };
    if !quotient.is_finite() {
        return false;
    }
    let diff = (quotient - quotient.round()).abs();
    diff == 0.0 || diff / quotient.abs().max(1.0) < 1e-9
}

/// JSON equality with numbers compared by value (`1` equals `1.0`), as kube's enum check
/// converts the value to the enum entry's type.
pub(super) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Compiled `pattern`s, kept across calls: schemas are few and rarely change.
fn compiled_pattern(pattern: &str) -> Option<Regex> {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<Regex>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let Ok(mut cache) = cache.lock() else { return Regex::new(pattern).ok() };
    if let Some(re) = cache.get(pattern) {
        return re.clone();
    }
    if cache.len() > 1024 {
        cache.clear(); // a bound, not a policy: schemas with this many patterns are unheard of
    }
    let re = Regex::new(pattern).ok();
    cache.insert(pattern.to_string(), re.clone());
    re
}

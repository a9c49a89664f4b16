//! The `x-kubernetes-*` extensions of a CRD schema as kube-apiserver vets them: list and
//! map types, the form of `x-kubernetes-validations` entries, and (once the schema is
//! otherwise sound) their CEL rules compiling against the node.

use serde_json::Value;

use super::cel;
use super::node::{self, VALIDATIONS};
use super::report::{child, index, invalid, key, not_supported_str, quoted, shown};
use super::structural::{required_or_invalid, Ctx, Level};
use crate::api_error::FieldCause;

/// `x-kubernetes-map-type`, `x-kubernetes-list-type` and `x-kubernetes-list-map-keys`.
pub(super) fn list_and_map_types(s: &Value, path: &str, out: &mut Vec<FieldCause>) {
    let ty = node::type_of(s);
    if let Some(map_type) = node::map_type(s) {
        if ty != "object" {
            out.push(required_or_invalid(
                child(path, "type"),
                ty,
                "must be object if x-kubernetes-map-type is specified",
            ));
        }
        if map_type != "atomic" && map_type != "granular" {
            out.push(not_supported_str(child(path, "x-kubernetes-map-type"), map_type, &["atomic", "granular"]));
        }
    }
    let list_type = node::list_type(s);
    let item_schema = node::items(s);
    if let Some(list_type) = list_type {
        if ty != "array" {
            out.push(required_or_invalid(
                child(path, "type"),
                ty,
                "must be array if x-kubernetes-list-type is specified",
            ));
        } else if let (true, Some(is)) = (list_type == "set", item_schema) {
            let detail = "must be atomic as item of a list with x-kubernetes-list-type=set";
            let items_path = child(path, "items");
            match node::type_of(is) {
                "array" if node::list_type(is).is_some_and(|t| t != "atomic") => out.push(invalid(
                    child(&items_path, "x-kubernetes-list-type"),
                    shown(&is["x-kubernetes-list-type"]),
                    detail,
                )),
                "object" if node::map_type(is) != Some("atomic") => out.push(invalid(
                    child(&items_path, "x-kubernetes-map-type"),
                    quoted(node::map_type(is).unwrap_or("")),
                    detail,
                )),
                _ => {}
            }
        }
        if !["atomic", "set", "map"].contains(&list_type) {
            out.push(not_supported_str(child(path, "x-kubernetes-list-type"), list_type, &["atomic", "set", "map"]));
        }
    }
    let keys = node::list_map_keys(s);
    let keys_path = child(path, "x-kubernetes-list-map-keys");
    let keys_shown = s.get("x-kubernetes-list-map-keys").map(shown).unwrap_or_default();
    if !keys.is_empty() {
        match list_type {
            None => out.push(FieldCause::required(
                child(path, "x-kubernetes-list-type"),
                "must be map if x-kubernetes-list-map-keys is non-empty",
            )),
            Some("map") => {}
            Some(other) => out.push(invalid(
                child(path, "x-kubernetes-list-type"),
                quoted(other),
                "must be map if x-kubernetes-list-map-keys is non-empty",
            )),
        }
    }
    if list_type == Some("map") {
        if keys.is_empty() {
            out.push(FieldCause::required(keys_path.clone(), "must not be empty if x-kubernetes-list-type is map"));
        }
        let items_path = child(path, "items");
        match item_schema {
            None => out.push(FieldCause::required(items_path, "must have a schema if x-kubernetes-list-type is map")),
            Some(is) if node::type_of(is) != "object" => out.push(invalid(
                child(&items_path, "type"),
                quoted(node::type_of(is)),
                "must be object if parent array's x-kubernetes-list-type is map",
            )),
            Some(is) => {
                let required = node::required(is);
                for (i, k) in keys.iter().enumerate() {
                    let key_path = key(&child(&items_path, "properties"), k);
                    match node::property(is, k) {
                        Some(p) => {
                            if matches!(node::type_of(p), "array" | "object") {
                                out.push(invalid(
                                    child(&key_path, "type"),
                                    quoted(node::type_of(p)),
                                    "must be a scalar type if parent array's x-kubernetes-list-type is map",
                                ));
                            }
                            if !required.contains(k) && node::default_of(p).is_none() {
                                out.push(FieldCause::required(
                                    child(&key_path, "default"),
                                    "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property",
                                ));
                            }
                            if node::nullable(p) {
                                out.push(FieldCause::forbidden(
                                    child(&key_path, "nullable"),
                                    "this property is in x-kubernetes-list-map-keys, so it cannot be nullable",
                                ));
                            }
                        }
                        None => out.push(invalid(
                            keys_path.clone(),
                            keys_shown.clone(),
                            "entries must all be names of item properties",
                        )),
                    }
                    if keys[..i].contains(k) {
                        out.push(invalid(keys_path.clone(), keys_shown.clone(), "must not contain duplicate entries"));
                    }
                }
            }
        }
    }
    if let (Some(t @ ("set" | "map")), Some(is)) = (list_type, item_schema) {
        if node::nullable(is) {
            let detail = format!("cannot be nullable when x-kubernetes-list-type is {t}");
            out.push(FieldCause::forbidden(child(&child(path, "items"), "nullable"), detail));
        }
    }
}

/// The form of each `x-kubernetes-validations` entry (compiling comes in a later pass).
pub(super) fn rule_shapes(s: &Value, path: &str, out: &mut Vec<FieldCause>) {
    let has_newline = |t: &str| t.contains(['\n', '\r']);
    for (i, rule) in node::rules(s).iter().enumerate() {
        let rule_path = index(&child(path, VALIDATIONS), i);
        let source = node::str_of(rule, "rule").unwrap_or("").trim();
        let message = node::str_of(rule, "message");
        let trimmed = message.map(str::trim).unwrap_or("");
        if source.is_empty() {
            out.push(FieldCause::required(child(&rule_path, "rule"), "rule is not specified"));
        } else if message.is_some_and(|m| !m.is_empty()) && trimmed.is_empty() {
            out.push(invalid(
                child(&rule_path, "message"),
                quoted(message.unwrap_or("")),
                "message must be non-empty if specified",
            ));
        } else if has_newline(trimmed) {
            out.push(invalid(child(&rule_path, "message"), quoted(trimmed), "message must not contain line breaks"));
        } else if has_newline(source) && trimmed.is_empty() {
            out.push(FieldCause::required(
                child(&rule_path, "message"),
                "message must be specified if rule contains line breaks",
            ));
        }
        if node::str_of(rule, "messageExpression").is_some_and(|m| !m.is_empty() && m.trim().is_empty()) {
            out.push(FieldCause::required(
                child(&rule_path, "messageExpression"),
                "messageExpression must be non-empty if specified",
            ));
        }
        if let Some(reason) = node::str_of(rule, "reason").filter(|r| !cel::REASONS.contains(r)) {
            out.push(not_supported_str(child(&rule_path, "reason"), reason, &cel::REASONS));
        }
        if let Some(field_path) = node::str_of(rule, "fieldPath").filter(|f| !f.is_empty()) {
            let fp_path = child(&rule_path, "fieldPath");
            if field_path.trim().is_empty() {
                out.push(invalid(fp_path, quoted(field_path), "fieldPath must be non-empty if specified"));
            } else if has_newline(field_path) {
                out.push(invalid(fp_path, quoted(field_path), "fieldPath must not contain line breaks"));
            } else if !field_path_valid(s, field_path) {
                out.push(invalid(fp_path, quoted(field_path), "fieldPath must be a valid path"));
            }
        }
    }
}

/// Whether a rule's `fieldPath` names a place the node's schema specifies.
fn field_path_valid(s: &Value, field_path: &str) -> bool {
    let mut current = s;
    let mut rest = field_path.trim();
    while !rest.is_empty() {
        let (name, next) = if let Some(r) = rest.strip_prefix("['") {
            let Some(end) = r.find("']") else { return false };
            (&r[..end], &r[end + 2..])
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else { return false };
            if r[..end].parse::<usize>().is_err() {
                return false;
            }
            let Some(item_schema) = node::items(current) else { return false };
            current = item_schema;
            rest = &r[end + 1..];
            continue;
        } else if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            (&r[..end], &r[end..])
        } else {
            return false;
        };
        if name.is_empty() {
            return false;
        }
        match node::field_schema(current, name) {
            node::FieldSchema::Property(p) | node::FieldSchema::Additional(Some(p)) => current = p,
            _ => return false,
        }
        rest = next;
    }
    true
}

/// Compiles the rules of one structural node, and checks what they read.
pub(super) fn compile_rules(s: &Value, path: &str, ctx: &Ctx) -> Vec<FieldCause> {
    let mut out = Vec::new();
    let resource = ctx.level == Level::Root || node::embedded(s);
    for (i, rule) in node::rules(s).iter().enumerate() {
        let rule_path = index(&child(path, VALIDATIONS), i);
        let Some(source) = node::str_of(rule, "rule").filter(|r| !r.trim().is_empty()) else { continue };
        match cel::compile(source) {
            Err(e) => out.push(invalid(child(&rule_path, "rule"), quoted(source), format!("compilation failed: {e}"))),
            Ok(program) => {
                for undefined in cel::undefined_fields(&program, s, resource) {
                    let detail = format!("compilation failed: ERROR: <input>: {undefined}");
                    out.push(invalid(child(&rule_path, "rule"), quoted(source), detail));
                }
                let reads_old = cel::uses_old_self(&program);
                match (&ctx.uncorrelatable, reads_old) {
                    (Some(within), true) => out.push(invalid(
                        child(&rule_path, "rule"),
                        quoted(source),
                        format!("oldSelf cannot be used on the uncorrelatable portion of the schema within {within}"),
                    )),
                    (_, false) if rule.get("optionalOldSelf").is_some_and(|o| !o.is_null()) => out.push(invalid(
                        child(&rule_path, "optionalOldSelf"),
                        shown(&rule["optionalOldSelf"]),
                        "may not be set if oldSelf is not used in rule",
                    )),
                    _ => {}
                }
            }
        }
        if let Some(expr) = node::str_of(rule, "messageExpression").filter(|m| !m.trim().is_empty()) {
            if let Err(e) = cel::compile(expr) {
                let detail = format!("messageExpression compilation failed: {e}");
                out.push(invalid(child(&rule_path, "messageExpression"), quoted(expr), detail));
            }
        }
    }
    out
}

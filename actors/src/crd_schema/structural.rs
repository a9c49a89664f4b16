//! Vetting a CRD version's `openAPIV3Schema` as kube-apiserver does when the CRD is written:
//! the OpenAPI subset CRDs allow, the structural-schema invariants (every node typed, value
//! validations only restrict what the structure specifies, metadata only by name), the list
//! and map extensions, defaults that validate against their own node, and CEL rules that
//! compile.
//!
//! Three passes, each only if the one before found nothing (as kube-apiserver skips default
//! and CEL checks on a schema it cannot use): shape, then defaults, then rules. The
//! extensions' checks are in `structural_extensions.rs`, those of `allOf`/`anyOf`/`oneOf`/
//! `not` in `structural_junctions.rs`.

use serde_json::Value;

use super::cel;
use super::lists;
use super::node::{self, Additional, EMBEDDED, META_FIELDS, PRESERVE_UNKNOWN};
use super::prune;
use super::report::{child, index, invalid, key, not_supported_str, quoted, shown};
use super::structural_extensions::{compile_rules, list_and_map_types, rule_shapes};
use super::structural_junctions::{completeness, int_or_string_patterns, junctions, value_validations};
use super::validate::Outcome;
use crate::api_error::FieldCause;

/// The types a node may name.
const TYPES: [&str; 6] = ["array", "boolean", "integer", "number", "object", "string"];

/// Keywords CRD schemas do not support at all.
const UNSUPPORTED: [(&str, &str); 6] = [
    ("id", "id is not supported"),
    ("additionalItems", "additionalItems is not supported"),
    ("patternProperties", "patternProperties is not supported"),
    ("definitions", "definitions is not supported"),
    ("dependencies", "dependencies is not supported"),
    ("$ref", "$ref is not supported"),
];

/// Checks the schema; causes are at paths below `prefix`.
pub(super) fn check(schema: &Value, prefix: &str) -> Vec<FieldCause> {
    let mut out = Vec::new();
    if !schema.is_object() {
        out.push(invalid(prefix, shown(schema), "must be a JSON object"));
        return out;
    }
    if node::nullable(schema) {
        out.push(FieldCause::forbidden(child(prefix, "nullable"), "nullable cannot be true at the root"));
    }
    visit(schema, prefix, &Ctx::root(), &mut |s, path, ctx| shape(s, path, ctx, &mut out));
    // kube-apiserver sorts these, as its schema maps have no order.
    out.sort_by_cached_key(|c| format!("{}: {}", c.field, c.message()));
    if out.is_empty() {
        visit(schema, prefix, &Ctx::root(), &mut |s, path, ctx| {
            if ctx.follows_additional {
                return; // defaults below additionalProperties are forbidden, not checked
            }
            if let Some(d) = node::default_of(s) {
                out.extend(default_causes(d, s, &child(path, "default")));
            }
        });
    }
    if out.is_empty() {
        visit(schema, prefix, &Ctx::root(), &mut |s, path, ctx| out.extend(compile_rules(s, path, ctx)));
    }
    out
}

/// Where in the schema a node sits, as far as the checks care.
#[derive(Clone)]
pub(super) struct Ctx {
    pub(super) level: Level,
    /// Inside the apiVersion, kind or metadata of a resource (the root or an embedded one).
    resource_meta: bool,
    /// Why defaults are forbidden here, if they are.
    no_defaults: Option<String>,
    /// The nearest node above whose old and new values cannot be paired (an atomic map, a
    /// list that is not a list-type map): `oldSelf` is unusable below it.
    pub(super) uncorrelatable: Option<String>,
    /// Below an `additionalProperties`.
    follows_additional: bool,
}

/// The structural level of a node: each has its own message for a missing type.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Level {
    Root,
    Item,
    Field,
}

impl Ctx {
    fn root() -> Self {
        Ctx {
            level: Level::Root,
            resource_meta: false,
            no_defaults: None,
            uncorrelatable: None,
            follows_additional: false,
        }
    }

    fn property(&self, parent: &Value, parent_path: &str, name: &str) -> Self {
        let mut ctx = self.clone();
        ctx.level = Level::Field;
        if node::map_type(parent) == Some("atomic") && ctx.uncorrelatable.is_none() {
            ctx.uncorrelatable = Some(parent_path.to_string());
        }
        if (self.level == Level::Root || node::embedded(parent)) && META_FIELDS.contains(&name) {
            ctx.resource_meta = true;
            if self.level == Level::Root {
                ctx.no_defaults = Some(format!("in top-level {name}"));
            }
        }
        ctx
    }

    fn additional(&self) -> Self {
        let mut ctx = self.clone();
        ctx.level = Level::Field;
        ctx.follows_additional = true;
        if ctx.resource_meta {
            ctx.no_defaults = Some("inside additionalProperties applying to object metadata".into());
        }
        ctx
    }

    fn items(&self, parent: &Value, parent_path: &str) -> Self {
        let mut ctx = self.clone();
        ctx.level = Level::Item;
        if node::list_type(parent) != Some("map") && ctx.uncorrelatable.is_none() {
            ctx.uncorrelatable = Some(parent_path.to_string());
        }
        ctx
    }
}

/// Visits the nodes of the schema's structure (not those inside `allOf`/`anyOf`/`oneOf`/
/// `not`), each before the nodes below it.
fn visit(s: &Value, path: &str, ctx: &Ctx, f: &mut dyn FnMut(&Value, &str, &Ctx)) {
    f(s, path, ctx);
    if !s.is_object() {
        return;
    }
    if let Some(extra) = node::additional_schema(s) {
        visit(extra, &child(path, "additionalProperties"), &ctx.additional(), f);
    }
    for (name, p) in node::properties(s).into_iter().flatten() {
        visit(p, &key(&child(path, "properties"), name), &ctx.property(s, path, name), f);
    }
    if let Some(item_schema) = node::items(s) {
        visit(item_schema, &child(path, "items"), &ctx.items(s, path), f);
    }
}

/// `Required` when a keyword is missing, `Invalid` when it has another value.
pub(super) fn required_or_invalid(path: String, actual: &str, detail: &str) -> FieldCause {
    if actual.is_empty() {
        FieldCause::required(path, detail)
    } else {
        invalid(path, quoted(actual), detail)
    }
}

/// The shape checks of one structural node.
fn shape(s: &Value, path: &str, ctx: &Ctx, out: &mut Vec<FieldCause>) {
    if !s.is_object() {
        out.push(invalid(path, shown(s), "must be a JSON object"));
        return;
    }
    openapi_subset(s, path, out);
    if let (Some(reason), Some(_)) = (&ctx.no_defaults, node::default_of(s)) {
        out.push(FieldCause::forbidden(child(path, "default"), format!("must not be set {reason}")));
    }
    if ctx.resource_meta && node::embedded(s) {
        out.push(FieldCause::forbidden(child(path, EMBEDDED), "must not be used inside of resource meta"));
    }
    if node::properties(s).is_some_and(|p| !p.is_empty()) {
        if let Additional::Allowed(false) | Additional::Schema(_) = node::additional(s) {
            let detail = "additionalProperties and properties are mutual exclusive";
            out.push(FieldCause::forbidden(child(path, "additionalProperties"), detail));
        }
    }
    if s.get(PRESERVE_UNKNOWN) == Some(&Value::Bool(false)) {
        out.push(invalid(child(path, PRESERVE_UNKNOWN), "false".into(), "must be true or undefined"));
    }
    list_and_map_types(s, path, out);
    rule_shapes(s, path, out);
    invariants(s, path, ctx.level, out);
    let (skip_any_of, skip_first_all_of) = int_or_string_patterns(s);
    value_validations(s, path, skip_any_of, skip_first_all_of, out);
    for (key_name, subs) in junctions(s) {
        for (i, sub) in subs.iter().enumerate() {
            completeness(sub, Some(s), path, &index(&child(path, key_name), i), out);
        }
    }
    if let Some(not) = s.get("not") {
        completeness(not, Some(s), path, &child(path, "not"), out);
    }
}

/// The keywords CRDs forbid anywhere, structural node or value validation.
pub(super) fn openapi_subset(s: &Value, path: &str, out: &mut Vec<FieldCause>) {
    match node::type_of(s) {
        "" => {}
        "null" => out.push(FieldCause::forbidden(
            child(path, "type"),
            "type cannot be set to null, use nullable as an alternative",
        )),
        t if !TYPES.contains(&t) => out.push(not_supported_str(child(path, "type"), t, &TYPES)),
        _ => {}
    }
    for (keyword, detail) in UNSUPPORTED {
        if s.get(keyword).is_some() {
            out.push(FieldCause::forbidden(child(path, keyword), detail));
        }
    }
    if s.get("items").is_some_and(Value::is_array) {
        out.push(FieldCause::forbidden(child(path, "items"), "items must be a schema object and not an array"));
    }
    if node::flag(s, "uniqueItems") {
        let detail = "uniqueItems cannot be set to true since the runtime complexity becomes quadratic";
        out.push(FieldCause::forbidden(child(path, "uniqueItems"), detail));
    }
    if let Some(pattern) = node::str_of(s, "pattern") {
        if let Err(e) = regex::Regex::new(pattern) {
            let detail = format!("must be a valid regular expression, but isn't: {e}");
            out.push(invalid(child(path, "pattern"), quoted(pattern), detail));
        }
    }
}

/// The structural invariants of one node (kube's `validateStructuralInvariants`).
fn invariants(s: &Value, path: &str, level: Level, out: &mut Vec<FieldCause>) {
    let ty = node::type_of(s);
    let embedded = node::embedded(s);
    let root = level == Level::Root;
    if ty == "array" && s.get("items").is_none() {
        out.push(FieldCause::required(child(path, "items"), "must be specified"));
    }
    let has_additional = !matches!(node::additional(s), Additional::Absent);
    if root && has_additional {
        out.push(FieldCause::forbidden(child(path, "additionalProperties"), "must not be used at the root"));
    }
    if node::int_or_string(s) {
        let detail = "must be false if x-kubernetes-int-or-string is true";
        if node::preserves_unknown(s) {
            out.push(invalid(child(path, PRESERVE_UNKNOWN), "true".into(), detail));
        }
        if embedded {
            out.push(invalid(child(path, EMBEDDED), "true".into(), detail));
        }
    }
    if embedded && ty != "object" {
        out.push(required_or_invalid(
            child(path, "type"),
            ty,
            "must be object if x-kubernetes-embedded-resource is true",
        ));
    } else if ty.is_empty() && !node::int_or_string(s) && !node::preserves_unknown(s) {
        let detail = match level {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        out.push(FieldCause::required(child(path, "type"), detail));
    }
    if embedded && has_additional {
        let detail = "must not be used if x-kubernetes-embedded-resource is set";
        out.push(FieldCause::forbidden(child(path, "additionalProperties"), detail));
    }
    if root && !ty.is_empty() && ty != "object" {
        out.push(invalid(child(path, "type"), quoted(ty), "must be object at the root"));
    }
    let props_path = child(path, "properties");
    if root || embedded {
        for (field, want) in [("kind", "string"), ("apiVersion", "string"), ("metadata", "object")] {
            if let Some(p) = node::property(s, field) {
                let actual = node::type_of(p);
                if actual != want {
                    out.push(invalid(
                        child(&key(&props_path, field), "type"),
                        quoted(actual),
                        format!("must be {want}"),
                    ));
                }
            }
        }
    }
    if let (true, Some(metadata)) = (root, node::property(s, "metadata")) {
        if !metadata_only_names(metadata) {
            out.push(FieldCause::forbidden(
                key(&props_path, "metadata"),
                "must not specify anything other than name and generateName, but metadata is implicitly specified",
            ));
        }
    }
    if embedded && !node::preserves_unknown(s) && node::properties(s).is_none_or(|p| p.is_empty()) {
        out.push(FieldCause::required(
            props_path,
            "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
        ));
    }
}

/// Whether the root's `metadata` schema says nothing but its type, a default (checked
/// elsewhere) and the properties `name` and `generateName`.
fn metadata_only_names(metadata: &Value) -> bool {
    let Some(map) = metadata.as_object() else { return false };
    map.iter().all(|(k, v)| match k.as_str() {
        "type" | "default" => true,
        "properties" => v.as_object().is_some_and(|p| p.keys().all(|n| n == "name" || n == "generateName")),
        _ => false,
    })
}

/// Why a node's `default` (at `path`) is not a value of the node itself.
fn default_causes(d: &Value, s: &Value, path: &str) -> Vec<FieldCause> {
    let mut out = Vec::new();
    let mut pruned = d.clone();
    if !prune::prune_value(&mut pruned, s, node::embedded(s)).is_empty() {
        out.push(invalid(path, shown(d), "must not have unknown fields"));
    }
    let mut outcome = Outcome::default();
    outcome.node(d, s, "", false);
    if !outcome.causes.is_empty() {
        out.extend(outcome.causes.into_iter().map(|c| rebase(c, path)));
        return out;
    }
    let lists = lists::list_sets_and_maps(d, s, path);
    if !lists.is_empty() {
        out.extend(lists);
        return out;
    }
    // A default must also pass the node's rules, as a new value and as an unchanged one.
    out.extend(cel::validate(d, Some(d), s, path, node::embedded(s)));
    out
}

/// A cause found on a value validated at `""`, moved below `base`.
fn rebase(mut cause: FieldCause, base: &str) -> FieldCause {
    cause.field = match cause.field.as_str() {
        "" => base.to_string(),
        f if f.starts_with('[') => format!("{base}{f}"),
        f => child(base, f),
    };
    cause
}

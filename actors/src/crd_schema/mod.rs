//! CustomResourceDefinition schemas as kube-apiserver's apiextensions-apiserver applies
//! them: the `openAPIV3Schema` of a CRD version (a `JSONSchemaProps` as JSON) against the
//! custom objects written under it.
//!
//! A write goes through [`prune`] (unknown fields out), then [`apply_defaults`], then
//! [`validate`] (OpenAPI keywords, embedded resources, list types, then the CEL rules of
//! `x-kubernetes-validations`); [`check_structural`] vets the schema when the CRD is written.
//!
//! Where to look: `node.rs` reads schema nodes; `report.rs` builds paths and kube's messages;
//! `structural*.rs` check schemas; `prune.rs` and `defaults.rs` change objects;
//! `validate.rs` (OpenAPI keywords, with `format.rs`), `lists.rs` (embedded resources and list
//! types) and `cel.rs` (rules, with kube's extra functions in `cel_lib.rs`) validate them.
//!
//! Not supported (kube has them): CEL's static type checking beyond undefined fields (a rule
//! of the wrong result type fails when run); CEL cost limits; kube's CEL libraries beyond
//! the standard, string, list and math ones and kube's list and regex functions (no
//! `quantity`, `url`, `ip`, `cidr`, `duration`, `timestamp`); `format`-typed CEL values
//! (`byte` strings stay strings); ratcheting of unchanged invalid fields on update;
//! ObjectMeta validation of embedded resources' `metadata`; and the cause reason
//! `FieldValueTypeInvalid` (type errors are `FieldValueInvalid` causes with kube's message).

mod cel;
mod cel_lib;
mod defaults;
mod format;
mod lists;
mod node;
mod prune;
mod report;
mod structural;
mod structural_extensions;
mod structural_junctions;
mod validate;

#[cfg(test)]
mod tests;

use serde_json::Value;

use crate::api_error::{CauseType, FieldCause};

/// Checks a CRD version's openAPIV3Schema is structural and its CEL rules compile; returns
/// causes with field paths relative to `path_prefix` (e.g.
/// `spec.versions[0].schema.openAPIV3Schema`).
pub fn check_structural(schema: &Value, path_prefix: &str) -> Vec<FieldCause> {
    structural::check(schema, path_prefix)
}

/// Removes fields the schema does not know (unless x-kubernetes-preserve-unknown-fields, or
/// x-kubernetes-embedded-resource keeps apiVersion/kind/metadata, or x-kubernetes-int-or-string).
/// At the root, apiVersion, kind and metadata are always kept. Returns the pruned paths
/// (kube style, e.g. `spec.foo`) in document order, for `fieldValidation` Strict (error) /
/// Warn (warning).
pub fn prune(obj: &mut Value, schema: &Value) -> Vec<String> {
    prune::prune_object(obj, schema)
}

/// Applies `default`s: a missing property with a default gets it (deep-copied), recursively
/// into objects, array items and additionalProperties; a `nullable: false` null with a
/// default gets the default, and one without a default is dropped. Run it after [`prune`],
/// as kube does.
pub fn apply_defaults(obj: &mut Value, schema: &Value) {
    defaults::apply(obj, schema)
}

/// Validates `obj` (the whole custom object) against the schema, with `old` the object
/// before an update (for CEL transition rules using oldSelf). Returns every failing field,
/// not just the first.
pub fn validate(obj: &Value, old: Option<&Value>, schema: &Value) -> Vec<FieldCause> {
    let mut outcome = validate::Outcome::default();
    outcome.node(obj, schema, "", true);
    let mut causes = outcome.causes;
    let embedded = lists::embedded_resources(obj, schema);
    // A missing apiVersion or kind blocks the rules too, as kube-apiserver has it.
    let blocking = outcome.blocking || embedded.iter().any(|c| c.kind == CauseType::Required);
    causes.extend(embedded);
    causes.extend(lists::list_sets_and_maps(obj, schema, ""));
    if !cel::has_rules(schema) {
        return causes;
    }
    if blocking {
        // kube-apiserver does not run rules over a value of the wrong shape, and says so.
        let detail = "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation";
        causes.push(FieldCause::invalid("<nil>", "null", detail));
    } else {
        causes.extend(cel::validate(obj, old, schema, "", true));
    }
    causes
}

//! Tests of the CRD schema engine, by area, with kube-apiserver's messages as expected.

mod cel;
mod keywords;
mod load_test;
mod prune_defaults;
mod structural;
mod units;

use serde_json::Value;

use crate::api_error::FieldCause;

/// Each cause as kube-apiserver prints it: `field: message`.
pub(super) fn lines(causes: &[FieldCause]) -> Vec<String> {
    causes.iter().map(|c| format!("{}: {}", c.field, c.message())).collect()
}

/// The causes of validating `obj` (a create) as lines.
pub(super) fn errors(obj: Value, schema: &Value) -> Vec<String> {
    lines(&super::validate(&obj, None, schema))
}

/// A root schema with one property `spec` of the given schema.
pub(super) fn with_spec(spec: Value) -> Value {
    serde_json::json!({"type": "object", "properties": {"spec": spec}})
}

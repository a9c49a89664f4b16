//! The LoadTest CRD of the getting-started example, end to end: prune, default, validate.

use serde_json::{json, Value};

use super::{errors, lines};
use crate::crd_schema::{apply_defaults, check_structural, prune, validate};

fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["service"],
                "x-kubernetes-validations": [{"rule": "self.scheme == 'http' || self.scheme == 'https'"}],
                "properties": {
                    "service": {"type": "string"},
                    "scheme": {"type": "string", "default": "http"},
                    "requestsPerSecond": {"type": "integer", "minimum": 1},
                    "paths": {"type": "array", "items": {"type": "string"}}
                }
            }
        }
    })
}

fn load_test(spec: Value) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "LoadTest", "metadata": {"name": "lt"}, "spec": spec})
}

#[test]
fn load_test_schema_is_structural() {
    assert_eq!(lines(&check_structural(&schema(), "spec.versions[0].schema.openAPIV3Schema")), Vec::<String>::new());
}

#[test]
fn a_valid_load_test_passes() {
    let obj = load_test(json!({"service": "web", "scheme": "https", "requestsPerSecond": 10, "paths": ["/"]}));
    assert_eq!(errors(obj, &schema()), Vec::<String>::new());
}

#[test]
fn a_string_requests_per_second_is_a_type_error_and_blocks_the_rules() {
    let obj = load_test(json!({"service": "web", "scheme": "ftp", "requestsPerSecond": "fast"}));
    assert_eq!(
        errors(obj, &schema()),
        [
            "spec.requestsPerSecond: Invalid value: \"string\": spec.requestsPerSecond in body must be of type integer: \"string\"",
            "<nil>: Invalid value: \"null\": some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
        ]
    );
}

#[test]
fn an_unsupported_scheme_fails_the_rule_at_spec() {
    let obj = load_test(json!({"service": "web", "scheme": "ftp"}));
    assert_eq!(
        errors(obj, &schema()),
        ["spec: Invalid value: \"object\": failed rule: self.scheme == 'http' || self.scheme == 'https'"]
    );
}

#[test]
fn the_write_path_prunes_defaults_then_validates() {
    let mut obj = load_test(json!({"service": "web", "colour": "red", "requestsPerSecond": 0}));
    assert_eq!(prune(&mut obj, &schema()), ["spec.colour"]);
    apply_defaults(&mut obj, &schema());
    assert_eq!(obj["spec"]["scheme"], "http");
    assert_eq!(obj["metadata"]["name"], "lt", "metadata is kept");
    assert_eq!(
        lines(&validate(&obj, None, &schema())),
        ["spec.requestsPerSecond: Invalid value: 0: spec.requestsPerSecond in body should be greater than or equal to 1"]
    );
}

#[test]
fn a_missing_required_service_is_required() {
    let obj = load_test(json!({"scheme": "http"}));
    assert_eq!(
        errors(obj, &schema()),
        [
            "spec.service: Required value",
            "<nil>: Invalid value: \"null\": some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
        ]
    );
}

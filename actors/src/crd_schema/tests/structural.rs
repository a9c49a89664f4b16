//! `check_structural`: schemas kube-apiserver accepts and the causes of those it rejects.

use serde_json::{json, Value};

use super::lines;
use crate::crd_schema::check_structural;

const P: &str = "spec.versions[0].schema.openAPIV3Schema";

fn check(schema: Value) -> Vec<String> {
    lines(&check_structural(&schema, P))
}

#[test]
fn a_typical_schema_is_structural() {
    let schema = json!({"type": "object", "properties": {
        "metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}}},
        "spec": {"type": "object", "required": ["a"], "properties": {
            "a": {"type": "string", "enum": ["x", "y"], "default": "x"},
            "port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "items": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}},
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "template": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true}
        }, "x-kubernetes-validations": [{"rule": "self.a != 'y' || has(self.port)", "fieldPath": ".port"}]},
        "status": {"type": "object", "anyOf": [{"required": ["phase"]}], "properties": {"phase": {"type": "string"}}}
    }});
    assert_eq!(check(schema), Vec::<String>::new());
}

#[test]
fn every_node_needs_a_type() {
    let schema = json!({"properties": {
        "a": {"description": "untyped"},
        "l": {"type": "array", "items": {"description": "untyped"}},
        "p": {"x-kubernetes-preserve-unknown-fields": true}
    }});
    assert_eq!(
        check(schema),
        [
            format!("{P}.properties[a].type: Required value: must not be empty for specified object fields"),
            format!("{P}.properties[l].items.type: Required value: must not be empty for specified array items"),
            format!("{P}.type: Required value: must not be empty at the root"),
        ]
    );
}

#[test]
fn unsupported_keywords_are_forbidden() {
    let schema = json!({"type": "object", "properties": {
        "r": {"$ref": "#/definitions/x"},
        "both": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}},
        "tuple": {"type": "array", "items": [{"type": "string"}]},
        "u": {"type": "array", "items": {"type": "string"}, "uniqueItems": true},
        "n": {"type": "null"}
    }});
    assert_eq!(
        check(schema),
        [
            format!("{P}.properties[both].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive"),
            format!("{P}.properties[n].type: Forbidden: type cannot be set to null, use nullable as an alternative"),
            format!("{P}.properties[r].$ref: Forbidden: $ref is not supported"),
            format!("{P}.properties[r].type: Required value: must not be empty for specified object fields"),
            format!("{P}.properties[tuple].items: Forbidden: items must be a schema object and not an array"),
            format!("{P}.properties[u].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic"),
        ]
    );
}

#[test]
fn list_map_needs_keys_and_object_items() {
    let schema = json!({"type": "object", "properties": {
        "nokeys": {"type": "array", "x-kubernetes-list-type": "map", "items": {"type": "object"}},
        "scalar": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"], "items": {"type": "string"}},
        "optional": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"],
            "items": {"type": "object", "properties": {"k": {"type": "string"}}}}
    }});
    assert_eq!(
        check(schema),
        [
            format!("{P}.properties[nokeys].x-kubernetes-list-map-keys: Required value: must not be empty if x-kubernetes-list-type is map"),
            format!("{P}.properties[optional].items.properties[k].default: Required value: this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property"),
            format!("{P}.properties[scalar].items.type: Invalid value: \"string\": must be object if parent array's x-kubernetes-list-type is map"),
        ]
    );
}

#[test]
fn metadata_may_only_restrict_name_and_generate_name() {
    let schema = json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {
        "name": {"type": "string"}, "labels": {"type": "object"}
    }}}});
    assert_eq!(
        check(schema),
        [format!("{P}.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified")]
    );
}

#[test]
fn value_validations_may_not_specify_structure() {
    let schema = json!({"type": "object", "properties": {"a": {"type": "object",
        "properties": {"b": {"type": "string"}},
        "anyOf": [{"type": "object", "properties": {"c": {"default": "x"}}}]
    }}});
    assert_eq!(
        check(schema),
        [
            format!("{P}.properties[a].anyOf[0].properties[c].default: Forbidden: must be undefined to be structural"),
            format!("{P}.properties[a].anyOf[0].type: Forbidden: must be empty to be structural"),
            format!("{P}.properties[a].properties[c]: Required value: because it is defined in {P}.properties[a].anyOf[0].properties[c]"),
        ]
    );
}

#[test]
fn defaults_must_validate_against_their_schema() {
    let schema = json!({"type": "object", "properties": {
        "n": {"type": "integer", "default": "many"},
        "o": {"type": "object", "default": {"a": 1, "zzz": true}, "properties": {"a": {"type": "integer", "maximum": 0}}},
        "r": {"type": "string", "default": "bad", "x-kubernetes-validations": [{"rule": "self == 'good'"}]}
    }});
    assert_eq!(
        check(schema),
        [
            format!(
                "{P}.properties[n].default: Invalid value: \"string\": in body must be of type integer: \"string\""
            ),
            format!("{P}.properties[o].default: Invalid value: {{\"a\":1,\"zzz\":true}}: must not have unknown fields"),
            format!("{P}.properties[o].default.a: Invalid value: 1: a in body should be less than or equal to 0"),
            format!("{P}.properties[r].default: Invalid value: \"string\": failed rule: self == 'good'"),
        ]
    );
}

#[test]
fn defaults_in_top_level_metadata_are_forbidden() {
    let schema = json!({"type": "object", "properties": {"metadata": {"type": "object", "default": {"name": "x"}}}});
    assert_eq!(
        check(schema),
        [format!("{P}.properties[metadata].default: Forbidden: must not be set in top-level metadata")]
    );
}

#[test]
fn rules_must_compile_and_name_declared_fields() {
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object",
        "properties": {"a": {"type": "string"}},
        "x-kubernetes-validations": [
            {"rule": "self.a =="}, {"rule": "self.nope == 1"}, {"rule": ""},
            {"rule": "self.a == 'x'", "reason": "Bogus"}, {"rule": "self.a == 'x'", "fieldPath": ".b"}
        ]
    }}});
    let got = check(schema);
    assert_eq!(
        got[..3],
        [
            format!("{P}.properties[spec].x-kubernetes-validations[2].rule: Required value: rule is not specified"),
            format!("{P}.properties[spec].x-kubernetes-validations[3].reason: Unsupported value: \"Bogus\": supported values: \"FieldValueDuplicate\", \"FieldValueForbidden\", \"FieldValueInvalid\", \"FieldValueRequired\""),
            format!("{P}.properties[spec].x-kubernetes-validations[4].fieldPath: Invalid value: \".b\": fieldPath must be a valid path"),
        ]
    );
    // The rule shapes are schema errors; only a schema without them gets its rules compiled.
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object",
        "properties": {"a": {"type": "string"}},
        "x-kubernetes-validations": [{"rule": "self.a =="}, {"rule": "self.nope == 1"}]
    }}});
    let got = check(schema);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].starts_with(&format!(
        "{P}.properties[spec].x-kubernetes-validations[0].rule: Invalid value: \"self.a ==\": compilation failed: "
    )));
    assert_eq!(got[1], format!("{P}.properties[spec].x-kubernetes-validations[1].rule: Invalid value: \"self.nope == 1\": compilation failed: ERROR: <input>: undefined field 'nope'"));
}

#[test]
fn old_self_is_forbidden_where_items_cannot_be_correlated() {
    let schema = json!({"type": "object", "properties": {"l": {"type": "array", "items": {
        "type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf"}]
    }}, "s": {"type": "string", "x-kubernetes-validations": [{"rule": "self != ''", "optionalOldSelf": true}]}}});
    assert_eq!(
        check(schema),
        [
            format!("{P}.properties[l].items.x-kubernetes-validations[0].rule: Invalid value: \"self == oldSelf\": oldSelf cannot be used on the uncorrelatable portion of the schema within {P}.properties[l]"),
            format!("{P}.properties[s].x-kubernetes-validations[0].optionalOldSelf: Invalid value: true: may not be set if oldSelf is not used in rule"),
        ]
    );
}

#[test]
fn embedded_resources_and_extensions_are_checked() {
    let schema = json!({"type": "object", "properties": {
        "e": {"type": "string", "x-kubernetes-embedded-resource": true},
        "i": {"x-kubernetes-int-or-string": true, "x-kubernetes-preserve-unknown-fields": true},
        "p": {"type": "object", "x-kubernetes-preserve-unknown-fields": false},
        "m": {"type": "string", "x-kubernetes-map-type": "atomic"}
    }, "additionalProperties": {"type": "string"}});
    assert_eq!(
        check(schema),
        [
            format!("{P}.additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive"),
            format!("{P}.additionalProperties: Forbidden: must not be used at the root"),
            format!("{P}.properties[e].properties: Required value: must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields"),
            format!("{P}.properties[e].type: Invalid value: \"string\": must be object if x-kubernetes-embedded-resource is true"),
            format!("{P}.properties[i].x-kubernetes-preserve-unknown-fields: Invalid value: true: must be false if x-kubernetes-int-or-string is true"),
            format!("{P}.properties[m].type: Invalid value: \"string\": must be object if x-kubernetes-map-type is specified"),
            format!("{P}.properties[p].x-kubernetes-preserve-unknown-fields: Invalid value: false: must be true or undefined"),
        ]
    );
}

#[test]
fn a_bad_pattern_is_invalid() {
    let schema = json!({"type": "object", "properties": {"a": {"type": "string", "pattern": "(["}}});
    let got = check(schema);
    assert_eq!(got.len(), 1);
    assert!(got[0].starts_with(&format!(
        "{P}.properties[a].pattern: Invalid value: \"([\": must be a valid regular expression, but isn't: "
    )));
}

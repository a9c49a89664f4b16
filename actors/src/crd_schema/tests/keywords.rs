//! The OpenAPI keywords, one test each, with kube-openapi's messages.

use serde_json::json;

use super::{errors, with_spec};

#[test]
fn type_integer_rejects_fractions_and_strings_but_takes_whole_floats() {
    let schema = with_spec(json!({"type": "integer"}));
    assert_eq!(errors(json!({"spec": 1.0}), &schema), Vec::<String>::new());
    assert_eq!(
        errors(json!({"spec": 1.5}), &schema),
        ["spec: Invalid value: \"number\": spec in body must be of type integer: \"number\""]
    );
    assert_eq!(
        errors(json!({"spec": "1"}), &schema),
        ["spec: Invalid value: \"string\": spec in body must be of type integer: \"string\""]
    );
}

#[test]
fn type_number_accepts_integers() {
    let schema = with_spec(json!({"type": "number"}));
    assert_eq!(errors(json!({"spec": 3}), &schema), Vec::<String>::new());
    assert_eq!(errors(json!({"spec": 3.5}), &schema), Vec::<String>::new());
}

#[test]
fn types_object_array_boolean_string() {
    let schema = json!({"type": "object", "properties": {
        "o": {"type": "object"}, "a": {"type": "array", "items": {"type": "string"}},
        "b": {"type": "boolean"}, "s": {"type": "string"}
    }});
    assert_eq!(
        errors(json!({"o": [], "a": {}, "b": "yes", "s": 1}), &schema),
        [
            "a: Invalid value: \"object\": a in body must be of type array: \"object\"",
            "b: Invalid value: \"string\": b in body must be of type boolean: \"string\"",
            "o: Invalid value: \"array\": o in body must be of type object: \"array\"",
            "s: Invalid value: \"integer\": s in body must be of type string: \"integer\"",
        ]
    );
}

#[test]
fn null_is_allowed_only_when_nullable() {
    let schema = json!({"type": "object", "properties": {
        "n": {"type": "string", "nullable": true}, "m": {"type": "string"}
    }});
    assert_eq!(
        errors(json!({"n": null, "m": null}), &schema),
        ["m: Invalid value: \"null\": m in body must be of type string: \"null\""]
    );
}

#[test]
fn required_fields_are_required_values() {
    let schema = with_spec(json!({"type": "object", "required": ["a", "b"], "properties": {
        "a": {"type": "string"}, "b": {"type": "string"}
    }}));
    assert_eq!(errors(json!({"spec": {"a": "x"}}), &schema), ["spec.b: Required value"]);
}

#[test]
fn enum_lists_the_supported_values() {
    let schema = with_spec(json!({"type": "object", "properties": {
        "scheme": {"type": "string", "enum": ["http", "https"]},
        "n": {"type": "integer", "enum": [1, 2]}
    }}));
    assert_eq!(
        errors(json!({"spec": {"scheme": "ftp", "n": 3}}), &schema),
        [
            "spec.n: Unsupported value: 3: supported values: \"1\", \"2\"",
            "spec.scheme: Unsupported value: \"ftp\": supported values: \"http\", \"https\"",
        ]
    );
    assert_eq!(errors(json!({"spec": {"scheme": "https", "n": 2.0}}), &schema), Vec::<String>::new());
}

#[test]
fn pattern_and_lengths_count_characters() {
    let schema = with_spec(json!({"type": "string", "pattern": "^[a-zé]+$", "minLength": 2, "maxLength": 3}));
    assert_eq!(errors(json!({"spec": "éé"}), &schema), Vec::<String>::new());
    assert_eq!(
        errors(json!({"spec": "A"}), &schema),
        [
            "spec: Invalid value: \"A\": spec in body should be at least 2 chars long",
            "spec: Invalid value: \"A\": spec in body should match '^[a-zé]+$'",
        ]
    );
    assert_eq!(errors(json!({"spec": "abcd"}), &schema), ["spec: Too long: must have at most 3 bytes"]);
}

#[test]
fn minimum_maximum_and_their_exclusive_forms() {
    let schema = json!({"type": "object", "properties": {
        "a": {"type": "integer", "minimum": 1, "maximum": 10},
        "b": {"type": "number", "minimum": 0.5, "exclusiveMinimum": true, "maximum": 1000000, "exclusiveMaximum": true}
    }});
    assert_eq!(errors(json!({"a": 10, "b": 0.75}), &schema), Vec::<String>::new());
    assert_eq!(
        errors(json!({"a": 11, "b": 0.5}), &schema),
        [
            "a: Invalid value: 11: a in body should be less than or equal to 10",
            "b: Invalid value: 0.5: b in body should be greater than 0.5",
        ]
    );
    assert_eq!(
        errors(json!({"a": 0, "b": 1000000.0}), &schema),
        [
            "a: Invalid value: 0: a in body should be greater than or equal to 1",
            "b: Invalid value: 1e+06: b in body should be less than 1e+06",
        ]
    );
}

#[test]
fn multiple_of_handles_fractions() {
    let schema = json!({"type": "object", "properties": {
        "i": {"type": "integer", "multipleOf": 5}, "f": {"type": "number", "multipleOf": 0.1}
    }});
    assert_eq!(errors(json!({"i": 15, "f": 0.3}), &schema), Vec::<String>::new());
    assert_eq!(
        errors(json!({"i": 7, "f": 0.25}), &schema),
        [
            "f: Invalid value: 0.25: f in body should be a multiple of 0.1",
            "i: Invalid value: 7: i in body should be a multiple of 5",
        ]
    );
}

#[test]
fn item_counts_and_unique_items() {
    let schema = with_spec(
        json!({"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 3, "uniqueItems": true}),
    );
    assert_eq!(
        errors(json!({"spec": [1]}), &schema),
        ["spec: Invalid value: 1: spec in body should have at least 2 items"]
    );
    assert_eq!(errors(json!({"spec": [1, 2, 3, 4]}), &schema), ["spec: Too many: 4: must have at most 3 items"]);
    assert_eq!(
        errors(json!({"spec": [1, 1.0]}), &schema),
        ["spec: Invalid value: \"\": spec in body shouldn't contain duplicates"]
    );
}

#[test]
fn items_are_validated_with_their_index() {
    let schema = with_spec(json!({"type": "array", "items": {"type": "string"}}));
    assert_eq!(
        errors(json!({"spec": ["a", 2, "c", true]}), &schema),
        [
            "spec[1]: Invalid value: \"integer\": spec[1] in body must be of type string: \"integer\"",
            "spec[3]: Invalid value: \"boolean\": spec[3] in body must be of type string: \"boolean\"",
        ]
    );
}

#[test]
fn property_counts() {
    let schema = with_spec(
        json!({"type": "object", "additionalProperties": {"type": "string"}, "minProperties": 1, "maxProperties": 2}),
    );
    assert_eq!(
        errors(json!({"spec": {}}), &schema),
        ["spec: Invalid value: 0: spec in body should have at least 1 properties"]
    );
    assert_eq!(
        errors(json!({"spec": {"a": "1", "b": "2", "c": "3"}}), &schema),
        ["spec: Too many: 3: must have at most 2 items"]
    );
}

#[test]
fn additional_properties_schema_and_false() {
    let schema = json!({"type": "object", "properties": {
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "closed": {"type": "object", "additionalProperties": false}
    }});
    assert_eq!(
        errors(json!({"labels": {"a": "x", "b": 1}, "closed": {"x": 1}}), &schema),
        [
            "closed: Invalid value: \"x\": closed.x in body is a forbidden property",
            "labels.b: Invalid value: \"integer\": labels.b in body must be of type string: \"integer\"",
        ]
    );
}

#[test]
fn formats_are_checked_and_unknown_ones_ignored() {
    let schema = json!({"type": "object", "properties": {
        "when": {"type": "string", "format": "date-time"}, "day": {"type": "string", "format": "date"},
        "id": {"type": "string", "format": "uuid"}, "data": {"type": "string", "format": "byte"},
        "ip": {"type": "string", "format": "ipv4"}, "ip6": {"type": "string", "format": "ipv6"},
        "net": {"type": "string", "format": "cidr"}, "host": {"type": "string", "format": "hostname"},
        "mail": {"type": "string", "format": "email"}, "odd": {"type": "string", "format": "no-such-format"},
        "n": {"type": "integer", "format": "int32"}, "d": {"type": "number", "format": "double"}
    }});
    let good = json!({
        "when": "2024-02-29T12:00:00Z", "day": "2024-02-29", "id": "123e4567-e89b-12d3-a456-426614174000",
        "data": "aGVsbG8=", "ip": "10.0.0.1", "ip6": "::1", "net": "10.0.0.0/8", "host": "example.com",
        "mail": "a@example.com", "odd": "anything", "n": 5, "d": 1.5
    });
    assert_eq!(errors(good, &schema), Vec::<String>::new());
    let bad = json!({
        "when": "yesterday", "day": "2023-02-29", "id": "nope", "data": "***", "ip": "10.0.0",
        "ip6": "1.2.3.4", "net": "10.0.0.0/33", "host": "-bad-", "mail": "nobody"
    });
    assert_eq!(
        errors(bad, &schema),
        [
            "data: Invalid value: \"***\": data in body must be of type byte: \"***\"",
            "day: Invalid value: \"2023-02-29\": day in body must be of type date: \"2023-02-29\"",
            "host: Invalid value: \"-bad-\": host in body must be of type hostname: \"-bad-\"",
            "id: Invalid value: \"nope\": id in body must be of type uuid: \"nope\"",
            "ip: Invalid value: \"10.0.0\": ip in body must be of type ipv4: \"10.0.0\"",
            "ip6: Invalid value: \"1.2.3.4\": ip6 in body must be of type ipv6: \"1.2.3.4\"",
            "mail: Invalid value: \"nobody\": mail in body must be of type email: \"nobody\"",
            "net: Invalid value: \"10.0.0.0/33\": net in body must be of type cidr: \"10.0.0.0/33\"",
            "when: Invalid value: \"yesterday\": when in body must be of type date-time: \"yesterday\"",
        ]
    );
}

#[test]
fn int_or_string_takes_either() {
    let schema = with_spec(json!({"x-kubernetes-int-or-string": true}));
    assert_eq!(errors(json!({"spec": 80}), &schema), Vec::<String>::new());
    assert_eq!(errors(json!({"spec": "http"}), &schema), Vec::<String>::new());
    assert_eq!(
        errors(json!({"spec": true}), &schema),
        ["spec: Invalid value: \"boolean\": spec in body must be of type integer,string: \"boolean\""]
    );
}

#[test]
fn any_of_one_of_all_of_and_not() {
    let schema = json!({"type": "object", "properties": {
        "any": {"type": "string", "anyOf": [{"maxLength": 1}, {"pattern": "^x"}]},
        "one": {"type": "integer", "oneOf": [{"minimum": 0}, {"maximum": 10}]},
        "all": {"type": "integer", "allOf": [{"minimum": 0}, {"maximum": 10}]},
        "not": {"type": "string", "not": {"enum": ["forbidden"]}}
    }});
    assert_eq!(errors(json!({"any": "xyz", "one": 20, "all": 5, "not": "ok"}), &schema), Vec::<String>::new());
    assert_eq!(
        errors(json!({"any": "abc", "one": 5, "all": 11, "not": "forbidden"}), &schema),
        [
            "all: Invalid value: 11: all in body should be less than or equal to 10",
            "all: Invalid value: \"\": \"all\" must validate all the schemas (allOf)",
            "any: Invalid value: \"\": \"any\" must validate at least one schema (anyOf)",
            "any: Too long: must have at most 1 bytes",
            "not: Invalid value: \"\": \"not\" must not validate the schema (not)",
            "one: Invalid value: \"\": \"one\" must validate one and only one schema (oneOf). Found 2 valid alternatives",
        ]
    );
}

#[test]
fn embedded_resources_need_api_version_and_kind() {
    let schema = with_spec(json!({"type": "object", "properties": {"template": {
        "type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true
    }}}));
    assert_eq!(
        errors(json!({"spec": {"template": {"metadata": {}}}}), &schema),
        [
            "spec.template.apiVersion: Required value: must not be empty",
            "spec.template.kind: Required value: must not be empty"
        ]
    );
    assert_eq!(
        errors(json!({"spec": {"template": {"apiVersion": "v1", "kind": "Pod"}}}), &schema),
        Vec::<String>::new()
    );
}

#[test]
fn list_type_set_reports_each_repeat_once() {
    let schema = with_spec(json!({"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}));
    assert_eq!(
        errors(json!({"spec": ["a", "b", "a", "a", "b"]}), &schema),
        ["spec[2]: Duplicate value: \"a\"", "spec[4]: Duplicate value: \"b\""]
    );
}

#[test]
fn list_type_map_keys_must_be_unique() {
    let schema = with_spec(json!({
        "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name", "port"],
        "items": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string"}, "port": {"type": "integer", "default": 80}
        }}
    }));
    assert_eq!(
        errors(json!({"spec": [{"name": "a", "port": 80}, {"name": "a", "port": 81}, {"name": "a"}]}), &schema),
        ["spec[2]: Duplicate value: {\"name\":\"a\",\"port\":80}"]
    );
}

#[test]
fn map_type_has_no_validation_effect() {
    let schema = with_spec(
        json!({"type": "object", "x-kubernetes-map-type": "atomic", "additionalProperties": {"type": "string"}}),
    );
    assert_eq!(errors(json!({"spec": {"a": "b"}}), &schema), Vec::<String>::new());
}

#[test]
fn metadata_is_left_to_object_meta_validation_except_name_restrictions() {
    let schema = json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 5}
    }}}});
    assert_eq!(errors(json!({"metadata": {"name": "short", "labels": {"a": "b"}}}), &schema), Vec::<String>::new());
    assert_eq!(
        errors(json!({"metadata": {"name": "toolong"}}), &schema),
        ["metadata.name: Too long: must have at most 5 bytes"]
    );
}

#[test]
fn nonsense_never_panics() {
    for schema in [json!(null), json!(5), json!({"type": 5, "properties": []}), json!({"items": [1], "enum": 3})] {
        for obj in [json!(null), json!({"a": [1, {"b": null}]}), json!("x")] {
            let _ = super::super::validate(&obj, Some(&obj), &schema);
            let mut o = obj.clone();
            let _ = super::super::prune(&mut o, &schema);
            super::super::apply_defaults(&mut o, &schema);
            let _ = super::super::check_structural(&schema, "p");
        }
    }
}

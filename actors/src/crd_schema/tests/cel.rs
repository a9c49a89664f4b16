//! `x-kubernetes-validations` rules at validation time.

use serde_json::{json, Value};

use super::{errors, lines, with_spec};
use crate::crd_schema::validate;

fn rule_at_spec(rule: Value, spec_props: Value) -> Value {
    with_spec(json!({"type": "object", "x-kubernetes-validations": [rule], "properties": spec_props}))
}

#[test]
fn a_simple_rule_passes_and_fails_with_the_default_message() {
    let schema = rule_at_spec(
        json!({"rule": "self.min <= self.max"}),
        json!({"min": {"type": "integer"}, "max": {"type": "integer"}}),
    );
    assert_eq!(errors(json!({"spec": {"min": 1, "max": 2}}), &schema), Vec::<String>::new());
    assert_eq!(
        errors(json!({"spec": {"min": 3, "max": 2}}), &schema),
        ["spec: Invalid value: \"object\": failed rule: self.min <= self.max"]
    );
}

#[test]
fn message_message_expression_reason_and_field_path() {
    let props = json!({"min": {"type": "integer"}, "max": {"type": "integer"}});
    let with = |rule: Value| rule_at_spec(rule, props.clone());
    let bad = json!({"spec": {"min": 3, "max": 2}});
    assert_eq!(
        errors(bad.clone(), &with(json!({"rule": "self.min <= self.max", "message": "min must not exceed max"}))),
        ["spec: Invalid value: \"object\": min must not exceed max"]
    );
    assert_eq!(
        errors(
            bad.clone(),
            &with(json!({"rule": "self.min <= self.max", "messageExpression": "'min is ' + string(self.min)"}))
        ),
        ["spec: Invalid value: \"object\": min is 3"]
    );
    assert_eq!(
        errors(
            bad.clone(),
            &with(
                json!({"rule": "self.min <= self.max", "message": "too big", "fieldPath": ".min", "reason": "FieldValueForbidden"})
            )
        ),
        ["spec.min: Forbidden: too big"]
    );
}

#[test]
fn rules_on_scalars_lists_and_maps_with_common_functions() {
    let schema = json!({"type": "object", "properties": {
        "name": {"type": "string", "x-kubernetes-validations": [
            {"rule": "self.startsWith('a') && self.endsWith('z') && self.contains('m') && self.matches('^[a-z]+$')"},
            {"rule": "size(self) <= 5"}
        ]},
        "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-validations": [
            {"rule": "self.all(t, t != '')", "message": "no empty tags"},
            {"rule": "self.exists(t, t == 'main')", "message": "needs main"},
            {"rule": "'main' in self"}
        ]},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}, "x-kubernetes-validations": [
            {"rule": "has(self.team)", "message": "team label required"}
        ]},
        "ratio": {"type": "number", "x-kubernetes-validations": [{"rule": "self > 0.5"}]},
        "port": {"x-kubernetes-int-or-string": true, "x-kubernetes-validations": [
            {"rule": "type(self) == int ? self > 0 : self.size() > 0"}
        ]}
    }});
    let good = json!({"name": "amz", "tags": ["main", "x"], "labels": {"team": "a"}, "ratio": 1, "port": 80});
    assert_eq!(errors(good, &schema), Vec::<String>::new());
    let bad = json!({"name": "abcdefz", "tags": ["", "x"], "labels": {}, "ratio": 0.25, "port": 0});
    assert_eq!(
        errors(bad, &schema),
        [
            "labels: Invalid value: \"object\": team label required",
            "name: Invalid value: \"string\": failed rule: self.startsWith('a') && self.endsWith('z') && self.contains('m') && self.matches('^[a-z]+$')",
            "name: Invalid value: \"string\": failed rule: size(self) <= 5",
            "port: Invalid value: \"\": failed rule: type(self) == int ? self > 0 : self.size() > 0",
            "ratio: Invalid value: \"number\": failed rule: self > 0.5",
            "tags: Invalid value: \"array\": no empty tags",
            "tags: Invalid value: \"array\": needs main",
            "tags: Invalid value: \"array\": failed rule: 'main' in self",
        ]
    );
}

#[test]
fn transition_rules_run_only_on_update() {
    let schema = with_spec(json!({"type": "object", "properties": {"mode": {
        "type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "mode is immutable"}]
    }}}));
    let new = json!({"spec": {"mode": "b"}});
    assert_eq!(lines(&validate(&new, None, &schema)), Vec::<String>::new(), "create: no oldSelf");
    let old = json!({"spec": {"mode": "a"}});
    assert_eq!(
        lines(&validate(&new, Some(&old), &schema)),
        ["spec.mode: Invalid value: \"string\": mode is immutable"]
    );
    let old_without = json!({"spec": {}});
    assert_eq!(lines(&validate(&new, Some(&old_without), &schema)), Vec::<String>::new(), "no old value at the path");
}

#[test]
fn optional_old_self_runs_on_create_too() {
    let schema = with_spec(json!({"type": "object", "properties": {"n": {
        "type": "integer",
        "x-kubernetes-validations": [{"rule": "!oldSelf.hasValue() || self >= oldSelf.value()", "optionalOldSelf": true, "message": "n may only grow"}]
    }}}));
    assert_eq!(lines(&validate(&json!({"spec": {"n": 1}}), None, &schema)), Vec::<String>::new());
    let old = json!({"spec": {"n": 5}});
    assert_eq!(
        lines(&validate(&json!({"spec": {"n": 4}}), Some(&old), &schema)),
        ["spec.n: Invalid value: \"integer\": n may only grow"]
    );
}

#[test]
fn list_map_items_correlate_with_their_old_selves_by_key() {
    let schema = with_spec(json!({
        "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
        "items": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string"},
            "size": {"type": "integer", "x-kubernetes-validations": [{"rule": "self >= oldSelf", "message": "cannot shrink"}]}
        }}
    }));
    let old = json!({"spec": [{"name": "a", "size": 5}, {"name": "b", "size": 1}]});
    let new = json!({"spec": [{"name": "b", "size": 2}, {"name": "a", "size": 4}, {"name": "c", "size": 0}]});
    assert_eq!(
        lines(&validate(&new, Some(&old), &schema)),
        ["spec[1].size: Invalid value: \"integer\": cannot shrink"]
    );
}

#[test]
fn root_rules_fail_at_nil_and_see_the_object_meta() {
    let schema = json!({"type": "object", "x-kubernetes-validations": [
        {"rule": "self.metadata.name.startsWith('lt-')"}, {"rule": "self.kind == 'LoadTest'"}
    ]});
    let obj = json!({"apiVersion": "x/v1", "kind": "LoadTest", "metadata": {"name": "web"}});
    assert_eq!(
        errors(obj, &schema),
        ["<nil>: Invalid value: \"object\": failed rule: self.metadata.name.startsWith('lt-')"]
    );
}

#[test]
fn runtime_errors_and_bad_rules_are_causes_not_panics() {
    let schema = with_spec(json!({"type": "object", "x-kubernetes-validations": [
        {"rule": "self.missing == 1"}, {"rule": "self.a +"}, {"rule": "self.a / 0 == 1"}
    ], "properties": {"a": {"type": "integer"}, "missing": {"type": "integer"}}}));
    let got = errors(json!({"spec": {"a": 1}}), &schema);
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(
        got[0].starts_with("spec: Invalid value: \"object\": ")
            && got[0].ends_with("evaluating rule: self.missing == 1")
    );
    assert!(got[1].starts_with("spec: Invalid value: \"object\": rule compile error: "), "{}", got[1]);
    assert!(got[2].ends_with("evaluating rule: self.a / 0 == 1"), "{}", got[2]);
}

#[test]
fn escaped_property_names_are_reachable() {
    let schema = rule_at_spec(
        json!({"rule": "self.x__dash__y == 1 && self.__namespace__ == 'n'"}),
        json!({"x-y": {"type": "integer"}, "namespace": {"type": "string"}}),
    );
    assert_eq!(errors(json!({"spec": {"x-y": 1, "namespace": "n"}}), &schema), Vec::<String>::new());
}

#[test]
fn kube_list_and_regex_functions() {
    let schema = rule_at_spec(
        json!({"rule": "self.l.sum() == 6 && self.l.min() == 1 && self.l.max() == 3 && self.l.isSorted() && self.l.indexOf(2) == 1 && self.l.lastIndexOf(9) == -1 && self.s.find('[0-9]+') == '42' && self.s.findAll('[a-z]') == ['a', 'b'] && self.s.findAll('[a-z]', 1) == ['a']"}),
        json!({"l": {"type": "array", "items": {"type": "integer"}}, "s": {"type": "string"}}),
    );
    assert_eq!(errors(json!({"spec": {"l": [1, 2, 3], "s": "a42b"}}), &schema), Vec::<String>::new());
    let unsorted = errors(json!({"spec": {"l": [3, 2, 1], "s": "a42b"}}), &schema);
    assert_eq!(unsorted.len(), 1, "{unsorted:?}");
}

#[test]
fn empty_list_min_is_an_evaluation_error() {
    let schema = rule_at_spec(
        json!({"rule": "self.l.min() > 0"}),
        json!({"l": {"type": "array", "items": {"type": "integer"}}}),
    );
    let got = errors(json!({"spec": {"l": []}}), &schema);
    assert_eq!(got.len(), 1);
    assert!(
        got[0].contains("min called on empty list") && got[0].ends_with("evaluating rule: self.l.min() > 0"),
        "{got:?}"
    );
}

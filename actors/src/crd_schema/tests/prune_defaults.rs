//! Pruning unknown fields and applying defaults.

use serde_json::json;

use crate::crd_schema::{apply_defaults, prune};

#[test]
fn prune_removes_unknown_fields_at_every_depth_in_document_order() {
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "known": {"type": "string"},
        "list": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "integer"}}}},
        "labels": {"type": "object", "additionalProperties": {"type": "object", "properties": {"v": {"type": "string"}}}}
    }}}});
    let mut obj = json!({
        "apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n", "whatever": 1},
        "spec": {"known": "k", "extra": 1, "list": [{"a": 1, "b": 2}], "labels": {"x": {"v": "1", "w": "2"}}},
        "status": {}
    });
    assert_eq!(prune(&mut obj, &schema), ["spec.extra", "spec.labels.x.w", "spec.list[0].b", "status"]);
    assert_eq!(
        obj,
        json!({
            "apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n", "whatever": 1},
            "spec": {"known": "k", "list": [{"a": 1}], "labels": {"x": {"v": "1"}}}
        })
    );
}

#[test]
fn prune_keeps_unknown_fields_below_preserve_unknown_but_prunes_known_ones_inside() {
    let schema = json!({"type": "object", "properties": {"spec": {
        "type": "object", "x-kubernetes-preserve-unknown-fields": true,
        "properties": {"inner": {"type": "object", "properties": {"a": {"type": "string"}}}}
    }}});
    let mut obj = json!({"spec": {"free": {"anything": [1]}, "inner": {"a": "x", "b": "y"}}});
    assert_eq!(prune(&mut obj, &schema), ["spec.inner.b"]);
    assert_eq!(obj, json!({"spec": {"free": {"anything": [1]}, "inner": {"a": "x"}}}));
}

#[test]
fn prune_keeps_the_meta_fields_of_embedded_resources() {
    let schema = json!({"type": "object", "properties": {"template": {
        "type": "object", "x-kubernetes-embedded-resource": true,
        "properties": {"spec": {"type": "object", "properties": {"x": {"type": "string"}}}}
    }}});
    let mut obj = json!({"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"x": "1", "y": 2}, "z": 3}});
    assert_eq!(prune(&mut obj, &schema), ["template.spec.y", "template.z"]);
    assert_eq!(
        obj,
        json!({"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"x": "1"}}})
    );
}

#[test]
fn prune_keeps_int_or_string_values_and_additional_properties_true() {
    let schema = json!({"type": "object", "properties": {
        "port": {"x-kubernetes-int-or-string": true},
        "any": {"type": "object", "additionalProperties": true}
    }});
    let mut obj = json!({"port": "http", "any": {"a": {"deep": 1}}});
    assert_eq!(prune(&mut obj, &schema), Vec::<String>::new());
    assert_eq!(obj, json!({"port": "http", "any": {"a": {"deep": 1}}}));
}

#[test]
fn defaults_fill_missing_properties_recursively() {
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "default": {}, "properties": {
        "replicas": {"type": "integer", "default": 1},
        "strategy": {"type": "object", "default": {"type": "Rolling"}, "properties": {
            "type": {"type": "string"}, "maxSurge": {"type": "integer", "default": 25}
        }}
    }}}});
    let mut obj = json!({"apiVersion": "x/v1", "kind": "K"});
    apply_defaults(&mut obj, &schema);
    assert_eq!(
        obj,
        json!({"apiVersion": "x/v1", "kind": "K", "spec": {"replicas": 1, "strategy": {"type": "Rolling", "maxSurge": 25}}})
    );
    let mut set = json!({"spec": {"replicas": 3}});
    apply_defaults(&mut set, &schema);
    assert_eq!(set["spec"]["replicas"], 3, "a value that is there stays");
}

#[test]
fn defaults_apply_inside_array_items_and_additional_properties() {
    let item = json!({"type": "object", "properties": {"protocol": {"type": "string", "default": "TCP"}}});
    let schema = json!({"type": "object", "properties": {
        "ports": {"type": "array", "items": item.clone()},
        "byName": {"type": "object", "additionalProperties": item}
    }});
    let mut obj = json!({"ports": [{}, {"protocol": "UDP"}], "byName": {"a": {}}});
    apply_defaults(&mut obj, &schema);
    assert_eq!(obj, json!({"ports": [{"protocol": "TCP"}, {"protocol": "UDP"}], "byName": {"a": {"protocol": "TCP"}}}));
}

#[test]
fn nulls_take_the_default_or_go_unless_nullable() {
    let schema = json!({"type": "object", "properties": {
        "d": {"type": "string", "default": "x"},
        "gone": {"type": "string"},
        "kept": {"type": "string", "nullable": true, "default": "y"},
        "list": {"type": "array", "items": {"type": "string", "default": "z"}}
    }});
    let mut obj = json!({"d": null, "gone": null, "kept": null, "list": [null, "a"]});
    apply_defaults(&mut obj, &schema);
    assert_eq!(obj, json!({"d": "x", "kept": null, "list": ["z", "a"]}));
}

#[test]
fn defaults_are_deep_copies() {
    let schema = json!({"type": "object", "properties": {"a": {"type": "object", "default": {"l": [1]}, "properties": {
        "l": {"type": "array", "items": {"type": "integer"}}
    }}}});
    let mut obj = json!({});
    apply_defaults(&mut obj, &schema);
    obj["a"]["l"][0] = json!(2);
    assert_eq!(schema["properties"]["a"]["default"]["l"][0], 1);
}

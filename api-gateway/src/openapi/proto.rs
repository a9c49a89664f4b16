//! A Swagger 2.0 JSON document in gnostic's protobuf encoding (message `openapi.v2.Document`
//! of gnostic's `OpenAPIv2.proto`), the form kubectl asks `/openapi/v2` for. kubectl reads
//! it for client-side validation (kept for objects whose kind's v3 document does not list
//! `fieldValidation`, such as `kind: List` files), `explain --output plaintext-openapiv2`, and
//! as the fallback of client-side `apply`.
//!
//! The encoder walks the JSON and writes each message's fields by the numbers of that proto
//! file; fields Flotilla's documents never use (XML, external docs, response headers,
//! examples, ...) are left out. Extension values (`x-...`), defaults, examples and enum values
//! are `Any` messages holding their JSON text in the `yaml` field, as gnostic does (JSON is
//! YAML). Writing by hand keeps a 900-line generated message set out of the build.

use serde_json::{Map, Value};

/// The protobuf encoding of the Swagger 2.0 document `doc`.
pub fn document(doc: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    string(&mut out, 1, text(doc, "swagger"));
    if let Some(info) = doc.get("info") {
        message(&mut out, 2, |b| {
            string(b, 1, text(info, "title"));
            string(b, 2, text(info, "version"));
        });
    }
    if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
        message(&mut out, 8, |b| {
            for (name, item) in paths {
                message(b, 2, |b| named(b, name, |b| path_item(b, item)));
            }
        });
    }
    if let Some(definitions) = doc.get("definitions").and_then(Value::as_object) {
        message(&mut out, 9, |b| named_schemas(b, definitions));
    }
    for requirement in array(doc, "security") {
        message(&mut out, 12, |b| {
            for (name, scopes) in requirement.as_object().into_iter().flatten() {
                message(b, 1, |b| named(b, name, |b| strings(b, 1, scopes)));
            }
        });
    }
    if let Some(definitions) = doc.get("securityDefinitions").and_then(Value::as_object) {
        message(&mut out, 13, |b| {
            for (name, scheme) in definitions {
                message(b, 1, |b| named(b, name, |b| security_scheme(b, scheme)));
            }
        });
    }
    out
}

/// A `SecurityDefinitionsItem`: only API keys (bearer tokens) are written.
fn security_scheme(b: &mut Vec<u8>, scheme: &Value) {
    if text(scheme, "type") == "apiKey" {
        message(b, 2, |b| {
            string(b, 1, "apiKey");
            string(b, 2, text(scheme, "name"));
            string(b, 3, text(scheme, "in"));
            string(b, 4, text(scheme, "description"));
        });
    }
}

fn path_item(b: &mut Vec<u8>, item: &Value) {
    for (field, method) in [(2, "get"), (3, "put"), (4, "post"), (5, "delete"), (8, "patch")] {
        if let Some(op) = item.get(method) {
            message(b, field, |b| operation(b, op));
        }
    }
    for param in array(item, "parameters") {
        message(b, 9, |b| parameter(b, param));
    }
    extensions(b, 10, item.as_object());
}

fn operation(b: &mut Vec<u8>, op: &Value) {
    strings(b, 1, op.get("tags").unwrap_or(&Value::Null));
    string(b, 3, text(op, "description"));
    string(b, 5, text(op, "operationId"));
    strings(b, 6, op.get("produces").unwrap_or(&Value::Null));
    strings(b, 7, op.get("consumes").unwrap_or(&Value::Null));
    for param in array(op, "parameters") {
        message(b, 8, |b| parameter(b, param));
    }
    if let Some(responses) = op.get("responses").and_then(Value::as_object) {
        message(b, 9, |b| {
            for (code, response) in responses {
                // NamedResponseValue { name, value: ResponseValue { response: Response } }
                message(b, 1, |b| {
                    named(b, code, |b| {
                        message(b, 1, |b| {
                            string(b, 1, text(response, "description"));
                            if let Some(schema) = response.get("schema") {
                                message(b, 2, |b| message(b, 1, |b| self::schema(b, schema)));
                            }
                        })
                    })
                });
            }
        });
    }
    strings(b, 10, op.get("schemes").unwrap_or(&Value::Null));
    extensions(b, 13, op.as_object());
}

/// A `ParametersItem`: a body parameter, or a query, path, header or form one.
fn parameter(b: &mut Vec<u8>, param: &Value) {
    let location = text(param, "in");
    message(b, 1, |b| {
        if location == "body" {
            message(b, 1, |b| {
                string(b, 1, text(param, "description"));
                string(b, 2, text(param, "name"));
                string(b, 3, location);
                boolean(b, 4, flag(param, "required"));
                if let Some(schema) = param.get("schema") {
                    message(b, 5, |b| self::schema(b, schema));
                }
            });
            return;
        }
        // (NonBodyParameter field, `type` field, `uniqueItems` field) of each sub-schema.
        let (field, ty, unique) = match location {
            "header" => (1, 5, 19),
            "formData" => (2, 6, 20),
            "query" => (3, 6, 20),
            _ => (4, 5, 19),
        };
        message(b, 2, |b| {
            message(b, field, |b| {
                boolean(b, 1, flag(param, "required"));
                string(b, 2, location);
                string(b, 3, text(param, "description"));
                string(b, 4, text(param, "name"));
                string(b, ty, text(param, "type"));
                boolean(b, unique, flag(param, "uniqueItems"));
            })
        });
    });
}

fn named_schemas(b: &mut Vec<u8>, schemas: &Map<String, Value>) {
    for (name, schema) in schemas {
        message(b, 1, |b| named(b, name, |b| self::schema(b, schema)));
    }
}

/// A `Schema` message.
fn schema(b: &mut Vec<u8>, s: &Value) {
    let Some(s) = s.as_object() else { return };
    for (member, value) in s {
        match (member.as_str(), value) {
            ("$ref", Value::String(v)) => string(b, 1, v),
            ("format", Value::String(v)) => string(b, 2, v),
            ("title", Value::String(v)) => string(b, 3, v),
            ("description", Value::String(v)) => string(b, 4, v),
            ("default", v) => message(b, 5, |b| any(b, v)),
            ("multipleOf", v) => double(b, 6, v),
            ("maximum", v) => double(b, 7, v),
            ("exclusiveMaximum", Value::Bool(v)) => boolean(b, 8, *v),
            ("minimum", v) => double(b, 9, v),
            ("exclusiveMinimum", Value::Bool(v)) => boolean(b, 10, *v),
            ("maxLength", v) => int64(b, 11, v),
            ("minLength", v) => int64(b, 12, v),
            ("pattern", Value::String(v)) => string(b, 13, v),
            ("maxItems", v) => int64(b, 14, v),
            ("minItems", v) => int64(b, 15, v),
            ("uniqueItems", Value::Bool(v)) => boolean(b, 16, *v),
            ("maxProperties", v) => int64(b, 17, v),
            ("minProperties", v) => int64(b, 18, v),
            ("required", v) => strings(b, 19, v),
            ("enum", Value::Array(values)) => values.iter().for_each(|v| message(b, 20, |b| any(b, v))),
            // AdditionalPropertiesItem: a oneof, so `false` is written too.
            ("additionalProperties", Value::Bool(v)) => message(b, 21, |b| {
                key(b, 2, 0);
                varint(b, u64::from(*v));
            }),
            ("additionalProperties", v) => message(b, 21, |b| message(b, 1, |b| schema(b, v))),
            ("type", v) => message(b, 22, |b| strings(b, 1, v)),
            ("items", Value::Array(items)) => {
                message(b, 23, |b| items.iter().for_each(|i| message(b, 1, |b| schema(b, i))))
            }
            ("items", v) => message(b, 23, |b| message(b, 1, |b| schema(b, v))),
            ("allOf", Value::Array(all)) => all.iter().for_each(|s| message(b, 24, |b| schema(b, s))),
            ("properties", Value::Object(properties)) => message(b, 25, |b| named_schemas(b, properties)),
            ("discriminator", Value::String(v)) => string(b, 26, v),
            ("readOnly", Value::Bool(v)) => boolean(b, 27, *v),
            ("example", v) => message(b, 30, |b| any(b, v)),
            _ => {}
        }
    }
    extensions(b, 31, s);
}

/// The `x-` members of `object` as `NamedAny` messages in `field`.
fn extensions<'a>(b: &mut Vec<u8>, field: u32, object: impl Into<Option<&'a Map<String, Value>>>) {
    for (name, value) in object.into().into_iter().flatten().filter(|(k, _)| k.starts_with("x-")) {
        message(b, field, |b| named(b, name, |b| any(b, value)));
    }
}

/// An `Any` with the value's JSON text as its `yaml`.
fn any(b: &mut Vec<u8>, value: &Value) {
    string(b, 2, &value.to_string());
}

/// The body of a `Named...` message: the name, then the value message.
fn named(b: &mut Vec<u8>, name: &str, value: impl FnOnce(&mut Vec<u8>)) {
    string(b, 1, name);
    message(b, 2, value);
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("")
}

fn flag(value: &Value, key: &str) -> bool {
    value.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn array<'a>(value: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    value.get(key).and_then(Value::as_array).into_iter().flatten()
}

// ---- the wire format ----

fn varint(b: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        b.push((v as u8) | 0x80);
        v >>= 7;
    }
    b.push(v as u8);
}

fn key(b: &mut Vec<u8>, field: u32, wire_type: u8) {
    varint(b, (u64::from(field) << 3) | u64::from(wire_type));
}

/// A length-delimited field; proto3 leaves out empty strings.
fn string(b: &mut Vec<u8>, field: u32, s: &str) {
    if !s.is_empty() {
        bytes(b, field, s.as_bytes());
    }
}

fn bytes(b: &mut Vec<u8>, field: u32, data: &[u8]) {
    key(b, field, 2);
    varint(b, data.len() as u64);
    b.extend_from_slice(data);
}

/// A repeated string field from a JSON string or array of strings (empty entries kept).
fn strings(b: &mut Vec<u8>, field: u32, value: &Value) {
    match value {
        Value::String(s) => bytes(b, field, s.as_bytes()),
        Value::Array(items) => items.iter().filter_map(Value::as_str).for_each(|s| bytes(b, field, s.as_bytes())),
        _ => {}
    }
}

/// An embedded message, written even when empty: its presence can matter (`properties: {}`).
fn message(b: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    body(&mut inner);
    bytes(b, field, &inner);
}

fn boolean(b: &mut Vec<u8>, field: u32, v: bool) {
    if v {
        key(b, field, 0);
        varint(b, 1);
    }
}

fn double(b: &mut Vec<u8>, field: u32, v: &Value) {
    if let Some(v) = v.as_f64().filter(|v| *v != 0.0) {
        key(b, field, 1);
        b.extend_from_slice(&v.to_le_bytes());
    }
}

fn int64(b: &mut Vec<u8>, field: u32, v: &Value) {
    if let Some(v) = v.as_i64().filter(|v| *v != 0) {
        key(b, field, 0);
        // Negative int64s are ten-byte two's-complement varints.
        varint(b, v as u64);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn varints_and_keys() {
        let mut b = Vec::new();
        varint(&mut b, 300);
        assert_eq!(b, [0xac, 0x02]);
        let mut b = Vec::new();
        key(&mut b, 31, 2);
        assert_eq!(b, [0xfa, 0x01]);
    }

    #[test]
    fn a_small_document_encodes_field_by_field() {
        let doc = json!({"swagger": "2.0", "definitions": {"a.B": {"type": "object", "x-k": [1]}}});
        let bytes = document(&doc);
        // swagger = 1: "2.0"
        let mut want = vec![0x0a, 3, b'2', b'.', b'0'];
        // Schema: type (22) TypeItem{value: "object"}, then the extension (31).
        let mut schema = vec![0xb2, 0x01, 8, 0x0a, 6];
        schema.extend_from_slice(b"object");
        let mut any = vec![0x12, 3];
        any.extend_from_slice(b"[1]");
        let mut named_any = vec![0x0a, 3];
        named_any.extend_from_slice(b"x-k");
        named_any.extend_from_slice(&[0x12, any.len() as u8]);
        named_any.extend_from_slice(&any);
        schema.extend_from_slice(&[0xfa, 0x01, named_any.len() as u8]);
        schema.extend_from_slice(&named_any);
        // NamedSchema { name: "a.B", value: schema } in Definitions (field 1) in Document field 9.
        let mut named_schema = vec![0x0a, 3];
        named_schema.extend_from_slice(b"a.B");
        named_schema.extend_from_slice(&[0x12, schema.len() as u8]);
        named_schema.extend_from_slice(&schema);
        let mut definitions = vec![0x0a, named_schema.len() as u8];
        definitions.extend_from_slice(&named_schema);
        want.extend_from_slice(&[0x4a, definitions.len() as u8]);
        want.extend_from_slice(&definitions);
        assert_eq!(bytes, want);
    }

    #[test]
    fn empty_messages_and_false_oneofs_are_written() {
        let mut b = Vec::new();
        schema(&mut b, &json!({"additionalProperties": false}));
        assert_eq!(b, [0xaa, 0x01, 2, 0x10, 0]);
        let mut b = Vec::new();
        schema(&mut b, &json!({"properties": {}}));
        assert_eq!(b, [0xca, 0x01, 0]);
    }
}

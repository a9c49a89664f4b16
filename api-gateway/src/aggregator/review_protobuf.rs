//! The review messages as client-go's typed clients send them (Kubernetes protobuf: `k8s\0`
//! and a `runtime.Unknown` whose `raw` is the review), decoded into the JSON a JSON client
//! would send. Only what the reviews read is decoded (`metadata.name`, the spec); the
//! crate's protobuf table ([`crate::protobuf`]) holds no authentication or authorization
//! messages. Field numbers are those of `k8s.io/api/{authentication,authorization}/v1`.

use serde_json::{json, Map, Value};

/// The review in `body`, or `None` when it is not a well-formed protobuf review.
pub fn decode(body: &[u8]) -> Option<Value> {
    let unknown = fields(body.strip_prefix(crate::protobuf::MAGIC)?)?;
    let type_meta = fields(field(&unknown, 1).unwrap_or_default())?;
    let (api_version, kind) = (text(&type_meta, 1)?.unwrap_or_default(), text(&type_meta, 2)?.unwrap_or_default());
    let review = fields(field(&unknown, 2).unwrap_or_default())?;
    let meta = fields(field(&review, 1).unwrap_or_default())?;
    let spec = fields(field(&review, 2).unwrap_or_default())?;
    let mut out = json!({"apiVersion": api_version, "kind": kind, "metadata": {}, "spec": {}});
    if let Some(name) = text(&meta, 1)? {
        out["metadata"]["name"] = json!(name);
    }
    let mut spec_json = Map::new();
    let mut put = |name: &str, value: Option<Value>| {
        if let Some(value) = value {
            spec_json.insert(name.into(), value);
        }
    };
    match kind.as_str() {
        "TokenReview" => {
            put("token", text(&spec, 1)?.map(Value::from));
            put("audiences", texts(&spec, 2)?);
        }
        "SubjectAccessReview" | "LocalSubjectAccessReview" | "SelfSubjectAccessReview" => {
            put("resourceAttributes", attributes(field(&spec, 1), RESOURCE_ATTRIBUTES)?);
            put("nonResourceAttributes", attributes(field(&spec, 2), NON_RESOURCE_ATTRIBUTES)?);
            if kind != "SelfSubjectAccessReview" {
                put("user", text(&spec, 3)?.map(Value::from));
                put("groups", texts(&spec, 4)?);
                put("uid", text(&spec, 6)?.map(Value::from));
            }
        }
        "SelfSubjectRulesReview" => put("namespace", text(&spec, 1)?.map(Value::from)),
        // Not a review, but as small: the `serviceaccounts/token` subresource's body.
        "TokenRequest" => {
            put("audiences", texts(&spec, 1)?);
            put("boundObjectRef", attributes(field(&spec, 3), BOUND_OBJECT_REFERENCE)?);
            let spec_bytes = field(&review, 2).unwrap_or_default();
            put("expirationSeconds", varint_field(spec_bytes, 4)?.map(|n| Value::from(n as i64)));
        }
        _ => {}
    }
    out["spec"] = Value::Object(spec_json);
    Some(out)
}

/// `ResourceAttributes`' string fields by number.
const RESOURCE_ATTRIBUTES: &[(u64, &str)] =
    &[(1, "namespace"), (2, "verb"), (3, "group"), (4, "version"), (5, "resource"), (6, "subresource"), (7, "name")];
/// `BoundObjectReference`'s string fields by number.
const BOUND_OBJECT_REFERENCE: &[(u64, &str)] = &[(1, "kind"), (2, "apiVersion"), (3, "name"), (4, "uid")];
/// `NonResourceAttributes`' string fields by number.
const NON_RESOURCE_ATTRIBUTES: &[(u64, &str)] = &[(1, "path"), (2, "verb")];

/// A message of string fields as a JSON object; `Some(None)` when it is absent.
fn attributes(bytes: Option<&[u8]>, names: &[(u64, &str)]) -> Option<Option<Value>> {
    let Some(bytes) = bytes else { return Some(None) };
    let message = fields(bytes)?;
    let mut out = Map::new();
    for (number, name) in names {
        if let Some(value) = text(&message, *number)? {
            out.insert((*name).into(), json!(value));
        }
    }
    Some(Some(Value::Object(out)))
}

/// The length-delimited fields of a message, in order (numeric fields are skipped); `None`
/// when it is malformed.
fn fields(mut buf: &[u8]) -> Option<Vec<(u64, &[u8])>> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (key, rest) = varint(buf)?;
        buf = rest;
        match key & 7 {
            0 => buf = varint(buf)?.1,
            1 => buf = buf.get(8..)?,
            2 => {
                let (len, rest) = varint(buf)?;
                let len = usize::try_from(len).ok()?;
                out.push((key >> 3, rest.get(..len)?));
                buf = rest.get(len..)?;
            }
            5 => buf = buf.get(4..)?,
            _ => return None,
        }
    }
    Some(out)
}

/// The last varint field `number` of a message: `Some(None)` when absent, `None` when the
/// message is malformed.
fn varint_field(mut buf: &[u8], number: u64) -> Option<Option<u64>> {
    let mut found = None;
    while !buf.is_empty() {
        let (key, rest) = varint(buf)?;
        buf = rest;
        match key & 7 {
            0 => {
                let (value, rest) = varint(buf)?;
                if key >> 3 == number {
                    found = Some(value);
                }
                buf = rest;
            }
            1 => buf = buf.get(8..)?,
            2 => {
                let (len, rest) = varint(buf)?;
                buf = rest.get(usize::try_from(len).ok()?..)?;
            }
            5 => buf = buf.get(4..)?,
            _ => return None,
        }
    }
    Some(found)
}

fn varint(buf: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for i in 0..10 {
        let byte = *buf.get(i)?;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Some((value, buf.get(i + 1..)?));
        }
    }
    None
}

/// The last occurrence of field `number` (protobuf's rule for a repeated singular field).
fn field<'a>(fields: &[(u64, &'a [u8])], number: u64) -> Option<&'a [u8]> {
    fields.iter().rev().find(|(n, _)| *n == number).map(|(_, bytes)| *bytes)
}

/// String field `number`: `Some(None)` when absent, `None` when not UTF-8.
fn text(fields: &[(u64, &[u8])], number: u64) -> Option<Option<String>> {
    match field(fields, number) {
        None => Some(None),
        Some(bytes) => String::from_utf8(bytes.to_vec()).ok().map(Some),
    }
}

/// Repeated string field `number` as a JSON list: `Some(None)` when absent.
fn texts(fields: &[(u64, &[u8])], number: u64) -> Option<Option<Value>> {
    let values: Vec<&[u8]> = fields.iter().filter(|(n, _)| *n == number).map(|(_, bytes)| *bytes).collect();
    if values.is_empty() {
        return Some(None);
    }
    let strings: Option<Vec<String>> = values.into_iter().map(|b| String::from_utf8(b.to_vec()).ok()).collect();
    Some(Some(json!(strings?)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A length-delimited field.
    fn ld(number: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![number << 3 | 2, u8::try_from(bytes.len()).unwrap()];
        out.extend_from_slice(bytes);
        out
    }

    fn envelope(api_version: &str, kind: &str, review: &[u8]) -> Vec<u8> {
        let type_meta = [ld(1, api_version.as_bytes()), ld(2, kind.as_bytes())].concat();
        [b"k8s\0".to_vec(), ld(1, &type_meta), ld(2, review)].concat()
    }

    #[test]
    fn token_reviews_and_access_reviews_decode_into_their_json() {
        let spec = [ld(1, b"secret"), ld(2, b"api"), ld(2, b"other")].concat();
        let body = envelope("authentication.k8s.io/v1", "TokenReview", &[ld(1, &ld(1, b"r1")), ld(2, &spec)].concat());
        assert_eq!(
            decode(&body).unwrap(),
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "metadata": {"name": "r1"},
                   "spec": {"token": "secret", "audiences": ["api", "other"]}})
        );

        let attributes = [ld(1, b"default"), ld(2, b"get"), ld(5, b"pods")].concat();
        // A varint field (number 9) is skipped.
        let spec = [ld(1, &attributes), ld(3, b"jane"), ld(4, b"dev"), vec![9 << 3, 1]].concat();
        let body = envelope("authorization.k8s.io/v1", "SubjectAccessReview", &ld(2, &spec));
        assert_eq!(
            decode(&body).unwrap()["spec"],
            json!({"resourceAttributes": {"namespace": "default", "verb": "get", "resource": "pods"},
                   "user": "jane", "groups": ["dev"]})
        );
        let body = envelope("authorization.k8s.io/v1", "SelfSubjectAccessReview", &ld(2, &ld(2, &ld(1, b"/healthz"))));
        assert_eq!(decode(&body).unwrap()["spec"], json!({"nonResourceAttributes": {"path": "/healthz"}}));
    }

    #[test]
    fn token_requests_decode_into_their_json() {
        let bound = [ld(1, b"Pod"), ld(2, b"v1"), ld(3, b"web"), ld(4, b"u-1")].concat();
        // expirationSeconds (4) = 600 as a varint: 0xd8 0x04.
        let spec = [ld(1, b"vault"), ld(3, &bound), vec![4 << 3, 0xd8, 0x04]].concat();
        let body =
            envelope("authentication.k8s.io/v1", "TokenRequest", &[ld(1, &ld(1, b"robot")), ld(2, &spec)].concat());
        assert_eq!(
            decode(&body).unwrap()["spec"],
            json!({"audiences": ["vault"], "expirationSeconds": 600,
                   "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web", "uid": "u-1"}})
        );
        let body = envelope("authentication.k8s.io/v1", "TokenRequest", &ld(2, &[]));
        assert_eq!(decode(&body).unwrap()["spec"], json!({}));
    }

    #[test]
    fn malformed_bodies_decode_to_nothing() {
        assert!(decode(b"{}").is_none());
        assert!(decode(b"k8s\0\x12\x05ab").is_none(), "a field longer than the body");
        assert!(decode(b"k8s\0\x0f").is_none(), "wire type 7");
        let bad_utf8 = envelope("authentication.k8s.io/v1", "TokenReview", &ld(2, &ld(1, &[0xff, 0xfe])));
        assert!(decode(&bad_utf8).is_none());
    }
}

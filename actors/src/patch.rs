//! The PATCH verb's formats, chosen by the request's content type, applied to an object as
//! generic JSON: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and strategic merge
//! patch ([`crate::strategic_merge`]). Server-side apply is [`crate::apply`].

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use serde_json::{Map, Value};

use crate::api_error::{ApiError, ApiResult};
use crate::strategic_merge::{self, Cursor};

/// A patch format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/json-patch+json`
    Json,
    /// `application/merge-patch+json`
    Merge,
    /// `application/strategic-merge-patch+json`
    Strategic,
    /// `application/apply-patch+yaml`: server-side apply.
    Apply,
}

impl PatchKind {
    /// The format a content type names; 415 for anything else.
    pub fn from_content_type(content_type: &str) -> ApiResult<PatchKind> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        match media {
            "application/json-patch+json" => Ok(PatchKind::Json),
            "application/merge-patch+json" => Ok(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchKind::Apply),
            _ => Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: \
                 application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, \
                 application/strategic-merge-patch+json (got {media:?})"
            ))),
        }
    }
}

/// Applies a JSON, merge or strategic merge `patch` to `current`. `schema` is the kind's
/// schema definitions and root definition, which strategic merge patches need.
pub fn apply_patch(
    kind: PatchKind,
    current: &Value,
    patch: &[u8],
    schema: Option<(&Map<String, Value>, &str)>,
) -> ApiResult<Value> {
    match kind {
        PatchKind::Json => {
            let patch: json_patch::Patch = serde_json::from_slice(patch)
                .map_err(|e| ApiError::BadRequest(format!("the JSON patch is not valid: {e}")))?;
            let mut doc = current.clone();
            json_patch::patch(&mut doc, &patch).map_err(|e| ApiError::InvalidPatch(e.to_string()))?;
            Ok(doc)
        }
        PatchKind::Merge => {
            let patch = parse_object(patch)?;
            let mut doc = current.clone();
            json_patch::merge(&mut doc, &patch);
            Ok(doc)
        }
        PatchKind::Strategic => {
            let patch = parse_object(patch)?;
            let empty = Map::new();
            let cursor = match schema {
                Some((defs, root)) => Cursor::at(defs, root),
                None => Cursor::unknown(&empty),
            };
            strategic_merge::apply(current, &patch, cursor)
        }
        PatchKind::Apply => Err(ApiError::InternalError("server-side apply is not a plain patch".into())),
    }
}

/// The schema definitions and root definition of `kind`, for strategic merge patches.
pub fn kind_schema(kind: &crate::kinds::ResourceKind) -> Option<(&'static Map<String, Value>, &'static str)> {
    crate::schemas::definition_of(kind).map(|root| (crate::schemas::definitions(), root))
}

/// The cursor at `kind`'s schema: a built-in kind's definition, a custom kind's CRD schema
/// (see [`custom_schema`]), or one that knows no schema.
pub fn schema_cursor(kind: &crate::kinds::ResourceKind) -> Cursor<'static> {
    static NO_DEFINITIONS: LazyLock<Map<String, Value>> = LazyLock::new(Map::new);
    static NO_SCHEMA: LazyLock<Value> = LazyLock::new(|| Value::Object(Map::new()));
    if let Some((defs, root)) = kind_schema(kind) {
        return Cursor::at(defs, root);
    }
    if crate::custom_kinds::of(kind).is_some() {
        let schema = custom_schema(kind).unwrap_or(&NO_SCHEMA);
        return Cursor::crd(crate::schemas::definitions(), schema);
    }
    Cursor::unknown(&NO_DEFINITIONS)
}

/// The `openAPIV3Schema` of a custom kind's version, for the rest of the process: schemas
/// are interned as custom kinds' names are ([`crate::custom_kinds::intern`]), leaked once
/// per distinct schema, so that every write's [`Cursor`] can be `'static`. What leaks is
/// bounded by the distinct CRD schemas ever served.
fn custom_schema(kind: &crate::kinds::ResourceKind) -> Option<&'static Value> {
    /// By (group, resource, version): the registry generation the schema was read at, and
    /// the schema.
    type Seen = HashMap<(&'static str, &'static str, &'static str), (u64, &'static Value)>;
    static SEEN: LazyLock<Mutex<(Seen, Vec<&'static Value>)>> = LazyLock::new(Default::default);
    let generation = crate::custom_kinds::generation();
    let id = (kind.group, kind.resource, kind.version);
    let mut seen = SEEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let (by_kind, interned) = &mut *seen;
    if let Some((at, schema)) = by_kind.get(&id) {
        if *at == generation {
            return Some(schema);
        }
    }
    let custom = crate::custom_kinds::of(kind)?;
    let schema = custom.version(kind.version)?.schema.as_ref()?;
    let schema: &'static Value = match interned.iter().find(|s| **s == schema) {
        Some(found) => found,
        None => {
            let leaked: &'static Value = Box::leak(Box::new(schema.clone()));
            interned.push(leaked);
            leaked
        }
    };
    by_kind.insert(id, (generation, schema));
    Some(schema)
}

/// A patch body that must be a JSON object.
fn parse_object(patch: &[u8]) -> ApiResult<Value> {
    let value: Value =
        serde_json::from_slice(patch).map_err(|e| ApiError::BadRequest(format!("the patch is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::BadRequest("the patch must be a JSON object".into()));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cm() -> Value {
        json!({"metadata": {"name": "x", "labels": {"a": "1"}}, "data": {"k": "v"}})
    }

    #[test]
    fn content_types_choose_the_format() {
        assert_eq!(PatchKind::from_content_type("application/json-patch+json").unwrap(), PatchKind::Json);
        assert_eq!(
            PatchKind::from_content_type("application/merge-patch+json; charset=utf-8").unwrap(),
            PatchKind::Merge
        );
        assert_eq!(
            PatchKind::from_content_type("application/strategic-merge-patch+json").unwrap(),
            PatchKind::Strategic
        );
        assert_eq!(PatchKind::from_content_type("application/apply-patch+yaml").unwrap(), PatchKind::Apply);
        assert_eq!(PatchKind::from_content_type("application/json").unwrap_err().code(), 415);
    }

    #[test]
    fn json_patches_apply_in_order_and_a_failed_test_is_unprocessable() {
        let patch = br#"[{"op": "add", "path": "/data/n", "value": "w"}, {"op": "remove", "path": "/data/k"}]"#;
        let out = apply_patch(PatchKind::Json, &cm(), patch, None).unwrap();
        assert_eq!(out["data"], json!({"n": "w"}));
        let failing = br#"[{"op": "test", "path": "/data/k", "value": "other"}]"#;
        assert_eq!(apply_patch(PatchKind::Json, &cm(), failing, None).unwrap_err().code(), 422);
        let missing = br#"[{"op": "replace", "path": "/spec/x", "value": 1}]"#;
        assert_eq!(apply_patch(PatchKind::Json, &cm(), missing, None).unwrap_err().code(), 422);
        assert_eq!(apply_patch(PatchKind::Json, &cm(), b"{\"op\": 1}", None).unwrap_err().code(), 400);
    }

    #[test]
    fn merge_patches_merge_maps_and_null_deletes() {
        let patch = br#"{"metadata": {"labels": {"a": null, "b": "2"}}, "data": {"k": "v2"}}"#;
        let out = apply_patch(PatchKind::Merge, &cm(), patch, None).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"b": "2"}));
        assert_eq!(out["data"]["k"], "v2");
        assert_eq!(apply_patch(PatchKind::Merge, &cm(), b"not json", None).unwrap_err().code(), 400);
        assert_eq!(apply_patch(PatchKind::Merge, &cm(), b"[1]", None).unwrap_err().code(), 400);
    }

    #[test]
    fn strategic_patches_without_a_schema_behave_as_merge_patches() {
        let out = apply_patch(PatchKind::Strategic, &cm(), br#"{"data": {"k": null}}"#, None).unwrap();
        assert_eq!(out["data"], json!({}));
    }
}

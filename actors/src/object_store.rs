//! The write and read paths of API objects through the store: get, create, update and
//! delete as store transactions, and the later pages of a paged list.
//!
//! Plain async functions over a [`StoreNode`]; the kind actor calls them, and so does
//! `flotilla up` when it makes the initial namespaces.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use raft_store::{Compare, KeyValue, Op, OpResponse, RangeRequest, Revision, StoreError, StoreNode, Txn};
use serde_json::{json, Value};

use crate::api_error::{ApiError, ApiResult, Subject};
use crate::kinds::ResourceKind;
use crate::objects::{check_update, prepare_create, prepare_update, storage_key, with_resource_version};

/// One page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct ListPage {
    pub items: Vec<Value>,
    /// The revision the list is consistent at.
    pub resource_version: Revision,
    /// Where the next page starts, if there is one.
    pub continue_token: Option<String>,
}

/// How many times an update without a resourceVersion retries a lost race.
const UPDATE_ATTEMPTS: usize = 5;

/// The object `name`, read linearizably; 404 if absent.
pub async fn get(node: &StoreNode, kind: &ResourceKind, ns: Option<&str>, name: &str) -> ApiResult<Value> {
    let kv = read(node, kind, ns, name).await?;
    with_resource_version(&kv.value, kv.mod_revision)
}

async fn read(node: &StoreNode, kind: &ResourceKind, ns: Option<&str>, name: &str) -> ApiResult<KeyValue> {
    let key = storage_key(kind, ns, name);
    let mut found = node.range(RangeRequest::key(key), true).await?;
    found.kvs.pop().ok_or_else(|| ApiError::NotFound(Subject::of(kind, name)))
}

/// Creates `obj` (see [`prepare_create`]) if its name is free (409 AlreadyExists if not) and,
/// for namespaced kinds, its namespace exists (404 if not).
pub async fn create(node: &StoreNode, kind: &ResourceKind, ns: Option<&str>, obj: Value) -> ApiResult<Value> {
    let ns = match (kind.namespaced, ns) {
        (true, None) => return Err(ApiError::BadRequest("a namespace is required".into())),
        (true, Some(ns)) => Some(ns),
        (false, _) => None,
    };
    let obj = prepare_create(kind, ns, obj, time::OffsetDateTime::now_utc())?;
    if let Some(ns) = ns {
        let key = format!("/registry/core/namespaces/{ns}");
        if node.range(RangeRequest::key(key), true).await?.kvs.is_empty() {
            let subject = Subject { group: "", resource: "namespaces", kind: "Namespace", name: ns.into() };
            return Err(ApiError::NotFound(subject));
        }
    }
    let name = crate::objects::name_of(&obj).unwrap_or_default().to_string();
    let key = storage_key(kind, ns, &name);
    let bytes = encode(&obj)?;
    let txn = Txn {
        compare: vec![Compare::absent(key.clone())],
        success: vec![Op::put(key, bytes.clone())],
        failure: vec![],
    };
    let response = node.txn(txn).await?;
    if !response.succeeded {
        return Err(ApiError::AlreadyExists(Subject::of(kind, name)));
    }
    with_resource_version(&bytes, response.revision)
}

/// Replaces the object `name` with `obj`. With a resourceVersion in `obj`, only if the
/// object is still at it (409 Conflict if not); without, whatever its current version.
pub async fn update(
    node: &StoreNode,
    kind: &ResourceKind,
    ns: Option<&str>,
    name: &str,
    mut obj: Value,
) -> ApiResult<Value> {
    let expected = check_update(kind, ns, name, &mut obj)?;
    let key = storage_key(kind, ns, name);
    for _ in 0..UPDATE_ATTEMPTS {
        let current = read(node, kind, ns, name).await?;
        if expected.is_some_and(|rv| rv != current.mod_revision) {
            return Err(ApiError::Conflict(Subject::of(kind, name)));
        }
        let old: Value = serde_json::from_slice(&current.value)
            .map_err(|e| ApiError::InternalError(format!("stored object is not JSON: {e}")))?;
        let bytes = encode(&prepare_update(&old, obj.clone()))?;
        let txn = Txn {
            compare: vec![Compare::mod_revision_is(key.clone(), current.mod_revision)],
            success: vec![Op::put(key.clone(), bytes.clone())],
            failure: vec![],
        };
        let response = node.txn(txn).await?;
        if response.succeeded {
            return with_resource_version(&bytes, response.revision);
        }
        if expected.is_some() {
            return Err(ApiError::Conflict(Subject::of(kind, name)));
        }
    }
    Err(ApiError::Conflict(Subject::of(kind, name)))
}

/// Deletes the object `name` and returns it as it last was; 404 if absent.
pub async fn delete(node: &StoreNode, kind: &ResourceKind, ns: Option<&str>, name: &str) -> ApiResult<Value> {
    let key = storage_key(kind, ns, name);
    let txn = Txn { compare: vec![Compare::exists(key.clone())], success: vec![Op::delete(key)], failure: vec![] };
    let response = node.txn(txn).await?;
    let deleted = match response.responses.into_iter().next() {
        Some(OpResponse::Delete { mut deleted }) if response.succeeded => deleted.pop(),
        _ => None,
    };
    let last = deleted.ok_or_else(|| ApiError::NotFound(Subject::of(kind, name)))?;
    with_resource_version(&last.value, last.mod_revision)
}

fn encode(obj: &Value) -> ApiResult<Vec<u8>> {
    serde_json::to_vec(obj).map_err(|e| ApiError::InternalError(e.to_string()))
}

/// A continue token: base64 of `{"rv": revision, "start": last key served}`.
pub fn continue_token(revision: Revision, last_key: &[u8]) -> String {
    BASE64.encode(json!({"rv": revision, "start": String::from_utf8_lossy(last_key)}).to_string())
}

/// The revision and last key of a continue token (400 if it is not one).
pub fn parse_continue(token: &str) -> ApiResult<(Revision, String)> {
    let bad = || ApiError::BadRequest(format!("invalid continue token {token:?}"));
    let raw = BASE64.decode(token).map_err(|_| bad())?;
    let value: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    match (value["rv"].as_i64(), value["start"].as_str()) {
        (Some(rv), Some(start)) if rv > 0 => Ok((rv, start.to_string())),
        _ => Err(bad()),
    }
}

/// Turns a page of key-values into a [`ListPage`] at `revision`.
pub fn page_of(kvs: &[&KeyValue], revision: Revision, more: bool) -> ApiResult<ListPage> {
    let items = kvs.iter().map(|kv| with_resource_version(&kv.value, kv.mod_revision)).collect::<ApiResult<_>>()?;
    let continue_token = match kvs.last() {
        Some(last) if more => Some(continue_token(revision, &last.key)),
        _ => None,
    };
    Ok(ListPage { items, resource_version: revision, continue_token })
}

/// A later page of a list under `prefix`: from the store at the token's revision, after its
/// key; 410 Expired if that revision was compacted.
pub async fn page_at(node: &StoreNode, prefix: &str, token: &str, limit: usize) -> ApiResult<ListPage> {
    let (revision, start) = parse_continue(token)?;
    let mut req = RangeRequest::prefix(prefix);
    req.start_after = Some(start.into_bytes());
    req.revision = revision;
    req.limit = limit as u64;
    let page = node.range(req, true).await.map_err(|e| match e {
        StoreError::Compacted { .. } => ApiError::Expired(
            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into(),
        ),
        e => e.into(),
    })?;
    page_of(&page.kvs.iter().collect::<Vec<_>>(), revision, page.more)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_garbage_is_a_bad_request() {
        let token = continue_token(42, b"/registry/core/configmaps/default/b");
        assert_eq!(parse_continue(&token).unwrap(), (42, "/registry/core/configmaps/default/b".to_string()));
        for bad in ["", "!!", "e30="] {
            assert_eq!(parse_continue(bad).unwrap_err().code(), 400, "{bad}");
        }
    }
}

//! The write and read paths of API objects through the store: get, create, update and
//! delete as store transactions, and the later pages of a paged list.
//!
//! Plain async functions over a [`StoreNode`]; the kind actor calls them, and so does
//! `flotilla up` when it makes the initial namespaces.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use raft_store::{Compare, KeyValue, Op, OpResponse, RangeRequest, Revision, StoreError, StoreNode, Txn};
use serde_json::{json, Value};

use crate::admission::{Admit, Attributes, Operation};
use crate::api_error::{ApiError, ApiResult, Subject};
use crate::apply::{track_update, Writer};
use crate::decode::FieldValidation;
use crate::kinds::ResourceKind;
use crate::objects::{
    check_update, prepare_create, prepare_update, scale_of, splice_resource_version, storage_key, timestamp,
    with_resource_version,
};
use crate::patch::{apply_patch, schema_cursor, PatchKind};
use crate::selectors::{Candidate, Selectors};

/// One page of a list: the objects as stored, rendered only when sent (a list of 10,000
/// pods goes out without parsing any of them, see [`ListPage::write_items`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ListPage {
    pub objects: Vec<Arc<KeyValue>>,
    /// The revision the list is consistent at.
    pub resource_version: Revision,
    /// Where the next page starts, if there is one.
    pub continue_token: Option<String>,
}

impl ListPage {
    /// The objects as clients see them (resourceVersion set).
    pub fn items(&self) -> ApiResult<Vec<Value>> {
        self.objects.iter().map(|kv| with_resource_version(&kv.value, kv.mod_revision)).collect()
    }

    /// Writes the objects as clients see them, comma-separated (the inside of a JSON
    /// array), splicing each resourceVersion into the stored JSON.
    pub fn write_items(&self, out: &mut Vec<u8>) -> ApiResult<()> {
        for (i, kv) in self.objects.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            if !splice_resource_version(&kv.value, kv.mod_revision, out) {
                let obj = with_resource_version(&kv.value, kv.mod_revision)?;
                serde_json::to_writer(&mut *out, &obj).map_err(|e| ApiError::InternalError(e.to_string()))?;
            }
        }
        Ok(())
    }
}

/// Which part of an object a write changes: the object (its status kept as it was, for
/// kinds with a `status` subresource), only its status, or only its scale (`spec.replicas`,
/// written as an `autoscaling/v1` `Scale`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Part {
    #[default]
    Main,
    Status,
    Scale,
}

impl Part {
    /// The part a subresource name writes; `None` for one that is not writable this way.
    pub fn of_subresource(name: Option<&str>) -> Option<Part> {
        match name {
            None => Some(Part::Main),
            Some("status") => Some(Part::Status),
            Some("scale") => Some(Part::Scale),
            Some(_) => None,
        }
    }

    /// What a write of this part returns: the object, or its `Scale`.
    pub fn view(self, kind: &ResourceKind, obj: Value) -> Value {
        match self {
            Part::Scale => scale_of(kind, &obj),
            _ => obj,
        }
    }

    /// Turns `change`, a change of this part, into a change of the whole object.
    fn whole<'f>(
        self,
        kind: &'f ResourceKind,
        mut change: impl FnMut(&Value) -> ApiResult<Value> + 'f,
    ) -> impl FnMut(&Value) -> ApiResult<Value> + 'f {
        move |current: &Value| match self {
            Part::Main => {
                let mut new = change(current)?;
                if has_status(kind) {
                    copy_field(current, &mut new, "status");
                }
                Ok(new)
            }
            Part::Status => {
                let changed = change(current)?;
                let mut new = current.clone();
                copy_field(&changed, &mut new, "status");
                copy_resource_version(&changed, &mut new);
                Ok(new)
            }
            Part::Scale => {
                let scale = change(&scale_of(kind, current))?;
                let Some(replicas) = scale.pointer("/spec/replicas").and_then(Value::as_i64) else {
                    return Err(ApiError::BadRequest("the Scale has no integer spec.replicas".into()));
                };
                if replicas < 0 {
                    let detail = "must be greater than or equal to 0";
                    let cause =
                        crate::api_error::FieldCause::invalid_shown("spec.replicas", replicas.to_string(), detail);
                    let name = current.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
                    // kube-apiserver validates the Scale itself: `Scale.autoscaling "web" is invalid`.
                    let subject =
                        Subject { group: "autoscaling", resource: kind.resource, kind: "Scale", name: name.into() };
                    return Err(ApiError::Invalid { subject, causes: vec![cause] });
                }
                let mut new = current.clone();
                crate::objects::set_replicas(kind, &mut new, replicas);
                copy_resource_version(&scale, &mut new);
                Ok(new)
            }
        }
    }
}

fn has_status(kind: &ResourceKind) -> bool {
    kind.subresources.iter().any(|s| s.name == "status")
}

/// Sets `to[field]` to `from[field]`, or removes it where `from` has none.
fn copy_field(from: &Value, to: &mut Value, field: &str) {
    let Some(map) = to.as_object_mut() else { return };
    match from.get(field) {
        Some(v) => map.insert(field.into(), v.clone()),
        None => map.remove(field),
    };
}

/// Carries the resourceVersion a client sent (a precondition), or none.
fn copy_resource_version(from: &Value, to: &mut Value) {
    let rv = from.pointer("/metadata/resourceVersion").cloned();
    if let Some(metadata) = to.get_mut("metadata").and_then(Value::as_object_mut) {
        match rv {
            Some(rv) => metadata.insert("resourceVersion".into(), rv),
            None => metadata.remove("resourceVersion"),
        };
    }
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
/// for namespaced kinds, its namespace exists (404 if not). With a `manager`, it owns every
/// field in `metadata.managedFields`.
pub async fn create(
    node: &StoreNode,
    kind: &ResourceKind,
    ns: Option<&str>,
    obj: Value,
    manager: Option<&str>,
) -> ApiResult<Value> {
    create_admitted(node, kind, ns, obj, manager, None).await
}

/// [`create`] through the admission chain of `admit`: mutating plugins after defaulting,
/// validating plugins after validation.
pub async fn create_admitted(
    node: &StoreNode,
    kind: &ResourceKind,
    ns: Option<&str>,
    obj: Value,
    manager: Option<&str>,
    admit: Option<&Admit>,
) -> ApiResult<Value> {
    let ns = match (kind.namespaced, ns) {
        (true, None) => return Err(ApiError::BadRequest("a namespace is required".into())),
        (true, Some(ns)) => Some(ns),
        (false, _) => None,
    };
    let now = time::OffsetDateTime::now_utc();
    let mut obj = prepare_create(kind, ns, obj, now)?;
    // A Node's status is the kubelet's, which registers its node with it (kube's node
    // strategy keeps it); other kinds' status is the controllers' to write later.
    if has_status(kind) && kind.resource != "nodes" {
        // Status is the controllers' to write, through the subresource.
        let status = match kind.resource {
            "namespaces" => Some(json!({"phase": "Active"})),
            // kube's pod strategy: Pending, with the pod's QoS class.
            "pods" if kind.group.is_empty() => {
                Some(json!({"phase": "Pending", "qosClass": crate::objects::qos_class(&obj)}))
            }
            _ => None,
        };
        match (obj.as_object_mut(), status) {
            (Some(map), Some(status)) => map.insert("status".into(), status),
            (Some(map), None) => map.remove("status"),
            (None, _) => None,
        };
    }
    // Defaulted and validated as kube-apiserver's decoding and create strategy do.
    crate::defaults::for_create(kind, &mut obj);
    let attrs = admit.map(|a| {
        let name = crate::objects::name_of(&obj).unwrap_or_default().to_string();
        let attrs =
            Attributes { operation: Operation::Create, name, namespace: ns.map(String::from), ..a.attrs.clone() };
        (a, attrs)
    });
    if let Some((admit, attrs)) = &attrs {
        admit.warn(admit.chain.mutate(attrs, &mut obj, None).await?);
        crate::defaults::apply(kind, &mut obj);
        // The pod's QoS class follows what admission set (LimitRanger's defaults).
        if kind.group.is_empty() && kind.resource == "pods" {
            let qos = crate::objects::qos_class(&obj);
            if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
                status.insert("qosClass".into(), json!(qos));
            }
        }
    }
    crate::validation::check(kind, &obj, None)?;
    if let Some((admit, attrs)) = &attrs {
        admit.warn(admit.chain.validate(attrs, &obj, None).await?);
    }
    if let Some(manager) = manager {
        let now = timestamp(now);
        track_update(None, &mut obj, Writer { manager, kind, now: &now }, schema_cursor(kind));
    }
    if let Some(ns) = ns {
        // 404 if the namespace is missing, 403 if it is being terminated: NamespaceLifecycle's
        // rule, kept here too for writes that skip admission (bootstrap, fenced controllers).
        let name = crate::objects::name_of(&obj).unwrap_or_default();
        crate::admission::namespace_lifecycle::check_open(node, kind, ns, name).await?;
    }
    // A dry run stops here: admitted, validated, never stored (no IP claimed either).
    if admit.is_some_and(|a| a.attrs.dry_run) {
        return Ok(obj);
    }
    // A Service's cluster IP is claimed in the same transaction as the Service.
    let claim = match ns {
        Some(ns) if kind.group.is_empty() && kind.resource == "services" => {
            // A taken name is AlreadyExists, before its IP could look taken.
            let name = crate::objects::name_of(&obj).unwrap_or_default().to_string();
            if !node.range(RangeRequest::key(storage_key(kind, Some(ns), &name)), true).await?.kvs.is_empty() {
                return Err(ApiError::AlreadyExists(Subject::of(kind, name)));
            }
            crate::service_ips::claim(node, kind, ns, &mut obj).await?
        }
        _ => crate::service_ips::Claim::default(),
    };
    let name = crate::objects::name_of(&obj).unwrap_or_default().to_string();
    let key = storage_key(kind, ns, &name);
    let bytes = encode(&obj)?;
    let mut compare = vec![Compare::absent(key.clone())];
    compare.extend(claim.compare);
    let mut success = vec![Op::put(key.clone(), bytes.clone())];
    success.extend(claim.ops);
    // On failure the transaction reads the key: taken then is AlreadyExists, decided in the
    // same transaction (a later read could find it deleted meanwhile).
    let failure = vec![Op::get(key)];
    let txn = Txn { compare, success, failure, ..Txn::default() }.fenced(admit.and_then(|a| a.leader_term));
    let response = node.txn(txn).await?;
    if !response.succeeded {
        let taken = matches!(response.responses.first(), Some(OpResponse::Range(r)) if !r.kvs.is_empty());
        if taken {
            return Err(ApiError::AlreadyExists(Subject::of(kind, name)));
        }
        // The name was free: another Service took the IP meanwhile.
        return Err(ApiError::Conflict(Subject::of(kind, name)));
    }
    with_resource_version(&bytes, response.revision)
}

/// Replaces the object `name` with `obj`, as `manager`. With a resourceVersion in `obj`, only
/// if the object is still at it (409 Conflict if not); without, whatever its current version.
pub async fn update(
    node: &StoreNode,
    kind: &ResourceKind,
    (ns, name, part): (Option<&str>, &str, Part),
    obj: Value,
    manager: &str,
    admit: Option<&Admit>,
) -> ApiResult<Value> {
    let change = part.whole(kind, |_| Ok(obj.clone()));
    update_with_admitted(node, kind, ns, name, Some(manager), change, admit).await.map(|o| part.view(kind, o))
}

/// What a write returns: the object, and the warnings for the client (`Warning` headers:
/// the unknown fields `fieldValidation=Warn` dropped).
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub obj: Value,
    pub warnings: Vec<String>,
}

/// Applies a JSON, merge or strategic merge patch to the object `name`, as `manager`. A
/// resourceVersion the patch sets is a precondition, as in [`update`]. The patched object is
/// decoded as kube-apiserver does (see [`crate::decode::check_patched`]): its unknown fields
/// fail the patch or become warnings, as `validation` says.
pub async fn patch(
    node: &StoreNode,
    kind: &ResourceKind,
    (ns, name, part): (Option<&str>, &str, Part),
    (patch_kind, body): (PatchKind, &[u8]),
    manager: &str,
    validation: FieldValidation,
    admit: Option<&Admit>,
) -> ApiResult<Written> {
    // A Scale has no lists: its patches need no schema.
    let schema = if part == Part::Scale { None } else { crate::patch::kind_schema(kind) };
    let mut warnings = Vec::new();
    let change = part.whole(kind, |current| {
        let patched = apply_patch(patch_kind, current, body, schema)?;
        let scale = part == Part::Scale;
        let (patched, found) = crate::decode::check_patched(kind, scale, patched, (patch_kind, body), validation)?;
        warnings = found;
        Ok(patched)
    });
    let obj =
        update_with_admitted(node, kind, ns, name, Some(manager), change, admit).await.map(|o| part.view(kind, o))?;
    Ok(Written { obj, warnings })
}

/// Server-side apply of the configuration in `body` by `manager` (see [`crate::apply`]):
/// creates the object if it does not exist.
pub async fn apply(
    node: &StoreNode,
    kind: &ResourceKind,
    (ns, name): (Option<&str>, &str),
    body: &[u8],
    manager: &str,
    force: bool,
    admit: Option<&Admit>,
) -> ApiResult<Value> {
    let mut config = crate::apply::parse_config(body)?;
    crate::apply::check_config(name, &mut config)?;
    // Unknown fields and wrong types fail an apply whatever fieldValidation says.
    crate::decode::check_apply_config(kind, &config)?;
    let cursor = schema_cursor(kind);
    for _ in 0..UPDATE_ATTEMPTS {
        let now = timestamp(time::OffsetDateTime::now_utc());
        let writer = Writer { manager, kind, now: &now };
        let change = |live: &Value| crate::apply::apply(live, &config, writer, force, cursor, name);
        let applied = update_with_admitted(node, kind, ns, name, None, change, admit).await;
        match applied {
            Err(ApiError::NotFound(_)) => {}
            other => return other,
        }
        let mut first = crate::apply::created(&config, writer, cursor);
        if let Some(metadata) = first.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.insert("name".into(), json!(name));
        }
        match create_admitted(node, kind, ns, first, None, admit).await {
            Err(ApiError::AlreadyExists(_)) => continue,
            other => return other,
        }
    }
    Err(ApiError::Conflict(Subject::of(kind, name)))
}

/// The read-change-write loop of every update: reads the object (404 if absent), computes
/// its new form with `change` from the current one (resourceVersion set), and writes it if
/// the object did not change meanwhile; a lost race reads and changes again. A
/// resourceVersion in the new form that is not the current one is a 409 Conflict. A change
/// that changes nothing writes nothing and returns the object as it is. With a `manager`,
/// the fields it changed become its own (server-side apply keeps its own books: `None`).
pub async fn update_with<F>(
    node: &StoreNode,
    kind: &ResourceKind,
    ns: Option<&str>,
    name: &str,
    manager: Option<&str>,
    change: F,
) -> ApiResult<Value>
where
    F: FnMut(&Value) -> ApiResult<Value>,
{
    update_with_admitted(node, kind, ns, name, manager, change, None).await
}

/// [`update_with`] through the admission chain of `admit`: mutating plugins after
/// defaulting, validating plugins after validation, on every attempt.
pub async fn update_with_admitted<F>(
    node: &StoreNode,
    kind: &ResourceKind,
    ns: Option<&str>,
    name: &str,
    manager: Option<&str>,
    mut change: F,
    admit: Option<&Admit>,
) -> ApiResult<Value>
where
    F: FnMut(&Value) -> ApiResult<Value>,
{
    let attrs = admit.map(|a| {
        let attrs = Attributes {
            operation: Operation::Update,
            name: name.to_string(),
            namespace: ns.map(String::from),
            ..a.attrs.clone()
        };
        (a, attrs)
    });
    let key = storage_key(kind, ns, name);
    for _ in 0..UPDATE_ATTEMPTS {
        let current = read(node, kind, ns, name).await?;
        let old = with_resource_version(&current.value, current.mod_revision)?;
        let mut new = change(&old)?;
        let expected = check_update(kind, ns, name, &mut new)?;
        if expected.is_some_and(|rv| rv != current.mod_revision) {
            return Err(ApiError::Conflict(Subject::of(kind, name)));
        }
        let stored: Value = serde_json::from_slice(&current.value)
            .map_err(|e| ApiError::InternalError(format!("stored object is not JSON: {e}")))?;
        // Defaulted and validated (immutable fields too) before anything compares it.
        crate::defaults::apply(kind, &mut new);
        if let Some((admit, attrs)) = &attrs {
            admit.warn(admit.chain.mutate(attrs, &mut new, Some(&stored)).await?);
            crate::defaults::apply(kind, &mut new);
        }
        crate::validation::check(kind, &new, Some(&stored))?;
        if let Some((admit, attrs)) = &attrs {
            admit.warn(admit.chain.validate(attrs, &new, Some(&stored)).await?);
        }
        let mut new = prepare_update(kind, &stored, new);
        if let Some(manager) = manager {
            let now = timestamp(time::OffsetDateTime::now_utc());
            track_update(Some(&stored), &mut new, Writer { manager, kind, now: &now }, schema_cursor(kind));
        }
        // An update that empties the finalizers of an object being deleted deletes it.
        let removes = crate::deletion::check_update(kind, &stored, &mut new)?;
        // A dry run answers with what it would store, at the current resourceVersion.
        if attrs.as_ref().is_some_and(|(_, attrs)| attrs.dry_run) {
            return with_resource_version(&encode(&new)?, current.mod_revision);
        }
        if removes {
            let fence = attrs.as_ref().and_then(|(a, _)| a.leader_term);
            if crate::deletion::remove_if_unchanged(node, &key, current.mod_revision, fence).await?.is_some() {
                return with_resource_version(&encode(&new)?, current.mod_revision);
            }
            continue;
        }
        if new == stored {
            return Ok(old);
        }
        let bytes = encode(&new)?;
        let txn = Txn {
            compare: vec![Compare::mod_revision_is(key.clone(), current.mod_revision)],
            success: vec![Op::put(key.clone(), bytes.clone())],
            ..Txn::default()
        }
        .fenced(attrs.as_ref().and_then(|(a, _)| a.leader_term));
        let response = node.txn(txn).await?;
        if response.succeeded {
            return with_resource_version(&bytes, response.revision);
        }
    }
    Err(ApiError::Conflict(Subject::of(kind, name)))
}

/// Deletes the object `name` as kube-apiserver does: at once, or marked while finalizers or
/// a pod's grace period hold it (see [`crate::deletion`]); 404 if absent. With `admit`, the
/// chain runs first (both steps, operation DELETE, `obj` null, `old` the object as stored,
/// `dry_run` from the options), as kube's delete admission: a refusal deletes nothing.
pub async fn delete(
    node: &StoreNode,
    kind: &ResourceKind,
    (ns, name): (Option<&str>, &str),
    options: &crate::deletion::DeleteOptions,
    admit: Option<&Admit>,
) -> ApiResult<crate::deletion::Deleted> {
    if let Some(admit) = admit {
        // Bad options are a 400 before any plugin (or webhook) hears of the delete.
        options.validate()?;
        let stored = get(node, kind, ns, name).await?;
        let attrs = Attributes {
            operation: Operation::Delete,
            name: name.to_string(),
            namespace: ns.map(String::from),
            dry_run: options.is_dry_run(),
            ..admit.attrs.clone()
        };
        admit.warn(admit.chain.mutate(&attrs, &mut Value::Null, Some(&stored)).await?);
        admit.warn(admit.chain.validate(&attrs, &Value::Null, Some(&stored)).await?);
    }
    crate::deletion::delete(node, kind, ns, name, options, admit.and_then(|a| a.leader_term)).await
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
pub fn page_of(objects: Vec<Arc<KeyValue>>, revision: Revision, more: bool) -> ListPage {
    let continue_token = match objects.last() {
        Some(last) if more => Some(continue_token(revision, &last.key)),
        _ => None,
    };
    ListPage { objects, resource_version: revision, continue_token }
}

/// Most keys one store read of a selector list asks for (kube-apiserver's `maxLimit`).
const MAX_BATCH: u64 = 10_000;

/// A later page of a list under `prefix`: from the store at the token's revision, after its
/// key; 410 Expired if that revision was compacted. With selectors, `limit` counts the
/// objects they select: the store is read in growing batches (as kube-apiserver does) until
/// `limit` are found or the keys run out, and a next page is offered while keys remain.
pub async fn page_at(
    node: &StoreNode,
    prefix: &str,
    token: &str,
    limit: usize,
    selectors: &Selectors,
) -> ApiResult<ListPage> {
    let (revision, start) = parse_continue(token)?;
    let mut after = start.into_bytes();
    let mut batch = limit as u64;
    let mut found: Vec<KeyValue> = Vec::new();
    let more = loop {
        let mut req = RangeRequest::prefix(prefix);
        req.start_after = Some(after.clone());
        req.revision = revision;
        req.limit = batch;
        let page = node.range(req, true).await.map_err(|e| match e {
            StoreError::Compacted { .. } => ApiError::Expired(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into(),
            ),
            e => e.into(),
        })?;
        let mut full = false;
        for kv in page.kvs {
            if limit > 0 && found.len() == limit {
                full = true;
                break;
            }
            after.clone_from(&kv.key);
            if selectors.matches(&Candidate::new(&kv)) {
                found.push(kv);
            }
        }
        if full || !page.more || (limit > 0 && found.len() == limit) {
            break full || page.more;
        }
        batch = (batch.saturating_mul(2)).clamp(1, MAX_BATCH);
    };
    Ok(page_of(found.into_iter().map(Arc::new).collect(), revision, more))
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

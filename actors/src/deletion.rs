//! Kubernetes deletion, as kube-apiserver's generic registry does it (`store.go` `Delete`,
//! `rest.BeforeDelete`): `DeleteOptions` (grace period, preconditions, propagation policy,
//! dry run), finalizers that keep an object (marked with a `deletionTimestamp`) until they are
//! gone, graceful deletion of pods, namespaces that terminate before they go, deletecollection,
//! and the delete an update makes when it empties the finalizers of an object being deleted.
//!
//! Plain functions decide ([`plan`], [`check_update`], [`begin_termination`]); the async ones
//! run them in read-decide-write loops on the store, as [`crate::object_store::update_with`]
//! does for updates.
//!
//! Controllers do the rest: the garbage collector acts on the `orphan` and
//! `foregroundDeletion` finalizers ([`crate::controllers::garbage_collector`]); the namespace
//! controller ([`crate::controllers::namespace`]) deletes a terminating namespace's content
//! and then its `kubernetes` finalizer. A namespace's DELETE also deletes its content inline
//! (every namespaced kind, custom ones too; again on each later DELETE), so an empty one goes
//! at once; what cannot go at once (objects with finalizers, scheduled pods in their grace
//! period) leaves it `Terminating` for the controller. Left to a later node agent: ending a
//! pod's grace period by deleting it with grace 0.

use std::collections::BTreeSet;
use std::sync::Arc;

use raft_store::{Compare, KeyValue, Op, OpResponse, RangeRequest, Revision, StoreNode, Txn};
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::api_error::{ApiError, ApiResult, FieldCause, Subject};
use crate::kinds::{ResourceKind, BUILTIN};
use crate::object_store::{page_of, ListPage};
use crate::objects::{list_prefix, storage_key, timestamp, with_resource_version};
use crate::selectors::{Candidate, Selectors};

/// The garbage collector's finalizer of `Orphan` propagation.
pub const ORPHAN_FINALIZER: &str = "orphan";
/// The garbage collector's finalizer of `Foreground` propagation.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// The namespace controller's finalizer, in a namespace's `spec.finalizers`.
pub const NAMESPACE_FINALIZER: &str = "kubernetes";
/// A pod's `spec.terminationGracePeriodSeconds` when it has none (kube's default).
const DEFAULT_POD_GRACE: i64 = 30;
/// How many times a delete retries a lost race with another write.
const ATTEMPTS: usize = 5;

/// How dependents go with their owner (`propagationPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Orphan,
    Background,
    Foreground,
}

/// A DELETE's options (`meta.k8s.io/v1` `DeleteOptions`), as sent: [`Self::validate`] checks
/// them as kube-apiserver does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    /// Seconds a pod has to stop; 0 deletes at once, negative counts as 1.
    pub grace_period_seconds: Option<i64>,
    /// `preconditions.uid`: delete only the object with this UID (409 if not).
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`: delete only the object at this version (409 if not).
    pub resource_version: Option<String>,
    /// The deprecated form of `propagationPolicy` (true: `Orphan`).
    pub orphan_dependents: Option<bool>,
    /// `Orphan`, `Background` or `Foreground`, as sent.
    pub propagation_policy: Option<String>,
    /// `dryRun`: `["All"]` changes nothing.
    pub dry_run: Vec<String>,
}

impl DeleteOptions {
    /// The options of a JSON `DeleteOptions` body (any group's; unknown fields ignored). 400
    /// if it is not one.
    pub fn from_body(body: &[u8]) -> ApiResult<DeleteOptions> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("the body is not a valid DeleteOptions: {e}")))?;
        let Some(map) = value.as_object() else {
            return Err(ApiError::BadRequest(format!(
                "json: cannot unmarshal {} into Go value of type v1.DeleteOptions",
                json_type(&value)
            )));
        };
        let mut options = DeleteOptions::default();
        for (field, v) in map.iter().filter(|(_, v)| !v.is_null()) {
            let wrong = |go_type: &str| unmarshal_error(v, field, go_type);
            match field.as_str() {
                "gracePeriodSeconds" => options.grace_period_seconds = Some(v.as_i64().ok_or_else(|| wrong("int64"))?),
                "orphanDependents" => options.orphan_dependents = Some(v.as_bool().ok_or_else(|| wrong("bool"))?),
                "propagationPolicy" => {
                    let policy = v.as_str().ok_or_else(|| wrong("v1.DeletionPropagation"))?;
                    options.propagation_policy = Some(policy.to_string());
                }
                "dryRun" => {
                    let values = v.as_array().ok_or_else(|| wrong("[]string"))?;
                    let strings = values.iter().map(|s| s.as_str().map(str::to_string));
                    options.dry_run = strings.collect::<Option<_>>().ok_or_else(|| wrong("string"))?;
                }
                "preconditions" => {
                    let preconditions = v.as_object().ok_or_else(|| wrong("v1.Preconditions"))?;
                    for (field, v) in preconditions.iter().filter(|(_, v)| !v.is_null()) {
                        let text = || v.as_str().map(str::to_string).ok_or_else(|| unmarshal_error(v, field, "string"));
                        match field.as_str() {
                            "uid" => options.uid = Some(text()?),
                            "resourceVersion" => options.resource_version = Some(text()?),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(options)
    }

    /// The options of a protobuf `DeleteOptions` body, as client-go's typed clients send it
    /// (`k8s\0` and a `runtime.Unknown` wrapping the message). 400 if it is not one.
    pub fn from_protobuf(body: &[u8]) -> ApiResult<DeleteOptions> {
        let bad = |why: &str| ApiError::BadRequest(format!("the body is not a protobuf DeleteOptions: {why}"));
        let unknown = body.strip_prefix(b"k8s\0").ok_or_else(|| bad("no k8s protobuf prefix"))?;
        let mut raw: &[u8] = &[];
        for (field, value) in proto_fields(unknown).map_err(bad)? {
            if let (2, ProtoValue::Bytes(bytes)) = (field, value) {
                raw = bytes;
            }
        }
        let mut options = DeleteOptions::default();
        for (field, value) in proto_fields(raw).map_err(bad)? {
            match (field, value) {
                // Two's complement in a varint, as Go encodes an int64.
                (1, ProtoValue::Varint(seconds)) => options.grace_period_seconds = Some(seconds as i64),
                (2, ProtoValue::Bytes(preconditions)) => {
                    for (field, value) in proto_fields(preconditions).map_err(bad)? {
                        let text = || match value {
                            ProtoValue::Bytes(text) => Ok(String::from_utf8_lossy(text).into_owned()),
                            ProtoValue::Varint(_) => Err(bad("a precondition is not a string")),
                        };
                        match field {
                            1 => options.uid = Some(text()?),
                            2 => options.resource_version = Some(text()?),
                            _ => {}
                        }
                    }
                }
                (3, ProtoValue::Varint(orphan)) => options.orphan_dependents = Some(orphan != 0),
                (4, ProtoValue::Bytes(policy)) => {
                    options.propagation_policy = Some(String::from_utf8_lossy(policy).into_owned());
                }
                (5, ProtoValue::Bytes(value)) => options.dry_run.push(String::from_utf8_lossy(value).into_owned()),
                _ => {}
            }
        }
        Ok(options)
    }

    /// The options of query parameters (`gracePeriodSeconds`, `orphanDependents`,
    /// `propagationPolicy`, `dryRun`; others are ignored). 400 for a value of the wrong type.
    pub fn from_query(pairs: &[(String, String)]) -> ApiResult<DeleteOptions> {
        let mut options = DeleteOptions::default();
        for (name, value) in pairs {
            match name.as_str() {
                "gracePeriodSeconds" => {
                    let seconds = value.parse().map_err(|_| {
                        ApiError::BadRequest(format!("strconv.ParseInt: parsing {value:?}: invalid syntax"))
                    })?;
                    options.grace_period_seconds = Some(seconds);
                }
                "orphanDependents" => options.orphan_dependents = Some(parse_bool(value)?),
                "propagationPolicy" => options.propagation_policy = Some(value.clone()),
                "dryRun" => options.dry_run.push(value.clone()),
                _ => {}
            }
        }
        Ok(options)
    }

    /// These options, with `other`'s where these say nothing.
    pub fn or(self, other: DeleteOptions) -> DeleteOptions {
        DeleteOptions {
            grace_period_seconds: self.grace_period_seconds.or(other.grace_period_seconds),
            uid: self.uid.or(other.uid),
            resource_version: self.resource_version.or(other.resource_version),
            orphan_dependents: self.orphan_dependents.or(other.orphan_dependents),
            propagation_policy: self.propagation_policy.or(other.propagation_policy),
            dry_run: if self.dry_run.is_empty() { other.dry_run } else { self.dry_run },
        }
    }

    /// kube-apiserver's `ValidateDeleteOptions`: a known propagation policy, not together
    /// with `orphanDependents`, and `dryRun` only `All` (422 if not).
    pub fn validate(&self) -> ApiResult<()> {
        let mut causes = Vec::new();
        if let Some(policy) = &self.propagation_policy {
            if self.orphan_dependents.is_some() {
                let detail = "orphanDependents and deletionPropagation cannot be both set";
                causes.push(FieldCause::invalid("propagationPolicy", policy, detail));
            }
            if self.propagation().is_none() {
                let supported = ["Foreground", "Background", "Orphan", "nil"];
                causes.push(FieldCause::not_supported("propagationPolicy", policy, &supported));
            }
        }
        if self.dry_run.iter().any(|v| v != "All") {
            let values: Vec<String> = self.dry_run.iter().map(|v| format!("{v:?}")).collect();
            let mut cause = FieldCause::not_supported("dryRun", "", &["All"]);
            cause.value = Some(format!("[]string{{{}}}", values.join(", ")));
            causes.push(cause);
        }
        if causes.is_empty() {
            return Ok(());
        }
        let subject = Subject { group: "meta.k8s.io", resource: "", kind: "DeleteOptions", name: String::new() };
        Err(ApiError::Invalid { subject, causes })
    }

    /// The propagation policy, if one (known) was given.
    pub fn propagation(&self) -> Option<Propagation> {
        match self.propagation_policy.as_deref() {
            Some("Orphan") => Some(Propagation::Orphan),
            Some("Background") => Some(Propagation::Background),
            Some("Foreground") => Some(Propagation::Foreground),
            _ => None,
        }
    }

    /// `dryRun=All`: decide and answer, write nothing.
    pub fn is_dry_run(&self) -> bool {
        !self.dry_run.is_empty()
    }

    /// Whether the garbage collector should orphan the dependents of `current` (kube's
    /// `shouldOrphanDependents`): the options say so, else the object's finalizers do.
    fn orphans(&self, current: &[String]) -> bool {
        if let Some(orphan) = self.orphan_dependents {
            return orphan;
        }
        match self.propagation() {
            Some(p) => p == Propagation::Orphan,
            None => first_gc_finalizer(current) == Some(ORPHAN_FINALIZER),
        }
    }

    /// Whether the garbage collector should delete the dependents of `current` first
    /// (kube's `shouldDeleteDependents`).
    fn deletes_dependents_first(&self, current: &[String]) -> bool {
        if self.orphan_dependents.is_some() {
            return false;
        }
        match self.propagation() {
            Some(p) => p == Propagation::Foreground,
            None => first_gc_finalizer(current) == Some(FOREGROUND_FINALIZER),
        }
    }
}

/// One field's value in the protobuf wire format (fixed-width ones are skipped).
enum ProtoValue<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// The (field number, value) pairs of a protobuf message, in order.
fn proto_fields(mut bytes: &[u8]) -> Result<Vec<(u64, ProtoValue<'_>)>, &'static str> {
    fn varint(bytes: &mut &[u8]) -> Result<u64, &'static str> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = bytes.split_first().ok_or("a varint runs past the end")?;
            *bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a varint is too long")
    }
    let mut fields = Vec::new();
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        let (field, wire) = (key >> 3, key & 7);
        let value = match wire {
            0 => ProtoValue::Varint(varint(&mut bytes)?),
            2 => {
                let len = usize::try_from(varint(&mut bytes)?).map_err(|_| "a length is too large")?;
                let (value, rest) = bytes.split_at_checked(len).ok_or("a field runs past the end")?;
                bytes = rest;
                ProtoValue::Bytes(value)
            }
            1 | 5 => {
                let width = if wire == 1 { 8 } else { 4 };
                bytes = bytes.get(width..).ok_or("a field runs past the end")?;
                continue;
            }
            _ => return Err("an unknown wire type"),
        };
        fields.push((field, value));
    }
    Ok(fields)
}

fn first_gc_finalizer(finalizers: &[String]) -> Option<&str> {
    finalizers.iter().map(String::as_str).find(|f| *f == ORPHAN_FINALIZER || *f == FOREGROUND_FINALIZER)
}

/// Go's `strconv.ParseBool`, with its error.
fn parse_bool(value: &str) -> ApiResult<bool> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(ApiError::BadRequest(format!("strconv.ParseBool: parsing {value:?}: invalid syntax"))),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Go's decoding error for a field of the wrong JSON type.
fn unmarshal_error(value: &Value, field: &str, go_type: &str) -> ApiError {
    ApiError::BadRequest(format!(
        "json: cannot unmarshal {} into Go struct field DeleteOptions.{field} of type {go_type}",
        json_type(value)
    ))
}

/// What a delete did.
#[derive(Debug, Clone, PartialEq)]
pub struct Deleted {
    /// The object: as it last was if it is gone, else as it is now (being deleted).
    pub object: Value,
    /// Whether it is gone from the store; false while finalizers or a grace period keep it.
    pub gone: bool,
}

/// What a DELETE makes of an object as it is now.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Leave it as it is (its graceful deletion is already under way) and answer with it.
    Keep,
    /// Write it so changed (marked for deletion), then remove it if `then_remove`.
    Write { object: Value, then_remove: bool },
    /// Remove it now.
    Remove,
}

/// Pods are deleted gracefully: marked first, removed by their node once stopped.
fn graceful(kind: &ResourceKind) -> bool {
    kind.group.is_empty() && kind.resource == "pods"
}

fn is_namespaces(kind: &ResourceKind) -> bool {
    kind.group.is_empty() && kind.resource == "namespaces"
}

/// Whether kube-apiserver answers a delete that removed the object with the object itself
/// (its `ReturnDeletedObject`: pods, services, namespaces) rather than a `Status`.
pub fn returns_deleted_object(kind: &ResourceKind) -> bool {
    kind.group.is_empty() && matches!(kind.resource, "pods" | "services" | "namespaces")
}

/// The `Status` kube-apiserver answers a delete that removed `object` with, for the kinds
/// that do not return the object: `details` name it by resource, with its UID.
pub fn success_status(kind: &ResourceKind, object: &Value) -> Value {
    let meta = &object["metadata"];
    let mut details = json!({"name": meta["name"].as_str().unwrap_or_default(), "kind": kind.resource});
    if !kind.group.is_empty() {
        details["group"] = json!(kind.group);
    }
    if let Some(uid) = meta["uid"].as_str() {
        details["uid"] = json!(uid);
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default()
}

/// `metadata.finalizers`.
pub fn finalizers_of(obj: &Value) -> Vec<String> {
    strings_at(obj, "/metadata/finalizers")
}

/// A namespace's `spec.finalizers`.
fn spec_finalizers(obj: &Value) -> Vec<String> {
    strings_at(obj, "/spec/finalizers")
}

fn strings_at(obj: &Value, pointer: &str) -> Vec<String> {
    let values = obj.pointer(pointer).and_then(Value::as_array);
    values.into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect()
}

fn metadata_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    obj.get_mut("metadata").and_then(Value::as_object_mut)
}

/// Sets `metadata.finalizers` (left out when empty, as kube writes it).
fn set_finalizers(obj: &mut Value, finalizers: &[String]) {
    if let Some(meta) = metadata_mut(obj) {
        match finalizers {
            [] => meta.remove("finalizers"),
            some => meta.insert("finalizers".into(), json!(some)),
        };
    }
}

/// Whether the object is marked for deletion.
pub fn being_deleted(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp").is_some_and(|ts| ts.as_str().is_some_and(|ts| !ts.is_empty()))
}

fn deletion_time(obj: &Value) -> Option<OffsetDateTime> {
    let ts = obj.pointer("/metadata/deletionTimestamp").and_then(Value::as_str)?;
    OffsetDateTime::parse(ts, &Rfc3339).ok()
}

/// `metadata.deletionGracePeriodSeconds` (negative counts as 1, as kube has it).
fn deletion_grace(obj: &Value) -> Option<i64> {
    obj.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).map(|g| if g < 0 { 1 } else { g })
}

fn set_deletion(obj: &mut Value, at: OffsetDateTime, grace: i64) {
    if let Some(meta) = metadata_mut(obj) {
        meta.insert("deletionTimestamp".into(), json!(timestamp(at)));
        meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
    }
}

/// The first mark of deletion changes what controllers do: `metadata.generation` rises.
fn bump_generation(obj: &mut Value) {
    if let Some(meta) = metadata_mut(obj) {
        if let Some(generation) = meta.get("generation").and_then(Value::as_i64).filter(|g| *g > 0) {
            meta.insert("generation".into(), json!(generation + 1));
        }
    }
}

/// kube's `markAsDeleting`: marked now (or kept, if marked earlier), grace 0.
fn mark_as_deleting(obj: &mut Value, now: OffsetDateTime) {
    if !being_deleted(obj) {
        bump_generation(obj);
    }
    let at = match deletion_time(obj) {
        Some(at) if at <= now => at,
        _ => now,
    };
    set_deletion(obj, at, 0);
}

/// The seconds a pod gets to stop (kube's pod `CheckGracefulDelete`): the requested ones,
/// else its `terminationGracePeriodSeconds`; none if it was never scheduled or has finished.
fn pod_grace_period(pod: &Value, requested: Option<i64>) -> i64 {
    let unscheduled = pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or_default().is_empty();
    let finished = matches!(pod.pointer("/status/phase").and_then(Value::as_str), Some("Failed" | "Succeeded"));
    if unscheduled || finished {
        return 0;
    }
    requested.unwrap_or_else(|| {
        pod.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(DEFAULT_POD_GRACE)
    })
}

/// The finalizers `current` should have once deleted with `options` (kube's
/// `deletionFinalizersForGarbageCollection`): the garbage collector's two replaced as the
/// propagation policy says; `current` itself when that changes nothing.
fn gc_finalizers(current: &[String], options: &DeleteOptions) -> Vec<String> {
    let mut wanted: Vec<String> =
        current.iter().filter(|f| *f != ORPHAN_FINALIZER && *f != FOREGROUND_FINALIZER).cloned().collect();
    if options.orphans(current) {
        wanted.push(ORPHAN_FINALIZER.into());
    }
    if options.deletes_dependents_first(current) {
        wanted.push(FOREGROUND_FINALIZER.into());
    }
    let set = |list: &[String]| list.iter().cloned().collect::<BTreeSet<_>>();
    if set(&wanted) == set(current) {
        current.to_vec()
    } else {
        wanted
    }
}

/// The 409 of preconditions that do not hold, in kube's `BeforeDelete` words.
fn check_preconditions(kind: &ResourceKind, current: &Value, options: &DeleteOptions) -> ApiResult<()> {
    let meta = &current["metadata"];
    let conflict =
        |why: String| ApiError::Unfulfilled { group: kind.group, what: kind.kind, name: name_of(current).into(), why };
    let uid = meta["uid"].as_str().unwrap_or_default();
    if let Some(want) = options.uid.as_deref().filter(|want| *want != uid) {
        return Err(conflict(format!(
            "the UID in the precondition ({want}) does not match the UID in record ({uid}). \
             The object might have been deleted and then recreated"
        )));
    }
    let rv = meta["resourceVersion"].as_str().unwrap_or_default();
    if let Some(want) = options.resource_version.as_deref().filter(|want| *want != rv) {
        return Err(conflict(format!(
            "the ResourceVersion in the precondition ({want}) does not match the ResourceVersion in record ({rv}). \
             The object might have been modified"
        )));
    }
    Ok(())
}

/// What deleting `current` (resourceVersion set) with `options` at `now` does: kube's
/// `BeforeDelete` and `updateForGracefulDeletionAndFinalizers` as one decision. Pods are
/// marked with `now + grace` (a shorter grace period moves that earlier; grace 0 marks and
/// then removes); objects with finalizers (after those of the propagation policy) are
/// marked `now` with grace 0; anything else goes at once.
pub fn plan(kind: &ResourceKind, current: &Value, options: &DeleteOptions, now: OffsetDateTime) -> ApiResult<Step> {
    check_preconditions(kind, current, options)?;
    let requested = options.grace_period_seconds.map(|g| if g < 0 { 1 } else { g });
    let mut object = current.clone();
    // The grace period of a graceful deletion this delete starts or shortens.
    let mut grace = None;
    if graceful(kind) {
        match deletion_grace(current).filter(|_| being_deleted(current)) {
            // Marked with no grace left: it only waits to be removed.
            Some(0) => {}
            None if being_deleted(current) => {}
            Some(left) => match requested {
                Some(shorter) if shorter < left => {
                    let at =
                        deletion_time(current).unwrap_or(now) - Duration::seconds(left) + Duration::seconds(shorter);
                    set_deletion(&mut object, at, shorter);
                    grace = Some(shorter);
                }
                _ => return Ok(Step::Keep),
            },
            None => {
                let period = pod_grace_period(current, requested);
                set_deletion(&mut object, now + Duration::seconds(period), period);
                bump_generation(&mut object);
                grace = Some(period);
            }
        }
    }
    let finalizers = gc_finalizers(&finalizers_of(current), options);
    if finalizers != finalizers_of(current) {
        set_finalizers(&mut object, &finalizers);
    }
    let pending = !finalizers.is_empty();
    Ok(match grace {
        None if pending => {
            mark_as_deleting(&mut object, now);
            Step::Write { object, then_remove: false }
        }
        None => Step::Remove,
        Some(period) => Step::Write { object, then_remove: !pending && period == 0 },
    })
}

/// Deletes the object `name` as kube-apiserver does (see [`plan`]; namespaces terminate
/// first, see [`begin_termination`]); 404 if absent.
/// With `fence`, its writes are fenced to that Raft leadership term (a controller's delete).
pub async fn delete(
    node: &StoreNode,
    kind: &ResourceKind,
    ns: Option<&str>,
    name: &str,
    options: &DeleteOptions,
    fence: Option<u64>,
) -> ApiResult<Deleted> {
    options.validate()?;
    if is_namespaces(kind) {
        return delete_namespace(node, kind, name, options, fence).await;
    }
    delete_object(node, kind, ns, name, options, fence).await
}

async fn delete_object(
    node: &StoreNode,
    kind: &ResourceKind,
    ns: Option<&str>,
    name: &str,
    options: &DeleteOptions,
    fence: Option<u64>,
) -> ApiResult<Deleted> {
    let key = storage_key(kind, ns, name);
    for _ in 0..ATTEMPTS {
        let kv = read(node, kind, &key, name).await?;
        let current = with_resource_version(&kv.value, kv.mod_revision)?;
        let (object, revision) = match plan(kind, &current, options, OffsetDateTime::now_utc())? {
            Step::Keep => return Ok(Deleted { object: current, gone: false }),
            Step::Remove => (current, kv.mod_revision),
            Step::Write { object, then_remove } => {
                let revision = if options.is_dry_run() || object == current {
                    kv.mod_revision
                } else {
                    match put_if_unchanged(node, &key, &object, kv.mod_revision, fence).await? {
                        Some(revision) => revision,
                        None => continue,
                    }
                };
                let object = with_revision(object, revision);
                if !then_remove {
                    return Ok(Deleted { object, gone: false });
                }
                (object, revision)
            }
        };
        if options.is_dry_run() {
            return Ok(Deleted { object, gone: true });
        }
        if let Some(last) = remove_if_unchanged(node, &key, revision, fence).await? {
            return Ok(Deleted { object: last, gone: true });
        }
    }
    Err(ApiError::Conflict(Subject::of(kind, name)))
}

/// The start of a namespace's deletion (kube's namespace `Delete`, first call): marked now,
/// `status.phase` `Terminating`, the garbage collector's finalizers as the options say, and
/// the namespace controller's `kubernetes` finalizer in `spec.finalizers` (kube sets it at
/// create; here it is made sure of).
pub fn begin_termination(current: &Value, options: &DeleteOptions, now: OffsetDateTime) -> Value {
    let mut object = current.clone();
    let finalizers = finalizers_of(current);
    let has = |f: &str| finalizers.iter().any(|have| have == f);
    let orphan = match (options.orphan_dependents, options.propagation()) {
        (Some(orphan), _) => orphan,
        (None, Some(p)) => p == Propagation::Orphan,
        (None, None) => has(ORPHAN_FINALIZER),
    };
    let foreground = match (options.orphan_dependents, options.propagation()) {
        (Some(orphan), _) => !orphan,
        (None, Some(p)) => p == Propagation::Foreground,
        (None, None) => has(FOREGROUND_FINALIZER),
    };
    let mut wanted: Vec<String> =
        finalizers.iter().filter(|f| *f != ORPHAN_FINALIZER && *f != FOREGROUND_FINALIZER).cloned().collect();
    wanted.extend(orphan.then(|| ORPHAN_FINALIZER.to_string()));
    wanted.extend(foreground.then(|| FOREGROUND_FINALIZER.to_string()));
    if wanted.iter().collect::<BTreeSet<_>>() != finalizers.iter().collect::<BTreeSet<_>>() {
        set_finalizers(&mut object, &wanted);
    }
    if let Some(meta) = metadata_mut(&mut object) {
        meta.entry("deletionTimestamp").or_insert_with(|| json!(timestamp(now)));
    }
    if let Some(map) = object.as_object_mut() {
        let status = map.entry("status").or_insert_with(|| json!({}));
        if let Some(status) = status.as_object_mut() {
            status.insert("phase".into(), json!("Terminating"));
        }
        let spec = map.entry("spec").or_insert_with(|| json!({}));
        if let Some(spec) = spec.as_object_mut() {
            let list = spec.entry("finalizers").or_insert_with(|| json!([]));
            if let Some(list) = list.as_array_mut() {
                if !list.iter().any(|f| f == NAMESPACE_FINALIZER) {
                    list.push(json!(NAMESPACE_FINALIZER));
                }
            }
        }
    }
    object
}

/// The 409 of a namespace's preconditions that do not hold, in kube's namespace words.
fn check_namespace_preconditions(current: &Value, options: &DeleteOptions) -> ApiResult<()> {
    let meta = &current["metadata"];
    let conflict =
        |why: String| ApiError::Unfulfilled { group: "", what: "namespaces", name: name_of(current).into(), why };
    let uid = meta["uid"].as_str().unwrap_or_default();
    if let Some(want) = options.uid.as_deref().filter(|want| *want != uid) {
        return Err(conflict(format!("Precondition failed: UID in precondition: {want}, UID in object meta: {uid}")));
    }
    let rv = meta["resourceVersion"].as_str().unwrap_or_default();
    if let Some(want) = options.resource_version.as_deref().filter(|want| *want != rv) {
        return Err(conflict(format!(
            "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rv}"
        )));
    }
    Ok(())
}

/// A namespace's DELETE: the first marks it `Terminating` and answers with it; while its
/// `spec.finalizers` remain, later ones answer with it unchanged; then it goes as any object.
/// Each one that leaves it terminating also deletes its contents (what the namespace
/// controller finishes) and, once they are all gone, the namespace.
async fn delete_namespace(
    node: &StoreNode,
    kind: &ResourceKind,
    name: &str,
    options: &DeleteOptions,
    fence: Option<u64>,
) -> ApiResult<Deleted> {
    let key = storage_key(kind, None, name);
    for _ in 0..ATTEMPTS {
        let kv = read(node, kind, &key, name).await?;
        let current = with_resource_version(&kv.value, kv.mod_revision)?;
        check_namespace_preconditions(&current, options)?;
        let object = if being_deleted(&current) {
            if spec_finalizers(&current).is_empty() {
                return delete_object(node, kind, None, name, options, fence).await;
            }
            current
        } else {
            let object = begin_termination(&current, options, OffsetDateTime::now_utc());
            if options.is_dry_run() {
                return Ok(Deleted { object, gone: false });
            }
            match put_if_unchanged(node, &key, &object, kv.mod_revision, fence).await? {
                Some(revision) => with_revision(object, revision),
                None => continue,
            }
        };
        if !options.is_dry_run() {
            if let Err(e) = empty_namespace(node, kind, name).await {
                let why = "deleting the namespace's contents failed; it stays Terminating";
                tracing::warn!(namespace = name, error = %e, "{why}");
            }
        }
        return Ok(Deleted { object, gone: false });
    }
    Err(ApiError::Conflict(Subject::of(kind, name)))
}

/// Deletes every object in namespace `name` (pods gracefully; custom kinds too), then, if
/// none is left, removes the `kubernetes` finalizer and with it the namespace (if no other
/// finalizer holds it). Returns whether the namespace is gone.
async fn empty_namespace(node: &StoreNode, ns_kind: &ResourceKind, name: &str) -> ApiResult<bool> {
    let mut left = 0;
    let custom = crate::custom_kinds::all().into_iter().map(|c| c.storage_kind());
    for kind in BUILTIN.iter().chain(custom).filter(|k| k.namespaced) {
        let prefix = list_prefix(kind, Some(name));
        let mut keys = RangeRequest::prefix(prefix.clone());
        keys.keys_only = true;
        for kv in node.range(keys, true).await?.kvs {
            let Some(object) = kv.key.strip_prefix(prefix.as_bytes()).and_then(|n| std::str::from_utf8(n).ok()) else {
                continue;
            };
            match delete_object(node, kind, Some(name), object, &DeleteOptions::default(), None).await {
                Ok(deleted) if !deleted.gone => left += 1,
                Ok(_) | Err(ApiError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    if left > 0 {
        return Ok(false);
    }
    let key = storage_key(ns_kind, None, name);
    for _ in 0..ATTEMPTS {
        let kv = match read(node, ns_kind, &key, name).await {
            Err(ApiError::NotFound(_)) => return Ok(true),
            kv => kv?,
        };
        let current = with_resource_version(&kv.value, kv.mod_revision)?;
        if !being_deleted(&current) {
            return Ok(false);
        }
        let mut object = current.clone();
        let remaining: Vec<String> =
            spec_finalizers(&current).into_iter().filter(|f| f != NAMESPACE_FINALIZER).collect();
        if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
            match remaining.as_slice() {
                [] => spec.remove("finalizers"),
                some => spec.insert("finalizers".into(), json!(some)),
            };
        }
        if remaining.is_empty()
            && finalizers_of(&object).is_empty()
            && matches!(deletion_grace(&object), None | Some(0))
        {
            if remove_if_unchanged(node, &key, kv.mod_revision, None).await?.is_some() {
                return Ok(true);
            }
            continue;
        }
        if object == current || put_if_unchanged(node, &key, &object, kv.mod_revision, None).await?.is_some() {
            return Ok(false);
        }
    }
    Ok(false)
}

/// What an update of `stored` to `new` must respect of a deletion (kube's `BeforeUpdate`
/// and `ValidateObjectMetaUpdate`): a deletionTimestamp and grace period stay as they are,
/// no finalizer may be added to an object being deleted (422), none set by an update.
/// Returns whether the update deletes the object instead (kube's
/// `ShouldDeleteDuringUpdate`): it empties the finalizers of an object marked with no grace
/// left (and, for a namespace, its `spec.finalizers`).
pub fn check_update(kind: &ResourceKind, stored: &Value, new: &mut Value) -> ApiResult<bool> {
    let name = name_of(stored).to_string();
    let invalid =
        |cause: FieldCause| ApiError::Invalid { subject: Subject::of(kind, name.clone()), causes: vec![cause] };
    let old_finalizers = finalizers_of(stored);
    let added: Vec<String> = finalizers_of(new).into_iter().filter(|f| !old_finalizers.contains(f)).collect();
    let Some(meta) = metadata_mut(new) else { return Ok(false) };
    if being_deleted(stored) {
        for field in ["deletionTimestamp", "deletionGracePeriodSeconds"] {
            let old = stored["metadata"].get(field).filter(|v| !v.is_null());
            let keep = field == "deletionTimestamp" || meta.get(field).is_none_or(Value::is_null);
            if let (Some(old), true) = (old, keep) {
                meta.insert(field.into(), old.clone());
            }
        }
        if !added.is_empty() {
            let quoted: Vec<String> = added.iter().map(|f| format!("{f:?}")).collect();
            let detail = format!(
                "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                quoted.join(", ")
            );
            return Err(invalid(FieldCause::forbidden("metadata.finalizers", detail)));
        }
    } else {
        for field in ["deletionTimestamp", "deletionGracePeriodSeconds"] {
            match meta.get(field) {
                None | Some(Value::Null) => {}
                Some(set) => {
                    // kube prints a time as Go's `String()` would, a number as it is.
                    let shown = set.as_str().map_or_else(|| set.to_string(), str::to_string);
                    let cause = FieldCause::invalid_shown(format!("metadata.{field}"), shown, "field is immutable");
                    return Err(invalid(cause));
                }
            }
        }
        return Ok(false);
    }
    let emptied = finalizers_of(new).is_empty() && (!is_namespaces(kind) || spec_finalizers(new).is_empty());
    Ok(emptied && matches!(deletion_grace(stored), None | Some(0)))
}

/// Deletes each object (of namespace `ns`, or all) that `selectors` select, at most `limit`
/// (0: all), as [`delete`] does one (one that went meanwhile is skipped); returns them as
/// they were listed (kube's `DeleteCollection`).
pub async fn delete_collection(
    node: &StoreNode,
    kind: &ResourceKind,
    ns: Option<&str>,
    selectors: &Selectors,
    limit: usize,
    options: &DeleteOptions,
) -> ApiResult<ListPage> {
    options.validate()?;
    let listed = node.range(RangeRequest::prefix(list_prefix(kind, ns.or(selectors.namespace()))), true).await?;
    let mut chosen = Vec::new();
    let mut more = false;
    for kv in listed.kvs.into_iter().filter(|kv| selectors.matches(&Candidate::new(kv))) {
        if limit > 0 && chosen.len() == limit {
            more = true;
            break;
        }
        chosen.push(Arc::new(kv));
    }
    for kv in &chosen {
        let object = with_resource_version(&kv.value, kv.mod_revision)?;
        let object_ns = object.pointer("/metadata/namespace").and_then(Value::as_str).filter(|_| kind.namespaced);
        match delete(node, kind, object_ns, name_of(&object), options, None).await {
            Ok(_) | Err(ApiError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(page_of(chosen, listed.revision, more))
}

async fn read(node: &StoreNode, kind: &ResourceKind, key: &str, name: &str) -> ApiResult<KeyValue> {
    let mut found = node.range(RangeRequest::key(key), true).await?;
    found.kvs.pop().ok_or_else(|| ApiError::NotFound(Subject::of(kind, name)))
}

fn with_revision(mut object: Value, revision: Revision) -> Value {
    if let Some(meta) = metadata_mut(&mut object) {
        meta.insert("resourceVersion".into(), json!(revision.to_string()));
    }
    object
}

/// Writes `object` (its resourceVersion left out, as stored) if the key is still at
/// `revision`; the new revision, or `None` if it changed meanwhile. `fence`: see [`delete`].
async fn put_if_unchanged(
    node: &StoreNode,
    key: &str,
    object: &Value,
    revision: Revision,
    fence: Option<u64>,
) -> ApiResult<Option<Revision>> {
    let mut stored = object.clone();
    if let Some(meta) = metadata_mut(&mut stored) {
        meta.remove("resourceVersion");
    }
    let bytes = serde_json::to_vec(&stored).map_err(|e| ApiError::InternalError(e.to_string()))?;
    let txn = Txn {
        compare: vec![Compare::mod_revision_is(key, revision)],
        success: vec![Op::put(key, bytes)],
        ..Txn::default()
    }
    .fenced(fence);
    let response = node.txn(txn).await?;
    Ok(response.succeeded.then_some(response.revision))
}

/// Removes the key if it is still at `revision`: the object as it last was, or `None` if
/// it changed (or went) meanwhile. `fence`: see [`delete`].
pub async fn remove_if_unchanged(
    node: &StoreNode,
    key: &str,
    revision: Revision,
    fence: Option<u64>,
) -> ApiResult<Option<Value>> {
    let txn = Txn {
        compare: vec![Compare::mod_revision_is(key, revision)],
        success: vec![Op::delete(key)],
        ..Txn::default()
    }
    .fenced(fence);
    let response = node.txn(txn).await?;
    let last = match response.responses.into_iter().next() {
        Some(OpResponse::Delete { mut deleted }) if response.succeeded => deleted.pop(),
        _ => None,
    };
    last.map(|kv| with_resource_version(&kv.value, kv.mod_revision)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::find;

    fn kind(resource: &str) -> &'static ResourceKind {
        find("", "v1", resource).unwrap()
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
    }

    fn cm(finalizers: &[&str]) -> Value {
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x", "namespace": "default", "uid": "u1", "resourceVersion": "7"}});
        if !finalizers.is_empty() {
            cm["metadata"]["finalizers"] = json!(finalizers);
        }
        cm
    }

    fn pod(node: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default", "uid": "u2", "resourceVersion": "9"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]}})
    }

    fn written(step: Step) -> (Value, bool) {
        match step {
            Step::Write { object, then_remove } => (object, then_remove),
            other => panic!("not a write: {other:?}"),
        }
    }

    fn options(json: &str) -> DeleteOptions {
        DeleteOptions::from_body(json.as_bytes()).unwrap()
    }

    #[test]
    fn bodies_and_queries_parse_to_options() {
        let body = r#"{"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0,
            "preconditions": {"uid": "u", "resourceVersion": "5"}, "propagationPolicy": "Foreground",
            "dryRun": ["All"], "unknown": 1}"#;
        let parsed = options(body);
        assert_eq!(parsed.grace_period_seconds, Some(0));
        assert_eq!((parsed.uid.as_deref(), parsed.resource_version.as_deref()), (Some("u"), Some("5")));
        assert_eq!(parsed.propagation(), Some(Propagation::Foreground));
        assert!(parsed.is_dry_run() && parsed.validate().is_ok());
        assert_eq!(options("{}"), DeleteOptions::default());
        let pairs: Vec<(String, String)> =
            [("gracePeriodSeconds", "3"), ("orphanDependents", "true"), ("dryRun", "All"), ("pretty", "1")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let query = DeleteOptions::from_query(&pairs).unwrap();
        assert_eq!((query.grace_period_seconds, query.orphan_dependents), (Some(3), Some(true)));
        assert_eq!(query.dry_run, ["All"]);
        let merged = options(r#"{"gracePeriodSeconds": 1}"#).or(query);
        assert_eq!((merged.grace_period_seconds, merged.orphan_dependents), (Some(1), Some(true)));
    }

    #[test]
    fn protobuf_bodies_parse_to_options() {
        // DeleteOptions{gracePeriodSeconds: 0, preconditions: {uid: "u"}, propagationPolicy: "Background",
        // dryRun: ["All"]} in a runtime.Unknown, as client-go sends it.
        let message =
            [&[0x08, 0x00][..], &[0x12, 0x03, 0x0a, 0x01, b'u'], &[0x22, 0x0a], b"Background", &[0x2a, 0x03], b"All"]
                .concat();
        let type_meta = [&[0x0a, 0x02][..], b"v1", &[0x12, 0x0d], b"DeleteOptions"].concat();
        let unknown = [&[0x0a, type_meta.len() as u8][..], &type_meta, &[0x12, message.len() as u8], &message].concat();
        let body = [&b"k8s\0"[..], &unknown].concat();
        let parsed = DeleteOptions::from_protobuf(&body).unwrap();
        assert_eq!(parsed.grace_period_seconds, Some(0));
        assert_eq!(parsed.uid.as_deref(), Some("u"));
        assert_eq!(parsed.propagation(), Some(Propagation::Background));
        assert_eq!(parsed.dry_run, ["All"]);
        // A negative int64 is a ten-byte varint.
        let negative = [0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        let unknown = [&[0x12, negative.len() as u8][..], &negative].concat();
        let parsed = DeleteOptions::from_protobuf(&[&b"k8s\0"[..], &unknown].concat()).unwrap();
        assert_eq!(parsed.grace_period_seconds, Some(-1));
        for bad in [&b"nope"[..], b"k8s\0\x12\x05ab", b"k8s\0\x0f"] {
            assert_eq!(DeleteOptions::from_protobuf(bad).unwrap_err().code(), 400, "{bad:?}");
        }
    }

    #[test]
    fn bad_bodies_are_bad_requests_and_bad_values_invalid() {
        for bad in ["nope", "[1]", r#"{"gracePeriodSeconds": "x"}"#, r#"{"preconditions": {"uid": 3}}"#] {
            assert_eq!(DeleteOptions::from_body(bad.as_bytes()).unwrap_err().code(), 400, "{bad}");
        }
        let e = DeleteOptions::from_body(br#"{"gracePeriodSeconds": "x"}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "json: cannot unmarshal string into Go struct field DeleteOptions.gracePeriodSeconds of type int64"
        );
        let pairs = vec![("gracePeriodSeconds".to_string(), "abc".to_string())];
        assert_eq!(
            DeleteOptions::from_query(&pairs).unwrap_err().to_string(),
            r#"strconv.ParseInt: parsing "abc": invalid syntax"#
        );
        let e = options(r#"{"propagationPolicy": "Sideways"}"#).validate().unwrap_err();
        assert_eq!(e.code(), 422);
        assert!(e.to_string().starts_with(r#"DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy"#), "{e}");
        let both = options(r#"{"propagationPolicy": "Orphan", "orphanDependents": true}"#);
        assert!(both.validate().unwrap_err().to_string().contains("cannot be both set"));
        assert_eq!(options(r#"{"dryRun": ["Some"]}"#).validate().unwrap_err().code(), 422);
    }

    #[test]
    fn preconditions_that_do_not_hold_conflict_with_kube_messages() {
        let e = plan(kind("configmaps"), &cm(&[]), &options(r#"{"preconditions": {"uid": "other"}}"#), now());
        let e = e.unwrap_err();
        assert_eq!((e.code(), e.reason()), (409, "Conflict"));
        assert_eq!(
            e.to_string(),
            r#"Operation cannot be fulfilled on ConfigMap "x": the UID in the precondition (other) does not match the UID in record (u1). The object might have been deleted and then recreated"#
        );
        let e = plan(kind("configmaps"), &cm(&[]), &options(r#"{"preconditions": {"resourceVersion": "6"}}"#), now());
        assert!(e.unwrap_err().to_string().ends_with(
            "the ResourceVersion in the precondition (6) does not match the ResourceVersion in record (7). The object might have been modified"
        ));
        let holds = options(r#"{"preconditions": {"uid": "u1", "resourceVersion": "7"}}"#);
        assert_eq!(plan(kind("configmaps"), &cm(&[]), &holds, now()).unwrap(), Step::Remove);
    }

    #[test]
    fn finalizers_keep_an_object_marked_and_a_second_delete_changes_nothing() {
        let cms = kind("configmaps");
        let (marked, remove) = written(plan(cms, &cm(&["example.com/x"]), &DeleteOptions::default(), now()).unwrap());
        assert!(!remove);
        assert_eq!(marked["metadata"]["deletionTimestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 0);
        assert_eq!(marked["metadata"]["finalizers"], json!(["example.com/x"]));
        let later = now() + Duration::seconds(60);
        let (again, _) = written(plan(cms, &marked, &DeleteOptions::default(), later).unwrap());
        assert_eq!(again, marked, "a repeated delete writes nothing");
    }

    #[test]
    fn propagation_policies_add_the_garbage_collectors_finalizers() {
        let cms = kind("configmaps");
        let (object, _) =
            written(plan(cms, &cm(&[]), &options(r#"{"propagationPolicy": "Foreground"}"#), now()).unwrap());
        assert_eq!(object["metadata"]["finalizers"], json!([FOREGROUND_FINALIZER]));
        let (object, _) =
            written(plan(cms, &cm(&["a"]), &options(r#"{"propagationPolicy": "Orphan"}"#), now()).unwrap());
        assert_eq!(object["metadata"]["finalizers"], json!(["a", ORPHAN_FINALIZER]));
        let (object, _) = written(plan(cms, &cm(&[]), &options(r#"{"orphanDependents": true}"#), now()).unwrap());
        assert_eq!(object["metadata"]["finalizers"], json!([ORPHAN_FINALIZER]));
        // Background drops an orphan finalizer; with nothing left the object goes at once.
        let background = options(r#"{"propagationPolicy": "Background"}"#);
        assert_eq!(plan(cms, &cm(&[ORPHAN_FINALIZER]), &background, now()).unwrap(), Step::Remove);
        assert_eq!(plan(cms, &cm(&[]), &background, now()).unwrap(), Step::Remove);
    }

    #[test]
    fn scheduled_pods_get_their_grace_period_and_others_go_at_once() {
        let pods = kind("pods");
        let (marked, remove) = written(plan(pods, &pod("n1"), &DeleteOptions::default(), now()).unwrap());
        assert!(!remove);
        assert_eq!(marked["metadata"]["deletionTimestamp"], "2023-11-14T22:13:50Z");
        assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 30);
        let mut own = pod("n1");
        own["spec"]["terminationGracePeriodSeconds"] = json!(5);
        let (object, _) = written(plan(pods, &own, &DeleteOptions::default(), now()).unwrap());
        assert_eq!(object["metadata"]["deletionGracePeriodSeconds"], 5);
        // Unscheduled or finished: marked with grace 0 and removed.
        let (object, remove) = written(plan(pods, &pod(""), &DeleteOptions::default(), now()).unwrap());
        assert!(remove && object["metadata"]["deletionGracePeriodSeconds"] == 0);
        let mut done = pod("n1");
        done["status"] = json!({"phase": "Succeeded"});
        assert!(written(plan(pods, &done, &DeleteOptions::default(), now()).unwrap()).1);
        // A second delete waits; a shorter grace period moves the deadline; 0 removes.
        let later = now() + Duration::seconds(10);
        assert_eq!(plan(pods, &marked, &DeleteOptions::default(), later).unwrap(), Step::Keep);
        assert_eq!(plan(pods, &marked, &options(r#"{"gracePeriodSeconds": 30}"#), later).unwrap(), Step::Keep);
        let (shorter, remove) = written(plan(pods, &marked, &options(r#"{"gracePeriodSeconds": 10}"#), later).unwrap());
        assert!(!remove);
        assert_eq!(shorter["metadata"]["deletionTimestamp"], "2023-11-14T22:13:30Z");
        let (forced, remove) = written(plan(pods, &marked, &options(r#"{"gracePeriodSeconds": 0}"#), later).unwrap());
        assert!(remove && forced["metadata"]["deletionGracePeriodSeconds"] == 0);
        // Marked with no grace left (the node is done): removed.
        assert_eq!(plan(pods, &forced, &DeleteOptions::default(), later).unwrap(), Step::Remove);
        // Other kinds ignore grace periods.
        assert_eq!(
            plan(kind("configmaps"), &cm(&[]), &options(r#"{"gracePeriodSeconds": 30}"#), now()).unwrap(),
            Step::Remove
        );
    }

    #[test]
    fn updates_keep_the_mark_refuse_new_finalizers_and_delete_when_emptied() {
        let cms = kind("configmaps");
        let (marked, _) = written(plan(cms, &cm(&["a"]), &DeleteOptions::default(), now()).unwrap());
        let mut unmarked = cm(&["a"]);
        assert!(!check_update(cms, &marked, &mut unmarked).unwrap());
        assert_eq!(unmarked["metadata"]["deletionTimestamp"], marked["metadata"]["deletionTimestamp"]);
        let e = check_update(cms, &marked, &mut cm(&["a", "b"])).unwrap_err();
        assert_eq!(e.code(), 422);
        assert!(e.to_string().contains(r#"found new finalizers []string{"b"}"#), "{e}");
        assert!(check_update(cms, &marked, &mut cm(&[])).unwrap(), "emptied finalizers delete");
        // Not being deleted: nothing to do, and no update may mark it.
        assert!(!check_update(cms, &cm(&["a"]), &mut cm(&[])).unwrap());
        let mut forged = cm(&[]);
        forged["metadata"]["deletionTimestamp"] = json!("2023-11-14T22:13:20Z");
        assert_eq!(check_update(cms, &cm(&[]), &mut forged).unwrap_err().code(), 422);
        // A pod in its grace period is not deleted by an update.
        let pods = kind("pods");
        let (graceful, _) = written(plan(pods, &pod("n1"), &DeleteOptions::default(), now()).unwrap());
        assert!(!check_update(pods, &graceful, &mut pod("n1")).unwrap());
    }

    #[test]
    fn namespaces_terminate_with_the_kubernetes_finalizer() {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "t", "uid": "u"},
            "spec": {}, "status": {"phase": "Active"}});
        let terminating = begin_termination(&ns, &DeleteOptions::default(), now());
        assert_eq!(terminating["status"]["phase"], "Terminating");
        assert_eq!(terminating["metadata"]["deletionTimestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(terminating["spec"]["finalizers"], json!([NAMESPACE_FINALIZER]));
        assert!(terminating["metadata"].get("finalizers").is_none());
        let orphaning = begin_termination(&ns, &options(r#"{"propagationPolicy": "Orphan"}"#), now());
        assert_eq!(orphaning["metadata"]["finalizers"], json!([ORPHAN_FINALIZER]));
        let namespaces = kind("namespaces");
        let mut emptied = terminating.clone();
        assert!(!check_update(namespaces, &terminating, &mut emptied).unwrap(), "spec.finalizers still hold it");
        emptied["spec"] = json!({});
        assert!(check_update(namespaces, &terminating, &mut emptied).unwrap());
    }

    #[test]
    fn kinds_that_do_not_return_the_object_answer_a_success_status() {
        let status = success_status(kind("configmaps"), &cm(&[]));
        assert_eq!(
            status,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": "x", "kind": "configmaps", "uid": "u1"}})
        );
        let deployments = find("apps", "v1", "deployments").unwrap();
        assert_eq!(success_status(deployments, &cm(&[]))["details"]["group"], "apps");
        assert!(returns_deleted_object(kind("pods")) && !returns_deleted_object(kind("configmaps")));
    }
}

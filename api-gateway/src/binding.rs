//! The `pods/binding` and `pods/eviction` subresources (`POST` only), as kube-apiserver's:
//!
//! - binding: a `v1` `Binding` (`target`: the Node) is the scheduler's bind transaction
//!   (`actors::scheduler::binding::Binding`): `spec.nodeName`, the binding's annotations and
//!   `PodScheduled` in one store write; 409 if the pod is bound already, being deleted or
//!   not the one its preconditions name.
//! - eviction: a `policy/v1` `Eviction` deletes the pod with the eviction's
//!   `deleteOptions`, unless the one PodDisruptionBudget selecting it allows no disruption
//!   now (429, kube's words; `kubectl drain` retries), as kube's `checkAndDecrement`: the
//!   budget's status, kept by the disruption controller (`actors::controllers::disruption`),
//!   is the word; a budget whose status is behind its spec (`observedGeneration`) refuses
//!   (429, retry after 10 s); an allowed eviction takes `disruptionsAllowed` down by one and
//!   records the pod in `disruptedPods` with a conflict-checked status write before the
//!   delete. A pod that is not Ready goes when the budget is met anyway (or under
//!   `unhealthyPodEvictionPolicy: AlwaysAllow`), its delete conditioned on its
//!   resourceVersion. Terminal, pending and terminating pods go without a budget check; the
//!   pod gets the `DisruptionTarget` condition first.
//!
//! Both answer 201 with a `Success` `Status`. Bodies are JSON, or protobuf as client-go's
//! typed clients send them.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use actors::admission::{Attributes, Operation};
use actors::controllers::disruption;
use actors::deletion::DeleteOptions;
use actors::kinds::{self, ResourceKind};
use actors::scheduler::binding::Binding;
use actors::{ApiError, ApiResult, Delete, FieldValidation, Get, KindActors, List, Part, Patch, PatchKind, Update};
use futures::StreamExt;
use serde_json::{json, Map, Value};

/// How often a PodDisruptionBudget status update is tried against concurrent writes.
const PDB_ATTEMPTS: usize = 5;
/// kube's `MaxDisruptedPodSize`.
const MAX_DISRUPTED_PODS: usize = 2000;

/// Whether `resource/subresource` is one of these handlers'.
pub fn handles(kind: &ResourceKind, subresource: Option<&str>) -> bool {
    kind.group.is_empty() && kind.resource == "pods" && matches!(subresource, Some("binding" | "eviction"))
}

/// Serves a request for `pods/{name}/{subresource}` in `namespace`.
pub async fn serve(
    req: &HttpRequest,
    body: web::Payload,
    actors: &KindActors,
    (namespace, name, subresource): (&str, &str, &str),
) -> ApiResult<(StatusCode, Value)> {
    post_only(req)?;
    let bytes = read_body(body).await?;
    let protobuf = content_type(req).contains("protobuf");
    let dry_run = dry_run(req);
    match subresource {
        "binding" => {
            let mut obj = if protobuf { decode_binding(&bytes)? } else { json_body(&bytes)? };
            admit(req, actors, (namespace, name, "binding"), &mut obj, dry_run).await?;
            let binding = Binding::parse(namespace, name, &obj)?;
            bind(actors, &binding, &manager(req), dry_run).await?;
        }
        _ => {
            let mut obj = if protobuf { decode_eviction(&bytes)? } else { json_body(&bytes)? };
            admit(req, actors, (namespace, name, "eviction"), &mut obj, dry_run).await?;
            if let Some(refusal) = evict(actors, namespace, name, &obj, dry_run).await? {
                return Ok(refusal);
            }
        }
    }
    Ok((
        StatusCode::CREATED,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

/// kube's 405 for any verb but POST on a create-only subresource.
pub(crate) fn post_only(req: &HttpRequest) -> ApiResult<()> {
    if req.method().as_str() == "POST" {
        return Ok(());
    }
    Err(ApiError::MethodNotSupported(format!(
        "the server does not allow this method on the requested resource ({} {})",
        req.method(),
        req.path()
    )))
}

/// The admission of a `pods/binding` or `pods/eviction` create, as kube's: the chain sees
/// the subresource's own object (the Binding, the Eviction), may change it, may refuse it.
async fn admit(
    req: &HttpRequest,
    actors: &KindActors,
    (namespace, name, subresource): (&str, &str, &'static str),
    obj: &mut Value,
    dry_run: bool,
) -> ApiResult<()> {
    let Some(chain) = actors.admission() else { return Ok(()) };
    let attrs = Attributes {
        kind: pods_kind()?,
        subresource: Some(subresource),
        operation: Operation::Create,
        namespace: Some(namespace.to_string()),
        name: name.to_string(),
        user: crate::resources::user_of(req),
        dry_run,
    };
    chain.mutate(&attrs, obj, None).await?;
    chain.validate(&attrs, obj, None).await?;
    Ok(())
}

fn content_type(req: &HttpRequest) -> &str {
    req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// `dryRun=All` among the query parameters.
fn dry_run(req: &HttpRequest) -> bool {
    req.query_string().split('&').any(|p| p == "dryRun=All")
}

/// The field manager of a write: `fieldManager`, else the user agent's program name.
fn manager(req: &HttpRequest) -> String {
    let query = req.query_string().split('&').find_map(|p| p.strip_prefix("fieldManager="));
    if let Some(m) = query.filter(|m| !m.is_empty()) {
        return m.to_string();
    }
    let agent = req.headers().get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or("");
    match agent.split('/').next().filter(|a| !a.is_empty()) {
        Some(program) => program.to_string(),
        None => "unknown".into(),
    }
}

pub(crate) async fn read_body(mut body: web::Payload) -> ApiResult<web::BytesMut> {
    let mut bytes = web::BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("reading the body: {e}")))?;
        if bytes.len() + chunk.len() > crate::resources::MAX_BODY {
            return Err(ApiError::RequestEntityTooLarge("the request body is too large".into()));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

fn json_body(bytes: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))
}

fn pods_kind() -> ApiResult<&'static ResourceKind> {
    kinds::find("", "v1", "pods").ok_or_else(|| ApiError::InternalError("no pods kind".into()))
}

fn actor(actors: &KindActors, kind: &ResourceKind) -> ApiResult<actix::Addr<actors::KindActor>> {
    actors.get(kind).ok_or_else(|| ApiError::ServiceUnavailable(format!("no actor for {}", kind.resource)))
}

fn mailbox(e: actix::MailboxError) -> ApiError {
    ApiError::ServiceUnavailable(format!("kind actor: {e}"))
}

/// The binding, in one store transaction (checked, not written, under dry run).
async fn bind(actors: &KindActors, binding: &Binding, manager: &str, dry_run: bool) -> ApiResult<()> {
    if dry_run {
        let get = Get { namespace: Some(binding.namespace.clone()), name: binding.name.clone() };
        let pod = actor(actors, pods_kind()?)?.send(get).await.map_err(mailbox)??;
        return binding.apply("pods/binding", &pod).map(|_| ());
    }
    let store = actors.store().ok_or_else(|| ApiError::ServiceUnavailable("no store".into()))?;
    binding.write(store, "pods/binding", manager).await.map(|_| ())
}

/// A refusal answered with a `Status` of its own (not an [`ApiError`]'s).
type Refusal = (StatusCode, Value);

/// kube's 429 for an eviction a budget forbids, with its cause.
fn budget_refusal(cause: String, retry_after: u64) -> Refusal {
    let mut details = json!({"causes": [{"reason": "DisruptionBudget", "message": cause}]});
    if retry_after > 0 {
        details["retryAfterSeconds"] = json!(retry_after);
    }
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "Cannot evict pod as it would violate the pod's disruption budget.",
        "reason": "TooManyRequests", "details": details, "code": 429});
    (StatusCode::TOO_MANY_REQUESTS, status)
}

/// The eviction of `namespace/name`, or a budget's refusal.
async fn evict(
    actors: &KindActors,
    namespace: &str,
    name: &str,
    eviction: &Value,
    dry_run: bool,
) -> ApiResult<Option<Refusal>> {
    if !eviction.is_object() {
        return Err(ApiError::BadRequest("the body is not an Eviction object".into()));
    }
    let body_name = eviction.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    if body_name != name {
        return Err(ApiError::BadRequest("name in URL does not match name in Eviction object".into()));
    }
    let mut options = match eviction.get("deleteOptions").filter(|o| o.is_object()) {
        Some(o) => DeleteOptions::from_body(o.to_string().as_bytes())?,
        None => DeleteOptions::default(),
    };
    if dry_run && !options.dry_run.iter().any(|d| d == "All") {
        options.dry_run.push("All".into());
    }
    options.validate()?;
    let dry_run = options.dry_run.iter().any(|d| d == "All");
    let pods = actor(actors, pods_kind()?)?;
    let pod = pods.send(Get { namespace: Some(namespace.into()), name: name.into() }).await.map_err(mailbox)??;
    let phase = pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or("Pending");
    let terminating = pod.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null());
    if !(matches!(phase, "Succeeded" | "Failed" | "Pending") || terminating) {
        match check_budgets(actors, namespace, &pod, dry_run).await? {
            Budgeted::Refused(refusal) => return Ok(Some(refusal)),
            // kube's `updateDeletionOptions`: an unhealthy pod goes only as it was checked.
            Budgeted::IfUnchanged => {
                if options.resource_version.is_none() {
                    let rv = pod.pointer("/metadata/resourceVersion").and_then(Value::as_str);
                    options.resource_version = rv.map(String::from);
                }
            }
            Budgeted::Allowed => {}
        }
    }
    if !dry_run {
        // kube checks the preconditions as it adds the condition; one that no longer holds
        // is left to the delete to refuse (409).
        let field = |f: &str| pod.pointer(&format!("/metadata/{f}")).and_then(Value::as_str).unwrap_or("");
        let stale = options.resource_version.as_deref().is_some_and(|rv| rv != field("resourceVersion"))
            || options.uid.as_deref().is_some_and(|uid| uid != field("uid"));
        if !stale {
            let marked = mark_disrupted(actors, namespace, name).await;
            // The condition is this eviction's own change: the delete expects it.
            if let (Some(rv), Some(_)) = (marked, options.resource_version.as_ref()) {
                options.resource_version = Some(rv);
            }
        }
    }
    let delete = Delete { namespace: Some(namespace.into()), name: name.into(), options };
    pods.send(delete).await.map_err(mailbox)??;
    Ok(None)
}

/// What the budgets say of an eviction.
enum Budgeted {
    /// No budget selects the pod, or one allowed it (and counted it).
    Allowed,
    /// The pod is not Ready and the budget is met without it: it goes if still as read.
    IfUnchanged,
    /// A refusal, answered as is.
    Refused(Refusal),
}

fn status_int(pdb: &Value, field: &str) -> i64 {
    pdb.pointer(&format!("/status/{field}")).and_then(Value::as_i64).unwrap_or(0)
}

fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions").and_then(Value::as_array).is_some_and(|cs| {
        cs.iter().any(|c| {
            c.get("type").and_then(Value::as_str) == Some("Ready")
                && c.get("status").and_then(Value::as_str) == Some("True")
        })
    })
}

/// The budgets selecting `pod` (kube's eviction): none; or the one, which lets an unready pod
/// go when it is met anyway, else must allow a disruption (taken off its status); 500 for
/// more than one.
async fn check_budgets(actors: &KindActors, namespace: &str, pod: &Value, dry_run: bool) -> ApiResult<Budgeted> {
    let pdb_kind = disruption::budgets();
    let pdbs = list(actors, pdb_kind, namespace).await?;
    let selecting: Vec<&Value> = pdbs.iter().filter(|b| disruption::selects(b, pod)).collect();
    let mut pdb = match selecting.as_slice() {
        [] => return Ok(Budgeted::Allowed),
        [one] => (*one).clone(),
        _ => {
            let message =
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.";
            let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "code": 500});
            return Ok(Budgeted::Refused((StatusCode::INTERNAL_SERVER_ERROR, status)));
        }
    };
    if !is_ready(pod) {
        let policy = pdb.pointer("/spec/unhealthyPodEvictionPolicy").and_then(Value::as_str);
        let (current, desired) = (status_int(&pdb, "currentHealthy"), status_int(&pdb, "desiredHealthy"));
        if policy == Some("AlwaysAllow") || (current >= desired && desired > 0) {
            return Ok(Budgeted::IfUnchanged);
        }
    }
    for _ in 0..PDB_ATTEMPTS {
        match check_and_decrement(actors, &pdb, pod, dry_run).await {
            Ok(None) => return Ok(Budgeted::Allowed),
            Ok(Some(refusal)) => return Ok(Budgeted::Refused(refusal)),
            Err(ApiError::Conflict(_)) => {
                let name = pdb.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
                let get = Get { namespace: Some(namespace.into()), name };
                pdb = actor(actors, pdb_kind)?.send(get).await.map_err(mailbox)??;
            }
            Err(e) => return Err(e),
        }
    }
    let name = pdb.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    Err(ApiError::Status {
        code: 504,
        reason: "Timeout".into(),
        message: format!("Timeout: couldn't update PodDisruptionBudget {name:?} due to conflicts"),
        details: Some(json!({"retryAfterSeconds": 10})),
    })
}

/// kube's `checkAndDecrement`: a refusal while the budget's status is behind its spec or
/// allows nothing; else one disruption taken off its status, the pod recorded in
/// `disruptedPods` (a status write that fails on a concurrent change; none under dry run).
async fn check_and_decrement(
    actors: &KindActors,
    pdb: &Value,
    pod: &Value,
    dry_run: bool,
) -> ApiResult<Option<Refusal>> {
    let pdb_kind = disruption::budgets();
    let name = pdb.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    let generation = pdb.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
    if status_int(pdb, "observedGeneration") < generation {
        let cause = format!("The disruption budget {name} is still being processed by the server.");
        return Ok(Some(budget_refusal(cause, 10)));
    }
    let allowed = status_int(pdb, "disruptionsAllowed");
    let forbidden = |why: &str| ApiError::Forbidden {
        subject: actors::Subject::of(pdb_kind, name.clone()),
        why: why.into(),
        causes: Vec::new(),
    };
    if allowed < 0 {
        return Err(forbidden("pdb disruptions allowed is negative"));
    }
    let disrupted = pdb.pointer("/status/disruptedPods").and_then(Value::as_object).map_or(0, |m| m.len());
    if disrupted > MAX_DISRUPTED_PODS {
        return Err(forbidden("DisruptedPods map too big - too many evictions not confirmed by PDB controller"));
    }
    if allowed == 0 {
        let cause = format!(
            "The disruption budget {name} needs {} healthy pods and has {} currently",
            status_int(pdb, "desiredHealthy"),
            status_int(pdb, "currentHealthy")
        );
        return Ok(Some(budget_refusal(cause, 0)));
    }
    if dry_run {
        return Ok(None);
    }
    let now = time::OffsetDateTime::now_utc();
    let mut updated = pdb.clone();
    let Some(status) = updated.get_mut("status").filter(|s| s.is_object()) else { return Ok(None) };
    status["disruptionsAllowed"] = json!(allowed - 1);
    if allowed - 1 == 0 {
        disruption::update_allowed_condition(status, now);
    }
    if !status.get("disruptedPods").is_some_and(Value::is_object) {
        status["disruptedPods"] = json!({});
    }
    let pod_name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    status["disruptedPods"][pod_name] = json!(actors::objects::timestamp(now));
    let namespace = pdb.pointer("/metadata/namespace").and_then(Value::as_str).map(String::from);
    let msg = Update { namespace, name, obj: updated, field_manager: None, part: Part::Status };
    actor(actors, pdb_kind)?.send(msg).await.map_err(mailbox)??;
    Ok(None)
}

/// kube's `DisruptionTarget` condition, set before the delete (a failure is no refusal);
/// the pod's new resourceVersion.
async fn mark_disrupted(actors: &KindActors, namespace: &str, name: &str) -> Option<String> {
    let pods = pods_kind().and_then(|k| actor(actors, k)).ok()?;
    let now =
        time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let condition = json!({"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
        "message": "Eviction API: evicting", "lastProbeTime": null, "lastTransitionTime": now});
    let msg = Patch {
        namespace: Some(namespace.into()),
        name: name.into(),
        patch_kind: PatchKind::Strategic,
        body: json!({"status": {"conditions": [condition]}}).to_string().into_bytes(),
        field_manager: None,
        force: false,
        part: Part::Status,
        field_validation: FieldValidation::Ignore,
    };
    match pods.send(msg).await {
        Ok(Ok(written)) => written.obj.pointer("/metadata/resourceVersion").and_then(Value::as_str).map(String::from),
        Ok(Err(e)) => {
            tracing::debug!(pod = name, error = %e, "setting DisruptionTarget failed");
            None
        }
        Err(_) => None,
    }
}

/// Every object of `kind` in `namespace`.
async fn list(actors: &KindActors, kind: &'static ResourceKind, namespace: &str) -> ApiResult<Vec<Value>> {
    let msg = List { namespace: Some(namespace.into()), ..List::default() };
    let page = actor(actors, kind)?.send(msg).await.map_err(mailbox)??;
    Ok(page.objects.iter().filter_map(|kv| serde_json::from_slice(&kv.value).ok()).collect())
}

/// One protobuf field: a varint or length-delimited bytes (fixed-width ones are skipped).
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn bad(why: &str) -> ApiError {
    ApiError::BadRequest(format!("the protobuf body is not valid: {why}"))
}

/// The fields of one protobuf message.
fn fields(mut bytes: &[u8]) -> ApiResult<Vec<(u64, Wire<'_>)>> {
    fn varint(bytes: &mut &[u8]) -> ApiResult<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = bytes.split_first().ok_or_else(|| bad("a varint runs past the end"))?;
            *bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(bad("a varint is too long"))
    }
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let tag = varint(&mut bytes)?;
        let wire = match tag & 7 {
            0 => Wire::Varint(varint(&mut bytes)?),
            2 => {
                let len = usize::try_from(varint(&mut bytes)?).map_err(|_| bad("a length is too large"))?;
                if len > bytes.len() {
                    return Err(bad("a field runs past the end"));
                }
                let (field, rest) = bytes.split_at(len);
                bytes = rest;
                Wire::Bytes(field)
            }
            1 | 5 => {
                let width = if tag & 7 == 1 { 8 } else { 4 };
                bytes = bytes.get(width..).ok_or_else(|| bad("a fixed field runs past the end"))?;
                continue;
            }
            _ => return Err(bad("an unknown wire type")),
        };
        out.push((tag >> 3, wire));
    }
    Ok(out)
}

fn text(bytes: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(bytes).into_owned())
}

/// The object inside a `k8s\0` + `runtime.Unknown` body.
fn unknown_raw(body: &[u8]) -> ApiResult<&[u8]> {
    let unknown = body.strip_prefix(b"k8s\0").ok_or_else(|| bad("no k8s protobuf prefix"))?;
    let mut raw: &[u8] = &[];
    for (field, wire) in fields(unknown)? {
        if let (2, Wire::Bytes(bytes)) = (field, wire) {
            raw = bytes;
        }
    }
    Ok(raw)
}

/// What an `ObjectMeta` says that these handlers read: name, namespace, uid,
/// resourceVersion, annotations.
fn object_meta(bytes: &[u8]) -> ApiResult<Value> {
    let mut meta = Map::new();
    let mut annotations = Map::new();
    for (field, wire) in fields(bytes)? {
        match (field, wire) {
            (1, Wire::Bytes(b)) => drop(meta.insert("name".into(), text(b))),
            (3, Wire::Bytes(b)) => drop(meta.insert("namespace".into(), text(b))),
            (5, Wire::Bytes(b)) => drop(meta.insert("uid".into(), text(b))),
            (6, Wire::Bytes(b)) => drop(meta.insert("resourceVersion".into(), text(b))),
            (12, Wire::Bytes(entry)) => {
                let (mut key, mut value) = (String::new(), Value::String(String::new()));
                for (field, wire) in fields(entry)? {
                    match (field, wire) {
                        (1, Wire::Bytes(b)) => key = String::from_utf8_lossy(b).into_owned(),
                        (2, Wire::Bytes(b)) => value = text(b),
                        _ => {}
                    }
                }
                annotations.insert(key, value);
            }
            _ => {}
        }
    }
    if !annotations.is_empty() {
        meta.insert("annotations".into(), Value::Object(annotations));
    }
    Ok(Value::Object(meta))
}

/// A protobuf `v1` `Binding` as its JSON.
fn decode_binding(body: &[u8]) -> ApiResult<Value> {
    let mut obj = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {}, "target": {}});
    for (field, wire) in fields(unknown_raw(body)?)? {
        match (field, wire) {
            (1, Wire::Bytes(b)) => obj["metadata"] = object_meta(b)?,
            (2, Wire::Bytes(b)) => {
                for (field, wire) in fields(b)? {
                    let name = match field {
                        1 => "kind",
                        2 => "namespace",
                        3 => "name",
                        4 => "uid",
                        5 => "apiVersion",
                        6 => "resourceVersion",
                        _ => continue,
                    };
                    if let Wire::Bytes(b) = wire {
                        obj["target"][name] = text(b);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(obj)
}

/// A protobuf `policy/v1` `Eviction` as its JSON.
fn decode_eviction(body: &[u8]) -> ApiResult<Value> {
    let mut obj = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {}});
    for (field, wire) in fields(unknown_raw(body)?)? {
        match (field, wire) {
            (1, Wire::Bytes(b)) => obj["metadata"] = object_meta(b)?,
            (2, Wire::Bytes(b)) => obj["deleteOptions"] = delete_options(b)?,
            _ => {}
        }
    }
    Ok(obj)
}

/// A protobuf `DeleteOptions` message as its JSON.
fn delete_options(bytes: &[u8]) -> ApiResult<Value> {
    let mut options = Map::new();
    let mut dry_run = Vec::new();
    for (field, wire) in fields(bytes)? {
        match (field, wire) {
            // Two's complement in a varint, as Go encodes an int64.
            (1, Wire::Varint(seconds)) => drop(options.insert("gracePeriodSeconds".into(), json!(seconds as i64))),
            (2, Wire::Bytes(b)) => {
                let mut preconditions = Map::new();
                for (field, wire) in fields(b)? {
                    match (field, wire) {
                        (1, Wire::Bytes(b)) => drop(preconditions.insert("uid".into(), text(b))),
                        (2, Wire::Bytes(b)) => drop(preconditions.insert("resourceVersion".into(), text(b))),
                        _ => {}
                    }
                }
                options.insert("preconditions".into(), Value::Object(preconditions));
            }
            (3, Wire::Varint(orphan)) => drop(options.insert("orphanDependents".into(), json!(orphan != 0))),
            (4, Wire::Bytes(b)) => drop(options.insert("propagationPolicy".into(), text(b))),
            (5, Wire::Bytes(b)) => dry_run.push(text(b)),
            _ => {}
        }
    }
    if !dry_run.is_empty() {
        options.insert("dryRun".into(), Value::Array(dry_run));
    }
    Ok(Value::Object(options))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(number: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![((number << 3) | 2) as u8, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let type_meta = [field(1, api_version.as_bytes()), field(2, kind.as_bytes())].concat();
        [b"k8s\0".to_vec(), field(1, &type_meta), field(2, raw)].concat()
    }

    #[test]
    fn protobuf_evictions_and_bindings_decode_to_their_json() {
        let meta = [field(1, b"web-1"), field(3, b"default")].concat();
        let options = [vec![0x08, 0x05], field(5, b"All")].concat();
        let eviction = envelope("policy/v1", "Eviction", &[field(1, &meta), field(2, &options)].concat());
        let obj = decode_eviction(&eviction).unwrap();
        assert_eq!(obj["metadata"]["name"], "web-1");
        assert_eq!(obj["deleteOptions"], json!({"gracePeriodSeconds": 5, "dryRun": ["All"]}));

        let annotation = [field(1, b"a"), field(2, b"b")].concat();
        let meta = [field(1, b"web-1"), field(12, &annotation)].concat();
        let target = [field(1, b"Node"), field(3, b"node-1")].concat();
        let binding = envelope("v1", "Binding", &[field(1, &meta), field(2, &target)].concat());
        let obj = decode_binding(&binding).unwrap();
        assert_eq!(obj["target"], json!({"kind": "Node", "name": "node-1"}));
        assert_eq!(obj["metadata"]["annotations"], json!({"a": "b"}));
        let parsed = Binding::parse("default", "web-1", &obj).unwrap();
        assert_eq!(parsed.node, "node-1");

        assert!(decode_eviction(b"k8s\0\x12\x05ab").is_err(), "a truncated field");
        assert!(decode_binding(b"{}").is_err(), "no prefix");
    }
}

//! The Kubernetes REST verbs on objects: `GET` (get or list), `POST` (create), `PUT`
//! (update) and `DELETE` under `/api/v1/...` and `/apis/{group}/{version}/...`, answered by
//! the kind actors. Every failure is a `Status` body. A `GET` of a collection with
//! `watch=true` streams watch events, one JSON object per line. A `DELETE` takes
//! `DeleteOptions` (body or query) and answers as kube-apiserver does: the object while it is
//! being deleted (finalizers, a pod's grace period), else the deleted object or a `Success`
//! `Status` depending on the kind; a `DELETE` of a collection (deletecollection) answers with
//! the list of what it deleted.
//!
//! Custom objects are stored in their CRD's storage version and converted on the way in and
//! out: in line for conversion `None` ([`to_storage`], [`stamp`]); through [`crate::conversion`]
//! (the CRD's webhook, asynchronously) for conversion `Webhook`: writes, gets, list pages (one
//! review per page), watch events and write replies. Patches of such kinds apply to the stored
//! version (the kind actor patches what it stores; the reply is converted): a patch naming
//! fields only the request version has is pruned or refused by the storage version's schema.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use actors::custom_kinds::{Conversion, CustomKind};
use actors::deletion::{self, DeleteOptions};
use actors::kinds::{self, ResourceKind};
use actors::{
    ApiError, ApiResult, AsUser, Create, Delete, DeleteCollection, DryRun, Get, KindActors, List, ListPage, Part,
    Patch, PatchKind, Selectors, Update, Watch, WatchEvent, WatchStart,
};
use futures::{stream, Stream, StreamExt};
use serde_json::{json, Value};

use crate::conversion;

/// Largest request body accepted (kube-apiserver's limit is 3 MiB too).
pub const MAX_BODY: usize = 3 * 1024 * 1024;
/// How long a watch runs when the client gives no `timeoutSeconds`.
const WATCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// Registers the object routes; register discovery first, it owns the shorter paths.
pub fn configure(cfg: &mut web::ServiceConfig, actors: KindActors) {
    cfg.app_data(web::Data::new(actors))
        .route("/api/{tail:.*}", web::route().to(handle))
        .route("/apis/{tail:.*}", web::route().to(handle));
}

/// What a request path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    /// `status`, `scale`, ... after the object's name.
    pub subresource: Option<String>,
}

/// Parses `/api/v1/[namespaces/{ns}/]{resource}[/{name}]` and the same under
/// `/apis/{group}/{version}`; `None` for anything else. `/api/v1/namespaces/{name}` is the
/// namespace object itself.
pub fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return None;
    }
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, resource, name, subresource) = match rest {
        [resource] => (None, *resource, None, None),
        // A namespace's own subresources, not a resource in the namespace.
        ["namespaces", name, sub @ ("status" | "finalize")] => (None, "namespaces", Some(*name), Some(*sub)),
        ["namespaces", ns, resource] => (Some(*ns), *resource, None, None),
        ["namespaces", ns, resource, name] => (Some(*ns), *resource, Some(*name), None),
        ["namespaces", ns, resource, name, sub] => (Some(*ns), *resource, Some(*name), Some(*sub)),
        [resource, name] => (None, *resource, Some(*name), None),
        [resource, name, sub] => (None, *resource, Some(*name), Some(*sub)),
        _ => return None,
    };
    Some(Target {
        group: group.into(),
        version: version.into(),
        namespace: namespace.map(Into::into),
        resource: resource.into(),
        name: name.map(Into::into),
        subresource: subresource.map(Into::into),
    })
}

#[derive(Debug, Default, serde::Deserialize)]
struct ListParams {
    limit: Option<usize>,
    #[serde(rename = "continue")]
    continue_token: Option<String>,
    watch: Option<String>,
    #[serde(rename = "resourceVersion")]
    resource_version: Option<String>,
    #[serde(rename = "allowWatchBookmarks")]
    allow_watch_bookmarks: Option<String>,
    #[serde(rename = "timeoutSeconds")]
    timeout_seconds: Option<u64>,
    #[serde(rename = "fieldSelector")]
    field_selector: Option<String>,
    #[serde(rename = "labelSelector")]
    label_selector: Option<String>,
}

impl ListParams {
    /// The `labelSelector` and `fieldSelector` parsed for `kind` (400 BadRequest with kube's
    /// message if either is malformed or names a field the kind cannot select on).
    fn selectors(&self, kind: &ResourceKind) -> ApiResult<Selectors> {
        let (labels, fields) = (self.label_selector.as_deref(), self.field_selector.as_deref());
        Ok(Selectors::parse(kind, labels.unwrap_or(""), fields.unwrap_or(""))?)
    }
}

fn is_true(flag: &Option<String>) -> bool {
    flag.as_deref().is_some_and(|w| w == "true" || w == "1")
}

/// What [`serve`] answers: one JSON body, or a watch stream.
enum Reply {
    Json(StatusCode, Value),
    /// A write's object, with the warnings for the client (`Warning` headers).
    Written(StatusCode, Value, Vec<String>),
    /// A list page, rendered as JSON without parsing its objects unless a Table is wanted.
    List(&'static ResourceKind, ListPage),
    Watch(HttpResponse),
}

async fn handle(req: HttpRequest, body: web::Payload, actors: web::Data<KindActors>) -> HttpResponse {
    let started = std::time::Instant::now();
    let (verb, resource) = request_labels(&req);
    let in_flight = metrics::gauge!("flotilla_kind_requests_in_flight", "resource" => resource.clone());
    in_flight.increment(1.0);
    let response = crate::limits::within_deadline(&req, respond(&req, body, &actors)).await;
    in_flight.decrement(1.0);
    let code = response.status().as_u16().to_string();
    metrics::counter!("apiserver_request_total", "verb" => verb, "resource" => resource.clone(), "code" => code)
        .increment(1);
    metrics::histogram!("apiserver_request_duration_seconds", "verb" => verb, "resource" => resource)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The verb and resource a request is counted under, as kube-apiserver names them
/// (`list`, `watch`, `deletecollection`; `deployments.apps`, `deployments.apps/scale`).
fn request_labels(req: &HttpRequest) -> (&'static str, String) {
    let Some(target) = parse_path(req.path()) else { return ("unknown", "unknown".into()) };
    let watch = req.query_string().split('&').any(|p| p == "watch=true" || p == "watch=1");
    let verb = match (req.method().as_str(), target.name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) if watch => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    };
    let mut resource = match target.group.as_str() {
        "" => target.resource,
        group => format!("{}.{group}", target.resource),
    };
    if let Some(sub) = target.subresource {
        resource = format!("{resource}/{sub}");
    }
    (verb, resource)
}

async fn respond(req: &HttpRequest, body: web::Payload, actors: &KindActors) -> HttpResponse {
    let req = req.clone();
    match serve(&req, body, actors).await {
        // A GET's reply is a Table when the client asks for one (kubectl get does).
        Ok(Reply::Json(code, body)) => match crate::tables::render_get(&req, body) {
            Ok(body) => HttpResponse::build(code).content_type("application/json").body(body.to_string()),
            Err(e) => error_response(&e),
        },
        Ok(Reply::Written(code, body, warnings)) => match crate::tables::render_get(&req, body) {
            Ok(body) => {
                let mut response = HttpResponse::build(code);
                for warning in dedup(warnings) {
                    response.append_header(("Warning", warning_header(&warning)));
                }
                response.content_type("application/json").body(body.to_string())
            }
            Err(e) => error_response(&e),
        },
        Ok(Reply::List(kind, page)) => match list_response(&req, kind, page) {
            Ok(response) => response,
            Err(e) => error_response(&e),
        },
        Ok(Reply::Watch(response)) => crate::tables::render_watch(&req, response),
        Err(e) => error_response(&e),
    }
}

/// Whether the request asks for a server-side dry run (`dryRun=All`); kube's 400 for any
/// other value.
fn dry_run(req: &HttpRequest) -> ApiResult<bool> {
    let values: Vec<&str> = req.query_string().split('&').filter_map(|pair| pair.strip_prefix("dryRun=")).collect();
    match values.as_slice() {
        [] => Ok(false),
        ["All"] => Ok(true),
        other => Err(ApiError::BadRequest(format!(
            "Invalid dryRun: Unsupported value: {:?}: supported values: \"All\"",
            other.join(",")
        ))),
    }
}

/// Who makes the request, as authentication found it, for admission.
pub(crate) fn user_of(req: &HttpRequest) -> actors::UserInfo {
    use actix_web::HttpMessage;
    match req.extensions().get::<crate::authn::UserInfo>() {
        Some(user) => actors::UserInfo {
            username: user.name.clone(),
            uid: user.uid.clone(),
            groups: user.groups.clone(),
            extra: Default::default(),
        },
        None => actors::UserInfo::default(),
    }
}

/// The `Status` response of an error.
pub fn error_response(e: &ApiError) -> HttpResponse {
    let code = StatusCode::from_u16(e.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(code).content_type("application/json").body(e.status().to_string())
}

fn not_found(path: &str) -> ApiError {
    ApiError::NotFoundPath(path.into())
}

async fn serve(req: &HttpRequest, body: web::Payload, actors: &KindActors) -> ApiResult<Reply> {
    let target = parse_path(req.path()).ok_or_else(|| not_found(req.path()))?;
    let kind = kinds::find(&target.group, &target.version, &target.resource).ok_or_else(|| not_found(req.path()))?;
    if target.namespace.is_some() && !kind.namespaced {
        return Err(not_found(req.path()));
    }
    // pods/binding and pods/eviction: their own handlers.
    if crate::binding::handles(kind, target.subresource.as_deref()) {
        let (ns, name, sub) = (target.namespace.as_deref(), target.name.as_deref(), target.subresource.as_deref());
        if let (Some(ns), Some(name), Some(sub)) = (ns, name, sub) {
            let (code, body) = crate::binding::serve(req, body, actors, (ns, name, sub)).await?;
            return Ok(Reply::Json(code, body));
        }
    }
    // serviceaccounts/token: a TokenRequest.
    if crate::service_accounts::token_request::handles(kind, target.subresource.as_deref()) {
        if let (Some(ns), Some(name)) = (target.namespace.as_deref(), target.name.as_deref()) {
            let (code, body) = crate::service_accounts::token_request::serve(req, body, (ns, name)).await?;
            return Ok(Reply::Json(code, body));
        }
    }
    let served = |sub: &str| kind.subresources.iter().any(|s| s.name == sub);
    let part = match target.subresource.as_deref() {
        Some(sub) if !served(sub) => return Err(not_found(req.path())),
        sub => Part::of_subresource(sub).ok_or_else(|| not_found(req.path()))?,
    };
    let actor =
        &actors.get(kind).ok_or_else(|| ApiError::ServiceUnavailable(format!("no actor for {}", kind.resource)))?;
    let ns = target.namespace.clone();
    let method = req.method().as_str();
    // A custom kind's objects are stored in its storage version; `kind` is the one asked for.
    let custom = actors::custom_kinds::of(kind);
    let store_kind = custom.as_ref().map(|c| c.storage_kind()).unwrap_or(kind);
    // A kind whose versions a webhook converts: its objects go through `conversion` (async).
    let webhook = custom.clone().filter(|c| matches!(c.conversion, Conversion::Webhook { .. }));
    if method == "POST" && custom.as_ref().is_some_and(|c| c.terminating) {
        return Err(ApiError::MethodNotSupported(
            "create not allowed while custom resource definition is terminating".into(),
        ));
    }
    let unsupported = || {
        ApiError::MethodNotSupported(format!(
            "the server does not allow this method on the requested resource ({method} {})",
            req.path()
        ))
    };
    let mailbox = |e: actix::MailboxError| ApiError::ServiceUnavailable(format!("{} actor: {e}", kind.resource));
    // A namespaced object needs its namespace; only lists may span all of them.
    if kind.namespaced && ns.is_none() && !(method == "GET" && target.name.is_none()) {
        return Err(unsupported());
    }
    // What the write warns the client of (unknown fields, under fieldValidation=Warn).
    let mut warnings = Vec::new();
    let result = match (method, target.name) {
        ("GET", Some(name)) => {
            actor.send(Get { namespace: ns, name }).await.map_err(mailbox)?.map(|o| part.view(store_kind, o))
        }
        (_, None) if part != Part::Main => return Err(unsupported()),
        ("GET", None) => {
            let params = web::Query::<ListParams>::from_query(req.query_string())
                .map_err(|e| ApiError::BadRequest(e.to_string()))?
                .into_inner();
            let selectors = params.selectors(kind)?;
            if is_true(&params.watch) {
                let resource = request_labels(req).1;
                let converter = webhook.map(|c| (c, actors.clone()));
                return watch((actor, kind, resource), ns, selectors, params, converter).await.map(Reply::Watch);
            }
            let limit = params.limit.unwrap_or(0);
            let list = List { namespace: ns, limit, continue_token: params.continue_token, selectors };
            let page = actor.send(list).await.map_err(mailbox)??;
            if let Some(custom) = &webhook {
                return Ok(Reply::Json(StatusCode::OK, converted_list(kind, custom, &page, actors).await?));
            }
            return Ok(Reply::List(kind, page));
        }
        ("POST", None) => {
            let validation = field_validation(req, "CreateOptions")?;
            let field_manager = Some(field_manager(req)?);
            let bytes = read_json_body(req, body).await?;
            let (obj, mut warnings) = actors::decode::decode_body(kind, false, &bytes, validation)?;
            let obj = match &webhook {
                Some(custom) => to_storage_by_webhook(kind, store_kind, custom, obj, actors).await?,
                None => to_storage(kind, store_kind, obj)?,
            };
            let msg = Create { namespace: ns, obj, field_manager };
            let created = match dry_run(req)? {
                true => actor.send(DryRun(user_of(req), msg)).await,
                false => actor.send(AsUser(user_of(req), msg)).await,
            };
            let created = created.map_err(mailbox)??;
            warnings.extend(created.warnings);
            let created = present(kind, webhook.as_deref(), created.obj, actors).await?;
            return Ok(Reply::Written(StatusCode::CREATED, created, warnings));
        }
        ("PUT", Some(name)) => {
            let validation = field_validation(req, "UpdateOptions")?;
            let field_manager = Some(field_manager(req)?);
            let bytes = read_json_body(req, body).await?;
            let (obj, found) = actors::decode::decode_body(kind, part == Part::Scale, &bytes, validation)?;
            let obj = match &webhook {
                _ if part == Part::Scale => obj,
                Some(custom) => to_storage_by_webhook(kind, store_kind, custom, obj, actors).await?,
                None => to_storage(kind, store_kind, obj)?,
            };
            warnings = found;
            let msg = Update { namespace: ns, name, obj, field_manager, part };
            let updated = match dry_run(req)? {
                true => actor.send(DryRun(user_of(req), msg)).await,
                false => actor.send(AsUser(user_of(req), msg)).await,
            };
            updated.map_err(mailbox)?.map(|written| {
                warnings.extend(written.warnings);
                written.obj
            })
        }
        ("PATCH", Some(name)) => {
            let patch_kind = PatchKind::from_content_type(content_type(req))?;
            if custom.is_some() && patch_kind == PatchKind::Strategic {
                // As kube-apiserver: custom objects have no patch strategies to merge by.
                return Err(ApiError::UnsupportedMediaType(format!(
                    "the body of the request was in an unknown format - accepted media types include: {}",
                    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
                )));
            }
            let params = web::Query::<WriteParams>::from_query(req.query_string())
                .map_err(|e| ApiError::BadRequest(e.to_string()))?
                .into_inner();
            let body = read_body(body).await?.to_vec();
            // Apply needs a named manager; other writes fall back to the user agent's.
            let field_manager = match patch_kind {
                PatchKind::Apply => params.field_manager.filter(|m| !m.is_empty()),
                _ => Some(field_manager(req)?),
            };
            let force = is_true(&params.force);
            let field_validation = field_validation(req, "PatchOptions")?;
            let msg = Patch { namespace: ns, name, patch_kind, body, field_manager, force, part, field_validation };
            let patched = match dry_run(req)? {
                true => actor.send(DryRun(user_of(req), msg)).await,
                false => actor.send(AsUser(user_of(req), msg)).await,
            };
            patched.map_err(mailbox)?.map(|written| {
                warnings = written.warnings;
                written.obj
            })
        }
        ("DELETE", Some(_)) if part != Part::Main => return Err(unsupported()),
        ("DELETE", Some(name)) => {
            let options = delete_options(req, body).await?;
            // kube-apiserver's 202: not deleted yet, and the client asked to cascade.
            let accepted = options.orphan_dependents == Some(false);
            let msg = AsUser(user_of(req), Delete { namespace: ns, name, options });
            let deleted = actor.send(msg).await.map_err(mailbox)??;
            let code = if accepted && !deleted.gone { StatusCode::ACCEPTED } else { StatusCode::OK };
            let body = if deleted.gone && !deletion::returns_deleted_object(kind) {
                deletion::success_status(kind, &deleted.object)
            } else {
                present(kind, webhook.as_deref(), deleted.object, actors).await?
            };
            return Ok(Reply::Json(code, body));
        }
        ("DELETE", None) if !kind.verbs.contains(&"deletecollection") => return Err(unsupported()),
        ("DELETE", None) => {
            let params = web::Query::<ListParams>::from_query(req.query_string())
                .map_err(|e| ApiError::BadRequest(e.to_string()))?
                .into_inner();
            let selectors = params.selectors(kind)?;
            let options = delete_options(req, body).await?;
            let limit = params.limit.unwrap_or(0);
            let msg = DeleteCollection { namespace: ns, selectors, limit, options };
            let page = actor.send(msg).await.map_err(mailbox)??;
            if let Some(custom) = &webhook {
                return Ok(Reply::Json(StatusCode::OK, converted_list(kind, custom, &page, actors).await?));
            }
            return Ok(Reply::List(kind, page));
        }
        _ => return Err(unsupported()),
    };
    // A Scale carries its own kind and apiVersion.
    let result = result?;
    let body = if part == Part::Scale { result } else { present(kind, webhook.as_deref(), result, actors).await? };
    Ok(Reply::Written(StatusCode::OK, body, warnings))
}

/// Starts a watch and streams it: the first events, then the changes, one JSON object per
/// line, until the actor drops the watcher or `timeoutSeconds` (default 30 min) pass.
async fn watch(
    (actor, kind, resource): (&actix::Addr<actors::KindActor>, &'static ResourceKind, String),
    namespace: Option<String>,
    selectors: Selectors,
    params: ListParams,
    webhook: Option<(Arc<CustomKind>, KindActors)>,
) -> ApiResult<HttpResponse> {
    let resource_version = match params.resource_version.as_deref().filter(|rv| !rv.is_empty()) {
        None => None,
        Some(rv) => Some(rv.parse().map_err(|_| ApiError::BadRequest(format!("invalid resourceVersion {rv:?}")))?),
    };
    let bookmarks = is_true(&params.allow_watch_bookmarks);
    let timeout = params.timeout_seconds.map(std::time::Duration::from_secs).unwrap_or(WATCH_TIMEOUT);
    let msg = Watch { namespace, selectors, resource_version, bookmarks };
    let start = actor.send(msg).await.map_err(|e| ApiError::ServiceUnavailable(format!("watch: {e}")))??;
    let events = match webhook {
        None => {
            let custom = actors::custom_kinds::of(kind).is_some();
            stream::iter(start.initial).chain(start.rest).map(move |e| stamp_event(kind, custom, e)).left_stream()
        }
        Some((custom, actors)) => converted_events(kind, custom, actors, start).await?.right_stream(),
    };
    let open = OpenWatch::new(resource);
    let lines = events.map(move |e: WatchEvent| {
        let _counted = &open;
        Ok::<_, actix_web::Error>(watch_line(&e))
    });
    let body = lines.take_until(actix_web::rt::time::sleep(timeout));
    Ok(HttpResponse::Ok().content_type("application/json").streaming(body))
}

/// A watch event of `kind` as the client sees it: a custom object's version and defaults.
fn stamp_event(kind: &ResourceKind, custom: bool, mut e: WatchEvent) -> WatchEvent {
    if custom && e.event_type != "ERROR" {
        e.object = if e.event_type == "BOOKMARK" {
            let mut bookmark = e.object;
            bookmark["apiVersion"] = json!(kind.group_version());
            bookmark
        } else {
            stamp(kind, e.object)
        };
    }
    e
}

/// The events of a watch on a kind a webhook converts: the first events converted in one
/// review (a failure fails the watch request), then each change on its own; a change that
/// cannot be converted ends the watch with an `ERROR` event carrying the 500 `Status`.
async fn converted_events(
    kind: &'static ResourceKind,
    custom: Arc<CustomKind>,
    actors: KindActors,
    start: WatchStart,
) -> ApiResult<impl Stream<Item = WatchEvent>> {
    let mut initial = start.initial;
    let carries_object = |e: &WatchEvent| !matches!(e.event_type, "ERROR" | "BOOKMARK");
    let objects: Vec<Value> = initial.iter_mut().filter(|e| carries_object(e)).map(|e| e.object.take()).collect();
    let mut converted = conversion::convert(&custom, objects, &kind.group_version(), false, &actors).await?.into_iter();
    for event in initial.iter_mut().filter(|e| carries_object(e)) {
        event.object = converted.next().unwrap_or_default();
    }
    let initial: Vec<WatchEvent> = initial.into_iter().map(|e| stamp_event(kind, true, e)).collect();
    let rest = start
        .rest
        .then(move |e| {
            let (custom, actors) = (custom.clone(), actors.clone());
            async move {
                if !carries_object(&e) {
                    return Ok(stamp_event(kind, true, e));
                }
                let event_type = e.event_type;
                match conversion::convert(&custom, vec![e.object], &kind.group_version(), false, &actors).await {
                    Ok(objects) => {
                        let object = objects.into_iter().next().unwrap_or_default();
                        Ok(stamp_event(kind, true, WatchEvent { event_type, object }))
                    }
                    Err(e) => Err(WatchEvent { event_type: "ERROR", object: e.status() }),
                }
            }
        })
        // The ERROR event of a failed conversion is the last.
        .scan(false, |ended, event: Result<WatchEvent, WatchEvent>| {
            let next = match event {
                _ if *ended => None,
                Ok(event) => Some(event),
                Err(error) => {
                    *ended = true;
                    Some(error)
                }
            };
            futures::future::ready(next)
        });
    Ok(stream::iter(initial).chain(rest))
}

/// Counts an open watch in `apiserver_longrunning_requests{verb="watch"}` while it lives
/// (it goes with the response stream).
struct OpenWatch(metrics::Gauge);

impl OpenWatch {
    fn new(resource: String) -> OpenWatch {
        let gauge = metrics::gauge!("apiserver_longrunning_requests", "verb" => "watch", "resource" => resource);
        gauge.increment(1.0);
        OpenWatch(gauge)
    }
}

impl Drop for OpenWatch {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// One event as a line of a watch response.
fn watch_line(event: &WatchEvent) -> Bytes {
    let mut line = event.to_json().to_string().into_bytes();
    line.push(b'\n');
    Bytes::from(line)
}

/// The parameters of writes.
#[derive(Debug, Default, serde::Deserialize)]
struct WriteParams {
    #[serde(rename = "fieldManager")]
    field_manager: Option<String>,
    force: Option<String>,
    #[serde(rename = "fieldValidation")]
    field_validation: Option<String>,
}

/// The manager of a write: the `fieldManager` parameter, else the user agent's product name
/// (`kubectl`); at most 128 characters (400 beyond, as kube-apiserver).
fn field_manager(req: &HttpRequest) -> ApiResult<String> {
    let params = web::Query::<WriteParams>::from_query(req.query_string())
        .map_err(|e| ApiError::BadRequest(e.to_string()))?
        .into_inner();
    match params.field_manager.filter(|m| !m.is_empty()) {
        Some(m) if m.chars().count() > 128 => {
            Err(ApiError::BadRequest(format!("fieldManager should be at most 128 characters, got {}", m.len())))
        }
        Some(m) => Ok(m),
        None => {
            let agent = req.headers().get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or("");
            Ok(actors::apply::manager_from_user_agent(agent))
        }
    }
}

fn content_type(req: &HttpRequest) -> &str {
    req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// Reads a JSON body of at most [`MAX_BODY`] bytes (413 beyond); decoding it is
/// [`actors::decode::decode_body`]'s. A protobuf body (kubectl's imperative commands, client-go's
/// typed clients) is decoded by [`crate::protobuf`] into the JSON a JSON client would have sent;
/// other protobuf media types are 415.
async fn read_json_body(req: &HttpRequest, body: web::Payload) -> ApiResult<web::BytesMut> {
    let content_type = content_type(req);
    if crate::protobuf::is_protobuf(content_type) {
        let obj = crate::protobuf::decode(&read_body(body).await?)?;
        let json = serde_json::to_vec(&obj).map_err(|e| ApiError::InternalError(format!("encoding the body: {e}")))?;
        return Ok(web::BytesMut::from(&json[..]));
    }
    if content_type.contains("protobuf") {
        return Err(ApiError::UnsupportedMediaType(format!("the body type {content_type:?} is not served; send JSON")));
    }
    read_body(body).await
}

/// The `fieldValidation` parameter of a write whose options are `options_kind` (422 for a
/// value kube-apiserver does not know).
fn field_validation(req: &HttpRequest, options_kind: &'static str) -> ApiResult<actors::FieldValidation> {
    let params = web::Query::<WriteParams>::from_query(req.query_string())
        .map_err(|e| ApiError::BadRequest(e.to_string()))?
        .into_inner();
    actors::FieldValidation::parse(params.field_validation.as_deref(), options_kind)
}

/// A `Warning` header's value, as kube-apiserver writes it: `299 - "text"`, with `"` and `\`
/// escaped.
fn warning_header(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    format!("299 - \"{quoted}\"")
}

/// The warnings in order, each once.
fn dedup(warnings: Vec<String>) -> Vec<String> {
    let mut seen = Vec::new();
    for warning in warnings {
        if !seen.contains(&warning) {
            seen.push(warning);
        }
    }
    seen
}

/// The `DeleteOptions` of a DELETE: its body's (JSON from kubectl, protobuf from client-go's
/// typed clients; 400 if it is not one), with its query parameters' where the body says
/// nothing; 422 for values kube-apiserver refuses.
async fn delete_options(req: &HttpRequest, body: web::Payload) -> ApiResult<DeleteOptions> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map_err(|e| ApiError::BadRequest(e.to_string()))?
        .into_inner();
    let query = DeleteOptions::from_query(&pairs)?;
    let bytes = read_body(body).await?;
    let options = if bytes.iter().all(u8::is_ascii_whitespace) {
        query
    } else if content_type(req).contains("protobuf") {
        DeleteOptions::from_protobuf(&bytes)?.or(query)
    } else {
        DeleteOptions::from_body(&bytes)?.or(query)
    };
    options.validate()?;
    Ok(options)
}

/// Reads a body of at most [`MAX_BODY`] bytes (413 beyond).
async fn read_body(mut body: web::Payload) -> ApiResult<web::BytesMut> {
    let mut bytes = web::BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("reading the body: {e}")))?;
        if bytes.len() + chunk.len() > MAX_BODY {
            return Err(ApiError::RequestEntityTooLarge(format!("the request body is larger than {MAX_BODY} bytes")));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Sets `kind` and `apiVersion` on an object.
fn stamp(kind: &ResourceKind, mut obj: Value) -> Value {
    // A custom object is read in the version asked for, with that version's defaults (kube
    // defaults custom objects on read too). Versions share their fields: conversion `None`.
    if let Some(schema) = actors::custom_kinds::schema(kind) {
        actors::crd_schema::apply_defaults(&mut obj, &schema);
    }
    if let Some(map) = obj.as_object_mut() {
        map.insert("apiVersion".into(), json!(kind.group_version()));
        map.insert("kind".into(), json!(kind.kind));
    }
    obj
}

/// A custom object written through `kind` (one served version), in its storage version
/// `store_kind`: conversion `None` changes `apiVersion` only. A body naming another
/// version or Kind than the URL is a 400, as for built-in kinds.
fn to_storage(kind: &ResourceKind, store_kind: &ResourceKind, mut obj: Value) -> ApiResult<Value> {
    if std::ptr::eq(kind, store_kind) {
        return Ok(obj);
    }
    check_api_version(kind, &obj)?;
    if let Some(map) = obj.as_object_mut() {
        map.insert("apiVersion".into(), json!(store_kind.group_version()));
    }
    Ok(obj)
}

/// 400 if the body names another version than the URL's `kind`.
fn check_api_version(kind: &ResourceKind, obj: &Value) -> ApiResult<()> {
    let want = kind.group_version();
    match obj.get("apiVersion") {
        Some(Value::String(got)) if *got != want => Err(ApiError::BadRequest(format!(
            "the apiVersion of the object ({got}) does not match the expected apiVersion ({want})"
        ))),
        _ => Ok(()),
    }
}

/// [`to_storage`] for a kind whose CRD converts by webhook: the object goes to the webhook
/// (one `ConversionReview`) unless `kind` is the storage version.
async fn to_storage_by_webhook(
    kind: &ResourceKind,
    store_kind: &ResourceKind,
    custom: &CustomKind,
    mut obj: Value,
    actors: &KindActors,
) -> ApiResult<Value> {
    if std::ptr::eq(kind, store_kind) {
        return Ok(obj);
    }
    check_api_version(kind, &obj)?;
    if let Some(map) = obj.as_object_mut() {
        map.insert("apiVersion".into(), json!(kind.group_version()));
        map.entry("kind").or_insert_with(|| json!(kind.kind));
    }
    let converted = conversion::convert(custom, vec![obj], &store_kind.group_version(), false, actors).await?;
    one(converted)
}

/// The one object a conversion of one object gives.
fn one(objects: Vec<Value>) -> ApiResult<Value> {
    objects.into_iter().next().ok_or_else(|| ApiError::InternalError("conversion returned no object".into()))
}

/// A stored object as `kind` presents it: converted by the webhook of a kind that has one
/// (`webhook`), then [`stamp`]ed.
async fn present(
    kind: &ResourceKind,
    webhook: Option<&CustomKind>,
    obj: Value,
    actors: &KindActors,
) -> ApiResult<Value> {
    let Some(custom) = webhook else { return Ok(stamp(kind, obj)) };
    let converted = conversion::convert(custom, vec![obj], &kind.group_version(), false, actors).await?;
    Ok(stamp(kind, one(converted)?))
}

/// The response to a list: a Table when the client asks for one, else the `XList` JSON,
/// written straight from the stored objects.
fn list_response(req: &HttpRequest, kind: &ResourceKind, page: ListPage) -> ApiResult<HttpResponse> {
    if crate::tables::TableOptions::of_request(req)?.is_some() {
        let table = crate::tables::render_get(req, list_body(kind, &page)?)?;
        return Ok(HttpResponse::Ok().content_type("application/json").body(table.to_string()));
    }
    if actors::custom_kinds::of(kind).is_some() {
        // Custom objects are converted and defaulted one by one.
        return Ok(HttpResponse::Ok().content_type("application/json").body(list_body(kind, &page)?.to_string()));
    }
    let mut metadata = json!({"resourceVersion": page.resource_version.to_string()});
    if let Some(token) = &page.continue_token {
        metadata["continue"] = json!(token);
    }
    let head = json!({"kind": format!("{}List", kind.kind), "apiVersion": kind.group_version(), "metadata": metadata});
    let mut out = head.to_string().into_bytes();
    // Replace the closing brace with the items.
    out.pop();
    out.extend_from_slice(b",\"items\":[");
    page.write_items(&mut out)?;
    out.extend_from_slice(b"]}");
    Ok(HttpResponse::Ok().content_type("application/json").body(out))
}

/// `{"kind": "ConfigMapList", ...}` for a page of objects.
fn list_body(kind: &ResourceKind, page: &ListPage) -> ApiResult<Value> {
    let items: Vec<Value> = page.items()?.into_iter().map(|o| stamp(kind, o)).collect();
    Ok(list_of(kind, page, items))
}

/// [`list_body`] for a kind whose CRD converts by webhook: the page's objects go to the
/// webhook in one `ConversionReview`.
async fn converted_list(
    kind: &ResourceKind,
    custom: &CustomKind,
    page: &ListPage,
    actors: &KindActors,
) -> ApiResult<Value> {
    let items = conversion::convert(custom, page.items()?, &kind.group_version(), true, actors).await?;
    Ok(list_of(kind, page, items.into_iter().map(|o| stamp(kind, o)).collect()))
}

/// The `XList` object of a page with these items.
fn list_of(kind: &ResourceKind, page: &ListPage, items: Vec<Value>) -> Value {
    let mut metadata = json!({"resourceVersion": page.resource_version.to_string()});
    if let Some(token) = &page.continue_token {
        metadata["continue"] = json!(token);
    }
    json!({"kind": format!("{}List", kind.kind), "apiVersion": kind.group_version(), "metadata": metadata, "items": items})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(group: &str, ns: Option<&str>, resource: &str, name: Option<&str>) -> Option<Target> {
        Some(Target {
            group: group.into(),
            version: "v1".into(),
            namespace: ns.map(Into::into),
            resource: resource.into(),
            name: name.map(Into::into),
            subresource: None,
        })
    }

    #[test]
    fn paths_name_collections_and_objects_in_and_out_of_namespaces() {
        assert_eq!(parse_path("/api/v1/configmaps"), target("", None, "configmaps", None));
        assert_eq!(parse_path("/api/v1/namespaces"), target("", None, "namespaces", None));
        assert_eq!(parse_path("/api/v1/namespaces/team-a"), target("", None, "namespaces", Some("team-a")));
        assert_eq!(
            parse_path("/api/v1/namespaces/default/configmaps"),
            target("", Some("default"), "configmaps", None)
        );
        assert_eq!(
            parse_path("/api/v1/namespaces/default/configmaps/x"),
            target("", Some("default"), "configmaps", Some("x"))
        );
        assert_eq!(parse_path("/apis/apps/v1/deployments"), target("apps", None, "deployments", None));
        assert_eq!(
            parse_path("/apis/apps/v1/namespaces/default/deployments/web"),
            target("apps", Some("default"), "deployments", Some("web"))
        );
        assert_eq!(parse_path("/api/v1/nodes/n1"), target("", None, "nodes", Some("n1")));
        let sub = |t: Option<Target>, s: &str| t.map(|t| Target { subresource: Some(s.into()), ..t });
        assert_eq!(
            parse_path("/apis/apps/v1/namespaces/default/deployments/web/scale"),
            sub(target("apps", Some("default"), "deployments", Some("web")), "scale")
        );
        assert_eq!(parse_path("/api/v1/nodes/n1/status"), sub(target("", None, "nodes", Some("n1")), "status"));
        assert_eq!(
            parse_path("/api/v1/namespaces/team-a/status"),
            sub(target("", None, "namespaces", Some("team-a")), "status")
        );
    }

    #[test]
    fn other_paths_are_not_objects() {
        for path in [
            "/api",
            "/api/v1",
            "/apis/apps",
            "/api/v1/namespaces/default/configmaps/x/status/more",
            "/api/v1//x",
            "/healthz",
        ] {
            assert_eq!(parse_path(path), None, "{path}");
        }
    }

    #[test]
    fn lists_are_kind_list_objects_with_stamped_items() {
        let cm = kinds::find("", "v1", "configmaps").unwrap();
        let stored = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}});
        let kv = raft_store::KeyValue {
            key: b"/registry/core/configmaps/default/a".to_vec(),
            value: serde_json::to_vec(&stored).unwrap(),
            create_revision: 5,
            mod_revision: 6,
            version: 2,
        };
        let page =
            ListPage { objects: vec![std::sync::Arc::new(kv)], resource_version: 7, continue_token: Some("t".into()) };
        let body = list_body(cm, &page).unwrap();
        assert_eq!(body["kind"], "ConfigMapList");
        assert_eq!(body["metadata"], json!({"resourceVersion": "7", "continue": "t"}));
        assert_eq!(
            (body["items"][0]["kind"].as_str(), body["items"][0]["apiVersion"].as_str()),
            (Some("ConfigMap"), Some("v1"))
        );
        assert_eq!(body["items"][0]["metadata"]["resourceVersion"], "6");
        // The JSON written without parsing the objects is the same list.
        let req = actix_web::test::TestRequest::get().uri("/api/v1/configmaps").to_http_request();
        let response = list_response(&req, cm, page).unwrap();
        let bytes = actix_web::rt::System::new()
            .block_on(actix_web::body::to_bytes(response.into_body()))
            .unwrap_or_else(|_| panic!("body"));
        assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), body);
    }

    #[test]
    fn list_parameters_parse_selectors_for_the_kind() {
        let cm = kinds::find("", "v1", "configmaps").unwrap();
        let query = "labelSelector=app%3Dweb&fieldSelector=metadata.name%3Dx";
        let params = web::Query::<ListParams>::from_query(query).unwrap().into_inner();
        let selectors = params.selectors(cm).unwrap();
        assert_eq!((selectors.labels.requirements.len(), selectors.fields.terms.len()), (1, 1));
        assert!(ListParams::default().selectors(cm).unwrap().is_everything());
        let bad = ListParams { field_selector: Some("status.phase=x".into()), ..Default::default() };
        let e = bad.selectors(cm).unwrap_err();
        assert_eq!(e.code(), 400);
        assert_eq!(
            e.to_string(),
            r#""status.phase" is not a known field selector: only "metadata.name", "metadata.namespace""#
        );
    }

    #[test]
    fn warnings_are_quoted_as_kube_apiserver_writes_them() {
        assert_eq!(warning_header(r#"unknown field "spec.foo""#), r#"299 - "unknown field \"spec.foo\"""#);
        assert_eq!(warning_header(r"a\b"), r#"299 - "a\\b""#);
        assert_eq!(dedup(vec!["a".into(), "b".into(), "a".into()]), ["a", "b"]);
    }

    #[test]
    fn errors_become_status_responses_with_their_code() {
        let response = error_response(&ApiError::BadRequest("nope".into()));
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let response = error_response(&not_found("/api/v1/nothing"));
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
}

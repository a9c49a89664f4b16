//! The OpenAPI documents of the built-in and custom kinds, as kube-apiserver serves them:
//!
//! - `GET /openapi/v3`: the index, `{"paths": {"apis/apps/v1": {"serverRelativeURL":
//!   "/openapi/v3/apis/apps/v1?hash=HASH"}, ...}}`, one entry per served group/version;
//! - `GET /openapi/v3/api/v1`, `/openapi/v3/apis/{group}/{version}`: an OpenAPI 3.0 document
//!   of that group/version's REST paths and of every schema they reach;
//! - `GET /openapi/v2`: one Swagger 2.0 document of all paths and schemas.
//!
//! kubectl reads the v3 documents for `explain`, for the strategic merge patches of
//! client-side `apply`, and before create, replace and apply to learn whether the server
//! checks fields itself: when a kind's PATCH operations list the `fieldValidation` query
//! parameter, kubectl sends `?fieldValidation=Strict` instead of validating on its side.
//!
//! The v3 documents are JSON only (client-go asks for JSON). The v2 document is also served in
//! gnostic's protobuf encoding ([`proto`]), which kubectl asks for: it validates on its side
//! the objects whose kind's v3 document lacks `fieldValidation` (`kind: List` files), and
//! falls back to it in `apply`. An `Accept` that admits neither gets 406 NotAcceptable.
//! The v2 document writes a described reference `{"$ref": .., "description": ..}`, as
//! kube-apiserver does there (kubectl's v2 models do not read `allOf`).
//!
//! The documents are built on first request from `actors::kinds` and `actors::schemas`, and
//! built again whenever the custom kinds change (`actors::custom_kinds::generation`); the
//! built-in groups' v3 documents are built once. Custom kinds' definitions come from their
//! CRDs' schemas ([`custom`]). Each document has an ETag (SHA-256 of its body) and answers
//! `If-None-Match`; a v3 document asked for by its hashed URL may be cached for good, and a
//! stale hash is redirected to the current one, as kube-apiserver does. A group's hash thus
//! changes exactly when its document does, which is what kubectl's cache keys on.

mod custom;
mod proto;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use actix_web::http::{header, StatusCode};
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use actors::custom_kinds;
use actors::kinds::{self, ResourceKind, Subresource};
use actors::schemas;
use serde_json::{json, Map, Value};

use crate::{status, version};

/// Registers the OpenAPI routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/openapi/v2", web::get().to(v2))
        .route("/openapi/v3", web::get().to(v3_index))
        .route("/openapi/v3/api/{version}", web::get().to(v3_core))
        .route("/openapi/v3/apis/{group}/{version}", web::get().to(v3_group));
}

// ---- the REST operations of a kind, independent of the OpenAPI version ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Location {
    Path,
    Query,
}

/// A path or query parameter.
#[derive(Debug, Clone, Copy)]
struct Param {
    name: &'static str,
    location: Location,
    /// `string`, `integer` or `boolean`.
    ty: &'static str,
    description: &'static str,
}

const fn query(name: &'static str, ty: &'static str, description: &'static str) -> Param {
    Param { name, location: Location::Query, ty, description }
}

const NAME: Param =
    Param { name: "name", location: Location::Path, ty: "string", description: "The name of the object." };
const NAMESPACE: Param =
    Param { name: "namespace", location: Location::Path, ty: "string", description: "The namespace of the object." };
const PRETTY: Param = query("pretty", "string", "If 'true', the output is indented.");
const DRY_RUN: Param = query(
    "dryRun",
    "string",
    "When present, the request is checked and answered but nothing is stored. The only value is All.",
);
const FIELD_MANAGER: Param = query(
    "fieldManager",
    "string",
    "The name of the actor making the change, recorded in managedFields: at most 128 printable characters.",
);
const FIELD_VALIDATION: Param = query(
    "fieldValidation",
    "string",
    "What the server does with unknown or duplicate fields in the object: Ignore drops them silently, Warn \
     drops them with a warning per field, Strict fails the request naming them all.",
);
const FORCE: Param = query(
    "force",
    "boolean",
    "Apply patches only: take over the fields that other managers own instead of failing with a conflict.",
);
const LIST: &[Param] = &[
    query("allowWatchBookmarks", "boolean", "With watch: the server may send BOOKMARK events."),
    query("continue", "string", "The continue token of the previous page, to read the next page of a list."),
    query("fieldSelector", "string", "Only the objects whose fields match, such as metadata.name=demo."),
    query("labelSelector", "string", "Only the objects whose labels match, such as app=web,tier!=db."),
    query("limit", "integer", "The most objects to answer; the list metadata then has a continue token."),
    query("resourceVersion", "string", "The revision the list or watch starts from; see resourceVersionMatch."),
    query("resourceVersionMatch", "string", "How resourceVersion applies to a list: Exact or NotOlderThan."),
    query("sendInitialEvents", "boolean", "With watch: start with ADDED events of the current objects."),
    query("timeoutSeconds", "integer", "Ends a list or watch call after this many seconds."),
    query("watch", "boolean", "Watch for changes instead of listing: a stream of watch events."),
];
const DELETE: &[Param] = &[
    DRY_RUN,
    query("gracePeriodSeconds", "integer", "Seconds before the object is deleted; 0 deletes at once."),
    query("orphanDependents", "boolean", "Deprecated: use propagationPolicy."),
    query("propagationPolicy", "string", "What happens to dependents: Orphan, Background or Foreground."),
];

/// Media types of request bodies.
const ANY: &[&str] = &["*/*"];
const PATCHES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];
/// Media types of responses.
const JSON: &[&str] = &["application/json"];
const JSON_AND_WATCH: &[&str] = &["application/json", "application/json;stream=watch"];

#[derive(Debug)]
struct Body {
    schema: &'static str,
    media: &'static [&'static str],
    required: bool,
}

/// One operation (method) on a path.
#[derive(Debug)]
struct Operation {
    method: &'static str,
    /// `x-kubernetes-action`: get, list, post, put, patch, delete, deletecollection.
    action: &'static str,
    id: String,
    description: String,
    gvk: (&'static str, &'static str, &'static str),
    params: Vec<Param>,
    body: Option<Body>,
    /// Status codes and the schema each answers with.
    responses: Vec<(u16, &'static str)>,
    produces: &'static [&'static str],
}

impl Operation {
    /// The schemas it names (bodies and responses).
    fn schemas(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.body.iter().map(|b| b.schema).chain(self.responses.iter().map(|(_, schema)| *schema))
    }
}

/// One path with its operations; `params` apply to all of them.
#[derive(Debug)]
struct PathItem {
    path: String,
    params: Vec<Param>,
    ops: Vec<Operation>,
}

/// `Apps`, `RbacAuthorization`, `Core`, `BetaKuarCom`: a group as kube-apiserver's operation
/// ids spell it.
fn group_camel(group: &str) -> String {
    if group.is_empty() {
        return "Core".into();
    }
    valid_operation_id(group.trim_end_matches(".k8s.io"))
}

/// kube-openapi's `ToValidOperationID` (capitalized): letters, `_` and digits (not first) kept,
/// each other character dropped and the next letter upper-cased.
fn valid_operation_id(s: &str) -> String {
    let mut out = String::new();
    let mut capitalize = true;
    for (i, c) in s.chars().enumerate() {
        if c.is_alphabetic() || c == '_' || (i != 0 && c.is_ascii_digit()) {
            if capitalize {
                out.extend(c.to_uppercase());
                capitalize = false;
            } else {
                out.push(c);
            }
        } else {
            capitalize = true;
        }
    }
    out
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
}

/// `apps_v1`, `core_v1`, `rbacAuthorization_v1`: the tag of a group/version's operations.
fn tag(group: &str, version: &str) -> String {
    let camel = group_camel(group);
    let mut chars = camel.chars();
    let lower = chars.next().map(|c| c.to_ascii_lowercase().to_string() + chars.as_str()).unwrap_or_default();
    format!("{lower}_{version}")
}

/// `/api/v1` or `/apis/{group}/{version}`.
fn prefix(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    }
}

/// The definition names of a kind's objects and lists: a built-in kind's from
/// `actors::schemas`, a custom kind's as kube names them ([`custom::names_of`]).
fn definition_names(k: &ResourceKind) -> Option<(&'static str, &'static str)> {
    match (schemas::definition_of(k), schemas::list_definition_of(k)) {
        (Some(object), Some(list)) => Some((object, list)),
        _ => custom::names_of(k),
    }
}

/// The paths and operations of one kind, as kube-apiserver lists them (less the deprecated
/// `/watch/` paths): collection, object, subresources, and for namespaced kinds the list
/// across all namespaces. Empty for a kind with no schema.
fn path_items(k: &'static ResourceKind) -> Vec<PathItem> {
    let Some((object, list)) = definition_names(k) else {
        return Vec::new();
    };
    let prefix = prefix(k.group, k.version);
    let scoped = if k.namespaced { format!("{prefix}/namespaces/{{namespace}}") } else { prefix.clone() };
    let collection = format!("{scoped}/{}", k.resource);
    let item = format!("{collection}/{{name}}");
    let gvk = (k.group, k.version, k.kind);
    let gv = format!("{}{}", group_camel(k.group), capitalized(k.version));
    let namespaced = if k.namespaced { "Namespaced" } else { "" };
    let id = |verb: &str, middle: &str, suffix: &str| format!("{verb}{gv}{middle}{namespaced}{}{suffix}", k.kind);
    let has = |verb: &str| k.verbs.contains(&verb);
    let scope_params = if k.namespaced { vec![NAMESPACE, PRETTY] } else { vec![PRETTY] };
    let write_params = vec![DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION];
    let mut patch_params = write_params.clone();
    patch_params.push(FORCE);
    let body = |schema, media| Some(Body { schema, media, required: true });

    let mut ops = Vec::new();
    if has("list") {
        ops.push(Operation {
            method: "get",
            action: "list",
            id: id("list", "", ""),
            description: format!("list or watch objects of kind {}", k.kind),
            gvk,
            params: LIST.to_vec(),
            body: None,
            responses: vec![(200, list)],
            produces: JSON_AND_WATCH,
        });
    }
    if has("create") {
        ops.push(Operation {
            method: "post",
            action: "post",
            id: id("create", "", ""),
            description: format!("create a {}", k.kind),
            gvk,
            params: write_params.clone(),
            body: body(object, ANY),
            responses: vec![(200, object), (201, object), (202, object)],
            produces: JSON,
        });
    }
    if has("deletecollection") {
        let mut params = DELETE.to_vec();
        params.extend_from_slice(LIST);
        ops.push(Operation {
            method: "delete",
            action: "deletecollection",
            id: id("delete", "Collection", ""),
            description: format!("delete collection of {}", k.kind),
            gvk,
            params,
            body: Some(Body { schema: schemas::DELETE_OPTIONS, media: ANY, required: false }),
            responses: vec![(200, schemas::STATUS)],
            produces: JSON,
        });
    }
    let mut items = vec![PathItem { path: collection, params: scope_params.clone(), ops }];

    let mut ops = Vec::new();
    if has("get") {
        ops.push(read(id("read", "", ""), format!("read the specified {}", k.kind), gvk, object));
    }
    if has("update") {
        ops.push(replace(
            id("replace", "", ""),
            format!("replace the specified {}", k.kind),
            gvk,
            object,
            &write_params,
        ));
    }
    if has("patch") {
        ops.push(patch(
            id("patch", "", ""),
            format!("partially update the specified {}", k.kind),
            gvk,
            object,
            &patch_params,
        ));
    }
    if has("delete") {
        ops.push(Operation {
            method: "delete",
            action: "delete",
            id: id("delete", "", ""),
            description: format!("delete a {}", k.kind),
            gvk,
            params: DELETE.to_vec(),
            body: Some(Body { schema: schemas::DELETE_OPTIONS, media: ANY, required: false }),
            responses: vec![(200, schemas::STATUS), (202, schemas::STATUS)],
            produces: JSON,
        });
    }
    let mut item_params = vec![NAME];
    item_params.extend_from_slice(&scope_params);
    items.push(PathItem { path: item.clone(), params: item_params.clone(), ops });

    for sub in k.subresources {
        items.push(subresource(k, sub, &item, &item_params, &id, &write_params, &patch_params, object));
    }

    if k.namespaced && has("list") {
        items.push(PathItem {
            path: format!("{prefix}/{}", k.resource),
            params: vec![PRETTY],
            ops: vec![Operation {
                method: "get",
                action: "list",
                id: format!("list{gv}{}ForAllNamespaces", k.kind),
                description: format!("list or watch objects of kind {}", k.kind),
                gvk,
                params: LIST.to_vec(),
                body: None,
                responses: vec![(200, list)],
                produces: JSON_AND_WATCH,
            }],
        });
    }
    items
}

/// The path of a subresource (`.../deployments/{name}/scale`) with its verbs.
#[allow(clippy::too_many_arguments)]
fn subresource(
    k: &ResourceKind,
    sub: &Subresource,
    item: &str,
    item_params: &[Param],
    id: &dyn Fn(&str, &str, &str) -> String,
    write_params: &[Param],
    patch_params: &[Param],
    object: &'static str,
) -> PathItem {
    let (gvk, schema) = match sub.response {
        Some(("autoscaling", "v1", "Scale")) => (("autoscaling", "v1", "Scale"), schemas::SCALE),
        _ => ((k.group, k.version, k.kind), object),
    };
    let suffix = capitalized(sub.name);
    let has = |verb: &str| sub.verbs.contains(&verb);
    let mut ops = Vec::new();
    if has("get") {
        ops.push(read(id("read", "", &suffix), format!("read {} of the specified {}", sub.name, k.kind), gvk, schema));
    }
    if has("update") {
        let description = format!("replace {} of the specified {}", sub.name, k.kind);
        ops.push(replace(id("replace", "", &suffix), description, gvk, schema, write_params));
    }
    if has("patch") {
        let description = format!("partially update {} of the specified {}", sub.name, k.kind);
        ops.push(patch(id("patch", "", &suffix), description, gvk, schema, patch_params));
    }
    PathItem { path: format!("{item}/{}", sub.name), params: item_params.to_vec(), ops }
}

type Gvk = (&'static str, &'static str, &'static str);

fn read(id: String, description: String, gvk: Gvk, schema: &'static str) -> Operation {
    Operation {
        method: "get",
        action: "get",
        id,
        description,
        gvk,
        params: Vec::new(),
        body: None,
        responses: vec![(200, schema)],
        produces: JSON,
    }
}

fn replace(id: String, description: String, gvk: Gvk, schema: &'static str, params: &[Param]) -> Operation {
    Operation {
        method: "put",
        action: "put",
        id,
        description,
        gvk,
        params: params.to_vec(),
        body: Some(Body { schema, media: ANY, required: true }),
        responses: vec![(200, schema), (201, schema)],
        produces: JSON,
    }
}

fn patch(id: String, description: String, gvk: Gvk, schema: &'static str, params: &[Param]) -> Operation {
    // kubectl apply sends a strategic merge patch where the PATCH accepts one; custom
    // objects take the other kinds only (as kube's CRD OpenAPI builder says).
    let custom = actors::custom_kinds::all().iter().any(|c| c.group == gvk.0);
    let media = if custom { &PATCHES[..3] } else { PATCHES };
    Operation {
        method: "patch",
        action: "patch",
        id,
        description,
        gvk,
        params: params.to_vec(),
        body: Some(Body { schema: schemas::PATCH, media, required: true }),
        responses: vec![(200, schema), (201, schema)],
        produces: JSON,
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        _ => "",
    }
}

fn gvk_object((group, version, kind): Gvk) -> Value {
    json!({"group": group, "version": version, "kind": kind})
}

fn info() -> Value {
    json!({"title": "Kubernetes", "version": version::info()["gitVersion"]})
}

/// Every kind's bearer token or client certificate is checked before any path is served.
fn bearer_token() -> Value {
    json!({"type": "apiKey", "description": "Bearer Token authentication", "name": "authorization", "in": "header"})
}

// ---- OpenAPI 3.0 ----

fn v3_param(p: &Param) -> Value {
    let mut param = json!({
        "name": p.name,
        "in": if p.location == Location::Path { "path" } else { "query" },
        "description": p.description,
        "schema": {"type": p.ty, "uniqueItems": true},
    });
    if p.location == Location::Path {
        param["required"] = json!(true);
    }
    param
}

fn v3_ref(schema: &str) -> Value {
    json!({"$ref": format!("{}{schema}", schemas::V3_REF_PREFIX)})
}

fn v3_operation(op: &Operation, tag: &str) -> Value {
    let mut out = Map::new();
    out.insert("tags".into(), json!([tag]));
    out.insert("description".into(), json!(op.description));
    out.insert("operationId".into(), json!(op.id));
    if !op.params.is_empty() {
        out.insert("parameters".into(), op.params.iter().map(v3_param).collect());
    }
    if let Some(body) = &op.body {
        let content: Map<String, Value> =
            body.media.iter().map(|m| (m.to_string(), json!({"schema": v3_ref(body.schema)}))).collect();
        let mut request = json!({"content": content});
        if body.required {
            request["required"] = json!(true);
        }
        out.insert("requestBody".into(), request);
    }
    let mut responses = Map::new();
    for (code, schema) in &op.responses {
        let content: Map<String, Value> =
            op.produces.iter().map(|m| (m.to_string(), json!({"schema": v3_ref(schema)}))).collect();
        responses.insert(code.to_string(), json!({"description": reason(*code), "content": content}));
    }
    responses.insert("401".into(), json!({"description": "Unauthorized"}));
    out.insert("responses".into(), Value::Object(responses));
    out.insert("x-kubernetes-action".into(), json!(op.action));
    out.insert(schemas::GVK_EXTENSION.into(), gvk_object(op.gvk));
    Value::Object(out)
}

fn v3_path_item(item: &PathItem, tag: &str) -> Value {
    let mut out = Map::new();
    for op in &item.ops {
        out.insert(op.method.into(), v3_operation(op, tag));
    }
    out.insert("parameters".into(), item.params.iter().map(v3_param).collect());
    Value::Object(out)
}

/// The OpenAPI 3.0 document of one group/version serving `resources`; `None` if they have no
/// paths. `custom`: the definitions of the custom kinds ([`custom::definitions`]), by name.
fn v3_document(
    group: &str,
    version: &str,
    resources: impl Iterator<Item = &'static ResourceKind>,
    custom: &Map<String, Value>,
) -> Option<Value> {
    let items: Vec<PathItem> = resources.flat_map(path_items).collect();
    if items.is_empty() {
        return None;
    }
    let tag = tag(group, version);
    let paths: Map<String, Value> = items.iter().map(|i| (i.path.clone(), v3_path_item(i, &tag))).collect();
    let roots: BTreeSet<&str> = items.iter().flat_map(|i| &i.ops).flat_map(Operation::schemas).collect();
    // Custom definitions first, following their references; the built-in ones they and the
    // operations reach (ObjectMeta, ListMeta, Status ...) after.
    let mut components = Map::new();
    let mut builtin_roots: Vec<String> = Vec::new();
    let mut todo: Vec<String> = roots.into_iter().map(str::to_string).collect();
    while let Some(name) = todo.pop() {
        if components.contains_key(&name) {
            continue;
        }
        match custom.get(&name) {
            Some(definition) => {
                schemas::collect_refs(definition, &mut |r| todo.extend(schemas::ref_name(r).map(str::to_string)));
                components.insert(name, definition.clone());
            }
            None => builtin_roots.push(name),
        }
    }
    for name in schemas::reachable(builtin_roots.iter().map(String::as_str)) {
        if let Some(definition) = schemas::definition(name) {
            components.insert(name.to_string(), definition.clone());
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": info(),
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {"BearerToken": bearer_token()}},
        "security": [{"BearerToken": []}],
    }))
}

// ---- Swagger 2.0 ----

fn v2_param(p: &Param) -> Value {
    let mut param = json!({
        "name": p.name,
        "in": if p.location == Location::Path { "path" } else { "query" },
        "description": p.description,
        "type": p.ty,
        "uniqueItems": true,
    });
    if p.location == Location::Path {
        param["required"] = json!(true);
    }
    param
}

fn v2_ref(schema: &str) -> Value {
    json!({"$ref": format!("{}{schema}", schemas::V2_REF_PREFIX)})
}

fn v2_operation(op: &Operation, tag: &str) -> Value {
    let mut params: Vec<Value> = Vec::new();
    let mut out = Map::new();
    out.insert("description".into(), json!(op.description));
    if let Some(body) = &op.body {
        out.insert("consumes".into(), json!(body.media));
        params.push(json!({"name": "body", "in": "body", "required": body.required, "schema": v2_ref(body.schema)}));
    }
    params.extend(op.params.iter().map(v2_param));
    out.insert("produces".into(), json!(op.produces));
    out.insert("schemes".into(), json!(["https"]));
    out.insert("tags".into(), json!([tag]));
    out.insert("operationId".into(), json!(op.id));
    if !params.is_empty() {
        out.insert("parameters".into(), Value::Array(params));
    }
    let mut responses: Map<String, Value> = op
        .responses
        .iter()
        .map(|(code, schema)| (code.to_string(), json!({"description": reason(*code), "schema": v2_ref(schema)})))
        .collect();
    responses.insert("401".into(), json!({"description": "Unauthorized"}));
    out.insert("responses".into(), Value::Object(responses));
    out.insert("x-kubernetes-action".into(), json!(op.action));
    out.insert(schemas::GVK_EXTENSION.into(), gvk_object(op.gvk));
    Value::Object(out)
}

/// `value` with every `#/components/schemas/` reference made a `#/definitions/` one, and
/// each lone-`allOf` reference (`{"allOf": [{"$ref": ..}], "description": ..}`) written as a
/// `$ref` with siblings.
fn to_v2_refs(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let lone_ref = match map.get("allOf").and_then(Value::as_array).map(Vec::as_slice) {
                Some([only]) if only.as_object().is_some_and(|o| o.len() == 1) => only.get("$ref").cloned(),
                _ => None,
            };
            if let Some(reference) = lone_ref {
                map.remove("allOf");
                map.insert("$ref".into(), reference);
            }
            for (key, value) in map.iter_mut() {
                match value {
                    Value::String(r) if key == "$ref" => {
                        if let Some(name) = r.strip_prefix(schemas::V3_REF_PREFIX) {
                            *r = format!("{}{name}", schemas::V2_REF_PREFIX);
                        }
                    }
                    other => to_v2_refs(other),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(to_v2_refs),
        _ => {}
    }
}

/// The Swagger 2.0 document of every served path and every definition, the custom kinds'
/// included.
fn v2_document() -> Value {
    let mut paths = Map::new();
    for (group, version) in kinds::group_versions() {
        let tag = tag(group, version);
        for item in kinds::resources_of(group, version).flat_map(path_items) {
            let mut out = Map::new();
            for op in &item.ops {
                out.insert(op.method.into(), v2_operation(op, &tag));
            }
            out.insert("parameters".into(), item.params.iter().map(v2_param).collect());
            paths.insert(item.path, Value::Object(out));
        }
    }
    let mut all = schemas::definitions().clone();
    all.extend(custom::definitions(&custom_kinds::all(), true));
    let mut definitions = Value::Object(all);
    to_v2_refs(&mut definitions);
    json!({
        "swagger": "2.0",
        "info": info(),
        "paths": paths,
        "definitions": definitions,
        "securityDefinitions": {"BearerToken": bearer_token()},
        "security": [{"BearerToken": []}],
    })
}

// ---- the built documents and the handlers ----

/// The media type of the v2 document in protobuf.
pub const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
/// The older spelling of [`V2_PROTOBUF`], still accepted.
const V2_PROTOBUF_OLD: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// A serialized document and its hash.
#[derive(Debug, Clone)]
struct Document {
    body: Bytes,
    /// Upper-case hex SHA-256 of `body`: the ETag, and the `hash` of a v3 URL.
    hash: String,
}

impl Document {
    fn new(value: &Value) -> Document {
        Document::from_bytes(value.to_string().into_bytes())
    }

    fn from_bytes(body: Vec<u8>) -> Document {
        let digest = ring::digest::digest(&ring::digest::SHA256, &body);
        let hash = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
        Document { body: Bytes::from(body), hash }
    }
}

/// The v2 document in JSON and in protobuf.
#[derive(Debug)]
struct V2 {
    json: Document,
    protobuf: Document,
}

/// The v3 index and the document of each group/version, keyed `api/v1`, `apis/apps/v1`.
#[derive(Debug)]
struct V3 {
    index: Document,
    groups: BTreeMap<String, Document>,
}

/// A value built from the served kinds, kept while the custom kinds stay as they were
/// (keyed by `custom_kinds::generation()`), built again once they change.
struct ByGeneration<T> {
    current: RwLock<Option<(u64, Arc<T>)>>,
    /// Held while building, so that concurrent requests build once.
    building: Mutex<()>,
}

impl<T> ByGeneration<T> {
    const fn new() -> Self {
        ByGeneration { current: RwLock::new(None), building: Mutex::new(()) }
    }

    /// The value built at `generation`, if that is the one kept.
    fn at(&self, generation: u64) -> Option<Arc<T>> {
        let current = self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        current.as_ref().filter(|(g, _)| *g == generation).map(|(_, value)| value.clone())
    }

    /// The value for the current custom kinds, built here if needed (blocking).
    fn get(&self, build: fn() -> T) -> Arc<T> {
        if let Some(value) = self.at(custom_kinds::generation()) {
            return value;
        }
        let _building = self.building.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Read before building: kinds that change meanwhile move the generation past it.
        let generation = custom_kinds::generation();
        if let Some(value) = self.at(generation) {
            return value;
        }
        let value = Arc::new(build());
        *self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((generation, value.clone()));
        value
    }
}

static V3_DOCUMENTS: ByGeneration<V3> = ByGeneration::new();
static V2_DOCUMENTS: ByGeneration<V2> = ByGeneration::new();
/// The v3 documents of the group/versions with no custom kinds: the same for the life of the
/// process.
static BUILTIN_V3: OnceLock<BTreeMap<String, Document>> = OnceLock::new();

/// `api/v1`, `apis/apps/v1`: a group/version's key in the v3 index and URL.
fn v3_key(group: &str, version: &str) -> String {
    prefix(group, version).trim_start_matches('/').to_string()
}

fn build_builtin_v3() -> BTreeMap<String, Document> {
    let mut groups = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for k in kinds::BUILTIN {
        if seen.insert((k.group, k.version)) {
            let resources = kinds::BUILTIN.iter().filter(|b| (b.group, b.version) == (k.group, k.version));
            if let Some(document) = v3_document(k.group, k.version, resources, &Map::new()) {
                groups.insert(v3_key(k.group, k.version), Document::new(&document));
            }
        }
    }
    groups
}

fn build_v3() -> V3 {
    let started = std::time::Instant::now();
    let builtin = BUILTIN_V3.get_or_init(build_builtin_v3);
    let custom_kinds = custom_kinds::all();
    let custom_group_versions: BTreeSet<(&str, &str)> =
        custom_kinds.iter().flat_map(|c| c.versions.iter().map(|v| (v.kind.group, v.kind.version))).collect();
    let definitions = custom::definitions(&custom_kinds, false);
    let mut groups = BTreeMap::new();
    let mut index = Map::new();
    for (group, version) in kinds::group_versions() {
        let key = v3_key(group, version);
        let document = match builtin.get(&key) {
            Some(document) if !custom_group_versions.contains(&(group, version)) => document.clone(),
            _ => match v3_document(group, version, kinds::resources_of(group, version), &definitions) {
                Some(document) => Document::new(&document),
                None => continue,
            },
        };
        let url = format!("/openapi/v3/{key}?hash={}", document.hash);
        index.insert(key.clone(), json!({"serverRelativeURL": url}));
        groups.insert(key, document);
    }
    let bytes: usize = groups.values().map(|d| d.body.len()).sum();
    tracing::info!(elapsed = ?started.elapsed(), bytes, "built the OpenAPI v3 documents");
    V3 { index: Document::new(&json!({"paths": index})), groups }
}

fn build_v2() -> V2 {
    let started = std::time::Instant::now();
    let document = v2_document();
    let v2 = V2 { json: Document::new(&document), protobuf: Document::from_bytes(proto::document(&document)) };
    let (json, protobuf) = (v2.json.body.len(), v2.protobuf.body.len());
    tracing::info!(elapsed = ?started.elapsed(), json, protobuf, "built the OpenAPI v2 document");
    v2
}

/// `cache`'s value for the current custom kinds, built off the async workers when it must be
/// (it takes a while).
async fn built<T: Send + Sync + 'static>(
    cache: &'static ByGeneration<T>,
    build: fn() -> T,
) -> Result<Arc<T>, HttpResponse> {
    if let Some(value) = cache.at(custom_kinds::generation()) {
        return Ok(value);
    }
    web::block(move || cache.get(build)).await.map_err(|e| {
        status::failure(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", &format!("building OpenAPI documents: {e}"))
    })
}

/// The encodings a document can be sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Protobuf,
}

/// The first encoding the `Accept` header names (in its order, skipping `q=0`) among JSON and,
/// where `protobuf` (the v2 document), gnostic's protobuf; JSON when there is no header.
fn negotiate(req: &HttpRequest, protobuf: bool) -> Option<Format> {
    let Some(accept) = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Some(Format::Json);
    };
    accept.split(',').find_map(|range| {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let refused = parts.any(|p| match p.trim().split_once('=') {
            Some(("q", q)) => q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0),
            _ => false,
        });
        match media.as_str() {
            _ if refused => None,
            "" | "application/json" | "application/*" | "*/*" => Some(Format::Json),
            V2_PROTOBUF | V2_PROTOBUF_OLD if protobuf => Some(Format::Protobuf),
            _ => None,
        }
    })
}

/// `doc` with its ETag and `content_type`, or 304 when the client has it; `immutable` where
/// the URL names the content's hash.
fn respond(req: &HttpRequest, doc: &Document, content_type: &str, immutable: bool) -> HttpResponse {
    let etag = format!("\"{}\"", doc.hash);
    let cached = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if cached { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    response.insert_header((header::ETAG, etag)).insert_header((header::VARY, "Accept")).insert_header((
        header::CACHE_CONTROL,
        if immutable { "public, max-age=31536000, immutable" } else { "no-cache, private" },
    ));
    if cached {
        response.finish()
    } else {
        response.content_type(content_type).body(doc.body.clone())
    }
}

/// 406 with a `NotAcceptable` `Status`: client-go reads the reason.
fn not_acceptable(req: &HttpRequest) -> HttpResponse {
    let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let message = format!("no document here is served as {accept:?}");
    status::failure(StatusCode::NOT_ACCEPTABLE, "NotAcceptable", &message)
}

/// A v3 document (JSON only) with its ETag.
fn respond_v3(req: &HttpRequest, doc: &Document, immutable: bool) -> HttpResponse {
    match negotiate(req, false) {
        Some(_) => respond(req, doc, "application/json", immutable),
        None => not_acceptable(req),
    }
}

async fn v3_index(req: HttpRequest) -> HttpResponse {
    match built(&V3_DOCUMENTS, build_v3).await {
        Ok(v3) => respond_v3(&req, &v3.index, false),
        Err(response) => response,
    }
}

async fn v3_core(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    v3_group_version(&req, format!("api/{}", path.into_inner())).await
}

async fn v3_group(req: HttpRequest, path: web::Path<(String, String)>) -> HttpResponse {
    let (group, version) = path.into_inner();
    v3_group_version(&req, format!("apis/{group}/{version}")).await
}

/// The `hash` query parameter, if any.
#[derive(Debug, Default, serde::Deserialize)]
struct HashQuery {
    hash: Option<String>,
}

async fn v3_group_version(req: &HttpRequest, key: String) -> HttpResponse {
    let v3 = match built(&V3_DOCUMENTS, build_v3).await {
        Ok(v3) => v3,
        Err(response) => return response,
    };
    let Some(doc) = v3.groups.get(&key) else {
        return status::not_found(req.path());
    };
    let query = web::Query::<HashQuery>::from_query(req.query_string()).map(|q| q.into_inner()).unwrap_or_default();
    match query.hash {
        // A hash of another build's document: send the client to this one's, as kube-apiserver does.
        Some(hash) if hash != doc.hash => HttpResponse::MovedPermanently()
            .insert_header((header::LOCATION, format!("/openapi/v3/{key}?hash={}", doc.hash)))
            .finish(),
        Some(_) => respond_v3(req, doc, true),
        None => respond_v3(req, doc, false),
    }
}

async fn v2(req: HttpRequest) -> HttpResponse {
    let Some(format) = negotiate(&req, true) else {
        return not_acceptable(&req);
    };
    match (built(&V2_DOCUMENTS, build_v2).await, format) {
        (Ok(v2), Format::Json) => respond(&req, &v2.json, "application/json", false),
        // As kube-apiserver: Go's MIME parser rejects the `@` of the media type asked for.
        (Ok(v2), Format::Protobuf) => respond(&req, &v2.protobuf, "application/octet-stream", false),
        (Err(response), _) => response,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeSet;

    use actix_web::test::{call_service, init_service, read_body, TestRequest};
    use actix_web::App;

    use super::*;

    use crate::discovery::test_support::{self, LoadTests};

    fn v3(group: &str, version: &str) -> Value {
        serde_json::from_slice(&V3_DOCUMENTS.get(build_v3).groups[&v3_key(group, version)].body).unwrap()
    }

    /// The built-in group/versions (tests of custom kinds register and remove theirs meanwhile).
    fn builtin_group_versions() -> BTreeSet<(&'static str, &'static str)> {
        kinds::BUILTIN.iter().map(|k| (k.group, k.version)).collect()
    }

    /// Every `$ref` in `doc` names a schema of `doc` itself, under `prefix`.
    fn assert_self_contained(doc: &Value, schemas: &Value, prefix: &str) {
        let mut refs = Vec::new();
        schemas::collect_refs(doc, &mut |r| refs.push(r.to_string()));
        assert!(!refs.is_empty());
        for r in refs {
            let name = r.strip_prefix(prefix).unwrap_or_else(|| panic!("{r} lacks {prefix}"));
            assert!(schemas.get(name).is_some(), "dangling {r}");
        }
    }

    #[test]
    fn every_group_version_has_a_self_contained_v3_document() {
        for (group, version) in builtin_group_versions() {
            let doc = v3(group, version);
            assert_eq!(doc["openapi"], "3.0.0");
            assert_self_contained(&doc, &doc["components"]["schemas"], schemas::V3_REF_PREFIX);
            for k in kinds::BUILTIN.iter().filter(|k| (k.group, k.version) == (group, version)) {
                let name = schemas::definition_of(k).unwrap();
                let schema = &doc["components"]["schemas"][name];
                assert!(schema[schemas::GVK_EXTENSION]
                    .as_array()
                    .unwrap()
                    .contains(&gvk_object((k.group, k.version, k.kind))));
            }
        }
    }

    /// kubectl's `supportsQueryParamV3`: the first PATCH operation (of any path) whose GVK is
    /// the kind's must list `fieldValidation` among its own query parameters; so all must.
    #[test]
    fn every_patch_of_every_kind_lists_field_validation() {
        for k in kinds::BUILTIN {
            let doc = v3(k.group, k.version);
            let mut patches = 0;
            for item in doc["paths"].as_object().unwrap().values() {
                for method in ["patch", "put", "post"] {
                    let Some(op) = item.get(method) else { continue };
                    if op[schemas::GVK_EXTENSION] != json!({"group": k.group, "version": k.version, "kind": k.kind}) {
                        continue;
                    }
                    patches += usize::from(method == "patch");
                    let params = op["parameters"].as_array().unwrap();
                    assert!(
                        params.iter().any(|p| p["name"] == "fieldValidation" && p["in"] == "query"),
                        "{method} of {} lacks fieldValidation",
                        k.kind
                    );
                }
            }
            assert!(patches >= 1, "{} has no PATCH", k.kind);
        }
    }

    /// What `kubectl explain deployment.spec.strategy` walks: the resource's paths give the
    /// GVK, the GVK finds the schema, properties and references lead to the field.
    #[test]
    fn explain_can_walk_from_a_resource_path_to_a_field() {
        let doc = v3("apps", "v1");
        let op = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["get"];
        assert_eq!(op["x-kubernetes-action"], "list");
        let gvk = &op[schemas::GVK_EXTENSION];
        assert_eq!(gvk, &json!({"group": "apps", "version": "v1", "kind": "Deployment"}));
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let found: Vec<_> = schemas
            .values()
            .filter(|s| s[schemas::GVK_EXTENSION].as_array().is_some_and(|gvks| gvks.contains(gvk)))
            .collect();
        assert_eq!(found.len(), 1);
        let resolve = |s: &Value| {
            let r = s.get("$ref").or_else(|| s["allOf"].get(0).and_then(|a| a.get("$ref")));
            r.map_or(s.clone(), |r| schemas[r.as_str().unwrap().strip_prefix(schemas::V3_REF_PREFIX).unwrap()].clone())
        };
        let spec = resolve(&found[0]["properties"]["spec"]);
        let strategy = &spec["properties"]["strategy"];
        assert!(strategy["description"].as_str().unwrap().contains("The deployment strategy to use"));
        assert!(resolve(strategy)["properties"]["rollingUpdate"].is_object());
    }

    #[test]
    fn paths_cover_scopes_and_subresources() {
        let core = v3("", "v1");
        let paths = core["paths"].as_object().unwrap();
        for path in [
            "/api/v1/namespaces/{namespace}/pods",
            "/api/v1/namespaces/{namespace}/pods/{name}",
            "/api/v1/namespaces/{namespace}/pods/{name}/status",
            "/api/v1/pods",
            "/api/v1/namespaces",
            "/api/v1/namespaces/{name}",
            "/api/v1/namespaces/{name}/status",
        ] {
            assert!(paths.contains_key(path), "{path}");
        }
        assert!(!paths.contains_key("/api/v1/namespaces/{namespace}/namespaces"));
        assert!(paths["/api/v1/namespaces"].get("delete").is_none(), "namespaces have no deletecollection");
        let pod = &paths["/api/v1/namespaces/{namespace}/pods/{name}"];
        assert_eq!(pod["patch"]["operationId"], "patchCoreV1NamespacedPod");
        let names: BTreeSet<_> = pod["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str()).collect();
        assert_eq!(names, [Some("name"), Some("namespace"), Some("pretty")].into());

        let apps = v3("apps", "v1");
        let scale = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
        assert_eq!(
            scale["put"][schemas::GVK_EXTENSION],
            json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
        );
        assert_eq!(scale["get"]["operationId"], "readAppsV1NamespacedDeploymentScale");
        let rbac = v3("rbac.authorization.k8s.io", "v1");
        let list = &rbac["paths"]["/apis/rbac.authorization.k8s.io/v1/clusterroles"]["get"];
        assert_eq!(
            (&list["operationId"], &list["tags"][0]),
            (&json!("listRbacAuthorizationV1ClusterRole"), &json!("rbacAuthorization_v1"))
        );
        assert_eq!(
            list["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/io.k8s.api.rbac.v1.ClusterRoleList"
        );
    }

    #[test]
    fn v2_document_has_every_path_and_definitions_refs() {
        let doc = v2_document();
        assert_eq!(doc["swagger"], "2.0");
        assert_self_contained(&doc, &doc["definitions"], schemas::V2_REF_PREFIX);
        let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        let params = patch["parameters"].as_array().unwrap();
        assert_eq!(params[0]["in"], "body");
        assert!(params.iter().any(|p| p["name"] == "fieldValidation" && p["type"] == "string"));
        assert!(doc["paths"]["/apis/batch/v1/namespaces/{namespace}/cronjobs"].is_object());
        // Described references are `$ref` with siblings, as kube-apiserver writes v2.
        let spec = &doc["definitions"]["io.k8s.api.apps.v1.Deployment"]["properties"]["spec"];
        assert_eq!(spec["$ref"], "#/definitions/io.k8s.api.apps.v1.DeploymentSpec");
        assert!(spec.get("allOf").is_none() && spec["description"].is_string(), "{spec}");
    }

    #[test]
    fn accept_headers() {
        let with = |accept: &str| TestRequest::get().insert_header((header::ACCEPT, accept)).to_http_request();
        let json = Some(Format::Json);
        assert_eq!(negotiate(&TestRequest::get().to_http_request(), true), json);
        assert_eq!(negotiate(&with("application/json"), true), json);
        let v3_then_json = "application/com.github.proto-openapi.spec.v3@v1.0+protobuf, application/json";
        assert_eq!(negotiate(&with(v3_then_json), true), json);
        assert_eq!(negotiate(&with("*/*"), false), json);
        assert_eq!(negotiate(&with(V2_PROTOBUF), true), Some(Format::Protobuf));
        assert_eq!(negotiate(&with(&format!("{V2_PROTOBUF_OLD}, application/json")), true), Some(Format::Protobuf));
        assert_eq!(negotiate(&with(&format!("application/json, {V2_PROTOBUF}")), true), json);
        assert_eq!(negotiate(&with(V2_PROTOBUF), false), None);
        assert_eq!(negotiate(&with("application/json;q=0, application/yaml"), true), None);
    }

    #[actix_rt::test]
    async fn routes_serve_cache_redirect_and_negotiate() {
        let app = init_service(App::new().configure(configure)).await;
        let get = |path: &str| TestRequest::get().uri(path).to_request();

        let resp = call_service(&app, get("/openapi/v3")).await;
        assert_eq!(resp.status(), 200);
        let index: Value = serde_json::from_slice(&read_body(resp).await).unwrap();
        let paths = index["paths"].as_object().unwrap();
        for (group, version) in builtin_group_versions() {
            assert!(paths.contains_key(&v3_key(group, version)), "{group}/{version}");
        }
        let url = paths["apis/apps/v1"]["serverRelativeURL"].as_str().unwrap().to_string();
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="), "{url}");
        assert!(paths["api/v1"]["serverRelativeURL"].as_str().unwrap().starts_with("/openapi/v3/api/v1?hash="));

        let resp = call_service(&app, get(&url)).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers().get(header::CACHE_CONTROL).unwrap(), "public, max-age=31536000, immutable");
        let etag = resp.headers().get(header::ETAG).unwrap().clone();
        assert_eq!(etag.to_str().unwrap(), format!("\"{}\"", url.split("hash=").nth(1).unwrap()));
        let doc: Value = serde_json::from_slice(&read_body(resp).await).unwrap();
        assert!(doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"].is_object());

        let resp = call_service(&app, get("/openapi/v3/apis/apps/v1")).await;
        assert_eq!(resp.headers().get(header::CACHE_CONTROL).unwrap(), "no-cache, private");
        let again = TestRequest::get().uri("/openapi/v3/apis/apps/v1").insert_header((header::IF_NONE_MATCH, etag));
        assert_eq!(call_service(&app, again.to_request()).await.status(), 304);

        let resp = call_service(&app, get("/openapi/v3/apis/apps/v1?hash=0BAD")).await;
        assert_eq!(resp.status(), 301);
        assert_eq!(resp.headers().get(header::LOCATION).unwrap().to_str().unwrap(), url);

        for path in ["/openapi/v3/apis/nope.example.com/v1", "/openapi/v3/api/v2"] {
            assert_eq!(call_service(&app, get(path)).await.status(), 404, "{path}");
        }

        let req = TestRequest::get().uri("/openapi/v2").insert_header((header::ACCEPT, V2_PROTOBUF)).to_request();
        let resp = call_service(&app, req).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers().get(header::CONTENT_TYPE).unwrap(), "application/octet-stream");
        assert_eq!(&read_body(resp).await[..5], b"\x0a\x032.0", "starts with swagger: 2.0");

        let v3_protobuf = "application/com.github.proto-openapi.spec.v3@v1.0+protobuf";
        let req = TestRequest::get().uri("/openapi/v3").insert_header((header::ACCEPT, v3_protobuf)).to_request();
        let resp = call_service(&app, req).await;
        assert_eq!(resp.status(), 406);
        let status: Value = serde_json::from_slice(&read_body(resp).await).unwrap();
        assert_eq!(
            (&status["kind"], &status["reason"], &status["code"]),
            (&json!("Status"), &json!("NotAcceptable"), &json!(406))
        );

        let req =
            TestRequest::get().uri("/openapi/v2").insert_header((header::ACCEPT, "application/json")).to_request();
        let resp = call_service(&app, req).await;
        assert_eq!(resp.status(), 200);
        let doc: Value = serde_json::from_slice(&read_body(resp).await).unwrap();
        assert_eq!(doc["swagger"], "2.0");
    }

    /// The schema `kubectl explain` finds: the one whose GVK extension names the kind.
    fn schema_of<'a>(doc: &'a Value, schemas_at: &str, gvk: &Value) -> Vec<(&'a String, &'a Value)> {
        doc.pointer(schemas_at)
            .and_then(Value::as_object)
            .unwrap()
            .iter()
            .filter(|(_, s)| s[schemas::GVK_EXTENSION].as_array().is_some_and(|gvks| gvks.contains(gvk)))
            .collect()
    }

    #[test]
    fn custom_kinds_have_v3_documents_built_from_their_schemas() {
        let group = "openapi.custom.example.com";
        let load_tests = LoadTests::register(group);
        let doc = v3(group, "v1");
        assert_self_contained(&doc, &doc["components"]["schemas"], schemas::V3_REF_PREFIX);

        let gvk = json!({"group": group, "version": "v1", "kind": "LoadTest"});
        let found = schema_of(&doc, "/components/schemas", &gvk);
        assert_eq!(found.len(), 1);
        let (name, schema) = found[0];
        assert_eq!(name, "com.example.custom.openapi.v1.LoadTest");
        assert_eq!(schema["description"], "A load test.");
        assert_eq!(
            schema["properties"]["metadata"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        assert!(schema["properties"]["apiVersion"]["description"].as_str().unwrap().starts_with("APIVersion"));
        // What `kubectl explain loadtests.spec.requestsPerSecond` prints.
        let rps = &schema["properties"]["spec"]["properties"]["requestsPerSecond"];
        assert_eq!(rps["description"], "How many requests to send each second.");
        assert_eq!((&rps["default"], &rps["minimum"]), (&json!(10), &json!(1)));
        assert_eq!(schema["properties"]["spec"]["required"], json!(["url"]));
        let port = &schema["properties"]["spec"]["properties"]["port"];
        assert_eq!(port["anyOf"], json!([{"type": "integer"}, {"type": "string"}]));
        assert_eq!(schema["properties"]["spec"]["properties"]["note"]["nullable"], true);

        let list = &doc["components"]["schemas"]["com.example.custom.openapi.v1.LoadTestList"];
        assert_eq!(list[schemas::GVK_EXTENSION], json!([{"group": group, "version": "v1", "kind": "LoadTestList"}]));
        assert_eq!(list["properties"]["items"]["items"]["$ref"], format!("#/components/schemas/{name}"));
        assert!(doc["components"]["schemas"]["io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"].is_object());

        let paths = doc["paths"].as_object().unwrap();
        let item = format!("/apis/{group}/v1/namespaces/{{namespace}}/loadtests/{{name}}");
        for path in [
            format!("/apis/{group}/v1/namespaces/{{namespace}}/loadtests"),
            format!("/apis/{group}/v1/loadtests"),
            format!("{item}/status"),
        ] {
            assert!(paths.contains_key(&path), "{path}");
        }
        let patch = &paths[&item]["patch"];
        assert_eq!(patch["operationId"], "patchOpenapiCustomExampleComV1NamespacedLoadTest");
        assert_eq!(patch["tags"], json!(["openapiCustomExampleCom_v1"]));
        assert_eq!(patch[schemas::GVK_EXTENSION], gvk);
        assert!(patch["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "fieldValidation"));
        let scale = &paths[&format!("{item}/scale")]["put"];
        assert_eq!(scale[schemas::GVK_EXTENSION], json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}));
        assert!(doc["components"]["schemas"][schemas::SCALE].is_object());
        // The other version has its own document and definitions.
        let v2 = v3(group, "v2");
        assert!(v2["components"]["schemas"]["com.example.custom.openapi.v2.LoadTest"].is_object());
        assert!(v2["components"]["schemas"].get("com.example.custom.openapi.v1.LoadTest").is_none());
        drop(load_tests);
        assert!(!V3_DOCUMENTS.get(build_v3).groups.contains_key(&v3_key(group, "v1")));
    }

    #[test]
    fn custom_kinds_are_in_the_v2_document_as_kubectl_reads_them() {
        let group = "openapi-v2.custom.example.com";
        let load_tests = LoadTests::register(group);
        let doc: Value = serde_json::from_slice(&V2_DOCUMENTS.get(build_v2).json.body).unwrap();
        let name = "com.example.custom.openapi-v2.v1.LoadTest";
        let schema = &doc["definitions"][name];
        assert_eq!(schema[schemas::GVK_EXTENSION], json!([{"group": group, "version": "v1", "kind": "LoadTest"}]));
        assert_eq!(
            schema["properties"]["metadata"]["$ref"],
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        let spec = &schema["properties"]["spec"]["properties"];
        assert!(spec["requestsPerSecond"].get("default").is_none(), "v2 has no defaults");
        assert_eq!(spec["port"], json!({"x-kubernetes-int-or-string": true}));
        assert_eq!(spec["note"], json!({}), "nullable: untyped");
        assert!(doc["definitions"][format!("{name}List")].is_object());
        let path = format!("/apis/{group}/v1/namespaces/{{namespace}}/loadtests/{{name}}");
        assert_eq!(doc["paths"][&path]["get"]["responses"]["200"]["schema"]["$ref"], format!("#/definitions/{name}"));
        assert_eq!(doc["paths"][&path]["patch"]["operationId"], "patchOpenapiV2CustomExampleComV1NamespacedLoadTest");
        let protobuf = V2_DOCUMENTS.get(build_v2).protobuf.body.clone();
        assert!(protobuf.windows(name.len()).any(|w| w == name.as_bytes()));

        drop(load_tests);
        let doc: Value = serde_json::from_slice(&V2_DOCUMENTS.get(build_v2).json.body).unwrap();
        assert!(doc["definitions"].get(name).is_none());
        assert!(doc["paths"].get(&path).is_none());
    }

    #[test]
    fn custom_kinds_that_keep_unknown_fields_are_open_objects_in_v2() {
        let group = "open.custom.example.com";
        let schema = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
        let load_tests = LoadTests::register_with(group, schema);
        let kinds = custom_kinds::get(group, "loadtests").into_iter().collect::<Vec<_>>();
        let v2 = custom::definitions(&kinds, true);
        let name = "com.example.custom.open.v1.LoadTest";
        assert_eq!(
            v2[name],
            json!({"type": "object", (schemas::GVK_EXTENSION): [{"group": group, "version": "v1", "kind": "LoadTest"}]})
        );
        let v3 = custom::definitions(&kinds, false);
        assert!(v3[name]["properties"]["metadata"].is_object());
        assert_eq!(v3[name]["x-kubernetes-preserve-unknown-fields"], true);
        drop(load_tests);
    }

    #[actix_rt::test]
    async fn v3_index_hashes_follow_the_custom_kinds() {
        let group = "index.custom.example.com";
        let key = format!("apis/{group}/v1");
        let app = init_service(App::new().configure(configure)).await;
        macro_rules! index {
            () => {{
                let resp = call_service(&app, TestRequest::get().uri("/openapi/v3").to_request()).await;
                serde_json::from_slice::<Value>(&read_body(resp).await).unwrap()
            }};
        }
        let builtin_url = |index: &Value| index["paths"]["apis/apps/v1"]["serverRelativeURL"].clone();

        let load_tests = LoadTests::register(group);
        let first = index!();
        let url = first["paths"][&key]["serverRelativeURL"].as_str().unwrap().to_string();
        let resp = call_service(&app, TestRequest::get().uri(&url).to_request()).await;
        assert_eq!(resp.status(), 200);
        drop(load_tests);

        let gone = index!();
        assert!(gone["paths"].get(&key).is_none());
        assert_eq!(builtin_url(&gone), builtin_url(&first), "built-in documents keep their hashes");
        let resp = call_service(&app, TestRequest::get().uri(&format!("/openapi/v3/{key}")).to_request()).await;
        assert_eq!(resp.status(), 404);

        let mut schema = test_support::schema();
        schema["properties"]["spec"]["properties"]["extra"] = json!({"type": "boolean"});
        let load_tests = LoadTests::register_with(group, schema);
        let changed = index!();
        let new_url = changed["paths"][&key]["serverRelativeURL"].as_str().unwrap().to_string();
        assert_ne!(new_url, url, "a changed schema changes the hash");
        let resp = call_service(&app, TestRequest::get().uri(&url).to_request()).await;
        assert_eq!(resp.status(), 301);
        assert_eq!(resp.headers().get(header::LOCATION).unwrap().to_str().unwrap(), new_url);
        drop(load_tests);
    }
}

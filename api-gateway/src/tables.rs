//! Server-side `Table` responses (`meta.k8s.io/v1` and `v1beta1`), which `kubectl get` asks for
//! with `Accept: application/json;as=Table;v=v1;g=meta.k8s.io,...`: the columns and row cells of
//! each built-in kind, ported from kube-apiserver's printers
//! (`pkg/printers/internalversion/printers.go`, 1.32) as plain functions over JSON objects.
//!
//! As in kube-apiserver, every row carries all columns, the `-o wide` ones (priority 1)
//! included, and kubectl hides those. Kinds without a printer there (roles, cluster roles,
//! limit ranges, CRDs) get its default table: `Name` and `Created At`. Objects are printed as
//! stored; where kube-apiserver would have defaulted a field before printing it (a deployment's
//! replicas, a service's type, a namespace's phase ...), the printers here use that default.
//!
//! Custom resources get their CRD's printer columns ([`custom`]), filled by JSONPath
//! ([`jsonpath`]).

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;

use actix_web::body::{BodyStream, BoxBody, MessageBody};
use actix_web::http::header::ACCEPT;
use actix_web::http::Method;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use actors::kinds::{self, ResourceKind};
use actors::{ApiError, ApiResult};
use futures::{stream, Stream, StreamExt};
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

mod custom;
pub mod jsonpath;

use custom::CustomPrinter;

/// What each row's `object` holds (`?includeObject=`); kube-apiserver's default is `Metadata`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    /// `null`.
    None,
    /// A `PartialObjectMetadata` with the object's metadata.
    Metadata,
    /// The whole object.
    Object,
}

/// A request for a Table: the `meta.k8s.io` version it named, and what rows carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableOptions {
    /// `v1` or `v1beta1`.
    pub version: &'static str,
    pub include: IncludeObject,
}

impl TableOptions {
    /// The Table a request asks for, or `None` when it wants the plain objects. A bad
    /// `includeObject` is a 400, as in kube-apiserver.
    pub fn of_request(req: &HttpRequest) -> ApiResult<Option<TableOptions>> {
        let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
        let Some(version) = table_version(accept) else {
            return Ok(None);
        };
        let include = include_object(req.query_string())?;
        Ok(Some(TableOptions { version, include }))
    }

    /// `meta.k8s.io/v1` (or `/v1beta1`): the Table's `apiVersion`.
    fn api_version(&self) -> String {
        format!("meta.k8s.io/{}", self.version)
    }
}

/// The kind a request path names.
fn kind_of(req: &HttpRequest) -> Option<&'static ResourceKind> {
    let target = crate::resources::parse_path(req.path())?;
    kinds::find(&target.group, &target.version, &target.resource)
}

/// A `GET` reply as the client asked for it: `body` itself, or the Table of the object or
/// list in it when the `Accept` header asks for one.
pub fn render_get(req: &HttpRequest, body: Value) -> ApiResult<Value> {
    if req.method() != Method::GET {
        return Ok(body);
    }
    let (Some(opts), Some(kind)) = (TableOptions::of_request(req)?, kind_of(req)) else {
        return Ok(body);
    };
    let now = OffsetDateTime::now_utc();
    let body_kind = body["kind"].as_str().unwrap_or("");
    if body_kind == kind.kind {
        Ok(of_object(kind, &body, &opts, now))
    } else if body_kind.strip_suffix("List") == Some(kind.kind) {
        Ok(of_list(kind, &body, &opts, now))
    } else {
        Ok(body)
    }
}

/// A watch response as the client asked for it: as it is, or with each event's object a
/// one-row Table (the first with the column definitions) when the `Accept` header asks for
/// Tables. The watch stream is rewritten line by line, so the watch itself stays unaware.
pub fn render_watch(req: &HttpRequest, response: HttpResponse) -> HttpResponse {
    let opts = match TableOptions::of_request(req) {
        Ok(Some(opts)) => opts,
        Ok(None) => return response,
        Err(e) => return crate::resources::error_response(&e),
    };
    let Some(kind) = kind_of(req) else {
        return response;
    };
    response.map_body(move |_, body| BoxBody::new(BodyStream::new(table_lines(body, kind, opts))))
}

type BoxError = Box<dyn std::error::Error>;

/// The watch lines (`{"type": ..., "object": ...}` and a newline) of `body`, each with its
/// object made a Table; lines that are not JSON pass unchanged.
fn table_lines(
    mut body: BoxBody,
    kind: &'static ResourceKind,
    opts: TableOptions,
) -> impl Stream<Item = Result<Bytes, BoxError>> {
    let mut pending: Vec<u8> = Vec::new();
    let mut headers = true;
    let chunks = stream::poll_fn(move |cx| Pin::new(&mut body).poll_next(cx));
    let lines = chunks.map(move |chunk| {
        pending.extend_from_slice(&chunk?);
        let mut out = Vec::new();
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            match serde_json::from_slice::<Value>(&line) {
                Ok(event) => {
                    let event_type = event["type"].as_str().unwrap_or("");
                    let now = OffsetDateTime::now_utc();
                    let table = watch_event(kind, event_type, &event["object"], &opts, headers, now);
                    headers = false;
                    out.extend_from_slice(table.to_string().as_bytes());
                    out.push(b'\n');
                }
                Err(_) => out.extend_from_slice(&line),
            }
        }
        Ok(Bytes::from(out))
    });
    // An empty chunk would read as the end of a chunked body.
    lines.filter(|line| std::future::ready(line.as_ref().map_or(true, |l| !l.is_empty())))
}

/// The `meta.k8s.io` version of the Table an `Accept` header asks for: the first clause that
/// JSON can answer decides (`v1`, `v1beta1`, or `None` for a plain object). Clauses asking for
/// a form not served here (protobuf, YAML, `PartialObjectMetadata`, q=0) are passed over.
pub fn table_version(accept: &str) -> Option<&'static str> {
    for clause in accept.split(',') {
        let mut parts = clause.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        if !matches!(media.as_str(), "application/json" | "application/*" | "*/*") {
            continue;
        }
        let mut params: BTreeMap<String, &str> = BTreeMap::new();
        for part in parts {
            if let Some((key, value)) = part.split_once('=') {
                params.insert(key.trim().to_ascii_lowercase(), value.trim().trim_matches('"'));
            }
        }
        if params.get("q").is_some_and(|q| q.parse::<f64>().is_ok_and(|q| q <= 0.0)) {
            continue;
        }
        match (params.get("as"), params.get("g"), params.get("v")) {
            (None, _, _) => return None,
            (Some(&"Table"), Some(&"meta.k8s.io"), Some(&"v1")) => return Some("v1"),
            (Some(&"Table"), Some(&"meta.k8s.io"), Some(&"v1beta1")) => return Some("v1beta1"),
            _ => continue,
        }
    }
    None
}

#[derive(Debug, Default, serde::Deserialize)]
struct IncludeParam {
    #[serde(rename = "includeObject")]
    include_object: Option<String>,
}

/// `?includeObject=` of a query string: `None`, `Metadata` (the default) or `Object`.
pub fn include_object(query: &str) -> ApiResult<IncludeObject> {
    let param = web::Query::<IncludeParam>::from_query(query).map(web::Query::into_inner).unwrap_or_default();
    match param.include_object.as_deref().unwrap_or("") {
        "" | "Metadata" => Ok(IncludeObject::Metadata),
        "None" => Ok(IncludeObject::None),
        "Object" => Ok(IncludeObject::Object),
        other => Err(ApiError::BadRequest(format!(
            "includeObject: Unsupported value: \"{other}\": supported values: \"Metadata\", \"None\", \"Object\""
        ))),
    }
}

/// The Table of one object (a `GET` of a name); `obj` has its `kind` and `apiVersion`.
pub fn of_object(kind: &ResourceKind, obj: &Value, opts: &TableOptions, now: OffsetDateTime) -> Value {
    let mut metadata = Map::new();
    copy_string(&obj["metadata"], &mut metadata, "resourceVersion");
    table(kind, std::slice::from_ref(obj), metadata, opts, true, now)
}

/// The Table of a list body (`{"kind": "ConfigMapList", "metadata": ..., "items": [...]}`),
/// keeping its `resourceVersion`, `continue` and `remainingItemCount`.
pub fn of_list(kind: &ResourceKind, list: &Value, opts: &TableOptions, now: OffsetDateTime) -> Value {
    let mut metadata = Map::new();
    for key in ["resourceVersion", "continue"] {
        copy_string(&list["metadata"], &mut metadata, key);
    }
    if let Some(count) = list["metadata"].get("remainingItemCount").filter(|c| c.is_i64()) {
        metadata.insert("remainingItemCount".into(), count.clone());
    }
    let items = list["items"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    table(kind, items, metadata, opts, true, now)
}

/// One line of a watch that asked for Tables, as kube-apiserver sends it: `{"type": ...,
/// "object": <Table>}` with a one-row Table; `headers`: whether it carries the column
/// definitions (only a watch's first event does). `ERROR` events keep their `Status`.
pub fn watch_event(
    kind: &ResourceKind,
    event_type: &str,
    object: &Value,
    opts: &TableOptions,
    headers: bool,
    now: OffsetDateTime,
) -> Value {
    if event_type == "ERROR" {
        return json!({"type": event_type, "object": object});
    }
    let mut metadata = Map::new();
    copy_string(&object["metadata"], &mut metadata, "resourceVersion");
    let table = table(kind, std::slice::from_ref(object), metadata, opts, headers, now);
    json!({"type": event_type, "object": table})
}

fn copy_string(from: &Value, to: &mut Map<String, Value>, key: &str) {
    if let Some(value) = from.get(key).and_then(Value::as_str).filter(|v| !v.is_empty()) {
        to.insert(key.into(), json!(value));
    }
}

fn table(
    kind: &ResourceKind,
    objects: &[Value],
    metadata: Map<String, Value>,
    opts: &TableOptions,
    headers: bool,
    now: OffsetDateTime,
) -> Value {
    let printer = printer(kind);
    let custom = (printer.columns == DEFAULT_COLUMNS).then(|| CustomPrinter::of(kind)).flatten();
    let (columns, rows): (Value, Vec<Value>) = match custom {
        Some(custom) => (
            if headers { custom.column_definitions() } else { Value::Null },
            objects.iter().map(|obj| row(custom.cells(obj, now), None, obj, opts)).collect(),
        ),
        None => (
            if headers {
                Value::Array(printer.columns.iter().copied().map(Column::to_json).collect())
            } else {
                Value::Null
            },
            objects.iter().map(|obj| row((printer.cells)(obj, now), (printer.conditions)(obj), obj, opts)).collect(),
        ),
    };
    json!({
        "kind": "Table",
        "apiVersion": opts.api_version(),
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// One row: its cells, the `conditions` (if any) and the object as `includeObject` asks.
fn row(cells: Vec<Value>, conditions: Option<Value>, obj: &Value, opts: &TableOptions) -> Value {
    let object = match opts.include {
        IncludeObject::None => Value::Null,
        IncludeObject::Object => obj.clone(),
        IncludeObject::Metadata => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": opts.api_version(),
            "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
        }),
    };
    let mut row = json!({"cells": cells, "object": object});
    if let Some(conditions) = conditions {
        row["conditions"] = conditions;
    }
    row
}

/// One column of a Table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// The OpenAPI type: `string`, `integer`, `boolean`, `date`.
    pub kind: &'static str,
    /// `name` for the object's name column, else empty.
    pub format: &'static str,
    pub description: &'static str,
    /// 0: always shown; 1: only with `-o wide`.
    pub priority: i32,
}

impl Column {
    fn to_json(self) -> Value {
        json!({
            "name": self.name,
            "type": self.kind,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

const fn col(name: &'static str, kind: &'static str, description: &'static str) -> Column {
    Column { name, kind, format: "", description, priority: 0 }
}

/// A priority-1 column, shown by `kubectl get -o wide`.
const fn wide(name: &'static str, kind: &'static str, description: &'static str) -> Column {
    Column { name, kind, format: "", description, priority: 1 }
}

const NAME_DOC: &str = "Name must be unique within a namespace. Is required when creating resources, although some \
resources may allow a client to request the generation of an appropriate name automatically. Name is primarily \
intended for creation idempotence and configuration definition. Cannot be updated. More info: \
https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const CREATED_DOC: &str = "CreationTimestamp is a timestamp representing the server time when this object was \
created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set \
this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. \
More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const CONTAINERS_DOC: &str = "Names of each container in the template.";
const IMAGES_DOC: &str = "Images referenced by each container in the template.";
const SELECTOR_DOC: &str = "A label query over pods that should match the replica count.";

const NAME: Column = Column { name: "Name", kind: "string", format: "name", description: NAME_DOC, priority: 0 };
const AGE: Column = col("Age", "string", CREATED_DOC);
const CONTAINERS: Column = wide("Containers", "string", CONTAINERS_DOC);
const IMAGES: Column = wide("Images", "string", IMAGES_DOC);
const SELECTOR: Column = wide("Selector", "string", SELECTOR_DOC);

/// Cells of one object, given the time now (for ages).
type Cells = fn(&Value, OffsetDateTime) -> Vec<Value>;
/// The row's `conditions`, if any (pods that ran to completion).
type Conditions = fn(&Value) -> Option<Value>;

/// The columns of a kind and how to fill them.
struct Printer {
    columns: &'static [Column],
    cells: Cells,
    conditions: Conditions,
}

fn no_conditions(_: &Value) -> Option<Value> {
    None
}

/// The printer of a kind: kube-apiserver's, or the default (`Name`, `Created At`).
fn printer(kind: &ResourceKind) -> Printer {
    let (columns, cells): (&'static [Column], Cells) = match (kind.group, kind.resource) {
        ("", "pods") => {
            return Printer { columns: POD_COLUMNS, cells: pod_cells, conditions: pod_conditions };
        }
        ("", "namespaces") => (NAMESPACE_COLUMNS, namespace_cells),
        ("", "services") => (SERVICE_COLUMNS, service_cells),
        ("", "endpoints") => (ENDPOINTS_COLUMNS, endpoints_cells),
        ("", "configmaps") => (CONFIGMAP_COLUMNS, configmap_cells),
        ("", "secrets") => (SECRET_COLUMNS, secret_cells),
        ("", "serviceaccounts") => (SERVICE_ACCOUNT_COLUMNS, service_account_cells),
        ("", "nodes") => (NODE_COLUMNS, node_cells),
        ("", "events") | ("events.k8s.io", "events") => (EVENT_COLUMNS, event_cells),
        ("", "persistentvolumes") => (PV_COLUMNS, pv_cells),
        ("", "persistentvolumeclaims") => (PVC_COLUMNS, pvc_cells),
        ("", "resourcequotas") => (RESOURCE_QUOTA_COLUMNS, resource_quota_cells),
        ("apiregistration.k8s.io", "apiservices") => (API_SERVICE_COLUMNS, api_service_cells),
        ("apps", "controllerrevisions") => (CONTROLLER_REVISION_COLUMNS, controller_revision_cells),
        ("apps", "daemonsets") => (DAEMON_SET_COLUMNS, daemon_set_cells),
        ("apps", "deployments") => (DEPLOYMENT_COLUMNS, deployment_cells),
        ("apps", "replicasets") => (REPLICA_SET_COLUMNS, replica_set_cells),
        ("apps", "statefulsets") => (STATEFUL_SET_COLUMNS, stateful_set_cells),
        ("batch", "cronjobs") => (CRON_JOB_COLUMNS, cron_job_cells),
        ("batch", "jobs") => (JOB_COLUMNS, job_cells),
        ("policy", "poddisruptionbudgets") => (PDB_COLUMNS, pdb_cells),
        ("rbac.authorization.k8s.io", "clusterrolebindings") => (CLUSTER_ROLE_BINDING_COLUMNS, role_binding_cells),
        ("rbac.authorization.k8s.io", "rolebindings") => (ROLE_BINDING_COLUMNS, role_binding_cells),
        ("storage.k8s.io", "csidrivers") => (CSI_DRIVER_COLUMNS, csi_driver_cells),
        ("storage.k8s.io", "csinodes") => (CSI_NODE_COLUMNS, csi_node_cells),
        ("storage.k8s.io", "storageclasses") => (STORAGE_CLASS_COLUMNS, storage_class_cells),
        ("storage.k8s.io", "volumeattachments") => (VOLUME_ATTACHMENT_COLUMNS, volume_attachment_cells),
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations" | "validatingwebhookconfigurations") => {
            (WEBHOOK_COLUMNS, webhook_cells)
        }
        ("scheduling.k8s.io", "priorityclasses") => (PRIORITY_CLASS_COLUMNS, priority_class_cells),
        ("coordination.k8s.io", "leases") => (LEASE_COLUMNS, lease_cells),
        ("discovery.k8s.io", "endpointslices") => (ENDPOINT_SLICE_COLUMNS, endpoint_slice_cells),
        _ => (DEFAULT_COLUMNS, default_cells),
    };
    Printer { columns, cells, conditions: no_conditions }
}

/// Whether a kind has a printer of its own (else it gets `Name`, `Created At`): a built-in
/// printer, or the printer columns of a custom resource (`Name`, `Age` at the least).
pub fn has_printer(kind: &ResourceKind) -> bool {
    printer(kind).columns != DEFAULT_COLUMNS || CustomPrinter::of(kind).is_some()
}

// ---------------------------------------------------------------------------------------------
// Reading JSON objects.

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn int(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn flag(v: &Value, pointer: &str) -> Option<bool> {
    v.pointer(pointer).and_then(Value::as_bool)
}

fn list<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

fn map<'a>(v: &'a Value, pointer: &str) -> Option<&'a Map<String, Value>> {
    v.pointer(pointer).and_then(Value::as_object)
}

fn map_len(v: &Value, pointer: &str) -> usize {
    map(v, pointer).map_or(0, Map::len)
}

/// Present and not `null`.
fn is_set(v: &Value, pointer: &str) -> bool {
    v.pointer(pointer).is_some_and(|v| !v.is_null())
}

/// A field that is an object (`state.waiting`, `state.terminated` ...).
fn object_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a Value> {
    v.pointer(pointer).filter(|v| v.is_object())
}

fn name(obj: &Value) -> Value {
    json!(text(obj, "/metadata/name"))
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s.into()
    }
}

/// A number or string as Go's `IntOrString.String()` prints it.
fn int_or_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Times.

/// A timestamp (RFC 3339, as `metav1.Time` and `MicroTime` are written).
fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

fn time_at(v: &Value, pointer: &str) -> Option<OffsetDateTime> {
    parse_time(text(v, pointer))
}

/// `translateTimestampSince`: the human age of a timestamp, `<unknown>` when unset.
fn since(at: Option<OffsetDateTime>, now: OffsetDateTime) -> String {
    match at {
        Some(at) => human_duration(now - at),
        None => "<unknown>".into(),
    }
}

fn age(obj: &Value, now: OffsetDateTime) -> Value {
    json!(since(time_at(obj, "/metadata/creationTimestamp"), now))
}

/// `duration.HumanDuration` of k8s.io/apimachinery: a duration to two or three significant
/// figures ("5s", "3m20s", "12m", "4h10m", "20h", "3d4h", "120d", "2y10d", "9y"); within two
/// seconds in the past is "0s", further back is `<invalid>`.
pub fn human_duration(d: time::Duration) -> String {
    let seconds = d.whole_seconds();
    if seconds < -1 {
        return "<invalid>".into();
    } else if seconds < 0 {
        return "0s".into();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = d.whole_minutes();
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = d.whole_hours();
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        }
    } else if hours < 24 * 365 * 2 {
        format!("{}d", hours / 24)
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        }
    } else {
        format!("{}y", hours / 24 / 365)
    }
}

// ---------------------------------------------------------------------------------------------
// Labels, selectors, containers.

/// `labels.FormatLabels`: `a=1,b=2` sorted by key, `<none>` when empty.
fn format_labels(labels: Option<&Map<String, Value>>) -> String {
    let text = labels
        .map(|m| {
            let sorted: BTreeMap<&String, String> = m.iter().map(|(k, v)| (k, int_or_string(v))).collect();
            sorted.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
        })
        .unwrap_or_default();
    or_none(&text)
}

/// `LabelSelectorAsSelector(sel).String()`: requirements sorted by key (`app=web`,
/// `tier in (a,b)`, `tier notin (c)`, `key`, `!key`); empty for no selector; `None` when
/// the selector is invalid.
fn selector_string(selector: Option<&Value>) -> Option<String> {
    let Some(selector) = selector.filter(|s| s.is_object()) else {
        return Some(String::new());
    };
    let mut requirements: Vec<(String, String)> = Vec::new();
    for (key, value) in map(selector, "/matchLabels").into_iter().flatten() {
        requirements.push((key.clone(), format!("{key}={}", int_or_string(value))));
    }
    for expr in list(selector, "/matchExpressions") {
        let key = text(expr, "/key");
        let mut values: Vec<String> = list(expr, "/values").iter().map(int_or_string).collect();
        values.sort();
        let requirement = match (text(expr, "/operator"), values.is_empty()) {
            ("In", false) => format!("{key} in ({})", values.join(",")),
            ("NotIn", false) => format!("{key} notin ({})", values.join(",")),
            ("Exists", true) => key.to_string(),
            ("DoesNotExist", true) => format!("!{key}"),
            _ => return None,
        };
        requirements.push((key.to_string(), requirement));
    }
    requirements.sort_by(|a, b| a.0.cmp(&b.0));
    Some(requirements.into_iter().map(|(_, r)| r).collect::<Vec<_>>().join(","))
}

/// `metav1.FormatLabelSelector`: the selector, `<none>` when it selects everything or nothing.
fn format_label_selector(selector: Option<&Value>) -> String {
    match selector_string(selector) {
        Some(s) => or_none(&s),
        None => "<error>".into(),
    }
}

/// `layoutContainerCells`: the containers' names and images, comma-separated.
fn containers(containers: &[Value]) -> (Value, Value) {
    let names: Vec<&str> = containers.iter().map(|c| text(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(c, "/image")).collect();
    (json!(names.join(",")), json!(images.join(",")))
}

// ---------------------------------------------------------------------------------------------
// Pods.

const POD_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
    col("Status", "string", "The aggregate status of the containers in this pod."),
    col(
        "Restarts",
        "string",
        "The number of times the containers in this pod have been restarted and when the last container in this \
pod has restarted.",
    ),
    AGE,
    wide(
        "IP",
        "string",
        "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
    ),
    wide("Node", "string", "NodeName indicates in which node this pod is scheduled."),
    wide("Nominated Node", "string", "nominatedNodeName is set only when this pod preempts other pods on the node."),
    wide("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness."),
];

/// What a pod's `Ready`, `Status` and `Restarts` columns say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSummary {
    /// `ready/total` containers, sidecars (restartable init containers) included.
    pub ready: String,
    /// The phase, or the reason that best explains it (`ContainerCreating`,
    /// `CrashLoopBackOff`, `Init:0/2`, `Completed`, `Terminating` ...).
    pub status: String,
    /// The restart count, with `(5m ago)` when a container's last exit time is known.
    pub restarts: String,
}

fn latest(current: &mut Option<OffsetDateTime>, at: Option<OffsetDateTime>) {
    if let Some(at) = at {
        if current.is_none_or(|c| c < at) {
            *current = Some(at);
        }
    }
}

/// When a container last exited, if its last state was a termination.
fn last_termination(status: &Value) -> Option<Option<OffsetDateTime>> {
    object_at(status, "/lastState/terminated").map(|t| time_at(t, "/finishedAt"))
}

/// The first condition of `kind` is `True`.
fn first_condition_true(pod: &Value, kind: &str) -> bool {
    list(pod, "/status/conditions")
        .iter()
        .find(|c| text(c, "/type") == kind)
        .is_some_and(|c| text(c, "/status") == "True")
}

/// The `Ready`, `Status` and `Restarts` of a pod: kube-apiserver's `printPod`.
pub fn pod_summary(pod: &Value, now: OffsetDateTime) -> PodSummary {
    let mut restarts = 0;
    let mut restartable_restarts = 0;
    let mut ready = 0;
    let mut last_restart = None;
    let mut last_restartable_restart = None;
    // kube-apiserver sets a new pod's phase to Pending.
    let phase = match text(pod, "/status/phase") {
        "" => "Pending",
        phase => phase,
    };
    let status_reason = text(pod, "/status/reason");
    let mut reason = if status_reason.is_empty() { phase.to_string() } else { status_reason.to_string() };
    for condition in list(pod, "/status/conditions") {
        if text(condition, "/type") == "PodScheduled" && text(condition, "/reason") == "SchedulingGated" {
            reason = "SchedulingGated".into();
        }
    }

    let init_specs = list(pod, "/spec/initContainers");
    let restartable =
        |name: &str| init_specs.iter().any(|c| text(c, "/name") == name && text(c, "/restartPolicy") == "Always");
    let sidecars = init_specs.iter().filter(|c| text(c, "/restartPolicy") == "Always").count();
    let total = list(pod, "/spec/containers").len() + sidecars;

    let mut initializing = false;
    for (i, container) in list(pod, "/status/initContainerStatuses").iter().enumerate() {
        let count = int(container, "/restartCount");
        restarts += count;
        let finished = last_termination(container);
        if let Some(at) = finished {
            latest(&mut last_restart, at);
        }
        let sidecar = restartable(text(container, "/name"));
        if sidecar {
            restartable_restarts += count;
            if let Some(at) = finished {
                latest(&mut last_restartable_restart, at);
            }
        }
        let terminated = object_at(container, "/state/terminated");
        let waiting = object_at(container, "/state/waiting");
        if terminated.is_some_and(|t| int(t, "/exitCode") == 0) {
            continue;
        }
        if sidecar && flag(container, "/started") == Some(true) {
            if flag(container, "/ready") == Some(true) {
                ready += 1;
            }
            continue;
        }
        let waiting_reason = waiting.map_or("", |w| text(w, "/reason"));
        reason = if let Some(t) = terminated {
            match text(t, "/reason") {
                "" if int(t, "/signal") != 0 => format!("Init:Signal:{}", int(t, "/signal")),
                "" => format!("Init:ExitCode:{}", int(t, "/exitCode")),
                r => format!("Init:{r}"),
            }
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }

    if !initializing || first_condition_true(pod, "Initialized") {
        restarts = restartable_restarts;
        last_restart = last_restartable_restart;
        let mut has_running = false;
        for container in list(pod, "/status/containerStatuses").iter().rev() {
            restarts += int(container, "/restartCount");
            if let Some(at) = last_termination(container) {
                latest(&mut last_restart, at);
            }
            let waiting_reason = object_at(container, "/state/waiting").map_or("", |w| text(w, "/reason"));
            let terminated = object_at(container, "/state/terminated");
            if !waiting_reason.is_empty() {
                reason = waiting_reason.into();
            } else if let Some(t) = terminated {
                reason = match text(t, "/reason") {
                    "" if int(t, "/signal") != 0 => format!("Signal:{}", int(t, "/signal")),
                    "" => format!("ExitCode:{}", int(t, "/exitCode")),
                    r => r.into(),
                };
            } else if flag(container, "/ready") == Some(true) && object_at(container, "/state/running").is_some() {
                has_running = true;
                ready += 1;
            }
        }
        // A pod whose last container completed while another still runs is not complete.
        if reason == "Completed" && has_running {
            let pod_ready = list(pod, "/status/conditions")
                .iter()
                .any(|c| text(c, "/type") == "Ready" && text(c, "/status") == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.into();
        }
    }

    if is_set(pod, "/metadata/deletionTimestamp") && status_reason == "NodeLost" {
        reason = "Unknown".into();
    } else if is_set(pod, "/metadata/deletionTimestamp") && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".into();
    }
    let restarts = match last_restart {
        Some(at) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(at), now)),
        _ => restarts.to_string(),
    };
    PodSummary { ready: format!("{ready}/{total}"), status: reason, restarts }
}

fn pod_cells(pod: &Value, now: OffsetDateTime) -> Vec<Value> {
    let summary = pod_summary(pod, now);
    let ip =
        list(pod, "/status/podIPs").first().map(|ip| text(ip, "/ip")).unwrap_or_else(|| text(pod, "/status/podIP"));
    let gates = list(pod, "/spec/readinessGates");
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = list(pod, "/status/conditions");
        let true_gates = gates
            .iter()
            .filter(|gate| {
                let wanted = text(gate, "/conditionType");
                conditions.iter().find(|c| text(c, "/type") == wanted).is_some_and(|c| text(c, "/status") == "True")
            })
            .count();
        format!("{true_gates}/{}", gates.len())
    };
    vec![
        name(pod),
        json!(summary.ready),
        json!(summary.status),
        json!(summary.restarts),
        age(pod, now),
        json!(or_none(ip)),
        json!(or_none(text(pod, "/spec/nodeName"))),
        json!(or_none(text(pod, "/status/nominatedNodeName"))),
        json!(readiness_gates),
    ]
}

/// `Completed` rows for pods that succeeded or failed, as kube-apiserver marks them.
fn pod_conditions(pod: &Value) -> Option<Value> {
    let (reason, message) = match text(pod, "/status/phase") {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{"type": "Completed", "status": "True", "reason": reason, "message": message}]))
}

// ---------------------------------------------------------------------------------------------
// Workloads.

const DEPLOYMENT_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    col(
        "Up-to-date",
        "string",
        "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
    ),
    col(
        "Available",
        "string",
        "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    wide(
        "Selector",
        "string",
        "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by \
         this deployment.",
    ),
];

/// `spec.replicas`, defaulted to 1 as kube-apiserver does.
fn desired_replicas(obj: &Value) -> i64 {
    obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)
}

fn deployment_cells(obj: &Value, now: OffsetDateTime) -> Vec<Value> {
    let (names, images) = containers(list(obj, "/spec/template/spec/containers"));
    let selector = selector_string(obj.pointer("/spec/selector")).unwrap_or_else(|| "<invalid>".into());
    vec![
        name(obj),
        json!(format!("{}/{}", int(obj, "/status/readyReplicas"), desired_replicas(obj))),
        json!(int(obj, "/status/updatedReplicas")),
        json!(int(obj, "/status/availableReplicas")),
        age(obj, now),
        names,
        images,
        json!(selector),
    ]
}

const REPLICA_SET_COLUMNS: &[Column] = &[
    NAME,
    col("Desired", "integer", "Replicas is the number of desired pods."),
    col("Current", "integer", "Replicas is the most recently observed number of replicas."),
    col("Ready", "integer", "The number of ready replicas for this replica set."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

fn replica_set_cells(obj: &Value, now: OffsetDateTime) -> Vec<Value> {
    let (names, images) = containers(list(obj, "/spec/template/spec/containers"));
    vec![
        name(obj),
        json!(desired_replicas(obj)),
        json!(int(obj, "/status/replicas")),
        json!(int(obj, "/status/readyReplicas")),
        age(obj, now),
        names,
        images,
        json!(format_label_selector(obj.pointer("/spec/selector"))),
    ]
}

const STATEFUL_SET_COLUMNS: &[Column] =
    &[NAME, col("Ready", "string", "Number of the pod with ready state"), AGE, CONTAINERS, IMAGES];

fn stateful_set_cells(obj: &Value, now: OffsetDateTime) -> Vec<Value> {
    let (names, images) = containers(list(obj, "/spec/template/spec/containers"));
    vec![
        name(obj),
        json!(format!("{}/{}", int(obj, "/status/readyReplicas"), desired_replicas(obj))),
        age(obj, now),
        names,
        images,
    ]
}

const DAEMON_SET_COLUMNS: &[Column] = &[
    NAME,
    col("Desired", "integer", "The total number of nodes that should be running the daemon pod."),
    col(
        "Current",
        "integer",
        "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
    ),
    col(
        "Ready",
        "integer",
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and \
         ready.",
    ),
    col("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod"),
    col(
        "Available",
        "integer",
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and \
         available.",
    ),
    col("Node Selector", "string", "NodeSelector is a selector which must be true for the pod to fit on a node."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

fn daemon_set_cells(obj: &Value, now: OffsetDateTime) -> Vec<Value> {
    let (names, images) = containers(list(obj, "/spec/template/spec/containers"));
    vec![
        name(obj),
        json!(int(obj, "/status/desiredNumberScheduled")),
        json!(int(obj, "/status/currentNumberScheduled")),
        json!(int(obj, "/status/numberReady")),
        json!(int(obj, "/status/updatedNumberScheduled")),
        json!(int(obj, "/status/numberAvailable")),
        json!(format_labels(map(obj, "/spec/template/spec/nodeSelector"))),
        age(obj, now),
        names,
        images,
        json!(format_label_selector(obj.pointer("/spec/selector"))),
    ]
}

const JOB_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "Status of the job."),
    col("Completions", "string", "The number of pods which reached phase Succeeded."),
    col("Duration", "string", "Time required to complete the job."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

/// The status of the first condition of `kind` is `True`.
fn job_condition(job: &Value, kind: &str) -> bool {
    list(job, "/status/conditions")
        .iter()
        .find(|c| text(c, "/type") == kind)
        .is_some_and(|c| text(c, "/status") == "True")
}

fn job_cells(obj: &Value, now: OffsetDateTime) -> Vec<Value> {
    let succeeded = int(obj, "/status/succeeded");
    let completions = obj.pointer("/spec/completions").and_then(Value::as_i64);
    let parallelism = obj.pointer("/spec/parallelism").and_then(Value::as_i64);
    // kube-apiserver defaults both to 1 when neither is set.
    let completions = completions.or(if parallelism.is_none() { Some(1) } else { None });
    let completions = match (completions, parallelism.unwrap_or(1)) {
        (Some(c), _) => format!("{succeeded}/{c}"),
        (None, p) if p > 1 => format!("{succeeded}/1 of {p}"),
        (None, _) => format!("{succeeded}/1"),
    };
    let duration = match (time_at(obj, "/status/startTime"), time_at(obj, "/status/completionTime")) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now - start),
        (Some(start), Some(end)) => human_duration(end - start),
    };
    let status = if job_condition(obj, "Complete") {
        "Complete"
    } else if job_condition(obj, "Failed") {
        "Failed"
    } else if is_set(obj, "/metadata/deletionTimestamp") {
        "Terminating"
    } else if job_condition(obj, "Suspended") {
        "Suspended"
    } else if job_condition(obj, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (names, images) = containers(list(obj, "/spec/template/spec/containers"));
    vec![
        name(obj),
        json!(status),
        json!(completions),
        json!(duration),
        age(obj, now),
        names,
        images,
        json!(format_label_selector(obj.pointer("/spec/selector"))),
    ]
}

const CRON_JOB_COLUMNS: &[Column] = &[
    NAME,
    col("Schedule", "string", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
    col(
        "Timezone",
        "string",
        "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones.",
    ),
    col(
        "Suspend",
        "boolean",
        "This flag tells the controller to suspend subsequent executions, it does not apply to already started \
         executions. Defaults to false.",
    ),
    col("Active", "integer", "A list of pointers to currently running jobs."),
    col("Last Schedule", "string", "Information when was the last time the job was successfully scheduled."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

fn cron_job_cells(obj: &Value, now: OffsetDateTime) -> Vec<Value> {
    let last = match time_at(obj, "/status/lastScheduleTime") {
        Some(at) => since(Some(at), now),
        None => "<none>".into(),
    };
    let time_zone = obj.pointer("/spec/timeZone").and_then(Value::as_str).unwrap_or("<none>");
    // `suspend` defaults to false.
    let suspend = if flag(obj, "/spec/suspend").unwrap_or(false) { "True" } else { "False" };
    let (names, images) = containers(list(obj, "/spec/jobTemplate/spec/template/spec/containers"));
    vec![
        name(obj),
        json!(text(obj, "/spec/schedule")),
        json!(time_zone),
        json!(suspend),
        json!(list(obj, "/status/active").len()),
        json!(last),
        age(obj, now),
        names,
        images,
        json!(format_label_selector(obj.pointer("/spec/jobTemplate/spec/selector"))),
    ]
}

const CONTROLLER_REVISION_COLUMNS: &[Column] = &[
    NAME,
    col("Controller", "string", "Controller of the object"),
    col("Revision", "string", "Revision indicates the revision of the state represented by Data."),
    AGE,
];

fn controller_revision_cells(obj: &Value, now: OffsetDateTime) -> Vec<Value> {
    let owner = list(obj, "/metadata/ownerReferences").iter().find(|o| flag(o, "/controller") == Some(true));
    let controller = match owner {
        None => "<none>".to_string(),
        Some(owner) => {
            let api_version = text(owner, "/apiVersion");
            let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
            let kind = text(owner, "/kind");
            let group_kind = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
            if group_kind.is_empty() {
                text(owner, "/name").to_string()
            } else {
                format!("{}/{}", group_kind.to_lowercase(), text(owner, "/name"))
            }
        }
    };
    vec![name(obj), json!(controller), json!(int(obj, "/revision")), age(obj, now)]
}

const PDB_COLUMNS: &[Column] = &[
    NAME,
    col("Min Available", "string", "The minimum number of pods that must be available."),
    col("Max Unavailable", "string", "The maximum number of pods that may be unavailable."),
    col("Allowed Disruptions", "integer", "Calculated number of pods that may be disrupted at this time."),
    AGE,
];

fn pdb_cells(obj: &Value, now: OffsetDateTime) -> Vec<Value> {
    let field = |pointer: &str| obj.pointer(pointer).filter(|v| !v.is_null()).map_or("N/A".into(), int_or_string);
    vec![
        name(obj),
        json!(field("/spec/minAvailable")),
        json!(field("/spec/maxUnavailable")),
        json!(int(obj, "/status/disruptionsAllowed")),
        age(obj, now),
    ]
}

// ---------------------------------------------------------------------------------------------
// Services and endpoints.

const SERVICE_COLUMNS: &[Column] = &[
    NAME,
    col("Type", "string", "type determines how the Service is exposed. Defaults to ClusterIP."),
    col("Cluster-IP", "string", "clusterIP is the IP address of the service and is usually assigned randomly."),
    col(
        "External-IP",
        "string",
        "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this \
         service.",
    ),
    col("Port(s)", "string", "The list of ports that are exposed by this service."),
    AGE,
    wide("Selector", "string", "Route service traffic to pods with label keys and values matching this selector."),
];

/// `makePortString`: `80/TCP,443:30443/TCP` (`port[:nodePort]/protocol`, TCP by default).
pub fn service_ports(ports: &[Value]) -> String {
    ports
        .iter()
        .map(|port| {
            let protocol = match text(port, "/protocol") {
                "" => "TCP",
                p => p,
            };
            match int(port, "/nodePort") {
                node_port if node_port > 0 => format!("{}:{node_port}/{protocol}", int(port, "/port")),
                _ => format!("{}/{protocol}", int(port, "/port")),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `getServiceExternalIP` (wide): external IPs, load balancer ingress, or the external name.
fn service_external_ip(svc: &Value, kind: &str) -> String {
    let external: Vec<&str> = list(svc, "/spec/externalIPs").iter().filter_map(Value::as_str).collect();
    match kind {
        "ClusterIP" | "NodePort" => or_none(&external.join(",")),
        "LoadBalancer" => {
            let ingress: BTreeSet<&str> = list(svc, "/status/loadBalancer/ingress")
                .iter()
                .map(|i| match text(i, "/ip") {
                    "" => text(i, "/hostname"),
                    ip => ip,
                })
                .filter(|s| !s.is_empty())
                .collect();
            let mut all: Vec<&str> = ingress.into_iter().collect();
            all.extend(external);
            if all.is_empty() {
                "<pending>".into()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => text(svc, "/spec/externalName").into(),
        _ => "<unknown>".into(),
    }
}

fn service_cells(svc: &Value, now: OffsetDateTime) -> Vec<Value> {
    // The type defaults to ClusterIP; clusterIPs mirrors clusterIP.
    let kind = match text(svc, "/spec/type") {
        "" => "ClusterIP",
        t => t,
    };
    let cluster_ip =
        list(svc, "/spec/clusterIPs").first().and_then(Value::as_str).unwrap_or_else(|| text(svc, "/spec/clusterIP"));
    vec![
        name(svc),
        json!(kind),
        json!(or_none(cluster_ip)),
        json!(service_external_ip(svc, kind)),
        json!(or_none(&service_ports(list(svc, "/spec/ports")))),
        age(svc, now),
        json!(format_labels(map(svc, "/spec/selector"))),
    ]
}

const ENDPOINTS_COLUMNS: &[Column] =
    &[NAME, col("Endpoints", "string", "The set of all endpoints is the union of all subsets."), AGE];

/// `host:port`, with brackets around IPv6 hosts (Go's `net.JoinHostPort`).
fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// `a,b,c + 2 more...` for lists cut at three.
fn with_more(list: &[String], count: usize, max: usize) -> String {
    let joined = list.join(",");
    if count > max {
        format!("{joined} + {} more...", count - max)
    } else {
        joined
    }
}

/// `formatEndpoints`: up to three `ip:port` (or bare IPs for port-less subsets).
pub fn format_endpoints(endpoints: &Value) -> String {
    let subsets = list(endpoints, "/subsets");
    if subsets.is_empty() {
        return "<none>".into();
    }
    const MAX: usize = 3;
    let mut shown = Vec::new();
    let mut count = 0;
    for subset in subsets {
        let addresses = list(subset, "/addresses");
        let ports = list(subset, "/ports");
        if ports.is_empty() {
            count += addresses.len();
            shown.extend(addresses.iter().map(|a| text(a, "/ip").to_string()).take(MAX - shown.len().min(MAX)));
            continue;
        }
        for port in ports {
            count += addresses.len();
            for address in addresses {
                if shown.len() == MAX {
                    break;
                }
                shown.push(join_host_port(text(address, "/ip"), int(port, "/port")));
            }
        }
    }
    with_more(&shown, count, MAX)
}

fn endpoints_cells(obj: &Value, now: OffsetDateTime) -> Vec<Value> {
    vec![name(obj), json!(format_endpoints(obj)), age(obj, now)]
}

const ENDPOINT_SLICE_COLUMNS: &[Column] = &[
    NAME,
    col("AddressType", "string", "addressType specifies the type of address carried by this EndpointSlice."),
    col("Ports", "string", "ports specifies the list of network ports exposed by each endpoint in this slice."),
    col("Endpoints", "string", "endpoints is a list of unique endpoints in this slice."),
    AGE,
];

/// `listWithMoreString`: like [`with_more`], `<unset>` when empty.
fn unset_or_more(list: &[String], count: usize, max: usize) -> String {
    match with_more(list, count, max) {
        s if s.is_empty() => "<unset>".into(),
        s => s,
    }
}

fn endpoint_slice_cells(obj: &Value, now: OffsetDateTime) -> Vec<Value> {
    const MAX: usize = 3;
    let ports = list(obj, "/ports");
    let port_names: Vec<String> = ports
        .iter()
        .take(MAX)
        .map(|p| match (p.get("port").and_then(Value::as_i64), p.get("name").and_then(Value::as_str)) {
            (Some(port), _) => port.to_string(),
            (None, Some(name)) => name.to_string(),
            (None, None) => "*".into(),
        })
        .collect();
    let addresses: Vec<&Value> = list(obj, "/endpoints").iter().flat_map(|e| list(e, "/addresses")).collect();
    let shown: Vec<String> = addresses.iter().take(MAX).map(|a| a.as_str().unwrap_or("").to_string()).collect();
    vec![
        name(obj),
        json!(text(obj, "/addressType")),
        json!(unset_or_more(&port_names, ports.len(), MAX)),
        json!(unset_or_more(&shown, addresses.len(), MAX)),
        age(obj, now),
    ]
}

// ---------------------------------------------------------------------------------------------
// Config, identity, namespaces, nodes.

const NAMESPACE_COLUMNS: &[Column] = &[NAME, col("Status", "string", "The status of the namespace"), AGE];

fn namespace_cells(obj: &Value, now: OffsetDateTime) -> Vec<Value> {
    // kube-apiserver sets the phase: Active on create, Terminating on delete.
    let phase = match text(obj, "/status/phase") {
        "" if is_set(obj, "/metadata/deletionTimestamp") => "Terminating",
        "" => "Active",
        phase => phase,
    };
    vec![name(obj), json!(phase), age(obj, now)]
}

const CONFIGMAP_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Data",
        "string",
        "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'.",
    ),
    AGE,
];

fn configmap_cells(obj: &Value, now: OffsetDateTime) -> Vec<Value> {
    vec![name(obj), json!(map_len(obj, "/data") + map_len(obj, "/binaryData")), age(obj, now)]
}

const SECRET_COLUMNS: &[Column] = &[
    NAME,
    col("Type", "string", "Used to facilitate programmatic handling of secret data."),
    col(
        "Data",
        "string",
        "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'.",
    ),
    AGE,
];

fn secret_cells(obj: &Value, now: OffsetDateTime) -> Vec<Value> {
    // kube-apiserver merges stringData into data on write and defaults the type to Opaque.
    let keys: BTreeSet<&String> =
        map(obj, "/data").into_iter().chain(map(obj, "/stringData")).flat_map(Map::keys).collect();
    let kind = match text(obj, "/type") {
        "" => "Opaque",
        t => t,
    };
    vec![name(obj), json!(kind), json!(keys.len()), age(obj, now)]
}

const SERVICE_ACCOUNT_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Secrets",
        "string",
        "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are \
         allowed to use.",
    ),
    AGE,
];

fn service_account_cells(obj: &Value, now: OffsetDateTime) -> Vec<Value> {
    vec![name(obj), json!(list(obj, "/secrets").len()), age(obj, now)]
}

const NODE_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the node"),
    col("Roles", "string", "The roles of the node"),
    AGE,
    col("Version", "string", "Kubelet Version reported by the node."),
    wide("Internal-IP", "string", "List of addresses reachable to the node."),
    wide("External-IP", "string", "List of addresses reachable to the node."),
    wide(
        "OS-Image",
        "string",
        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
    ),
    wide(
        "Kernel-Version",
        "string",
        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
    ),
    wide(
        "Container-Runtime",
        "string",
        "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
    ),
];

/// `findNodeRoles`: `node-role.kubernetes.io/<role>` labels and `kubernetes.io/role=<role>`.
fn node_roles(node: &Value) -> String {
    let mut roles = BTreeSet::new();
    for (key, value) in map(node, "/metadata/labels").into_iter().flatten() {
        if let Some(role) = key.strip_prefix("node-role.kubernetes.io/").filter(|r| !r.is_empty()) {
            roles.insert(role.to_string());
        } else if key == "kubernetes.io/role" {
            if let Some(role) = value.as_str().filter(|r| !r.is_empty()) {
                roles.insert(role.to_string());
            }
        }
    }
    or_none(&roles.into_iter().collect::<Vec<_>>().join(","))
}

fn node_address(node: &Value, kind: &str) -> String {
    let address = list(node, "/status/addresses").iter().find(|a| text(a, "/type") == kind);
    address.map_or("<none>".into(), |a| text(a, "/address").to_string())
}

fn node_cells(node: &Value, now: OffsetDateTime) -> Vec<Value> {
    // The last Ready condition wins, as in kube's map of conditions by type.
    let ready = list(node, "/status/conditions").iter().rev().find(|c| text(c, "/type") == "Ready");
    let mut status = vec![match ready {
        Some(c) if text(c, "/status") == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if flag(node, "/spec/unschedulable") == Some(true) {
        status.push("SchedulingDisabled");
    }
    let info = |field: &str| match text(node, &format!("/status/nodeInfo/{field}")) {
        "" => "<unknown>".to_string(),
        v => v.to_string(),
    };
    vec![
        name(node),
        json!(status.join(",")),
        json!(node_roles(node)),
        age(node, now),
        json!(text(node, "/status/nodeInfo/kubeletVersion")),
        json!(node_address(node, "InternalIP")),
        json!(node_address(node, "ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

const RESOURCE_QUOTA_COLUMNS: &[Column] = &[
    NAME,
    col("Request", "string", "Request represents a minimum amount of cpu/memory that a container may consume."),
    col(
        "Limit",
        "string",
        "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the \
         node.",
    ),
    AGE,
];

fn resource_quota_cells(obj: &Value, now: OffsetDateTime) -> Vec<Value> {
    let hard: BTreeMap<&String, &Value> = map(obj, "/status/hard").into_iter().flatten().collect();
    let used = map(obj, "/status/used");
    let (mut requests, mut limits) = (Vec::new(), Vec::new());
    for (resource, hard) in hard {
        let used = used.and_then(|u| u.get(resource.as_str())).map_or("0".into(), int_or_string);
        let entry = format!("{resource}: {used}/{}", int_or_string(hard));
        let pieces: Vec<&str> = resource.split('.').collect();
        if pieces.len() > 1 && pieces[0] == "limits" {
            limits.push(entry);
        } else {
            requests.push(entry);
        }
    }
    vec![name(obj), json!(requests.join(", ")), json!(limits.join(", ")), age(obj, now)]
}

// ---------------------------------------------------------------------------------------------
// Events.

const EVENT_COLUMNS: &[Column] = &[
    col("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded."),
    col("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future"),
    col(
        "Reason",
        "string",
        "This should be a short, machine understandable string that gives the reason for the transition into the \
         object's current status.",
    ),
    col("Object", "string", "The object that this event is about."),
    wide(
        "Subobject",
        "string",
        "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go \
         field access statement, such as desiredState.manifest.containers[2].",
    ),
    wide("Source", "string", "The component reporting this event. Should be a short machine understandable string."),
    col("Message", "string", "A human-readable description of the status of this operation."),
    wide(
        "First Seen",
        "string",
        "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
    ),
    wide("Count", "string", "The number of times this event has occurred."),
    Column { name: "Name", kind: "string", format: "name", description: NAME_DOC, priority: 1 },
];

/// `firstNonEmpty` of two strings.
fn first_non_empty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() {
        b
    } else {
        a
    }
}

/// The fields of a core/v1 event, read from either API (events.k8s.io/v1 renames them).
fn event_field<'a>(event: &'a Value, core: &str, events_api: &str) -> Option<&'a Value> {
    event.pointer(core).or_else(|| event.pointer(events_api)).filter(|v| !v.is_null())
}

fn event_cells(event: &Value, now: OffsetDateTime) -> Vec<Value> {
    let time = |core: &str, events_api: &str| {
        event_field(event, core, events_api).and_then(Value::as_str).and_then(parse_time)
    };
    let micro_since = |pointer: &str| since(time_at(event, pointer), now);
    let first_seen = match time("/firstTimestamp", "/deprecatedFirstTimestamp") {
        Some(at) => since(Some(at), now),
        None => micro_since("/eventTime"),
    };
    let mut last_seen = match time("/lastTimestamp", "/deprecatedLastTimestamp") {
        Some(at) => since(Some(at), now),
        None => first_seen.clone(),
    };
    let mut count = event_field(event, "/count", "/deprecatedCount").and_then(Value::as_i64).unwrap_or(0);
    if let Some(series) = object_at(event, "/series") {
        last_seen = since(time_at(series, "/lastObservedTime"), now);
        count = int(series, "/count");
    } else if count == 0 {
        // Singleton events have no count in the new API.
        count = 1;
    }
    let involved = event_field(event, "/involvedObject", "/regarding").cloned().unwrap_or(Value::Null);
    let target = match text(&involved, "/name") {
        "" => text(&involved, "/kind").to_lowercase(),
        name => format!("{}/{name}", text(&involved, "/kind").to_lowercase()),
    };
    let source = event_field(event, "/source", "/deprecatedSource").cloned().unwrap_or(Value::Null);
    let component = first_non_empty(text(&source, "/component"), text(event, "/reportingController"));
    let host = first_non_empty(text(&source, "/host"), text(event, "/reportingInstance"));
    let source = if host.is_empty() { component.to_string() } else { format!("{component}, {host}") };
    let message = event_field(event, "/message", "/note").and_then(Value::as_str).unwrap_or("");
    vec![
        json!(last_seen),
        json!(text(event, "/type")),
        json!(text(event, "/reason")),
        json!(target),
        json!(text(&involved, "/fieldPath")),
        json!(source),
        json!(message.trim()),
        json!(first_seen),
        json!(count),
        name(event),
    ]
}

// ---------------------------------------------------------------------------------------------
// Storage.

const PV_COLUMNS: &[Column] = &[
    NAME,
    col("Capacity", "string", "capacity is the description of the persistent volume's resources and capacity."),
    col("Access Modes", "string", "accessModes contains all ways the volume can be mounted."),
    col(
        "Reclaim Policy",
        "string",
        "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim.",
    ),
    col("Status", "string", "phase indicates if a volume is available, bound to a claim, or released by a claim."),
    col(
        "Claim",
        "string",
        "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim.",
    ),
    col("StorageClass", "string", "StorageClass of the pv"),
    col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pv"),
    col(
        "Reason",
        "string",
        "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy \
         display in the CLI.",
    ),
    AGE,
    wide(
        "VolumeMode",
        "string",
        "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block \
         state.",
    ),
];

/// `GetAccessModesAsString`: `RWO,ROX,RWX,RWOP`, in that order.
fn access_modes(modes: &[Value]) -> String {
    let has = |mode: &str| modes.iter().any(|m| m.as_str() == Some(mode));
    [("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"), ("ReadWriteOncePod", "RWOP")]
        .iter()
        .filter(|(mode, _)| has(mode))
        .map(|(_, short)| *short)
        .collect::<Vec<_>>()
        .join(",")
}

/// The storage class: the beta annotation, else `spec.storageClassName`.
fn storage_class(obj: &Value) -> String {
    let annotation = map(obj, "/metadata/annotations")
        .and_then(|a| a.get("volume.beta.kubernetes.io/storage-class"))
        .and_then(Value::as_str);
    annotation.unwrap_or_else(|| text(obj, "/spec/storageClassName")).to_string()
}

fn pv_cells(obj: &Value, now: OffsetDateTime) -> Vec<Value> {
    let claim = object_at(obj, "/spec/claimRef")
        .map_or(String::new(), |c| format!("{}/{}", text(c, "/namespace"), text(c, "/name")));
    let capacity = obj.pointer("/spec/capacity/storage").map_or("0".into(), int_or_string);
    // The phase defaults to Pending and the volume mode to Filesystem.
    let phase = match text(obj, "/status/phase") {
        _ if is_set(obj, "/metadata/deletionTimestamp") => "Terminating",
        "" => "Pending",
        p => p,
    };
    let volume_mode = match text(obj, "/spec/volumeMode") {
        "" => "Filesystem",
        m => m,
    };
    let attributes_class = obj.pointer("/spec/volumeAttributesClassName").and_then(Value::as_str).unwrap_or("<unset>");
    let reclaim = match text(obj, "/spec/persistentVolumeReclaimPolicy") {
        "" => "Retain",
        r => r,
    };
    vec![
        name(obj),
        json!(capacity),
        json!(access_modes(list(obj, "/spec/accessModes"))),
        json!(reclaim),
        json!(phase),
        json!(claim),
        json!(storage_class(obj)),
        json!(attributes_class),
        json!(text(obj, "/status/reason")),
        age(obj, now),
        json!(volume_mode),
    ]
}

const PVC_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "phase represents the current phase of PersistentVolumeClaim."),
    col("Volume", "string", "volumeName is the binding reference to the PersistentVolume backing this claim."),
    col("Capacity", "string", "capacity represents the actual resources of the underlying volume."),
    col("Access Modes", "string", "accessModes contains the actual access modes the volume backing the PVC has."),
    col("StorageClass", "string", "StorageClass of the pvc"),
    col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pvc"),
    AGE,
    wide("VolumeMode", "string", "volumeMode defines what type of volume is required by the claim."),
];

fn pvc_cells(obj: &Value, now: OffsetDateTime) -> Vec<Value> {
    let phase = match text(obj, "/status/phase") {
        _ if is_set(obj, "/metadata/deletionTimestamp") => "Terminating",
        "" => "Pending",
        p => p,
    };
    let volume = text(obj, "/spec/volumeName");
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        let capacity = obj.pointer("/status/capacity/storage").map_or("0".into(), int_or_string);
        (capacity, access_modes(list(obj, "/status/accessModes")))
    };
    let volume_mode = match text(obj, "/spec/volumeMode") {
        "" => "Filesystem",
        m => m,
    };
    let attributes_class = obj.pointer("/spec/volumeAttributesClassName").and_then(Value::as_str).unwrap_or("<unset>");
    vec![
        name(obj),
        json!(phase),
        json!(volume),
        json!(capacity),
        json!(modes),
        json!(storage_class(obj)),
        json!(attributes_class),
        age(obj, now),
        json!(volume_mode),
    ]
}

const STORAGE_CLASS_COLUMNS: &[Column] = &[
    NAME,
    col("Provisioner", "string", "provisioner indicates the type of the provisioner."),
    col(
        "ReclaimPolicy",
        "string",
        "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage \
         class. Defaults to Delete.",
    ),
    col(
        "VolumeBindingMode",
        "string",
        "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound. When unset, \
         VolumeBindingImmediate is used.",
    ),
    col("AllowVolumeExpansion", "string", "allowVolumeExpansion shows whether the storage class allow volume expand."),
    AGE,
];

fn storage_class_cells(obj: &Value, now: OffsetDateTime) -> Vec<Value> {
    let annotations = map(obj, "/metadata/annotations");
    let default = ["storageclass.kubernetes.io/is-default-class", "storageclass.beta.kubernetes.io/is-default-class"]
        .iter()
        .any(|key| annotations.and_then(|a| a.get(*key)).and_then(Value::as_str) == Some("true"));
    let name = if default {
        format!("{} (default)", text(obj, "/metadata/name"))
    } else {
        text(obj, "/metadata/name").to_string()
    };
    let reclaim = obj.pointer("/reclaimPolicy").and_then(Value::as_str).unwrap_or("Delete");
    let binding = obj.pointer("/volumeBindingMode").and_then(Value::as_str).unwrap_or("Immediate");
    vec![
        json!(name),
        json!(text(obj, "/provisioner")),
        json!(reclaim),
        json!(binding),
        json!(flag(obj, "/allowVolumeExpansion").unwrap_or(false)),
        age(obj, now),
    ]
}

const CSI_DRIVER_COLUMNS: &[Column] = &[
    NAME,
    col("AttachRequired", "boolean", "attachRequired indicates this CSI volume driver requires an attach operation."),
    col(
        "PodInfoOnMount",
        "boolean",
        "podInfoOnMount indicates this CSI volume driver requires additional pod information (like podName, podUID, \
         etc.) during mount operations.",
    ),
    col(
        "StorageCapacity",
        "boolean",
        "storageCapacity indicates that the CSI volume driver wants pod scheduling to consider the storage capacity.",
    ),
    col(
        "TokenRequests",
        "string",
        "tokenRequests indicates the CSI driver needs pods' service account tokens it is mounting volume for to do \
         necessary authentication.",
    ),
    col(
        "RequiresRepublish",
        "boolean",
        "requiresRepublish indicates the CSI driver wants `NodePublishVolume` being periodically called to reflect \
         any possible change in the mounted volume.",
    ),
    col("Modes", "string", "volumeLifecycleModes defines what kind of volumes this CSI volume driver supports."),
    AGE,
];

fn csi_driver_cells(obj: &Value, now: OffsetDateTime) -> Vec<Value> {
    let modes: Vec<&str> = list(obj, "/spec/volumeLifecycleModes").iter().filter_map(Value::as_str).collect();
    // volumeLifecycleModes defaults to Persistent.
    let modes = if modes.is_empty() { "Persistent".to_string() } else { modes.join(",") };
    let tokens = match obj.pointer("/spec/tokenRequests").and_then(Value::as_array) {
        None => "<unset>".to_string(),
        Some(tokens) => tokens.iter().map(|t| text(t, "/audience")).collect::<Vec<_>>().join(","),
    };
    vec![
        name(obj),
        json!(flag(obj, "/spec/attachRequired").unwrap_or(true)),
        json!(flag(obj, "/spec/podInfoOnMount").unwrap_or(false)),
        json!(flag(obj, "/spec/storageCapacity").unwrap_or(false)),
        json!(tokens),
        json!(flag(obj, "/spec/requiresRepublish").unwrap_or(false)),
        json!(modes),
        age(obj, now),
    ]
}

const CSI_NODE_COLUMNS: &[Column] =
    &[NAME, col("Drivers", "integer", "Drivers indicates the number of CSI drivers registered on the node"), AGE];

fn csi_node_cells(obj: &Value, now: OffsetDateTime) -> Vec<Value> {
    vec![name(obj), json!(list(obj, "/spec/drivers").len()), age(obj, now)]
}

const VOLUME_ATTACHMENT_COLUMNS: &[Column] = &[
    NAME,
    Column {
        name: "Attacher",
        kind: "string",
        format: "name",
        description: "Attacher indicates the name of the volume driver that MUST handle this request.",
        priority: 0,
    },
    col("PV", "string", "persistentVolumeName represents the name of the persistent volume to attach."),
    col("Node", "string", "nodeName represents the node that the volume should be attached to."),
    col("Attached", "boolean", "attached indicates the volume is successfully attached."),
    AGE,
];

fn volume_attachment_cells(obj: &Value, now: OffsetDateTime) -> Vec<Value> {
    vec![
        name(obj),
        json!(text(obj, "/spec/attacher")),
        json!(text(obj, "/spec/source/persistentVolumeName")),
        json!(text(obj, "/spec/nodeName")),
        json!(flag(obj, "/status/attached").unwrap_or(false)),
        age(obj, now),
    ]
}

// ---------------------------------------------------------------------------------------------
// Cluster configuration.

const ROLE_BINDING_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Role",
        "string",
        "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace.",
    ),
    AGE,
    wide("Users", "string", "Users in the roleBinding"),
    wide("Groups", "string", "Groups in the roleBinding"),
    wide("ServiceAccounts", "string", "ServiceAccounts in the roleBinding"),
];

const CLUSTER_ROLE_BINDING_COLUMNS: &[Column] = &[
    NAME,
    col("Role", "string", "RoleRef can only reference a ClusterRole in the global namespace."),
    AGE,
    wide("Users", "string", "Users in the clusterRoleBinding"),
    wide("Groups", "string", "Groups in the clusterRoleBinding"),
    wide("ServiceAccounts", "string", "ServiceAccounts in the clusterRoleBinding"),
];

fn role_binding_cells(obj: &Value, now: OffsetDateTime) -> Vec<Value> {
    let (mut users, mut groups, mut accounts) = (Vec::new(), Vec::new(), Vec::new());
    for subject in list(obj, "/subjects") {
        match text(subject, "/kind") {
            "ServiceAccount" => accounts.push(format!("{}/{}", text(subject, "/namespace"), text(subject, "/name"))),
            "User" => users.push(text(subject, "/name").to_string()),
            "Group" => groups.push(text(subject, "/name").to_string()),
            _ => {}
        }
    }
    vec![
        name(obj),
        json!(format!("{}/{}", text(obj, "/roleRef/kind"), text(obj, "/roleRef/name"))),
        age(obj, now),
        json!(users.join(", ")),
        json!(groups.join(", ")),
        json!(accounts.join(", ")),
    ]
}

const WEBHOOK_COLUMNS: &[Column] = &[
    NAME,
    col("Webhooks", "integer", "Webhooks indicates the number of webhooks registered in this configuration"),
    AGE,
];

fn webhook_cells(obj: &Value, now: OffsetDateTime) -> Vec<Value> {
    vec![name(obj), json!(list(obj, "/webhooks").len()), age(obj, now)]
}

const PRIORITY_CLASS_COLUMNS: &[Column] = &[
    NAME,
    col("Value", "integer", "value represents the integer value of this priority class."),
    col(
        "Global-Default",
        "boolean",
        "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods \
         that do not have any priority class.",
    ),
    AGE,
    col(
        "PreemptionPolicy",
        "string",
        "preemptionPolicy is the Policy for preempting pods with lower priority. Defaults to PreemptLowerPriority.",
    ),
];

fn priority_class_cells(obj: &Value, now: OffsetDateTime) -> Vec<Value> {
    let policy = obj.pointer("/preemptionPolicy").and_then(Value::as_str).unwrap_or("PreemptLowerPriority");
    vec![
        name(obj),
        json!(int(obj, "/value")),
        json!(flag(obj, "/globalDefault").unwrap_or(false)),
        age(obj, now),
        json!(policy),
    ]
}

const LEASE_COLUMNS: &[Column] =
    &[NAME, col("Holder", "string", "holderIdentity contains the identity of the holder of a current lease."), AGE];

fn lease_cells(obj: &Value, now: OffsetDateTime) -> Vec<Value> {
    vec![name(obj), json!(text(obj, "/spec/holderIdentity")), age(obj, now)]
}

const API_SERVICE_COLUMNS: &[Column] = &[
    NAME,
    col("Service", "string", "The reference to the service that hosts this API endpoint."),
    col("Available", "string", "Whether this service is available."),
    AGE,
];

/// kube-aggregator's table: `Local` or `namespace/name`, and the `Available` condition.
fn api_service_cells(obj: &Value, now: OffsetDateTime) -> Vec<Value> {
    let service = match object_at(obj, "/spec/service") {
        Some(s) => format!("{}/{}", text(s, "/namespace"), text(s, "/name")),
        None => "Local".into(),
    };
    let available = list(obj, "/status/conditions").iter().find(|c| text(c, "/type") == "Available");
    let available = match available {
        None => "Unknown".to_string(),
        Some(c) if text(c, "/status") == "True" => "True".into(),
        Some(c) if !text(c, "/reason").is_empty() => format!("{} ({})", text(c, "/status"), text(c, "/reason")),
        Some(c) => text(c, "/status").into(),
    };
    vec![name(obj), json!(service), json!(available), age(obj, now)]
}

// ---------------------------------------------------------------------------------------------
// The default table.

const DEFAULT_COLUMNS: &[Column] = &[NAME, col("Created At", "date", CREATED_DOC)];

/// `Name` and the creation time in RFC 3339 (UTC), as kube-apiserver's default convertor.
fn default_cells(obj: &Value, _now: OffsetDateTime) -> Vec<Value> {
    let created = time_at(obj, "/metadata/creationTimestamp")
        .and_then(|t| t.to_offset(time::UtcOffset::UTC).replace_nanosecond(0).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".into());
    vec![name(obj), json!(created)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use actors::kinds;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
    }

    /// RFC 3339 of `now() - seconds`.
    fn ago(seconds: i64) -> String {
        (now() - time::Duration::seconds(seconds)).format(&Rfc3339).unwrap()
    }

    fn kind(group: &str, resource: &str) -> &'static ResourceKind {
        kinds::find(group, "v1", resource).unwrap()
    }

    const V1: TableOptions = TableOptions { version: "v1", include: IncludeObject::Metadata };

    #[test]
    fn human_durations_match_kubernetes() {
        let s = time::Duration::seconds;
        let cases = [
            (time::Duration::milliseconds(-1500), "0s"),
            (s(-2), "<invalid>"),
            (s(0), "0s"),
            (s(1), "1s"),
            (s(119), "119s"),
            (s(120), "2m"),
            (s(125), "2m5s"),
            (s(9 * 60 + 59), "9m59s"),
            (s(10 * 60), "10m"),
            (s(179 * 60 + 59), "179m"),
            (s(3 * 3600), "3h"),
            (s(3 * 3600 + 60), "3h1m"),
            (s(7 * 3600 + 59 * 60), "7h59m"),
            (s(8 * 3600), "8h"),
            (s(47 * 3600 + 59 * 60), "47h"),
            (s(48 * 3600), "2d"),
            (s(49 * 3600), "2d1h"),
            (s(8 * 86400 - 1), "7d23h"),
            (s(8 * 86400), "8d"),
            (s(729 * 86400), "729d"),
            (s(730 * 86400), "2y"),
            (s(731 * 86400), "2y1d"),
            (s(8 * 365 * 86400), "8y"),
        ];
        for (d, want) in cases {
            assert_eq!(human_duration(d), want, "{d}");
        }
    }

    #[test]
    fn accept_headers_pick_tables_by_the_first_json_clause() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;\
                       g=meta.k8s.io,application/json";
        assert_eq!(table_version(kubectl), Some("v1"));
        assert_eq!(table_version("application/json;as=Table;v=v1beta1;g=meta.k8s.io"), Some("v1beta1"));
        assert_eq!(table_version("application/json; as=Table; g=meta.k8s.io; v=v1, */*"), Some("v1"));
        assert_eq!(table_version("application/json"), None);
        assert_eq!(table_version(""), None);
        assert_eq!(table_version("application/json, application/json;as=Table;v=v1;g=meta.k8s.io"), None);
        // Forms not served here are passed over.
        assert_eq!(
            table_version("application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json"),
            None
        );
        assert_eq!(table_version("application/json;as=Table;v=v2;g=meta.k8s.io,application/json"), None);
        assert_eq!(
            table_version(
                "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,\
                 application/json;as=Table;v=v1;g=meta.k8s.io"
            ),
            Some("v1")
        );
        assert_eq!(table_version("application/json;as=Table;v=v1;g=meta.k8s.io;q=0,application/json"), None);
    }

    #[test]
    fn include_object_defaults_to_metadata_and_rejects_unknown_values() {
        assert_eq!(include_object("").unwrap(), IncludeObject::Metadata);
        assert_eq!(include_object("includeObject=Metadata&limit=5").unwrap(), IncludeObject::Metadata);
        assert_eq!(include_object("includeObject=None").unwrap(), IncludeObject::None);
        assert_eq!(include_object("includeObject=Object").unwrap(), IncludeObject::Object);
        let err = include_object("includeObject=All").unwrap_err();
        assert_eq!(err.code(), 400);
    }

    fn pod(status: Value) -> Value {
        json!({
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {"name": "p", "creationTimestamp": ago(300)},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": status,
        })
    }

    fn summary(pod: &Value) -> (String, String, String) {
        let s = pod_summary(pod, now());
        (s.ready, s.status, s.restarts)
    }

    fn owned(a: &str, b: &str, c: &str) -> (String, String, String) {
        (a.into(), b.into(), c.into())
    }

    #[test]
    fn pod_status_is_the_phase_or_the_most_telling_container_reason() {
        let running = json!({"running": {"startedAt": ago(60)}});
        // Both containers running and ready.
        let p = pod(json!({"phase": "Running", "containerStatuses": [
            {"name": "a", "ready": true, "restartCount": 0, "state": running},
            {"name": "b", "ready": true, "restartCount": 0, "state": running},
        ]}));
        assert_eq!(summary(&p), owned("2/2", "Running", "0"));
        // A waiting container's reason wins; restarts add up, with the last exit's age.
        let p = pod(json!({"phase": "Running", "containerStatuses": [
            {"name": "a", "ready": true, "restartCount": 1, "state": running},
            {"name": "b", "ready": false, "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
             "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(90)}}},
        ]}));
        assert_eq!(summary(&p), owned("1/2", "CrashLoopBackOff", "5 (90s ago)"));
        // Pending with nothing reported yet.
        assert_eq!(summary(&pod(json!({"phase": "Pending"}))), owned("0/2", "Pending", "0"));
        assert_eq!(summary(&pod(json!({}))), owned("0/2", "Pending", "0"));
        let p = pod(json!({"phase": "Pending", "containerStatuses": [
            {"name": "a", "state": {"waiting": {"reason": "ContainerCreating"}}},
        ]}));
        assert_eq!(summary(&p).1, "ContainerCreating");
        // Terminated containers: reason, else signal, else exit code.
        let term = |t: Value| {
            pod(json!({"phase": "Failed", "containerStatuses": [{"name": "a", "state": {"terminated": t}}]}))
        };
        assert_eq!(summary(&term(json!({"reason": "OOMKilled", "exitCode": 137}))).1, "OOMKilled");
        assert_eq!(summary(&term(json!({"signal": 9, "exitCode": 137}))).1, "Signal:9");
        assert_eq!(summary(&term(json!({"exitCode": 2}))).1, "ExitCode:2");
        // Completed while another container still runs: NotReady (or Running when the pod is Ready).
        let p = pod(json!({"phase": "Running", "containerStatuses": [
            {"name": "a", "ready": true, "state": running},
            {"name": "b", "state": {"terminated": {"reason": "Completed", "exitCode": 0}}},
        ]}));
        assert_eq!(summary(&p), owned("1/2", "NotReady", "0"));
        let mut ready = p.clone();
        ready["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
        assert_eq!(summary(&ready).1, "Running");
        // The pod's own reason, and scheduling gates.
        assert_eq!(summary(&pod(json!({"phase": "Failed", "reason": "Evicted"}))).1, "Evicted");
        let gated = pod(json!({"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}));
        assert_eq!(summary(&gated).1, "SchedulingGated");
    }

    #[test]
    fn deleted_pods_are_terminating_unless_done_or_lost() {
        let mut p = pod(json!({"phase": "Running"}));
        p["metadata"]["deletionTimestamp"] = json!(ago(1));
        assert_eq!(summary(&p).1, "Terminating");
        p["status"]["phase"] = json!("Succeeded");
        assert_eq!(summary(&p).1, "Succeeded");
        p["status"] = json!({"phase": "Running", "reason": "NodeLost"});
        assert_eq!(summary(&p).1, "Unknown");
    }

    #[test]
    fn init_containers_show_their_progress() {
        let mut p = pod(json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "i1", "state": {"terminated": {"exitCode": 0}}},
            {"name": "i2", "state": {"running": {}}},
        ]}));
        p["spec"]["initContainers"] = json!([{"name": "i1"}, {"name": "i2"}, {"name": "i3"}]);
        assert_eq!(summary(&p).1, "Init:1/3");
        p["status"]["initContainerStatuses"][1]["state"] = json!({"waiting": {"reason": "ImagePullBackOff"}});
        assert_eq!(summary(&p).1, "Init:ImagePullBackOff");
        p["status"]["initContainerStatuses"][1]["state"] = json!({"terminated": {"exitCode": 3}});
        p["status"]["initContainerStatuses"][1]["restartCount"] = json!(2);
        assert_eq!(summary(&p), owned("0/2", "Init:ExitCode:3", "2"));
        p["status"]["initContainerStatuses"][1]["state"] = json!({"terminated": {"reason": "Error", "exitCode": 3}});
        assert_eq!(summary(&p).1, "Init:Error");
        // A started sidecar (restartable init container) counts as a container.
        let mut s = pod(json!({"phase": "Running", "initContainerStatuses": [
            {"name": "side", "started": true, "ready": true, "state": {"running": {}}},
        ], "containerStatuses": [
            {"name": "a", "ready": true, "state": {"running": {}}},
            {"name": "b", "ready": true, "state": {"running": {}}},
        ]}));
        s["spec"]["initContainers"] = json!([{"name": "side", "restartPolicy": "Always"}]);
        assert_eq!(summary(&s), owned("3/3", "Running", "0"));
    }

    #[test]
    fn pod_rows_have_wide_cells_and_completion_conditions() {
        let mut p = pod(json!({"phase": "Succeeded", "podIPs": [{"ip": "10.0.0.5"}],
            "conditions": [{"type": "gate-a", "status": "True"}]}));
        p["spec"]["nodeName"] = json!("n1");
        p["spec"]["readinessGates"] = json!([{"conditionType": "gate-a"}, {"conditionType": "gate-b"}]);
        let cells = pod_cells(&p, now());
        assert_eq!(
            cells,
            json!(["p", "0/2", "Succeeded", "0", "5m", "10.0.0.5", "n1", "<none>", "1/2"]).as_array().unwrap().clone()
        );
        let table = of_object(kind("", "pods"), &p, &V1, now());
        assert_eq!(table["rows"][0]["conditions"][0]["type"], "Completed");
        assert_eq!(table["columnDefinitions"].as_array().unwrap().len(), 9);
        assert_eq!(table["columnDefinitions"][7]["name"], "Nominated Node");
        assert_eq!(table["columnDefinitions"][7]["priority"], 1);
    }

    #[test]
    fn service_ports_and_external_ips() {
        let ports =
            json!([{"port": 80, "protocol": "TCP"}, {"port": 443, "nodePort": 30443}, {"port": 53, "protocol": "UDP"}]);
        assert_eq!(service_ports(ports.as_array().unwrap()), "80/TCP,443:30443/TCP,53/UDP");
        assert_eq!(service_ports(&[]), "");
        let svc = json!({"metadata": {"name": "web", "creationTimestamp": ago(3600 * 5)},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}], "selector": {"app": "web", "a": "1"}}});
        assert_eq!(
            service_cells(&svc, now()),
            json!(["web", "ClusterIP", "10.96.0.10", "<none>", "80/TCP", "5h", "a=1,app=web"])
                .as_array()
                .unwrap()
                .clone()
        );
        let lb = json!({"spec": {"type": "LoadBalancer", "externalIPs": ["1.2.3.4"]},
            "status": {"loadBalancer": {"ingress": [{"hostname": "lb.example"}, {"ip": "5.6.7.8"}]}}});
        assert_eq!(service_external_ip(&lb, "LoadBalancer"), "5.6.7.8,lb.example,1.2.3.4");
        assert_eq!(service_external_ip(&json!({}), "LoadBalancer"), "<pending>");
        let ext = json!({"spec": {"type": "ExternalName", "externalName": "db.example"}});
        assert_eq!(service_cells(&ext, now())[3], "db.example");
        assert_eq!(service_cells(&ext, now())[2], "<none>");
    }

    #[test]
    fn endpoints_show_three_addresses_and_a_count_of_the_rest() {
        let ep = json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
            "ports": [{"port": 53}, {"port": 9153}]}]});
        assert_eq!(format_endpoints(&ep), "10.0.0.1:53,10.0.0.2:53,10.0.0.1:9153 + 1 more...");
        assert_eq!(format_endpoints(&json!({})), "<none>");
        let v6 = json!({"subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}]});
        assert_eq!(format_endpoints(&v6), "[fd00::1]:80");
        let headless = json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}]}]});
        assert_eq!(format_endpoints(&headless), "10.0.0.1");
    }

    #[test]
    fn selectors_print_like_label_selectors() {
        let sel = json!({"matchLabels": {"app": "web"}, "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["b", "a"]},
            {"key": "canary", "operator": "DoesNotExist"},
            {"key": "env", "operator": "Exists"}]});
        assert_eq!(selector_string(Some(&sel)).unwrap(), "app=web,!canary,env,tier in (a,b)");
        assert_eq!(format_label_selector(None), "<none>");
        assert_eq!(format_label_selector(Some(&json!({}))), "<none>");
        assert_eq!(
            format_label_selector(Some(&json!({"matchExpressions": [{"key": "k", "operator": "Is"}]}))),
            "<error>"
        );
        assert_eq!(format_labels(None), "<none>");
    }

    #[test]
    fn deployments_count_ready_of_desired_with_wide_columns() {
        let d = json!({"metadata": {"name": "web", "creationTimestamp": ago(10)},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [
                    {"name": "web", "image": "nginx:1.27"}, {"name": "log", "image": "busybox"}]}}},
            "status": {"readyReplicas": 1, "updatedReplicas": 2, "availableReplicas": 1}});
        let cells = deployment_cells(&d, now());
        assert_eq!(
            cells,
            json!(["web", "1/2", 2, 1, "10s", "web,log", "nginx:1.27,busybox", "app=web"]).as_array().unwrap().clone()
        );
        let defaulted = json!({"metadata": {"name": "x"}, "spec": {}});
        assert_eq!(deployment_cells(&defaulted, now())[1], "0/1");
        assert_eq!(deployment_cells(&defaulted, now())[4], "<unknown>");
    }

    #[test]
    fn jobs_cronjobs_and_other_workloads() {
        let job = json!({"metadata": {"name": "j"}, "spec": {},
            "status": {"succeeded": 1, "startTime": ago(70), "completionTime": ago(10),
                "conditions": [{"type": "Complete", "status": "True"}]}});
        assert_eq!(job_cells(&job, now())[1..4], json!(["Complete", "1/1", "60s"]).as_array().unwrap()[..]);
        let parallel = json!({"spec": {"parallelism": 3}});
        assert_eq!(job_cells(&parallel, now())[1..4], json!(["Running", "0/1 of 3", ""]).as_array().unwrap()[..]);
        let cj = json!({"metadata": {"name": "c"}, "spec": {"schedule": "*/5 * * * *"}, "status": {"active": [{}]}});
        assert_eq!(
            cron_job_cells(&cj, now())[1..6],
            json!(["*/5 * * * *", "<none>", "False", 1, "<none>"]).as_array().unwrap()[..]
        );
        let sts = json!({"spec": {"replicas": 3}, "status": {"readyReplicas": 3}});
        assert_eq!(stateful_set_cells(&sts, now())[1], "3/3");
        let owner = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "controller": true});
        let cr = json!({"metadata": {"ownerReferences": [owner]}, "revision": 4});
        assert_eq!(
            controller_revision_cells(&cr, now())[1..3],
            json!(["statefulset.apps/db", 4]).as_array().unwrap()[..]
        );
    }

    #[test]
    fn config_kinds_count_their_data() {
        let cm = json!({"metadata": {"name": "demo"}, "data": {"a": "1"}, "binaryData": {"b": ""}});
        assert_eq!(configmap_cells(&cm, now())[1], 2);
        let secret = json!({"metadata": {"name": "s"}, "data": {"a": "MQ=="}, "stringData": {"a": "1", "b": "2"}});
        assert_eq!(secret_cells(&secret, now())[1..3], json!(["Opaque", 2]).as_array().unwrap()[..]);
        let ns = json!({"metadata": {"name": "team"}});
        assert_eq!(namespace_cells(&ns, now())[1], "Active");
    }

    #[test]
    fn nodes_events_and_storage() {
        let labels = json!({"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "edge"});
        let node = json!({"metadata": {"name": "n1", "labels": labels},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.32.0"},
                "addresses": [{"type": "InternalIP", "address": "192.168.1.2"}]}});
        assert_eq!(
            node_cells(&node, now()),
            json!([
                "n1",
                "Ready,SchedulingDisabled",
                "control-plane,edge",
                "<unknown>",
                "v1.32.0",
                "192.168.1.2",
                "<none>",
                "<unknown>",
                "<unknown>",
                "<unknown>"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
        let event = json!({"metadata": {"name": "e1"}, "type": "Normal", "reason": "Pulled",
            "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{web}"},
            "source": {"component": "kubelet", "host": "n1"}, "message": " pulled \n", "firstTimestamp": ago(600),
            "lastTimestamp": ago(30), "count": 3});
        assert_eq!(
            event_cells(&event, now()),
            json!([
                "30s",
                "Normal",
                "Pulled",
                "pod/web-1",
                "spec.containers{web}",
                "kubelet, n1",
                "pulled",
                "10m",
                3,
                "e1"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
        let new_api = json!({"metadata": {"name": "e2"}, "type": "Warning", "reason": "Failed", "note": "boom",
            "regarding": {"kind": "Node", "name": "n1"}, "eventTime": "2023-11-14T22:12:20.000000Z",
            "reportingController": "c"});
        assert_eq!(
            event_cells(&new_api, now())[..4],
            json!(["60s", "Warning", "Failed", "node/n1"]).as_array().unwrap()[..]
        );
        assert_eq!(event_cells(&new_api, now())[5..9], json!(["c", "boom", "60s", 1]).as_array().unwrap()[..]);
        let pv = json!({"metadata": {"name": "pv1"}, "spec": {"capacity": {"storage": "5Gi"},
            "accessModes": ["ReadWriteMany", "ReadWriteOnce"], "claimRef": {"namespace": "default", "name": "data"},
            "storageClassName": "fast"}, "status": {"phase": "Bound"}});
        assert_eq!(
            pv_cells(&pv, now())[1..8],
            json!(["5Gi", "RWO,RWX", "Retain", "Bound", "default/data", "fast", "<unset>"]).as_array().unwrap()[..]
        );
        let pvc = json!({"metadata": {"name": "data"}, "spec": {}});
        assert_eq!(pvc_cells(&pvc, now())[1..5], json!(["Pending", "", "", ""]).as_array().unwrap()[..]);
    }

    #[test]
    fn kinds_without_printers_get_name_and_created_at() {
        let role = kind("rbac.authorization.k8s.io", "roles");
        assert!(!has_printer(role));
        let obj =
            json!({"metadata": {"name": "r", "creationTimestamp": "2023-11-14T22:13:20Z", "resourceVersion": "9"}});
        let table = of_object(role, &obj, &V1, now());
        assert_eq!(table["columnDefinitions"][1]["name"], "Created At");
        assert_eq!(table["columnDefinitions"][1]["type"], "date");
        assert_eq!(table["rows"][0]["cells"], json!(["r", "2023-11-14T22:13:20Z"]));
        assert_eq!(table["metadata"], json!({"resourceVersion": "9"}));
        for k in ["clusterroles", "roles"] {
            assert!(!has_printer(kind("rbac.authorization.k8s.io", k)));
        }
        assert!(!has_printer(kind("", "limitranges")));
        assert!(!has_printer(kind("apiextensions.k8s.io", "customresourcedefinitions")));
        let printed = actors::kinds::BUILTIN.iter().filter(|k| has_printer(k)).count();
        assert_eq!(printed, 33);
    }

    #[test]
    fn list_tables_keep_list_metadata_and_choose_row_objects() {
        let cm = kind("", "configmaps");
        let item = json!({"kind": "ConfigMap", "apiVersion": "v1",
            "metadata": {"name": "demo", "namespace": "default", "creationTimestamp": ago(5)}, "data": {"a": "1"}});
        let list = json!({"kind": "ConfigMapList", "apiVersion": "v1",
            "metadata": {"resourceVersion": "12", "continue": "tok"}, "items": [item]});
        let table = of_list(cm, &list, &V1, now());
        assert_eq!((table["kind"].as_str(), table["apiVersion"].as_str()), (Some("Table"), Some("meta.k8s.io/v1")));
        assert_eq!(table["metadata"], json!({"resourceVersion": "12", "continue": "tok"}));
        let names: Vec<&str> =
            table["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["Name", "Data", "Age"]);
        assert_eq!(table["columnDefinitions"][0]["format"], "name");
        assert_eq!(table["rows"][0]["cells"], json!(["demo", 1, "5s"]));
        assert_eq!(
            table["rows"][0]["object"],
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": item["metadata"]})
        );
        let full = TableOptions { version: "v1beta1", include: IncludeObject::Object };
        let table = of_list(cm, &list, &full, now());
        assert_eq!(table["apiVersion"], "meta.k8s.io/v1beta1");
        assert_eq!(table["rows"][0]["object"], item);
        let none = TableOptions { version: "v1", include: IncludeObject::None };
        assert_eq!(of_list(cm, &list, &none, now())["rows"][0]["object"], Value::Null);
        let empty = json!({"kind": "ConfigMapList", "metadata": {"resourceVersion": "3"}, "items": []});
        assert_eq!(of_list(cm, &empty, &V1, now())["rows"], json!([]));
    }

    #[test]
    fn watch_events_become_one_row_tables_with_headers_only_first() {
        let cm = kind("", "configmaps");
        let obj =
            json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "demo", "resourceVersion": "4"}});
        let first = watch_event(cm, "ADDED", &obj, &V1, true, now());
        assert_eq!(first["type"], "ADDED");
        assert_eq!(first["object"]["kind"], "Table");
        assert_eq!(first["object"]["metadata"]["resourceVersion"], "4");
        assert_eq!(first["object"]["rows"][0]["cells"][0], "demo");
        assert!(first["object"]["columnDefinitions"].is_array());
        let later = watch_event(cm, "MODIFIED", &obj, &V1, false, now());
        assert!(later["object"]["columnDefinitions"].is_null());
        let status = json!({"kind": "Status", "code": 410});
        assert_eq!(watch_event(cm, "ERROR", &status, &V1, true, now())["object"], status);
    }
}

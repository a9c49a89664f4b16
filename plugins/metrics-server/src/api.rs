//! The HTTP side: every request goes through [`dispatch`]: health checks (always allowed),
//! then authentication ([`crate::authn`]), authorization ([`crate::authz`]), and the
//! metrics API read from the scraper's [`State`](crate::scraper::State).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

use crate::authn::{self, RequestHeader};
use crate::authz::{Attributes, Authorizer};
use crate::format::now_nanos;
use crate::objects::{self, Include, Item, GROUP, VERSION};
use crate::prometheus::PodRef;
use crate::scraper::Shared;
use crate::selector::{FieldSelector, LabelSelector};
use crate::status;

/// What every worker shares.
pub struct Context {
    pub state: Shared,
    pub request_header: RequestHeader,
    pub health: Health,
}

/// When the server started and how often it scrapes (for liveness).
#[derive(Debug, Clone)]
pub struct Health {
    pub started: Instant,
    pub interval: Duration,
    pub scrape_timeout: Duration,
}

/// A path, as this server reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route<'a> {
    Root,
    Apis,
    Group,
    Resources,
    Nodes(Option<&'a str>),
    Pods { namespace: Option<&'a str>, name: Option<&'a str> },
    Unknown,
}

fn route(path: &str) -> Route<'_> {
    match path {
        "/" => return Route::Root,
        "/apis" | "/apis/" => return Route::Apis,
        "/apis/metrics.k8s.io" | "/apis/metrics.k8s.io/" => return Route::Group,
        _ => {}
    }
    let Some(rest) = path.strip_prefix("/apis/metrics.k8s.io/v1beta1") else { return Route::Unknown };
    if !rest.is_empty() && !rest.starts_with('/') {
        return Route::Unknown;
    }
    let segments: Vec<&str> = rest.split('/').skip(1).collect();
    match segments.as_slice() {
        [] | [""] => Route::Resources,
        ["nodes"] => Route::Nodes(None),
        ["nodes", name] if !name.is_empty() => Route::Nodes(Some(name)),
        ["pods"] => Route::Pods { namespace: None, name: None },
        ["namespaces", ns, "pods"] if !ns.is_empty() => Route::Pods { namespace: Some(ns), name: None },
        ["namespaces", ns, "pods", name] if !ns.is_empty() && !name.is_empty() => {
            Route::Pods { namespace: Some(ns), name: Some(name) }
        }
        _ => Route::Unknown,
    }
}

/// The verb of a resource request, as kube names it.
fn verb(method: &Method, collection: bool, watch: bool) -> String {
    match (method.as_str(), collection) {
        ("GET" | "HEAD", true) if watch => "watch".into(),
        ("GET" | "HEAD", true) => "list".into(),
        ("GET" | "HEAD", false) => "get".into(),
        ("POST", _) => "create".into(),
        ("PUT", _) => "update".into(),
        ("PATCH", _) => "patch".into(),
        ("DELETE", true) => "deletecollection".into(),
        ("DELETE", false) => "delete".into(),
        (other, _) => other.to_lowercase(),
    }
}

fn attributes(route: &Route<'_>, req: &HttpRequest, query: &HashMap<String, String>) -> Attributes {
    let watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    let resource = |resource: &str, namespace: Option<&str>, name: Option<&str>| Attributes::Resource {
        verb: verb(req.method(), name.is_none(), watch),
        group: GROUP.into(),
        version: VERSION.into(),
        resource: resource.into(),
        namespace: namespace.unwrap_or("").into(),
        name: name.unwrap_or("").into(),
    };
    match route {
        Route::Nodes(name) => resource("nodes", None, *name),
        Route::Pods { namespace, name } => resource("pods", *namespace, *name),
        _ => Attributes::Path { verb: req.method().as_str().to_lowercase(), path: req.path().to_string() },
    }
}

/// Every request.
pub async fn dispatch(
    req: HttpRequest,
    context: web::Data<Context>,
    authorizer: web::Data<Authorizer>,
) -> HttpResponse {
    if let Some(response) = health(&req, &context) {
        return response;
    }
    let user = match authn::authenticate(&req, &context.request_header) {
        Ok(user) => user,
        Err(reason) => {
            tracing::debug!(reason, "authentication failed");
            return status::unauthorized();
        }
    };
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string()).map(|q| q.into_inner());
    let Ok(query) = query else { return status::bad_request("malformed query string") };
    let route = route(req.path());
    let attributes = attributes(&route, &req, &query);
    match authorizer.authorize(&user, &attributes).await {
        Ok(decision) if decision.allowed => {}
        Ok(decision) => {
            let (message, details) = attributes.forbidden(&user.name, &decision.reason);
            return status::forbidden(&message, details);
        }
        Err(e) => {
            tracing::warn!("authorization: {e}");
            return status::internal(&e);
        }
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return match route {
            Route::Unknown => status::no_route(),
            _ => status::failure(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
                Some(serde_json::json!({})),
            ),
        };
    }
    let table = table_version(&req);
    match route {
        Route::Root => json(&objects::root_paths()),
        Route::Apis => json(&objects::api_group_list()),
        Route::Group => json(&objects::api_group()),
        Route::Resources => json(&objects::resource_list()),
        Route::Nodes(name) => {
            if attributes_verb(&attributes) == "watch" {
                return status::method_not_supported(GROUP, "nodes", "watch");
            }
            nodes(&context, name, &query, table)
        }
        Route::Pods { namespace, name } => {
            if attributes_verb(&attributes) == "watch" {
                return status::method_not_supported(GROUP, "pods", "watch");
            }
            pods(&context, namespace, name, &query, table)
        }
        Route::Unknown => status::no_route(),
    }
}

fn attributes_verb(attributes: &Attributes) -> &str {
    match attributes {
        Attributes::Resource { verb, .. } | Attributes::Path { verb, .. } => verb,
    }
}

fn json(value: &Value) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(value.to_string())
}

/// The `meta.k8s.io` version of the Table the client asked for in `Accept`, if it did.
fn table_version(req: &HttpRequest) -> Option<String> {
    let accept = req.headers().get("Accept")?.to_str().ok()?;
    accept.split(',').find_map(|media| {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        if !params.contains(&"as=Table") {
            return None;
        }
        let version = params.iter().find_map(|p| p.strip_prefix("v=")).unwrap_or("v1");
        matches!(version, "v1" | "v1beta1").then(|| version.to_string())
    })
}

/// The list's selectors; the error is the 400's message.
fn selectors(query: &HashMap<String, String>) -> Result<(LabelSelector, FieldSelector), String> {
    let labels = LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))?;
    let fields = FieldSelector::parse(query.get("fieldSelector").map_or("", String::as_str))?;
    Ok((labels, fields))
}

fn answer(kind: &str, items: Vec<Item>, query: &HashMap<String, String>, table: Option<String>) -> HttpResponse {
    match table {
        Some(version) => {
            json(&objects::table(&items, &version, Include::parse(query.get("includeObject").map(String::as_str))))
        }
        None => json(&objects::list(kind, items)),
    }
}

fn one(item: Item, query: &HashMap<String, String>, table: Option<String>) -> HttpResponse {
    match table {
        Some(version) => {
            json(&objects::table(&[item], &version, Include::parse(query.get("includeObject").map(String::as_str))))
        }
        None => json(&item.object),
    }
}

fn nodes(
    context: &Context,
    name: Option<&str>,
    query: &HashMap<String, String>,
    table: Option<String>,
) -> HttpResponse {
    let state = context.state.read().unwrap_or_else(|poisoned| poisoned.into_inner());
    let now = now_nanos();
    if let Some(name) = name {
        // As metrics-server: the node lister's NotFound, then the metrics' own.
        let Some(node) = state.nodes.iter().find(|n| n.name == name) else {
            return status::not_found("", "node", name);
        };
        return match state.store.node(name) {
            Some(usage) => one(objects::node_metrics(node, &usage, now), query, table),
            None => status::not_found(GROUP, "nodemetrics", name),
        };
    }
    let (labels, fields) = match selectors(query) {
        Ok(selectors) => selectors,
        Err(message) => return status::bad_request(&message),
    };
    let items = state
        .nodes
        .iter()
        .filter(|n| labels.matches(&n.labels) && fields.matches("", &n.name))
        .filter_map(|n| Some(objects::node_metrics(n, &state.store.node(&n.name)?, now)))
        .collect();
    answer("NodeMetricsList", items, query, table)
}

fn pods(
    context: &Context,
    namespace: Option<&str>,
    name: Option<&str>,
    query: &HashMap<String, String>,
    table: Option<String>,
) -> HttpResponse {
    let state = context.state.read().unwrap_or_else(|poisoned| poisoned.into_inner());
    let now = now_nanos();
    if let (Some(namespace), Some(name)) = (namespace, name) {
        let Some(pod) = state.pods.iter().find(|p| p.namespace == namespace && p.name == name) else {
            return status::not_found("", "pods", name);
        };
        let reference = PodRef { namespace: namespace.into(), name: name.into() };
        return match state.store.pod(&reference) {
            Some((time, containers)) => one(objects::pod_metrics(pod, &time, &containers, now), query, table),
            None => status::not_found(GROUP, "podmetrics", &format!("{namespace}/{name}")),
        };
    }
    let (labels, fields) = match selectors(query) {
        Ok(selectors) => selectors,
        Err(message) => return status::bad_request(&message),
    };
    let items = state
        .pods
        .iter()
        .filter(|p| namespace.is_none_or(|ns| p.namespace == ns))
        .filter(|p| labels.matches(&p.labels) && fields.matches(&p.namespace, &p.name))
        .filter_map(|p| {
            let reference = PodRef { namespace: p.namespace.clone(), name: p.name.clone() };
            let (time, containers) = state.store.pod(&reference)?;
            Some(objects::pod_metrics(p, &time, &containers, now))
        })
        .collect();
    answer("PodMetricsList", items, query, table)
}

/// `/healthz`, `/livez`, `/readyz` (and `?verbose`): `None` for other paths.
fn health(req: &HttpRequest, context: &Context) -> Option<HttpResponse> {
    let endpoint = req.path().trim_start_matches('/');
    if !matches!(endpoint, "healthz" | "livez" | "readyz") {
        return None;
    }
    let state = context.state.read().unwrap_or_else(|poisoned| poisoned.into_inner());
    let health = &context.health;
    // A cycle may take its scrape timeout on top of the interval; then half an interval more.
    let max_delay = health.interval + health.interval / 2 + health.scrape_timeout;
    let timely = state.last_scrape.unwrap_or(health.started).elapsed() <= max_delay;
    let ready = state.store.ready();
    drop(state);
    let mut checks = vec![("ping", true)];
    if endpoint != "readyz" {
        checks.push(("metric-collection-timely", timely));
    }
    if endpoint != "livez" {
        checks.push(("metric-storage-ready", ready));
    }
    let passed = checks.iter().all(|(_, ok)| *ok);
    let verbose = req.query_string().split('&').any(|p| p == "verbose" || p.starts_with("verbose="));
    if passed && !verbose {
        return Some(HttpResponse::Ok().content_type("text/plain; charset=utf-8").body("ok"));
    }
    let mut body: String = checks
        .iter()
        .map(|(name, ok)| if *ok { format!("[+]{name} ok\n") } else { format!("[-]{name} failed: reason withheld\n") })
        .collect();
    body.push_str(&if passed { format!("{endpoint} check passed\n") } else { format!("{endpoint} check failed\n") });
    let code = if passed { StatusCode::OK } else { StatusCode::INTERNAL_SERVER_ERROR };
    Some(HttpResponse::build(code).content_type("text/plain; charset=utf-8").body(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_resource_and_the_scope() {
        assert_eq!(route("/apis/metrics.k8s.io/v1beta1"), Route::Resources);
        assert_eq!(route("/apis/metrics.k8s.io/v1beta1/nodes"), Route::Nodes(None));
        assert_eq!(route("/apis/metrics.k8s.io/v1beta1/nodes/n1"), Route::Nodes(Some("n1")));
        assert_eq!(route("/apis/metrics.k8s.io/v1beta1/pods"), Route::Pods { namespace: None, name: None });
        assert_eq!(
            route("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/web"),
            Route::Pods { namespace: Some("default"), name: Some("web") }
        );
        assert_eq!(route("/apis/metrics.k8s.io/v1beta1/namespaces/default"), Route::Unknown);
        assert_eq!(route("/apis/metrics.k8s.io/v1beta1/nodes/n1/extra"), Route::Unknown);
        assert_eq!(route("/apis/metrics.k8s.io/v1beta1x"), Route::Unknown);
        assert_eq!(route("/apis"), Route::Apis);
        assert_eq!(route("/api/v1/pods"), Route::Unknown);
    }

    #[test]
    fn verbs_follow_the_method_and_the_scope() {
        assert_eq!(verb(&Method::GET, true, false), "list");
        assert_eq!(verb(&Method::GET, true, true), "watch");
        assert_eq!(verb(&Method::GET, false, false), "get");
        assert_eq!(verb(&Method::DELETE, true, false), "deletecollection");
        assert_eq!(verb(&Method::POST, true, false), "create");
    }
}

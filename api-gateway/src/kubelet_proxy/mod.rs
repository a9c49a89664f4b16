//! The pod subresources a node's kubelet serves, proxied to it as kube-apiserver proxies them:
//!
//! - `GET pods/{name}/log` (verb `get` on `pods/log`): kube's `PodLogOptions` ([`options`]),
//!   the container chosen as kube chooses it ([`location`]), then
//!   `GET https://{node}:{port}/containerLogs/{ns}/{pod}/{container}?...` on the pod's node,
//!   whose answer is streamed back chunk by chunk as it comes (`follow=true` runs as long as
//!   the client reads); a kubelet's refusal becomes kube's `Status` for it
//!   ([`kubelet_refusal`]); a pod not on a node yet has no logs: an empty answer, as kube's.
//! - `pods/{name}/exec`, `attach` and `portforward` (GET or POST; verb `create`, which kube
//!   1.30+ asks of WebSocket GETs too): a WebSocket upgrade (kubectl 1.30+: `v5.channel.k8s.io`
//!   for exec and attach, `SPDY/3.1+portforward.k8s.io` for port-forward) sent on to
//!   `/exec/{ns}/{pod}/{container}`, `/attach/...` or `/portForward/{ns}/{pod}` with its
//!   `Sec-WebSocket-*` headers, and, once the kubelet switches protocols, the two connections
//!   joined byte for byte ([`crate::upstream::tunnel`]); the 101's headers go back as they are.
//!   Unlike kube-apiserver, which speaks SPDY to kubelets and translates, the WebSocket
//!   protocols go through untouched: the node agent speaks them itself. Requests that are
//!   not WebSocket upgrades (SPDY ones included) get 400 `Upgrade request required`.
//!
//! The node's kubelet is found from the Node object ([`location::kubelet_address`]); the
//! connection presents the API server's kubelet client certificate ([`client`]). Every
//! failure is a Kubernetes `Status`. [`SUBRESOURCES`] lists them for discovery.

pub mod client;
pub mod location;
pub mod options;

use actix_web::http::header::{HeaderValue, CONTENT_TYPE};
use actix_web::http::StatusCode;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use actors::api_error::Subject;
use actors::kinds::{self, Subresource};
use actors::{ApiError, ApiResult, Get, KindActors};
use futures::StreamExt;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{json, Value};

use self::client::KubeletClient;
use self::options::{LogOptions, StreamOptions};
use crate::aggregator::reviews;
use crate::authn::{UserInfo, ANONYMOUS_USER, UNAUTHENTICATED_GROUP};
use crate::resources::error_response;
use crate::upstream::{self, ProxyBody, ProxyError};

/// The pod subresources served here, as kube-apiserver 1.32's discovery lists them.
pub const SUBRESOURCES: &[Subresource] = &[
    Subresource { name: "attach", response: Some(("", "", "PodAttachOptions")), verbs: &["create", "get"] },
    Subresource { name: "exec", response: Some(("", "", "PodExecOptions")), verbs: &["create", "get"] },
    Subresource { name: "log", response: None, verbs: &["get"] },
    Subresource { name: "portforward", response: Some(("", "", "PodPortForwardOptions")), verbs: &["create", "get"] },
];

/// The most of a kubelet's error body read into a `Status` (kube's `maxReadLength`).
const MAX_ERROR_BODY: usize = 50_000;

/// What the handlers need: the kind actors (pods, nodes) and the client towards kubelets.
#[derive(Clone)]
pub struct KubeletProxy {
    actors: KindActors,
    client: KubeletClient,
}

impl KubeletProxy {
    pub fn new(actors: KindActors, client: KubeletClient) -> KubeletProxy {
        KubeletProxy { actors, client }
    }
}

/// Registers the routes; register them before [`crate::resources`]'s, which would take the
/// paths for object verbs.
pub fn configure(cfg: &mut web::ServiceConfig, proxy: KubeletProxy) {
    let proxy = web::Data::new(proxy);
    cfg.service(
        web::resource("/api/v1/namespaces/{namespace}/pods/{name}/log")
            .app_data(proxy.clone())
            .route(web::get().to(log))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api/v1/namespaces/{namespace}/pods/{name}/{subresource:exec|attach|portforward}")
            .app_data(proxy)
            .route(web::get().to(stream))
            .route(web::post().to(stream))
            .default_service(web::to(method_not_allowed)),
    );
}

async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    error_response(&ApiError::MethodNotSupported(format!(
        "the server does not allow this method on the requested resource ({} {})",
        req.method(),
        req.path()
    )))
}

async fn log(req: HttpRequest, path: web::Path<(String, String)>, proxy: web::Data<KubeletProxy>) -> HttpResponse {
    let (namespace, name) = path.into_inner();
    proxy.log(&req, &namespace, &name).await.unwrap_or_else(|e| error_response(&e))
}

async fn stream(
    req: HttpRequest,
    payload: web::Payload,
    path: web::Path<(String, String, String)>,
    proxy: web::Data<KubeletProxy>,
) -> HttpResponse {
    let (namespace, name, subresource) = path.into_inner();
    let target = Target { namespace: &namespace, name: &name, subresource: &subresource };
    proxy.stream(&req, payload, target).await.unwrap_or_else(|e| error_response(&e))
}

/// The pod and subresource a request is for.
#[derive(Debug, Clone, Copy)]
struct Target<'a> {
    namespace: &'a str,
    name: &'a str,
    subresource: &'a str,
}

/// May the caller do `verb` on `pods/{subresource}` of pod `name`? RBAC is not enforced yet,
/// so the decision is the one the access reviews give ([`reviews::decide`]: authenticated
/// users may): `kubectl auth can-i create pods/exec` and the request itself agree, and this
/// is the one place to ask RBAC once there is one. 403 in kube's words when not allowed.
fn authorize(req: &HttpRequest, verb: &str, target: Target<'_>) -> ApiResult<()> {
    let user = req.extensions().get::<UserInfo>().cloned().unwrap_or_else(|| UserInfo {
        name: ANONYMOUS_USER.into(),
        uid: String::new(),
        groups: vec![UNAUTHENTICATED_GROUP.into()],
    });
    if reviews::decide(&user.name, &user.groups)["allowed"] == true {
        return Ok(());
    }
    let subject = Subject { group: "", resource: "pods", kind: "Pod", name: target.name.to_string() };
    let why = format!(
        "User {:?} cannot {verb} resource \"pods/{}\" in API group \"\" in the namespace {:?}",
        user.name, target.subresource, target.namespace
    );
    Err(ApiError::Forbidden { subject, why, causes: Vec::new() })
}

/// How long the kubelet's answer may take to start: the request's deadline where it has one
/// (logs that do not follow), else kube's longest. Only the head waits; bodies and tunnels run
/// as long as both ends want.
fn head_timeout(req: &HttpRequest) -> std::time::Duration {
    req.extensions().get::<crate::limits::Deadline>().map_or(crate::limits::MAX_TIMEOUT, |d| d.0)
}

impl KubeletProxy {
    /// The object `name` of the core `resource` (in `namespace`), as the kind actor has it.
    async fn get(&self, resource: &str, namespace: Option<&str>, name: &str) -> ApiResult<Value> {
        let kind = kinds::find("", "v1", resource).ok_or_else(|| ApiError::InternalError(format!("no {resource}")))?;
        let actor =
            self.actors.get(kind).ok_or_else(|| ApiError::ServiceUnavailable(format!("no actor for {resource}")))?;
        let get = Get { namespace: namespace.map(String::from), name: name.to_string() };
        actor.send(get).await.map_err(|e| ApiError::ServiceUnavailable(format!("{resource} actor: {e}")))?
    }

    /// The kubelet of the node `node` (404 if there is no such Node).
    async fn kubelet_of(&self, node: &str) -> ApiResult<(String, u16)> {
        location::kubelet_address(&self.get("nodes", None, node).await?)
    }

    /// `GET pods/{name}/log`.
    async fn log(&self, req: &HttpRequest, namespace: &str, name: &str) -> ApiResult<HttpResponse> {
        let target = Target { namespace, name, subresource: "log" };
        authorize(req, "get", target)?;
        let options = LogOptions::parse(req.query_string(), name)?;
        let pod = self.get("pods", Some(namespace), name).await?;
        let container = location::container(&pod, name, options.container.as_deref())?;
        let Some(node) = location::node_name(&pod) else {
            // kube's `LogLocation`: a pod on no node yet has written nothing; an empty answer.
            return Ok(HttpResponse::Ok().content_type("text/plain").finish());
        };
        let address = self.kubelet_of(node).await?;
        let path = with_query(format!("/containerLogs/{namespace}/{name}/{container}"), &options.kubelet_query());
        let url = upstream::url(&address, &path);
        let request = hyper::Request::get(path.as_str())
            .header("host", upstream::authority(&address.0, address.1))
            .body(upstream::empty())
            .map_err(|e| ApiError::InternalError(format!("the request to the kubelet: {e}")))?;
        let deadline = head_timeout(req);
        let response = match actix_web::rt::time::timeout(deadline, self.client.send(&address, request)).await {
            Ok(Ok(response)) => response,
            // Go's client error, as kube-apiserver passes it on: `Get "https://...": dial tcp ...`.
            Ok(Err(e)) => return Err(location::internal(format!("Get {url:?}: {e}"))),
            Err(_) => return Err(ApiError::Timeout),
        };
        let code = response.status().as_u16();
        if !(200..=206).contains(&code) {
            let body = match actix_web::rt::time::timeout(deadline, read_prefix(response.into_body())).await {
                Ok(Ok(body)) => body,
                Ok(Err(e)) => return Err(ApiError::InternalError(format!("Internal error occurred: {e}"))),
                Err(_) => return Err(ApiError::Timeout),
            };
            return Err(kubelet_refusal(code, &body, "pods/log", name));
        }
        let content_type = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok())
            .unwrap_or(HeaderValue::from_static("text/plain"));
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
        // Chunk by chunk as the kubelet writes them: a followed log is never buffered.
        Ok(HttpResponse::build(status)
            .insert_header((CONTENT_TYPE, content_type))
            .streaming(response.into_body().into_data_stream()))
    }

    /// `exec`, `attach` and `portforward`: the kubelet's WebSocket, tunnelled.
    async fn stream(&self, req: &HttpRequest, payload: web::Payload, target: Target<'_>) -> ApiResult<HttpResponse> {
        let Target { namespace, name, subresource } = target;
        authorize(req, "create", target)?;
        let options = StreamOptions::parse(subresource, req.query_string())?;
        let pod = self.get("pods", Some(namespace), name).await?;
        let path = match subresource {
            "portforward" => format!("/portForward/{namespace}/{name}"),
            _ => {
                let container = location::container(&pod, name, options.container.as_deref())?;
                format!("/{subresource}/{namespace}/{name}/{container}")
            }
        };
        let node = location::node_name(&pod)
            .ok_or_else(|| ApiError::BadRequest(format!("pod {name} does not have a host assigned")))?;
        let address = self.kubelet_of(node).await?;
        // As kube's upgrade-aware proxy: where to go is settled first (404 and 400 above
        // come before this), then only an upgrade is sent on.
        let Some(upgrade) = upstream::websocket_upgrade(req.headers()) else {
            return Err(upgrade_required(req));
        };
        let path = with_query(path, &options.kubelet_query());
        let mut request = hyper::Request::builder().method(req.method().as_str()).uri(path.as_str());
        for (header, value) in upstream::end_to_end_headers(req) {
            // The upgrade carries no body.
            if !matches!(header, "content-length" | "content-type") {
                request = request.header(header, value);
            }
        }
        request = request
            .header("connection", "Upgrade")
            .header("upgrade", upgrade.as_bytes())
            .header("host", upstream::authority(&address.0, address.1));
        if let Some(peer) = req.peer_addr() {
            request = request.header("x-forwarded-for", peer.ip().to_string());
        }
        let request = request
            .body(ProxyBody::Empty)
            .map_err(|e| ApiError::BadRequest(format!("the request cannot be sent on: {e}")))?;
        let response = match actix_web::rt::time::timeout(head_timeout(req), self.client.send(&address, request)).await
        {
            Ok(Ok(response)) => response,
            // kube's upgrade-aware proxy: `error dialing backend: dial tcp ...`, a 500.
            Ok(Err(e)) => return Err(location::internal(dialing_error(&e))),
            Err(_) => return Err(ApiError::Timeout),
        };
        if response.status() == hyper::StatusCode::SWITCHING_PROTOCOLS {
            return Ok(upstream::tunnel(response, payload.into_inner()).await);
        }
        // The kubelet did not switch: its answer goes back as it is, as kube's proxy does.
        Ok(upstream::stream_back(req, response))
    }
}

/// `path?query`, or `path` without a query.
fn with_query(path: String, query: &str) -> String {
    if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    }
}

/// The message of a kubelet that could not be reached for an upgrade.
fn dialing_error(e: &ProxyError) -> String {
    format!("error dialing backend: {e}")
}

/// kube's 400 for a request to exec, attach or port-forward that is no WebSocket upgrade.
fn upgrade_required(req: &HttpRequest) -> ApiError {
    match req.headers().get("upgrade").and_then(|v| v.to_str().ok()) {
        // kubectl before 1.30 (or its fallback) asks for SPDY, which cannot be tunnelled here.
        Some(other) if !other.trim().is_empty() => ApiError::BadRequest(format!(
            "Upgrade request required: only WebSocket upgrades are served (not {other:?}); kubectl 1.30 or later uses them"
        )),
        _ => ApiError::BadRequest("Upgrade request required".into()),
    }
}

/// The first [`MAX_ERROR_BODY`] bytes of a kubelet's answer, as text.
async fn read_prefix(body: Incoming) -> Result<String, hyper::Error> {
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while bytes.len() < MAX_ERROR_BODY {
        match stream.next().await {
            Some(chunk) => bytes.extend_from_slice(&chunk?),
            None => break,
        }
    }
    bytes.truncate(MAX_ERROR_BODY);
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// A kubelet's non-2xx answer (`code`, `body`) to a request for `resource` (`pods/log`) of pod
/// `name`, as kube's `GenericHttpResponseChecker` turns it into a `Status`: 400 and 500 carry
/// the kubelet's words; other codes kube's generic ones (`NewGenericServerResponse`).
pub fn kubelet_refusal(code: u16, body: &str, resource: &str, name: &str) -> ApiError {
    let (reason, message) = match code {
        400 => return ApiError::BadRequest(body.to_string()),
        500 => return ApiError::InternalError(format!("Internal error occurred: {body}")),
        409 => ("Conflict", "the server reported a conflict".to_string()),
        404 => ("NotFound", "the server could not find the requested resource".to_string()),
        401 => ("Unauthorized", "the server has asked for the client to provide credentials".to_string()),
        // The kubelet's message says who may not do what: kube keeps it.
        403 => ("Forbidden", body.to_string()),
        405 => ("MethodNotAllowed", "the server does not allow this method on the requested resource".to_string()),
        422 => ("Invalid", "the server rejected our request due to an error in our request".to_string()),
        504 => (
            "Timeout",
            "the server was unable to return a response in the time allotted, but may still be processing the request"
                .to_string(),
        ),
        429 => {
            ("TooManyRequests", "the server has received too many requests and has asked us to try again later".into())
        }
        c if c >= 500 => {
            ("InternalError", format!("an error on the server ({body:?}) has prevented the request from succeeding"))
        }
        c => ("", format!("the server responded with the status code {c} but did not return more information")),
    };
    ApiError::Status {
        code,
        reason: reason.to_string(),
        // kube names the verb too, which is empty here: `( pods/log web)`.
        message: format!("{message} ( {resource} {name})"),
        details: Some(json!({"name": name, "kind": resource})),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn target() -> Target<'static> {
        Target { namespace: "default", name: "web", subresource: "exec" }
    }

    #[test]
    fn authenticated_users_may_and_anonymous_ones_get_kubes_403() {
        let req = actix_web::test::TestRequest::get().to_http_request();
        req.extensions_mut().insert(UserInfo::authenticated("jane", "", vec![]));
        authorize(&req, "create", target()).unwrap();

        let anonymous = actix_web::test::TestRequest::get().to_http_request();
        let e = authorize(&anonymous, "create", target()).unwrap_err();
        assert_eq!(e.code(), 403);
        assert_eq!(
            e.to_string(),
            r#"pods "web" is forbidden: User "system:anonymous" cannot create resource "pods/exec" in API group "" in the namespace "default""#
        );
        assert_eq!(e.status()["details"], json!({"name": "web", "group": "", "kind": "pods"}));
    }

    #[test]
    fn kubelet_refusals_become_kubes_statuses() {
        let waiting = r#"container "app" in pod "web" is waiting to start: ContainerCreating"#;
        let e = kubelet_refusal(400, waiting, "pods/log", "web");
        assert_eq!((e.code(), e.reason(), e.to_string().as_str()), (400, "BadRequest", waiting));
        let e = kubelet_refusal(500, "boom", "pods/log", "web");
        assert_eq!(
            (e.code(), e.reason(), e.to_string().as_str()),
            (500, "InternalError", "Internal error occurred: boom")
        );
        let e = kubelet_refusal(404, "pod \"web\" does not exist\n", "pods/log", "web");
        assert_eq!(
            (e.code(), e.reason(), e.to_string().as_str()),
            (404, "NotFound", "the server could not find the requested resource ( pods/log web)")
        );
        let e = kubelet_refusal(503, "overloaded", "pods/log", "web");
        assert_eq!(
            (e.code(), e.reason(), e.to_string().as_str()),
            (
                503,
                "InternalError",
                r#"an error on the server ("overloaded") has prevented the request from succeeding ( pods/log web)"#
            )
        );
        assert_eq!(kubelet_refusal(403, "no", "pods/log", "web").to_string(), "no ( pods/log web)");
    }

    #[test]
    fn only_websocket_upgrades_are_served() {
        let plain = actix_web::test::TestRequest::get().to_http_request();
        assert_eq!(upgrade_required(&plain).to_string(), "Upgrade request required");
        let spdy = actix_web::test::TestRequest::get()
            .insert_header(("upgrade", "SPDY/3.1"))
            .insert_header(("connection", "Upgrade"))
            .to_http_request();
        let e = upgrade_required(&spdy);
        assert_eq!(e.code(), 400);
        assert!(e.to_string().starts_with("Upgrade request required: only WebSocket"), "{e}");
        assert_eq!(
            dialing_error(&ProxyError::Connect {
                address: "127.0.0.1:1".into(),
                reason: "connect: connection refused".into()
            }),
            "error dialing backend: dial tcp 127.0.0.1:1: connect: connection refused"
        );
    }
}

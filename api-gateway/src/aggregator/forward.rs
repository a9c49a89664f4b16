//! One request to an aggregated API, sent on to its extension server as kube-aggregator's
//! proxy handler does: 503 `service unavailable` while the APIService is not available; the
//! caller's identity in `X-Remote-User` and `X-Remote-Group` (its own `Authorization` and
//! any `X-Remote-*` headers dropped); hop-by-hop headers dropped both ways; bodies streamed
//! both ways as they come (a watch's events reach the client one by one); a WebSocket
//! upgrade (`kubectl exec`-style) tunnelled byte for byte once the server switches protocols.
//! The relaying itself (streamed bodies, the tunnel) is [`crate::upstream`]'s.

use actix_web::dev::Payload;
use actix_web::http::header::{HeaderMap, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpMessage, HttpRequest, HttpResponse};
use actors::ApiError;
use futures::StreamExt;

use super::front_proxy::{GROUP_HEADER, USER_HEADER};
use super::proxy::{self, ProxyBody, ProxyError};
use super::{Aggregator, Remote};
use crate::authn::UserInfo;
use crate::status;
use crate::upstream::{end_to_end_headers, stream_back, tunnel, websocket_upgrade};

/// The response to a request for an APIService that is not available.
pub fn unavailable() -> HttpResponse {
    status::failure(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", "service unavailable")
}

/// Sends `req` (with its body `payload`) to `remote`'s service and answers with what it
/// answers. Never panics; every failure is a `Status`.
pub async fn forward(aggregator: &Aggregator, remote: Remote, req: &HttpRequest, payload: Payload) -> HttpResponse {
    if !remote.available() {
        return unavailable();
    }
    let Some(user) = req.extensions().get::<UserInfo>().cloned() else {
        return status::unauthorized();
    };
    let Ok(transport) = remote.transport.clone() else {
        return unavailable();
    };
    let address = match transport.endpoint(aggregator.actors()).await {
        Ok(address) => address,
        Err(e) => {
            tracing::debug!(apiservice = remote.name, error = %e, "aggregated API unreachable");
            aggregator.nudge(&remote.name);
            return unavailable();
        }
    };
    let upgrade = websocket_upgrade(req.headers());
    let (body, tunnel_input) = match upgrade {
        Some(_) => (proxy::empty(), Some(payload)),
        None if has_body(req.headers()) => (request_body(payload), None),
        None => (proxy::empty(), None),
    };
    let request = match request(req, &user, &transport.host_header, upgrade, body) {
        Ok(request) => request,
        Err(e) => return status::failure(StatusCode::BAD_REQUEST, "BadRequest", &e),
    };
    // Only the head is waited for: the body (a watch, a log) may run long after.
    let head_timeout = req.extensions().get::<crate::limits::Deadline>().map_or(crate::limits::MAX_TIMEOUT, |d| d.0);
    let response = match actix_web::rt::time::timeout(head_timeout, transport.send(&address, request)).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => return unreachable(aggregator, &remote, &e),
        Err(_) => return crate::resources::error_response(&ApiError::Timeout),
    };
    match tunnel_input {
        Some(input) if response.status() == hyper::StatusCode::SWITCHING_PROTOCOLS => tunnel(response, input).await,
        _ => stream_back(req, response),
    }
}

/// 503 for a request that did not reach the service; the APIService is checked again.
fn unreachable(aggregator: &Aggregator, remote: &Remote, e: &ProxyError) -> HttpResponse {
    tracing::debug!(apiservice = remote.name, error = %e, "aggregated API request failed");
    aggregator.nudge(&remote.name);
    let message = format!("error trying to reach service: {e}");
    status::failure(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", &message)
}

/// Whether the request carries a body: a non-zero `Content-Length` or chunked encoding.
fn has_body(headers: &HeaderMap) -> bool {
    let length = headers.get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    length.is_some_and(|l| l > 0) || headers.contains_key("transfer-encoding")
}

/// The client's body, streamed as it arrives.
fn request_body(payload: Payload) -> ProxyBody {
    ProxyBody::Stream(payload.map(|chunk| chunk.map_err(|e| std::io::Error::other(e.to_string()))).boxed_local())
}

/// The request to the extension server: the same method, path, query and end-to-end
/// headers, with the front proxy's identity headers.
fn request(
    req: &HttpRequest,
    user: &UserInfo,
    host: &str,
    upgrade: Option<HeaderValue>,
    body: ProxyBody,
) -> Result<hyper::Request<ProxyBody>, String> {
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut builder = hyper::Request::builder().method(req.method().as_str()).uri(path);
    for (name, value) in end_to_end_headers(req) {
        builder = builder.header(name, value);
    }
    if let Some(upgrade) = upgrade {
        builder = builder.header("connection", "Upgrade").header("upgrade", upgrade.as_bytes());
    }
    builder = builder.header("host", host).header(USER_HEADER, user.name.as_str());
    for group in &user.groups {
        builder = builder.header(GROUP_HEADER, group.as_str());
    }
    if let Some(peer) = req.peer_addr() {
        builder = builder.header("x-forwarded-for", peer.ip().to_string());
    }
    builder.body(body).map_err(|e| format!("the request cannot be sent on: {e}"))
}

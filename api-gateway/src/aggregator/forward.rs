//! One request to an aggregated API, sent on to its extension server as kube-aggregator's
//! proxy handler does: 503 `service unavailable` while the APIService is not available; the
//! caller's identity in `X-Remote-User` and `X-Remote-Group` (its own `Authorization` and
//! any `X-Remote-*` headers dropped); hop-by-hop headers dropped both ways; bodies streamed
//! both ways as they come (a watch's events reach the client one by one); a WebSocket
//! upgrade (`kubectl exec`-style) tunnelled byte for byte once the server switches protocols.

use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, UPGRADE};
use actix_web::http::StatusCode;
use actix_web::{HttpMessage, HttpRequest, HttpResponse};
use actors::ApiError;
use futures::StreamExt;
use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};
use hyper::Response;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::front_proxy::{GROUP_HEADER, USER_HEADER};
use super::proxy::{self, ProxyBody, ProxyError};
use super::{Aggregator, Remote};
use crate::authn::UserInfo;
use crate::status;

/// Headers that belong to one connection, never forwarded (RFC 9110 7.6.1, and Go's list).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

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

/// The `Upgrade` value of a WebSocket upgrade request (the only upgrade actix-web hands
/// over as a raw stream).
fn websocket_upgrade(headers: &HeaderMap) -> Option<HeaderValue> {
    let upgrade = headers.get(UPGRADE)?;
    let websocket = upgrade.to_str().is_ok_and(|u| u.trim().eq_ignore_ascii_case("websocket"));
    let connection = headers
        .get_all(CONNECTION)
        .any(|v| v.to_str().is_ok_and(|v| v.split(',').any(|option| option.trim().eq_ignore_ascii_case("upgrade"))));
    (websocket && connection).then(|| upgrade.clone())
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

/// The names the `Connection` header lists: hop-by-hop too.
fn connection_options(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(CONNECTION)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|o| o.trim().to_ascii_lowercase()))
        .filter(|o| !o.is_empty())
        .collect()
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
    let listed = connection_options(req.headers());
    for (name, value) in req.headers() {
        let name = name.as_str();
        let dropped = HOP_BY_HOP.contains(&name)
            || listed.iter().any(|l| l == name)
            || matches!(name, "host" | "authorization")
            || name.starts_with("x-remote-")
            || name.starts_with("impersonate-");
        if !dropped {
            builder = builder.header(name, value.as_bytes());
        }
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

/// The status and end-to-end headers of the server's response.
fn response_head(response: &Response<Incoming>, keep_upgrade: bool) -> actix_web::HttpResponseBuilder {
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut builder = HttpResponse::build(status);
    let listed: Vec<String> = response
        .headers()
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|o| o.trim().to_ascii_lowercase()))
        .collect();
    for (name, value) in response.headers() {
        let name = name.as_str();
        let hop = HOP_BY_HOP.contains(&name) || listed.iter().any(|l| l == name) || name == "content-length";
        if hop && !(keep_upgrade && name == "upgrade") {
            continue;
        }
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(value.as_bytes()))
        {
            builder.append_header((name, value));
        }
    }
    builder
}

/// The server's response with its body streamed chunk by chunk (sized when it says its size).
fn stream_back(req: &HttpRequest, response: Response<Incoming>) -> HttpResponse {
    let mut builder = response_head(&response, false);
    let length = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let no_body = req.method() == actix_web::http::Method::HEAD
        || matches!(response.status().as_u16(), 204 | 304)
        || length == Some(0);
    if no_body {
        return builder.finish();
    }
    let chunks = response.into_body().into_data_stream();
    match length {
        Some(length) => builder.body(actix_web::body::SizedStream::new(length, chunks)),
        None => builder.streaming(chunks),
    }
}

/// How much of the server's side of a tunnel is read at once.
const TUNNEL_READ: usize = 32 * 1024;
/// How long a tunnel waits for the server's connection to be handed over after the 101.
const UPGRADE_WAIT: Duration = Duration::from_secs(10);

/// A `101 Switching Protocols`: the client's raw bytes (`input`) go to the server's
/// upgraded connection, and the server's come back as the response body, until either side
/// closes.
async fn tunnel(mut response: Response<Incoming>, mut input: Payload) -> HttpResponse {
    let mut builder = response_head(&response, true);
    let upgraded = match actix_web::rt::time::timeout(UPGRADE_WAIT, hyper::upgrade::on(&mut response)).await {
        Ok(Ok(upgraded)) => upgraded,
        Ok(Err(e)) => return bad_gateway(&format!("the upgraded connection failed: {e}")),
        Err(_) => return bad_gateway("the upgraded connection was not handed over in time"),
    };
    let (from_server, mut to_server) = tokio::io::split(TokioIo::new(upgraded));
    actix_web::rt::spawn(async move {
        while let Some(Ok(bytes)) = input.next().await {
            if to_server.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = to_server.shutdown().await;
    });
    let from_server = futures::stream::unfold(from_server, |mut reader| async move {
        let mut buf = vec![0u8; TUNNEL_READ];
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), reader))
            }
        }
    });
    builder.streaming(from_server)
}

fn bad_gateway(message: &str) -> HttpResponse {
    status::failure(StatusCode::BAD_GATEWAY, "InternalError", message)
}

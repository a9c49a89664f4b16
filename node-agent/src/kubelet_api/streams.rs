//! `exec`, `attach` and `portForward`: the runtime serves these streams itself (CRI hands
//! out a URL on containerd's loopback stream server); the endpoint accepts the client's
//! WebSocket and relays it there.
//!
//! kubectl 1.32 speaks `v5.channel.k8s.io` for exec/attach; containerd 1.6 knows up to
//! `v4.channel.k8s.io`, whose frames are the same (a channel byte, then data) except v5's
//! close signal (channel 255), which v4 cannot carry and is dropped. Port-forward comes
//! as SPDY tunnelled in WebSocket messages (`SPDY/3.1+portforward.k8s.io`); it is
//! unwrapped onto a plain SPDY upgrade of the runtime's URL.

use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::header::{
    HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL, UPGRADE,
};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::{flag, query_pairs, text, Body, Pods};

const V5: &str = "v5.channel.k8s.io";
const V4: &str = "v4.channel.k8s.io";
const PORT_FORWARD: &str = "SPDY/3.1+portforward.k8s.io";

/// The subprotocol to answer with: the first the client offers that we speak.
fn choose(request: &Request<Incoming>, ours: &[&'static str]) -> Option<&'static str> {
    let offered = request.headers().get_all(SEC_WEBSOCKET_PROTOCOL);
    let offered: Vec<String> = offered
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_string()))
        .collect();
    offered.iter().find_map(|p| ours.iter().find(|o| **o == p.as_str()).copied())
}

fn is_websocket(request: &Request<Incoming>) -> bool {
    request.headers().get(UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The 101 answer that accepts the client's WebSocket with `protocol`.
fn switching(request: &Request<Incoming>, protocol: &'static str) -> Option<Response<Body>> {
    let key = request.headers().get(SEC_WEBSOCKET_KEY)?;
    let mut response = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(&derive_accept_key(key.as_bytes())).ok()?);
    headers.insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(protocol));
    Some(response)
}

/// `http://host:port/path` of the runtime's stream server as host:port and path.
fn split_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("http://")?;
    let slash = rest.find('/')?;
    Some((rest[..slash].to_string(), rest[slash..].to_string()))
}

/// `exec` or `attach` into a container of pod `namespace/pod`.
pub async fn exec_or_attach(
    request: Request<Incoming>,
    pods: &Pods,
    attach: bool,
    namespace: &str,
    pod: &str,
    container: &str,
) -> Response<Body> {
    if !is_websocket(&request) {
        return text(StatusCode::BAD_REQUEST, "Upgrade request required: this node serves streams over WebSocket");
    }
    let Some(protocol) = choose(&request, &[V5, V4]) else {
        return text(StatusCode::BAD_REQUEST, format!("unsupported subprotocol: this node speaks {V5} and {V4}"));
    };
    let Some(id) = pods.registry.get(namespace, pod).and_then(|e| e.containers.get(container).map(|c| c.id.clone()))
    else {
        return text(StatusCode::NOT_FOUND, format!("container {container} of pod {namespace}/{pod} not found"));
    };
    let pairs = query_pairs(request.uri().query().unwrap_or(""));
    let (stdin, stdout, stderr, tty) =
        (flag(&pairs, "stdin"), flag(&pairs, "stdout"), flag(&pairs, "stderr"), flag(&pairs, "tty"));
    let url = if attach {
        pods.cri.attach(cri::AttachRequest { container_id: id, stdin, tty, stdout, stderr }).await
    } else {
        let cmd: Vec<String> = pairs.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.clone()).collect();
        if cmd.is_empty() {
            return text(StatusCode::BAD_REQUEST, "you must specify at least 1 command");
        }
        pods.cri.exec(cri::ExecRequest { container_id: id, cmd, tty, stdin, stdout, stderr }).await
    };
    let url = match url {
        Ok(url) => url,
        Err(error) => return text(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
    };
    let Some((host, path)) = split_url(&url) else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, format!("runtime stream URL {url:?} not understood"));
    };
    // Connected before the client hears 101, so a failure is still an HTTP error.
    let runtime = match connect_websocket(&host, &path, V4).await {
        Ok(runtime) => runtime,
        Err(error) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("runtime stream server: {error}")),
    };
    let Some(response) = switching(&request, protocol) else {
        return text(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
    };
    tokio::spawn(async move {
        let upgraded = match hyper::upgrade::on(request).await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                tracing::debug!(%error, "stream upgrade failed");
                return;
            }
        };
        let client = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        relay_channels(client, runtime, protocol == V5).await;
    });
    response
}

type RuntimeSocket = WebSocketStream<tokio::net::TcpStream>;

async fn connect_websocket(host: &str, path: &str, protocol: &str) -> Result<RuntimeSocket, String> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let tcp = tokio::net::TcpStream::connect(host).await.map_err(|e| e.to_string())?;
    let mut request = format!("ws://{host}{path}").into_client_request().map_err(|e| e.to_string())?;
    request.headers_mut().insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_str(protocol).map_err(|e| e.to_string())?);
    let (socket, response) = tokio_tungstenite::client_async(request, tcp).await.map_err(|e| e.to_string())?;
    tracing::debug!(protocol = ?response.headers().get(SEC_WEBSOCKET_PROTOCOL), "runtime stream connected");
    Ok(socket)
}

/// Relays channel frames both ways until either side closes.
async fn relay_channels<S>(client: WebSocketStream<S>, runtime: RuntimeSocket, client_is_v5: bool)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut client_tx, mut client_rx) = client.split();
    let (mut runtime_tx, mut runtime_rx) = runtime.split();
    loop {
        tokio::select! {
            message = client_rx.next() => match message {
                Some(Ok(Message::Binary(data))) => {
                    // v5's close signal has no v4 form.
                    if client_is_v5 && data.first() == Some(&255) {
                        continue;
                    }
                    if runtime_tx.send(Message::Binary(data)).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Text(data))) => {
                    if runtime_tx.send(Message::Text(data)).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    let _ = runtime_tx.send(normal_close()).await;
                    break;
                }
            },
            message = runtime_rx.next() => match message {
                Some(Ok(message @ (Message::Binary(_) | Message::Text(_)))) => {
                    if client_tx.send(message).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    let _ = client_tx.send(normal_close()).await;
                    break;
                }
            },
        }
    }
}

/// A close with code 1000: kubectl takes any other (even none) as a broken stream.
fn normal_close() -> Message {
    Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() }))
}

/// `portForward` to pod `namespace/pod`: SPDY in WebSocket messages, unwrapped onto the
/// runtime's SPDY stream server.
pub async fn port_forward(request: Request<Incoming>, pods: &Pods, namespace: &str, pod: &str) -> Response<Body> {
    if !is_websocket(&request) {
        return text(StatusCode::BAD_REQUEST, "Upgrade request required: this node serves streams over WebSocket");
    }
    let Some(protocol) = choose(&request, &[PORT_FORWARD]) else {
        return text(StatusCode::BAD_REQUEST, format!("unsupported subprotocol: this node speaks {PORT_FORWARD}"));
    };
    let Some(sandbox) = pods.registry.get(namespace, pod).map(|e| e.sandbox_id) else {
        return text(StatusCode::NOT_FOUND, format!("pod {namespace}/{pod} not found on this node"));
    };
    let pairs = query_pairs(request.uri().query().unwrap_or(""));
    let ports: Vec<i32> =
        pairs.iter().filter(|(k, _)| k == "port" || k == "ports").filter_map(|(_, v)| v.parse().ok()).collect();
    let url = match pods.cri.port_forward(&sandbox, ports).await {
        Ok(url) => url,
        Err(error) => return text(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
    };
    let Some((host, path)) = split_url(&url) else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, format!("runtime stream URL {url:?} not understood"));
    };
    let runtime = match spdy_upgrade(&host, &path).await {
        Ok(runtime) => runtime,
        Err(error) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("runtime stream server: {error}")),
    };
    let Some(response) = switching(&request, protocol) else {
        return text(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
    };
    tokio::spawn(async move {
        let Ok(upgraded) = hyper::upgrade::on(request).await else { return };
        let client = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        relay_bytes(client, runtime).await;
    });
    response
}

/// An HTTP/1.1 upgrade to SPDY/3.1 (port-forward) on the runtime's stream server.
async fn spdy_upgrade(host: &str, path: &str) -> Result<TokioIo<hyper::upgrade::Upgraded>, String> {
    let tcp = tokio::net::TcpStream::connect(host).await.map_err(|e| e.to_string())?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| e.to_string())?;
    tokio::spawn(connection.with_upgrades());
    let request = Request::post(path)
        .header("Host", host)
        .header(CONNECTION, "Upgrade")
        .header(UPGRADE, "SPDY/3.1")
        .header("X-Stream-Protocol-Version", "portforward.k8s.io")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(format!("the runtime answered {}", response.status()));
    }
    let upgraded = hyper::upgrade::on(response).await.map_err(|e| e.to_string())?;
    Ok(TokioIo::new(upgraded))
}

/// WebSocket message payloads one way, raw bytes the other, until either side ends.
async fn relay_bytes<S>(client: WebSocketStream<S>, runtime: TokioIo<hyper::upgrade::Upgraded>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut client_tx, mut client_rx) = client.split();
    let (mut runtime_rx, mut runtime_tx) = tokio::io::split(runtime);
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        tokio::select! {
            message = client_rx.next() => match message {
                Some(Ok(Message::Binary(data))) => {
                    if runtime_tx.write_all(&data).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
            },
            read = runtime_rx.read(&mut buffer) => match read {
                Ok(0) | Err(_) => {
                    let _ = client_tx.send(normal_close()).await;
                    break;
                }
                Ok(n) => {
                    if client_tx.send(Message::Binary(Bytes::copy_from_slice(&buffer[..n]))).await.is_err() {
                        break;
                    }
                }
            },
        }
    }
    let _ = runtime_tx.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_url_splits_into_address_and_path() {
        assert_eq!(
            split_url("http://127.0.0.1:43567/exec/AbC"),
            Some(("127.0.0.1:43567".to_string(), "/exec/AbC".to_string()))
        );
        assert_eq!(split_url("https://x/y"), None);
    }
}

//! The client side of proxying, shared by the aggregation layer ([`crate::aggregator`]) and the
//! kubelet proxy ([`crate::kubelet_proxy`]): one HTTP/1.1 request over TLS to an upstream
//! server ([`send`]), and the relay of its answer to the caller: the body streamed chunk by
//! chunk as it comes ([`stream_back`]), or, after a `101 Switching Protocols` to a WebSocket
//! upgrade ([`websocket_upgrade`]), the two connections joined byte for byte ([`tunnel`]).
//! Hop-by-hop headers are dropped both ways. Nothing is buffered.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, UPGRADE};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use futures::stream::LocalBoxStream;
use futures::StreamExt;
use http_body_util::BodyExt;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::pki::CertAndKey;
use crate::status;

/// A request body as the proxy sends it: none, or the client's, streamed as it arrives
/// (actix-web's payload lives on one thread, so this body is neither `Send` nor `Sync`).
pub enum ProxyBody {
    Empty,
    Stream(LocalBoxStream<'static, Result<Bytes, std::io::Error>>),
}

/// An empty body.
pub fn empty() -> ProxyBody {
    ProxyBody::Empty
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            ProxyBody::Empty => Poll::Ready(None),
            ProxyBody::Stream(stream) => stream.poll_next_unpin(cx).map(|chunk| chunk.map(|c| c.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, ProxyBody::Empty)
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Empty => SizeHint::with_exact(0),
            ProxyBody::Stream(_) => SizeHint::default(),
        }
    }
}

/// Why a request did not reach the upstream server, in Go's words where kube quotes them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// The TLS settings cannot be made (an APIService's `caBundle` with no PEM certificate,
    /// an unusable client certificate).
    #[error("{0}")]
    Config(String),
    /// The service, a port of it, or a ready address of it is missing.
    #[error("{0}")]
    Resolve(String),
    /// No TCP connection.
    #[error("dial tcp {address}: {reason}")]
    Connect { address: String, reason: String },
    /// The TLS handshake failed.
    #[error("tls: {0}")]
    Tls(String),
    /// The connection broke or the answer is not HTTP.
    #[error("{0}")]
    Transport(String),
}

/// How a client checks the upstream server's certificate.
pub enum ServerTrust {
    /// It must chain to one of these roots and name the server.
    Roots(rustls::RootCertStore),
    /// Any certificate is accepted (`insecureSkipTLSVerify`; kubelets without
    /// `--kubelet-certificate-authority`). Its signatures are still checked, so the handshake
    /// stays sound against the key it presents.
    Anything,
}

/// Client TLS settings: the server checked as `trust` says, `client` presented (`what` names
/// it in errors), HTTP/1.1 only (the tunnel and the streamed bodies are HTTP/1.1's).
pub fn client_config(
    trust: ServerTrust,
    client: &CertAndKey,
    what: &str,
) -> Result<Arc<rustls::ClientConfig>, ProxyError> {
    let config = |m: String| ProxyError::Config(m);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| config(format!("TLS settings: {e}")))?;
    let builder = match trust {
        ServerTrust::Anything => {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
        }
        ServerTrust::Roots(roots) => builder.with_root_certificates(roots),
    };
    let chain = CertificateDer::pem_slice_iter(client.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| config(format!("{what}: {e}")))?;
    let key =
        PrivateKeyDer::from_pem_slice(client.key_pem.as_bytes()).map_err(|e| config(format!("{what} key: {e}")))?;
    let mut tls = builder.with_client_auth_cert(chain, key).map_err(|e| config(format!("TLS settings: {e}")))?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(tls))
}

/// Sends `request` on a new TLS connection (`tls`, `server_name`) to `address`; the answer
/// comes back once its head has arrived. After a `101 Switching Protocols` the connection can
/// be taken over with `hyper::upgrade::on`.
pub async fn send(
    tls: &Arc<rustls::ClientConfig>,
    server_name: ServerName<'static>,
    address: &(String, u16),
    request: Request<ProxyBody>,
) -> Result<Response<Incoming>, ProxyError> {
    let (host, port) = address;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), *port))
        .await
        .map_err(|e| ProxyError::Connect { address: authority(host, *port), reason: dial_reason(&e) })?;
    let _ = tcp.set_nodelay(true);
    let connector = tokio_rustls::TlsConnector::from(tls.clone());
    let tls = connector.connect(server_name, tcp).await.map_err(|e| ProxyError::Tls(e.to_string()))?;
    let transport = |e: hyper::Error| ProxyError::Transport(e.to_string());
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(transport)?;
    // The connection runs beside the request (on the current actix arbiter) and ends once the
    // response body (or the upgraded stream) is dropped.
    actix_web::rt::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended");
        }
    });
    sender.send_request(request).await.map_err(transport)
}

/// `https://host:port{path}`, as messages name an endpoint.
pub fn url(address: &(String, u16), path: &str) -> String {
    format!("https://{}{path}", authority(&address.0, address.1))
}

/// `host:port` (IPv6 in brackets).
pub fn authority(host: &str, port: u16) -> String {
    if host.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv6()) {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Go's words for a failed dial, else the OS's.
fn dial_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".into(),
        std::io::ErrorKind::TimedOut => "i/o timeout".into(),
        _ => e.to_string(),
    }
}

/// [`ServerTrust::Anything`]: any server certificate is accepted; its signatures are checked.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Headers that belong to one connection, never forwarded (RFC 9110 7.6.1, and Go's list).
pub const HOP_BY_HOP: &[&str] = &[
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

/// The `Upgrade` value of a WebSocket upgrade request (the only upgrade actix-web hands
/// over as a raw stream).
pub fn websocket_upgrade(headers: &HeaderMap) -> Option<HeaderValue> {
    let upgrade = headers.get(UPGRADE)?;
    let websocket = upgrade.to_str().is_ok_and(|u| u.trim().eq_ignore_ascii_case("websocket"));
    let connection = headers
        .get_all(CONNECTION)
        .any(|v| v.to_str().is_ok_and(|v| v.split(',').any(|option| option.trim().eq_ignore_ascii_case("upgrade"))));
    (websocket && connection).then(|| upgrade.clone())
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

/// The client's headers that may go upstream: not hop-by-hop, not `Host`, and none that
/// carry the caller's credentials or claimed identity (`Authorization`, `X-Remote-*`,
/// `Impersonate-*`): upstream servers learn who calls from the proxy, not from the caller.
pub fn end_to_end_headers(req: &HttpRequest) -> Vec<(&str, &[u8])> {
    let listed = connection_options(req.headers());
    req.headers()
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_bytes()))
        .filter(|(name, _)| {
            !(HOP_BY_HOP.contains(name)
                || listed.iter().any(|l| l == name)
                || matches!(*name, "host" | "authorization")
                || name.starts_with("x-remote-")
                || name.starts_with("impersonate-"))
        })
        .collect()
}

/// The status and end-to-end headers of the server's response.
pub fn response_head(response: &Response<Incoming>, keep_upgrade: bool) -> actix_web::HttpResponseBuilder {
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
        if keep_upgrade && name == "upgrade" {
            // As an upgrade, so that actix writes `Connection: Upgrade` (not `close, upgrade`,
            // which strict WebSocket clients refuse) and hands the connection over.
            if let Ok(value) = HeaderValue::from_bytes(value.as_bytes()) {
                builder.upgrade(value);
            }
            continue;
        }
        let hop = HOP_BY_HOP.contains(&name) || listed.iter().any(|l| l == name) || name == "content-length";
        if hop {
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
pub fn stream_back(req: &HttpRequest, response: Response<Incoming>) -> HttpResponse {
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
/// closes. The 101's headers (`Sec-WebSocket-Accept`, `Sec-WebSocket-Protocol`) go back as
/// they are.
pub async fn tunnel(mut response: Response<Incoming>, mut input: Payload) -> HttpResponse {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn urls_bracket_ipv6_addresses() {
        assert_eq!(url(&("10.0.0.1".into(), 443), "/apis/x/v1"), "https://10.0.0.1:443/apis/x/v1");
        assert_eq!(url(&("::1".into(), 8443), "/apis"), "https://[::1]:8443/apis");
    }

    #[test]
    fn websocket_upgrades_need_both_headers() {
        let req = |headers: &[(&str, &str)]| {
            let mut req = actix_web::test::TestRequest::get();
            for (name, value) in headers {
                req = req.insert_header((*name, *value));
            }
            req.to_http_request()
        };
        let upgrade = req(&[("upgrade", "websocket"), ("connection", "keep-alive, Upgrade")]);
        assert_eq!(websocket_upgrade(upgrade.headers()).unwrap(), "websocket");
        assert!(websocket_upgrade(req(&[("upgrade", "websocket")]).headers()).is_none());
        assert!(websocket_upgrade(req(&[("upgrade", "SPDY/3.1"), ("connection", "Upgrade")]).headers()).is_none());
    }

    #[test]
    fn credentials_and_hop_by_hop_headers_stay_here() {
        let req = actix_web::test::TestRequest::get()
            .insert_header(("authorization", "Bearer secret"))
            .insert_header(("impersonate-user", "root"))
            .insert_header(("x-remote-user", "root"))
            .insert_header(("connection", "x-private"))
            .insert_header(("x-private", "1"))
            .insert_header(("keep-alive", "timeout=5"))
            .insert_header(("sec-websocket-protocol", "v5.channel.k8s.io"))
            .insert_header(("host", "localhost"))
            .to_http_request();
        let names: Vec<&str> = end_to_end_headers(&req).into_iter().map(|(name, _)| name).collect();
        assert_eq!(names, ["sec-websocket-protocol"]);
    }
}

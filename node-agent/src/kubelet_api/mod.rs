//! The kubelet endpoint: HTTPS on the node's kubelet port, answering the API server's
//! proxied requests and metrics-server's scrapes.
//!
//! - `GET /metrics/resource`, `/healthz`: anyone (kubelet's defaults, `--anonymous-auth`);
//! - `GET /containerLogs/{ns}/{pod}/{container}` ([`logs`]), `/exec/...`, `/attach/...`,
//!   `/portForward/{ns}/{pod}` ([`streams`]): only clients with a certificate the cluster
//!   CA signed (the API server's kubelet-client certificate), as kubelet's x509 auth.

pub mod logs;
pub mod streams;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::cri_pods::registry::Registry;
use crate::metrics::Source;
use crate::runtime::cri::Cri;

/// The endpoint's errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The self-signed serving certificate could not be made.
    #[error("serving certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// rustls refused the certificate, key or client CA.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("client CA: {0}")]
    ClientCa(String),
    /// The port could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A response body: whole, streamed (logs) or empty (upgrades).
pub type Body = BoxBody<Bytes, std::io::Error>;

/// A plain-text response.
pub fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let body = Full::new(Bytes::from(body.into())).map_err(|never: Infallible| match never {}).boxed();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// A 200 with metrics in Prometheus's text format.
fn prometheus_text(body: String) -> Response<Body> {
    let mut response = text(StatusCode::OK, body);
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"));
    response
}

/// What the endpoint serves.
#[derive(Clone)]
pub struct Endpoint {
    /// `/metrics/resource`: the pods' and containers' CPU and memory.
    pub metrics: Source,
    /// `/metrics`: the agent process's own metrics, when it exports them.
    pub prometheus: Option<Source>,
    /// The real node's pods (none for hollow nodes).
    pub pods: Option<Pods>,
}

/// The runtime and where each pod's containers are.
#[derive(Clone)]
pub struct Pods {
    pub cri: Cri,
    pub registry: Registry,
}

/// TLS for the endpoint: a self-signed certificate for `names` (DNS names or addresses);
/// client certificates are asked for and checked against `client_cas`, but not required
/// (metrics scrapes come without).
pub fn tls_acceptor(names: &[String], client_cas: &[Vec<u8>]) -> Result<TlsAcceptor, Error> {
    let certified = rcgen::generate_simple_self_signed(names.to_vec())?;
    let cert = CertificateDer::from(certified.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let mut config = if client_cas.is_empty() {
        builder.with_no_client_auth().with_single_cert(vec![cert], key)?
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for ca in client_cas {
            roots.add(CertificateDer::from(ca.clone()))?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .allow_unauthenticated()
            .build()
            .map_err(|e| Error::ClientCa(e.to_string()))?;
        builder.with_client_cert_verifier(verifier).with_single_cert(vec![cert], key)?
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Binds the endpoint's port (0: any free one).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr, source })
}

/// Serves the endpoint on `listener` for ever.
pub async fn serve(listener: TcpListener, tls: TlsAcceptor, endpoint: Endpoint) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "kubelet endpoint: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let (tls, endpoint) = (tls.clone(), endpoint.clone());
        tokio::spawn(async move {
            let stream = match tls.accept(tcp).await {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::debug!(%peer, %error, "kubelet endpoint: TLS handshake failed");
                    return;
                }
            };
            // rustls verified any certificate presented against the cluster CA.
            let authenticated = stream.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let endpoint = endpoint.clone();
                async move { Ok::<_, Infallible>(answer(request, &endpoint, authenticated).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "kubelet endpoint: connection ended");
            }
        });
    }
}

async fn answer(request: Request<Incoming>, endpoint: &Endpoint, authenticated: bool) -> Response<Body> {
    let path = request.uri().path().to_string();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (request.method(), parts.as_slice()) {
        (&Method::GET, ["metrics", "resource"]) => prometheus_text((endpoint.metrics)()),
        (&Method::GET, ["metrics"]) => match &endpoint.prometheus {
            Some(render) => prometheus_text(render()),
            None => text(StatusCode::NOT_FOUND, "404 page not found\n"),
        },
        (&Method::GET, ["healthz"]) => text(StatusCode::OK, "ok"),
        (_, [kind @ ("containerLogs" | "exec" | "attach" | "portForward"), ..]) => {
            if !authenticated {
                return text(StatusCode::UNAUTHORIZED, "Unauthorized");
            }
            let Some(pods) = &endpoint.pods else {
                return text(StatusCode::NOT_FOUND, "this node runs no containers (hollow)");
            };
            match (*kind, &parts[1..]) {
                ("containerLogs", [ns, pod, container]) if request.method() == Method::GET => {
                    logs::serve(pods, ns, pod, container, request.uri().query().unwrap_or("")).await
                }
                ("exec" | "attach", [ns, pod, container]) => {
                    let (ns, pod, container) = (ns.to_string(), pod.to_string(), container.to_string());
                    streams::exec_or_attach(request, pods, *kind == "attach", &ns, &pod, &container).await
                }
                ("portForward", [ns, pod]) => {
                    let (ns, pod) = (ns.to_string(), pod.to_string());
                    streams::port_forward(request, pods, &ns, &pod).await
                }
                _ => text(StatusCode::NOT_FOUND, "404 page not found\n"),
            }
        }
        (&Method::GET, _) => text(StatusCode::NOT_FOUND, "404 page not found\n"),
        _ => text(StatusCode::METHOD_NOT_ALLOWED, "405 method not allowed\n"),
    }
}

/// `key=value` pairs of a query string, in order (a key may repeat: `command`).
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

/// A boolean query flag as kube's clients send it (`true`/`1`).
pub fn flag(pairs: &[(String, String)], key: &str) -> bool {
    pairs.iter().any(|(k, v)| k == key && (v == "true" || v == "1"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn endpoint() -> Endpoint {
        Endpoint {
            metrics: Arc::new(|| "node_memory_working_set_bytes 1 2\n".to_string()),
            prometheus: Some(Arc::new(|| "flotilla_service_proxy_syncs_total 3\n".to_string())),
            pods: None,
        }
    }

    #[tokio::test]
    async fn the_endpoint_answers_over_tls_and_refuses_other_paths_and_anonymous_log_readers() {
        let listener = bind(([127, 0, 0, 1], 0).into()).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let ca = rcgen::generate_simple_self_signed(vec!["ca".to_string()]).unwrap();
        let tls = tls_acceptor(&["localhost".into(), "127.0.0.1".into()], &[ca.cert.der().to_vec()]).unwrap();
        tokio::spawn(serve(listener, tls, endpoint()));
        let get = |path: &'static str| async move {
            tokio::task::spawn_blocking(move || insecure_get(port, path)).await.unwrap()
        };
        let (code, body) = get("/metrics/resource").await;
        assert_eq!(code, 200);
        assert_eq!(body, "node_memory_working_set_bytes 1 2\n");
        assert_eq!(get("/metrics").await, (200, "flotilla_service_proxy_syncs_total 3\n".to_string()));
        assert_eq!(get("/healthz").await.0, 200);
        assert_eq!(get("/pods").await.0, 404);
        assert_eq!(get("/containerLogs/default/web/app").await.0, 401);
        assert_eq!(get("/exec/default/web/app?command=ls").await.0, 401);
    }

    #[test]
    fn query_flags_and_repeated_keys() {
        let pairs = query_pairs("command=cat&command=%2Fetc%2Fhostname&stdout=true&stdin=1&tty=false");
        let commands: Vec<&str> = pairs.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.as_str()).collect();
        assert_eq!(commands, ["cat", "/etc/hostname"]);
        assert!(flag(&pairs, "stdout") && flag(&pairs, "stdin"));
        assert!(!flag(&pairs, "tty") && !flag(&pairs, "stderr"));
    }

    /// `GET path` over TLS without verifying the server (as `--kubelet-insecure-tls`).
    fn insecure_get(port: u16, path: &str) -> (u16, String) {
        use std::io::{Read, Write};

        #[derive(Debug)]
        struct AnyServer(Arc<rustls::crypto::CryptoProvider>);
        impl rustls::client::danger::ServerCertVerifier for AnyServer {
            fn verify_server_cert(
                &self,
                _: &CertificateDer<'_>,
                _: &[CertificateDer<'_>],
                _: &rustls::pki_types::ServerName<'_>,
                _: &[u8],
                _: rustls::pki_types::UnixTime,
            ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            fn verify_tls12_signature(
                &self,
                m: &[u8],
                c: &CertificateDer<'_>,
                d: &rustls::DigitallySignedStruct,
            ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
                rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
            }
            fn verify_tls13_signature(
                &self,
                m: &[u8],
                c: &CertificateDer<'_>,
                d: &rustls::DigitallySignedStruct,
            ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
                rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
            }
            fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
                self.0.signature_verification_algorithms.supported_schemes()
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        write!(tls, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
        let mut raw = Vec::new();
        let _ = tls.read_to_end(&mut raw);
        let text = String::from_utf8_lossy(&raw);
        let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (code, text.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
    }
}

//! The aggregator's client side: one HTTP/1.1 request to an extension server over TLS,
//! verified against the APIService's `caBundle` (or not at all with
//! `insecureSkipTLSVerify`), presenting the front proxy's client certificate.
//!
//! [`Transport`] is made once per APIService (it holds the TLS settings and the session
//! cache); [`Transport::endpoint`] finds the service's address through its Endpoints, as
//! [`crate::webhook_client`] does for webhooks; [`Transport::send`] opens a connection and
//! returns the response as soon as its head arrives: the body streams, and the connection
//! lives (on the current actix arbiter) as long as the body is read or the upgraded stream
//! is used. Bodies are not buffered anywhere.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use actors::KindActors;
use base64::Engine;
use futures::stream::LocalBoxStream;
use futures::StreamExt;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::json;

use crate::pki::CertAndKey;
use crate::webhook_client;

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

/// Why a request did not reach the extension server, in Go's words where kube quotes them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// The TLS settings cannot be made from the APIService (a `caBundle` with no PEM
    /// certificate, an unusable front-proxy certificate).
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

/// A service reference of an APIService.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRef {
    pub namespace: String,
    pub name: String,
    pub port: u16,
}

impl ServiceRef {
    /// `{name}.{namespace}.svc`: the name its serving certificate must carry.
    pub fn host(&self) -> String {
        format!("{}.{}.svc", self.name, self.namespace)
    }
}

/// How to reach one APIService's service. Cheap to clone; keep it while the APIService is
/// unchanged (its TLS settings hold the session cache).
#[derive(Clone)]
pub struct Transport {
    tls: Arc<rustls::ClientConfig>,
    resolver: webhook_client::ClientConfig,
    server_name: ServerName<'static>,
    /// The `Host` header: `{name}.{namespace}.svc:{port}`.
    pub host_header: String,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport").field("host", &self.host_header).finish_non_exhaustive()
    }
}

impl Transport {
    /// The transport to `service`, trusting `ca_bundle` (base64 PEM, as in the APIService;
    /// the system's roots without one) or nothing with `insecure`, and presenting `client`.
    pub fn new(
        service: &ServiceRef,
        ca_bundle: Option<&str>,
        insecure: bool,
        client: &CertAndKey,
    ) -> Result<Transport, ProxyError> {
        let config = |m: String| ProxyError::Config(m);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| config(format!("TLS settings: {e}")))?;
        let builder = if insecure {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
        } else {
            builder.with_root_certificates(roots(ca_bundle)?)
        };
        let chain = CertificateDer::pem_slice_iter(client.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| config(format!("the front-proxy client certificate: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(client.key_pem.as_bytes())
            .map_err(|e| config(format!("the front-proxy client key: {e}")))?;
        let mut tls = builder.with_client_auth_cert(chain, key).map_err(|e| config(format!("TLS settings: {e}")))?;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let reference =
            json!({"service": {"namespace": service.namespace, "name": service.name, "port": service.port}});
        let resolver = webhook_client::ClientConfig::parse(&reference).map_err(|e| config(e.to_string()))?;
        let host = service.host();
        let server_name = ServerName::try_from(host.clone()).map_err(|e| config(format!("host {host:?}: {e}")))?;
        Ok(Transport { tls: Arc::new(tls), resolver, server_name, host_header: format!("{host}:{}", service.port) })
    }

    /// The address to connect to: a ready address of the service's Endpoints on the port
    /// the service port maps to (see [`webhook_client::ClientConfig::endpoint`]).
    pub async fn endpoint(&self, actors: &KindActors) -> Result<(String, u16), ProxyError> {
        match self.resolver.endpoint(actors).await {
            Ok(endpoint) => Ok(endpoint.connect),
            Err(e) => Err(ProxyError::Resolve(e.to_string())),
        }
    }

    /// Sends `request` on a new connection to `address`; the answer comes back once its head
    /// has arrived. After a `101 Switching Protocols` the connection can be taken over with
    /// `hyper::upgrade::on`.
    pub async fn send(
        &self,
        address: &(String, u16),
        request: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, ProxyError> {
        let (host, port) = address;
        let tcp = tokio::net::TcpStream::connect((host.as_str(), *port))
            .await
            .map_err(|e| ProxyError::Connect { address: authority(host, *port), reason: dial_reason(&e) })?;
        let _ = tcp.set_nodelay(true);
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        let tls = connector.connect(self.server_name.clone(), tcp).await.map_err(|e| ProxyError::Tls(e.to_string()))?;
        let transport = |e: hyper::Error| ProxyError::Transport(e.to_string());
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(transport)?;
        // The connection runs beside the request and ends once the response body (or the
        // upgraded stream) is dropped.
        actix_web::rt::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(error = %e, "aggregated API connection ended");
            }
        });
        sender.send_request(request).await.map_err(transport)
    }
}

/// `https://host:port`, as messages name an endpoint.
pub fn url(address: &(String, u16), path: &str) -> String {
    format!("https://{}{path}", authority(&address.0, address.1))
}

/// `host:port` (IPv6 in brackets).
fn authority(host: &str, port: u16) -> String {
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

/// The trust roots of a base64 PEM `caBundle`, or the system's without one.
fn roots(ca_bundle: Option<&str>) -> Result<rustls::RootCertStore, ProxyError> {
    let pem = match ca_bundle.map(str::trim).filter(|b| !b.is_empty()) {
        Some(bundle) => base64::engine::general_purpose::STANDARD
            .decode(bundle)
            .map_err(|e| ProxyError::Config(format!("caBundle is not base64: {e}")))?,
        None => {
            let file = std::env::var_os("SSL_CERT_FILE").unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into());
            std::fs::read(file).unwrap_or_default()
        }
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
        let _ = roots.add(cert);
    }
    if roots.is_empty() && ca_bundle.is_some() {
        return Err(ProxyError::Config("caBundle holds no PEM certificate".into()));
    }
    Ok(roots)
}

/// `insecureSkipTLSVerify`: any server certificate is accepted (its signatures are still
/// checked, so the handshake stays sound against the key it presents).
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn service() -> ServiceRef {
        ServiceRef { namespace: "kube-system".into(), name: "metrics".into(), port: 443 }
    }

    fn client() -> (tempfile::TempDir, CertAndKey) {
        let dir = tempfile::tempdir().unwrap();
        let pki = crate::pki::load_or_create(dir.path(), &[]).unwrap();
        (dir, pki.admin)
    }

    #[test]
    fn a_transport_names_the_service_host_and_refuses_a_bundle_without_certificates() {
        let (_dir, client) = client();
        let transport = Transport::new(&service(), None, true, &client).unwrap();
        assert_eq!(transport.host_header, "metrics.kube-system.svc:443");
        let not_pem = base64::engine::general_purpose::STANDARD.encode("not pem");
        let e = Transport::new(&service(), Some(&not_pem), false, &client).unwrap_err();
        assert_eq!(e, ProxyError::Config("caBundle holds no PEM certificate".into()));
        assert!(matches!(Transport::new(&service(), Some("%%"), false, &client), Err(ProxyError::Config(_))));
    }

    #[test]
    fn urls_bracket_ipv6_addresses() {
        assert_eq!(url(&("10.0.0.1".into(), 443), "/apis/x/v1"), "https://10.0.0.1:443/apis/x/v1");
        assert_eq!(url(&("::1".into(), 8443), "/apis"), "https://[::1]:8443/apis");
    }
}

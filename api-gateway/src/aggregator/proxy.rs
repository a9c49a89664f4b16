//! The aggregator's client side: one HTTP/1.1 request to an extension server over TLS,
//! verified against the APIService's `caBundle` (or not at all with
//! `insecureSkipTLSVerify`), presenting the front proxy's client certificate.
//!
//! [`Transport`] is made once per APIService (it holds the TLS settings and the session
//! cache); [`Transport::endpoint`] finds the service's address through its Endpoints, as
//! [`crate::webhook_client`] does for webhooks; [`Transport::send`] opens a connection and
//! returns the response as soon as its head arrives: the body streams, and the connection
//! lives (on the current actix arbiter) as long as the body is read or the upgraded stream
//! is used. Bodies are not buffered anywhere. The TLS and HTTP client itself is
//! [`crate::upstream`]'s, shared with the kubelet proxy.

use std::sync::Arc;

use actors::KindActors;
use base64::Engine;
use hyper::body::Incoming;
use hyper::{Request, Response};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;

use crate::pki::CertAndKey;
use crate::upstream::{self, ServerTrust};
use crate::webhook_client;

// The client pieces moved to `crate::upstream` (the kubelet proxy shares them); the
// aggregator's modules keep naming them here.
pub use crate::upstream::{empty, url, ProxyBody, ProxyError};

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
        let trust = if insecure { ServerTrust::Anything } else { ServerTrust::Roots(roots(ca_bundle)?) };
        let tls = upstream::client_config(trust, client, "the front-proxy client certificate")?;
        let reference =
            json!({"service": {"namespace": service.namespace, "name": service.name, "port": service.port}});
        let resolver = webhook_client::ClientConfig::parse(&reference).map_err(|e| config(e.to_string()))?;
        let host = service.host();
        let server_name = ServerName::try_from(host.clone()).map_err(|e| config(format!("host {host:?}: {e}")))?;
        Ok(Transport { tls, resolver, server_name, host_header: format!("{host}:{}", service.port) })
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
        upstream::send(&self.tls, self.server_name.clone(), address, request).await
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
}

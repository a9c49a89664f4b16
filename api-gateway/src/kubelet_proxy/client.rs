//! The API server's HTTPS client towards kubelets, as kube-apiserver's: it presents the
//! cluster CA's `apiserver-kubelet-client` certificate ([`CLIENT_NAME`] in [`CLIENT_GROUP`],
//! made by [`crate::pki`]), which kubelets trust through their `--client-ca-file`; and, like
//! kube-apiserver without `--kubelet-certificate-authority`, it does not verify the kubelet's
//! serving certificate, because kubelets serve a self-signed one by default that no CA of the
//! cluster could check. One connection per request (logs and streams are long-lived anyway).

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response};
use rustls::pki_types::ServerName;

use crate::pki::CertAndKey;
use crate::upstream::{self, ProxyBody, ProxyError, ServerTrust};

/// The common name (user) of the certificate, kubeadm's.
pub const CLIENT_NAME: &str = "kube-apiserver-kubelet-client";
/// Its organization (group), kubeadm's since 1.29: bound to `cluster-admin`.
pub const CLIENT_GROUP: &str = "kubeadm:cluster-admins";

/// The TLS settings towards kubelets. Cheap to clone.
#[derive(Clone)]
pub struct KubeletClient {
    tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for KubeletClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletClient").finish_non_exhaustive()
    }
}

impl KubeletClient {
    /// A client presenting `certificate` (the `Pki`'s `kubelet_client`).
    pub fn new(certificate: &CertAndKey) -> Result<KubeletClient, ProxyError> {
        // No verification of the kubelet's certificate: see the module's documentation.
        let tls = upstream::client_config(ServerTrust::Anything, certificate, "the kubelet client certificate")?;
        Ok(KubeletClient { tls })
    }

    /// Sends `request` to the kubelet at `address` on a new connection; the answer comes back
    /// once its head has arrived (the body, or the upgraded stream, follows as it comes).
    pub async fn send(
        &self,
        address: &(String, u16),
        request: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, ProxyError> {
        // The name only fills SNI: the certificate is not checked against it.
        let server_name = ServerName::try_from(address.0.clone())
            .map_err(|e| ProxyError::Config(format!("kubelet host {:?}: {e}", address.0)))?;
        upstream::send(&self.tls, server_name, address, request).await
    }
}

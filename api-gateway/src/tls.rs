//! The API server's TLS settings: its serving certificate, and client certificates verified
//! against the cluster CA but not required (anonymous clients may still reach `/livez`).

use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig};

use crate::pki::Pki;

/// Errors building the TLS settings from the certificates.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key is not valid PEM.
    #[error("reading the {what} PEM: {source}")]
    Pem { what: &'static str, source: pem::Error },
    /// rustls refused a certificate or key.
    #[error("TLS settings: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client certificate verifier could not be built.
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] VerifierBuilderError),
}

/// TLS 1.2 and 1.3 with the ring provider; the serving certificate from `pki`; client
/// certificates optional, and when given they must chain to the cluster CA.
pub fn server_config(pki: &Pki) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let pem_error = |what| move |source| TlsError::Pem { what, source };
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(pki.ca.cert_pem.as_bytes()).map_err(pem_error("CA certificate"))?)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let chain = CertificateDer::pem_slice_iter(pki.apiserver.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error("serving certificate"))?;
    let key = PrivateKeyDer::from_pem_slice(pki.apiserver.key_pem.as_bytes()).map_err(pem_error("serving key"))?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    Ok(config)
}

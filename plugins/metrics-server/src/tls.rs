//! TLS settings: the serving side (our certificate; client certificates verified against
//! the request-header CA when presented) and the client side (to the API server and to
//! kubelets: their CA or no verification, and our credentials).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::kubeconfig::Credentials;

/// Why TLS settings could not be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A PEM certificate or key could not be read.
    #[error("{what}: {reason}")]
    Pem { what: &'static str, reason: String },
    /// rustls refused the settings.
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built.
    #[error("client verifier: {0}")]
    Verifier(String),
    /// A self-signed certificate could not be made.
    #[error("generating a serving certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(pem: &[u8], what: &'static str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Pem { what, reason: e.to_string() })?;
    if certs.is_empty() {
        return Err(Error::Pem { what, reason: "no PEM certificate".into() });
    }
    Ok(certs)
}

fn key(pem: &[u8], what: &'static str) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| Error::Pem { what, reason: e.to_string() })
}

/// Roots made of every certificate in `pem`.
fn roots(pem: &[u8], what: &'static str) -> Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(pem, what)? {
        roots.add(cert).map_err(|e| Error::Pem { what, reason: e.to_string() })?;
    }
    Ok(roots)
}

/// Serving with `cert_pem`/`key_pem`; a client certificate, when one is presented, must
/// chain to `client_ca_pem` (requests without one go on as anonymous, as in Kubernetes).
pub fn server(cert_pem: &[u8], key_pem: &[u8], client_ca_pem: &[u8]) -> Result<rustls::ServerConfig> {
    let provider = provider();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots(client_ca_pem, "client CA")?),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| Error::Verifier(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certificates(cert_pem, "serving certificate")?, key(key_pem, "serving key")?)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A self-signed serving certificate and key (PEM) for `names`, as metrics-server makes one
/// when given no `--tls-cert-file`; register it with `insecureSkipTLSVerify: true`.
pub fn self_signed(names: &[String]) -> Result<(String, String)> {
    let certified = rcgen::generate_simple_self_signed(names.to_vec())?;
    Ok((certified.cert.pem(), certified.signing_key.serialize_pem()))
}

/// A client trusting `ca_pem` (or nothing but, with `insecure`, anyone), presenting a client
/// certificate when `credentials` hold one.
pub fn client(ca_pem: Option<&[u8]>, insecure: bool, credentials: &Credentials) -> Result<rustls::ClientConfig> {
    let provider = provider();
    let builder =
        rustls::ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let builder = if insecure {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    } else {
        let roots = match ca_pem {
            Some(pem) => roots(pem, "CA")?,
            None => rustls::RootCertStore::empty(),
        };
        builder.with_root_certificates(roots)
    };
    let mut config = match credentials {
        Credentials::ClientCertificate { cert_pem, key_pem } => {
            builder.with_client_auth_cert(certificates(cert_pem, "client certificate")?, key(key_pem, "client key")?)?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts any server certificate (`--kubelet-insecure-tls`, `insecure-skip-tls-verify`),
/// still checking the handshake's signatures.
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
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

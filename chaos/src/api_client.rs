//! A small HTTPS client of the Kubernetes API for the chaos workload: JSON requests and watch
//! streams against one member, authenticated by the admin's client certificate. It tells a
//! request that never reached the server (connection refused: safe to call a failure) from one
//! that may have (then the outcome is unknown).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The connection could not be made: the request never left.
    #[error("not sent: {0}")]
    NotSent(String),
    /// The request may have reached the server (broken connection, timeout).
    #[error("no answer: {0}")]
    NoAnswer(String),
    /// The client could not be set up (certificates).
    #[error("setup: {0}")]
    Setup(String),
}

/// A member's API at `https://host:port`.
#[derive(Clone)]
pub struct ApiClient {
    /// `host:port`.
    addr: String,
    tls: TlsConnector,
}

/// An answer: the HTTP status and the JSON body (`Null` when empty or not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    /// The `reason` of a Status body (`AlreadyExists`, `Conflict`, `NotFound`, ...).
    pub fn reason(&self) -> &str {
        self.body.get("reason").and_then(Value::as_str).unwrap_or("")
    }
}

impl ApiClient {
    /// A client of `url` (`https://127.0.0.1:PORT`) with the cluster's `ca.crt` and the
    /// admin's `admin.crt`/`admin.key` from `pki`.
    pub fn new(url: &str, pki: &Path) -> Result<Self, ApiError> {
        let setup = |e: &dyn std::fmt::Display| ApiError::Setup(e.to_string());
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(pki.join("ca.crt")).map_err(|e| setup(&e))? {
            roots.add(cert.map_err(|e| setup(&e))?).map_err(|e| setup(&e))?;
        }
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(pki.join("admin.crt"))
            .map_err(|e| setup(&e))?
            .collect::<Result<_, _>>()
            .map_err(|e| setup(&e))?;
        let key = PrivateKeyDer::from_pem_file(pki.join("admin.key")).map_err(|e| setup(&e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| setup(&e))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| setup(&e))?;
        let addr = url.trim_start_matches("https://").trim_end_matches('/').to_string();
        Ok(ApiClient { addr, tls: TlsConnector::from(Arc::new(config)) })
    }

    /// `host:port` of the member.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<hyper::Response<Incoming>, ApiError> {
        let tcp = TcpStream::connect(&self.addr).await.map_err(|e| ApiError::NotSent(e.to_string()))?;
        let name = ServerName::try_from("localhost").map_err(|e| ApiError::Setup(e.to_string()))?;
        let tls = self.tls.connect(name, tcp).await.map_err(|e| ApiError::NotSent(format!("TLS: {e}")))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| ApiError::NotSent(e.to_string()))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.addr)
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .body(Full::new(bytes))
            .map_err(|e| ApiError::Setup(e.to_string()))?;
        sender.send_request(request).await.map_err(|e| ApiError::NoAnswer(e.to_string()))
    }

    /// One request with its whole answer, within `timeout`.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Answer, ApiError> {
        let call = async {
            let response = self.send(method, path, body).await?;
            let status = response.status().as_u16();
            let bytes = response.into_body().collect().await.map_err(|e| ApiError::NoAnswer(e.to_string()))?;
            let body = serde_json::from_slice(&bytes.to_bytes()).unwrap_or(Value::Null);
            Ok(Answer { status, body })
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(answer) => answer,
            Err(_) => Err(ApiError::NoAnswer(format!("no answer within {timeout:?}"))),
        }
    }

    /// Starts a watch (`path` with `watch=1`): the status, and the stream of events when 200.
    pub async fn watch(&self, path: &str) -> Result<(u16, WatchStream), ApiError> {
        let response = self.send("GET", path, None).await?;
        let status = response.status().as_u16();
        Ok((status, WatchStream { body: response.into_body(), buffer: Vec::new() }))
    }
}

/// The events of a watch, one JSON object a line.
pub struct WatchStream {
    body: Incoming,
    buffer: Vec<u8>,
}

impl WatchStream {
    /// The next event; `None` when the stream ended or broke.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return serde_json::from_slice(&line).ok();
            }
            let frame = self.body.frame().await?.ok()?;
            if let Ok(data) = frame.into_data() {
                self.buffer.extend_from_slice(&data);
            }
        }
    }
}

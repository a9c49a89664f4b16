//! HTTPS clients (awc) to the API server and to kubelets. awc clients live on one thread, so
//! a [`Connector`] (shareable) makes a [`Client`] on each thread that needs one.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::kubeconfig::{Connection, Credentials};
use crate::tls;

/// The most a response body may hold (a large cluster's pod list).
const MAX_BODY: usize = 256 * 1024 * 1024;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No response: connection, TLS or timeout.
    #[error("{url}: {reason}")]
    Send { url: String, reason: String },
    /// A response other than 2xx; `message` is the Status message when there is one.
    #[error("{url}: {code}: {message}")]
    Status { url: String, code: u16, message: String },
    /// The body could not be read or is not JSON.
    #[error("{url}: reading the response: {reason}")]
    Body { url: String, reason: String },
}

pub type Result<T> = std::result::Result<T, Error>;

/// How to reach one server (or a set of kubelets): TLS settings, base URL, bearer token.
#[derive(Clone)]
pub struct Connector {
    base: String,
    tls: Arc<rustls::ClientConfig>,
    token: Option<String>,
    timeout: Duration,
}

impl Connector {
    /// To the API server of `connection`.
    pub fn api(connection: &Connection, timeout: Duration) -> tls::Result<Connector> {
        let tls = tls::client(connection.ca_pem.as_deref(), connection.insecure, &connection.credentials)?;
        Ok(Connector::new(connection.server.clone(), tls, &connection.credentials, timeout))
    }

    /// To any host (`base` empty: callers pass whole URLs), with `tls` and the bearer token of
    /// `credentials` if they hold one.
    pub fn new(base: String, tls: rustls::ClientConfig, credentials: &Credentials, timeout: Duration) -> Connector {
        let token = match credentials {
            Credentials::Token(token) => Some(token.clone()),
            _ => None,
        };
        Connector { base, tls: Arc::new(tls), token, timeout }
    }

    /// A client for the current thread.
    pub fn client(&self) -> Client {
        let connector = awc::Connector::new().rustls_0_23(self.tls.clone()).timeout(self.timeout);
        let http = awc::Client::builder().connector(connector).timeout(self.timeout).disable_redirects().finish();
        Client { base: self.base.clone(), token: self.token.clone(), http }
    }
}

/// An HTTPS client on one thread.
pub struct Client {
    base: String,
    token: Option<String>,
    http: awc::Client,
}

impl Client {
    /// `GET base+path` and its body.
    pub async fn get_bytes(&self, path: &str, accept: &str) -> Result<Vec<u8>> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.get(&url).insert_header(("Accept", accept));
        if let Some(token) = &self.token {
            request = request.insert_header(("Authorization", format!("Bearer {token}")));
        }
        let response = request.send().await.map_err(|e| Error::Send { url: url.clone(), reason: e.to_string() });
        read(url, response?).await
    }

    /// `GET base+path` as JSON.
    pub async fn get(&self, path: &str) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let body = self.get_bytes(path, "application/json").await?;
        serde_json::from_slice(&body).map_err(|e| Error::Body { url, reason: e.to_string() })
    }

    /// `POST base+path` with a JSON body; the JSON answer.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.post(&url).insert_header(("Accept", "application/json"));
        if let Some(token) = &self.token {
            request = request.insert_header(("Authorization", format!("Bearer {token}")));
        }
        let response =
            request.send_json(body).await.map_err(|e| Error::Send { url: url.clone(), reason: e.to_string() });
        let body = read(url.clone(), response?).await?;
        serde_json::from_slice(&body).map_err(|e| Error::Body { url, reason: e.to_string() })
    }
}

/// The body of a 2xx response; otherwise an error with the Status message.
async fn read<S>(url: String, mut response: awc::ClientResponse<S>) -> Result<Vec<u8>>
where
    S: futures::Stream<Item = std::result::Result<actix_web::web::Bytes, awc::error::PayloadError>> + Unpin,
{
    let code = response.status().as_u16();
    let body =
        response.body().limit(MAX_BODY).await.map_err(|e| Error::Body { url: url.clone(), reason: e.to_string() })?;
    if !(200..300).contains(&code) {
        let message = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(String::from))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
        return Err(Error::Status { url, code, message });
    }
    Ok(body.to_vec())
}

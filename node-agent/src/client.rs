//! The agent's API client: one `kube::Client` per API server endpoint, all with the
//! kubeconfig's credentials, failing over to the next endpoint on transport errors, 5xx and
//! 429.
//!
//! Every caller shares one "current" endpoint: the first call that sees it fail moves
//! everyone to the next one, so heartbeats, status updates and the pod watch follow the
//! same member.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};

/// How long a TCP connect to one endpoint may take before the next one is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one request (not a watch) may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// The first pause after every endpoint failed once; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The client's errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig could not be read or has no usable context.
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: KubeconfigError,
    },
    /// A `--server` value is not a URL.
    #[error("server {url:?} is not a URL: {message}")]
    BadServer { url: String, message: String },
    /// A client could not be built for an endpoint (TLS settings, credentials).
    #[error("client for {server}: {source}")]
    Build {
        server: String,
        #[source]
        source: kube::Error,
    },
    /// The API answered with an error, or no endpoint could be reached (the last error).
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// The request took longer than [`CALL_TIMEOUT`] on every try.
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The HTTP status code of an API error answer.
    pub fn code(&self) -> Option<u16> {
        match self {
            Error::Kube(kube::Error::Api(status)) => Some(status.code),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }

    pub fn is_conflict(&self) -> bool {
        self.code() == Some(409)
    }
}

/// Whether another endpoint (or the same one later) may answer differently: transport
/// failures, timeouts, 5xx and 429 (kubelet's client retries the same).
pub fn retryable(error: &Error) -> bool {
    match error {
        Error::Timeout(_) => true,
        Error::Kube(kube::Error::Api(status)) => status.code >= 500 || status.code == 429,
        Error::Kube(kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_)) => true,
        _ => false,
    }
}

/// One client per API server endpoint and the endpoint in use.
pub struct ApiClient {
    endpoints: Vec<(String, kube::Client)>,
    current: AtomicUsize,
    /// Tries per call, across endpoints.
    attempts: usize,
    /// The cluster CA certificates (DER) from the kubeconfig.
    ca_certs: Vec<Vec<u8>>,
}

impl ApiClient {
    /// Clients for `servers` (none: the kubeconfig's own server) with the credentials and CA
    /// of the kubeconfig's current context.
    pub async fn from_kubeconfig(path: &Path, servers: &[String]) -> Result<ApiClient> {
        let kubeconfig_error = |source| Error::Kubeconfig { path: path.to_path_buf(), source };
        let kubeconfig = Kubeconfig::read_from(path).map_err(kubeconfig_error)?;
        let base = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(kubeconfig_error)?;
        let urls = if servers.is_empty() { vec![base.cluster_url.to_string()] } else { servers.to_vec() };
        let mut endpoints = Vec::with_capacity(urls.len());
        for url in urls {
            let mut config = base.clone();
            config.cluster_url = url
                .parse()
                .map_err(|e: http::uri::InvalidUri| Error::BadServer { url: url.clone(), message: e.to_string() })?;
            config.connect_timeout = Some(CONNECT_TIMEOUT);
            // Retries are ours, across endpoints.
            config.default_retry = false;
            let client =
                kube::Client::try_from(config).map_err(|source| Error::Build { server: url.clone(), source })?;
            endpoints.push((url.trim_end_matches('/').to_string(), client));
        }
        let attempts = (endpoints.len() * 3).max(4);
        let ca_certs = base.root_cert.clone().unwrap_or_default();
        Ok(ApiClient { endpoints, current: AtomicUsize::new(0), attempts, ca_certs })
    }

    /// The cluster CA certificates (DER) the kubeconfig trusts: the kubelet endpoint
    /// accepts client certificates they signed (the API server's).
    pub fn ca_certs(&self) -> &[Vec<u8>] {
        &self.ca_certs
    }

    /// The endpoint in use: its index (for [`Self::fail_over`]), URL and client.
    pub fn current(&self) -> (usize, &str, kube::Client) {
        let i = self.current.load(Ordering::SeqCst) % self.endpoints.len();
        let (url, client) = &self.endpoints[i];
        (i, url, client.clone())
    }

    /// The endpoint URLs, in order.
    pub fn urls(&self) -> Vec<&str> {
        self.endpoints.iter().map(|(url, _)| url.as_str()).collect()
    }

    /// Moves to the endpoint after `from`, unless another caller moved already.
    pub fn fail_over(&self, from: usize) {
        let next = (from + 1) % self.endpoints.len();
        if self.current.compare_exchange(from, next, Ordering::SeqCst, Ordering::SeqCst).is_ok() && next != from {
            tracing::warn!(from = %self.endpoints[from].0, to = %self.endpoints[next].0, "API server endpoint failed over");
        }
    }

    /// Runs `request` against the current endpoint; on a [`retryable`] error moves to the
    /// next endpoint and tries again, pausing with backoff once every endpoint failed,
    /// up to a bounded number of tries. Other errors return at once.
    pub async fn call<T, F, Fut>(&self, what: &str, request: F) -> Result<T>
    where
        F: Fn(kube::Client) -> Fut,
        Fut: Future<Output = kube::Result<T>>,
    {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0;
        loop {
            let (i, url, client) = self.current();
            let result = match tokio::time::timeout(CALL_TIMEOUT, request(client)).await {
                Ok(result) => result.map_err(Error::from),
                Err(_) => Err(Error::Timeout(CALL_TIMEOUT)),
            };
            let error = match result {
                Ok(value) => return Ok(value),
                Err(e) if !retryable(&e) => return Err(e),
                Err(e) => e,
            };
            attempt += 1;
            tracing::debug!(%url, what, attempt, %error, "API request failed; trying the next endpoint");
            if attempt >= self.attempts {
                return Err(error);
            }
            self.fail_over(i);
            if attempt % self.endpoints.len() == 0 {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn api_error(code: u16) -> Error {
        Error::Kube(kube::Error::Api(Box::new(kube::core::Status::failure("x", "y").with_code(code))))
    }

    #[test]
    fn server_errors_and_throttling_are_retried_elsewhere_but_client_errors_are_not() {
        assert!(retryable(&api_error(500)));
        assert!(retryable(&api_error(503)));
        assert!(retryable(&api_error(429)));
        assert!(retryable(&Error::Timeout(CALL_TIMEOUT)));
        assert!(!retryable(&api_error(404)));
        assert!(!retryable(&api_error(409)));
        assert!(!retryable(&api_error(422)));
        assert!(api_error(404).is_not_found());
        assert!(api_error(409).is_conflict());
    }

    const KUBECONFIG: &str = "apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: 'https://127.0.0.1:1', insecure-skip-tls-verify: true}
users:
- name: u
  user: {token: abc}
contexts:
- name: x
  context: {cluster: c, user: u}
current-context: x
";

    #[tokio::test]
    async fn a_call_fails_over_to_the_next_endpoint_and_gives_up_after_bounded_tries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        std::fs::write(&path, KUBECONFIG).unwrap();
        let servers = vec!["https://127.0.0.1:1".to_string(), "https://127.0.0.1:2".to_string()];
        let client = ApiClient::from_kubeconfig(&path, &servers).await.unwrap();
        assert_eq!(client.urls(), ["https://127.0.0.1:1", "https://127.0.0.1:2"]);
        let seen = std::sync::Mutex::new(Vec::new());
        let result: Result<()> = client
            .call("test", |c| {
                seen.lock().unwrap().push(client.current().1.to_string());
                async move { c.apiserver_version().await.map(|_| ()) }
            })
            .await;
        let error = result.unwrap_err();
        assert!(retryable(&error), "{error}");
        let seen = seen.into_inner().unwrap();
        assert_eq!(seen.len(), 6, "{seen:?}");
        assert_eq!(&seen[..2], ["https://127.0.0.1:1", "https://127.0.0.1:2"]);
    }

    #[tokio::test]
    async fn the_kubeconfig_server_is_used_without_servers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        std::fs::write(&path, KUBECONFIG).unwrap();
        let client = ApiClient::from_kubeconfig(&path, &[]).await.unwrap();
        assert_eq!(client.urls(), ["https://127.0.0.1:1"]);
        let bad = ApiClient::from_kubeconfig(&path, &["not a url".into()]).await;
        assert!(matches!(bad, Err(Error::BadServer { .. })));
    }
}

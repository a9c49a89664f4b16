//! An HTTPS client for webhooks: POST a JSON body to the endpoint a kube `WebhookClientConfig`
//! names and read the JSON answer, with TLS verified against its `caBundle`.
//!
//! Conversion webhooks ([`crate::conversion`]) use it; admission webhooks are to use it too.
//! Two steps: [`ClientConfig::parse`] checks a `clientConfig` once (its URL or service
//! reference, its CA bundle) and can be kept; [`ClientConfig::endpoint`] finds where to connect
//! for this call (a service through its Endpoints object, read from the kind actors, since
//! Flotilla has no cluster networking); [`post_json`] makes the call. [`call`] does both.
//! Each call opens its own connection (HTTP/1.1; TLS sessions are resumed while the same
//! `ClientConfig` is kept).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use actors::kinds;
use actors::{ApiError, Get, KindActors};
use base64::Engine;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{ACCEPT, CONTENT_TYPE, HOST};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;

/// A webhook's timeout when its configuration gives none (kube's `timeoutSeconds` default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest timeout a webhook may have (kube's limit on `timeoutSeconds`).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest response read from a webhook (a converted list can be large).
pub const MAX_RESPONSE: usize = 64 * 1024 * 1024;
/// The port of a service reference that gives none.
pub const DEFAULT_SERVICE_PORT: u16 = 443;

/// Why a webhook call failed. The messages follow Go's HTTP client, which kube-apiserver's
/// webhook errors quote: `Post "https://...": dial tcp 127.0.0.1:9443: connect: connection refused`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// The `clientConfig` cannot be used: neither or both of `url` and `service`, a URL that is
    /// not `https` or has a fragment or user info, a `caBundle` that holds no PEM certificate.
    #[error("invalid webhook configuration: {0}")]
    Config(String),
    /// The service of a service reference, one of its ports or an address of it is missing.
    #[error("{0}")]
    Resolve(String),
    /// No TCP connection to the webhook.
    #[error("Post {url:?}: dial tcp {address}: {reason}")]
    Connect { url: String, address: String, reason: String },
    /// The TLS handshake failed (the certificate is not signed by the `caBundle`, or is not for
    /// the server name).
    #[error("Post {url:?}: tls: {reason}")]
    Tls { url: String, reason: String },
    /// No complete answer within the timeout.
    #[error("Post {url:?}: context deadline exceeded (Client.Timeout exceeded after {}s)", .after.as_secs())]
    Timeout { url: String, after: Duration },
    /// The connection broke, or the answer is not HTTP.
    #[error("Post {url:?}: {reason}")]
    Transport { url: String, reason: String },
    /// The webhook answered with a status other than 2xx.
    #[error("{}", status_message(*.code, .body))]
    Status { url: String, code: u16, body: String },
    /// The answer is not a JSON document (or is larger than [`MAX_RESPONSE`]).
    #[error("Post {url:?}: decoding the response: {reason}")]
    Decode { url: String, reason: String },
}

/// The result of a webhook call.
pub type Result<T, E = WebhookError> = std::result::Result<T, E>;

/// client-go's words for an error status: the `Status` message the server sent, else the code
/// and the body.
fn status_message(code: u16, body: &str) -> String {
    if let Ok(status) = serde_json::from_str::<Value>(body) {
        if let Some(message) = status.get("message").and_then(Value::as_str).filter(|m| !m.is_empty()) {
            return message.to_string();
        }
    }
    match body.trim() {
        "" => format!("the server responded with the status code {code} but did not return more information"),
        text => format!("an error on the server ({text:?}) has prevented the request from succeeding"),
    }
}

/// The timeout of a webhook configured with `timeoutSeconds` (kube's default when absent,
/// at least 1 s, at most [`MAX_TIMEOUT`]).
pub fn timeout(seconds: Option<i64>) -> Duration {
    match seconds {
        None => DEFAULT_TIMEOUT,
        Some(s) => Duration::from_secs(s.clamp(1, MAX_TIMEOUT.as_secs() as i64) as u64),
    }
}

/// Where a `clientConfig` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `url`: `https://host[:port]/path`.
    Url { url: String, host: String, port: u16, path: String },
    /// `service`: a Service of the cluster, called as `{name}.{namespace}.svc`.
    Service { namespace: String, name: String, path: String, port: u16 },
}

/// A parsed `WebhookClientConfig`: where the webhook is and the roots its certificate must
/// chain to. Keep it between calls: its TLS settings hold the session cache.
#[derive(Clone)]
pub struct ClientConfig {
    pub target: Target,
    tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig").field("target", &self.target).finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// Parses a `clientConfig` as written in a CRD or webhook configuration: exactly one of
    /// `url` and `service` {namespace, name, path, port (443)}, and `caBundle` (base64 PEM;
    /// without it the system's roots, `SSL_CERT_FILE` or `/etc/ssl/certs/ca-certificates.crt`).
    pub fn parse(config: &Value) -> Result<ClientConfig> {
        let bad = |m: &str| WebhookError::Config(m.to_string());
        let target = match (config.get("url"), config.get("service")) {
            (Some(Value::String(url)), None) => parse_url(url)?,
            (None, Some(service @ Value::Object(_))) => {
                let text = |field: &str| service.get(field).and_then(Value::as_str).unwrap_or("").to_string();
                let (namespace, name) = (text("namespace"), text("name"));
                if namespace.is_empty() || name.is_empty() {
                    return Err(bad("service.namespace and service.name are required"));
                }
                let port = match service.get("port") {
                    None | Some(Value::Null) => DEFAULT_SERVICE_PORT,
                    Some(p) => p
                        .as_u64()
                        .and_then(|p| u16::try_from(p).ok())
                        .filter(|p| *p > 0)
                        .ok_or_else(|| bad("service.port must be a port number (1-65535)"))?,
                };
                let mut path = text("path");
                if !path.starts_with('/') {
                    path.insert(0, '/');
                }
                Target::Service { namespace, name, path, port }
            }
            (Some(_), Some(_)) => return Err(bad("exactly one of url or service is required, not both")),
            _ => return Err(bad("exactly one of url or service is required")),
        };
        let roots = match config.get("caBundle").and_then(Value::as_str).filter(|b| !b.is_empty()) {
            Some(bundle) => {
                let pem = base64::engine::general_purpose::STANDARD
                    .decode(bundle.trim())
                    .map_err(|e| WebhookError::Config(format!("caBundle is not base64: {e}")))?;
                let roots = roots_of(&pem);
                if roots.is_empty() {
                    return Err(bad("caBundle holds no PEM certificate"));
                }
                roots
            }
            None => system_roots(),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| WebhookError::Config(format!("TLS settings: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(ClientConfig { target, tls: Arc::new(tls) })
    }

    /// Where to connect for a call: the URL's host, or for a service its first ready endpoint
    /// address on the port the service port maps to (its `clusterIP` when it has no endpoints;
    /// its `externalName` for an ExternalName service).
    pub async fn endpoint(&self, actors: &KindActors) -> Result<Endpoint> {
        match &self.target {
            Target::Url { url, host, port, path } => Ok(Endpoint {
                url: url.clone(),
                server_name: server_name(host)?,
                connect: (host.clone(), *port),
                path: path.clone(),
                host_header: authority(host, *port),
                tls: self.tls.clone(),
            }),
            Target::Service { namespace, name, path, port } => {
                let host = format!("{name}.{namespace}.svc");
                let connect = resolve_service(actors, namespace, name, *port).await?;
                Ok(Endpoint {
                    url: format!("https://{host}:{port}{path}"),
                    server_name: server_name(&host)?,
                    connect,
                    path: path.clone(),
                    host_header: authority(&host, *port),
                    tls: self.tls.clone(),
                })
            }
        }
    }
}

/// A webhook ready to call: what to connect to, and the name its certificate must carry.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The URL as messages name it (`https://{name}.{namespace}.svc:{port}{path}` for a service).
    pub url: String,
    server_name: ServerName<'static>,
    /// Host (name or IP) and port to open the TCP connection to.
    pub connect: (String, u16),
    path: String,
    host_header: String,
    tls: Arc<rustls::ClientConfig>,
}

/// `https://host[:port][/path][?query]` as kube accepts a webhook URL (no user info, no
/// fragment).
fn parse_url(url: &str) -> Result<Target> {
    let bad = |m: String| WebhookError::Config(format!("url {url:?}: {m}"));
    if url.contains('#') {
        return Err(bad("fragments are not permitted".into()));
    }
    let uri: Uri = url.parse().map_err(|e| bad(format!("{e}")))?;
    if uri.scheme_str() != Some("https") {
        return Err(bad("the scheme must be https".into()));
    }
    let authority = uri.authority().ok_or_else(|| bad("a host is required".into()))?;
    if authority.as_str().contains('@') {
        return Err(bad("user information is not permitted".into()));
    }
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_string();
    if host.is_empty() {
        return Err(bad("a host is required".into()));
    }
    let path = uri.path_and_query().map(|p| p.as_str()).filter(|p| !p.is_empty()).unwrap_or("/").to_string();
    Ok(Target::Url { url: url.to_string(), host, port: authority.port_u16().unwrap_or(443), path })
}

/// The TLS server name of a host: an IP address or a DNS name.
fn server_name(host: &str) -> Result<ServerName<'static>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(host.to_string()).map_err(|e| WebhookError::Config(format!("host {host:?}: {e}")))
}

/// `host:port` for the `Host` header (IPv6 in brackets).
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The certificates of a PEM bundle as trust roots (what does not parse is left out).
fn roots_of(pem: &[u8]) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem).flatten() {
        let _ = roots.add(cert);
    }
    roots
}

/// The system's trust roots (`SSL_CERT_FILE`, else Debian's bundle); empty if there are none.
fn system_roots() -> rustls::RootCertStore {
    let file = std::env::var_os("SSL_CERT_FILE").unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into());
    std::fs::read(file).map(|pem| roots_of(&pem)).unwrap_or_else(|_| rustls::RootCertStore::empty())
}

/// Reads `resource` (services, endpoints) `namespace/name` from its kind actor; `None` if absent.
async fn read(actors: &KindActors, resource: &str, namespace: &str, name: &str) -> Result<Option<Value>> {
    let failed = |e: String| WebhookError::Resolve(format!("reading {resource} {namespace}/{name}: {e}"));
    let kind = kinds::find("", "v1", resource).ok_or_else(|| failed("the kind is not served".into()))?;
    let actor = actors.get(kind).ok_or_else(|| failed("no actor serves it".into()))?;
    let get = Get { namespace: Some(namespace.to_string()), name: name.to_string() };
    match actor.send(get).await {
        Ok(Ok(obj)) => Ok(Some(obj)),
        Ok(Err(ApiError::NotFound(_))) => Ok(None),
        Ok(Err(e)) => Err(failed(e.to_string())),
        Err(e) => Err(failed(e.to_string())),
    }
}

/// The address of service `namespace/name` port `port`, as kube's endpoint service resolver
/// finds it: the service port numbered `port`, then the first ready address of the Endpoints
/// subset with the port of the same name (or the number of its `targetPort`); the cluster IP
/// when there is none.
async fn resolve_service(actors: &KindActors, namespace: &str, name: &str, port: u16) -> Result<(String, u16)> {
    let service = read(actors, "services", namespace, name)
        .await?
        .ok_or_else(|| WebhookError::Resolve(format!("service \"{name}\" not found in namespace \"{namespace}\"")))?;
    if service.pointer("/spec/type").and_then(Value::as_str) == Some("ExternalName") {
        let host = service.pointer("/spec/externalName").and_then(Value::as_str).unwrap_or("");
        if host.is_empty() {
            return Err(WebhookError::Resolve(format!("service {namespace}/{name} has no externalName")));
        }
        return Ok((host.to_string(), port));
    }
    let ports = service.pointer("/spec/ports").and_then(Value::as_array).cloned().unwrap_or_default();
    let service_port = ports
        .iter()
        .find(|p| p.get("port").and_then(Value::as_u64) == Some(u64::from(port)))
        .ok_or_else(|| WebhookError::Resolve(format!("no service port {port} found for service {name:?}")))?;
    let port_name = service_port.get("name").and_then(Value::as_str).unwrap_or("");
    let target_port = service_port.get("targetPort").and_then(Value::as_u64);
    if let Some(endpoints) = read(actors, "endpoints", namespace, name).await? {
        if let Some(found) = endpoint_address(&endpoints, port_name, target_port) {
            return Ok(found);
        }
    }
    match service.pointer("/spec/clusterIP").and_then(Value::as_str) {
        Some(ip) if !ip.is_empty() && ip != "None" => Ok((ip.to_string(), port)),
        _ => Err(WebhookError::Resolve(format!("no endpoints available for service {name:?}"))),
    }
}

/// The first ready address of an Endpoints object with a port named `port_name` (or numbered
/// `target_port`), and that port.
fn endpoint_address(endpoints: &Value, port_name: &str, target_port: Option<u64>) -> Option<(String, u16)> {
    let subsets = endpoints.get("subsets").and_then(Value::as_array)?;
    subsets.iter().find_map(|subset| {
        let ports = subset.get("ports").and_then(Value::as_array)?;
        let port =
            ports.iter().find(|p| p.get("name").and_then(Value::as_str).unwrap_or("") == port_name).or_else(|| {
                ports.iter().find(|p| target_port.is_some() && p.get("port").and_then(Value::as_u64) == target_port)
            })?;
        let number = port.get("port").and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok())?;
        let addresses = subset.get("addresses").and_then(Value::as_array)?;
        let ip = addresses.iter().find_map(|a| a.get("ip").and_then(Value::as_str).filter(|ip| !ip.is_empty()))?;
        Some((ip.to_string(), number))
    })
}

/// Resolves `config` and POSTs `body` to it: [`ClientConfig::endpoint`], then [`post_json`].
pub async fn call(config: &ClientConfig, actors: &KindActors, body: &Value, timeout: Duration) -> Result<Value> {
    let endpoint = config.endpoint(actors).await?;
    post_json(&endpoint, body, timeout).await
}

/// POSTs `body` as JSON to `endpoint` and returns the JSON it answers; a status other than 2xx,
/// no answer within `timeout` (capped at [`MAX_TIMEOUT`]) and a broken connection are errors.
pub async fn post_json(endpoint: &Endpoint, body: &Value, timeout: Duration) -> Result<Value> {
    let after = timeout.min(MAX_TIMEOUT);
    let url = endpoint.url.clone();
    match tokio::time::timeout(after, exchange(endpoint, body)).await {
        Ok(result) => result,
        Err(_) => Err(WebhookError::Timeout { url, after }),
    }
}

/// An HTTP/1 connection to a webhook, ready for a request.
type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Which connections may serve an endpoint: the same TLS configuration (the same caBundle
/// and server name, parsed once per webhook configuration) to the same address.
type PoolKey = (usize, String, u16);

/// Idle keep-alive connections to webhooks, at most [`IDLE_PER_ENDPOINT`] per endpoint: a
/// TLS handshake per call costs more than the call itself.
static IDLE: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<PoolKey, Vec<Sender>>>> =
    std::sync::LazyLock::new(Default::default);
const IDLE_PER_ENDPOINT: usize = 16;

fn pool_key(endpoint: &Endpoint) -> PoolKey {
    (Arc::as_ptr(&endpoint.tls) as usize, endpoint.connect.0.clone(), endpoint.connect.1)
}

fn idle_connection(key: &PoolKey) -> Option<Sender> {
    let mut idle = IDLE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let senders = idle.get_mut(key)?;
    while let Some(sender) = senders.pop() {
        if sender.is_ready() {
            return Some(sender);
        }
    }
    None
}

fn keep_idle(key: PoolKey, sender: Sender) {
    let mut idle = IDLE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    idle.retain(|_, senders| {
        senders.retain(|s| !s.is_closed());
        !senders.is_empty()
    });
    let senders = idle.entry(key).or_default();
    if senders.len() < IDLE_PER_ENDPOINT {
        senders.push(sender);
    }
}

/// A new connection: TCP, TLS verified by the endpoint's CA, HTTP/1; the connection runs as
/// its own task until the server or the last sender closes it.
async fn connect(endpoint: &Endpoint) -> Result<Sender> {
    let url = &endpoint.url;
    let (host, port) = &endpoint.connect;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), *port)).await.map_err(|e| WebhookError::Connect {
        url: url.clone(),
        address: authority(host, *port),
        reason: dial_reason(&e),
    })?;
    let _ = tcp.set_nodelay(true);
    let connector = tokio_rustls::TlsConnector::from(endpoint.tls.clone());
    let tls = connector
        .connect(endpoint.server_name.clone(), tcp)
        .await
        .map_err(|e| WebhookError::Tls { url: url.clone(), reason: e.to_string() })?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| WebhookError::Transport { url: url.clone(), reason: e.to_string() })?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// One request, on an idle connection to the endpoint if there is one (then, should the
/// server have closed it meanwhile, again on a new one), else on a new connection.
async fn exchange(endpoint: &Endpoint, body: &Value) -> Result<Value> {
    let url = &endpoint.url;
    let bytes = Bytes::from(
        serde_json::to_vec(body).map_err(|e| WebhookError::Decode { url: url.clone(), reason: e.to_string() })?,
    );
    let key = pool_key(endpoint);
    let (code, body) = match idle_connection(&key) {
        Some(sender) => match send(endpoint, sender, bytes.clone()).await {
            Err(SendError::Unsent(_)) => send(endpoint, connect(endpoint).await?, bytes).await,
            answer => answer,
        },
        None => send(endpoint, connect(endpoint).await?, bytes).await,
    }
    .map_err(SendError::into_inner)?;
    if !(200..300).contains(&code) {
        let body = String::from_utf8_lossy(&body).chars().take(1024).collect();
        return Err(WebhookError::Status { url: url.clone(), code, body });
    }
    serde_json::from_slice(&body).map_err(|e| WebhookError::Decode { url: url.clone(), reason: e.to_string() })
}

/// A request's failure: before the request left (safe to send again), or after.
enum SendError {
    Unsent(WebhookError),
    Failed(WebhookError),
}

impl SendError {
    fn into_inner(self) -> WebhookError {
        match self {
            SendError::Unsent(e) | SendError::Failed(e) => e,
        }
    }
}

/// Sends the request on `sender` and reads the whole answer; the connection goes back to
/// the idle pool when the exchange completed cleanly.
async fn send(endpoint: &Endpoint, mut sender: Sender, bytes: Bytes) -> Result<(u16, Bytes), SendError> {
    let url = &endpoint.url;
    let request = Request::post(endpoint.path.as_str())
        .header(HOST, endpoint.host_header.as_str())
        .header(CONTENT_TYPE, "application/json")
        .header(ACCEPT, "application/json")
        .body(Full::new(bytes))
        .map_err(|e| SendError::Failed(WebhookError::Config(format!("the request to {url}: {e}"))))?;
    let transport = |e: hyper::Error| WebhookError::Transport { url: url.clone(), reason: e.to_string() };
    if sender.ready().await.is_err() {
        return Err(SendError::Unsent(WebhookError::Transport {
            url: url.clone(),
            reason: "connection closed".into(),
        }));
    }
    let response = match sender.send_request(request).await {
        Ok(response) => response,
        // hyper hands the request back untouched when it never went out.
        Err(e) if e.is_canceled() => return Err(SendError::Unsent(transport(e))),
        Err(e) => return Err(SendError::Failed(transport(e))),
    };
    let code = response.status().as_u16();
    let body = Limited::new(response.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .map_err(|e| {
            SendError::Failed(WebhookError::Transport {
                url: url.clone(),
                reason: format!("reading the response: {e}"),
            })
        })?
        .to_bytes();
    keep_idle(pool_key(endpoint), sender);
    Ok((code, body))
}

/// Go's words for a failed dial (`connect: connection refused`), else the OS's.
fn dial_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".into(),
        std::io::ErrorKind::TimedOut => "i/o timeout".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A CA and a serving certificate for localhost and 127.0.0.1 (the cluster PKI's).
    fn pki() -> (tempfile::TempDir, crate::pki::Pki) {
        let dir = tempfile::tempdir().unwrap();
        let pki = crate::pki::load_or_create(dir.path(), &[]).unwrap();
        (dir, pki)
    }

    fn config(url: &str, ca_pem: &str) -> ClientConfig {
        let bundle = base64::engine::general_purpose::STANDARD.encode(ca_pem);
        ClientConfig::parse(&json!({"url": url, "caBundle": bundle})).unwrap()
    }

    /// Serves one HTTPS connection on 127.0.0.1 that answers `status` and `body` to the first
    /// request, after `delay`; returns the port and the request body it got.
    async fn serve_once(
        pki: &crate::pki::Pki,
        status: u16,
        body: &'static str,
        delay: Duration,
    ) -> (u16, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(crate::tls::server_config(pki).unwrap()));
        let task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let Ok(mut tls) = acceptor.accept(tcp).await else { return String::new() };
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            let request = loop {
                let n = tls.read(&mut buf).await.unwrap_or(0);
                raw.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&raw).into_owned();
                if n == 0 {
                    break text;
                }
                if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if rest.len() >= length {
                        break text;
                    }
                }
            };
            tokio::time::sleep(delay).await;
            let response = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = tls.write_all(response.as_bytes()).await;
            let _ = tls.shutdown().await;
            request
        });
        (port, task)
    }

    /// Serves HTTPS on 127.0.0.1 with keep-alive: every request on every connection gets
    /// `{"n": <request number>}`; returns the port and the count of connections accepted.
    async fn serve_keep_alive(pki: &crate::pki::Pki) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(crate::tls::server_config(pki).unwrap()));
        let (connections, requests) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let accepted = connections.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                accepted.fetch_add(1, Ordering::SeqCst);
                let (acceptor, requests) = (acceptor.clone(), requests.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let mut raw = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        let n = tls.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        raw.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&raw).into_owned();
                        let Some((head, rest)) = text.split_once("\r\n\r\n") else { continue };
                        let length = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                            })
                            .and_then(|v| v.parse::<usize>().ok())
                            .unwrap_or(0);
                        if rest.len() < length {
                            continue;
                        }
                        raw.clear();
                        let body = format!(r#"{{"n": {}}}"#, requests.fetch_add(1, Ordering::SeqCst) + 1);
                        let response = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if tls.write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (port, connections)
    }

    #[actix_rt::test]
    async fn calls_to_one_webhook_reuse_a_kept_alive_connection() {
        let (_dir, pki) = pki();
        let (port, connections) = serve_keep_alive(&pki).await;
        let config = config(&format!("https://127.0.0.1:{port}/hook"), &pki.ca.cert_pem);
        for n in 1..=3 {
            let answer = call(&config, &KindActors::default(), &json!({}), DEFAULT_TIMEOUT).await.unwrap();
            assert_eq!(answer, json!({"n": n}));
        }
        assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 1, "one TLS connection for three calls");
    }

    #[actix_rt::test]
    async fn a_kept_connection_the_server_closed_is_not_used_again() {
        let (_dir, pki) = pki();
        // serve_once answers one request, closes its connection and stops listening.
        let (port, first) = serve_once(&pki, 200, r#"{"first": true}"#, Duration::ZERO).await;
        let config = config(&format!("https://127.0.0.1:{port}/hook"), &pki.ca.cert_pem);
        let answer = call(&config, &KindActors::default(), &json!({}), DEFAULT_TIMEOUT).await.unwrap();
        assert_eq!(answer, json!({"first": true}));
        first.await.unwrap();
        // The next call dials anew (refused now) instead of failing on the dead connection.
        let refused = call(&config, &KindActors::default(), &json!({}), DEFAULT_TIMEOUT).await.unwrap_err();
        assert!(matches!(refused, WebhookError::Connect { .. }), "{refused}");
    }

    #[actix_rt::test]
    async fn a_webhook_gets_the_json_body_and_its_answer_comes_back() {
        let (_dir, pki) = pki();
        let (port, server) = serve_once(&pki, 200, r#"{"ok": true}"#, Duration::ZERO).await;
        let config = config(&format!("https://127.0.0.1:{port}/convert?x=1"), &pki.ca.cert_pem);
        let answer = call(&config, &KindActors::default(), &json!({"hello": "world"}), DEFAULT_TIMEOUT).await;
        assert_eq!(answer.unwrap(), json!({"ok": true}));
        let request = server.await.unwrap();
        assert!(request.starts_with("POST /convert?x=1 HTTP/1.1\r\n"), "{request}");
        assert!(request.to_ascii_lowercase().contains("content-type: application/json"), "{request}");
        assert!(request.ends_with(r#"{"hello":"world"}"#), "{request}");
    }

    #[actix_rt::test]
    async fn a_certificate_from_another_ca_is_a_tls_error() {
        let (_dir, pki) = pki();
        let (_other_dir, other) = self::pki();
        let (port, _server) = serve_once(&pki, 200, "{}", Duration::ZERO).await;
        let url = format!("https://127.0.0.1:{port}/");
        let e = call(&config(&url, &other.ca.cert_pem), &KindActors::default(), &json!({}), DEFAULT_TIMEOUT)
            .await
            .unwrap_err();
        assert!(matches!(e, WebhookError::Tls { .. }), "{e:?}");
        assert!(e.to_string().starts_with(&format!("Post \"{url}\": tls: invalid peer certificate")), "{e}");
    }

    #[actix_rt::test]
    async fn error_statuses_timeouts_and_refused_connections_say_what_happened() {
        let (_dir, pki) = pki();
        let actors = KindActors::default();
        let status = r#"{"kind": "Status", "message": "no such conversion"}"#;
        let (port, _server) = serve_once(&pki, 500, status, Duration::ZERO).await;
        let url = format!("https://127.0.0.1:{port}/");
        let e = call(&config(&url, &pki.ca.cert_pem), &actors, &json!({}), DEFAULT_TIMEOUT).await.unwrap_err();
        assert!(matches!(e, WebhookError::Status { code: 500, .. }), "{e:?}");
        assert_eq!(e.to_string(), "no such conversion");

        let (port, _server) = serve_once(&pki, 200, "not json", Duration::ZERO).await;
        let url = format!("https://127.0.0.1:{port}/");
        let e = call(&config(&url, &pki.ca.cert_pem), &actors, &json!({}), DEFAULT_TIMEOUT).await.unwrap_err();
        assert!(matches!(e, WebhookError::Decode { .. }), "{e:?}");

        let (port, _server) = serve_once(&pki, 200, "{}", Duration::from_secs(5)).await;
        let url = format!("https://127.0.0.1:{port}/");
        let short = Duration::from_millis(200);
        let e = call(&config(&url, &pki.ca.cert_pem), &actors, &json!({}), short).await.unwrap_err();
        assert!(matches!(e, WebhookError::Timeout { .. }), "{e:?}");
        assert!(e.to_string().contains("context deadline exceeded"), "{e}");

        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = free.local_addr().unwrap().port();
        drop(free);
        let url = format!("https://127.0.0.1:{port}/convert");
        let e = call(&config(&url, &pki.ca.cert_pem), &actors, &json!({}), DEFAULT_TIMEOUT).await.unwrap_err();
        assert_eq!(e.to_string(), format!("Post \"{url}\": dial tcp 127.0.0.1:{port}: connect: connection refused"));
    }

    #[test]
    fn client_configs_are_checked_as_kube_checks_them() {
        let parse = |v: Value| ClientConfig::parse(&v).map(|c| c.target);
        assert_eq!(
            parse(json!({"url": "https://hooks.example.com/convert"})).unwrap(),
            Target::Url {
                url: "https://hooks.example.com/convert".into(),
                host: "hooks.example.com".into(),
                port: 443,
                path: "/convert".into()
            }
        );
        assert!(matches!(
            parse(json!({"url": "https://[::1]:9443"})).unwrap(),
            Target::Url { host, port: 9443, path, .. } if host == "::1" && path == "/"
        ));
        assert_eq!(
            parse(json!({"service": {"namespace": "ns", "name": "hook", "path": "convert"}})).unwrap(),
            Target::Service { namespace: "ns".into(), name: "hook".into(), path: "/convert".into(), port: 443 }
        );
        for bad in [
            json!({}),
            json!({"url": "http://hooks.example.com/"}),
            json!({"url": "https://u:p@hooks.example.com/"}),
            json!({"url": "https://hooks.example.com/#frag"}),
            json!({"url": "https://x/", "service": {"namespace": "a", "name": "b"}}),
            json!({"service": {"name": "b"}}),
            json!({"service": {"namespace": "a", "name": "b", "port": 70000}}),
            json!({"url": "https://x/", "caBundle": "not base64!"}),
            json!({"url": "https://x/", "caBundle": "bm90IHBlbQ=="}),
        ] {
            assert!(matches!(parse(bad.clone()), Err(WebhookError::Config(_))), "{bad}");
        }
    }

    #[test]
    fn timeouts_default_to_ten_seconds_and_stay_within_one_to_thirty() {
        assert_eq!(timeout(None), Duration::from_secs(10));
        assert_eq!(timeout(Some(0)), Duration::from_secs(1));
        assert_eq!(timeout(Some(5)), Duration::from_secs(5));
        assert_eq!(timeout(Some(300)), Duration::from_secs(30));
    }

    #[test]
    fn a_service_port_maps_to_the_endpoints_port_of_the_same_name() {
        let endpoints = json!({"subsets": [
            {"addresses": [{"ip": "10.0.0.9"}], "ports": [{"name": "metrics", "port": 9090}]},
            {"notReadyAddresses": [{"ip": "10.0.0.7"}], "addresses": [{"ip": "10.0.0.8"}],
             "ports": [{"name": "https", "port": 9443}]},
        ]});
        assert_eq!(endpoint_address(&endpoints, "https", None), Some(("10.0.0.8".into(), 9443)));
        assert_eq!(endpoint_address(&endpoints, "", Some(9090)), Some(("10.0.0.9".into(), 9090)));
        assert_eq!(endpoint_address(&endpoints, "grpc", None), None);
        let unready = json!({"subsets": [{"notReadyAddresses": [{"ip": "10.0.0.7"}], "ports": [{"port": 443}]}]});
        assert_eq!(endpoint_address(&unready, "", None), None);
    }

    #[actix_rt::test]
    async fn a_service_that_cannot_be_read_is_a_resolve_error() {
        let config = ClientConfig::parse(&json!({"service": {"namespace": "ns", "name": "hook"}})).unwrap();
        let e = config.endpoint(&KindActors::default()).await.unwrap_err();
        assert!(matches!(e, WebhookError::Resolve(_)), "{e:?}");
    }
}

//! The kubelet endpoint's resource metrics: `GET /metrics/resource` over HTTPS, the
//! Prometheus text kubelet serves (node, pod and container CPU counters and memory working
//! sets), which metrics-server scrapes. Hollow nodes report steady simulated figures; a real
//! node its host's figures from /proc.
//!
//! As kubelet with its flag defaults (`--anonymous-auth=true`,
//! `--authorization-mode=AlwaysAllow`), any client may read; the serving certificate is
//! self-signed (metrics-server: `--kubelet-insecure-tls`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::jiff::Timestamp;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::runtime::RunningPod;

/// The endpoint's errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The self-signed serving certificate could not be made.
    #[error("serving certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// rustls refused the certificate or key.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// The port could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A hollow container's steady CPU use, in cores.
const HOLLOW_CONTAINER_CPU: f64 = 0.01;
/// A hollow container's working set.
const HOLLOW_CONTAINER_MEMORY: u64 = 16 << 20;
/// What a hollow node's system daemons use besides its pods.
const HOLLOW_SYSTEM_CPU: f64 = 0.1;
const HOLLOW_SYSTEM_MEMORY: u64 = 256 << 20;

/// One container's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSample {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    /// Unix seconds.
    pub start: i64,
    pub cpu_seconds: f64,
    pub memory: u64,
}

/// One scrape's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub timestamp_ms: i64,
    pub node_cpu_seconds: f64,
    pub node_memory: u64,
    pub containers: Vec<ContainerSample>,
}

/// A hollow node's figures at `now`: each container uses a steady share of a core since it
/// started, the node that plus its system daemons since `since` (the agent's start).
pub fn hollow_sample(pods: &[RunningPod], since: Timestamp, now: Timestamp) -> Sample {
    let seconds = |from: Timestamp| (now.as_millisecond() - from.as_millisecond()).max(0) as f64 / 1000.0;
    let containers: Vec<ContainerSample> = pods
        .iter()
        .flat_map(|pod| {
            pod.containers.iter().map(move |container| ContainerSample {
                namespace: pod.namespace.clone(),
                pod: pod.name.clone(),
                container: container.clone(),
                start: pod.started.as_second(),
                cpu_seconds: HOLLOW_CONTAINER_CPU * seconds(pod.started),
                memory: HOLLOW_CONTAINER_MEMORY,
            })
        })
        .collect();
    Sample {
        timestamp_ms: now.as_millisecond(),
        node_cpu_seconds: HOLLOW_SYSTEM_CPU * seconds(since) + containers.iter().map(|c| c.cpu_seconds).sum::<f64>(),
        node_memory: HOLLOW_SYSTEM_MEMORY + containers.iter().map(|c| c.memory).sum::<u64>(),
        containers,
    }
}

/// A label value escaped as the Prometheus text format wants.
fn escape(value: &str) -> String {
    value.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n")
}

/// The Prometheus text of `/metrics/resource`, kubelet's metric names, help and order.
pub fn render(sample: &Sample) -> String {
    let ts = sample.timestamp_ms;
    let mut out = String::new();
    let header = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} [STABLE] {help}\n# TYPE {name} {kind}");
    };
    let container_labels = |c: &ContainerSample| {
        format!(
            "container=\"{}\",namespace=\"{}\",pod=\"{}\"",
            escape(&c.container),
            escape(&c.namespace),
            escape(&c.pod)
        )
    };
    header(
        &mut out,
        "container_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the container in core-seconds",
    );
    for c in &sample.containers {
        let _ = writeln!(out, "container_cpu_usage_seconds_total{{{}}} {:.9} {ts}", container_labels(c), c.cpu_seconds);
    }
    header(&mut out, "container_memory_working_set_bytes", "gauge", "Current working set of the container in bytes");
    for c in &sample.containers {
        let _ = writeln!(out, "container_memory_working_set_bytes{{{}}} {} {ts}", container_labels(c), c.memory);
    }
    header(
        &mut out,
        "container_start_time_seconds",
        "gauge",
        "Start time of the container since unix epoch in seconds",
    );
    for c in &sample.containers {
        let _ = writeln!(out, "container_start_time_seconds{{{}}} {} {ts}", container_labels(c), c.start);
    }
    header(
        &mut out,
        "node_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the node in core-seconds",
    );
    let _ = writeln!(out, "node_cpu_usage_seconds_total {:.9} {ts}", sample.node_cpu_seconds);
    header(&mut out, "node_memory_working_set_bytes", "gauge", "Current working set of the node in bytes");
    let _ = writeln!(out, "node_memory_working_set_bytes {} {ts}", sample.node_memory);
    // Pods: the sums of their containers.
    let mut pods: BTreeMap<(&str, &str), (f64, u64)> = BTreeMap::new();
    for c in &sample.containers {
        let (cpu, memory) = pods.entry((c.namespace.as_str(), c.pod.as_str())).or_default();
        *cpu += c.cpu_seconds;
        *memory += c.memory;
    }
    header(
        &mut out,
        "pod_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the pod in core-seconds",
    );
    for ((namespace, pod), (cpu, _)) in &pods {
        let _ = writeln!(
            out,
            "pod_cpu_usage_seconds_total{{namespace=\"{}\",pod=\"{}\"}} {cpu:.9} {ts}",
            escape(namespace),
            escape(pod)
        );
    }
    header(&mut out, "pod_memory_working_set_bytes", "gauge", "Current working set of the pod in bytes");
    for ((namespace, pod), (_, memory)) in &pods {
        let _ = writeln!(
            out,
            "pod_memory_working_set_bytes{{namespace=\"{}\",pod=\"{}\"}} {memory} {ts}",
            escape(namespace),
            escape(pod)
        );
    }
    header(
        &mut out,
        "resource_scrape_error",
        "gauge",
        "1 if there was an error while getting container metrics, 0 otherwise",
    );
    out.push_str("resource_scrape_error 0\n");
    out
}

/// The TLS settings of the kubelet endpoint: a self-signed certificate for `names` (DNS
/// names or IP addresses).
pub fn tls_acceptor(names: &[String]) -> Result<TlsAcceptor, Error> {
    let certified = rcgen::generate_simple_self_signed(names.to_vec())?;
    let cert = CertificateDer::from(certified.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Binds the endpoint's port (0: any free one).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr, source })
}

/// Produces the `/metrics/resource` text on each scrape.
pub type Source = Arc<dyn Fn() -> String + Send + Sync>;

/// Serves `/metrics/resource` (and `/healthz`) on `listener` for ever.
pub async fn serve(listener: TcpListener, tls: TlsAcceptor, source: Source) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "kubelet endpoint: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let (tls, source) = (tls.clone(), source.clone());
        tokio::spawn(async move {
            let stream = match tls.accept(tcp).await {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::debug!(%peer, %error, "kubelet endpoint: TLS handshake failed");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                let source = source.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&request, &source)) }
            });
            if let Err(error) =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await
            {
                tracing::debug!(%peer, %error, "kubelet endpoint: connection ended");
            }
        });
    }
}

fn answer<B>(request: &Request<B>, source: &Source) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics/resource") => (StatusCode::OK, "text/plain; version=0.0.4", source()),
        (&Method::GET, "/healthz") => (StatusCode::OK, "text/plain; charset=utf-8", "ok".to_string()),
        (&Method::GET, _) => (StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "404 page not found\n".to_string()),
        _ => (StatusCode::METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", "405 method not allowed\n".to_string()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn pod(name: &str, containers: &[&str], started: i64) -> RunningPod {
        RunningPod {
            uid: name.into(),
            namespace: "default".into(),
            name: name.into(),
            node: "n0".into(),
            ip: "10.244.0.2".parse().unwrap(),
            started: Timestamp::from_second(started).unwrap(),
            containers: containers.iter().map(|c| c.to_string()).collect(),
        }
    }

    #[test]
    fn hollow_figures_rise_steadily_with_time() {
        let since = Timestamp::from_second(1_000).unwrap();
        let pods = [pod("web", &["app", "side"], 1_100)];
        let sample = hollow_sample(&pods, since, Timestamp::from_second(1_200).unwrap());
        assert_eq!(sample.containers.len(), 2);
        assert!((sample.containers[0].cpu_seconds - 1.0).abs() < 1e-9);
        assert_eq!(sample.containers[0].memory, 16 << 20);
        assert!((sample.node_cpu_seconds - (20.0 + 2.0)).abs() < 1e-9);
        assert_eq!(sample.node_memory, (256 << 20) + (32 << 20));
        assert_eq!(sample.timestamp_ms, 1_200_000);
    }

    #[test]
    fn the_text_is_what_kubelet_serves() {
        let since = Timestamp::from_second(1_000).unwrap();
        let pods = [pod("we\"b", &["app"], 1_100)];
        let text = render(&hollow_sample(&pods, since, Timestamp::from_second(1_200).unwrap()));
        assert!(text.contains("# TYPE container_cpu_usage_seconds_total counter\n"), "{text}");
        assert!(text.contains(
            "container_cpu_usage_seconds_total{container=\"app\",namespace=\"default\",pod=\"we\\\"b\"} 1.000000000 1200000\n"
        ));
        assert!(text.contains(
            "container_memory_working_set_bytes{container=\"app\",namespace=\"default\",pod=\"we\\\"b\"} 16777216 1200000\n"
        ));
        assert!(text.contains(
            "container_start_time_seconds{container=\"app\",namespace=\"default\",pod=\"we\\\"b\"} 1100 1200000\n"
        ));
        assert!(text.contains("node_cpu_usage_seconds_total 21.000000000 1200000\n"));
        assert!(text.contains("node_memory_working_set_bytes 285212672 1200000\n"));
        assert!(
            text.contains("pod_cpu_usage_seconds_total{namespace=\"default\",pod=\"we\\\"b\"} 1.000000000 1200000\n")
        );
        assert!(text.contains("pod_memory_working_set_bytes{namespace=\"default\",pod=\"we\\\"b\"} 16777216 1200000\n"));
        assert!(text.ends_with("resource_scrape_error 0\n"));
    }

    #[tokio::test]
    async fn the_endpoint_answers_over_tls_and_refuses_other_paths() {
        let listener = bind(([127, 0, 0, 1], 0).into()).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tls = tls_acceptor(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        tokio::spawn(serve(listener, tls, Arc::new(|| "node_memory_working_set_bytes 1 2\n".to_string())));
        let get = |path: &'static str| async move {
            tokio::task::spawn_blocking(move || insecure_get(port, path)).await.unwrap()
        };
        let (code, body) = get("/metrics/resource").await;
        assert_eq!(code, 200);
        assert_eq!(body, "node_memory_working_set_bytes 1 2\n");
        assert_eq!(get("/healthz").await.0, 200);
        assert_eq!(get("/pods").await.0, 404);
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

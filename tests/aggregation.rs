//! End-to-end: the aggregation layer with real kubectl on `flotilla up` and a real HTTPS
//! extension API server in this process (actix-web; its serving certificate made by
//! `api_gateway::pki` for `metrics-server.kube-system.svc`; client certificates required and
//! verified against the front-proxy CA read from the `extension-apiserver-authentication`
//! ConfigMap). It serves `metrics.example.com/v1` `widgets` and echoes the identity headers
//! it got; a watch that waits for the test, and a WebSocket echo.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use common::{Up, DEADLINE};
use futures::StreamExt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{json, Value};
use tokio::sync::Notify;

const GROUP_VERSION: &str = "/apis/metrics.example.com/v1";

async fn resource_list() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "metrics.example.com/v1",
        "resources": [{"name": "widgets", "singularName": "widget", "namespaced": true, "kind": "Widget",
                       "verbs": ["get", "list", "watch"], "shortNames": ["wdg"]}],
    }))
}

/// The widget list, with what the server saw of the caller; a watch sends one event, waits
/// for the test's word, then a second and ends.
async fn widgets(req: HttpRequest, release: web::Data<Notify>) -> HttpResponse {
    let header = |name: &str| -> Vec<String> {
        req.headers().get_all(name).filter_map(|v| v.to_str().ok()).map(String::from).collect()
    };
    if req.query_string().contains("watch=true") {
        let event =
            |name: &str| format!("{{\"type\":\"ADDED\",\"object\":{{\"metadata\":{{\"name\":\"{name}\"}}}}}}\n");
        let (first, second) = (event("w1"), event("w2"));
        let events = futures::stream::once(async move { Ok::<_, actix_web::Error>(web::Bytes::from(first)) }).chain(
            futures::stream::once(async move {
                release.notified().await;
                Ok(web::Bytes::from(second))
            }),
        );
        return HttpResponse::Ok().content_type("application/json").streaming(events);
    }
    let client = req.conn_data::<api_gateway::authn::ClientCertUser>().map(|c| c.0.name.clone());
    HttpResponse::Ok().json(json!({
        "kind": "WidgetList",
        "apiVersion": "metrics.example.com/v1",
        "metadata": {},
        "items": [{"metadata": {"name": "w1", "namespace": "default"}}],
        "seen": {
            "user": header("X-Remote-User"),
            "groups": header("X-Remote-Group"),
            "authorization": header("Authorization"),
            "clientCertificate": client,
        },
    }))
}

/// A WebSocket-style upgrade whose stream echoes what it gets.
async fn echo(payload: web::Payload) -> HttpResponse {
    HttpResponse::SwitchingProtocols().upgrade("websocket").streaming(payload)
}

/// The extension server, serving HTTPS on 127.0.0.1 from its own thread.
struct ExtensionServer {
    port: u16,
    ca_pem: String,
    release: Arc<Notify>,
    handle: ServerHandle,
    thread: Option<JoinHandle<()>>,
    _pki: tempfile::TempDir,
}

impl ExtensionServer {
    /// Serves with a certificate for the service's name; requires client certificates that
    /// chain to `front_proxy_ca` (PEM).
    fn start(front_proxy_ca: &str) -> ExtensionServer {
        let pki_dir = tempfile::tempdir().unwrap();
        let pki = api_gateway::pki::load_or_create(pki_dir.path(), &["metrics-server.kube-system.svc".into()]).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(front_proxy_ca.as_bytes()).unwrap()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .unwrap();
        let chain =
            CertificateDer::pem_slice_iter(pki.apiserver.cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>().unwrap();
        let key = PrivateKeyDer::from_pem_slice(pki.apiserver.key_pem.as_bytes()).unwrap();
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap();
        let release = Arc::new(Notify::new());
        let data = web::Data::from(release.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .route(GROUP_VERSION, web::get().to(resource_list))
                        .route(&format!("{GROUP_VERSION}/widgets"), web::get().to(widgets))
                        .route(&format!("{GROUP_VERSION}/namespaces/default/widgets/w1/echo"), web::get().to(echo))
                })
                .on_connect(api_gateway::authn::on_connect)
                .workers(1)
                .disable_signals()
                .shutdown_timeout(1)
                .bind_rustls_0_23(("127.0.0.1", 0), tls)
                .unwrap();
                let port = server.addrs()[0].port();
                let server = server.run();
                tx.send((port, server.handle())).unwrap();
                server.await.unwrap();
            })
        });
        let (port, handle) = rx.recv().unwrap();
        ExtensionServer { port, ca_pem: pki.ca.cert_pem, release, handle, thread: Some(thread), _pki: pki_dir }
    }

    fn stop(&mut self) {
        futures::executor::block_on(self.handle.stop(false));
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for ExtensionServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            out.push(if i <= chunk.len() { ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char } else { '=' });
        }
    }
    out
}

fn registration(server: &ExtensionServer) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: metrics-server, namespace: kube-system}}
spec:
  ports: [{{name: https, port: 443, targetPort: {port}}}]
---
apiVersion: v1
kind: Endpoints
metadata: {{name: metrics-server, namespace: kube-system}}
subsets:
- addresses: [{{ip: 127.0.0.1}}]
  ports: [{{name: https, port: {port}}}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {{name: v1.metrics.example.com}}
spec:
  group: metrics.example.com
  version: v1
  service: {{namespace: kube-system, name: metrics-server, port: 443}}
  caBundle: {ca}
  groupPriorityMinimum: 100
  versionPriority: 10
",
        port = server.port,
        ca = base64(server.ca_pem.as_bytes())
    )
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The `Available` condition's status and reason of APIService `name` (empty while there is
/// no such APIService).
fn available(up: &Up, name: &str) -> (String, String) {
    let (found, out, _) = up.try_kubectl(&["get", "apiservice", name, "-o", "json"]);
    if !found {
        return (String::new(), String::new());
    }
    let obj = json_of(&out);
    let conditions = obj["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let condition = conditions.iter().find(|c| c["type"] == "Available").cloned().unwrap_or(Value::Null);
    (condition["status"].as_str().unwrap_or("").into(), condition["reason"].as_str().unwrap_or("").into())
}

fn wait_available(up: &Up, name: &str, want: (&str, &str)) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let got = available(up, name);
        if (got.0.as_str(), got.1.as_str()) == want {
            return;
        }
        assert!(Instant::now() < deadline, "{name} never became {want:?}; last {got:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// An HTTPS connection to the API server as the admin (its client certificate).
fn admin_connection(dir: &Path, port: u16) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let read = |file: &str| std::fs::read(dir.join("pki").join(file)).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(&read("ca.crt")).unwrap()).unwrap();
    let chain = CertificateDer::pem_slice_iter(&read("admin.crt")).collect::<Result<Vec<_>, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_slice(&read("admin.key")).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap()).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(DEADLINE)).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// Reads from `stream` into `seen` until it holds `needle`; fails on the end of the stream.
fn read_until(stream: &mut impl Read, seen: &mut Vec<u8>, needle: &str) {
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(seen).contains(needle) {
        let n = stream.read(&mut buf).unwrap_or(0);
        assert!(n > 0, "the stream ended before {needle:?}: {}", String::from_utf8_lossy(seen));
        seen.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn an_extension_server_is_reached_through_its_apiservice_until_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    up.wait_ready();

    // The ConfigMap extension servers read to trust the front proxy.
    let cm =
        up.kubectl_eventually(&["get", "cm", "-n", "kube-system", "extension-apiserver-authentication", "-o", "json"]);
    let data = json_of(&cm)["data"].clone();
    assert_eq!(data["requestheader-allowed-names"], r#"["front-proxy-client"]"#);
    assert_eq!(data["requestheader-username-headers"], r#"["X-Remote-User"]"#);
    assert_eq!(data["requestheader-group-headers"], r#"["X-Remote-Group"]"#);
    assert_eq!(data["requestheader-extra-headers-prefix"], r#"["X-Remote-Extra-"]"#);
    assert_eq!(
        data["client-ca-file"].as_str().unwrap(),
        std::fs::read_to_string(dir.path().join("pki/ca.crt")).unwrap()
    );
    let front_proxy_ca = data["requestheader-client-ca-file"].as_str().unwrap().to_string();
    assert!(front_proxy_ca.contains("BEGIN CERTIFICATE"));

    // Local APIServices for the built-in groups.
    wait_available(&up, "v1.apps", ("True", "Local"));
    let table = up.kubectl(&["get", "apiservices"]);
    assert!(table.lines().any(|l| l.split_whitespace().take(3).eq(["v1.apps", "Local", "True"])), "{table}");

    let mut server = ExtensionServer::start(&front_proxy_ca);
    let files = tempfile::tempdir().unwrap();
    let path = files.path().join("registration.yaml");
    std::fs::write(&path, registration(&server)).unwrap();
    up.kubectl(&["apply", "-f", &path.display().to_string()]);
    wait_available(&up, "v1.metrics.example.com", ("True", "Passed"));
    let table = up.kubectl(&["get", "apiservice", "v1.metrics.example.com"]);
    assert!(table.contains("kube-system/metrics-server   True"), "{table}");

    // Requests reach the server with the caller's identity, over the front proxy's certificate.
    let list = json_of(&up.kubectl(&["get", "--raw", &format!("{GROUP_VERSION}/widgets")]));
    assert_eq!(list["kind"], "WidgetList");
    assert_eq!(list["seen"]["user"], json!(["admin"]));
    assert_eq!(list["seen"]["groups"], json!(["system:masters", "system:authenticated"]));
    assert_eq!(list["seen"]["authorization"], json!([]), "the caller's credentials stay here");
    assert_eq!(list["seen"]["clientCertificate"], "front-proxy-client");

    // Discovery lists the group and its resources.
    let resources = up.kubectl(&["api-resources"]);
    let widgets = resources.lines().find(|l| l.starts_with("widgets ")).unwrap_or_else(|| panic!("{resources}"));
    assert_eq!(
        widgets.split_whitespace().collect::<Vec<_>>(),
        ["widgets", "wdg", "metrics.example.com/v1", "true", "Widget"]
    );
    let groups = json_of(&up.kubectl(&["get", "--raw", "/apis"]));
    let ours = groups["groups"].as_array().unwrap().iter().find(|g| g["name"] == "metrics.example.com").cloned();
    assert_eq!(ours.unwrap()["preferredVersion"]["groupVersion"], "metrics.example.com/v1");
    let group = json_of(&up.kubectl(&["get", "--raw", "/apis/metrics.example.com"]));
    assert_eq!((&group["kind"], &group["versions"][0]["version"]), (&json!("APIGroup"), &json!("v1")));

    // A watch streams: the first event arrives while the server holds the second back.
    let mut watch = admin_connection(dir.path(), up.https);
    write!(watch, "GET {GROUP_VERSION}/widgets?watch=true HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut seen = Vec::new();
    read_until(&mut watch, &mut seen, "\"w1\"");
    assert!(!String::from_utf8_lossy(&seen).contains("\"w2\""));
    server.release.notify_one();
    read_until(&mut watch, &mut seen, "\"w2\"");
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&seen));

    // A WebSocket upgrade is tunnelled both ways.
    let mut tunnel = admin_connection(dir.path(), up.https);
    write!(
        tunnel,
        "GET {GROUP_VERSION}/namespaces/default/widgets/w1/echo HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .unwrap();
    let mut seen = Vec::new();
    read_until(&mut tunnel, &mut seen, "\r\n\r\n");
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 101"), "{}", String::from_utf8_lossy(&seen));
    tunnel.write_all(b"ping through the tunnel").unwrap();
    read_until(&mut tunnel, &mut seen, "ping through the tunnel");

    // The review APIs an extension server delegates to.
    assert_eq!(up.kubectl(&["auth", "can-i", "get", "pods"]).trim(), "yes");
    let whoami = up.kubectl(&["auth", "whoami"]);
    assert!(whoami.lines().any(|l| l.split_whitespace().eq(["Username", "admin"])), "{whoami}");
    let review = files.path().join("review.json");
    std::fs::write(
        &review,
        r#"{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": "nope"}}"#,
    )
    .unwrap();
    let answer = json_of(&up.kubectl(&[
        "create",
        "--raw",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        "-f",
        &review.display().to_string(),
    ]));
    assert_eq!((&answer["kind"], &answer["status"]), (&json!("TokenReview"), &json!({"user": {}})));

    // Without the server: Available=False, 503 for its group only.
    server.stop();
    wait_available(&up, "v1.metrics.example.com", ("False", "FailedDiscoveryCheck"));
    let (ok, _, stderr) = up.try_kubectl(&["get", "--raw", &format!("{GROUP_VERSION}/widgets")]);
    assert!(!ok);
    assert!(stderr.contains("ServiceUnavailable") && stderr.contains("service unavailable"), "{stderr}");
    up.kubectl(&["get", "cm", "-n", "kube-system", "extension-apiserver-authentication"]);
    let table = up.kubectl(&["get", "apiservice", "v1.metrics.example.com"]);
    assert!(table.contains("False (FailedDiscoveryCheck)"), "{table}");
}

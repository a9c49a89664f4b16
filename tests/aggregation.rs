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
use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest, HttpResponse};
use common::apiservice::{available, registration};
use common::https::{self, HttpsServer};
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

/// The extension server, with a certificate for the service's name; it requires client
/// certificates that chain to `front_proxy_ca` (PEM), and its watches wait on `release`.
/// Returns it and its CA (PEM).
fn start_extension_server(front_proxy_ca: &str, release: Arc<Notify>) -> (HttpsServer, String) {
    let pki = https::serving_pki(&["metrics-server.kube-system.svc"]);
    let data = web::Data::from(release);
    let server = HttpsServer::start(https::server_config(&pki, Some(front_proxy_ca)), move |routes| {
        routes
            .app_data(data.clone())
            .route(GROUP_VERSION, web::get().to(resource_list))
            .route(&format!("{GROUP_VERSION}/widgets"), web::get().to(widgets))
            .route(&format!("{GROUP_VERSION}/namespaces/default/widgets/w1/echo"), web::get().to(echo));
    });
    (server, pki.ca.cert_pem)
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
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

    let release = Arc::new(Notify::new());
    let (mut server, ca_pem) = start_extension_server(&front_proxy_ca, release.clone());
    let files = tempfile::tempdir().unwrap();
    let path = files.path().join("registration.yaml");
    std::fs::write(&path, registration("metrics.example.com", "v1", 10, server.port(), &ca_pem)).unwrap();
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
    release.notify_one();
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

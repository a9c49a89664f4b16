//! The API server over real HTTPS, against a real single-member store: health and metrics
//! endpoints, `/version`, and who may reach what (client certificate, bearer token, anonymous).

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::HealthActor;
use api_gateway::{install_prometheus, pki, serve, Pki, Tokens};
use raft_store::{StoreConfig, StoreNode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// A response as (status code, raw headers, body).
struct Response {
    code: u16,
    headers: String,
    body: String,
}

/// How a test client shows itself.
#[derive(Clone, Copy)]
enum Who {
    Anonymous,
    Admin,
    Token(&'static str),
}

/// Sends `GET path` over HTTPS (HTTP/1.1, `Connection: close`), trusting only the cluster CA,
/// and reads the whole answer. Blocking: call it through `spawn_blocking`.
fn https_get(addr: SocketAddr, pki: &Pki, who: Who, path: &str) -> std::io::Result<Response> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(pki.ca.cert_pem.as_bytes()).unwrap()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match who {
        Who::Admin => {
            let cert = CertificateDer::from_pem_slice(pki.admin.cert_pem.as_bytes()).unwrap();
            let key = PrivateKeyDer::from_pem_slice(pki.admin.key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(vec![cert], key).unwrap()
        }
        Who::Anonymous | Who::Token(_) => builder.with_no_client_auth(),
    };
    let server_name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), server_name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, TcpStream::connect(addr)?);
    let auth = match who {
        Who::Token(token) => format!("Authorization: Bearer {token}\r\n"),
        _ => String::new(),
    };
    write!(tls, "GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw) {
        // A peer that closes without close_notify has still sent the whole answer.
        Err(e) if e.kind() != std::io::ErrorKind::UnexpectedEof || raw.is_empty() => return Err(e),
        _ => {}
    }
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let (status_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    let code = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    Ok(Response { code, headers: headers.to_ascii_lowercase(), body: body.to_string() })
}

async fn get(addr: SocketAddr, pki: &Pki, who: Who, path: &str) -> Response {
    let (pki, path) = (pki.clone(), path.to_string());
    actix_rt::task::spawn_blocking(move || https_get(addr, &pki, who, &path)).await.unwrap().unwrap()
}

fn assert_unauthorized(r: &Response) {
    assert_eq!(r.code, 401, "{}", r.body);
    let status: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        status,
        serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
    );
}

// One test function: the Prometheus recorder is global and installs once per process.
#[actix_rt::test]
async fn https_endpoints_report_health_and_metrics_and_check_who_asks() {
    let prometheus = install_prometheus().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let node =
        StoreNode::start(StoreConfig::new(1, dir.path().join("store"), "127.0.0.1:0".parse().unwrap())).await.unwrap();
    node.initialize(&BTreeMap::from([(1, node.addr().to_string())])).await.unwrap();
    let health = HealthActor::start_supervised(node.clone(), Duration::from_millis(10));
    let pki = pki::load_or_create(&dir.path().join("pki"), &[]).unwrap();
    let tokens = Tokens::parse("s3cret,robot,r1,\"ops,dev\"\n").unwrap();
    let (server, addr) =
        serve("127.0.0.1:0".parse().unwrap(), &pki, tokens, health, actors::KindActors::default(), prometheus).unwrap();
    let handle = server.handle();
    actix_rt::spawn(server);

    let deadline = Instant::now() + Duration::from_secs(10);
    let ready = loop {
        let r = get(addr, &pki, Who::Anonymous, "/readyz").await;
        if r.code == 200 || Instant::now() >= deadline {
            break r;
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!((ready.code, ready.body.as_str()), (200, "ok"));

    let verbose = get(addr, &pki, Who::Anonymous, "/readyz?verbose").await;
    assert_eq!((verbose.code, verbose.body.as_str()), (200, "[+]store ok\nreadyz check passed\n"));
    let live = get(addr, &pki, Who::Anonymous, "/livez").await;
    assert_eq!((live.code, live.body.as_str()), (200, "ok"));

    let version = get(addr, &pki, Who::Anonymous, "/version").await;
    assert_eq!(version.code, 200);
    let version: serde_json::Value = serde_json::from_str(&version.body).unwrap();
    assert_eq!((version["major"].as_str(), version["minor"].as_str()), (Some("1"), Some("32")));

    // Anonymous: only the public paths; a bad token: nothing at all.
    for path in ["/metrics", "/api", "/nope"] {
        assert_unauthorized(&get(addr, &pki, Who::Anonymous, path).await);
    }
    assert_unauthorized(&get(addr, &pki, Who::Token("wrong"), "/readyz").await);

    // Admin certificate and a known token: through, with Status bodies for unknown paths.
    for who in [Who::Admin, Who::Token("s3cret")] {
        let nope = get(addr, &pki, who, "/nope").await;
        assert_eq!(nope.code, 404, "{}", nope.body);
        assert!(nope.body.contains(r#""reason":"NotFound""#), "{}", nope.body);
    }

    node.put("k", "v").await.unwrap();
    let metrics = get(addr, &pki, Who::Admin, "/metrics").await;
    assert_eq!(metrics.code, 200);
    assert!(metrics.headers.contains("content-type: text/plain; version=0.0.4"), "{}", metrics.headers);
    assert!(metrics.body.contains("flotilla_store_"), "{}", metrics.body);
    assert!(metrics.body.contains("flotilla_http_requests_total"), "{}", metrics.body);
    assert!(metrics.body.contains(r#"path="/readyz""#), "{}", metrics.body);
    assert!(metrics.body.contains(r#"code="401""#), "{}", metrics.body);

    handle.stop(true).await;
    node.shutdown().await;
}

#[actix_rt::test]
async fn a_client_certificate_from_another_ca_is_refused_in_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let node =
        StoreNode::start(StoreConfig::new(1, dir.path().join("store"), "127.0.0.1:0".parse().unwrap())).await.unwrap();
    let health = HealthActor::start_supervised(node.clone(), Duration::from_millis(10));
    let pki = pki::load_or_create(&dir.path().join("pki"), &[]).unwrap();
    let stranger = pki::load_or_create(&dir.path().join("other"), &[]).unwrap();
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder().handle();
    let (server, addr) = serve(
        "127.0.0.1:0".parse().unwrap(),
        &pki,
        Tokens::default(),
        health,
        actors::KindActors::default(),
        prometheus,
    )
    .unwrap();
    let handle = server.handle();
    actix_rt::spawn(server);

    // The stranger's admin certificate, presented to a server that trusts only its own CA.
    let mixed = Pki { admin: stranger.admin.clone(), ..pki.clone() };
    let refused = actix_rt::task::spawn_blocking(move || https_get(addr, &mixed, Who::Admin, "/livez")).await.unwrap();
    assert!(refused.is_err(), "a certificate from another CA got an answer");

    handle.stop(true).await;
    node.shutdown().await;
}

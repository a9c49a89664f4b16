//! End-to-end: the real `flotilla up` process serves HTTPS with its own certificates and
//! writes a kubeconfig that real `kubectl` uses; anonymous clients reach only the health and
//! version endpoints; discovery lists every built-in kind (`kubectl api-resources`,
//! `kubectl api-versions`); the store keeps its data, and the PKI its certificates, across restarts;
//! a data dir written in another format is refused with a clear message.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chaos::free_port;
use raft_store::client::StoreClient;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

const DEADLINE: Duration = Duration::from_secs(30);

struct Up {
    child: Child,
    dir: PathBuf,
    https: u16,
    store: String,
}

impl Up {
    fn start(dir: &Path) -> Up {
        let https = free_port().unwrap();
        let store = format!("127.0.0.1:{}", free_port().unwrap());
        let child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args(["up", "--data-dir", &dir.display().to_string(), "--port", &https.to_string()])
            .args(["--store-listen", &store])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Up { child, dir: dir.to_path_buf(), https, store }
    }

    /// Waits for an anonymous HTTPS `/readyz` to answer 200, polling until the deadline.
    fn wait_ready(&self) {
        let deadline = Instant::now() + DEADLINE;
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.anonymous_get("/readyz") {
                Ok((200, _)) => return,
                Ok((code, body)) => last = format!("{code} {body}"),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("flotilla up never became ready: {last}");
    }

    /// `GET path` over HTTPS with no client certificate, trusting only `DIR/pki/ca.crt`.
    fn anonymous_get(&self, path: &str) -> std::io::Result<(u16, String)> {
        let ca = std::fs::read(self.dir.join("pki/ca.crt"))?;
        https_get(&ca, self.https, path)
    }

    /// Runs kubectl with `DIR/kubeconfig` and its discovery cache in `DIR/kube-cache` (not
    /// shared with other runs); returns its stdout, failing on a non-zero exit.
    fn kubectl(&self, args: &[&str]) -> String {
        let kubeconfig = self.dir.join("kubeconfig");
        let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
        let out = Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.join("kube-cache"))
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {kubectl} (this test needs kubectl 1.32 on PATH): {e}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "kubectl {args:?} failed: {stderr}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// SIGTERM, then wait for a clean exit.
    fn stop(mut self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "flotilla up exited with {exit}");
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` on `127.0.0.1:port` over HTTPS (as `localhost`), trusting the PEM CA `ca`;
/// returns the status code and body.
fn https_get(ca: &[u8], port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca).map_err(std::io::Error::other)?).map_err(std::io::Error::other)?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server_name = ServerName::try_from("localhost").map_err(std::io::Error::other)?;
    let conn = rustls::ClientConnection::new(Arc::new(config), server_name).map_err(std::io::Error::other)?;
    let tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(tls, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw) {
        // A peer that closes without close_notify has still sent the whole answer.
        Err(e) if e.kind() != std::io::ErrorKind::UnexpectedEof || raw.is_empty() => return Err(e),
        _ => {}
    }
    let response = String::from_utf8_lossy(&raw);
    let code = response.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Ok((code, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flotilla_up_serves_kubectl_over_https_and_keeps_data_and_certificates_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    up.wait_ready();

    let version: serde_json::Value = serde_json::from_str(&up.kubectl(&["version", "-o", "json"])).unwrap();
    let server = &version["serverVersion"];
    assert_eq!((server["major"].as_str(), server["minor"].as_str()), (Some("1"), Some("32")), "{version}");
    assert!(server["gitVersion"].as_str().unwrap().starts_with("v1.32.0-flotilla."), "{version}");
    assert_eq!(up.kubectl(&["get", "--raw", "/readyz"]), "ok");
    assert_eq!(up.kubectl(&["get", "--raw", "/livez"]), "ok");

    // Anonymous clients: health and version only; everything else is a 401 Status.
    assert_eq!(up.anonymous_get("/readyz").unwrap(), (200, "ok".to_string()));
    assert_eq!(up.anonymous_get("/version").unwrap().0, 200);
    for path in ["/api", "/metrics"] {
        let (code, body) = up.anonymous_get(path).unwrap();
        assert_eq!(code, 401, "{path}: {body}");
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!((status["kind"].as_str(), status["reason"].as_str()), (Some("Status"), Some("Unauthorized")));
        assert_eq!(status["code"], 401);
    }

    // Discovery: kubectl 1.32 reads the aggregated documents; plain JSON clients the legacy ones.
    let names = up.kubectl(&["api-resources", "-o", "name"]);
    let names: Vec<&str> = names.lines().collect();
    for name in [
        "configmaps",
        "deployments.apps",
        "leases.coordination.k8s.io",
        "customresourcedefinitions.apiextensions.k8s.io",
    ] {
        assert!(names.contains(&name), "{name} not in {names:?}");
    }
    assert_eq!(names.len(), actors::kinds::BUILTIN.len(), "{names:?}");
    let versions = up.kubectl(&["api-versions"]);
    for gv in ["v1", "apps/v1", "batch/v1"] {
        assert!(versions.lines().any(|l| l == gv), "{gv} not in {versions}");
    }
    let apps: serde_json::Value = serde_json::from_str(&up.kubectl(&["get", "--raw", "/apis/apps/v1"])).unwrap();
    assert_eq!((apps["kind"].as_str(), apps["groupVersion"].as_str()), (Some("APIResourceList"), Some("apps/v1")));
    let core: serde_json::Value = serde_json::from_str(&up.kubectl(&["get", "--raw", "/api"])).unwrap();
    assert_eq!(core["versions"], serde_json::json!(["v1"]), "{core}");

    let client = StoreClient::new(&up.store).unwrap();
    let mut last = 0;
    for i in 0..20 {
        last = client.put(format!("/e2e/{i}"), format!("v{i}")).await.unwrap();
    }
    let metrics = up.kubectl(&["get", "--raw", "/metrics"]);
    assert!(metrics.contains("flotilla_store_applied_entries_total"), "{metrics}");
    let ca = std::fs::read_to_string(dir.path().join("pki/ca.crt")).unwrap();
    let kubeconfig = kubeconfig_json(&dir.path().join("kubeconfig"));
    up.stop();

    let up = Up::start(dir.path());
    up.wait_ready();
    assert_eq!(std::fs::read_to_string(dir.path().join("pki/ca.crt")).unwrap(), ca, "the CA is kept");
    let rewritten = kubeconfig_json(&dir.path().join("kubeconfig"));
    assert_eq!(rewritten["clusters"][0]["cluster"]["server"], format!("https://127.0.0.1:{}", up.https));
    assert_eq!(rewritten["users"], kubeconfig["users"], "the admin credentials are kept");
    assert_eq!(up.kubectl(&["get", "--raw", "/readyz"]), "ok");
    let client = StoreClient::new(&up.store).unwrap();
    let all = client.range(&raft_store::RangeRequest::prefix("/e2e/"), true).await.unwrap();
    assert_eq!(all.count, 20);
    assert_eq!(all.revision, last);
    assert_eq!(client.put("/e2e/after", "x").await.unwrap(), last + 1, "revisions keep rising");
    up.stop();
}

fn kubeconfig_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_data_dir_written_in_another_format_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join("FLOTILLA_FORMAT"), "99\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["up", "--data-dir", &dir.path().display().to_string()])
        .args(["--port", &free_port().unwrap().to_string()])
        .args(["--store-listen", &format!("127.0.0.1:{}", free_port().unwrap())])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("store format 99") && stderr.contains("reads format 1"), "{stderr}");
}

//! Shared helpers of the end-to-end tests: start `flotilla up` in a temp dir, wait for it,
//! and drive it with real kubectl or raw HTTPS.

#![allow(clippy::unwrap_used, dead_code)]

pub mod apiservice;
pub mod https;
pub mod kubelet;
pub mod tokens;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chaos::free_port;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

pub const DEADLINE: Duration = Duration::from_secs(30);

pub struct Up {
    pub child: Child,
    pub dir: PathBuf,
    pub https: u16,
    pub store: String,
}

impl Up {
    pub fn start(dir: &Path) -> Up {
        let https = free_port().unwrap();
        let store = format!("127.0.0.1:{}", free_port().unwrap());
        Up::start_at(dir, https, store)
    }

    /// Stops this member (SIGTERM, clean exit) and starts it again on the same data dir
    /// and ports.
    pub fn restart(self) -> Up {
        let (dir, https, store) = (self.dir.clone(), self.https, self.store.clone());
        self.stop();
        let up = Up::start_at(&dir, https, store);
        up.wait_ready();
        up
    }

    fn start_at(dir: &Path, https: u16, store: String) -> Up {
        let child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args(["up", "--data-dir", &dir.display().to_string(), "--port", &https.to_string(), "--no-node"])
            .args(["--store-listen", &store])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Up { child, dir: dir.to_path_buf(), https, store }
    }

    /// Waits for an anonymous HTTPS `/readyz` to answer 200, polling until the deadline.
    pub fn wait_ready(&self) {
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
    pub fn anonymous_get(&self, path: &str) -> std::io::Result<(u16, String)> {
        let ca = std::fs::read(self.dir.join("pki/ca.crt"))?;
        https_get(&ca, self.https, path)
    }

    /// Runs kubectl with `DIR/kubeconfig` and its discovery cache in `DIR/kube-cache` (not
    /// shared with other runs); returns its stdout, failing on a non-zero exit.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.try_kubectl(args);
        assert!(ok, "kubectl {args:?} failed: {stderr}");
        stdout
    }

    /// Runs kubectl like [`Self::kubectl`]; returns whether it succeeded, stdout and stderr.
    pub fn try_kubectl(&self, args: &[&str]) -> (bool, String, String) {
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
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success(), String::from_utf8(out.stdout).unwrap(), stderr)
    }

    /// Polls `kubectl args` until it succeeds, failing after [`DEADLINE`].
    pub fn kubectl_eventually(&self, args: &[&str]) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let (ok, stdout, stderr) = self.try_kubectl(args);
            if ok {
                return stdout;
            }
            assert!(Instant::now() < deadline, "kubectl {args:?} never succeeded: {stderr}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) {
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
pub fn https_get(ca: &[u8], port: u16, path: &str) -> std::io::Result<(u16, String)> {
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

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

/// Polls `probe` until it answers `Ok`, failing after [`DEADLINE`] with `what` and the last
/// `Err` (what the probe saw).
pub fn eventually<T>(what: &str, probe: impl FnMut() -> Result<T, String>) -> T {
    eventually_within(DEADLINE, what, probe)
}

/// [`eventually`], failing after `limit`.
pub fn eventually_within<T>(limit: Duration, what: &str, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match probe() {
            Ok(value) => return value,
            Err(seen) => assert!(Instant::now() < deadline, "{what}, never:\n{seen}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub struct Up {
    pub child: Child,
    pub dir: PathBuf,
    pub https: u16,
    pub store: String,
}

impl Up {
    /// Starts `flotilla up` on free ports and waits until it is ready. A port found free can
    /// be taken by another process before flotilla binds it (tests run in parallel): when
    /// flotilla exits because an address is in use, it starts again on other ports.
    pub fn start(dir: &Path) -> Up {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let https = free_port().unwrap();
            let store = format!("127.0.0.1:{}", free_port().unwrap());
            let mut up = Up::start_at(dir, https, store);
            match up.ready_or_exit() {
                Ok(()) => return up,
                Err(log) if attempts < 3 && log.contains("in use") => continue,
                Err(log) => panic!("flotilla up never became ready:\n{log}"),
            }
        }
    }

    /// Stops this member (SIGTERM, clean exit) and starts it again on the same data dir
    /// and ports.
    pub fn restart(self) -> Up {
        let (dir, https, store) = (self.dir.clone(), self.https, self.store.clone());
        self.stop();
        let mut up = Up::start_at(&dir, https, store);
        if let Err(log) = up.ready_or_exit() {
            panic!("flotilla up never became ready after a restart:\n{log}");
        }
        up
    }

    /// `DIR/flotilla.log`: what `flotilla up` printed, appended across restarts.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("flotilla.log")
    }

    fn start_at(dir: &Path, https: u16, store: String) -> Up {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("flotilla.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args(["up", "--data-dir", &dir.display().to_string(), "--port", &https.to_string(), "--no-node"])
            .args(["--store-listen", &store])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Up { child, dir: dir.to_path_buf(), https, store }
    }

    /// Waits for readiness (see [`poll_ready`]), failing early when the process exits.
    fn ready_or_exit(&mut self) -> Result<(), String> {
        let (dir, https) = (self.dir.clone(), self.https);
        let child = &mut self.child;
        poll_ready(|| anonymous_get_at(&dir, https, "/readyz"), || child.try_wait().ok().flatten())
            .map_err(|why| format!("{why}; its log:\n{}", self.log_tail()))
    }

    /// The last lines of [`Self::log_path`].
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Waits for an anonymous HTTPS `/readyz` to answer 200 ([`Self::start`] has waited
    /// already; this checks it still is).
    pub fn wait_ready(&self) {
        if let Err(why) = poll_ready(|| self.anonymous_get("/readyz"), || None) {
            panic!("flotilla up never became ready: {why}; its log:\n{}", self.log_tail());
        }
    }

    /// `GET path` over HTTPS with no client certificate, trusting only `DIR/pki/ca.crt`.
    pub fn anonymous_get(&self, path: &str) -> std::io::Result<(u16, String)> {
        anonymous_get_at(&self.dir, self.https, path)
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

/// `GET path` on `port` with no client certificate, trusting only `dir/pki/ca.crt`.
fn anonymous_get_at(dir: &Path, port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let ca = std::fs::read(dir.join("pki/ca.crt"))?;
    https_get(&ca, port, path)
}

/// Polls `readyz` until it answers 200, for at most [`DEADLINE`]; fails with the last answer,
/// or at once when `exited` reports the process gone.
fn poll_ready(
    readyz: impl Fn() -> std::io::Result<(u16, String)>,
    mut exited: impl FnMut() -> Option<std::process::ExitStatus>,
) -> Result<(), String> {
    let deadline = Instant::now() + DEADLINE;
    let mut last = String::new();
    while Instant::now() < deadline {
        match readyz() {
            Ok((200, _)) => return Ok(()),
            Ok((code, body)) => last = format!("{code} {body}"),
            Err(e) => last = e.to_string(),
        }
        if let Some(status) = exited() {
            return Err(format!("it exited with {status} (last answer: {last})"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("last answer: {last}"))
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

//! kubectl with a bearer token as its only credential (ServiceAccount token tests).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Up, DEADLINE};

/// kubectl with a kubeconfig that names the server and its CA but no credentials, so the
/// bearer token is the only identity it shows.
pub struct WithToken {
    kubeconfig: PathBuf,
}

impl WithToken {
    pub fn new(up: &Up) -> WithToken {
        let kubeconfig = up.dir.join("token-kubeconfig");
        let config = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{}\n    \
             certificate-authority: {}\nusers:\n- name: u\n  user: {{}}\ncontexts:\n- name: c\n  context: {{cluster: c, \
             user: u, namespace: default}}\ncurrent-context: c\n",
            up.https,
            up.dir.join("pki/ca.crt").display()
        );
        std::fs::write(&kubeconfig, config).unwrap();
        WithToken { kubeconfig }
    }

    /// `kubectl --token=TOKEN args`: whether it succeeded, stdout, stderr.
    pub fn kubectl(&self, token: &str, args: &[&str]) -> (bool, String, String) {
        let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
        let out = Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg(format!("--token={token}"))
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {kubectl}: {e}"));
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    }

    pub fn whoami(&self, token: &str) -> Value {
        let (ok, stdout, stderr) = self.kubectl(token, &["auth", "whoami", "-o", "json"]);
        assert!(ok, "auth whoami: {stderr}");
        serde_json::from_str::<Value>(&stdout).unwrap()["status"]["userInfo"].clone()
    }

    pub fn assert_unauthorized(&self, token: &str) {
        let (ok, _, stderr) = self.kubectl(token, &["get", "pods"]);
        assert!(!ok && stderr.contains("Unauthorized"), "expected 401, got: {stderr}");
    }

    /// Waits until the token is refused (the API server's caches follow a delete).
    pub fn until_unauthorized(&self, token: &str) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let (ok, _, stderr) = self.kubectl(token, &["get", "pods"]);
            if !ok && stderr.contains("Unauthorized") {
                return;
            }
            assert!(Instant::now() < deadline, "the token was never refused: {stderr}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

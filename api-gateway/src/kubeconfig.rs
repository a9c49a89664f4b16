//! The admin kubeconfig, `DATA_DIR/kubeconfig`: how `kubectl --kubeconfig` reaches the cluster.
//!
//! Written as JSON, which kubectl and every client library read as they read YAML.

use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::pki::{write_file, Pki, PkiError};

/// Name of the cluster and of the context in the kubeconfig.
pub const CLUSTER: &str = "flotilla";
/// Name of the user in the kubeconfig.
pub const USER: &str = "admin";

/// The kubeconfig text: cluster `flotilla` at `server` (e.g. `https://127.0.0.1:6443`), user
/// `admin` with the admin client certificate, and context `flotilla` as the current one.
pub fn render(server: &str, pki: &Pki) -> String {
    render_contexts(&[(CLUSTER.to_string(), server.to_string())], pki)
}

/// The kubeconfig of a multi-member control plane: one cluster and one context per
/// `(name, server)` (e.g. `member-1` at `https://127.0.0.1:6443`), all with the admin user;
/// the first is the current context.
pub fn render_contexts(servers: &[(String, String)], pki: &Pki) -> String {
    let ca = STANDARD.encode(&pki.ca.cert_pem);
    let clusters: Vec<_> = servers
        .iter()
        .map(|(name, server)| {
            serde_json::json!({"name": name, "cluster": {"server": server, "certificate-authority-data": ca}})
        })
        .collect();
    let contexts: Vec<_> = servers
        .iter()
        .map(|(name, _)| serde_json::json!({"name": name, "context": {"cluster": name, "user": USER}}))
        .collect();
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": clusters,
        "users": [{
            "name": USER,
            "user": {
                "client-certificate-data": STANDARD.encode(&pki.admin.cert_pem),
                "client-key-data": STANDARD.encode(&pki.admin.key_pem),
            },
        }],
        "contexts": contexts,
        "current-context": servers.first().map(|(name, _)| name.as_str()).unwrap_or(CLUSTER),
        "preferences": {},
    });
    format!("{config:#}\n")
}

/// Writes the kubeconfig to `path`, readable by its owner only (it holds the admin's key).
pub fn write(path: &Path, server: &str, pki: &Pki) -> Result<(), PkiError> {
    write_file(path, &render(server, pki), 0o600)
}

/// Writes the kubeconfig of [`render_contexts`] to `path`, readable by its owner only.
pub fn write_contexts(path: &Path, servers: &[(String, String)], pki: &Pki) -> Result<(), PkiError> {
    write_file(path, &render_contexts(servers, pki), 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_names_the_server_the_ca_and_the_admin_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let pki = crate::pki::load_or_create(&dir.path().join("pki"), &[]).unwrap();
        let path = dir.path().join("kubeconfig");
        write(&path, "https://127.0.0.1:6443", &pki).unwrap();
        let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(config["current-context"], "flotilla");
        assert_eq!(config["contexts"][0]["context"]["user"], "admin");
        let cluster = &config["clusters"][0]["cluster"];
        assert_eq!(cluster["server"], "https://127.0.0.1:6443");
        let decode = |v: &serde_json::Value| String::from_utf8(STANDARD.decode(v.as_str().unwrap()).unwrap()).unwrap();
        assert_eq!(decode(&cluster["certificate-authority-data"]), pki.ca.cert_pem);
        assert_eq!(decode(&config["users"][0]["user"]["client-key-data"]), pki.admin.key_pem);
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
    }
}

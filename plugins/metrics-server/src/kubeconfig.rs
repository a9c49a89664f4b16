//! Where the API server is and how to prove who we are: a kubeconfig file (its current
//! context's cluster and user), or the in-cluster ServiceAccount files.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_yaml::Value;

/// Why the connection settings could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// The kubeconfig is not YAML.
    #[error("parsing the kubeconfig: {0}")]
    Yaml(#[from] serde_yaml::Error),
    /// The kubeconfig lacks something it needs, or holds something unusable.
    #[error("kubeconfig: {0}")]
    Invalid(String),
    /// Not in a pod with a ServiceAccount, and no kubeconfig given.
    #[error("no --kubeconfig and not in a cluster: {0}")]
    NotInCluster(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// How to authenticate to the API server (and to kubelets).
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    None,
    /// A client certificate chain and its key, PEM.
    ClientCertificate {
        cert_pem: Vec<u8>,
        key_pem: Vec<u8>,
    },
    /// A bearer token.
    Token(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print keys or tokens.
        f.write_str(match self {
            Credentials::None => "None",
            Credentials::ClientCertificate { .. } => "ClientCertificate",
            Credentials::Token(_) => "Token",
        })
    }
}

/// Connection settings for the API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// `https://host:port`, without a trailing slash.
    pub server: String,
    /// The CA that signed the server's certificate, PEM (`None`: the system's roots are not
    /// loaded, so a server is then trusted only with `insecure`).
    pub ca_pem: Option<Vec<u8>>,
    pub insecure: bool,
    pub credentials: Credentials,
}

/// Reads the kubeconfig at `path`.
pub fn load(path: &Path) -> Result<Connection> {
    let text = read(path)?;
    parse(&String::from_utf8_lossy(&text), path.parent().unwrap_or(Path::new(".")))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })
}

/// Parses a kubeconfig; relative file paths in it are relative to `base`.
pub fn parse(text: &str, base: &Path) -> Result<Connection> {
    let config: Value = serde_yaml::from_str(text)?;
    let str_of = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(String::from);
    let named = |list: &str, name: &str, field: &str| -> Result<Value> {
        config
            .get(list)
            .and_then(Value::as_sequence)
            .and_then(|items| items.iter().find(|i| i.get("name").and_then(Value::as_str) == Some(name)))
            .and_then(|i| i.get(field))
            .cloned()
            .ok_or_else(|| Error::Invalid(format!("no {field} named {name:?}")))
    };
    let current = str_of(&config, "current-context").ok_or_else(|| Error::Invalid("no current-context".into()))?;
    let context = named("contexts", &current, "context")?;
    let cluster_name =
        str_of(&context, "cluster").ok_or_else(|| Error::Invalid("the context names no cluster".into()))?;
    let cluster = named("clusters", &cluster_name, "cluster")?;
    let user = match str_of(&context, "user") {
        Some(name) => named("users", &name, "user")?,
        None => Value::Null,
    };
    let server = str_of(&cluster, "server").ok_or_else(|| Error::Invalid("the cluster has no server".into()))?;
    let file = |v: &Value, data: &str, path: &str| -> Result<Option<Vec<u8>>> {
        if let Some(encoded) = str_of(v, data) {
            let decoded =
                STANDARD.decode(encoded.trim()).map_err(|e| Error::Invalid(format!("{data} is not base64: {e}")))?;
            return Ok(Some(decoded));
        }
        match str_of(v, path) {
            Some(p) => Ok(Some(read(&base.join(p))?)),
            None => Ok(None),
        }
    };
    let ca_pem = file(&cluster, "certificate-authority-data", "certificate-authority")?;
    let insecure = cluster.get("insecure-skip-tls-verify").and_then(Value::as_bool).unwrap_or(false);
    let cert = file(&user, "client-certificate-data", "client-certificate")?;
    let key = file(&user, "client-key-data", "client-key")?;
    let credentials = match (cert, key) {
        (Some(cert_pem), Some(key_pem)) => Credentials::ClientCertificate { cert_pem, key_pem },
        (Some(_), None) | (None, Some(_)) => {
            return Err(Error::Invalid("a client certificate needs its key, and a key its certificate".into()))
        }
        (None, None) => match (str_of(&user, "token"), str_of(&user, "tokenFile")) {
            (Some(token), _) => Credentials::Token(token),
            (None, Some(path)) => {
                Credentials::Token(String::from_utf8_lossy(&read(&base.join(path))?).trim().to_string())
            }
            (None, None) => Credentials::None,
        },
    };
    Ok(Connection { server: server.trim_end_matches('/').to_string(), ca_pem, insecure, credentials })
}

/// The in-cluster settings: `KUBERNETES_SERVICE_HOST`/`_PORT` and the pod's ServiceAccount
/// token and CA, as client-go's `rest.InClusterConfig` reads them.
pub fn in_cluster() -> Result<Connection> {
    let host = std::env::var("KUBERNETES_SERVICE_HOST")
        .map_err(|_| Error::NotInCluster("no KUBERNETES_SERVICE_HOST".into()))?;
    let port = std::env::var("KUBERNETES_SERVICE_PORT")
        .map_err(|_| Error::NotInCluster("no KUBERNETES_SERVICE_PORT".into()))?;
    let dir = Path::new("/var/run/secrets/kubernetes.io/serviceaccount");
    let token = String::from_utf8_lossy(&read(&dir.join("token"))?).trim().to_string();
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    Ok(Connection {
        server: format!("https://{host}:{port}"),
        ca_pem: Some(read(&dir.join("ca.crt"))?),
        insecure: false,
        credentials: Credentials::Token(token),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_current_contexts_cluster_and_client_certificate_are_read() {
        let text = r#"{
            "apiVersion": "v1", "kind": "Config", "current-context": "flotilla",
            "clusters": [{"name": "other", "cluster": {"server": "https://nope"}},
                         {"name": "flotilla", "cluster": {"server": "https://127.0.0.1:6443/", "certificate-authority-data": "Q0E="}}],
            "users": [{"name": "admin", "user": {"client-certificate-data": "Q0VSVA==", "client-key-data": "S0VZ"}}],
            "contexts": [{"name": "flotilla", "context": {"cluster": "flotilla", "user": "admin"}}]
        }"#;
        let connection = parse(text, Path::new("/")).unwrap();
        assert_eq!(connection.server, "https://127.0.0.1:6443");
        assert_eq!(connection.ca_pem.as_deref(), Some(&b"CA"[..]));
        assert_eq!(
            connection.credentials,
            Credentials::ClientCertificate { cert_pem: b"CERT".to_vec(), key_pem: b"KEY".to_vec() }
        );
    }

    #[test]
    fn yaml_with_file_paths_and_a_token_is_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), "CA FILE").unwrap();
        let text = "
apiVersion: v1
kind: Config
current-context: c
clusters:
- name: k
  cluster: {server: 'https://api:443', certificate-authority: ca.crt}
users:
- name: u
  user: {token: abc}
contexts:
- name: c
  context: {cluster: k, user: u}
";
        let connection = parse(text, dir.path()).unwrap();
        assert_eq!(connection.ca_pem.as_deref(), Some(&b"CA FILE"[..]));
        assert_eq!(connection.credentials, Credentials::Token("abc".into()));
    }

    #[test]
    fn a_kubeconfig_without_the_current_context_is_refused() {
        let err = parse("current-context: x\ncontexts: []\n", Path::new("/")).unwrap_err();
        assert!(err.to_string().contains("no context named \"x\""), "{err}");
    }
}

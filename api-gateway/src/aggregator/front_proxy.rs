//! The front proxy's credentials and what extension servers read to trust them.
//!
//! kube-apiserver proxies to an extension server with a client certificate of its own (the
//! "front proxy", `--proxy-client-cert-file`) signed by a CA of its own
//! (`--requestheader-client-ca-file`), and says who the caller is in the `X-Remote-User`,
//! `X-Remote-Group` and `X-Remote-Extra-*` headers. An extension server trusts those headers
//! only on a connection with such a certificate, whose common name is an allowed name; it
//! learns the CA and the names from the `kube-system/extension-apiserver-authentication`
//! ConfigMap ([`config_map`]), which the availability controller publishes.
//!
//! Files, beside the cluster CA in `DATA_DIR/pki/` (kubeadm's names): `front-proxy-ca.crt`,
//! `front-proxy-ca.key`, `front-proxy-client.crt`, `front-proxy-client.key`, made on first
//! start by [`load_or_create`] (which `pki::load_or_create` calls) and kept.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use actors::kinds;
use actors::{ApiError, ApiResult, Create, Get, KindActors, Update};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use serde_json::{json, Value};

use crate::pki::{self, CertAndKey, Pki, PkiError};

/// Common name of the front-proxy CA.
pub const CA_NAME: &str = "front-proxy-ca";
/// Common name of the front proxy's client certificate: the one allowed name.
pub const CLIENT_NAME: &str = "front-proxy-client";
/// Where the ConfigMap for extension servers lives.
pub const CONFIG_MAP_NAMESPACE: &str = "kube-system";
pub const CONFIG_MAP_NAME: &str = "extension-apiserver-authentication";
/// The headers that carry the caller's identity to an extension server.
pub const USER_HEADER: &str = "X-Remote-User";
pub const GROUP_HEADER: &str = "X-Remote-Group";
pub const EXTRA_HEADER_PREFIX: &str = "X-Remote-Extra-";

/// The front-proxy CA and the client certificate it signed. Carries private keys.
#[derive(Clone)]
pub struct FrontProxy {
    pub ca: CertAndKey,
    pub client: CertAndKey,
}

/// The front proxies loaded in this process, by the PEM of their cluster's CA: the server
/// finds its own from the [`Pki`] it is given (several clusters live in one test process).
static LOADED: Mutex<Option<HashMap<String, FrontProxy>>> = Mutex::new(None);

/// Loads `front-proxy-ca.*` and `front-proxy-client.*` from `dir`, making what is missing or
/// stale as `pki` does for the cluster's certificates, and remembers them for the cluster
/// whose CA is `cluster_ca_pem` ([`for_cluster`]).
pub(crate) fn load_or_create(dir: &Path, cluster_ca_pem: &str) -> Result<FrontProxy, PkiError> {
    let (ca, issuer) = pki::load_or_create_named_ca(dir, "front-proxy-ca", CA_NAME)?;
    let ca_path = dir.join("front-proxy-ca.crt");
    let ca_der = pki::parse_pem(&ca_path, &ca.cert_pem)?;
    let ca_cert = pki::parse_der(&ca_path, &ca_der)?;
    let params = pki::client_params(CLIENT_NAME, None);
    let client = pki::load_or_issue_leaf(dir, "front-proxy-client", &ca_cert, &issuer, params)?;
    let front_proxy = FrontProxy { ca, client };
    let mut loaded = LOADED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    loaded.get_or_insert_with(HashMap::new).insert(cluster_ca_pem.to_string(), front_proxy.clone());
    Ok(front_proxy)
}

/// The front proxy of `pki`'s cluster, as [`load_or_create`] loaded it; a cluster whose
/// certificates were not loaded from disk gets one made in memory (gone at exit).
pub fn for_cluster(pki: &Pki) -> Result<FrontProxy, PkiError> {
    let mut loaded = LOADED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let loaded = loaded.get_or_insert_with(HashMap::new);
    if let Some(found) = loaded.get(&pki.ca.cert_pem) {
        return Ok(found.clone());
    }
    let made = in_memory()?;
    loaded.insert(pki.ca.cert_pem.clone(), made.clone());
    Ok(made)
}

/// A front-proxy CA and client certificate that live in memory only.
fn in_memory() -> Result<FrontProxy, PkiError> {
    let generate = |source| PkiError::Generate { what: "front-proxy CA", source };
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().map_err(generate)?).map_err(generate)?;
    let key = KeyPair::generate().map_err(generate)?;
    let client = pki::client_params(CLIENT_NAME, None).signed_by(&key, &ca).map_err(generate)?;
    Ok(FrontProxy {
        ca: CertAndKey { cert_pem: ca.pem(), key_pem: ca.key().serialize_pem() },
        client: CertAndKey { cert_pem: client.pem(), key_pem: key.serialize_pem() },
    })
}

/// The `data` of `kube-system/extension-apiserver-authentication`, as kube-apiserver
/// writes it: the client CA of the cluster, and the request-header settings (JSON lists).
pub fn config_map_data(cluster_ca_pem: &str, front_proxy_ca_pem: &str) -> Value {
    let list = |item: &str| json!([item]).to_string();
    json!({
        "client-ca-file": cluster_ca_pem,
        "requestheader-allowed-names": list(CLIENT_NAME),
        "requestheader-client-ca-file": front_proxy_ca_pem,
        "requestheader-extra-headers-prefix": list(EXTRA_HEADER_PREFIX),
        "requestheader-group-headers": list(GROUP_HEADER),
        "requestheader-username-headers": list(USER_HEADER),
    })
}

/// The whole ConfigMap with `data`.
pub fn config_map(data: &Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CONFIG_MAP_NAME, "namespace": CONFIG_MAP_NAMESPACE},
        "data": data,
    })
}

/// The field manager of the ConfigMap's writes.
const MANAGER: &str = "flotilla-aggregator";

/// Makes `kube-system/extension-apiserver-authentication` hold `data`: creates it, or
/// replaces its `data` when it differs. Fails while `kube-system` does not exist yet.
pub async fn publish(actors: &KindActors, data: &Value) -> ApiResult<()> {
    let kind = kinds::find("", "v1", "configmaps")
        .ok_or_else(|| ApiError::ServiceUnavailable("configmaps are not served".into()))?;
    let actor = actors.get(kind).ok_or_else(|| ApiError::ServiceUnavailable("no configmaps actor".into()))?;
    let unreachable = |e: actix::MailboxError| ApiError::ServiceUnavailable(format!("configmaps actor: {e}"));
    let get = Get { namespace: Some(CONFIG_MAP_NAMESPACE.into()), name: CONFIG_MAP_NAME.into() };
    match actor.send(get).await.map_err(unreachable)? {
        Ok(current) if current.get("data") == Some(data) => Ok(()),
        Ok(mut current) => {
            current["data"] = data.clone();
            let update = Update {
                namespace: Some(CONFIG_MAP_NAMESPACE.into()),
                name: CONFIG_MAP_NAME.into(),
                obj: current,
                field_manager: Some(MANAGER.into()),
                part: actors::Part::Main,
            };
            actor.send(update).await.map_err(unreachable)?.map(drop)
        }
        Err(ApiError::NotFound(_)) => {
            let create = Create {
                namespace: Some(CONFIG_MAP_NAMESPACE.into()),
                obj: config_map(data),
                field_manager: Some(MANAGER.into()),
            };
            actor.send(create).await.map_err(unreachable)?.map(drop)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn signed_by(leaf_pem: &str, ca_pem: &str) -> bool {
        let (leaf, ca) =
            (pki::parse_pem(Path::new("leaf"), leaf_pem).unwrap(), pki::parse_pem(Path::new("ca"), ca_pem).unwrap());
        let (leaf, ca) =
            (pki::parse_der(Path::new("leaf"), &leaf).unwrap(), pki::parse_der(Path::new("ca"), &ca).unwrap());
        leaf.verify_signature(Some(ca.public_key())).is_ok()
    }

    #[test]
    fn the_front_proxy_is_made_once_beside_the_cluster_ca_and_found_from_the_pki() {
        let dir = tempfile::tempdir().unwrap();
        let cluster = pki::load_or_create(dir.path(), &[]).unwrap();
        for file in ["front-proxy-ca.crt", "front-proxy-ca.key", "front-proxy-client.crt", "front-proxy-client.key"] {
            assert!(dir.path().join(file).exists(), "{file}");
        }
        let first = for_cluster(&cluster).unwrap();
        assert!(signed_by(&first.client.cert_pem, &first.ca.cert_pem));
        assert!(!signed_by(&first.client.cert_pem, &cluster.ca.cert_pem), "its own CA, not the cluster's");
        let der = pki::parse_pem(Path::new("client"), &first.client.cert_pem).unwrap();
        assert_eq!(crate::authn::user_from_certificate(&der).unwrap().name, CLIENT_NAME);

        let again = pki::load_or_create(dir.path(), &[]).unwrap();
        let second = for_cluster(&again).unwrap();
        assert_eq!(first.ca.cert_pem, second.ca.cert_pem);
        assert_eq!(first.client.cert_pem, second.client.cert_pem);
    }

    #[test]
    fn a_cluster_not_loaded_from_disk_gets_a_front_proxy_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let cluster = pki::load_or_create(dir.path(), &[]).unwrap();
        let other = Pki { ca: cluster.admin.clone(), ..cluster };
        let made = for_cluster(&other).unwrap();
        assert!(signed_by(&made.client.cert_pem, &made.ca.cert_pem));
        assert_eq!(for_cluster(&other).unwrap().ca.cert_pem, made.ca.cert_pem, "made once");
    }

    #[test]
    fn the_config_map_holds_both_cas_and_the_request_header_settings_as_json_lists() {
        let data = config_map_data("CLUSTER", "FRONT");
        assert_eq!(data["client-ca-file"], "CLUSTER");
        assert_eq!(data["requestheader-client-ca-file"], "FRONT");
        assert_eq!(data["requestheader-allowed-names"], r#"["front-proxy-client"]"#);
        assert_eq!(data["requestheader-username-headers"], r#"["X-Remote-User"]"#);
        assert_eq!(data["requestheader-group-headers"], r#"["X-Remote-Group"]"#);
        assert_eq!(data["requestheader-extra-headers-prefix"], r#"["X-Remote-Extra-"]"#);
        let cm = config_map(&data);
        assert_eq!(cm["metadata"], json!({"name": CONFIG_MAP_NAME, "namespace": "kube-system"}));
    }
}

//! Projected ServiceAccount tokens (kubelet's token manager): each `serviceAccountToken`
//! source of a pod's projected volumes gets a token from the API server's TokenRequest
//! (`serviceaccounts/{name}/token`) for the pod's ServiceAccount, bound to the pod, with the
//! source's audience and `expirationSeconds`; it is requested again once 80% of its lifetime
//! (at most 24 hours) has passed, as kubelet does, and the worker writes it into the volume.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, PostParams};

use super::config;
use crate::client::ApiClient;

/// kube's default lifetime of a projected token.
const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// A token is renewed after this much of its lifetime, or after [`MAX_AGE`] (kubelet's rule).
const REFRESH_FRACTION: f64 = 0.8;
const MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// A token file: the projected volume's name and the path in it.
pub type TokenKey = (String, String);

/// One `serviceAccountToken` projection of the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Projection {
    pub volume: String,
    pub path: String,
    pub audience: Option<String>,
    pub expiration_seconds: i64,
    /// The volume's file mode.
    pub mode: u32,
}

impl Projection {
    pub fn key(&self) -> TokenKey {
        (self.volume.clone(), self.path.clone())
    }
}

/// Every `serviceAccountToken` projection of `pod`'s volumes.
pub fn projections(pod: &Pod) -> Vec<Projection> {
    let mut out = Vec::new();
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let Some(projected) = &volume.projected else { continue };
        let mode = projected.default_mode.unwrap_or(0o644) as u32;
        for token in projected.sources.iter().flatten().filter_map(|s| s.service_account_token.as_ref()) {
            out.push(Projection {
                volume: volume.name.clone(),
                path: token.path.clone(),
                audience: token.audience.clone().filter(|a| !a.is_empty()),
                expiration_seconds: token.expiration_seconds.unwrap_or(DEFAULT_EXPIRATION_SECONDS),
                mode,
            });
        }
    }
    out
}

/// When a token issued at `issued` for `lifetime` is to be renewed.
pub fn refresh_at(issued: SystemTime, lifetime: Duration) -> SystemTime {
    issued + lifetime.mul_f64(REFRESH_FRACTION).min(MAX_AGE)
}

struct Held {
    token: String,
    refresh_at: SystemTime,
}

/// The tokens of one pod's projections.
#[derive(Default)]
pub struct Tokens {
    held: HashMap<TokenKey, Held>,
}

impl Tokens {
    /// The current token of each projection that has one.
    pub fn current(&self) -> HashMap<TokenKey, String> {
        self.held.iter().map(|(k, h)| (k.clone(), h.token.clone())).collect()
    }

    /// Requests the token of each projection of `pod` that has none or is due for renewal;
    /// returns the projections whose token changed. A failed request is an error naming it
    /// (the others are still tried; a held token stays until it is replaced).
    pub async fn refresh(&mut self, api: &ApiClient, pod: &Pod) -> (Vec<Projection>, Vec<String>) {
        let (mut renewed, mut errors) = (Vec::new(), Vec::new());
        let now = SystemTime::now();
        for projection in projections(pod) {
            if self.held.get(&projection.key()).is_some_and(|h| now < h.refresh_at) {
                continue;
            }
            match request(api, pod, &projection).await {
                Ok((token, lifetime)) => {
                    self.held.insert(projection.key(), Held { token, refresh_at: refresh_at(now, lifetime) });
                    renewed.push(projection);
                }
                Err(e) => errors.push(format!("requesting the token of volume {}: {e}", projection.volume)),
            }
        }
        (renewed, errors)
    }
}

/// A TokenRequest for the pod's ServiceAccount, bound to the pod: the token and its lifetime.
async fn request(api: &ApiClient, pod: &Pod, projection: &Projection) -> Result<(String, Duration), String> {
    let account = pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or_else(|| "default".into());
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: projection.audience.iter().cloned().collect(),
            expiration_seconds: Some(projection.expiration_seconds),
            bound_object_ref: Some(BoundObjectReference {
                kind: Some("Pod".into()),
                api_version: Some("v1".into()),
                name: Some(config::name(pod).to_string()),
                uid: Some(config::uid(pod).to_string()),
            }),
        },
        ..TokenRequest::default()
    };
    let namespace = config::namespace(pod);
    let answer = api
        .call("create token", |c| {
            let (account, request) = (&account, &request);
            async move {
                Api::<ServiceAccount>::namespaced(c, namespace)
                    .create_token_request(account, &PostParams::default(), request)
                    .await
            }
        })
        .await
        .map_err(|e| e.to_string())?;
    let token = answer.status.map(|s| s.token).filter(|t| !t.is_empty()).ok_or("the answer holds no token")?;
    let seconds = answer.spec.expiration_seconds.unwrap_or(projection.expiration_seconds);
    Ok((token, Duration::from_secs(seconds.max(0) as u64)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    #[test]
    fn token_projections_are_found_with_their_audience_lifetime_and_mode() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u-1"},
            "spec": {"containers": [], "volumes": [
                {"name": "plain", "emptyDir": {}},
                {"name": "api", "projected": {"defaultMode": 0o600, "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt"}}]}},
                {"name": "vault", "projected": {"sources": [
                    {"serviceAccountToken": {"audience": "vault", "path": "vault-token"}}]}}]}
        }))
        .unwrap();
        let found = projections(&pod);
        assert_eq!(found.len(), 2);
        assert_eq!(
            found[0],
            Projection {
                volume: "api".into(),
                path: "token".into(),
                audience: None,
                expiration_seconds: 3607,
                mode: 0o600
            }
        );
        assert_eq!(
            (found[1].audience.as_deref(), found[1].expiration_seconds, found[1].mode),
            (Some("vault"), 3600, 0o644)
        );
        assert_eq!(found[1].key(), ("vault".to_string(), "vault-token".to_string()));
    }

    #[test]
    fn tokens_are_renewed_at_80_percent_of_their_lifetime_or_after_a_day() {
        let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(refresh_at(issued, Duration::from_secs(3600)), issued + Duration::from_secs(2880));
        assert_eq!(refresh_at(issued, Duration::from_secs(600)), issued + Duration::from_secs(480));
        assert_eq!(refresh_at(issued, Duration::from_secs(7 * 24 * 3600)), issued + MAX_AGE);
    }
}

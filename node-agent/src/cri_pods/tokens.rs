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

    /// Requests the token of each projection of `pod` that has none or is due for renewal at
    /// `now`; returns the projections whose token changed, and what failed (the others are
    /// still tried; a held token stays until it is replaced).
    pub async fn refresh(&mut self, api: &ApiClient, pod: &Pod, now: SystemTime) -> (Vec<Projection>, Vec<String>) {
        let (mut renewed, mut errors) = (Vec::new(), Vec::new());
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

    use std::sync::{Arc, Mutex};

    use http_body_util::{BodyExt, Full};
    use hyper::body::{Bytes, Incoming};
    use hyper::Request;
    use serde_json::{json, Value};

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

    /// A fake API server (plain HTTP) answering TokenRequests with `t1`, `t2`, ...; what it
    /// was asked, as (path, body).
    async fn fake_api() -> (String, Arc<Mutex<Vec<(String, Value)>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let asked = Arc::new(Mutex::new(Vec::new()));
        let seen = asked.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let path = request.uri().path().to_string();
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            let mut answer: Value = serde_json::from_slice(&body).unwrap();
                            let n = {
                                let mut seen = seen.lock().unwrap();
                                seen.push((path, answer.clone()));
                                seen.len()
                            };
                            answer["status"] =
                                json!({"token": format!("t{n}"), "expirationTimestamp": "2030-01-01T00:00:00Z"});
                            let response = hyper::Response::builder()
                                .status(201)
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(answer.to_string())))
                                .unwrap();
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (url, asked)
    }

    #[tokio::test]
    async fn tokens_are_requested_for_the_pod_and_again_only_when_due() {
        let (url, asked) = fake_api().await;
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        let config = format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"{url}\"}}}}]\n\
             users: [{{name: u, user: {{}}}}]\ncontexts: [{{name: c, context: {{cluster: c, user: u}}}}]\n\
             current-context: c\n"
        );
        std::fs::write(&kubeconfig, config).unwrap();
        let api = ApiClient::from_kubeconfig(&kubeconfig, &[]).await.unwrap();
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u-1"},
            "spec": {"serviceAccountName": "robot", "containers": [], "volumes": [
                {"name": "api", "projected": {"sources": [
                    {"serviceAccountToken": {"expirationSeconds": 600, "audience": "vault", "path": "token"}}]}}]}
        }))
        .unwrap();

        let mut tokens = Tokens::default();
        let start = SystemTime::now();
        let (renewed, errors) = tokens.refresh(&api, &pod, start).await;
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(renewed.len(), 1);
        let key = ("api".to_string(), "token".to_string());
        assert_eq!(tokens.current()[&key], "t1");
        let (path, body) = asked.lock().unwrap()[0].clone();
        assert_eq!(path, "/api/v1/namespaces/shop/serviceaccounts/robot/token");
        assert_eq!(body["spec"]["audiences"], json!(["vault"]));
        assert_eq!(body["spec"]["expirationSeconds"], 600);
        assert_eq!(
            body["spec"]["boundObjectRef"],
            json!({"kind": "Pod", "apiVersion": "v1", "name": "web", "uid": "u-1"})
        );

        // Not before 80% of 600 s; then a new token.
        let (renewed, _) = tokens.refresh(&api, &pod, start + Duration::from_secs(479)).await;
        assert!(renewed.is_empty());
        assert_eq!(asked.lock().unwrap().len(), 1);
        let (renewed, _) = tokens.refresh(&api, &pod, start + Duration::from_secs(481)).await;
        assert_eq!(renewed.len(), 1);
        assert_eq!(tokens.current()[&key], "t2");
    }

    #[test]
    fn tokens_are_renewed_at_80_percent_of_their_lifetime_or_after_a_day() {
        let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(refresh_at(issued, Duration::from_secs(3600)), issued + Duration::from_secs(2880));
        assert_eq!(refresh_at(issued, Duration::from_secs(600)), issued + Duration::from_secs(480));
        assert_eq!(refresh_at(issued, Duration::from_secs(7 * 24 * 3600)), issued + MAX_AGE);
    }
}

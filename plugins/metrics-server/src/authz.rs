//! Delegated authorization, as extension API servers do it: `system:masters` may do
//! anything; anyone else is asked about with a SubjectAccessReview to the API server, the
//! answer cached for 10 s (kube's defaults for allowed and denied).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::authn::User;
use crate::client::Client;

/// How long an answer is reused.
const CACHE_TTL: Duration = Duration::from_secs(10);
/// Beyond this many cached answers, expired ones are dropped.
const CACHE_SWEEP_AT: usize = 4096;
/// The group kube's authorizers always allow.
const PRIVILEGED_GROUP: &str = "system:masters";

/// What a request does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attributes {
    /// A non-resource request (discovery, `/`): the path and the lower-case HTTP verb.
    Path { verb: String, path: String },
    /// A resource request.
    Resource { verb: String, group: String, version: String, resource: String, namespace: String, name: String },
}

impl Attributes {
    /// The apiserver's words for a refusal: `User "jane" cannot list resource "nodes" in
    /// API group "metrics.k8s.io" at the cluster scope`, and the Status details.
    pub fn forbidden(&self, user: &str, reason: &str) -> (String, Value) {
        let (message, details) = match self {
            Attributes::Path { verb, path } => {
                (format!("forbidden: User {user:?} cannot {verb} path {path:?}"), json!({}))
            }
            Attributes::Resource { verb, group, resource, namespace, name, .. } => {
                let scope = if namespace.is_empty() {
                    "at the cluster scope".to_string()
                } else {
                    format!("in the namespace {namespace:?}")
                };
                let what = format!("User {user:?} cannot {verb} resource {resource:?} in API group {group:?} {scope}");
                let subject = if name.is_empty() {
                    format!("{resource}.{group}")
                } else {
                    format!("{resource}.{group} {name:?}")
                };
                (format!("{subject} is forbidden: {what}"), json!({"name": name, "group": group, "kind": resource}))
            }
        };
        let message = if reason.is_empty() { message } else { format!("{message}: {reason}") };
        (message, details)
    }

    fn review(&self, user: &User) -> Value {
        let mut spec = json!({"user": user.name, "groups": user.groups, "extra": user.extra});
        match self {
            Attributes::Path { verb, path } => spec["nonResourceAttributes"] = json!({"verb": verb, "path": path}),
            Attributes::Resource { verb, group, version, resource, namespace, name } => {
                spec["resourceAttributes"] = json!({
                    "verb": verb, "group": group, "version": version, "resource": resource,
                    "namespace": namespace, "name": name,
                });
            }
        }
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec})
    }
}

/// An answer: allowed or not, and the authorizer's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: String,
}

/// Answers shared by every worker thread.
#[derive(Debug, Clone, Default)]
pub struct Cache(Arc<Mutex<HashMap<String, (Decision, Instant)>>>);

impl Cache {
    fn get(&self, key: &str) -> Option<Decision> {
        let cache = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        cache.get(key).filter(|(_, at)| at.elapsed() < CACHE_TTL).map(|(d, _)| d.clone())
    }

    fn put(&self, key: String, decision: Decision) {
        let mut cache = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if cache.len() >= CACHE_SWEEP_AT {
            cache.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
        }
        cache.insert(key, (decision, Instant::now()));
    }
}

/// Asks the API server (one per worker thread: its client lives there).
pub struct Authorizer {
    api: Client,
    cache: Cache,
}

impl Authorizer {
    pub fn new(api: Client, cache: Cache) -> Authorizer {
        Authorizer { api, cache }
    }

    /// May `user` do `attributes`? `Err` when the API server could not say.
    pub async fn authorize(&self, user: &User, attributes: &Attributes) -> Result<Decision, String> {
        if user.groups.iter().any(|g| g == PRIVILEGED_GROUP) {
            return Ok(Decision { allowed: true, reason: String::new() });
        }
        let review = attributes.review(user);
        let key = review["spec"].to_string();
        if let Some(decision) = self.cache.get(&key) {
            return Ok(decision);
        }
        let answer = self
            .api
            .post("/apis/authorization.k8s.io/v1/subjectaccessreviews", &review)
            .await
            .map_err(|e| e.to_string())?;
        let status = &answer["status"];
        let decision = Decision {
            allowed: status["allowed"].as_bool().unwrap_or(false) && !status["denied"].as_bool().unwrap_or(false),
            reason: status["reason"].as_str().unwrap_or("").to_string(),
        };
        self.cache.put(key, decision.clone());
        Ok(decision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(name: &str) -> Attributes {
        Attributes::Resource {
            verb: if name.is_empty() { "list" } else { "get" }.into(),
            group: "metrics.k8s.io".into(),
            version: "v1beta1".into(),
            resource: "nodes".into(),
            namespace: String::new(),
            name: name.into(),
        }
    }

    #[test]
    fn refusals_read_as_the_apiservers() {
        let (message, details) = nodes("").forbidden("jane", "");
        assert_eq!(
            message,
            r#"nodes.metrics.k8s.io is forbidden: User "jane" cannot list resource "nodes" in API group "metrics.k8s.io" at the cluster scope"#
        );
        assert_eq!(details["kind"], "nodes");
        let (message, _) = nodes("n1").forbidden("jane", "no RBAC policy matched");
        assert!(message.starts_with(r#"nodes.metrics.k8s.io "n1" is forbidden: User "jane" cannot get"#), "{message}");
        assert!(message.ends_with(": no RBAC policy matched"), "{message}");
        let pods = Attributes::Resource {
            verb: "list".into(),
            group: "metrics.k8s.io".into(),
            version: "v1beta1".into(),
            resource: "pods".into(),
            namespace: "default".into(),
            name: String::new(),
        };
        assert!(pods.forbidden("jane", "").0.ends_with(r#"in the namespace "default""#));
        let path = Attributes::Path { verb: "get".into(), path: "/apis".into() };
        assert_eq!(
            path.forbidden("system:anonymous", "").0,
            r#"forbidden: User "system:anonymous" cannot get path "/apis""#
        );
    }

    #[test]
    fn reviews_carry_the_user_and_the_attributes() {
        let user = User { name: "jane".into(), groups: vec!["devs".into()], extra: Default::default() };
        let review = nodes("n1").review(&user);
        assert_eq!(review["kind"], "SubjectAccessReview");
        assert_eq!(review["spec"]["user"], "jane");
        assert_eq!(review["spec"]["resourceAttributes"]["name"], "n1");
        assert_eq!(review["spec"]["resourceAttributes"]["verb"], "get");
    }
}

//! ServiceAccount tokens, as kube-apiserver issues and accepts them.
//!
//! - [`jwt`]: the tokens themselves (kube's claims, ES256 with the cluster's `sa.key`).
//! - [`token_request`]: `POST .../serviceaccounts/{name}/token`, a `TokenRequest` answered
//!   with a token (`kubectl create token`, the node agent's projected token volumes).
//! - [`ServiceAccountTokens::authenticate`]: a bearer token that is one of ours is the
//!   ServiceAccount's user while the ServiceAccount (and the pod or Secret it is bound to)
//!   still exists with the uid in the token; [`crate::authn`] and the TokenReview API ask it.

pub mod jwt;
pub mod token_request;

use actors::kinds::{self, ResourceKind};
use actors::{Get, KindActors};
use serde_json::Value;

use self::jwt::{Claims, JwtError, ObjectRef, Signer};
use crate::authn::UserInfo;

/// The group of every ServiceAccount, and the prefix of its namespace's group.
pub const ALL_SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";
/// A pod marked for deletion keeps its tokens valid this long (kube's grace for the
/// pod's own shutdown calls).
const DELETED_POD_GRACE: time::Duration = time::Duration::seconds(60);

/// The signer and where to look ServiceAccounts, pods and Secrets up: the API server's app
/// data (`web::Data<ServiceAccountTokens>`).
pub struct ServiceAccountTokens {
    pub signer: Signer,
    pub kinds: KindActors,
}

/// Who a ServiceAccount token authenticates, and for which of the audiences asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub user: UserInfo,
    pub audiences: Vec<String>,
}

impl ServiceAccountTokens {
    /// The user of `token` if it is a valid token of ours for one of `audiences` (the API
    /// server's when empty) whose ServiceAccount, and bound pod or Secret, still exist.
    pub async fn authenticate(&self, token: &str, audiences: &[String]) -> Result<Authenticated, JwtError> {
        let claims = self.signer.verify(token, audiences)?;
        self.still_valid(&claims).await?;
        let k = &claims.kubernetes;
        let groups =
            vec![ALL_SERVICE_ACCOUNTS_GROUP.to_string(), format!("{ALL_SERVICE_ACCOUNTS_GROUP}:{}", k.namespace)];
        let user = UserInfo::authenticated(&claims.sub, &k.serviceaccount.uid, groups);
        let wanted = if audiences.is_empty() { &self.signer.audiences } else { audiences };
        let audiences = wanted.iter().filter(|a| claims.aud.contains(a)).cloned().collect();
        Ok(Authenticated { user, audiences })
    }

    /// The objects the token names exist still, with the uids it names (kube's
    /// `validator.Validate`).
    async fn still_valid(&self, claims: &Claims) -> Result<(), JwtError> {
        let k = &claims.kubernetes;
        let account = self.lookup("serviceaccounts", &k.namespace, &k.serviceaccount).await?;
        if deleting_since(&account).is_some() {
            return Err(invalid("its ServiceAccount is being deleted"));
        }
        if let Some(secret) = &k.secret {
            if deleting_since(&self.lookup("secrets", &k.namespace, secret).await?).is_some() {
                return Err(invalid("its Secret is being deleted"));
            }
        }
        if let Some(pod) = &k.pod {
            let pod = self.lookup("pods", &k.namespace, pod).await?;
            let now = time::OffsetDateTime::now_utc();
            if deleting_since(&pod).is_some_and(|since| since + DELETED_POD_GRACE < now) {
                return Err(invalid("its pod was deleted"));
            }
        }
        Ok(())
    }

    /// The object `wanted` names, when it exists with that uid.
    async fn lookup(&self, resource: &str, namespace: &str, wanted: &ObjectRef) -> Result<Value, JwtError> {
        let found = get(&self.kinds, resource, namespace, &wanted.name)
            .await
            .map_err(|e| invalid(&format!("looking up {resource} {namespace}/{}: {e}", wanted.name)))?;
        if found.pointer("/metadata/uid").and_then(Value::as_str) != Some(wanted.uid.as_str()) {
            return Err(invalid(&format!("{resource} {namespace}/{} has another uid", wanted.name)));
        }
        Ok(found)
    }
}

fn invalid(why: &str) -> JwtError {
    JwtError::Invalid(why.to_string())
}

/// `namespace/name` of the core `resource`, from its kind actor.
pub(crate) async fn get(kinds: &KindActors, resource: &str, namespace: &str, name: &str) -> actors::ApiResult<Value> {
    let kind: &ResourceKind = kinds::find("", "v1", resource)
        .ok_or_else(|| actors::ApiError::InternalError(format!("no {resource} kind")))?;
    let actor =
        kinds.get(kind).ok_or_else(|| actors::ApiError::ServiceUnavailable(format!("no actor for {resource}")))?;
    actor
        .send(Get { namespace: Some(namespace.to_string()), name: name.to_string() })
        .await
        .map_err(|e| actors::ApiError::ServiceUnavailable(format!("{resource} actor: {e}")))?
}

/// When the object was marked for deletion, if it was.
fn deleting_since(object: &Value) -> Option<time::OffsetDateTime> {
    let stamp = object.pointer("/metadata/deletionTimestamp")?.as_str()?;
    // An unreadable stamp still says the object is going: long ago, then.
    Some(
        time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn deletion_stamps_are_read_and_their_absence_is_none() {
        assert_eq!(deleting_since(&json!({"metadata": {}})), None);
        let since = deleting_since(&json!({"metadata": {"deletionTimestamp": "2026-01-02T03:04:05Z"}}));
        assert_eq!(since.map(|t| t.unix_timestamp()), Some(1_767_323_045));
        let odd = deleting_since(&json!({"metadata": {"deletionTimestamp": "soon"}}));
        assert_eq!(odd, Some(time::OffsetDateTime::UNIX_EPOCH));
    }
}

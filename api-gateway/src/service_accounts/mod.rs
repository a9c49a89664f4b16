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
/// An object marked for deletion keeps its tokens valid until this long after its deletion
/// time (kube's `invalidIfDeletedBefore`: a terminating pod may still call the API).
const DELETION_GRACE: time::Duration = time::Duration::seconds(60);

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

    /// The objects the token names exist still, with the uids it names, and were not deleted
    /// more than [`DELETION_GRACE`] ago (kube's `validator.Validate`).
    async fn still_valid(&self, claims: &Claims) -> Result<(), JwtError> {
        let k = &claims.kubernetes;
        let named =
            [("serviceaccounts", Some(&k.serviceaccount)), ("secrets", k.secret.as_ref()), ("pods", k.pod.as_ref())];
        for (resource, wanted) in named {
            if let Some(wanted) = wanted {
                self.check(resource, &k.namespace, wanted).await?;
            }
        }
        Ok(())
    }

    /// The object `wanted` names exists with that uid, not deleted long ago.
    async fn check(&self, resource: &str, namespace: &str, wanted: &ObjectRef) -> Result<(), JwtError> {
        let what = format!("{resource} {namespace}/{}", wanted.name);
        let found = get(&self.kinds, resource, namespace, &wanted.name)
            .await
            .map_err(|e| invalid(&format!("looking up {what}: {e}")))?;
        if found.pointer("/metadata/uid").and_then(Value::as_str) != Some(wanted.uid.as_str()) {
            return Err(invalid(&format!("{what} has another uid")));
        }
        if deleting_since(&found).is_some_and(|since| since + DELETION_GRACE < time::OffsetDateTime::now_utc()) {
            return Err(invalid(&format!("{what} was deleted")));
        }
        Ok(())
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

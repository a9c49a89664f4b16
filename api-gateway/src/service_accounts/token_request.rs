//! `POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token`: an `authentication.k8s.io/v1`
//! `TokenRequest` in, the same back with `status.token` and `status.expirationTimestamp`
//! (201), as kube-apiserver's token REST storage:
//!
//! - `spec.expirationSeconds`: 3600 when absent; under 600 or over 2^32 is 422. (kube caps it
//!   only under `--service-account-max-token-expiration`, which Flotilla does not have.)
//! - `spec.audiences`: the API server's audience (the issuer) when empty.
//! - `spec.boundObjectRef`: a `v1` Pod (running as this ServiceAccount) or Secret that must
//!   exist, with the uid given if one is; the token is valid only while it exists (400 for
//!   other kinds, 404 when missing, 409 for another uid).
//!
//! Bodies are JSON, or protobuf as client-go's typed clients (`kubectl create token`) send them.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use actors::api_error::{FieldCause, Subject};
use actors::kinds::ResourceKind;
use actors::{ApiError, ApiResult};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::jwt::{subject, Claims, KubernetesClaims, ObjectRef};
use super::ServiceAccountTokens;

/// kube's `MinTokenAgeSec` and `MaxTokenAgeSec`, and the default lifetime.
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
pub const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;

/// Whether `resource/subresource` is this handler's.
pub fn handles(kind: &ResourceKind, subresource: Option<&str>) -> bool {
    kind.group.is_empty() && kind.resource == "serviceaccounts" && subresource == Some("token")
}

/// What a `TokenRequest` asks for, defaulted and validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec {
    pub audiences: Vec<String>,
    pub expiration_seconds: i64,
    pub bound: Option<BoundObject>,
}

/// `spec.boundObjectRef`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundObject {
    pub kind: String,
    pub api_version: String,
    pub name: String,
    pub uid: String,
}

/// A token and when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub token: String,
    pub expires: OffsetDateTime,
    /// The uid of the object it is bound to, if any.
    pub bound_uid: Option<String>,
}

impl TokenSpec {
    /// The spec of the posted `TokenRequest` for ServiceAccount `name`.
    pub fn parse(request: &Value, name: &str) -> ApiResult<TokenSpec> {
        if !request.is_object() {
            return Err(ApiError::BadRequest("the body is not a TokenRequest object".into()));
        }
        if let Some(kind) = request.get("kind").and_then(Value::as_str).filter(|k| !k.is_empty()) {
            if kind != "TokenRequest" {
                return Err(ApiError::BadRequest(format!("the body names kind {kind:?}, not TokenRequest")));
            }
        }
        let spec = match request.get("spec") {
            None | Some(Value::Null) => json!({}),
            Some(spec @ Value::Object(_)) => spec.clone(),
            Some(_) => return Err(ApiError::BadRequest("spec must be an object".into())),
        };
        let audiences = match spec.get("audiences") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).map(String::from).collect(),
            Some(_) => return Err(ApiError::BadRequest("spec.audiences must be a list of strings".into())),
        };
        let expiration_seconds = match spec.get("expirationSeconds") {
            None | Some(Value::Null) => DEFAULT_EXPIRATION_SECONDS,
            Some(v) => {
                v.as_i64().ok_or_else(|| ApiError::BadRequest("spec.expirationSeconds must be an integer".into()))?
            }
        };
        let why = if expiration_seconds < MIN_EXPIRATION_SECONDS {
            Some("may not specify a duration less than 10 minutes")
        } else if expiration_seconds > MAX_EXPIRATION_SECONDS {
            Some("may not specify a duration larger than 2^32 seconds")
        } else {
            None
        };
        if let Some(why) = why {
            let subject = Subject {
                group: "authentication.k8s.io",
                resource: "tokenrequests",
                kind: "TokenRequest",
                name: name.to_string(),
            };
            let cause = FieldCause::invalid_shown("spec.expirationSeconds", expiration_seconds.to_string(), why);
            return Err(ApiError::Invalid { subject, causes: vec![cause] });
        }
        let bound = spec.get("boundObjectRef").filter(|b| b.is_object()).map(|b| {
            let field = |f: &str| b.get(f).and_then(Value::as_str).unwrap_or_default().to_string();
            BoundObject {
                kind: field("kind"),
                api_version: field("apiVersion"),
                name: field("name"),
                uid: field("uid"),
            }
        });
        Ok(TokenSpec { audiences, expiration_seconds, bound })
    }
}

/// Issues a token for ServiceAccount `namespace/name` as `spec` asks, at `now`.
pub async fn issue(
    tokens: &ServiceAccountTokens,
    namespace: &str,
    name: &str,
    spec: &TokenSpec,
    now: OffsetDateTime,
) -> ApiResult<Issued> {
    let account = super::get(&tokens.kinds, "serviceaccounts", namespace, name).await?;
    let uid = |o: &Value| o.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_string();
    let mut kubernetes = KubernetesClaims {
        namespace: namespace.to_string(),
        serviceaccount: ObjectRef { name: name.to_string(), uid: uid(&account) },
        pod: None,
        secret: None,
    };
    let mut bound_uid = None;
    if let Some(bound) = &spec.bound {
        let group = bound.api_version.rsplit_once('/').map_or("", |(group, _)| group);
        let resource = match (group, bound.kind.as_str()) {
            ("", "Pod") => "pods",
            ("", "Secret") => "secrets",
            _ => {
                let gvk = format!("{}, Kind={}", bound.api_version, bound.kind);
                return Err(ApiError::BadRequest(format!("cannot bind token for object of type {gvk}")));
            }
        };
        let object = super::get(&tokens.kinds, resource, namespace, &bound.name).await?;
        if resource == "pods" && object.pointer("/spec/serviceAccountName").and_then(Value::as_str) != Some(name) {
            return Err(ApiError::BadRequest(format!(
                "cannot bind token for serviceaccount {name:?} to pod running with different serviceaccount name."
            )));
        }
        let found = uid(&object);
        if !bound.uid.is_empty() && bound.uid != found {
            return Err(ApiError::Unfulfilled {
                group: "",
                what: if resource == "pods" { "Pod" } else { "Secret" },
                name: bound.name.clone(),
                why: format!(
                    "the UID in the bound object reference ({}) does not match the UID in record. The object might have been deleted and then recreated",
                    bound.uid
                ),
            });
        }
        let reference = Some(ObjectRef { name: bound.name.clone(), uid: found.clone() });
        if resource == "pods" {
            kubernetes.pod = reference;
        } else {
            kubernetes.secret = reference;
        }
        bound_uid = Some(found);
    }
    let audiences = if spec.audiences.is_empty() { tokens.signer.audiences.clone() } else { spec.audiences.clone() };
    let issued_at = now.unix_timestamp();
    let claims = Claims {
        iss: tokens.signer.issuer.clone(),
        sub: subject(namespace, name),
        aud: audiences,
        exp: issued_at + spec.expiration_seconds,
        iat: issued_at,
        nbf: issued_at,
        jti: uuid::Uuid::new_v4().to_string(),
        kubernetes,
    };
    let token = tokens.signer.sign(&claims).map_err(|e| ApiError::InternalError(e.to_string()))?;
    let expires =
        OffsetDateTime::from_unix_timestamp(claims.exp).map_err(|e| ApiError::InternalError(e.to_string()))?;
    Ok(Issued { token, expires, bound_uid })
}

/// Serves a request for `serviceaccounts/{name}/token` in `namespace`.
pub async fn serve(
    req: &HttpRequest,
    body: web::Payload,
    (namespace, name): (&str, &str),
) -> ApiResult<(StatusCode, Value)> {
    crate::binding::post_only(req)?;
    let tokens = req
        .app_data::<web::Data<ServiceAccountTokens>>()
        .ok_or_else(|| ApiError::ServiceUnavailable("no ServiceAccount token signer".into()))?;
    let bytes = crate::binding::read_body(body).await?;
    let content_type = req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut request = if crate::protobuf::is_protobuf(content_type) {
        crate::aggregator::review_protobuf::decode(&bytes)
            .ok_or_else(|| ApiError::BadRequest("the protobuf body is not a valid TokenRequest".into()))?
    } else {
        serde_json::from_slice::<Value>(&bytes)
            .map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))?
    };
    let spec = TokenSpec::parse(&request, name)?;
    let issued = issue(tokens, namespace, name, &spec, OffsetDateTime::now_utc()).await?;
    let audiences = if spec.audiences.is_empty() { tokens.signer.audiences.clone() } else { spec.audiences };
    let expires = issued.expires.format(&Rfc3339).map_err(|e| ApiError::InternalError(e.to_string()))?;
    request["apiVersion"] = json!("authentication.k8s.io/v1");
    request["kind"] = json!("TokenRequest");
    let mut metadata = match request.get("metadata") {
        Some(meta @ Value::Object(_)) => meta.clone(),
        _ => json!({}),
    };
    metadata["name"] = json!(name);
    metadata["namespace"] = json!(namespace);
    if metadata.get("creationTimestamp").is_none() {
        metadata["creationTimestamp"] = Value::Null;
    }
    request["metadata"] = metadata;
    request["spec"]["audiences"] = json!(audiences);
    request["spec"]["expirationSeconds"] = json!(spec.expiration_seconds);
    if let Some(uid) = issued.bound_uid {
        request["spec"]["boundObjectRef"]["uid"] = json!(uid);
    } else if request["spec"].get("boundObjectRef").is_none() {
        request["spec"]["boundObjectRef"] = Value::Null;
    }
    request["status"] = json!({"token": issued.token, "expirationTimestamp": expires});
    Ok((StatusCode::CREATED, request))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn token_requests_are_defaulted_and_their_lifetimes_bounded_as_kube_does() {
        let spec = TokenSpec::parse(&json!({"kind": "TokenRequest", "spec": {}}), "robot").unwrap();
        assert_eq!(spec, TokenSpec { audiences: vec![], expiration_seconds: 3600, bound: None });

        let body = json!({"spec": {"audiences": ["vault"], "expirationSeconds": 600,
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web"}}});
        let spec = TokenSpec::parse(&body, "robot").unwrap();
        assert_eq!(spec.audiences, ["vault"]);
        assert_eq!(spec.bound.unwrap().name, "web");

        let short = TokenSpec::parse(&json!({"spec": {"expirationSeconds": 599}}), "robot").unwrap_err();
        assert_eq!(short.code(), 422);
        assert_eq!(
            short.to_string(),
            "TokenRequest.authentication.k8s.io \"robot\" is invalid: spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes"
        );
        let long = TokenSpec::parse(&json!({"spec": {"expirationSeconds": (1i64 << 32) + 1}}), "robot").unwrap_err();
        assert!(long.to_string().contains("larger than 2^32 seconds"), "{long}");
        assert_eq!(TokenSpec::parse(&json!({"kind": "Pod"}), "robot").unwrap_err().code(), 400);
        assert_eq!(TokenSpec::parse(&json!({"spec": {"expirationSeconds": "x"}}), "robot").unwrap_err().code(), 400);
        assert_eq!(TokenSpec::parse(&json!({"spec": "x"}), "robot").unwrap_err().code(), 400);
        assert_eq!(TokenSpec::parse(&json!(["x"]), "robot").unwrap_err().code(), 400);
    }
}

//! The review APIs: create-only virtual resources that answer a question and store nothing.
//! Extension servers delegate to them (`--authentication-kubeconfig`,
//! `--authorization-kubeconfig`), and kubectl asks them (`auth can-i`, `auth whoami`).
//!
//! - `authentication.k8s.io/v1` `tokenreviews`: is this bearer token valid, and whose is it?
//!   Answered by the gateway's token authenticators ([`crate::authn::token_user`]: static
//!   tokens, then ServiceAccount tokens); client certificates cannot be reviewed (they are not
//!   tokens). `selfsubjectreviews`: who am I.
//! - `authorization.k8s.io/v1` `subjectaccessreviews`, `localsubjectaccessreviews`,
//!   `selfsubjectaccessreviews`, `selfsubjectrulesreviews`: may this user do that? RBAC is
//!   not enforced yet, so authenticated users may do everything (reason `no RBAC yet`) and
//!   anonymous ones nothing.
//!
//! [`KINDS`] lists them for discovery. Other verbs on them are 405, as in kube-apiserver.

use actix_web::http::StatusCode;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use actors::api_error::{FieldCause, Subject};
use actors::kinds::ResourceKind;
use actors::{ApiError, ApiResult};
use serde_json::{json, Value};

use crate::authn::{UserInfo, ANONYMOUS_USER, UNAUTHENTICATED_GROUP};
use crate::resources::error_response;

const AUTHENTICATION: &str = "authentication.k8s.io";
const AUTHORIZATION: &str = "authorization.k8s.io";
const CREATE: &[&str] = &["create"];
/// Why every authenticated request is allowed.
pub const REASON: &str = "no RBAC yet";

const fn review(
    group: &'static str,
    resource: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
) -> ResourceKind {
    ResourceKind {
        group,
        version: "v1",
        resource,
        singular,
        kind,
        namespaced,
        verbs: CREATE,
        short_names: &[],
        categories: &[],
        subresources: &[],
    }
}

/// The review resources, as discovery lists them (by group, then name).
pub static KINDS: &[ResourceKind] = &[
    review(AUTHENTICATION, "selfsubjectreviews", "selfsubjectreview", "SelfSubjectReview", false),
    review(AUTHENTICATION, "tokenreviews", "tokenreview", "TokenReview", false),
    review(AUTHORIZATION, "localsubjectaccessreviews", "localsubjectaccessreview", "LocalSubjectAccessReview", true),
    review(AUTHORIZATION, "selfsubjectaccessreviews", "selfsubjectaccessreview", "SelfSubjectAccessReview", false),
    review(AUTHORIZATION, "selfsubjectrulesreviews", "selfsubjectrulesreview", "SelfSubjectRulesReview", false),
    review(AUTHORIZATION, "subjectaccessreviews", "subjectaccessreview", "SubjectAccessReview", false),
];

/// The group/versions of [`KINDS`], each once.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for k in KINDS {
        if !out.contains(&(k.group, k.version)) {
            out.push((k.group, k.version));
        }
    }
    out
}

/// The review resources of `group`/`version`.
pub fn resources_of<'a>(group: &'a str, version: &'a str) -> impl Iterator<Item = &'static ResourceKind> + 'a {
    KINDS.iter().filter(move |k| k.group == group && k.version == version)
}

fn kind(resource: &str) -> &'static ResourceKind {
    KINDS.iter().find(|k| k.resource == resource).unwrap_or(&KINDS[0])
}

/// A review's handler: the request and its body, the answer or a `Status`.
type Review = fn(&HttpRequest, &[u8]) -> ApiResult<HttpResponse>;

/// Registers the review routes; register them before the object routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let at = |group: &str, resource: &str| format!("/apis/{group}/v1/{resource}");
    // TokenReview looks ServiceAccounts up: the one asynchronous review.
    cfg.service(
        web::resource(at(AUTHENTICATION, "tokenreviews"))
            .route(web::post().to(|req: HttpRequest, body: web::Bytes| async move {
                token_review(&req, &body).await.unwrap_or_else(|e| error_response(&e))
            }))
            .default_service(web::to(method_not_allowed)),
    );
    let routes: [(String, Review); 5] = [
        (at(AUTHENTICATION, "selfsubjectreviews"), self_subject_review),
        (at(AUTHORIZATION, "subjectaccessreviews"), subject_access_review),
        (at(AUTHORIZATION, "namespaces/{namespace}/localsubjectaccessreviews"), local_subject_access_review),
        (at(AUTHORIZATION, "selfsubjectaccessreviews"), self_subject_access_review),
        (at(AUTHORIZATION, "selfsubjectrulesreviews"), self_subject_rules_review),
    ];
    for (path, handler) in routes {
        cfg.service(
            web::resource(path)
                .route(web::post().to(move |req: HttpRequest, body: web::Bytes| async move {
                    handler(&req, &body).unwrap_or_else(|e| error_response(&e))
                }))
                .default_service(web::to(method_not_allowed)),
        );
    }
}

async fn method_not_allowed() -> HttpResponse {
    let message = "the server does not allow this method on the requested resource";
    error_response(&ApiError::MethodNotSupported(message.into()))
}

/// The posted review as JSON (a protobuf body, as client-go's typed clients send, decoded
/// by [`super::review_protobuf`]).
fn read_review(req: &HttpRequest, body: &[u8], kind: &ResourceKind) -> ApiResult<Value> {
    let content_type = req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    let decoded = if crate::protobuf::is_protobuf(content_type) {
        super::review_protobuf::decode(body).ok_or_else(|| bad_request("the protobuf body is not a valid review"))
    } else {
        serde_json::from_slice::<Value>(body).map_err(|e| bad_request(&format!("the body is not valid JSON: {e}")))
    };
    match decoded {
        Ok(review @ Value::Object(_)) => match review.get("kind").and_then(Value::as_str) {
            Some(k) if !k.is_empty() && k != kind.kind => {
                Err(bad_request(&format!("the body names kind {k:?}, not {}", kind.kind)))
            }
            _ => Ok(review),
        },
        Ok(_) => Err(bad_request("the body is not a JSON object")),
        Err(e) => Err(e),
    }
}

fn bad_request(message: &str) -> ApiError {
    ApiError::BadRequest(message.to_string())
}

/// `201 Created` with the review, its `status` filled in.
fn answer(kind: &ResourceKind, review: &Value, status: Value) -> HttpResponse {
    let metadata = match review.get("metadata") {
        Some(meta @ Value::Object(_)) => meta.clone(),
        _ => json!({}),
    };
    let mut out = json!({
        "kind": kind.kind,
        "apiVersion": kind.group_version(),
        "metadata": metadata,
        "spec": review.get("spec").cloned().unwrap_or_else(|| json!({})),
        "status": status,
    });
    if out["metadata"].get("creationTimestamp").is_none() {
        out["metadata"]["creationTimestamp"] = Value::Null;
    }
    HttpResponse::build(StatusCode::CREATED).content_type("application/json").body(out.to_string())
}

fn user_json(user: &UserInfo) -> Value {
    let mut out = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        out["uid"] = json!(user.uid);
    }
    out
}

/// The caller, as authentication found it (anonymous when it found no one).
fn caller(req: &HttpRequest) -> UserInfo {
    req.extensions().get::<UserInfo>().cloned().unwrap_or_else(|| UserInfo {
        name: ANONYMOUS_USER.into(),
        uid: String::new(),
        groups: vec![UNAUTHENTICATED_GROUP.into()],
    })
}

async fn token_review(req: &HttpRequest, body: &[u8]) -> ApiResult<HttpResponse> {
    let kind = kind("tokenreviews");
    let review = read_review(req, body, kind)?;
    let token = review.pointer("/spec/token").and_then(Value::as_str).unwrap_or("");
    if token.is_empty() {
        return Err(bad_request("token is required for TokenReview in authentication"));
    }
    let asked: Vec<String> = review
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
        .unwrap_or_default();
    let status = match crate::authn::token_user(req, token, &asked).await {
        Some((user, audiences)) => {
            let mut status = json!({"authenticated": true, "user": user_json(&user)});
            if !audiences.is_empty() {
                status["audiences"] = json!(audiences);
            }
            status
        }
        None => json!({"user": {}}),
    };
    Ok(answer(kind, &review, status))
}

fn self_subject_review(req: &HttpRequest, body: &[u8]) -> ApiResult<HttpResponse> {
    let kind = kind("selfsubjectreviews");
    let review = read_review(req, body, kind)?;
    Ok(answer(kind, &review, json!({"userInfo": user_json(&caller(req))})))
}

/// kube's validation of a `SubjectAccessReviewSpec` (`subject`: also user or groups).
fn validate(kind: &ResourceKind, spec: &Value, subject: bool) -> ApiResult<()> {
    let object = |field: &str| spec.get(field).filter(|v| v.is_object()).is_some();
    let mut causes = Vec::new();
    match (object("resourceAttributes"), object("nonResourceAttributes")) {
        (true, true) => causes.push(FieldCause::invalid_shown(
            "spec.nonResourceAttributes",
            "{}".into(),
            "cannot be specified in combination with resourceAttributes",
        )),
        (false, false) => causes.push(FieldCause::invalid_shown(
            "spec.resourceAttributes",
            "\"null\"".into(),
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
        _ => {}
    }
    if subject {
        let user = spec.get("user").and_then(Value::as_str).unwrap_or("");
        let groups = spec.get("groups").and_then(Value::as_array).is_some_and(|g| !g.is_empty());
        if user.is_empty() && !groups {
            causes.push(FieldCause::invalid("spec.user", user, "at least one of user or group must be specified"));
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid { subject: Subject::of(kind, ""), causes })
    }
}

/// The decision for a subject: allowed when authenticated.
pub fn decide(user: &str, groups: &[String]) -> Value {
    let anonymous = user == ANONYMOUS_USER || groups.iter().any(|g| g == UNAUTHENTICATED_GROUP);
    if anonymous || (user.is_empty() && groups.is_empty()) {
        json!({"allowed": false, "reason": format!("{REASON}: anonymous requests are not allowed")})
    } else {
        json!({"allowed": true, "reason": REASON})
    }
}

/// The user and groups a (local) subject access review asks about.
fn subject(spec: &Value) -> (String, Vec<String>) {
    let user = spec.get("user").and_then(Value::as_str).unwrap_or("").to_string();
    let groups = spec.get("groups").and_then(Value::as_array);
    (user, groups.map(|g| g.iter().filter_map(Value::as_str).map(String::from).collect()).unwrap_or_default())
}

fn subject_access_review(req: &HttpRequest, body: &[u8]) -> ApiResult<HttpResponse> {
    let kind = kind("subjectaccessreviews");
    let review = read_review(req, body, kind)?;
    let spec = review.get("spec").cloned().unwrap_or(Value::Null);
    validate(kind, &spec, true)?;
    let (user, groups) = subject(&spec);
    Ok(answer(kind, &review, decide(&user, &groups)))
}

fn local_subject_access_review(req: &HttpRequest, body: &[u8]) -> ApiResult<HttpResponse> {
    let kind = kind("localsubjectaccessreviews");
    let review = read_review(req, body, kind)?;
    let spec = review.get("spec").cloned().unwrap_or(Value::Null);
    validate(kind, &spec, true)?;
    if spec.get("nonResourceAttributes").is_some() {
        let cause =
            FieldCause::invalid_shown("spec.nonResourceAttributes", "{}".into(), "disallowed on this kind of request");
        return Err(ApiError::Invalid { subject: Subject::of(kind, ""), causes: vec![cause] });
    }
    let namespace = req.match_info().get("namespace").unwrap_or("");
    let asked = spec.pointer("/resourceAttributes/namespace").and_then(Value::as_str).unwrap_or("");
    if asked != namespace {
        return Err(bad_request(&format!("spec.resourceAttributes.namespace must match namespace: {namespace}")));
    }
    let (user, groups) = subject(&spec);
    Ok(answer(kind, &review, decide(&user, &groups)))
}

fn self_subject_access_review(req: &HttpRequest, body: &[u8]) -> ApiResult<HttpResponse> {
    let kind = kind("selfsubjectaccessreviews");
    let review = read_review(req, body, kind)?;
    validate(kind, review.get("spec").unwrap_or(&Value::Null), false)?;
    let user = caller(req);
    Ok(answer(kind, &review, decide(&user.name, &user.groups)))
}

fn self_subject_rules_review(req: &HttpRequest, body: &[u8]) -> ApiResult<HttpResponse> {
    let kind = kind("selfsubjectrulesreviews");
    let review = read_review(req, body, kind)?;
    let user = caller(req);
    let status = if decide(&user.name, &user.groups)["allowed"] == true {
        json!({
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false,
        })
    } else {
        json!({"resourceRules": [], "nonResourceRules": [], "incomplete": false})
    };
    Ok(answer(kind, &review, status))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use actix_web::test::{call_service, init_service, read_body, TestRequest};
    use actix_web::App;

    use super::*;
    use crate::authn::Tokens;

    async fn post(path: &str, body: Value, user: Option<UserInfo>) -> (u16, Value) {
        let tokens = Tokens::parse("secret,jane,u-1,\"dev,ops\"\n").unwrap();
        let app = init_service(App::new().app_data(web::Data::new(tokens)).configure(configure)).await;
        let req = TestRequest::post().uri(path).set_json(body).to_request();
        if let Some(user) = user {
            req.extensions_mut().insert(user);
        }
        let resp = call_service(&app, req).await;
        let code = resp.status().as_u16();
        (code, serde_json::from_slice(&read_body(resp).await).unwrap())
    }

    fn admin() -> Option<UserInfo> {
        Some(UserInfo::authenticated("admin", "", vec!["system:masters".into()]))
    }

    #[actix_rt::test]
    async fn token_reviews_name_the_tokens_user_and_refuse_empty_tokens() {
        let path = "/apis/authentication.k8s.io/v1/tokenreviews";
        let (code, review) = post(path, json!({"kind": "TokenReview", "spec": {"token": "secret"}}), admin()).await;
        assert_eq!(code, 201);
        assert_eq!(
            (&review["kind"], &review["apiVersion"]),
            (&json!("TokenReview"), &json!("authentication.k8s.io/v1"))
        );
        assert_eq!(
            review["status"],
            json!({"authenticated": true, "user": {"username": "jane", "uid": "u-1", "groups": ["dev", "ops", "system:authenticated"]}})
        );
        let (_, review) = post(path, json!({"spec": {"token": "wrong"}}), admin()).await;
        assert_eq!(review["status"], json!({"user": {}}));
        let (code, status) = post(path, json!({"spec": {}}), admin()).await;
        assert_eq!(
            (code, status["message"].as_str().unwrap()),
            (400, "token is required for TokenReview in authentication")
        );
    }

    #[actix_rt::test]
    async fn access_reviews_allow_authenticated_subjects_without_rbac() {
        let path = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
        let spec = json!({"user": "jane", "groups": ["system:authenticated"], "resourceAttributes": {"verb": "get", "resource": "pods"}});
        let (code, review) = post(path, json!({"spec": spec}), admin()).await;
        assert_eq!((code, &review["status"]), (201, &json!({"allowed": true, "reason": "no RBAC yet"})));
        let anonymous = json!({"user": "system:anonymous", "nonResourceAttributes": {"path": "/", "verb": "get"}});
        let (_, review) = post(path, json!({"spec": anonymous}), admin()).await;
        assert_eq!(review["status"]["allowed"], false);
        let (code, status) = post(path, json!({"spec": {"resourceAttributes": {"verb": "get"}}}), admin()).await;
        assert_eq!(code, 422);
        assert!(
            status["message"]
                .as_str()
                .unwrap()
                .contains("spec.user: Invalid value: \"\": at least one of user or group must be specified"),
            "{status}"
        );

        let path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
        let (code, review) = post(path, json!({"spec": {"resourceAttributes": {"verb": "list"}}}), admin()).await;
        assert_eq!((code, &review["status"]["allowed"]), (201, &json!(true)));
        let (code, _) = post(path, json!({"spec": {}}), admin()).await;
        assert_eq!(code, 422);

        let path = "/apis/authorization.k8s.io/v1/namespaces/team-a/localsubjectaccessreviews";
        let spec = json!({"user": "jane", "resourceAttributes": {"namespace": "team-b", "verb": "get"}});
        let (code, _) = post(path, json!({"spec": spec}), admin()).await;
        assert_eq!(code, 400, "the namespace must match the path's");
    }

    #[actix_rt::test]
    async fn self_reviews_answer_with_the_caller_and_other_verbs_are_not_allowed() {
        let (code, review) = post("/apis/authentication.k8s.io/v1/selfsubjectreviews", json!({}), admin()).await;
        assert_eq!(code, 201);
        assert_eq!(
            review["status"]["userInfo"],
            json!({"username": "admin", "groups": ["system:masters", "system:authenticated"]})
        );
        let (_, review) = post(
            "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
            json!({"spec": {"namespace": "default"}}),
            admin(),
        )
        .await;
        assert_eq!(review["status"]["resourceRules"][0]["verbs"], json!(["*"]));

        let app = init_service(App::new().configure(configure)).await;
        let resp =
            call_service(&app, TestRequest::get().uri("/apis/authentication.k8s.io/v1/tokenreviews").to_request())
                .await;
        assert_eq!(resp.status(), 405);
    }

    #[test]
    fn review_kinds_are_create_only_and_grouped_for_discovery() {
        assert_eq!(group_versions(), [(AUTHENTICATION, "v1"), (AUTHORIZATION, "v1")]);
        assert_eq!(resources_of(AUTHORIZATION, "v1").count(), 4);
        assert!(KINDS.iter().all(|k| k.verbs == ["create"]));
    }
}

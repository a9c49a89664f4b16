//! Kubernetes `Status` errors as this server answers them (the apimachinery messages).

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde_json::{json, Value};

/// A failure `Status` with `code`, `reason`, `message` and optional `details`.
pub fn failure(code: StatusCode, reason: &str, message: &str, details: Option<Value>) -> HttpResponse {
    let mut status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    if let Some(details) = details {
        status["details"] = details;
    }
    HttpResponse::build(code).content_type("application/json").body(status.to_string())
}

/// `NotFound` for `name` of `resource` in `group` (`group` empty: a core resource):
/// `nodemetrics.metrics.k8s.io "n1" not found`.
pub fn not_found(group: &str, resource: &str, name: &str) -> HttpResponse {
    let qualified = if group.is_empty() { resource.to_string() } else { format!("{resource}.{group}") };
    failure(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("{qualified} {name:?} not found"),
        Some(json!({"name": name, "group": group, "kind": resource})),
    )
}

/// A path this server does not serve.
pub fn no_route() -> HttpResponse {
    failure(StatusCode::NOT_FOUND, "NotFound", "the server could not find the requested resource", Some(json!({})))
}

/// 401, as kube answers a request that failed authentication.
pub fn unauthorized() -> HttpResponse {
    failure(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized", None)
}

pub fn forbidden(message: &str, details: Value) -> HttpResponse {
    failure(StatusCode::FORBIDDEN, "Forbidden", message, Some(details))
}

pub fn bad_request(message: &str) -> HttpResponse {
    failure(StatusCode::BAD_REQUEST, "BadRequest", message, None)
}

pub fn internal(message: &str) -> HttpResponse {
    failure(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalError",
        &format!("Internal error occurred: {message}"),
        Some(json!({"causes": [{"message": message}]})),
    )
}

/// 405 for a verb the resource does not have (`watch`, `create`, ...).
pub fn method_not_supported(group: &str, resource: &str, verb: &str) -> HttpResponse {
    failure(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        &format!("{verb} is not supported on resources of kind \"{resource}.{group}\""),
        Some(json!({"group": group, "kind": resource})),
    )
}

//! Kubernetes `Status` responses: how every failure is reported to clients.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;

/// A `Status` object with `status: Failure`, as kube-apiserver sends it.
pub fn failure(code: StatusCode, reason: &str, message: &str) -> HttpResponse {
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    HttpResponse::build(code).content_type("application/json").body(body.to_string())
}

/// 401 for a request with no identity, or a bad one.
pub fn unauthorized() -> HttpResponse {
    failure(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized")
}

/// 404 for a path nothing serves.
pub fn not_found(path: &str) -> HttpResponse {
    failure(StatusCode::NOT_FOUND, "NotFound", &format!("the server could not find the requested resource ({path})"))
}

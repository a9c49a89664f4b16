//! `/livez`, `/readyz` and `/metrics`: the member's health and metrics.

use actix::Addr;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use actors::{GetHealth, Health, HealthActor};

use crate::metrics_recorder::PrometheusHandle;

/// Content type of the Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4";

/// Mounts the three endpoints on an app (so the API server can serve them too).
pub fn configure(cfg: &mut web::ServiceConfig, health: Addr<HealthActor>, prometheus: PrometheusHandle) {
    cfg.app_data(web::Data::new(health))
        .app_data(web::Data::new(prometheus))
        .route("/livez", web::get().to(livez))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics_text));
}

async fn livez(req: HttpRequest, health: web::Data<Addr<HealthActor>>) -> HttpResponse {
    let (ok, reason) = match current(&health).await {
        Ok(h) => (h.live, h.reason),
        Err(reason) => (false, reason),
    };
    report("livez", ok, &reason, is_verbose(&req))
}

async fn readyz(req: HttpRequest, health: web::Data<Addr<HealthActor>>) -> HttpResponse {
    let (ok, reason) = match current(&health).await {
        Ok(h) => (h.ready, h.reason),
        Err(reason) => (false, reason),
    };
    report("readyz", ok, &reason, is_verbose(&req))
}

async fn metrics_text(prometheus: web::Data<PrometheusHandle>) -> HttpResponse {
    HttpResponse::Ok().content_type(PROMETHEUS_TEXT).body(prometheus.render())
}

/// The latest health, or why the health actor could not answer.
async fn current(health: &Addr<HealthActor>) -> Result<Health, String> {
    health.send(GetHealth).await.map_err(|e| format!("health actor unavailable: {e}"))
}

/// True when the query string names `verbose` (`?verbose`, `?verbose=1`, `?a=b&verbose`).
fn is_verbose(req: &HttpRequest) -> bool {
    req.query_string().split('&').any(|pair| pair.split('=').next() == Some("verbose"))
}

fn report(endpoint: &str, ok: bool, reason: &str, verbose: bool) -> HttpResponse {
    let (status, body) = check_body(endpoint, ok, reason, verbose);
    HttpResponse::build(status).content_type("text/plain; charset=utf-8").body(body)
}

/// Status and body of a health endpoint with one check, `store`, in kube-apiserver's format:
/// `ok` (or the reason) when terse; `[+]store ok` / `[-]store failed: reason` and a verdict
/// line when verbose.
fn check_body(endpoint: &str, ok: bool, reason: &str, verbose: bool) -> (StatusCode, String) {
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = match (verbose, ok) {
        (false, true) => "ok".to_string(),
        (false, false) => reason.to_string(),
        (true, true) => format!("[+]store ok\n{endpoint} check passed\n"),
        (true, false) => format!("[-]store failed: {reason}\n{endpoint} check failed\n"),
    };
    (status, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terse_checks_answer_ok_or_the_reason() {
        assert_eq!(check_body("readyz", true, "", false), (StatusCode::OK, "ok".into()));
        assert_eq!(
            check_body("readyz", false, "no leader elected", false),
            (StatusCode::SERVICE_UNAVAILABLE, "no leader elected".into())
        );
    }

    #[test]
    fn verbose_checks_list_each_check_then_the_verdict() {
        assert_eq!(check_body("readyz", true, "", true).1, "[+]store ok\nreadyz check passed\n");
        assert_eq!(
            check_body("livez", false, "store error: x", true),
            (StatusCode::SERVICE_UNAVAILABLE, "[-]store failed: store error: x\nlivez check failed\n".into())
        );
    }
}

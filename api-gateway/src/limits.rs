//! kube-apiserver's request limits, as middleware over the resource paths: at most so many
//! requests in flight, reads and writes counted apart (`--max-requests-inflight` 400,
//! `--max-mutating-requests-inflight` 200; beyond: 429 with `Retry-After: 1`), and a deadline
//! per request (the `timeout` parameter, at most and by default 60 s; past it: 504).
//! Watches and other long-running requests are neither counted nor cut off.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpResponse};

use actors::ApiError;

/// The longest a request may take, and what it gets without a `timeout` parameter.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);

/// The limits and the requests in flight under them.
#[derive(Debug, Clone)]
pub struct Limits {
    max_reads: usize,
    max_writes: usize,
    reads: Arc<AtomicUsize>,
    writes: Arc<AtomicUsize>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::new(400, 200)
    }
}

impl Limits {
    pub fn new(max_reads: usize, max_writes: usize) -> Self {
        Limits { max_reads, max_writes, reads: Arc::default(), writes: Arc::default() }
    }
}

/// Counts one request in flight while it lives.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether a request runs for as long as the client wants: watches, logs that follow,
/// exec/attach/port-forward/proxy.
fn long_running(req: &ServiceRequest) -> bool {
    let query = req.query_string();
    let flag = |name: &str| query.split('&').any(|p| p == format!("{name}=true") || p == format!("{name}=1"));
    let path = req.path();
    flag("watch")
        || flag("follow")
        || path.contains("/watch/")
        || ["/exec", "/attach", "/portforward", "/proxy"]
            .iter()
            .any(|s| path.ends_with(s) || path.contains(&format!("{s}/")))
}

/// A Go duration as kube's `timeout` parameter takes it: `30s`, `1m`, `1m30s`, `500ms`.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            "ns" => 0.000_000_001,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += Duration::try_from_secs_f64(number * seconds).ok()?;
    }
    Some(total)
}

/// The deadline of a request: its `timeout` parameter, capped at [`MAX_TIMEOUT`].
fn deadline(req: &ServiceRequest) -> Result<Duration, ApiError> {
    let timeout = req.query_string().split('&').find_map(|p| p.strip_prefix("timeout="));
    match timeout {
        None | Some("") => Ok(MAX_TIMEOUT),
        Some(raw) => {
            let raw = percent_decode(raw);
            let parsed = parse_go_duration(&raw)
                .ok_or_else(|| ApiError::BadRequest(format!("invalid timeout specified in the request URL: {raw}")))?;
            Ok(parsed.min(MAX_TIMEOUT))
        }
    }
}

fn percent_decode(s: &str) -> String {
    s.replace("%C2%B5", "µ").replace("%c2%b5", "µ")
}

fn error(e: &ApiError) -> HttpResponse {
    let mut response = crate::resources::error_response(e);
    if matches!(e, ApiError::TooManyRequests) {
        response
            .headers_mut()
            .insert(actix_web::http::header::RETRY_AFTER, actix_web::http::header::HeaderValue::from_static("1"));
    }
    response
}

/// Middleware: the limits of [`Limits`] (from app data; none if absent) on the request.
pub async fn limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let limits = req.app_data::<web::Data<Limits>>().cloned();
    let api = req.path().starts_with("/api/") || req.path().starts_with("/apis/");
    let Some(limits) = limits.filter(|_| api && !long_running(&req)) else {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    };
    let deadline = match deadline(&req) {
        Ok(deadline) => deadline,
        Err(e) => return Ok(req.into_response(error(&e))),
    };
    let write = !matches!(req.method().as_str(), "GET" | "HEAD" | "OPTIONS");
    let (counter, max) = if write { (&limits.writes, limits.max_writes) } else { (&limits.reads, limits.max_reads) };
    if counter.fetch_add(1, Ordering::SeqCst) >= max {
        counter.fetch_sub(1, Ordering::SeqCst);
        metrics::counter!("apiserver_dropped_requests_total", "request_kind" => if write { "mutating" } else { "readOnly" })
            .increment(1);
        return Ok(req.into_response(error(&ApiError::TooManyRequests)));
    }
    let _in_flight = InFlight(counter.clone());
    // The handler keeps the deadline (see [`within_deadline`]): a response needs the request,
    // which actix lets only one owner hold.
    req.extensions_mut().insert(Deadline(deadline));
    next.call(req).await.map(ServiceResponse::map_into_boxed_body)
}

/// The deadline [`limit`] gave a request.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(pub Duration);

/// Runs a handler's work under the request's deadline, if it has one: 504 past it.
pub async fn within_deadline(
    req: &actix_web::HttpRequest,
    work: impl std::future::Future<Output = HttpResponse>,
) -> HttpResponse {
    let deadline = req.extensions().get::<Deadline>().copied();
    match deadline {
        None => work.await,
        Some(Deadline(d)) => match actix_web::rt::time::timeout(d, work).await {
            Ok(response) => response,
            Err(_) => error(&ApiError::Timeout),
        },
    }
}

#[cfg(test)]
mod tests {
    use actix_web::middleware::from_fn;
    use actix_web::{test as web_test, App};

    use super::*;

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_go_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("soon"), None);
        assert_eq!(parse_go_duration("10"), None);
    }

    async fn slow(req: actix_web::HttpRequest) -> HttpResponse {
        let work = async {
            actix_web::rt::time::sleep(Duration::from_millis(300)).await;
            HttpResponse::Ok().finish()
        };
        within_deadline(&req, work).await
    }

    #[actix_web::test]
    async fn requests_past_the_limit_get_429_and_slow_ones_504() {
        let app = web_test::init_service(
            App::new()
                .app_data(web::Data::new(Limits::new(1, 1)))
                .wrap(from_fn(limit))
                .route("/api/v1/configmaps", web::get().to(slow)),
        )
        .await;
        let first = web_test::call_service(&app, web_test::TestRequest::get().uri("/api/v1/configmaps").to_request());
        let second = web_test::call_service(&app, web_test::TestRequest::get().uri("/api/v1/configmaps").to_request());
        let (first, second) = futures::join!(first, second);
        let mut codes = [first.status().as_u16(), second.status().as_u16()];
        codes.sort();
        assert_eq!(codes, [200, 429]);
        let refused = if first.status() == 429 { first } else { second };
        assert_eq!(refused.headers().get("retry-after").unwrap(), "1");
        let body: serde_json::Value = web_test::read_body_json(refused).await;
        assert_eq!(body["reason"], "TooManyRequests");

        let timed_out = web_test::call_service(
            &app,
            web_test::TestRequest::get().uri("/api/v1/configmaps?timeout=50ms").to_request(),
        )
        .await;
        assert_eq!(timed_out.status().as_u16(), 504);
        let body: serde_json::Value = web_test::read_body_json(timed_out).await;
        assert_eq!(body["reason"], "Timeout");

        // Watches are neither limited nor cut off; a bad timeout is a 400.
        let watch = web_test::call_service(
            &app,
            web_test::TestRequest::get().uri("/api/v1/configmaps?watch=true&timeout=50ms").to_request(),
        )
        .await;
        assert_eq!(watch.status().as_u16(), 200);
        let bad =
            web_test::call_service(&app, web_test::TestRequest::get().uri("/api/v1/configmaps?timeout=x").to_request())
                .await;
        assert_eq!(bad.status().as_u16(), 400);
    }
}

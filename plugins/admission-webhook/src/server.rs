//! The HTTPS server: `POST /validate` and `POST /mutate` answer AdmissionReviews with the
//! decisions of [`crate::review`]; `GET /healthz` says it is up.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use crate::review::{self, AdmissionRequest, AdmissionResponse, ReviewIn, ReviewOut, REVIEW_VERSIONS};

/// The largest AdmissionReview read: an object and its old version, each up to kube's
/// 3 MiB request limit.
pub const MAX_REVIEW_BYTES: usize = 8 * 1024 * 1024;

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The certificate or key file is missing or not PEM.
    #[error("reading {path}: {source}")]
    Pem { path: String, source: pem::Error },
    /// The certificate file holds no certificate.
    #[error("{0} holds no PEM certificate")]
    NoCertificate(String),
    /// rustls refused the certificate or key (e.g. a key that does not match).
    #[error("TLS settings: {0}")]
    Rustls(#[from] rustls::Error),
    /// The listen address cannot be bound, or the server failed.
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
}

/// A `Result` with this module's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// What the handlers need to decide.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The highest `spec.requestsPerSecond` allowed.
    pub max_rps: u64,
    /// How long to wait before answering a review (to exercise the API server's timeouts).
    pub delay: Duration,
}

/// TLS 1.2 and 1.3 (ring) with the PEM certificate chain at `cert` and the key at `key`.
pub fn tls_config(cert: &Path, key: &Path) -> Result<ServerConfig> {
    let pem_error = |path: &Path| {
        let path = path.display().to_string();
        move |source| Error::Pem { path, source }
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(pem_error(cert))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(pem_error(cert))?;
    if chain.is_empty() {
        return Err(Error::NoCertificate(cert.display().to_string()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(pem_error(key))?;
    let config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(config)
}

/// Adds the routes to an actix-web app; the server and the tests share it.
pub fn configure(settings: Settings) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(settings))
            .app_data(web::PayloadConfig::new(MAX_REVIEW_BYTES))
            .route("/validate", web::post().to(validate))
            .route("/mutate", web::post().to(mutate))
            .route("/healthz", web::get().to(|| async { HttpResponse::Ok().body("ok") }));
    }
}

/// Serves on `listen` with `tls` until SIGINT or SIGTERM.
pub async fn serve(listen: &str, tls: ServerConfig, settings: Settings) -> Result<()> {
    let server = HttpServer::new(move || App::new().configure(configure(settings.clone())))
        // The API server opens a connection per call: without it the answer waits behind the
        // TLS 1.3 session tickets for the client's delayed ACK (~40 ms).
        .tcp_nodelay(true)
        .bind_rustls_0_23(listen, tls)?;
    for addr in server.addrs() {
        tracing::info!(%addr, "serving AdmissionReviews on /validate and /mutate");
    }
    server.run().await?;
    Ok(())
}

async fn validate(settings: web::Data<Settings>, body: web::Bytes) -> HttpResponse {
    let max_rps = settings.max_rps;
    answer(&settings, &body, "validate", |request| review::validate(request, max_rps)).await
}

async fn mutate(settings: web::Data<Settings>, body: web::Bytes) -> HttpResponse {
    answer(&settings, &body, "mutate", review::mutate).await
}

/// Reads the review in `body`, decides, waits the configured delay and answers; a body that
/// is not an AdmissionReview we can answer gets 400 (the API server then applies the
/// webhook's `failurePolicy`).
async fn answer(
    settings: &Settings,
    body: &[u8],
    path: &str,
    decide: impl FnOnce(&AdmissionRequest) -> AdmissionResponse,
) -> HttpResponse {
    let review = match serde_json::from_slice::<ReviewIn>(body) {
        Ok(review) => review,
        Err(e) => return bad_request(path, format!("the body is not an AdmissionReview: {e}")),
    };
    if review.kind != "AdmissionReview" || !REVIEW_VERSIONS.contains(&review.api_version.as_str()) {
        let got = format!("{}, Kind={}", review.api_version, review.kind);
        return bad_request(
            path,
            format!("expected an AdmissionReview of {}, got {got}", REVIEW_VERSIONS.join(" or ")),
        );
    }
    let Some(request) = review.request else {
        return bad_request(path, "the AdmissionReview has no request".into());
    };
    let response = decide(&request);
    tracing::info!(
        path,
        uid = %request.uid,
        operation = %request.operation,
        kind = %format_args!("{}/{}, Kind={}", request.kind.group, request.kind.version, request.kind.kind),
        object = %format_args!("{}/{}", request.namespace, request.name),
        allowed = response.allowed,
        patched = response.patch.is_some(),
        reason = response.status.as_ref().map(|s| s.message.as_str()).unwrap_or(""),
        "reviewed"
    );
    if !settings.delay.is_zero() {
        actix_web::rt::time::sleep(settings.delay).await;
    }
    HttpResponse::Ok().json(ReviewOut { api_version: review.api_version, kind: "AdmissionReview", response })
}

fn bad_request(path: &str, message: String) -> HttpResponse {
    tracing::warn!(path, %message, "refused a malformed review");
    HttpResponse::BadRequest().content_type("text/plain; charset=utf-8").body(message)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use actix_web::test::{call_and_read_body_json, call_service, init_service, TestRequest};
    use serde_json::{json, Value};

    use super::*;

    fn settings() -> Settings {
        Settings { max_rps: 1000, delay: Duration::ZERO }
    }

    fn review(version: &str, spec: Value) -> Value {
        json!({
            "apiVersion": version,
            "kind": "AdmissionReview",
            "request": {
                "uid": "abc", "kind": {"group": "beta.kuar.com", "version": "v1", "kind": "LoadTest"},
                "operation": "CREATE", "namespace": "default", "name": "load",
                "object": {"apiVersion": "beta.kuar.com/v1", "kind": "LoadTest", "spec": spec},
            }
        })
    }

    #[actix_web::test]
    async fn validate_answers_a_review_of_the_same_version_echoing_the_uid() {
        let app = init_service(App::new().configure(configure(settings()))).await;
        for version in REVIEW_VERSIONS {
            let req = TestRequest::post()
                .uri("/validate")
                .set_json(review(version, json!({"requestsPerSecond": 5000})))
                .to_request();
            let out: Value = call_and_read_body_json(&app, req).await;
            assert_eq!(out["apiVersion"], version);
            assert_eq!(out["kind"], "AdmissionReview");
            assert_eq!(out["response"]["uid"], "abc");
            assert_eq!(out["response"]["allowed"], false);
            assert_eq!(out["response"]["status"]["code"], 403);
        }
    }

    #[actix_web::test]
    async fn mutate_answers_with_a_json_patch() {
        let app = init_service(App::new().configure(configure(settings()))).await;
        let req = TestRequest::post().uri("/mutate").set_json(review("admission.k8s.io/v1", json!({}))).to_request();
        let out: Value = call_and_read_body_json(&app, req).await;
        assert_eq!(out["response"]["allowed"], true);
        assert_eq!(out["response"]["patchType"], "JSONPatch");
        assert!(out["response"]["patch"].is_string());
    }

    #[actix_web::test]
    async fn a_body_that_is_not_an_admission_review_gets_400() {
        let app = init_service(App::new().configure(configure(settings()))).await;
        let bodies = [
            json!({"apiVersion": "v1", "kind": "ConfigMap"}),
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}),
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"kind": {}}}),
        ];
        for body in bodies {
            let req = TestRequest::post().uri("/validate").set_json(&body).to_request();
            let response = call_service(&app, req).await;
            assert_eq!(response.status(), 400, "{body}");
        }
    }

    #[actix_web::test]
    async fn healthz_is_ok() {
        let app = init_service(App::new().configure(configure(settings()))).await;
        let response = call_service(&app, TestRequest::get().uri("/healthz").to_request()).await;
        assert!(response.status().is_success());
    }

    #[test]
    fn tls_settings_load_a_pem_pair_and_name_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&key).unwrap();
        let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        tls_config(&cert_path, &key_path).unwrap();

        let missing = dir.path().join("missing.crt");
        let error = tls_config(&missing, &key_path).unwrap_err().to_string();
        assert!(error.contains("missing.crt"), "{error}");
        std::fs::write(&missing, "not pem").unwrap();
        let error = tls_config(&missing, &key_path).unwrap_err().to_string();
        assert!(error.contains("holds no PEM certificate"), "{error}");
    }
}

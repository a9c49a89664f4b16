//! The member's HTTP servers: the API server over HTTPS with authentication ([`serve`]), and
//! the plain-HTTP health and metrics endpoints for members that do not serve the API yet
//! ([`serve_health_http`]).

use std::net::SocketAddr;

use actix::Addr;
use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use actors::{HealthActor, KindActors};

use crate::aggregator::{self, Aggregator};
use crate::authn::{self, Tokens};
use crate::kubelet_proxy::client::KubeletClient;
use crate::kubelet_proxy::{self, KubeletProxy};
use crate::metrics_recorder::PrometheusHandle;
use crate::pki::Pki;
use crate::service_accounts::jwt::{self, Signer};
use crate::service_accounts::ServiceAccountTokens;
use crate::tls::{self, TlsError};
use crate::{discovery, health_endpoints, openapi, resources, status, version};

/// Errors starting a server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The front proxy's certificates could not be made.
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
    #[error("binding {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    /// The client towards kubelets cannot be made from the kubelet client certificate.
    #[error("the kubelet client: {0}")]
    KubeletClient(#[from] crate::upstream::ProxyError),
    /// The ServiceAccount token signing key is not usable.
    #[error(transparent)]
    ServiceAccountKey(#[from] crate::service_accounts::jwt::JwtError),
}

/// Binds `bind` (port 0 picks a free port) and returns the HTTPS API server, not yet awaited,
/// with the address it bound. It serves with `pki`'s serving certificate, verifies client
/// certificates against `pki`'s CA, accepts the bearer `tokens` and ServiceAccount tokens
/// signed with `pki`'s `sa.key`, and answers `/livez`, `/readyz`, `/version` (open to
/// anonymous clients), `/metrics`, discovery (`/api`, `/apis`, ...), the OpenAPI documents
/// (`/openapi/v2`, `/openapi/v3/...`) and the object verbs, sent to `kinds`; the
/// group/versions of non-local APIServices go to their extension servers ([`aggregator`]); a
/// pod's logs, exec, attach and port-forward go to its node's kubelet ([`kubelet_proxy`]).
/// Await or spawn the server on an actix system; stop it with its handle.
pub fn serve(
    bind: SocketAddr,
    pki: &Pki,
    tokens: Tokens,
    health: Addr<HealthActor>,
    kinds: KindActors,
    prometheus: PrometheusHandle,
) -> Result<(Server, SocketAddr), ServeError> {
    let tls = tls::server_config(pki)?;
    // The availability actors run on this (the caller's) arbiter; the proxy in the workers.
    let aggregator = web::Data::new(Aggregator::start(pki, kinds.clone())?);
    let tokens = web::Data::new(tokens);
    let signer = Signer::new(&pki.service_account_key, jwt::DEFAULT_ISSUER)?;
    let sa_tokens = web::Data::new(ServiceAccountTokens { signer, kinds: kinds.clone() });
    let limits = web::Data::new(crate::limits::Limits::default());
    let kubelet = KubeletProxy::new(kinds.clone(), KubeletClient::new(&pki.kubelet_client)?);
    let server = HttpServer::new(move || {
        let (health, prometheus) = (health.clone(), prometheus.clone());
        App::new()
            .app_data(tokens.clone())
            .app_data(sa_tokens.clone())
            .app_data(limits.clone())
            .app_data(aggregator.clone())
            .wrap(from_fn(aggregator::route))
            .wrap(from_fn(crate::limits::limit))
            .wrap(from_fn(authn::authenticate))
            .wrap(from_fn(count_requests))
            .configure(|cfg| health_endpoints::configure(cfg, health, prometheus))
            .route("/version", web::get().to(version::version))
            .configure(discovery::configure)
            .configure(openapi::configure)
            .configure(aggregator::reviews::configure)
            .configure(|cfg| kubelet_proxy::configure(cfg, kubelet.clone()))
            .configure(|cfg| resources::configure(cfg, kinds.clone()))
            .default_service(web::to(not_found))
    })
    .on_connect(authn::on_connect)
    .workers(1)
    .disable_signals()
    // Answers go out at once, not after the client's delayed ACK (tens of ms on new connections).
    .tcp_nodelay(true)
    .bind_rustls_0_23(bind, tls)
    .map_err(|source| ServeError::Bind { addr: bind, source })?;
    let addr = first_addr(&server.addrs(), bind)?;
    tracing::info!(%addr, "API server listening (HTTPS)");
    Ok((server.run(), addr))
}

/// Like [`serve`], but plain HTTP, no authentication, and only `/livez`, `/readyz`, `/metrics`.
pub fn serve_health_http(
    bind: SocketAddr,
    health: Addr<HealthActor>,
    prometheus: PrometheusHandle,
) -> Result<(Server, SocketAddr), ServeError> {
    let server = HttpServer::new(move || {
        let (health, prometheus) = (health.clone(), prometheus.clone());
        App::new().wrap(from_fn(count_requests)).configure(|cfg| health_endpoints::configure(cfg, health, prometheus))
    })
    .workers(1)
    .disable_signals()
    .bind(bind)
    .map_err(|source| ServeError::Bind { addr: bind, source })?;
    let addr = first_addr(&server.addrs(), bind)?;
    tracing::info!(%addr, "health and metrics endpoints listening (plain HTTP)");
    Ok((server.run(), addr))
}

fn first_addr(addrs: &[SocketAddr], bind: SocketAddr) -> Result<SocketAddr, ServeError> {
    addrs
        .first()
        .copied()
        .ok_or_else(|| ServeError::Bind { addr: bind, source: std::io::Error::other("bound no address") })
}

/// Middleware: counts requests by route pattern and status code.
async fn count_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let path = req.match_pattern().unwrap_or_else(|| "other".into());
    let response = next.call(req).await?;
    let code = response.status().as_u16().to_string();
    metrics::counter!("flotilla_http_requests_total", "path" => path, "code" => code).increment(1);
    Ok(response)
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    status::not_found(req.path())
}

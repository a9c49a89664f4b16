//! `flotilla-metrics-server`: an aggregated API server for `metrics.k8s.io/v1beta1`, what
//! `kubectl top` and the HorizontalPodAutoscaler read. Like metrics-server, it scrapes each
//! Node's kubelet resource metrics endpoint, rates CPU between two scrapes, and serves
//! `NodeMetrics` and `PodMetrics` behind the aggregation layer. It speaks only the public
//! Kubernetes API; no control-plane crate is linked.
//!
//! Where to start: [`run`] wires it up. The scrape path: [`scraper`] (list Nodes and Pods,
//! fetch each kubelet) -> [`prometheus`] (decode the text) -> [`store`] (last two points,
//! rates). The serving path: [`api::dispatch`] -> [`authn`] (front-proxy request headers)
//! -> [`authz`] (SubjectAccessReview) -> [`objects`] (the JSON). Support: [`kubeconfig`],
//! [`client`] (awc), [`tls`], [`selector`], [`format`] (quantities, durations, times),
//! [`status`] (errors).

pub mod api;
pub mod authn;
pub mod authz;
pub mod client;
pub mod format;
pub mod kubeconfig;
pub mod objects;
pub mod prometheus;
pub mod scraper;
pub mod selector;
pub mod status;
pub mod store;
pub mod tls;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpServer};

use crate::authn::RequestHeader;
use crate::client::Connector;

/// Where the request-header settings are published for extension servers.
const AUTHENTICATION_CONFIG_MAP: &str = "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication";
/// How long to wait at start for that ConfigMap (the API server may be starting too).
const CONFIG_MAP_WAIT: Duration = Duration::from_secs(60);

/// Command-line flags (metrics-server's names are accepted as aliases).
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "flotilla-metrics-server",
    version,
    about = "Serves metrics.k8s.io/v1beta1 from kubelet resource metrics"
)]
pub struct Args {
    /// Kubeconfig to reach the API server; absent: the in-cluster ServiceAccount.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Serving certificate (PEM); absent: a self-signed one (register with insecureSkipTLSVerify).
    #[arg(long, alias = "tls-cert-file", requires = "key")]
    pub cert: Option<PathBuf>,
    /// Serving key (PEM).
    #[arg(long, alias = "tls-private-key-file", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Address to serve HTTPS on.
    #[arg(long, default_value = "0.0.0.0:4443")]
    pub listen: String,
    /// CA that signs front-proxy client certificates; absent: read from the
    /// kube-system/extension-apiserver-authentication ConfigMap.
    #[arg(long, alias = "requestheader-client-ca-file")]
    pub requestheader_client_ca: Option<PathBuf>,
    /// Common names a front proxy may have (with --requestheader-client-ca; empty: any).
    #[arg(long, value_delimiter = ',')]
    pub requestheader_allowed_names: Vec<String>,
    /// How often to scrape the kubelets.
    #[arg(long, alias = "metric-resolution", default_value = "15s", value_parser = parse_duration)]
    pub scrape_interval: Duration,
    /// Do not verify kubelets' serving certificates.
    #[arg(long)]
    pub kubelet_insecure_tls: bool,
    /// CA of kubelets' serving certificates; absent: the API server's CA from the kubeconfig.
    #[arg(long, alias = "kubelet-certificate-authority")]
    pub kubelet_ca: Option<PathBuf>,
    /// Kubelet port for Nodes that publish none in status.daemonEndpoints.
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,
    /// Node address types to reach kubelets by, most preferred first.
    #[arg(long, value_delimiter = ',', default_value = "Hostname,InternalDNS,InternalIP,ExternalDNS,ExternalIP")]
    pub kubelet_preferred_address_types: Vec<String>,
    /// The most one kubelet scrape may take (also capped at 90% of the interval).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub kubelet_request_timeout: Duration,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kubeconfig(#[from] kubeconfig::Error),
    #[error(transparent)]
    Tls(#[from] tls::Error),
    /// A file named by a flag could not be read.
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// The request-header CA could not be learned from the API server.
    #[error("reading the extension-apiserver-authentication ConfigMap: {0}")]
    RequestHeader(String),
    /// The listener could not be bound, or the server failed.
    #[error("serving on {address}: {source}")]
    Serve { address: String, source: std::io::Error },
}

/// A Go-style duration: `15s`, `500ms`, `1m30s`, `2h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().map_err(|_| format!("invalid duration {text:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            unit => return Err(format!("invalid duration {text:?}: unknown unit {unit:?}")),
        };
        total +=
            Duration::try_from_secs_f64(number * seconds).map_err(|e| format!("invalid duration {text:?}: {e}"))?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

fn read(path: &PathBuf) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Read { path: path.clone(), source })
}

/// The request-header settings: from the flags, or the ConfigMap (waiting for it a while).
async fn request_header(args: &Args, api: &client::Client) -> Result<RequestHeader, Error> {
    if let Some(path) = &args.requestheader_client_ca {
        let pem = String::from_utf8_lossy(&read(path)?).into_owned();
        return Ok(RequestHeader::new(pem, args.requestheader_allowed_names.clone()));
    }
    let deadline = Instant::now() + CONFIG_MAP_WAIT;
    loop {
        let why = match api.get(AUTHENTICATION_CONFIG_MAP).await {
            Ok(cm) => match RequestHeader::from_config_map(&cm) {
                Some(config) => return Ok(config),
                None => "it has no requestheader-client-ca-file".to_string(),
            },
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(Error::RequestHeader(why));
        }
        tracing::info!("waiting for the extension-apiserver-authentication ConfigMap: {why}");
        actix_rt::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Starts scraping and serving; returns when the server stops (SIGTERM, SIGINT).
pub async fn run(args: Args) -> Result<(), Error> {
    let connection = match &args.kubeconfig {
        Some(path) => kubeconfig::load(path)?,
        None => kubeconfig::in_cluster()?,
    };
    let api = Connector::api(&connection, Duration::from_secs(10))?;
    let request_header = request_header(&args, &api.client()).await?;

    let (cert_pem, key_pem) = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => (read(cert)?, read(key)?),
        _ => {
            tracing::warn!("no --cert/--key: serving a self-signed certificate");
            let names = ["localhost".to_string(), "metrics-server.kube-system.svc".to_string()];
            let (cert, key) = tls::self_signed(&names)?;
            (cert.into_bytes(), key.into_bytes())
        }
    };
    let serving = tls::server(&cert_pem, &key_pem, request_header.client_ca_pem.as_bytes())?;

    let scrape_timeout = args.kubelet_request_timeout.min(args.scrape_interval.mul_f64(0.9));
    let kubelet_ca = match &args.kubelet_ca {
        Some(path) => Some(read(path)?),
        None => connection.ca_pem.clone(),
    };
    let kubelet_tls = tls::client(kubelet_ca.as_deref(), args.kubelet_insecure_tls, &connection.credentials)?;
    let kubelets = Connector::new(String::new(), kubelet_tls, &connection.credentials, scrape_timeout);

    let state = scraper::state(args.scrape_interval);
    let options = scraper::Options {
        interval: args.scrape_interval,
        kubelet_port: args.kubelet_port,
        address_types: args.kubelet_preferred_address_types.clone(),
        timeout: scrape_timeout,
    };
    actix_rt::spawn(scraper::run(api.client(), kubelets.client(), options, state.clone()));

    let context = web::Data::new(api::Context {
        state,
        request_header,
        health: api::Health { started: Instant::now(), interval: args.scrape_interval, scrape_timeout },
    });
    let cache = authz::Cache::default();
    let server = HttpServer::new(move || {
        // The authorizer's client lives on this worker's thread.
        let authorizer = web::Data::new(authz::Authorizer::new(api.client(), cache.clone()));
        App::new().app_data(context.clone()).app_data(authorizer).default_service(web::to(api::dispatch))
    })
    .on_connect(authn::on_connect)
    .workers(2)
    .shutdown_timeout(5)
    .bind_rustls_0_23(args.listen.as_str(), serving)
    .map_err(|source| Error::Serve { address: args.listen.clone(), source })?;
    tracing::info!(listen = args.listen, interval = ?args.scrape_interval, "serving metrics.k8s.io/v1beta1");
    server.run().await.map_err(|source| Error::Serve { address: args.listen.clone(), source })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn durations_read_like_go() {
        assert_eq!(parse_duration("15s").unwrap(), Duration::from_secs(15));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("15").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5d").is_err());
    }
}

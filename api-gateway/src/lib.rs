//! Flotilla's API gateway: the HTTP face of a control-plane member.
//!
//! It will serve the Kubernetes REST API (authn -> authz -> admission -> the kind actors in
//! `actors`). Today it serves the operational endpoints:
//!
//! - [`health_endpoints`]: `/livez`, `/readyz` (with `?verbose`, as kube-apiserver) and
//!   `/metrics`, answered from the `actors::HealthActor` and the Prometheus recorder.
//! - [`metrics_recorder`]: installs the process-wide Prometheus recorder behind `/metrics`.
//!
//! Start at [`health_endpoints::serve`].

pub mod health_endpoints;
pub mod metrics_recorder;

pub use health_endpoints::{configure, serve};
pub use metrics_recorder::{install_prometheus, MetricsError, PrometheusHandle};

//! An example Kubernetes admission webhook for the LoadTest custom kind (group
//! `beta.kuar.com`), answering AdmissionReview `v1` (and `v1beta1`) over HTTPS.
//!
//! Crate map:
//! - [`review`]: the AdmissionReview messages and the two decisions, plain functions:
//!   [`review::validate`] refuses `spec.requestsPerSecond` over a limit (403),
//!   [`review::mutate`] defaults `spec.scheme` to `https` with a JSON Patch.
//! - [`server`]: the actix-web HTTPS server (`/validate`, `/mutate`, `/healthz`) and its TLS
//!   settings from PEM files.
//!
//! The binary `loadtest-webhook` (`src/main.rs`) parses flags and calls [`server::serve`].
//! It depends on no control-plane crate: it could run against any kube-apiserver.

pub mod review;
pub mod server;

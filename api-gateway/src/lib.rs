//! Flotilla's API gateway: the HTTPS face of a control-plane member.
//!
//! It will serve the Kubernetes REST API (authn -> authz -> admission -> the kind actors in
//! `actors`). Today it serves, over TLS with authentication:
//!
//! - [`pki`]: the cluster CA, the serving certificate, the admin client certificate and the
//!   kubelet client certificate under `DATA_DIR/pki/`, made on first start; [`kubeconfig`]
//!   writes the admin kubeconfig.
//! - [`tls`] and [`authn`]: rustls settings (client certificates optional, verified against the
//!   CA) and the request's identity (client certificate, static bearer token, or anonymous:
//!   401 except on `/livez`, `/readyz`, `/version`).
//! - [`health_endpoints`]: `/livez`, `/readyz` (with `?verbose`, as kube-apiserver) and
//!   `/metrics`, answered from the `actors::HealthActor` and the Prometheus recorder;
//!   [`version`]: `/version`; [`status`]: Kubernetes `Status` error bodies.
//! - [`discovery`]: `/api`, `/api/v1`, `/apis`, `/apis/{group}[/{version}]` (legacy
//!   discovery) and aggregated discovery v2, from the registry `actors::kinds`.
//! - [`openapi`]: `/openapi/v3` (index and one OpenAPI 3.0 document per group/version) and
//!   `/openapi/v2` (Swagger 2.0, JSON only), from `actors::schemas`: kubectl `explain`, `apply`
//!   and server-side field validation read them.
//! - [`binding`]: the `pods/binding` (the scheduler's bind) and `pods/eviction` (delete
//!   within the pod's disruption budget) subresources, routed from [`resources`].
//! - [`service_accounts`]: ServiceAccount tokens: the `serviceaccounts/token` subresource
//!   (`TokenRequest`), ES256 JWTs signed with `pki`'s `sa.key`, and their authentication.
//! - [`resources`]: the object verbs (get, list, create, update, delete) under `/api/v1` and
//!   `/apis/{group}/{version}`, sent to the `actors::KindActors`; [`conversion`]: custom
//!   objects converted between versions by their CRD's conversion webhook (`ConversionReview`).
//! - [`aggregator`]: the aggregation layer: requests for the group/versions of non-local
//!   APIServices proxied to extension API servers (front-proxy client certificate, caller in
//!   `X-Remote-*` headers), the availability actors, the local APIServices, the
//!   `extension-apiserver-authentication` ConfigMap, and the TokenReview/SubjectAccessReview APIs.
//! - [`kubelet_proxy`]: a pod's `log`, `exec`, `attach` and `portforward` subresources, sent
//!   on to the kubelet of its node (logs streamed, WebSocket upgrades tunnelled) with the API
//!   server's kubelet client certificate.
//! - [`upstream`]: the HTTP/1.1-over-TLS client and the relay (streamed bodies, WebSocket
//!   tunnel) the aggregator and the kubelet proxy share.
//! - [`webhook_client`]: POST JSON to a webhook's `clientConfig` (URL or Service, TLS verified
//!   against its `caBundle`, timeouts, kube's error words), for conversion and admission webhooks.
//! - [`admission_webhooks`]: Mutating- and ValidatingWebhookConfigurations watched and called
//!   (`AdmissionReview`), an admission plugin appended to the kind actors' chain.
//! - [`limits`]: requests in flight (429 beyond) and per-request deadlines (504).
//! - [`protobuf`]: protobuf request bodies (kubectl's imperative commands) decoded into JSON.
//! - [`tables`]: server-side `Table` responses (kubectl's columns) for gets, lists and watches.
//! - [`metrics_recorder`]: installs the process-wide Prometheus recorder behind `/metrics`.
//!
//! Start at [`server::serve`].

pub mod admission_webhooks;
pub mod aggregator;
pub mod authn;
pub mod binding;
pub mod conversion;
pub mod discovery;
pub mod health_endpoints;
pub mod kubeconfig;
pub mod kubelet_proxy;
pub mod limits;
pub mod metrics_recorder;
pub mod openapi;
pub mod pki;
pub mod protobuf;
pub mod resources;
pub mod server;
pub mod service_accounts;
pub mod status;
pub mod tables;
pub mod tls;
pub mod upstream;
pub mod version;
pub mod webhook_client;

pub use authn::{AuthnError, Tokens, UserInfo};
pub use health_endpoints::configure;
pub use metrics_recorder::{install_prometheus, MetricsError, PrometheusHandle};
pub use pki::{Pki, PkiError};
pub use server::{serve, serve_health_http, ServeError};

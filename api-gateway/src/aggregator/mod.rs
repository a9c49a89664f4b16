//! The aggregation layer (kube-aggregator): API groups served by extension API servers,
//! registered with `apiregistration.k8s.io/v1` APIServices.
//!
//! An APIService names a group/version and either nothing (a *local* one: this server serves
//! it; one exists for every built-in and custom group/version) or a Service: requests under
//! `/apis/{group}/{version}` then go to that service's endpoints. Where to start:
//!
//! - [`Aggregator`]: what this server knows of the non-local APIServices (their spec,
//!   transport, availability and cached discovery), shared by the proxy, discovery and the
//!   availability actors; [`route`] is the middleware that sends their requests on, before
//!   any other route sees them ([`forward`]: streaming bodies, watches, WebSocket upgrades;
//!   [`proxy`]: the TLS client with the front proxy's certificate).
//! - [`availability`]: one actor per APIService checks its service, endpoints and discovery
//!   and writes its `Available` condition; the controller also keeps the local APIServices
//!   and the extension servers' ConfigMap ([`front_proxy`]).
//! - [`groups`]: the aggregated groups as discovery serves them.
//! - [`reviews`]: TokenReview and (Self)SubjectAccessReview, for extension servers that
//!   delegate authentication and authorization back to this server ([`review_protobuf`]:
//!   their protobuf bodies).
//!
//! Not done: the extension servers' OpenAPI documents are not merged into `/openapi`;
//! upgrades other than WebSocket (SPDY) cannot be tunnelled through actix-web.

pub mod availability;
pub mod forward;
pub mod front_proxy;
pub mod groups;
pub mod proxy;
pub mod review_protobuf;
pub mod reviews;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock};

use actix::Addr;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use actors::KindActors;
use serde_json::Value;

use self::availability::{AvailabilityController, Nudge};
use self::front_proxy::FrontProxy;
use self::proxy::{ProxyError, ServiceRef, Transport};
use crate::pki::{Pki, PkiError};

/// The `Available` condition of an APIService.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub available: bool,
    /// `Local`, `Passed`, `ServiceNotFound`, `ServicePortError`, `EndpointsNotFound`,
    /// `MissingEndpoints`, `FailedDiscoveryCheck`.
    pub reason: &'static str,
    pub message: String,
}

/// What an APIService's spec says, read leniently (fields that do not parse are absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiServiceSpec {
    pub group: String,
    pub version: String,
    /// `None`: a local APIService.
    pub service: Option<ServiceRef>,
    /// Base64 PEM, as the object holds it.
    pub ca_bundle: Option<String>,
    pub insecure_skip_tls_verify: bool,
    pub group_priority_minimum: i64,
    pub version_priority: i64,
}

impl ApiServiceSpec {
    /// The spec of an APIService object; an error when it names no version.
    pub fn parse(obj: &Value) -> Result<ApiServiceSpec, String> {
        let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
        let text = |v: &Value, field: &str| v.get(field).and_then(Value::as_str).unwrap_or("").to_string();
        let number = |field: &str| spec.get(field).and_then(Value::as_i64).unwrap_or(0);
        let (group, version) = (text(&spec, "group"), text(&spec, "version"));
        if version.is_empty() {
            return Err("spec.version is required".into());
        }
        let service = match spec.get("service") {
            Some(service @ Value::Object(_)) => Some(ServiceRef {
                namespace: text(service, "namespace"),
                name: text(service, "name"),
                port: service
                    .get("port")
                    .and_then(Value::as_u64)
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p > 0)
                    .unwrap_or(443),
            }),
            _ => None,
        };
        Ok(ApiServiceSpec {
            group,
            version,
            service,
            ca_bundle: spec.get("caBundle").and_then(Value::as_str).filter(|b| !b.is_empty()).map(String::from),
            insecure_skip_tls_verify: spec.get("insecureSkipTLSVerify").and_then(Value::as_bool).unwrap_or(false),
            group_priority_minimum: number("groupPriorityMinimum"),
            version_priority: number("versionPriority"),
        })
    }
}

/// A non-local APIService as this server serves it.
#[derive(Debug, Clone)]
pub struct Remote {
    pub name: String,
    pub spec: ApiServiceSpec,
    /// Its TLS settings, or why they cannot be made.
    pub transport: Result<Transport, ProxyError>,
    /// The last check's verdict; `None` until the first check (requests get 503 till then).
    pub condition: Option<Condition>,
    /// Its `APIResourceList` from the last check that passed.
    pub discovery: Option<Arc<Value>>,
}

impl Remote {
    pub fn available(&self) -> bool {
        self.condition.as_ref().is_some_and(|c| c.available)
    }
}

/// The non-local APIServices, shared (cheap to clone) by the proxy, discovery and the
/// availability controller.
#[derive(Clone)]
pub struct Aggregator(Arc<Shared>);

struct Shared {
    remotes: RwLock<BTreeMap<String, Remote>>,
    actors: KindActors,
    front_proxy: FrontProxy,
    cluster_ca_pem: String,
    controller: OnceLock<Addr<AvailabilityController>>,
}

impl Aggregator {
    /// An aggregator with no APIServices and no controller (tests; see [`Aggregator::start`]).
    pub fn new(pki: &Pki, actors: KindActors) -> Result<Aggregator, PkiError> {
        let front_proxy = front_proxy::for_cluster(pki)?;
        Ok(Aggregator(Arc::new(Shared {
            remotes: RwLock::default(),
            actors,
            front_proxy,
            cluster_ca_pem: pki.ca.cert_pem.clone(),
            controller: OnceLock::new(),
        })))
    }

    /// An aggregator and its availability controller, started on the current actix arbiter.
    pub fn start(pki: &Pki, actors: KindActors) -> Result<Aggregator, PkiError> {
        let aggregator = Aggregator::new(pki, actors)?;
        let controller = actix::Actor::start(AvailabilityController::new(aggregator.clone()));
        let _ = aggregator.0.controller.set(controller);
        Ok(aggregator)
    }

    pub fn actors(&self) -> &KindActors {
        &self.0.actors
    }

    pub fn front_proxy(&self) -> &FrontProxy {
        &self.0.front_proxy
    }

    pub fn cluster_ca_pem(&self) -> &str {
        &self.0.cluster_ca_pem
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Remote>> {
        self.0.remotes.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Remote>> {
        self.0.remotes.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers (or changes) the non-local APIService `name`; whether its spec changed (its
    /// verdict is then forgotten until the next check).
    pub fn upsert(&self, name: &str, spec: ApiServiceSpec) -> bool {
        let mut remotes = self.write();
        if remotes.get(name).is_some_and(|r| r.spec == spec) {
            return false;
        }
        let transport = match &spec.service {
            Some(service) => Transport::new(
                service,
                spec.ca_bundle.as_deref(),
                spec.insecure_skip_tls_verify,
                &self.0.front_proxy.client,
            ),
            None => Err(ProxyError::Config("a local APIService has no service".into())),
        };
        let remote = Remote { name: name.to_string(), spec, transport, condition: None, discovery: None };
        remotes.insert(name.to_string(), remote);
        true
    }

    /// Forgets the APIService `name` (deleted, or now local).
    pub fn remove(&self, name: &str) {
        self.write().remove(name);
    }

    /// Records the verdict of a check of APIService `name` as it was (`spec`), and the
    /// discovery document it read when it passed; `false` (nothing recorded) when the
    /// APIService is gone or has changed since.
    pub fn record(&self, name: &str, spec: &ApiServiceSpec, condition: Condition, discovery: Option<Value>) -> bool {
        let mut remotes = self.write();
        let Some(remote) = remotes.get_mut(name).filter(|r| &r.spec == spec) else { return false };
        remote.condition = Some(condition);
        if let Some(discovery) = discovery {
            remote.discovery = Some(Arc::new(discovery));
        }
        true
    }

    pub fn remote(&self, name: &str) -> Option<Remote> {
        self.read().get(name).cloned()
    }

    /// The non-local APIService serving `group`/`version`, if there is one.
    pub fn serving(&self, group: &str, version: &str) -> Option<Remote> {
        self.read().values().find(|r| r.spec.group == group && r.spec.version == version).cloned()
    }

    /// Every non-local APIService.
    pub fn remotes(&self) -> Vec<Remote> {
        self.read().values().cloned().collect()
    }

    /// Asks for a check of APIService `name` now (after a request to it failed).
    pub fn nudge(&self, name: &str) {
        if let Some(controller) = self.0.controller.get() {
            controller.do_send(Nudge(name.to_string()));
        }
    }
}

/// The group and version of a path under `/apis/{group}/{version}`.
pub fn group_version(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/apis/")?;
    let mut parts = rest.splitn(3, '/');
    let (group, version) = (parts.next()?, parts.next()?);
    (!group.is_empty() && !version.is_empty()).then_some((group, version))
}

/// Middleware (`from_fn(aggregator::route)`): requests under the group/version of a
/// non-local APIService go to its service ([`forward::forward`]); all others go on. Reads
/// the [`Aggregator`] from the app data (none: nothing is aggregated).
pub async fn route(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let target = req.app_data::<web::Data<Aggregator>>().and_then(|aggregator| {
        let (group, version) = group_version(req.path())?;
        aggregator.serving(group, version).map(|remote| (aggregator.clone(), remote))
    });
    let Some((aggregator, remote)) = target else {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    };
    let (http_req, payload) = req.into_parts();
    let response = forward::forward(&aggregator, remote, &http_req, payload).await;
    Ok(ServiceResponse::new(http_req, response))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    #[test]
    fn paths_under_a_group_version_name_it() {
        assert_eq!(group_version("/apis/metrics.example.com/v1"), Some(("metrics.example.com", "v1")));
        assert_eq!(
            group_version("/apis/metrics.example.com/v1/namespaces/a/widgets"),
            Some(("metrics.example.com", "v1"))
        );
        assert_eq!(group_version("/apis/metrics.example.com"), None);
        assert_eq!(group_version("/apis/metrics.example.com/"), None);
        assert_eq!(group_version("/api/v1/pods"), None);
    }

    #[test]
    fn api_service_specs_read_service_references_with_kubes_defaults() {
        let spec = ApiServiceSpec::parse(&json!({"spec": {
            "group": "metrics.example.com", "version": "v1",
            "service": {"namespace": "kube-system", "name": "metrics"},
            "caBundle": "Q0E=", "groupPriorityMinimum": 100, "versionPriority": 10,
        }}))
        .unwrap();
        assert_eq!(
            spec,
            ApiServiceSpec {
                group: "metrics.example.com".into(),
                version: "v1".into(),
                service: Some(ServiceRef { namespace: "kube-system".into(), name: "metrics".into(), port: 443 }),
                ca_bundle: Some("Q0E=".into()),
                insecure_skip_tls_verify: false,
                group_priority_minimum: 100,
                version_priority: 10,
            }
        );
        let local = ApiServiceSpec::parse(&json!({"spec": {"group": "apps", "version": "v1"}})).unwrap();
        assert_eq!(local.service, None);
        assert!(ApiServiceSpec::parse(&json!({"spec": {"group": "apps"}})).is_err());
        let port = json!({"spec": {"version": "v1", "service": {"namespace": "a", "name": "b", "port": 8443}}});
        assert_eq!(ApiServiceSpec::parse(&port).unwrap().service.unwrap().port, 8443);
    }

    #[test]
    fn the_registry_keeps_a_verdict_until_the_spec_changes() {
        let dir = tempfile::tempdir().unwrap();
        let pki = crate::pki::load_or_create(dir.path(), &[]).unwrap();
        let aggregator = Aggregator::new(&pki, KindActors::default()).unwrap();
        let spec = ApiServiceSpec::parse(&json!({"spec": {
            "group": "metrics.example.com", "version": "v1", "insecureSkipTLSVerify": true,
            "service": {"namespace": "kube-system", "name": "metrics"},
        }}))
        .unwrap();
        assert!(aggregator.upsert("v1.metrics.example.com", spec.clone()));
        assert!(!aggregator.serving("metrics.example.com", "v1").unwrap().available(), "unknown until checked");
        let passed = Condition { available: true, reason: "Passed", message: "all checks passed".into() };
        assert!(aggregator.record("v1.metrics.example.com", &spec, passed, Some(json!({"resources": []}))));
        assert!(!aggregator.upsert("v1.metrics.example.com", spec.clone()), "unchanged");
        let remote = aggregator.serving("metrics.example.com", "v1").unwrap();
        assert!(remote.available() && remote.discovery.is_some() && remote.transport.is_ok());
        assert!(aggregator.upsert("v1.metrics.example.com", ApiServiceSpec { version_priority: 5, ..spec }));
        assert!(!aggregator.remote("v1.metrics.example.com").unwrap().available());
        aggregator.remove("v1.metrics.example.com");
        assert!(aggregator.serving("metrics.example.com", "v1").is_none());
    }
}

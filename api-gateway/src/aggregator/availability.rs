//! The availability of APIServices, as kube-aggregator's `AvailableConditionController`,
//! and the objects the aggregator keeps: the local APIServices and the extension servers'
//! ConfigMap.
//!
//! [`AvailabilityController`] watches APIServices (and Services and Endpoints, to check
//! again when they change). It registers each non-local APIService with the [`Aggregator`]
//! and runs one [`Checker`] actor per such APIService, which every [`CHECK_EVERY`] (and
//! when nudged) runs [`check`]: the service exists, listens on the port, has a ready
//! address, and its server answers `GET /apis/{group}/{version}` with a 2xx (whose
//! `APIResourceList` discovery then serves); the verdict is the APIService's `Available`
//! condition (reasons `ServiceNotFound`, `ServicePortError`, `EndpointsNotFound`,
//! `MissingEndpoints`, `FailedDiscoveryCheck`, `Passed`). Local APIServices are `Local`
//! and always available; one exists for every served group/version (built-in: label
//! `kube-aggregator.kubernetes.io/automanaged: onstart`; custom resources': `true`, deleted
//! with their last CRD version). The controller also (re)publishes
//! `kube-system/extension-apiserver-authentication` ([`super::front_proxy`]).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use actix::{
    Actor, ActorContext, ActorFutureExt, Addr, AsyncContext, Context, Handler, MailboxError, Message, StreamHandler,
    WrapFuture,
};
use actors::kinds::{self, ResourceKind};
use actors::{
    ApiError, ApiResult, Create, Delete, FieldValidation, Get, KindActors, Part, Patch, PatchKind, Watch, WatchEvent,
};
use futures::StreamExt;
use http_body_util::{BodyExt, Limited};
use hyper::header::{ACCEPT, HOST};
use serde_json::{json, Value};

use super::front_proxy::{self, GROUP_HEADER, USER_HEADER};
use super::proxy::{self, ServiceRef, Transport};
use super::{reviews, Aggregator, ApiServiceSpec, Condition, Remote};

/// How often each non-local APIService is checked.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);
/// How long a discovery check may take (kube-aggregator's 5 s).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest discovery document read from an extension server.
const MAX_DISCOVERY: usize = 16 * 1024 * 1024;
/// How often the local APIServices and the ConfigMap are looked at.
const TICK: Duration = Duration::from_secs(1);
/// How often the ConfigMap is written again (if it changed) once published.
const PUBLISH_EVERY: Duration = Duration::from_secs(30);
/// How soon a failed watch is started again.
const REWATCH: Duration = Duration::from_secs(1);
/// The label of the APIServices the aggregator manages.
pub const AUTOMANAGED: &str = "kube-aggregator.kubernetes.io/automanaged";
/// The field manager of the controller's writes.
const MANAGER: &str = "flotilla-aggregator";
/// Who the discovery checks are made as (kube-aggregator's identity).
const CHECK_USER: &str = "system:kube-aggregator";

/// Checks APIService `.0` now.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Nudge(pub String);

/// The condition of every local APIService.
pub fn local_condition() -> Condition {
    Condition { available: true, reason: "Local", message: "Local APIServices are always available".into() }
}

/// kube-apiserver's priorities of its own group/versions (`groupPriorityMinimum`,
/// `versionPriority`); custom resources' groups get 1000 and 100, as kube's CRD registration.
pub fn local_priorities(group: &str, version: &str) -> (i64, i64) {
    match (group, version) {
        ("", _) => (18000, 1),
        ("apiregistration.k8s.io", _) => (18000, 15),
        ("apps", _) => (17800, 15),
        ("events.k8s.io", _) => (17750, 15),
        ("authentication.k8s.io", _) => (17700, 15),
        ("authorization.k8s.io", _) => (17600, 15),
        ("autoscaling", "v2") => (17500, 30),
        ("autoscaling", _) => (17500, 15),
        ("batch", _) => (17400, 15),
        ("certificates.k8s.io", _) => (17300, 15),
        ("networking.k8s.io", _) => (17200, 15),
        ("policy", _) => (17100, 15),
        ("rbac.authorization.k8s.io", _) => (17000, 15),
        ("storage.k8s.io", _) => (16800, 15),
        ("admissionregistration.k8s.io", _) => (16700, 15),
        ("apiextensions.k8s.io", _) => (16700, 15),
        ("scheduling.k8s.io", _) => (16600, 15),
        ("coordination.k8s.io", _) => (16500, 15),
        ("node.k8s.io", _) => (16300, 15),
        ("discovery.k8s.io", _) => (16200, 15),
        ("flowcontrol.apiserver.k8s.io", _) => (16100, 21),
        _ => (1000, 100),
    }
}

/// The local APIService of `group`/`version` (`automanaged`: `onstart` or `true`).
pub fn local_api_service(group: &str, version: &str, automanaged: &str) -> Value {
    let (group_priority, version_priority) = local_priorities(group, version);
    json!({
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": format!("{version}.{group}"), "labels": {AUTOMANAGED: automanaged}},
        "spec": {
            "group": group,
            "version": version,
            "groupPriorityMinimum": group_priority,
            "versionPriority": version_priority,
        },
    })
}

/// The group/versions this server serves, each with its `automanaged` label value. The
/// core group's (`v1.`) is left out: object names here must be DNS subdomains, while kube
/// checks APIService names as path segments (a trailing dot is fine there).
fn served_locally() -> Vec<(&'static str, &'static str, &'static str)> {
    let builtin = |g: &str, v: &str| kinds::BUILTIN.iter().any(|k| k.group == g && k.version == v);
    let mut served: Vec<(&'static str, &'static str, &'static str)> = kinds::group_versions()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, v)| (g, v, if builtin(g, v) { "onstart" } else { "true" }))
        .collect();
    served.extend(reviews::group_versions().into_iter().map(|(g, v)| (g, v, "onstart")));
    served
}

fn apiservices() -> ApiResult<&'static ResourceKind> {
    kinds::find("apiregistration.k8s.io", "v1", "apiservices")
        .ok_or_else(|| ApiError::ServiceUnavailable("apiservices are not served".into()))
}

fn actor_of(actors: &KindActors, kind: &ResourceKind) -> ApiResult<Addr<actors::KindActor>> {
    actors.get(kind).ok_or_else(|| ApiError::ServiceUnavailable(format!("no actor serves {}", kind.resource)))
}

fn mailbox(e: MailboxError) -> ApiError {
    ApiError::ServiceUnavailable(format!("kind actor: {e}"))
}

/// Reads core/v1 `resource` `namespace/name`; `None` if it does not exist.
async fn read(actors: &KindActors, resource: &str, namespace: &str, name: &str) -> ApiResult<Option<Value>> {
    let kind = kinds::find("", "v1", resource).ok_or_else(|| ApiError::ServiceUnavailable(resource.into()))?;
    let get = Get { namespace: Some(namespace.into()), name: name.into() };
    match actor_of(actors, kind)?.send(get).await.map_err(mailbox)? {
        Ok(obj) => Ok(Some(obj)),
        Err(ApiError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

fn unavailable(reason: &'static str, message: String) -> Condition {
    Condition { available: false, reason, message }
}

/// Whether a service and its endpoints can serve `service`'s port, as kube-aggregator checks
/// a ClusterIP service: the service port, then a ready address with the same port name.
pub fn endpoints_verdict(service_ref: &ServiceRef, service: &Value, endpoints: Option<&Value>) -> Option<Condition> {
    let ServiceRef { namespace, name, port } = service_ref;
    let kind = service.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP");
    if kind != "ClusterIP" {
        return None;
    }
    let ports = service.pointer("/spec/ports").and_then(Value::as_array).cloned().unwrap_or_default();
    let Some(service_port) = ports.iter().find(|p| p.get("port").and_then(Value::as_u64) == Some(u64::from(*port)))
    else {
        let message = format!("service/{name} in {namespace:?} is not listening on port {port}");
        return Some(unavailable("ServicePortError", message));
    };
    let port_name = service_port.get("name").and_then(Value::as_str).unwrap_or("");
    let Some(endpoints) = endpoints else {
        let message = format!("cannot find endpoints for service/{name} in {namespace:?}");
        return Some(unavailable("EndpointsNotFound", message));
    };
    let subsets = endpoints.get("subsets").and_then(Value::as_array).cloned().unwrap_or_default();
    let active = subsets.iter().any(|subset| {
        let addressed = subset.get("addresses").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
        let ports = subset.get("ports").and_then(Value::as_array).cloned().unwrap_or_default();
        addressed && ports.iter().any(|p| p.get("name").and_then(Value::as_str).unwrap_or("") == port_name)
    });
    (!active).then(|| {
        let message =
            format!("endpoints for service/{name} in {namespace:?} have no addresses with port name {port_name:?}");
        unavailable("MissingEndpoints", message)
    })
}

/// Checks one non-local APIService; its verdict, and its `APIResourceList` when it passed.
pub async fn check(actors: &KindActors, remote: &Remote) -> (Condition, Option<Value>) {
    let Some(service_ref) = &remote.spec.service else { return (local_condition(), None) };
    let ServiceRef { namespace, name, .. } = service_ref;
    let service = match read(actors, "services", namespace, name).await {
        Ok(Some(service)) => service,
        Ok(None) => {
            let message = format!("service/{name} in {namespace:?} is not present");
            return (unavailable("ServiceNotFound", message), None);
        }
        Err(e) => return (unavailable("ServiceAccessError", e.to_string()), None),
    };
    let endpoints = match read(actors, "endpoints", namespace, name).await {
        Ok(endpoints) => endpoints,
        Err(e) => return (unavailable("EndpointsAccessError", e.to_string()), None),
    };
    if let Some(verdict) = endpoints_verdict(service_ref, &service, endpoints.as_ref()) {
        return (verdict, None);
    }
    let failed = |message: String| (unavailable("FailedDiscoveryCheck", message), None);
    let transport = match &remote.transport {
        Ok(transport) => transport,
        Err(e) => return failed(e.to_string()),
    };
    let address = match transport.endpoint(actors).await {
        Ok(address) => address,
        Err(e) => return failed(e.to_string()),
    };
    let path = format!("/apis/{}/{}", remote.spec.group, remote.spec.version);
    let url = proxy::url(&address, &path);
    match tokio::time::timeout(CHECK_TIMEOUT, fetch(transport, &address, &path)).await {
        Ok(Ok((code, body))) if (200..300).contains(&code) => {
            let passed = Condition { available: true, reason: "Passed", message: "all checks passed".into() };
            (passed, serde_json::from_slice(&body).ok())
        }
        Ok(Ok((code, _))) => failed(format!("failing or missing response from {url}: bad status from {url}: {code}")),
        Ok(Err(e)) => failed(format!("failing or missing response from {url}: Get {url:?}: {e}")),
        Err(_) => failed(format!("failing or missing response from {url}: Get {url:?}: context deadline exceeded")),
    }
}

/// `GET path` from the extension server as kube-aggregator; the status code and the body.
async fn fetch(
    transport: &Transport,
    address: &(String, u16),
    path: &str,
) -> Result<(u16, hyper::body::Bytes), proxy::ProxyError> {
    let request = hyper::Request::get(path)
        .header(HOST, transport.host_header.as_str())
        .header(ACCEPT, "application/json")
        .header(USER_HEADER, CHECK_USER)
        .header(GROUP_HEADER, "system:masters")
        .header(GROUP_HEADER, "system:authenticated")
        .body(proxy::empty())
        .map_err(|e| proxy::ProxyError::Config(e.to_string()))?;
    let response = transport.send(address, request).await?;
    let code = response.status().as_u16();
    let body = Limited::new(response.into_body(), MAX_DISCOVERY)
        .collect()
        .await
        .map_err(|e| proxy::ProxyError::Transport(format!("reading the response: {e}")))?
        .to_bytes();
    Ok((code, body))
}

/// The `Available` condition of an APIService object, if it has one.
fn available_condition(obj: &Value) -> Option<&Value> {
    let conditions = obj.pointer("/status/conditions")?.as_array()?;
    conditions.iter().find(|c| c.get("type").and_then(Value::as_str) == Some("Available"))
}

/// Whether `obj`'s `Available` condition already says `condition`.
fn says(obj: &Value, condition: &Condition) -> bool {
    available_condition(obj).is_some_and(|c| {
        let text = |f: &str| c.get(f).and_then(Value::as_str).unwrap_or("");
        text("status") == if condition.available { "True" } else { "False" }
            && text("reason") == condition.reason
            && text("message") == condition.message
    })
}

/// The status patch that makes `obj`'s `Available` condition `condition` (other conditions
/// kept; the transition time moves only when the status does).
pub fn status_patch(obj: &Value, condition: &Condition, now: &str) -> Value {
    let status = if condition.available { "True" } else { "False" };
    let existing = available_condition(obj);
    let since = existing
        .filter(|c| c.get("status").and_then(Value::as_str) == Some(status))
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .unwrap_or_else(|| json!(now));
    let mut conditions: Vec<Value> = obj
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(|all| all.iter().filter(|c| c.get("type").and_then(Value::as_str) != Some("Available")).cloned().collect())
        .unwrap_or_default();
    conditions.push(json!({
        "type": "Available",
        "status": status,
        "lastTransitionTime": since,
        "reason": condition.reason,
        "message": condition.message,
    }));
    json!({"status": {"conditions": conditions}})
}

/// Writes `condition` into APIService `name`'s status unless it says so already.
pub async fn write_condition(actors: &KindActors, name: &str, condition: &Condition) -> ApiResult<()> {
    let actor = actor_of(actors, apiservices()?)?;
    let current = match actor.send(Get { namespace: None, name: name.into() }).await.map_err(mailbox)? {
        Ok(current) => current,
        Err(ApiError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    if says(&current, condition) {
        return Ok(());
    }
    let now = actors::objects::timestamp(time::OffsetDateTime::now_utc());
    let patch = Patch {
        namespace: None,
        name: name.into(),
        patch_kind: PatchKind::Merge,
        body: status_patch(&current, condition, &now).to_string().into_bytes(),
        field_manager: Some(MANAGER.into()),
        force: false,
        part: Part::Status,
        field_validation: FieldValidation::Ignore,
    };
    actor.send(patch).await.map_err(mailbox)?.map(drop)
}

/// What a watch of the controller is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    ApiServices,
    Services,
    Endpoints,
}

impl Source {
    fn kind(self) -> Option<&'static ResourceKind> {
        match self {
            Source::ApiServices => apiservices().ok(),
            Source::Services => kinds::find("", "v1", "services"),
            Source::Endpoints => kinds::find("", "v1", "endpoints"),
        }
    }
}

/// Internal: an event of one of the controller's watches, or its end (`None`).
#[derive(Message)]
#[rtype(result = "()")]
struct Event(Source, Option<WatchEvent>);

/// Internal: stop a checker.
#[derive(Message)]
#[rtype(result = "()")]
struct Stop;

fn name_of(obj: &Value) -> String {
    obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string()
}

/// The controller: see the module docs.
pub struct AvailabilityController {
    aggregator: Aggregator,
    /// The APIServices, by name, as the watch has them.
    objects: HashMap<String, Value>,
    /// Whether the APIService watch has listed them all.
    synced: bool,
    checkers: HashMap<String, Addr<Checker>>,
    /// Local APIServices being created or deleted.
    pending: HashSet<String>,
    published: Option<Instant>,
    publishing: bool,
}

impl AvailabilityController {
    pub fn new(aggregator: Aggregator) -> Self {
        AvailabilityController {
            aggregator,
            objects: HashMap::new(),
            synced: false,
            checkers: HashMap::new(),
            pending: HashSet::new(),
            published: None,
            publishing: false,
        }
    }

    fn watch(&mut self, source: Source, ctx: &mut Context<Self>) {
        let actor = source.kind().and_then(|kind| self.aggregator.actors().get(kind));
        let Some(actor) = actor else {
            ctx.run_later(REWATCH, move |act, ctx| act.watch(source, ctx));
            return;
        };
        let started = async move { actor.send(Watch { bookmarks: false, ..Watch::default() }).await };
        ctx.spawn(started.into_actor(self).map(move |result, act, ctx| match result {
            Ok(Ok(start)) => {
                if source == Source::ApiServices {
                    let listed: HashMap<String, Value> =
                        start.initial.into_iter().map(|e| (name_of(&e.object), e.object)).collect();
                    let names: HashSet<String> =
                        listed.keys().chain(act.objects.keys()).cloned().collect::<HashSet<String>>();
                    act.objects = listed;
                    act.synced = true;
                    for name in names {
                        act.reconcile(&name, ctx);
                    }
                }
                let events = start
                    .rest
                    .map(move |e| Event(source, Some(e)))
                    .chain(futures::stream::once(async move { Event(source, None) }));
                ctx.add_stream(events);
            }
            Ok(Err(e)) => {
                tracing::debug!(?source, error = %e, "aggregator watch refused; retrying");
                ctx.run_later(REWATCH, move |act, ctx| act.watch(source, ctx));
            }
            Err(e) => {
                tracing::debug!(?source, error = %e, "kind actor unreachable; retrying");
                ctx.run_later(REWATCH, move |act, ctx| act.watch(source, ctx));
            }
        }));
    }

    /// Brings APIService `name`'s registration, checker and (local) condition in line with
    /// the object.
    fn reconcile(&mut self, name: &str, ctx: &mut Context<Self>) {
        let spec = self.objects.get(name).map(ApiServiceSpec::parse);
        match spec {
            Some(Ok(spec)) if spec.service.is_some() => {
                let changed = self.aggregator.upsert(name, spec);
                if changed || !self.checkers.contains_key(name) {
                    self.stop_checker(name);
                    let checker = Checker {
                        name: name.to_string(),
                        aggregator: self.aggregator.clone(),
                        running: false,
                        again: false,
                    };
                    self.checkers.insert(name.to_string(), checker.start());
                }
            }
            Some(Ok(_local)) => {
                self.stop_checker(name);
                self.aggregator.remove(name);
                let condition = local_condition();
                if self.objects.get(name).is_some_and(|obj| !says(obj, &condition)) {
                    let (actors, name) = (self.aggregator.actors().clone(), name.to_string());
                    ctx.spawn(
                        async move {
                            if let Err(e) = write_condition(&actors, &name, &condition).await {
                                tracing::debug!(apiservice = name, error = %e, "writing the Local condition failed");
                            }
                        }
                        .into_actor(self),
                    );
                }
            }
            _ => {
                self.stop_checker(name);
                self.aggregator.remove(name);
            }
        }
    }

    fn stop_checker(&mut self, name: &str) {
        if let Some(checker) = self.checkers.remove(name) {
            checker.do_send(Stop);
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        self.sync_local(ctx);
        self.publish(ctx);
    }

    /// Creates the missing local APIServices; deletes those of custom resources no longer
    /// served.
    fn sync_local(&mut self, ctx: &mut Context<Self>) {
        if !self.synced {
            return;
        }
        let served = served_locally();
        let mut work: Vec<(String, Option<Value>)> = Vec::new();
        for (group, version, automanaged) in &served {
            let name = format!("{version}.{group}");
            if !self.objects.contains_key(&name) && !self.pending.contains(&name) {
                work.push((name, Some(local_api_service(group, version, automanaged))));
            }
        }
        for (name, obj) in &self.objects {
            let managed = obj.pointer(&format!("/metadata/labels/{}", AUTOMANAGED.replace('/', "~1")));
            let Ok(spec) = ApiServiceSpec::parse(obj) else { continue };
            let still_served = served.iter().any(|(g, v, _)| *g == spec.group && *v == spec.version);
            if managed == Some(&json!("true"))
                && spec.service.is_none()
                && !still_served
                && !self.pending.contains(name)
            {
                work.push((name.clone(), None));
            }
        }
        for (name, create) in work {
            self.pending.insert(name.clone());
            let actors = self.aggregator.actors().clone();
            let done = name.clone();
            let job = async move {
                let actor = actor_of(&actors, apiservices()?)?;
                match create {
                    Some(obj) => {
                        let create = Create { namespace: None, obj, field_manager: Some(MANAGER.into()) };
                        match actor.send(create).await.map_err(mailbox)? {
                            Ok(_) | Err(ApiError::AlreadyExists(_)) => Ok(()),
                            Err(e) => Err(e),
                        }
                    }
                    None => match actor
                        .send(Delete { namespace: None, name, ..Delete::default() })
                        .await
                        .map_err(mailbox)?
                    {
                        Ok(_) | Err(ApiError::NotFound(_)) => Ok(()),
                        Err(e) => Err(e),
                    },
                }
            };
            ctx.spawn(job.into_actor(self).map(move |result: ApiResult<()>, act, _| {
                act.pending.remove(&done);
                if let Err(e) = result {
                    tracing::debug!(apiservice = done, error = %e, "syncing a local APIService failed");
                }
            }));
        }
    }

    /// Writes the extension servers' ConfigMap when it is due.
    fn publish(&mut self, ctx: &mut Context<Self>) {
        if self.publishing || self.published.is_some_and(|at| at.elapsed() < PUBLISH_EVERY) {
            return;
        }
        self.publishing = true;
        let data =
            front_proxy::config_map_data(self.aggregator.cluster_ca_pem(), &self.aggregator.front_proxy().ca.cert_pem);
        let actors = self.aggregator.actors().clone();
        let job = async move { front_proxy::publish(&actors, &data).await };
        ctx.spawn(job.into_actor(self).map(|result, act, _| {
            act.publishing = false;
            match result {
                Ok(()) => act.published = Some(Instant::now()),
                Err(e) => {
                    tracing::debug!(error = %e, "publishing the extension-apiserver-authentication ConfigMap failed")
                }
            }
        }));
    }

    /// Checks again the APIServices whose service is `namespace/name`.
    fn service_changed(&mut self, obj: &Value) {
        let text = |f: &str| obj.pointer(&format!("/metadata/{f}")).and_then(Value::as_str).unwrap_or("");
        let (namespace, name) = (text("namespace"), text("name"));
        for remote in self.aggregator.remotes() {
            let ours = remote.spec.service.as_ref().is_some_and(|s| s.namespace == namespace && s.name == name);
            if let (true, Some(checker)) = (ours, self.checkers.get(&remote.name)) {
                checker.do_send(Nudge(remote.name.clone()));
            }
        }
    }
}

impl Actor for AvailabilityController {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        for source in [Source::ApiServices, Source::Services, Source::Endpoints] {
            self.watch(source, ctx);
        }
        self.tick(ctx);
        ctx.run_interval(TICK, |act, ctx| act.tick(ctx));
    }
}

impl StreamHandler<Event> for AvailabilityController {
    fn handle(&mut self, Event(source, event): Event, ctx: &mut Context<Self>) {
        let Some(event) = event else {
            ctx.run_later(REWATCH, move |act, ctx| act.watch(source, ctx));
            return;
        };
        match (source, event.event_type) {
            (Source::ApiServices, "ADDED" | "MODIFIED") => {
                let name = name_of(&event.object);
                self.objects.insert(name.clone(), event.object);
                self.reconcile(&name, ctx);
            }
            (Source::ApiServices, "DELETED") => {
                let name = name_of(&event.object);
                self.objects.remove(&name);
                self.reconcile(&name, ctx);
            }
            (Source::Services | Source::Endpoints, "ADDED" | "MODIFIED" | "DELETED") => {
                self.service_changed(&event.object)
            }
            _ => {}
        }
    }

    /// Each watch's end is an [`Event`] with no event; the controller goes on.
    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

impl Handler<Nudge> for AvailabilityController {
    type Result = ();

    fn handle(&mut self, Nudge(name): Nudge, _ctx: &mut Context<Self>) {
        if let Some(checker) = self.checkers.get(&name) {
            checker.do_send(Nudge(name));
        }
    }
}

/// The availability actor of one non-local APIService: [`check`] every [`CHECK_EVERY`] and
/// when nudged (never two at once), the verdict recorded and written.
pub struct Checker {
    name: String,
    aggregator: Aggregator,
    running: bool,
    /// A check was asked for while one ran.
    again: bool,
}

impl Checker {
    fn check(&mut self, ctx: &mut Context<Self>) {
        if self.running {
            self.again = true;
            return;
        }
        let Some(remote) = self.aggregator.remote(&self.name) else { return };
        self.running = true;
        let aggregator = self.aggregator.clone();
        let job = async move {
            let (condition, discovery) = check(aggregator.actors(), &remote).await;
            if !aggregator.record(&remote.name, &remote.spec, condition.clone(), discovery) {
                return; // the APIService changed meanwhile: its new checker decides
            }
            if let Err(e) = write_condition(aggregator.actors(), &remote.name, &condition).await {
                tracing::debug!(apiservice = remote.name, error = %e, "writing the Available condition failed");
            }
        };
        ctx.spawn(job.into_actor(self).map(|(), act, ctx| {
            act.running = false;
            if std::mem::take(&mut act.again) {
                act.check(ctx);
            }
        }));
    }
}

impl Actor for Checker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.check(ctx);
        ctx.run_interval(CHECK_EVERY, |act, ctx| act.check(ctx));
    }
}

impl Handler<Nudge> for Checker {
    type Result = ();

    fn handle(&mut self, _: Nudge, ctx: &mut Context<Self>) {
        self.check(ctx);
    }
}

impl Handler<Stop> for Checker {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn service_ref() -> ServiceRef {
        ServiceRef { namespace: "kube-system".into(), name: "metrics".into(), port: 443 }
    }

    #[test]
    fn a_service_needs_the_port_and_a_ready_address_with_its_name() {
        let service = json!({"spec": {"ports": [{"name": "https", "port": 443, "targetPort": 8443}]}});
        let verdict = |endpoints: Option<Value>| endpoints_verdict(&service_ref(), &service, endpoints.as_ref());
        let missing = verdict(None).unwrap();
        assert_eq!(
            (missing.reason, missing.message.as_str()),
            ("EndpointsNotFound", "cannot find endpoints for service/metrics in \"kube-system\"")
        );
        let unready = json!({"subsets": [{"notReadyAddresses": [{"ip": "10.0.0.1"}], "ports": [{"name": "https", "port": 8443}]}]});
        let no_addresses = verdict(Some(unready)).unwrap();
        assert_eq!(no_addresses.reason, "MissingEndpoints");
        assert_eq!(
            no_addresses.message,
            "endpoints for service/metrics in \"kube-system\" have no addresses with port name \"https\""
        );
        let other_port =
            json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"name": "metrics", "port": 9090}]}]});
        assert_eq!(verdict(Some(other_port)).unwrap().reason, "MissingEndpoints");
        let ready =
            json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"name": "https", "port": 8443}]}]});
        assert_eq!(verdict(Some(ready)), None);

        let elsewhere = json!({"spec": {"ports": [{"port": 8080}]}});
        let wrong_port = endpoints_verdict(&service_ref(), &elsewhere, None).unwrap();
        assert_eq!(
            (wrong_port.reason, wrong_port.message.as_str()),
            ("ServicePortError", "service/metrics in \"kube-system\" is not listening on port 443")
        );
        let external = json!({"spec": {"type": "ExternalName", "externalName": "metrics.example.com"}});
        assert_eq!(endpoints_verdict(&service_ref(), &external, None), None, "no endpoints to check");
    }

    #[test]
    fn the_status_patch_moves_the_transition_time_only_when_the_status_changes() {
        let obj = json!({"status": {"conditions": [
            {"type": "Other", "status": "True"},
            {"type": "Available", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z", "reason": "Passed", "message": "all checks passed"},
        ]}});
        let passed = Condition { available: true, reason: "Passed", message: "all checks passed".into() };
        assert!(says(&obj, &passed));
        let failed = unavailable("FailedDiscoveryCheck", "failing".into());
        assert!(!says(&obj, &failed));
        let patch = status_patch(&obj, &failed, "2025-02-02T00:00:00Z");
        assert_eq!(
            patch["status"]["conditions"],
            json!([
                {"type": "Other", "status": "True"},
                {"type": "Available", "status": "False", "lastTransitionTime": "2025-02-02T00:00:00Z", "reason": "FailedDiscoveryCheck", "message": "failing"},
            ])
        );
        let other_message = Condition { message: "still fine".into(), ..passed };
        let patch = status_patch(&obj, &other_message, "2025-02-02T00:00:00Z");
        assert_eq!(patch["status"]["conditions"][1]["lastTransitionTime"], "2024-01-01T00:00:00Z");
    }

    #[test]
    fn local_api_services_carry_kubes_priorities_and_the_automanaged_label() {
        let apps = local_api_service("apps", "v1", "onstart");
        assert_eq!(apps["metadata"]["name"], "v1.apps");
        assert_eq!(apps["metadata"]["labels"][AUTOMANAGED], "onstart");
        assert_eq!(
            (&apps["spec"]["groupPriorityMinimum"], &apps["spec"]["versionPriority"]),
            (&json!(17800), &json!(15))
        );
        assert_eq!(local_api_service("", "v1", "onstart")["metadata"]["name"], "v1.");
        assert_eq!(local_priorities("stable.example.com", "v1"), (1000, 100));
        let served = served_locally();
        assert!(
            served.contains(&("apps", "v1", "onstart")) && served.contains(&("authorization.k8s.io", "v1", "onstart"))
        );
    }
}

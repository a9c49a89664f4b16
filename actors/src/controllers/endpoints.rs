//! The endpoints and endpoint slice controllers (kube-controller-manager's
//! `endpoints-controller` and `endpointslice-controller`): for each Service with a selector,
//! the pods it selects that have an IP, as an `Endpoints` of the Service's name (ready pods
//! in `addresses`, others in `notReadyAddresses`) and as `EndpointSlice`s `{service}-xxxxx`
//! (conditions `ready`/`serving`/`terminating`, at most 100 endpoints each), ports mapped
//! from each Service port's `targetPort` (a number, or a container port's name).
//!
//! Keys are Services; a pod's event queues every Service of its namespace (the key with an
//! empty name). A Service that is gone takes its `Endpoints` with it here; its slices are
//! owned by it (`ownerReferences`) and go with the garbage collector. Services without a
//! selector are left alone: their endpoints are someone else's.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use futures::future::LocalBoxFuture;
use serde_json::{json, Map, Value};

use crate::api_error::{ApiError, ApiResult};
use crate::controller::{Action, Ctx, ObjectKey, Reconciler, Watched};
use crate::deletion::{being_deleted, DeleteOptions};
use crate::kind_actor::List;
use crate::kinds::{self, ResourceKind, BUILTIN};
use crate::object_store::Part;

/// `EndpointSlice` label: the Service a slice is of.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// `EndpointSlice` label: who manages it.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// The label of the endpoints of a headless Service.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// The most endpoints one slice holds (kube's `--max-endpoints-per-slice` default).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

fn kind(group: &str, resource: &str) -> &'static ResourceKind {
    kinds::find(group, "v1", resource).unwrap_or(&BUILTIN[0])
}

fn services() -> &'static ResourceKind {
    kind("", "services")
}

fn pods() -> &'static ResourceKind {
    kind("", "pods")
}

fn endpoints() -> &'static ResourceKind {
    kind("", "endpoints")
}

fn slices() -> &'static ResourceKind {
    kind("discovery.k8s.io", "endpointslices")
}

fn meta<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.pointer(&format!("/metadata/{field}")).and_then(Value::as_str).unwrap_or_default()
}

/// A Service's selector, if it has a non-empty one.
fn selector(service: &Value) -> Option<&Map<String, Value>> {
    service.pointer("/spec/selector").and_then(Value::as_object).filter(|s| !s.is_empty())
}

fn selects(selector: &Map<String, Value>, pod: &Value) -> bool {
    let labels = pod.pointer("/metadata/labels").and_then(Value::as_object);
    selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// The pod's `Ready` condition is `True`.
pub fn pod_ready(pod: &Value) -> bool {
    let conditions = pod.pointer("/status/conditions").and_then(Value::as_array);
    conditions.into_iter().flatten().any(|c| {
        c.get("type").and_then(Value::as_str) == Some("Ready")
            && c.get("status").and_then(Value::as_str) == Some("True")
    })
}

fn pod_ip(pod: &Value) -> Option<&str> {
    pod.pointer("/status/podIP").and_then(Value::as_str).filter(|ip| !ip.is_empty())
}

/// kube's `ShouldPodBeInEndpoints`: an IP, not finished, and (unless `include_terminating`)
/// not being deleted.
fn in_endpoints(pod: &Value, include_terminating: bool) -> bool {
    let finished = matches!(pod.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed"));
    pod_ip(pod).is_some() && !finished && (include_terminating || !being_deleted(pod))
}

fn publish_not_ready(service: &Value) -> bool {
    service.pointer("/spec/publishNotReadyAddresses").and_then(Value::as_bool) == Some(true)
}

fn headless(service: &Value) -> bool {
    service.pointer("/spec/clusterIP").and_then(Value::as_str) == Some("None")
}

/// The container port `servicePort.targetPort` names on `pod` (kube's `FindPort`): a
/// number as it is (the Service port when unset), a name looked up among the containers'
/// ports of the same protocol.
pub fn target_port(pod: &Value, service_port: &Value) -> Option<i64> {
    let protocol = service_port.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
    match service_port.get("targetPort") {
        None | Some(Value::Null) => service_port.get("port").and_then(Value::as_i64),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(name)) => {
            if let Ok(number) = name.parse::<i64>() {
                return Some(number);
            }
            let containers = pod.pointer("/spec/containers").and_then(Value::as_array);
            let ports = containers.into_iter().flatten().filter_map(|c| c.get("ports")?.as_array()).flatten();
            ports
                .filter(|p| p.get("name").and_then(Value::as_str) == Some(name))
                .find(|p| p.get("protocol").and_then(Value::as_str).unwrap_or("TCP") == protocol)
                .and_then(|p| p.get("containerPort")?.as_i64())
        }
        Some(_) => None,
    }
}

/// The ports `pod` serves for `service`: each Service port its pod has, as an endpoint
/// port (`name` always given for slices, only when set for `Endpoints`). `None` when some
/// port cannot be resolved and none can (the pod is then left out).
fn ports_of(service: &Value, pod: &Value, slice: bool) -> Option<Vec<Value>> {
    let service_ports = service.pointer("/spec/ports").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut out = Vec::new();
    for sp in &service_ports {
        let Some(port) = target_port(pod, sp) else { continue };
        let name = sp.get("name").and_then(Value::as_str).unwrap_or_default();
        let mut ep = json!({"port": port, "protocol": sp.get("protocol").and_then(Value::as_str).unwrap_or("TCP")});
        if slice || !name.is_empty() {
            ep["name"] = json!(name);
        }
        if let Some(app) = sp.get("appProtocol").filter(|a| a.is_string()) {
            ep["appProtocol"] = app.clone();
        }
        out.push(ep);
    }
    // Headless services may have no ports: their pods are listed all the same.
    if out.is_empty() && !(service_ports.is_empty() && headless(service)) {
        return None;
    }
    Some(out)
}

fn target_ref(pod: &Value) -> Value {
    json!({"kind": "Pod", "namespace": meta(pod, "namespace"), "name": meta(pod, "name"), "uid": meta(pod, "uid")})
}

/// The pod's `spec.hostname`, when it is the Service's `spec.subdomain` pod (kube's
/// `ShouldSetHostname`).
fn hostname<'a>(pod: &'a Value, service: &Value) -> Option<&'a str> {
    let spec = pod.get("spec")?;
    let hostname = spec.get("hostname")?.as_str().filter(|h| !h.is_empty())?;
    (spec.get("subdomain").and_then(Value::as_str) == Some(meta(service, "name"))).then_some(hostname)
}

/// The `subsets` of `service`'s Endpoints over `pods` (its namespace's): addresses grouped by
/// the ports they serve, sorted by IP then UID (kube's `RepackSubsets`).
pub fn subsets(service: &Value, pods: &[impl Borrow<Value>]) -> Vec<Value> {
    let Some(selector) = selector(service) else { return Vec::new() };
    let publish = publish_not_ready(service);
    // By port set: the ports, the ready addresses, the others.
    type Group = (Vec<Value>, Vec<Value>, Vec<Value>);
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for pod in pods.iter().map(Borrow::borrow) {
        if !selects(selector, pod) || !in_endpoints(pod, publish) {
            continue;
        }
        let (Some(ip), Some(ports)) = (pod_ip(pod), ports_of(service, pod, false)) else { continue };
        let mut address = json!({"ip": ip, "nodeName": pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or_default(),
            "targetRef": target_ref(pod)});
        if let Some(hostname) = hostname(pod, service) {
            address["hostname"] = json!(hostname);
        }
        let group = groups.entry(Value::Array(ports.clone()).to_string()).or_insert((ports, Vec::new(), Vec::new()));
        if publish || pod_ready(pod) {
            group.1.push(address);
        } else {
            group.2.push(address);
        }
    }
    let by_ip_and_uid = |a: &Value, b: &Value| {
        let key = |v: &Value| (v["ip"].as_str().map(String::from), v.pointer("/targetRef/uid").map(Value::to_string));
        key(a).cmp(&key(b))
    };
    groups
        .into_values()
        .map(|(ports, mut ready, mut not_ready)| {
            ready.sort_by(by_ip_and_uid);
            not_ready.sort_by(by_ip_and_uid);
            let mut subset = Map::new();
            if !ready.is_empty() {
                subset.insert("addresses".into(), Value::Array(ready));
            }
            if !not_ready.is_empty() {
                subset.insert("notReadyAddresses".into(), Value::Array(not_ready));
            }
            if !ports.is_empty() {
                subset.insert("ports".into(), Value::Array(ports));
            }
            Value::Object(subset)
        })
        .collect()
}

/// `metadata.labels` of the Service's endpoints: its own, plus the headless mark.
fn endpoint_labels(service: &Value) -> Map<String, Value> {
    let mut labels = service.pointer("/metadata/labels").and_then(Value::as_object).cloned().unwrap_or_default();
    if headless(service) {
        labels.insert(HEADLESS_LABEL.into(), json!(""));
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    labels
}

/// A list field as a list: missing and `null` are empty.
fn list_at<'a>(obj: &'a Value, pointer: &str) -> &'a [Value] {
    obj.pointer(pointer).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

fn labels_of(obj: &Value) -> Map<String, Value> {
    obj.pointer("/metadata/labels").and_then(Value::as_object).cloned().unwrap_or_default()
}

/// One slice's `ports` and `endpoints`.
pub type SliceContent = (Value, Value);

/// The endpoint slices' content for `service` over `pods`: (ports, endpoints) per slice,
/// endpoints grouped by ports and cut at [`MAX_ENDPOINTS_PER_SLICE`]; one empty slice
/// (`ports` and `endpoints` null, kube's placeholder) when no pod serves it.
pub fn slice_contents(service: &Value, pods: &[impl Borrow<Value>]) -> Vec<SliceContent> {
    let Some(selector) = selector(service) else { return Vec::new() };
    let publish = publish_not_ready(service);
    let mut groups: BTreeMap<String, (Vec<Value>, Vec<Value>)> = BTreeMap::new();
    for pod in pods.iter().map(Borrow::borrow) {
        if !selects(selector, pod) || !in_endpoints(pod, true) {
            continue;
        }
        let (Some(ip), Some(ports)) = (pod_ip(pod), ports_of(service, pod, true)) else { continue };
        let serving = publish || pod_ready(pod);
        let terminating = being_deleted(pod);
        let ready = publish || (serving && !terminating);
        let mut endpoint = json!({"addresses": [ip],
            "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
            "targetRef": target_ref(pod)});
        if let Some(node) = pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
            endpoint["nodeName"] = json!(node);
        }
        if let Some(hostname) = hostname(pod, service) {
            endpoint["hostname"] = json!(hostname);
        }
        groups.entry(Value::Array(ports.clone()).to_string()).or_insert((ports, Vec::new())).1.push(endpoint);
    }
    let mut out = Vec::new();
    for (ports, mut endpoints) in groups.into_values() {
        endpoints.sort_by(|a, b| a["targetRef"]["name"].as_str().cmp(&b["targetRef"]["name"].as_str()));
        let ports = if ports.is_empty() { Value::Null } else { Value::Array(ports) };
        for chunk in endpoints.chunks(MAX_ENDPOINTS_PER_SLICE) {
            out.push((ports.clone(), Value::Array(chunk.to_vec())));
        }
    }
    if out.is_empty() {
        out.push((Value::Null, Value::Null));
    }
    out
}

/// A Service's key as the pods' events give it: the namespace, every Service in it.
fn namespace_key(ns: &str) -> ObjectKey {
    ObjectKey::new(Some(ns), "")
}

fn pod_keys(pod: &Value, _: Option<&Value>) -> Vec<ObjectKey> {
    let ns = meta(pod, "namespace");
    (!ns.is_empty()).then(|| namespace_key(ns)).into_iter().collect()
}

/// The Services of `key`: the one it names, or every one of its namespace (empty name).
fn services_of(ctx: &Ctx, key: &ObjectKey) -> Vec<ObjectKey> {
    if !key.name.is_empty() {
        return vec![key.clone()];
    }
    let listed = ctx.lister(services()).map(|l| l.list(key.namespace.as_deref())).unwrap_or_default();
    listed.iter().filter_map(|s| ObjectKey::of(s)).collect()
}

/// The Service at `key`, from the copy; one missing there is read from the store before it
/// counts as gone.
async fn service_at(ctx: &Ctx, key: &ObjectKey) -> ApiResult<Option<Value>> {
    if let Some(found) = ctx.lister(services()).and_then(|l| l.get(key)) {
        return Ok(Some((*found).clone()));
    }
    match ctx.get(services(), key.namespace.as_deref(), &key.name).await {
        Ok(found) => Ok(Some(found)),
        Err(ApiError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes that found nothing to write to, or a namespace being deleted, are done.
fn settled(result: ApiResult<()>) -> ApiResult<()> {
    match result {
        Err(ApiError::NotFound(_) | ApiError::Forbidden { .. }) => Ok(()),
        other => other,
    }
}

/// Runs `sync` for each Service of `key`; the first error fails the reconcile (after
/// every Service had its turn).
async fn for_each_service<F, Fut>(ctx: &Ctx, key: &ObjectKey, sync: F) -> ApiResult<Action>
where
    F: Fn(ObjectKey) -> Fut,
    Fut: std::future::Future<Output = ApiResult<()>>,
{
    let mut failed = None;
    for service in services_of(ctx, key) {
        if let Err(e) = settled(sync(service).await) {
            failed.get_or_insert(e);
        }
    }
    failed.map_or(Ok(Action::Done), Err)
}

/// The endpoints controller. Keys are Services (or a namespace's, with an empty name).
pub struct EndpointsController;

async fn sync_endpoints(ctx: &Ctx, key: ObjectKey) -> ApiResult<()> {
    let ns = key.namespace.as_deref();
    let Some(service) = service_at(ctx, &key).await? else {
        return ctx.delete(endpoints(), (ns, &key.name), DeleteOptions::default()).await.map(drop);
    };
    if selector(&service).is_none() || being_deleted(&service) {
        return Ok(());
    }
    let pods = ctx.lister(pods()).map(|l| l.list(ns)).unwrap_or_default();
    let subsets = subsets(&service, &pods);
    let labels = endpoint_labels(&service);
    let current = ctx.lister(endpoints()).and_then(|l| l.get(&key));
    let Some(current) = current else {
        let mut created = json!({"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": key.name, "labels": labels}});
        if !subsets.is_empty() {
            created["subsets"] = Value::Array(subsets);
        }
        // One made meanwhile brings its own event, and this Service back.
        return match ctx.create(endpoints(), ns, created).await {
            Ok(_) | Err(ApiError::AlreadyExists(_)) => Ok(()),
            Err(e) => Err(e),
        };
    };
    if list_at(&current, "/subsets") == subsets.as_slice() && labels_of(&current) == labels {
        return Ok(());
    }
    let mut updated = (*current).clone();
    if let Some(obj) = updated.as_object_mut() {
        match subsets.is_empty() {
            true => obj.remove("subsets"),
            false => obj.insert("subsets".into(), Value::Array(subsets)),
        };
    }
    updated["metadata"]["labels"] = Value::Object(labels);
    ctx.update(endpoints(), Part::Main, updated).await.map(drop)
}

impl Reconciler for EndpointsController {
    fn name(&self) -> &'static str {
        "endpoints"
    }

    fn watches(&self) -> Vec<Watched> {
        vec![Watched::objects(services()), Watched::with(pods(), pod_keys), Watched::objects(endpoints())]
    }

    fn reconcile(self: Rc<Self>, ctx: Ctx, key: ObjectKey) -> LocalBoxFuture<'static, Result<Action, ApiError>> {
        Box::pin(async move { for_each_service(&ctx, &key, |service| sync_endpoints(&ctx, service)).await })
    }
}

/// The endpoint slice controller. Keys are Services (or a namespace's, with an empty name).
pub struct EndpointSliceController;

fn slice_keys(slice: &Value, _: Option<&Value>) -> Vec<ObjectKey> {
    let service = slice.pointer("/metadata/labels").and_then(|l| l.get(SERVICE_NAME_LABEL)).and_then(Value::as_str);
    let ns = meta(slice, "namespace");
    service.map(|s| ObjectKey::new(Some(ns), s)).into_iter().collect()
}

/// `metadata.labels` of the Service's slices.
fn slice_labels(service: &Value) -> Map<String, Value> {
    let mut labels = endpoint_labels(service);
    labels.insert(SERVICE_NAME_LABEL.into(), json!(meta(service, "name")));
    labels.insert(MANAGED_BY_LABEL.into(), json!(MANAGED_BY));
    labels
}

fn owner_reference(service: &Value) -> Value {
    json!([{"apiVersion": "v1", "kind": "Service", "name": meta(service, "name"), "uid": meta(service, "uid"),
        "controller": true, "blockOwnerDeletion": true}])
}

/// Whether `slice` holds what it should.
fn slice_matches(
    slice: &Value,
    (ports, endpoints): &(Value, Value),
    labels: &Map<String, Value>,
    owner: &Value,
) -> bool {
    list_at(slice, "/ports") == list_at(&json!({"p": ports}), "/p")
        && list_at(slice, "/endpoints") == list_at(&json!({"e": endpoints}), "/e")
        && slice.get("addressType").and_then(Value::as_str) == Some("IPv4")
        && labels_of(slice) == *labels
        && slice.pointer("/metadata/ownerReferences") == Some(owner)
}

/// The slices of `ns` as stored now (the kind actor's list waits for the store's revision).
async fn current_slices(ctx: &Ctx, ns: Option<&str>) -> ApiResult<Vec<Value>> {
    let actor =
        ctx.actors.get(slices()).ok_or_else(|| ApiError::ServiceUnavailable("no endpointslices actor".into()))?;
    let listed = actor.send(List { namespace: ns.map(String::from), ..List::default() }).await;
    listed.map_err(|e| ApiError::ServiceUnavailable(format!("endpointslices actor: {e}")))??.items()
}

async fn sync_slices(ctx: &Ctx, key: ObjectKey) -> ApiResult<()> {
    let ns = key.namespace.as_deref();
    // A Service that is gone takes its slices with it (the garbage collector).
    let Some(service) = service_at(ctx, &key).await? else { return Ok(()) };
    if selector(&service).is_none() || being_deleted(&service) {
        return Ok(());
    }
    let pods = ctx.lister(pods()).map(|l| l.list(ns)).unwrap_or_default();
    let wanted = slice_contents(&service, &pods);
    let labels = slice_labels(&service);
    let owner = owner_reference(&service);
    let ours = |s: &Value| {
        let l = s.pointer("/metadata/labels");
        l.and_then(|l| l.get(SERVICE_NAME_LABEL)).and_then(Value::as_str) == Some(key.name.as_str())
            && l.and_then(|l| l.get(MANAGED_BY_LABEL)).and_then(Value::as_str) == Some(MANAGED_BY)
    };
    let mut existing = ctx.lister(slices()).map(|l| l.list_where(ns, ours)).unwrap_or_default();
    if existing.len() < wanted.len() {
        // About to create: one made by an earlier pass may not be in the copy yet.
        existing = current_slices(ctx, ns).await?.into_iter().filter(|s| ours(s)).map(Arc::new).collect();
    }
    // Each wanted slice goes to one with the same ports if there is one, else to any left.
    let mut assigned: Vec<(Option<Arc<Value>>, &SliceContent)> = Vec::new();
    let mut unmatched = Vec::new();
    for content in &wanted {
        let same_ports = existing.iter().position(|s| list_at(s, "/ports") == list_at(&json!({"p": content.0}), "/p"));
        match same_ports {
            Some(i) => assigned.push((Some(existing.remove(i)), content)),
            None => unmatched.push(content),
        }
    }
    for content in unmatched {
        let slice = (!existing.is_empty()).then(|| existing.remove(0));
        assigned.push((slice, content));
    }
    for (slice, content) in assigned {
        let (ports, endpoints) = content.clone();
        match slice {
            Some(slice) if slice_matches(&slice, content, &labels, &owner) => {}
            Some(slice) => {
                let mut updated = (*slice).clone();
                updated["addressType"] = json!("IPv4");
                updated["ports"] = ports;
                updated["endpoints"] = endpoints;
                updated["metadata"]["labels"] = Value::Object(labels.clone());
                updated["metadata"]["ownerReferences"] = owner.clone();
                settled(ctx.update(slices(), Part::Main, updated).await.map(drop))?;
            }
            None => {
                let created = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"generateName": format!("{}-", key.name), "labels": labels, "ownerReferences": owner},
                    "addressType": "IPv4", "ports": ports, "endpoints": endpoints});
                ctx.create(slices(), ns, created).await?;
            }
        }
    }
    for surplus in existing {
        let name = meta(&surplus, "name");
        settled(ctx.delete(slices(), (ns, name), DeleteOptions::default()).await.map(drop))?;
    }
    Ok(())
}

impl Reconciler for EndpointSliceController {
    fn name(&self) -> &'static str {
        "endpointslice"
    }

    fn watches(&self) -> Vec<Watched> {
        vec![Watched::objects(services()), Watched::with(pods(), pod_keys), Watched::with(slices(), slice_keys)]
    }

    fn reconcile(self: Rc<Self>, ctx: Ctx, key: ObjectKey) -> LocalBoxFuture<'static, Result<Action, ApiError>> {
        Box::pin(async move { for_each_service(&ctx, &key, |service| sync_slices(&ctx, service)).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> Value {
        json!({"metadata": {"name": "web", "namespace": "shop", "uid": "s", "labels": {"app": "web"}},
            "spec": {"selector": {"app": "web"}, "clusterIP": "10.96.0.10",
                "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                          {"name": "metrics", "port": 9090, "targetPort": 9090, "protocol": "TCP"}]}})
    }

    fn pod(name: &str, ip: &str, ready: bool) -> Value {
        json!({"metadata": {"name": name, "namespace": "shop", "uid": format!("u-{name}"), "labels": {"app": "web"}},
            "spec": {"nodeName": "node-1", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"podIP": ip, "phase": "Running",
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
    }

    #[test]
    fn endpoints_list_ready_and_not_ready_pods_with_mapped_ports() {
        let mut other = pod("other", "10.0.0.9", true);
        other["metadata"]["labels"]["app"] = json!("db");
        let no_ip = pod("pending", "", true);
        let pods =
            vec![pod("b", "10.0.0.2", true), pod("a", "10.0.0.1", true), pod("c", "10.0.0.3", false), other, no_ip];
        let subsets = subsets(&service(), &pods);
        assert_eq!(subsets.len(), 1);
        let ips = |field: &str| -> Vec<&str> {
            subsets[0][field].as_array().unwrap().iter().map(|a| a["ip"].as_str().unwrap()).collect()
        };
        assert_eq!(ips("addresses"), ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(ips("notReadyAddresses"), ["10.0.0.3"]);
        assert_eq!(
            subsets[0]["ports"],
            json!([{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "metrics", "port": 9090, "protocol": "TCP"}])
        );
        assert_eq!(
            subsets[0]["addresses"][0]["targetRef"],
            json!({"kind": "Pod", "namespace": "shop", "name": "a", "uid": "u-a"})
        );
    }

    #[test]
    fn slices_carry_conditions_and_a_placeholder_stands_for_no_pods() {
        let mut leaving = pod("d", "10.0.0.4", true);
        leaving["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        let contents = slice_contents(&service(), &[pod("a", "10.0.0.1", true), pod("c", "10.0.0.3", false), leaving]);
        assert_eq!(contents.len(), 1);
        let endpoints = contents[0].1.as_array().unwrap();
        let conditions: Vec<&Value> = endpoints.iter().map(|e| &e["conditions"]).collect();
        assert_eq!(conditions[0], &json!({"ready": true, "serving": true, "terminating": false}));
        assert_eq!(conditions[1], &json!({"ready": false, "serving": false, "terminating": false}));
        assert_eq!(conditions[2], &json!({"ready": false, "serving": true, "terminating": true}));
        assert_eq!(endpoints[0]["nodeName"], "node-1");
        assert_eq!(contents[0].0[1], json!({"name": "metrics", "port": 9090, "protocol": "TCP"}));
        assert_eq!(slice_contents(&service(), &Vec::<Value>::new()), vec![(Value::Null, Value::Null)]);
    }

    #[test]
    fn target_ports_resolve_by_number_or_container_port_name() {
        let p = pod("a", "10.0.0.1", true);
        assert_eq!(target_port(&p, &json!({"port": 80, "targetPort": "http"})), Some(8080));
        assert_eq!(target_port(&p, &json!({"port": 80, "targetPort": "http", "protocol": "UDP"})), None);
        assert_eq!(target_port(&p, &json!({"port": 80})), Some(80));
        assert_eq!(target_port(&p, &json!({"port": 80, "targetPort": 81})), Some(81));
    }
}

//! The garbage collector, the namespace controller and the endpoints controllers over a real
//! single-member store: dependents go with their owner (`Background`), stay without the
//! reference (`Orphan`), or go first while the owner waits (`Foreground`); a dependent with a
//! second owner only loses the dead reference. A deleted namespace loses its content (custom
//! objects too) and then goes, its conditions saying what held it. A Service's Endpoints and
//! EndpointSlice follow its pods' IPs and readiness and go with it.

#![allow(clippy::unwrap_used)]

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use actix::Addr;
use actors::controller::Controllers;
use actors::controllers::{endpoints, garbage_collector, namespace};
use actors::kinds::find;
use actors::{
    ApiResult, CrdController, Create, Delete, DeleteOptions, Get, KindActor, KindActors, List, Part, Selectors, Update,
};
use raft_store::StoreNode;
use serde_json::{json, Value};

use common::single_member;

const DEADLINE: Duration = Duration::from_secs(20);

/// The kind actors of a store, with the collector, namespace and endpoints controllers.
struct Cluster {
    kinds: KindActors,
    node: StoreNode,
    _controllers: Addr<Controllers>,
}

impl Cluster {
    async fn start(dir: &std::path::Path) -> Cluster {
        let node = single_member(dir).await;
        let kinds = KindActors::start(&node);
        let controllers = Controllers::new(kinds.clone(), node.clone())
            .with(garbage_collector::GarbageCollector::default)
            .with(|| namespace::Namespaces)
            .with(|| endpoints::EndpointsController)
            .with(|| endpoints::EndpointSliceController)
            .run();
        Cluster { kinds, node, _controllers: controllers }
    }

    fn actor(&self, resource: &str) -> Addr<KindActor> {
        let (group, resource) = resource.split_once('/').unwrap_or(("", resource));
        self.kinds.get(find(group, "v1", resource).unwrap()).unwrap()
    }

    async fn create(&self, resource: &str, ns: Option<&str>, obj: Value) -> Value {
        let msg = Create { namespace: ns.map(Into::into), obj, field_manager: None };
        self.actor(resource).send(msg).await.unwrap().unwrap()
    }

    async fn get(&self, resource: &str, ns: Option<&str>, name: &str) -> ApiResult<Value> {
        self.actor(resource).send(Get { namespace: ns.map(Into::into), name: name.into() }).await.unwrap()
    }

    async fn delete(&self, resource: &str, ns: Option<&str>, name: &str, options: &str) {
        let options = DeleteOptions::from_body(options.as_bytes()).unwrap();
        let msg = Delete { namespace: ns.map(Into::into), name: name.into(), options };
        self.actor(resource).send(msg).await.unwrap().unwrap();
    }

    async fn update(&self, resource: &str, part: Part, obj: Value) -> Value {
        let msg = Update {
            namespace: obj["metadata"]["namespace"].as_str().map(Into::into),
            name: obj["metadata"]["name"].as_str().unwrap().into(),
            obj,
            field_manager: None,
            part,
        };
        self.actor(resource).send(msg).await.unwrap().unwrap()
    }

    async fn gone(&self, resource: &str, ns: Option<&str>, name: &str) -> bool {
        matches!(self.get(resource, ns, name).await, Err(e) if e.code() == 404)
    }

    async fn list(&self, resource: &str, ns: &str, labels: &str) -> Vec<Value> {
        let (group, plural) = resource.split_once('/').unwrap_or(("", resource));
        let selectors = Selectors::parse(find(group, "v1", plural).unwrap(), labels, "").unwrap();
        let msg = List { namespace: Some(ns.into()), selectors, ..Default::default() };
        self.actor(resource).send(msg).await.unwrap().unwrap().items().unwrap()
    }
}

/// Polls `check` until it returns `Some`, or fails after [`DEADLINE`] saying `what`.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

fn owner_ref(owner: &Value, block: bool) -> Value {
    json!({"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"], "blockOwnerDeletion": block})
}

fn cm(name: &str, owners: &[Value]) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "ownerReferences": owners},
        "data": {"k": "v"}})
}

fn pod(name: &str, node: &str, owners: &[Value]) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "web"}, "ownerReferences": owners},
        "spec": {"nodeName": node,
            "containers": [{"name": "web", "image": "nginx", "ports": [{"name": "http", "containerPort": 8080}]}]}})
}

fn refs_of(obj: &Value) -> Vec<String> {
    let refs = obj["metadata"]["ownerReferences"].as_array().cloned().unwrap_or_default();
    refs.iter().map(|r| r["name"].as_str().unwrap().to_string()).collect()
}

#[actix_rt::test]
async fn dependents_go_with_their_owners_as_the_propagation_policy_says() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path()).await;
    let ns = Some("gc");
    c.create("namespaces", None, namespace("gc")).await;

    // Background: the owner goes at once, its dependents after it.
    let owner = c.create("configmaps", ns, cm("owner-bg", &[])).await;
    c.create("configmaps", ns, cm("dep-bg-cm", &[owner_ref(&owner, false)])).await;
    c.create("pods", ns, pod("dep-bg-pod", "", &[owner_ref(&owner, true)])).await;
    c.delete("configmaps", ns, "owner-bg", r#"{"propagationPolicy": "Background"}"#).await;
    eventually("background dependents to go", || async {
        (c.gone("configmaps", ns, "dep-bg-cm").await && c.gone("pods", ns, "dep-bg-pod").await).then_some(())
    })
    .await;

    // A dependent whose owner never was (another UID) goes too.
    let mut ghost = owner_ref(&owner, false);
    ghost["name"] = json!("ghost");
    c.create("configmaps", ns, cm("stray", &[ghost])).await;
    eventually("a dependent of a missing owner to go", || async {
        c.gone("configmaps", ns, "stray").await.then_some(())
    })
    .await;

    // Orphan: the dependents stay, without the reference; then the owner goes.
    let owner = c.create("configmaps", ns, cm("owner-or", &[])).await;
    c.create("configmaps", ns, cm("dep-or", &[owner_ref(&owner, true)])).await;
    c.delete("configmaps", ns, "owner-or", r#"{"propagationPolicy": "Orphan"}"#).await;
    eventually("the orphaning owner to go", || async { c.gone("configmaps", ns, "owner-or").await.then_some(()) })
        .await;
    let orphan = c.get("configmaps", ns, "dep-or").await.unwrap();
    assert!(orphan["metadata"].get("ownerReferences").is_none(), "{orphan}");

    // Foreground: the owner waits, marked, while a blocking dependent is still there.
    let owner = c.create("configmaps", ns, cm("owner-fg", &[])).await;
    c.create("configmaps", ns, cm("dep-fg-cm", &[owner_ref(&owner, false)])).await;
    c.create("pods", ns, pod("dep-fg-pod", "node-1", &[owner_ref(&owner, true)])).await;
    c.delete("configmaps", ns, "owner-fg", r#"{"propagationPolicy": "Foreground"}"#).await;
    eventually("the foreground dependents to be deleted", || async {
        let pod = c.get("pods", ns, "dep-fg-pod").await.ok()?;
        (pod["metadata"]["deletionTimestamp"].is_string() && c.gone("configmaps", ns, "dep-fg-cm").await).then_some(())
    })
    .await;
    let waiting = c.get("configmaps", ns, "owner-fg").await.unwrap();
    assert!(waiting["metadata"]["deletionTimestamp"].is_string(), "{waiting}");
    assert_eq!(waiting["metadata"]["finalizers"], json!(["foregroundDeletion"]));
    // The pod's node is done with it: the owner follows.
    c.delete("pods", ns, "dep-fg-pod", r#"{"gracePeriodSeconds": 0}"#).await;
    eventually("the foreground owner to go", || async { c.gone("configmaps", ns, "owner-fg").await.then_some(()) })
        .await;

    // Two owners: the first one's going only takes its reference; the second's takes it.
    let a = c.create("configmaps", ns, cm("owner-a", &[])).await;
    let b = c.create("configmaps", ns, cm("owner-b", &[])).await;
    c.create("configmaps", ns, cm("shared", &[owner_ref(&a, false), owner_ref(&b, false)])).await;
    c.delete("configmaps", ns, "owner-a", "{}").await;
    eventually("the shared dependent to lose the dead reference", || async {
        let shared = c.get("configmaps", ns, "shared").await.unwrap();
        (refs_of(&shared) == ["owner-b"]).then_some(())
    })
    .await;
    c.delete("configmaps", ns, "owner-b", "{}").await;
    eventually("the shared dependent to go", || async { c.gone("configmaps", ns, "shared").await.then_some(()) }).await;
    c.node.shutdown().await;
}

#[actix_rt::test]
async fn a_deleted_namespace_loses_all_its_content_and_then_goes() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path()).await;
    CrdController::start_supervised(c.node.clone(), c.kinds.clone());
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.gc.example.com"},
        "spec": {"group": "gc.example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}});
    c.create("apiextensions.k8s.io/customresourcedefinitions", None, crd).await;
    let ns = Some("doomed");
    c.create("namespaces", None, namespace("doomed")).await;
    let widget = json!({"apiVersion": "gc.example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "size": 3});
    let widgets = eventually("the Widget kind to be served", || async {
        let kind = find("gc.example.com", "v1", "widgets")?;
        let actor = c.kinds.get(kind)?;
        let msg = Create { namespace: Some("doomed".into()), obj: widget.clone(), field_manager: None };
        actor.send(msg).await.ok()?.ok().map(|_| actor)
    })
    .await;
    c.create("configmaps", ns, cm("plain", &[])).await;
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "dg=="}});
    c.create("secrets", ns, secret).await;
    c.create("pods", ns, pod("p", "", &[])).await;
    let mut held = cm("held", &[]);
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    c.create("configmaps", ns, held).await;

    c.delete("namespaces", None, "doomed", "{}").await;
    // Everything but the held configmap goes; the namespace says what holds it.
    let conditions = eventually("the namespace to report the finalizer left", || async {
        let doomed = c.get("namespaces", None, "doomed").await.ok()?;
        let conditions = doomed["status"]["conditions"].as_array()?.clone();
        let finalizers = conditions.iter().find(|c| c["type"] == "NamespaceFinalizersRemaining")?;
        (finalizers["status"] == "True").then_some(conditions)
    })
    .await;
    let message = |t: &str| conditions.iter().find(|c| c["type"] == t).unwrap()["message"].clone();
    assert_eq!(
        message("NamespaceFinalizersRemaining"),
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
    );
    assert_eq!(
        message("NamespaceContentRemaining"),
        "Some resources are remaining: configmaps. has 1 resource instances"
    );
    for (resource, name) in [("configmaps", "plain"), ("secrets", "s"), ("pods", "p")] {
        assert!(c.gone(resource, ns, name).await, "{resource}/{name} is still there");
    }
    let widget = widgets.send(Get { namespace: Some("doomed".into()), name: "w".into() }).await.unwrap();
    assert_eq!(widget.unwrap_err().code(), 404, "the custom object is gone");

    // Once the finalizer is gone, the controller finishes the namespace (no second DELETE).
    let mut held = c.get("configmaps", ns, "held").await.unwrap();
    held["metadata"]["finalizers"] = json!([]);
    c.update("configmaps", Part::Main, held).await;
    eventually("the namespace to go", || async { c.gone("namespaces", None, "doomed").await.then_some(()) }).await;
    c.node.shutdown().await;
}

/// Sets a pod's IP and readiness, as its node would.
async fn set_status(c: &Cluster, name: &str, ip: &str, ready: bool) {
    let mut pod = c.get("pods", Some("shop"), name).await.unwrap();
    let ready = if ready { "True" } else { "False" };
    pod["status"] = json!({"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": ready}]});
    c.update("pods", Part::Status, pod).await;
}

fn ips(subset: &Value, field: &str) -> Vec<String> {
    let addresses = subset[field].as_array().cloned().unwrap_or_default();
    addresses.iter().map(|a| a["ip"].as_str().unwrap().to_string()).collect()
}

#[actix_rt::test]
async fn a_services_endpoints_follow_its_pods_and_go_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path()).await;
    let ns = Some("shop");
    c.create("namespaces", None, namespace("shop")).await;
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}});
    c.create("services", ns, service).await;
    for name in ["a", "b"] {
        c.create("pods", ns, pod(name, "node-1", &[])).await;
    }
    let mut other = pod("db", "node-1", &[]);
    other["metadata"]["labels"]["app"] = json!("db");
    c.create("pods", ns, other).await;
    set_status(&c, "a", "10.0.0.1", true).await;
    set_status(&c, "b", "10.0.0.2", true).await;
    set_status(&c, "db", "10.0.0.9", true).await;

    let endpoints = eventually("both pods in the Endpoints", || async {
        let ep = c.get("endpoints", ns, "web").await.ok()?;
        (ips(&ep["subsets"][0], "addresses") == ["10.0.0.1", "10.0.0.2"]).then_some(ep)
    })
    .await;
    assert_eq!(endpoints["subsets"][0]["ports"], json!([{"name": "http", "port": 8080, "protocol": "TCP"}]));
    assert_eq!(endpoints["subsets"][0]["addresses"][0]["targetRef"]["name"], "a");
    assert_eq!(endpoints["subsets"][0]["addresses"][0]["nodeName"], "node-1");
    let slice = eventually("both pods in the EndpointSlice", || async {
        let slices = c.list("discovery.k8s.io/endpointslices", "shop", "kubernetes.io/service-name=web").await;
        let slice = slices.into_iter().next()?;
        (slice["endpoints"].as_array()?.len() == 2).then_some(slice)
    })
    .await;
    assert!(slice["metadata"]["name"].as_str().unwrap().starts_with("web-"), "{slice}");
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(slice["ports"], json!([{"name": "http", "port": 8080, "protocol": "TCP"}]));
    assert_eq!(slice["endpoints"][0]["addresses"], json!(["10.0.0.1"]));
    assert_eq!(slice["endpoints"][0]["conditions"], json!({"ready": true, "serving": true, "terminating": false}));
    assert_eq!(slice["endpoints"][0]["targetRef"]["name"], "a");

    // A pod that turns not ready moves to notReadyAddresses, and is not ready in the slice.
    set_status(&c, "b", "10.0.0.2", false).await;
    eventually("b in notReadyAddresses", || async {
        let ep = c.get("endpoints", ns, "web").await.ok()?;
        let subset = &ep["subsets"][0];
        (ips(subset, "addresses") == ["10.0.0.1"] && ips(subset, "notReadyAddresses") == ["10.0.0.2"]).then_some(())
    })
    .await;
    eventually("b not ready in the slice", || async {
        let slices = c.list("discovery.k8s.io/endpointslices", "shop", "kubernetes.io/service-name=web").await;
        let b = slices.first()?["endpoints"].as_array()?.iter().find(|e| e["targetRef"]["name"] == "b")?.clone();
        (b["conditions"]["ready"] == false).then_some(())
    })
    .await;

    // A pod being deleted leaves the Endpoints; the slice shows it terminating.
    c.delete("pods", ns, "a", "{}").await;
    eventually("a out of the Endpoints and terminating in the slice", || async {
        let ep = c.get("endpoints", ns, "web").await.ok()?;
        let slices = c.list("discovery.k8s.io/endpointslices", "shop", "kubernetes.io/service-name=web").await;
        let a = slices.first()?["endpoints"].as_array()?.iter().find(|e| e["targetRef"]["name"] == "a")?.clone();
        let terminating = json!({"ready": false, "serving": true, "terminating": true});
        (ips(&ep["subsets"][0], "addresses").is_empty() && a["conditions"] == terminating).then_some(())
    })
    .await;

    // The Service goes: its Endpoints (the controller) and slices (the garbage collector) too.
    c.delete("services", ns, "web", "{}").await;
    eventually("the endpoints to go", || async {
        let slices = c.list("discovery.k8s.io/endpointslices", "shop", "").await;
        (c.gone("endpoints", ns, "web").await && slices.is_empty()).then_some(())
    })
    .await;
    c.node.shutdown().await;
}

//! Admission webhooks end to end in one process: a real single-member store, the kind actors
//! with the built-in chain and the webhook dispatcher (as `flotilla up` wires them), and a real
//! HTTPS webhook server (actix-web, certificate from `api_gateway::pki`) on its own thread.
//! Writes are sent to the kind actors as the gateway sends them (`AsUser`), so the errors
//! checked are the `Status` the client would get.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpResponse, HttpServer};
use actors::admission::builtin;
use actors::{kinds, ApiError, ApiResult, AsUser, Create, Delete, DeleteOptions, Get, KindActors, UserInfo};
use api_gateway::admission_webhooks::Webhooks;
use base64::Engine;
use raft_store::{StoreConfig, StoreNode};
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(20);

/// The requests of the reviews each webhook path got, in order.
static REVIEWS: Mutex<Vec<(String, Value)>> = Mutex::new(Vec::new());

fn reviews(path: &str) -> Vec<Value> {
    REVIEWS.lock().unwrap().iter().filter(|(p, _)| p == path).map(|(_, r)| r.clone()).collect()
}

/// A JSON patch that sets `metadata.{field}.{key}` to `value`.
fn set_meta(obj: &Value, field: &str, key: &str, value: &str) -> Value {
    if obj["metadata"][field].is_object() {
        json!([{"op": "add", "path": format!("/metadata/{field}/{key}"), "value": value}])
    } else {
        json!([{"op": "add", "path": format!("/metadata/{field}"), "value": {key: value}}])
    }
}

fn patched(patch: Value) -> Value {
    let bytes = serde_json::to_vec(&patch).unwrap();
    json!({"allowed": true, "patchType": "JSONPatch", "patch": base64::engine::general_purpose::STANDARD.encode(bytes)})
}

/// The webhooks, one per path.
async fn hook(path: web::Path<String>, review: web::Json<Value>) -> HttpResponse {
    let request = review["request"].clone();
    REVIEWS.lock().unwrap().push((path.clone(), request.clone()));
    let obj = &request["object"];
    let labels = &obj["metadata"]["labels"];
    let mut response = match path.as_str() {
        "validate" if labels["deny"] == "yes" => {
            json!({"allowed": false, "status": {"message": "the label deny=yes is not allowed"}})
        }
        "validate" => json!({"allowed": true, "warnings": ["validated"]}),
        "mutate" => patched(set_meta(obj, "labels", "mutated", "yes")),
        "slow" => {
            actix_rt::time::sleep(Duration::from_secs(5)).await;
            json!({"allowed": true})
        }
        "deny-all" => {
            json!({"allowed": false, "status": {"code": 422, "reason": "Invalid", "message": "nothing passes"}})
        }
        "protect" if request["oldObject"]["metadata"]["labels"]["protected"] == "yes" => {
            json!({"allowed": false, "status": {"message": "this object is protected"}})
        }
        "first" => {
            let saw = if labels["second"] == "yes" { "true" } else { "false" };
            patched(set_meta(obj, "annotations", "first-saw-second", saw))
        }
        "second" => patched(set_meta(obj, "labels", "second", "yes")),
        _ => json!({"allowed": true}),
    };
    response["uid"] = request["uid"].clone();
    HttpResponse::Ok()
        .json(json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}))
}

/// The webhook server, serving HTTPS on 127.0.0.1 from its own thread.
struct Server {
    port: u16,
    /// Its CA's certificate, base64 (a `caBundle`).
    ca_bundle: String,
    handle: ServerHandle,
    thread: Option<JoinHandle<()>>,
    _pki: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let pki_dir = tempfile::tempdir().unwrap();
        let pki = api_gateway::pki::load_or_create(pki_dir.path(), &[]).unwrap();
        let tls = api_gateway::tls::server_config(&pki).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let server = HttpServer::new(|| App::new().route("/{path}", web::post().to(hook)))
                    .workers(1)
                    .disable_signals()
                    .shutdown_timeout(1)
                    .bind_rustls_0_23(("127.0.0.1", 0), tls)
                    .unwrap();
                let port = server.addrs()[0].port();
                let server = server.run();
                tx.send((port, server.handle())).unwrap();
                server.await.unwrap();
            })
        });
        let (port, handle) = rx.recv().unwrap();
        let ca_bundle = base64::engine::general_purpose::STANDARD.encode(&pki.ca.cert_pem);
        Server { port, ca_bundle, handle, thread: Some(thread), _pki: pki_dir }
    }

    /// A webhook of this server at `path` for configmaps (or what `extra` says instead).
    fn webhook(&self, name: &str, path: &str, extra: Value) -> Value {
        let mut hook = json!({
            "name": name,
            "clientConfig": {"url": format!("https://127.0.0.1:{}/{path}", self.port), "caBundle": self.ca_bundle},
            "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
        });
        hook.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        hook
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        futures::executor::block_on(self.handle.stop(false));
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

/// A store, the kind actors and their admission chain with the webhook dispatcher.
struct Cluster {
    node: StoreNode,
    kinds: KindActors,
    _dir: tempfile::TempDir,
}

fn alice() -> UserInfo {
    UserInfo {
        username: "alice".into(),
        groups: vec!["dev".into(), "system:authenticated".into()],
        ..UserInfo::default()
    }
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig::new(1, dir.path().join("store"), "127.0.0.1:0".parse().unwrap());
        let node = StoreNode::start_single(config, DEADLINE).await.unwrap();
        let kinds = KindActors::start(&node);
        let webhooks = Arc::new(Webhooks::start(kinds.clone()));
        kinds.set_admission(Arc::new(builtin::chain_with_webhooks(node.clone(), webhooks)));
        let ns_kind = kinds::find("", "v1", "namespaces").unwrap();
        for (name, labels) in [("default", json!({})), ("hooked", json!({"hooked": "yes"})), ("plain", json!({}))] {
            let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}});
            actors::object_store::create(&node, ns_kind, None, ns, None).await.unwrap();
        }
        Cluster { node, kinds, _dir: dir }
    }

    fn actor(&self, resource: &str) -> actix::Addr<actors::KindActor> {
        let group = if resource.ends_with("webhookconfigurations") { "admissionregistration.k8s.io" } else { "" };
        self.kinds.get(kinds::find(group, "v1", resource).unwrap()).unwrap()
    }

    async fn configure(&self, resource: &str, name: &str, webhooks: Vec<Value>) {
        let kind = if resource.starts_with("mutating") {
            "MutatingWebhookConfiguration"
        } else {
            "ValidatingWebhookConfiguration"
        };
        let obj = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
                         "metadata": {"name": name}, "webhooks": webhooks});
        let create = Create { namespace: None, obj, field_manager: None };
        self.actor(resource).send(AsUser(alice(), create)).await.unwrap().unwrap();
    }

    /// Creates configmap `ns/name` with `labels` as alice.
    async fn create_cm(&self, ns: &str, name: &str, labels: Value) -> ApiResult<Value> {
        self.create_cm_warned(ns, name, labels).await.map(|written| written.obj)
    }

    /// [`Self::create_cm`], with the warnings for the client.
    async fn create_cm_warned(&self, ns: &str, name: &str, labels: Value) -> ApiResult<actors::object_store::Written> {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}});
        let create = Create { namespace: Some(ns.into()), obj, field_manager: Some("test".into()) };
        self.actor("configmaps").send(AsUser(alice(), create)).await.unwrap()
    }

    async fn get_cm(&self, ns: &str, name: &str) -> ApiResult<Value> {
        self.actor("configmaps").send(Get { namespace: Some(ns.into()), name: name.into() }).await.unwrap()
    }

    async fn delete_cm(&self, ns: &str, name: &str) -> ApiResult<actors::Deleted> {
        let delete = Delete { namespace: Some(ns.into()), name: name.into(), options: DeleteOptions::default() };
        self.actor("configmaps").send(AsUser(alice(), delete)).await.unwrap()
    }

    async fn stop(self) {
        self.node.shutdown().await;
    }
}

/// Polls `check` (on fresh names `probe-0`, `probe-1`, ...) until it holds: configurations
/// reach the dispatcher through a watch, a moment after they are written.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    for i in 0.. {
        if check(format!("probe-{i}")).await {
            return;
        }
        assert!(Instant::now() < deadline, "never: {what}");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_rt::test]
async fn a_validating_webhook_refuses_with_its_message_and_a_mutating_one_labels_the_stored_object() {
    let server = Server::start();
    let cluster = Cluster::start().await;
    cluster
        .configure(
            "validatingwebhookconfigurations",
            "deny",
            vec![server.webhook("deny.example.com", "validate", json!({}))],
        )
        .await;
    cluster
        .configure(
            "mutatingwebhookconfigurations",
            "label",
            vec![server.webhook("label.example.com", "mutate", json!({}))],
        )
        .await;
    eventually("both webhooks act", |name| {
        let cluster = &cluster;
        async move {
            let labelled = cluster.create_cm("default", &name, json!({})).await.unwrap();
            let refused = cluster.create_cm("default", &format!("{name}-x"), json!({"deny": "yes"})).await.is_err();
            labelled["metadata"]["labels"]["mutated"] == "yes" && refused
        }
    })
    .await;

    let written = cluster.create_cm_warned("default", "ok", json!({"app": "web"})).await.unwrap();
    assert_eq!(written.warnings, vec!["validated".to_string()], "the webhook's warning reaches the client");
    let stored = written.obj;
    assert_eq!(stored["metadata"]["labels"], json!({"app": "web", "mutated": "yes"}));
    let read = cluster.get_cm("default", "ok").await.unwrap();
    assert_eq!(read["metadata"]["labels"]["mutated"], "yes", "the webhook's label is stored");

    let refused = cluster.create_cm("default", "bad", json!({"deny": "yes"})).await.unwrap_err();
    assert_eq!((refused.code(), refused.reason()), (403, "Forbidden"));
    assert_eq!(
        refused.to_string(),
        r#"admission webhook "deny.example.com" denied the request: the label deny=yes is not allowed"#
    );
    assert!(matches!(cluster.get_cm("default", "bad").await, Err(ApiError::NotFound(_))));

    // The validating webhook saw the mutated object, with the request's user and kind.
    let seen = reviews("validate").into_iter().find(|r| r["name"] == "ok").unwrap();
    assert_eq!(seen["object"]["metadata"]["labels"]["mutated"], "yes");
    assert_eq!((seen["operation"].as_str(), seen["namespace"].as_str()), (Some("CREATE"), Some("default")));
    assert_eq!(seen["userInfo"]["username"], "alice");
    assert_eq!(seen["kind"], json!({"group": "", "version": "v1", "kind": "ConfigMap"}));
    assert!(seen["oldObject"].is_null());
    cluster.stop().await;
}

#[actix_rt::test]
async fn an_unreachable_webhook_is_skipped_under_ignore_and_refuses_under_fail() {
    let server = Server::start();
    let cluster = Cluster::start().await;
    let closed = closed_port();
    let down = |name: &str, policy: &str, label: &str| {
        let mut hook = server.webhook(
            name,
            "x",
            json!({"failurePolicy": policy,
            "objectSelector": {"matchLabels": {"policy": label}}}),
        );
        hook["clientConfig"]["url"] = json!(format!("https://127.0.0.1:{closed}/x"));
        hook
    };
    let hooks = vec![down("ignored.example.com", "Ignore", "ignore"), down("failing.example.com", "Fail", "fail")];
    cluster.configure("validatingwebhookconfigurations", "down", hooks).await;
    eventually("the failing webhook refuses", |name| {
        let cluster = &cluster;
        async move { cluster.create_cm("default", &name, json!({"policy": "fail"})).await.is_err() }
    })
    .await;
    cluster.create_cm("default", "ignored", json!({"policy": "ignore"})).await.unwrap();
    let e = cluster.create_cm("default", "failed", json!({"policy": "fail"})).await.unwrap_err();
    assert_eq!((e.code(), e.reason()), (500, "InternalError"));
    let expected = format!(
        r#"Internal error occurred: failed calling webhook "failing.example.com": failed to call webhook: Post "https://127.0.0.1:{closed}/x": dial tcp 127.0.0.1:{closed}: connect: connection refused"#
    );
    assert_eq!(e.to_string(), expected);
    cluster.stop().await;
}

/// A port nothing listens on (bound, then closed).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[actix_rt::test]
async fn a_slow_webhook_is_cut_off_at_its_timeout_and_holds_up_nothing_else() {
    let server = Server::start();
    let cluster = Cluster::start().await;
    let slow = server.webhook(
        "slow.example.com",
        "slow",
        json!({"timeoutSeconds": 1,
        "objectSelector": {"matchLabels": {"slow": "yes"}}}),
    );
    cluster.configure("validatingwebhookconfigurations", "slow", vec![slow]).await;
    eventually("the slow webhook is called", |name| {
        let cluster = &cluster;
        async move {
            let _ = cluster.create_cm("default", &name, json!({"slow": "yes"})).await;
            !reviews("slow").is_empty()
        }
    })
    .await;

    let started = Instant::now();
    let slow_write = cluster.create_cm("default", "slow", json!({"slow": "yes"}));
    let other_writes = async {
        // While the slow call is pending, writes it does not concern go through at once.
        let quick = Instant::now();
        cluster.create_cm("default", "quick", json!({})).await.unwrap();
        cluster.create_cm("plain", "quick", json!({})).await.unwrap();
        quick.elapsed()
    };
    let (slow_result, quick_took) = futures::join!(slow_write, other_writes);
    let took = started.elapsed();
    let e = slow_result.unwrap_err();
    assert_eq!(e.code(), 500);
    assert!(e.to_string().contains(r#"failed calling webhook "slow.example.com""#), "{e}");
    assert!(e.to_string().contains("context deadline exceeded"), "a timeout: {e}");
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(4), "cut off at ~1 s, took {took:?}");
    assert!(quick_took < Duration::from_millis(900), "other writes waited {quick_took:?}");
    cluster.stop().await;
}

#[actix_rt::test]
async fn selectors_and_match_conditions_decide_which_requests_a_webhook_sees() {
    let server = Server::start();
    let cluster = Cluster::start().await;
    let hook = server.webhook("picky.example.com", "deny-all", json!({
        "namespaceSelector": {"matchLabels": {"hooked": "yes"}},
        "objectSelector": {"matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]},
        "matchConditions": [{"name": "not-exempt", "expression": "object.metadata.name != 'exempt' && request.userInfo.username == 'alice'"}],
    }));
    cluster.configure("validatingwebhookconfigurations", "picky", vec![hook]).await;
    eventually("the webhook refuses in the hooked namespace", |name| {
        let cluster = &cluster;
        async move { cluster.create_cm("hooked", &name, json!({})).await.is_err() }
    })
    .await;
    let e = cluster.create_cm("hooked", "refused", json!({})).await.unwrap_err();
    assert_eq!((e.code(), e.reason()), (422, "Invalid"), "the webhook's own code and reason");
    assert_eq!(e.to_string(), r#"admission webhook "picky.example.com" denied the request: nothing passes"#);
    cluster.create_cm("plain", "other-namespace", json!({})).await.unwrap();
    cluster.create_cm("hooked", "skipped", json!({"skip": "1"})).await.unwrap();
    cluster.create_cm("hooked", "exempt", json!({})).await.unwrap();
    let called: Vec<Value> = reviews("deny-all").iter().map(|r| r["name"].clone()).collect();
    for name in ["other-namespace", "skipped", "exempt"] {
        assert!(!called.contains(&json!(name)), "{name} went to the webhook");
    }
    cluster.stop().await;
}

#[actix_rt::test]
async fn a_delete_webhook_sees_the_stored_object_as_old_object_and_can_refuse() {
    let server = Server::start();
    let cluster = Cluster::start().await;
    let hook = server.webhook(
        "protect.example.com",
        "protect",
        json!({
        "rules": [{"operations": ["DELETE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}]}),
    );
    cluster.configure("validatingwebhookconfigurations", "protect", vec![hook]).await;
    cluster.create_cm("default", "kept", json!({"protected": "yes"})).await.unwrap();
    cluster.create_cm("default", "gone", json!({})).await.unwrap();
    eventually("the delete webhook is called", |name| {
        let cluster = &cluster;
        async move {
            cluster.create_cm("default", &name, json!({})).await.unwrap();
            cluster.delete_cm("default", &name).await.unwrap();
            reviews("protect").iter().any(|r| r["name"] == json!(name))
        }
    })
    .await;
    let e = cluster.delete_cm("default", "kept").await.unwrap_err();
    assert_eq!(
        (e.code(), e.to_string()),
        (403, r#"admission webhook "protect.example.com" denied the request: this object is protected"#.to_string())
    );
    assert!(cluster.get_cm("default", "kept").await.is_ok());
    assert!(cluster.delete_cm("default", "gone").await.unwrap().gone);
    let seen = reviews("protect").into_iter().find(|r| r["name"] == "kept").unwrap();
    assert_eq!(seen["operation"], "DELETE");
    assert!(seen["object"].is_null());
    assert_eq!(seen["oldObject"]["metadata"]["labels"]["protected"], "yes");
    assert_eq!(seen["options"]["kind"], "DeleteOptions");
    cluster.stop().await;
}

#[actix_rt::test]
async fn an_if_needed_webhook_is_reinvoked_once_after_a_later_webhook_changes_the_object() {
    let server = Server::start();
    let cluster = Cluster::start().await;
    // Configurations run by name: "a-first" before "b-second".
    let first = server.webhook("first.example.com", "first", json!({"reinvocationPolicy": "IfNeeded"}));
    let second = server.webhook("second.example.com", "second", json!({}));
    cluster.configure("mutatingwebhookconfigurations", "b-second", vec![second]).await;
    cluster.configure("mutatingwebhookconfigurations", "a-first", vec![first]).await;
    eventually("both mutating webhooks act", |name| {
        let cluster = &cluster;
        async move {
            let obj = cluster.create_cm("default", &name, json!({})).await.unwrap();
            obj["metadata"]["annotations"]["first-saw-second"] == "true"
        }
    })
    .await;
    let obj = cluster.create_cm("default", "reinvoked", json!({})).await.unwrap();
    assert_eq!(obj["metadata"]["labels"]["second"], "yes");
    assert_eq!(obj["metadata"]["annotations"]["first-saw-second"], "true", "first ran again after second");
    let calls = |path: &str| reviews(path).iter().filter(|r| r["name"] == "reinvoked").count();
    assert_eq!((calls("first"), calls("second")), (2, 1));
    cluster.stop().await;
}

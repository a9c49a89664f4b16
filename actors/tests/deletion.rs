//! Kubernetes deletion through the kind actors over a real single-member store: finalizers
//! keep an object marked (watchers see MODIFIED) until an update empties them (DELETED);
//! preconditions; deletecollection with a label selector; graceful deletion of a scheduled
//! pod; a namespace that terminates, refuses new content, and goes once it is empty.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use actix::Addr;
use actors::kinds::find;
use actors::{
    ApiResult, Create, Delete, DeleteCollection, DeleteOptions, Deleted, Get, KindActor, List, Part, Selectors, Update,
    Watch, WatchEvent, WatchStart,
};
use futures::StreamExt;
use serde_json::{json, Value};

use common::{cm, ns, single_member};

const DEADLINE: Duration = Duration::from_secs(10);

async fn next(start: &mut WatchStart) -> WatchEvent {
    let event = actix_rt::time::timeout(DEADLINE, start.rest.next()).await.expect("no watch event in time");
    event.expect("the watch ended")
}

fn name_of(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap()
}

async fn create(actor: &Addr<KindActor>, namespace: Option<&str>, obj: Value) -> ApiResult<Value> {
    actor.send(Create { namespace: namespace.map(Into::into), obj, field_manager: None }).await.unwrap()
}

async fn delete(actor: &Addr<KindActor>, namespace: Option<&str>, name: &str, options: &str) -> ApiResult<Deleted> {
    let options = DeleteOptions::from_body(options.as_bytes()).unwrap();
    let msg = Delete { namespace: namespace.map(Into::into), name: name.into(), options };
    actor.send(msg).await.unwrap()
}

async fn get(actor: &Addr<KindActor>, namespace: Option<&str>, name: &str) -> ApiResult<Value> {
    actor.send(Get { namespace: namespace.map(Into::into), name: name.into() }).await.unwrap()
}

async fn update(actor: &Addr<KindActor>, namespace: Option<&str>, obj: Value) -> ApiResult<Value> {
    let msg = Update {
        namespace: namespace.map(Into::into),
        name: name_of(&obj).into(),
        obj,
        field_manager: None,
        part: Part::Main,
    };
    actor.send(msg).await.unwrap()
}

fn with_finalizers(mut obj: Value, finalizers: &[&str]) -> Value {
    obj["metadata"]["finalizers"] = json!(finalizers);
    obj
}

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

#[actix_rt::test]
async fn finalizers_preconditions_collections_pods_and_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let node = single_member(dir.path()).await;
    let namespaces = KindActor::start_supervised(find("", "v1", "namespaces").unwrap(), node.clone());
    let cms = KindActor::start_supervised(find("", "v1", "configmaps").unwrap(), node.clone());
    let pods = KindActor::start_supervised(find("", "v1", "pods").unwrap(), node.clone());
    create(&namespaces, None, namespace("default")).await.unwrap();
    let default = Some("default");

    // A finalizer keeps a deleted object, marked; a second delete changes nothing.
    let cm_kind = find("", "v1", "configmaps").unwrap();
    let mut watch = cms.send(Watch { namespace: ns(), ..Default::default() }).await.unwrap().unwrap();
    let held = create(&cms, default, with_finalizers(cm("held", "1"), &["example.com/hold"])).await.unwrap();
    assert_eq!(next(&mut watch).await.event_type, "ADDED");
    let first = delete(&cms, default, "held", "{}").await.unwrap();
    assert!(!first.gone);
    assert!(first.object["metadata"]["deletionTimestamp"].is_string(), "{}", first.object);
    assert_eq!(first.object["metadata"]["deletionGracePeriodSeconds"], 0);
    let modified = next(&mut watch).await;
    assert_eq!((modified.event_type, name_of(&modified.object)), ("MODIFIED", "held"));
    let second = delete(&cms, default, "held", "{}").await.unwrap();
    assert_eq!(second.object["metadata"]["resourceVersion"], first.object["metadata"]["resourceVersion"]);

    // No finalizer may be added now; the mark stays through updates; emptying them deletes.
    let added = update(&cms, default, with_finalizers(cm("held", "1"), &["example.com/hold", "more"])).await;
    assert_eq!(added.unwrap_err().code(), 422);
    let relabelled = update(&cms, default, with_finalizers(cm("held", "2"), &["example.com/hold"])).await.unwrap();
    assert_eq!(relabelled["metadata"]["deletionTimestamp"], first.object["metadata"]["deletionTimestamp"]);
    assert_eq!(next(&mut watch).await.event_type, "MODIFIED");
    update(&cms, default, cm("held", "2")).await.unwrap();
    let deleted = next(&mut watch).await;
    assert_eq!((deleted.event_type, name_of(&deleted.object)), ("DELETED", "held"));
    assert_eq!(get(&cms, default, "held").await.unwrap_err().code(), 404);
    assert_ne!(held["metadata"]["uid"], Value::Null);

    // Preconditions that do not hold conflict; a dry run changes nothing.
    let pre = create(&cms, default, cm("pre", "1")).await.unwrap();
    let e = delete(&cms, default, "pre", r#"{"preconditions": {"uid": "wrong"}}"#).await.unwrap_err();
    assert_eq!(e.code(), 409);
    assert!(e
        .to_string()
        .starts_with(r#"Operation cannot be fulfilled on ConfigMap "pre": the UID in the precondition (wrong)"#));
    let dry = delete(&cms, default, "pre", r#"{"dryRun": ["All"]}"#).await.unwrap();
    assert!(dry.gone);
    assert_eq!(get(&cms, default, "pre").await.unwrap(), pre);
    let uid = pre["metadata"]["uid"].as_str().unwrap();
    let gone = delete(&cms, default, "pre", &format!(r#"{{"preconditions": {{"uid": "{uid}"}}}}"#)).await.unwrap();
    assert!(gone.gone);

    // deletecollection deletes what the selector selects, and answers with it.
    for (name, app) in [("web-1", "web"), ("web-2", "web"), ("db-1", "db")] {
        let mut obj = cm(name, "1");
        obj["metadata"]["labels"] = json!({"app": app});
        create(&cms, default, obj).await.unwrap();
    }
    let selectors = Selectors::parse(cm_kind, "app=web", "").unwrap();
    let msg = DeleteCollection { namespace: ns(), selectors, ..Default::default() };
    let page = cms.send(msg).await.unwrap().unwrap();
    let deleted: Vec<String> = page.items().unwrap().iter().map(|o| name_of(o).to_string()).collect();
    assert_eq!(deleted, ["web-1", "web-2"]);
    let left = cms.send(List { namespace: ns(), ..Default::default() }).await.unwrap().unwrap();
    assert_eq!(left.items().unwrap().iter().map(|o| name_of(o).to_string()).collect::<Vec<_>>(), ["db-1"]);

    // A scheduled pod gets its grace period; grace 0 removes it; an unscheduled one goes at once.
    let pod = |name: &str, node: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx"}]}})
    };
    create(&pods, default, pod("run", "node-1")).await.unwrap();
    let graceful = delete(&pods, default, "run", "{}").await.unwrap();
    assert!(!graceful.gone);
    assert_eq!(graceful.object["metadata"]["deletionGracePeriodSeconds"], 30);
    assert!(!delete(&pods, default, "run", "{}").await.unwrap().gone, "a second delete waits too");
    assert!(delete(&pods, default, "run", r#"{"gracePeriodSeconds": 0}"#).await.unwrap().gone);
    create(&pods, default, pod("pending", "")).await.unwrap();
    assert!(delete(&pods, default, "pending", "{}").await.unwrap().gone);

    // A namespace terminates: its contents go, but a finalizer holds one and so the namespace.
    create(&namespaces, None, namespace("doomed")).await.unwrap();
    let doomed = Some("doomed");
    create(&cms, doomed, cm("c1", "1")).await.unwrap();
    create(&cms, doomed, with_finalizers(cm("stuck", "1"), &["example.com/hold"])).await.unwrap();
    let terminating = delete(&namespaces, None, "doomed", "{}").await.unwrap();
    assert!(!terminating.gone);
    assert_eq!(terminating.object["status"]["phase"], "Terminating");
    assert_eq!(terminating.object["spec"]["finalizers"], json!(["kubernetes"]));
    assert_eq!(get(&cms, doomed, "c1").await.unwrap_err().code(), 404);
    assert!(get(&cms, doomed, "stuck").await.unwrap()["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(get(&namespaces, None, "doomed").await.unwrap()["status"]["phase"], "Terminating");
    let refused = create(&cms, doomed, cm("late", "1")).await.unwrap_err();
    assert_eq!((refused.code(), refused.reason()), (403, "Forbidden"));
    assert_eq!(
        refused.to_string(),
        r#"configmaps "late" is forbidden: unable to create new content in namespace doomed because it is being terminated"#
    );
    // Once the finalizer is gone, the next delete of the namespace finishes it.
    update(&cms, doomed, cm("stuck", "1")).await.unwrap();
    let again = delete(&namespaces, None, "doomed", "{}").await.unwrap();
    assert_eq!(again.object["status"]["phase"], "Terminating");
    assert_eq!(get(&namespaces, None, "doomed").await.unwrap_err().code(), 404);

    // An empty namespace goes on its first delete.
    create(&namespaces, None, namespace("quick")).await.unwrap();
    create(&cms, Some("quick"), cm("c", "1")).await.unwrap();
    delete(&namespaces, None, "quick", "{}").await.unwrap();
    assert_eq!(get(&namespaces, None, "quick").await.unwrap_err().code(), 404);
    assert_eq!(get(&cms, Some("quick"), "c").await.unwrap_err().code(), 404);
    node.shutdown().await;
}

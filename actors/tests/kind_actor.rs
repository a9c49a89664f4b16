//! The kind actor over a real single-member store: create, get, list (with paging), update
//! with and without a resourceVersion, conflicts, and delete.

#![allow(clippy::unwrap_used)]

mod common;

use actix::Addr;
use actors::kinds::find;
use actors::{Create, Delete, Get, KindActor, List, Part, Update};
use serde_json::{json, Value};

use common::{cm, ns, single_member};

async fn create(actor: &Addr<KindActor>, obj: Value) -> actors::ApiResult<Value> {
    actor.send(Create { namespace: ns(), obj, field_manager: None }).await.unwrap()
}

#[actix_rt::test]
async fn the_configmap_actor_creates_gets_lists_updates_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let node = single_member(dir.path()).await;
    let namespaces = KindActor::start_supervised(find("", "v1", "namespaces").unwrap(), node.clone());
    let actor = KindActor::start_supervised(find("", "v1", "configmaps").unwrap(), node.clone());

    let missing_ns = create(&actor, cm("a", "1")).await.unwrap_err();
    assert_eq!(missing_ns.to_string(), r#"namespaces "default" not found"#);
    let default = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
    namespaces.send(Create { namespace: None, obj: default, field_manager: None }).await.unwrap().unwrap();

    let created = create(&actor, cm("a", "1")).await.unwrap();
    let rv: i64 = created["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    assert_eq!(created["metadata"]["namespace"], "default");
    let again = create(&actor, cm("a", "2")).await.unwrap_err();
    assert_eq!((again.reason(), again.to_string().as_str()), ("AlreadyExists", r#"configmaps "a" already exists"#));
    create(&actor, cm("b", "1")).await.unwrap();
    create(&actor, cm("c", "1")).await.unwrap();

    let got = actor.send(Get { namespace: ns(), name: "a".into() }).await.unwrap().unwrap();
    assert_eq!(got, created);

    // A list right after writes sees them all: it waits for the cache to catch up.
    let all = actor.send(List { namespace: None, ..Default::default() }).await.unwrap().unwrap();
    assert_eq!(all.objects.len(), 3);
    assert!(all.resource_version > rv && all.continue_token.is_none());
    let first = actor.send(List { namespace: ns(), limit: 2, ..Default::default() }).await.unwrap().unwrap();
    assert_eq!(first.items().unwrap().iter().map(|o| o["metadata"]["name"].clone()).collect::<Vec<_>>(), ["a", "b"]);
    create(&actor, cm("d", "1")).await.unwrap();
    let rest = actor
        .send(List { namespace: ns(), limit: 2, continue_token: first.continue_token, ..Default::default() })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rest.objects.len(), 1, "later pages are at the first page's revision");
    assert_eq!(rest.resource_version, first.resource_version);

    let mut changed = created.clone();
    changed["data"]["k"] = json!("2");
    let updated = actor
        .send(Update { namespace: ns(), name: "a".into(), obj: changed.clone(), field_manager: None, part: Part::Main })
        .await
        .unwrap()
        .unwrap();
    assert_ne!(updated["metadata"]["resourceVersion"], created["metadata"]["resourceVersion"]);
    assert_eq!(updated["metadata"]["uid"], created["metadata"]["uid"]);
    let stale = actor
        .send(Update { namespace: ns(), name: "a".into(), obj: changed, field_manager: None, part: Part::Main })
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(stale.reason(), "Conflict");
    let blind = actor
        .send(Update { namespace: ns(), name: "a".into(), obj: cm("a", "3"), field_manager: None, part: Part::Main })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(blind["data"]["k"], "3");
    let absent = actor
        .send(Update { namespace: ns(), name: "zz".into(), obj: cm("zz", "1"), field_manager: None, part: Part::Main })
        .await
        .unwrap();
    assert_eq!(absent.unwrap_err().code(), 404);

    let deleted =
        actor.send(Delete { namespace: ns(), name: "a".into(), ..Default::default() }).await.unwrap().unwrap();
    assert!(deleted.gone);
    assert_eq!(deleted.object["data"]["k"], "3");
    let gone = actor.send(Get { namespace: ns(), name: "a".into() }).await.unwrap().unwrap_err();
    assert_eq!(gone.to_string(), r#"configmaps "a" not found"#);
    let again = actor.send(Delete { namespace: ns(), name: "a".into(), ..Default::default() }).await.unwrap();
    assert_eq!(again.unwrap_err().code(), 404);
    let left = actor.send(List { namespace: ns(), ..Default::default() }).await.unwrap().unwrap();
    assert_eq!(left.objects.len(), 3);
    node.shutdown().await;
}

#[actix_rt::test]
async fn a_kind_actor_that_panics_is_started_again_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let node = single_member(dir.path()).await;
    let actors = actors::KindActors::start(&node);
    let kind = find("", "v1", "configmaps").unwrap();
    let first = actors.get(kind).unwrap();
    assert!(first.send(actors::kind_actor::InjectPanic).await.is_err(), "the panic ends the actor");
    // Its task is gone once the panic has unwound; the registry starts a new one.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while first.connected() {
        assert!(std::time::Instant::now() < deadline, "the panicked actor never went away");
        actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let again = actors.get(kind).unwrap();
    assert!(again.connected());
    let list = again.send(List { namespace: ns(), ..Default::default() }).await.unwrap().unwrap();
    assert!(list.objects.is_empty());
    node.shutdown().await;
}

//! Watches on the kind actor over a real single-member store: the changes after a
//! revision in order, a start from "now", a name filter with bookmarks, and 410 Expired
//! for a revision older than the cache ring.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use actix::Addr;
use actors::kinds::find;
use actors::{Create, Delete, KindActor, List, Part, Selectors, Update, Watch, WatchEvent, WatchStart};
use futures::StreamExt;
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(10);

use common::{cm, ns, single_member};

fn rv(obj: &Value) -> i64 {
    obj["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap()
}

/// (type, name, resourceVersion) of an event.
fn summary(e: &WatchEvent) -> (&'static str, String, i64) {
    (e.event_type, e.object["metadata"]["name"].as_str().unwrap_or("").to_string(), rv(&e.object))
}

async fn next(start: &mut WatchStart) -> Option<WatchEvent> {
    actix_rt::time::timeout(DEADLINE, start.rest.next()).await.expect("no watch event in time")
}

async fn watch(actor: &Addr<KindActor>, name: Option<&str>, from: Option<i64>, bookmarks: bool) -> WatchStart {
    let cm = find("", "v1", "configmaps").unwrap();
    let field = name.map(|n| format!("metadata.name={n}")).unwrap_or_default();
    let selectors = Selectors::parse(cm, "", &field).unwrap();
    let msg = Watch { namespace: ns(), selectors, resource_version: from, bookmarks };
    actor.send(msg).await.unwrap().unwrap()
}

#[actix_rt::test]
async fn watches_see_later_changes_in_order_and_too_old_revisions_expire() {
    let dir = tempfile::tempdir().unwrap();
    let node = single_member(dir.path()).await;
    let namespaces = KindActor::start_supervised(find("", "v1", "namespaces").unwrap(), node.clone());
    let actor = KindActor::start_with_cache(find("", "v1", "configmaps").unwrap(), node.clone(), 4);
    let default = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
    namespaces.send(Create { namespace: None, obj: default, field_manager: None }).await.unwrap().unwrap();

    let a = actor.send(Create { namespace: ns(), obj: cm("a", "1"), field_manager: None }).await.unwrap().unwrap();
    let mut after_a = watch(&actor, None, Some(rv(&a)), false).await;
    let mut quiet = watch(&actor, Some("nothing-here"), Some(rv(&a)), true).await;
    let updated = actor
        .send(Update { namespace: ns(), name: "a".into(), obj: cm("a", "2"), field_manager: None, part: Part::Main })
        .await
        .unwrap()
        .unwrap();
    let b = actor.send(Create { namespace: ns(), obj: cm("b", "1"), field_manager: None }).await.unwrap().unwrap();
    let deleted =
        actor.send(Delete { namespace: ns(), name: "a".into(), ..Default::default() }).await.unwrap().unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(summary(&next(&mut after_a).await.unwrap()));
    }
    assert!(after_a.initial.is_empty());
    assert_eq!(seen[..2], [("MODIFIED", "a".into(), rv(&updated)), ("ADDED", "b".into(), rv(&b))]);
    assert_eq!((seen[2].0, seen[2].1.as_str()), ("DELETED", "a"));
    assert!(seen[2].2 > rv(&b), "a delete carries the deleting revision: {seen:?}");
    assert_eq!(deleted.object["data"]["k"], "2");

    // A watcher of another name hears only bookmarks, at or past the last change.
    let bookmark = next(&mut quiet).await.unwrap();
    assert_eq!(bookmark.event_type, "BOOKMARK");
    assert!(rv(&bookmark.object) >= rv(&b), "{bookmark:?}");

    // From "now": the current objects as ADDED first.
    let now = watch(&actor, None, None, false).await;
    assert_eq!(now.initial.iter().map(summary).collect::<Vec<_>>(), [("ADDED", "b".into(), rv(&b))]);

    // More changes than the ring holds: the first revisions leave the cache...
    for i in 0..6 {
        actor
            .send(Update {
                namespace: ns(),
                name: "b".into(),
                obj: cm("b", &i.to_string()),
                field_manager: None,
                part: Part::Main,
            })
            .await
            .unwrap()
            .unwrap();
    }
    let last = actor.send(List { namespace: ns(), ..Default::default() }).await.unwrap().unwrap();
    // ... so a watch from before the ring replays the store's history, then goes on live.
    let replayed = watch(&actor, None, Some(rv(&a)), false).await;
    let types: Vec<_> = replayed.initial.iter().map(|e| summary(e).0).collect();
    assert_eq!(types[..3], ["MODIFIED", "ADDED", "DELETED"], "{types:?}");
    assert_eq!(types.len(), 9, "every change after the revision, once: {types:?}");
    assert_eq!(rv(&replayed.initial[8].object), last.resource_version);

    // Once the store compacted that history, the watch expires.
    node.compact(last.resource_version).await.unwrap();
    let mut expired = watch(&actor, None, Some(rv(&a)), false).await;
    let [error] = expired.initial.as_slice() else { panic!("{:?}", expired.initial) };
    assert_eq!((error.event_type, error.object["code"].as_i64()), ("ERROR", Some(410)));
    assert_eq!(error.object["reason"], "Expired");
    let message = error.object["message"].as_str().unwrap();
    assert!(message.starts_with(&format!("too old resource version: {} (", rv(&a))), "{message}");
    assert!(next(&mut expired).await.is_none(), "the stream ends after the error");
    node.shutdown().await;
}

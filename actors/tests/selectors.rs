//! Label and field selectors on the kind actor over a real single-member store: paged lists
//! whose `limit` counts selected objects (first page from the cache, later ones from the
//! store), and watches where objects entering or leaving the selection are ADDED or DELETED.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use actix::Addr;
use actors::kinds::find;
use actors::{Create, KindActor, List, Part, Selectors, Update, Watch, WatchEvent, WatchStart};
use futures::StreamExt;
use serde_json::{json, Value};

use common::{ns, single_member};

const DEADLINE: Duration = Duration::from_secs(10);

fn labelled(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}})
}

fn selectors(label: &str, field: &str) -> Selectors {
    Selectors::parse(find("", "v1", "configmaps").unwrap(), label, field).unwrap()
}

fn names(items: &[Value]) -> Vec<String> {
    items.iter().map(|o| o["metadata"]["name"].as_str().unwrap().to_string()).collect()
}

async fn start(dir: &std::path::Path) -> (raft_store::StoreNode, Addr<KindActor>) {
    let node = single_member(dir).await;
    let namespaces = KindActor::start_supervised(find("", "v1", "namespaces").unwrap(), node.clone());
    let default = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
    namespaces.send(Create { namespace: None, obj: default, field_manager: None }).await.unwrap().unwrap();
    let actor = KindActor::start_supervised(find("", "v1", "configmaps").unwrap(), node.clone());
    (node, actor)
}

#[actix_rt::test]
async fn selector_lists_page_through_every_selected_object_once() {
    let dir = tempfile::tempdir().unwrap();
    let (node, actor) = start(dir.path()).await;
    // c00..c11; every third is app=web.
    for i in 0..12 {
        let app = if i % 3 == 0 { "web" } else { "db" };
        let obj = labelled(&format!("c{i:02}"), json!({"app": app}));
        actor.send(Create { namespace: ns(), obj, field_manager: None }).await.unwrap().unwrap();
    }
    let web = selectors("app=web", "");
    let all = actor.send(List { namespace: ns(), selectors: web.clone(), ..Default::default() }).await.unwrap();
    assert_eq!(names(&all.unwrap().items().unwrap()), ["c00", "c03", "c06", "c09"]);

    let mut seen = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let list = List { namespace: ns(), limit: 3, continue_token: token, selectors: web.clone() };
        let page = actor.send(list).await.unwrap().unwrap();
        assert!(page.objects.len() <= 3);
        seen.extend(names(&page.items().unwrap()));
        pages += 1;
        token = page.continue_token;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen, ["c00", "c03", "c06", "c09"]);
    assert_eq!(pages, 2, "c09 comes after c06 with keys left, so a second page; none after it");

    // A field selector on the name, and on a namespace: the latter reads just that prefix.
    let one = List { namespace: None, selectors: selectors("", "metadata.name=c04"), ..Default::default() };
    assert_eq!(names(&actor.send(one).await.unwrap().unwrap().items().unwrap()), ["c04"]);
    let in_default = List { selectors: selectors("app!=web", "metadata.namespace=default"), ..Default::default() };
    assert_eq!(actor.send(in_default).await.unwrap().unwrap().objects.len(), 8);
    let elsewhere = List { selectors: selectors("", "metadata.namespace=team"), ..Default::default() };
    assert!(actor.send(elsewhere).await.unwrap().unwrap().objects.is_empty());
    node.shutdown().await;
}

/// Replaces the configmap `name` with one labelled `labels`.
async fn relabel(actor: &Addr<KindActor>, name: &str, labels: Value) -> Value {
    let (name, obj) = (name.to_string(), labelled(name, labels));
    let update = Update { namespace: ns(), name, obj, field_manager: None, part: Part::Main };
    actor.send(update).await.unwrap().unwrap()
}

async fn next(start: &mut WatchStart) -> WatchEvent {
    actix_rt::time::timeout(DEADLINE, start.rest.next()).await.expect("no watch event in time").unwrap()
}

fn summary(e: &WatchEvent) -> (&'static str, String, Value) {
    (e.event_type, e.object["metadata"]["name"].as_str().unwrap().to_string(), e.object["metadata"]["labels"].clone())
}

#[actix_rt::test]
async fn selector_watches_see_objects_enter_and_leave_the_selection() {
    let dir = tempfile::tempdir().unwrap();
    let (node, actor) = start(dir.path()).await;
    let a = actor
        .send(Create { namespace: ns(), obj: labelled("a", json!({"app": "web"})), field_manager: None })
        .await
        .unwrap()
        .unwrap();
    actor.send(Create { namespace: ns(), obj: labelled("b", json!({})), field_manager: None }).await.unwrap().unwrap();
    let watch = Watch { namespace: ns(), selectors: selectors("app=web", ""), ..Default::default() };
    let mut web = actor.send(watch).await.unwrap().unwrap();
    assert_eq!(web.initial.iter().map(summary).collect::<Vec<_>>(), [("ADDED", "a".into(), json!({"app": "web"}))]);
    let rv = a["metadata"]["resourceVersion"].as_str().unwrap().parse::<i64>().unwrap();
    let replay = Watch {
        namespace: ns(),
        selectors: selectors("app=web", ""),
        resource_version: Some(rv),
        ..Default::default()
    };
    let mut replay = actor.send(replay).await.unwrap().unwrap();

    // b gets the label: ADDED; a loses it: DELETED, showing a as it last selected.
    relabel(&actor, "b", json!({"app": "web"})).await;
    relabel(&actor, "b", json!({"app": "web", "x": "1"})).await;
    let dropped = relabel(&actor, "a", json!({"app": "db"})).await;
    let want = [
        ("ADDED", "b".to_string(), json!({"app": "web"})),
        ("MODIFIED", "b".to_string(), json!({"app": "web", "x": "1"})),
        ("DELETED", "a".to_string(), json!({"app": "web"})),
    ];
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(next(&mut web).await);
    }
    assert_eq!(seen.iter().map(summary).collect::<Vec<_>>(), want);
    assert_eq!(seen[2].object["metadata"]["resourceVersion"], dropped["metadata"]["resourceVersion"], "at the change");
    // A watch from a revision replays the same through the cache ring.
    let mut replayed: Vec<_> = replay.initial.iter().map(summary).collect();
    while replayed.len() < 3 {
        replayed.push(summary(&next(&mut replay).await));
    }
    assert_eq!(replayed, want);
    node.shutdown().await;
}

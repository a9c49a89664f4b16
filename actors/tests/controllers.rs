//! The controller runtime over a real single-member store: the service account controller
//! makes a `default` ServiceAccount in each namespace, makes it again when deleted, and keeps
//! working after its actor panics (the watchdog starts it again).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use actors::controller::PanicController;
use actors::kinds::find;
use actors::{Create, Delete, Get, KindActors};
use serde_json::json;

use common::single_member;

/// Polls `get default SA in ns` until it exists or the deadline passes.
async fn wait_for_default_sa(kinds: &KindActors, ns: &str) {
    let sa = kinds.get(find("", "v1", "serviceaccounts").unwrap()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = sa.send(Get { namespace: Some(ns.into()), name: "default".into() }).await.unwrap();
        if got.is_ok() {
            return;
        }
        assert!(Instant::now() < deadline, "no default service account in {ns}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn every_namespace_gets_a_default_service_account_even_after_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let node = single_member(dir.path()).await;
    let kinds = KindActors::start(&node);
    let controllers = actors::controllers::start_all(kinds.clone(), node.clone());
    let namespaces = kinds.get(find("", "v1", "namespaces").unwrap()).unwrap();
    let create_ns = |name: &str| Create {
        namespace: None,
        obj: json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
        field_manager: None,
    };
    namespaces.send(create_ns("team-a")).await.unwrap().unwrap();
    wait_for_default_sa(&kinds, "team-a").await;

    // Deleted, it comes back.
    let sa = kinds.get(find("", "v1", "serviceaccounts").unwrap()).unwrap();
    let delete = Delete { namespace: Some("team-a".into()), name: "default".into(), ..Default::default() };
    sa.send(delete).await.unwrap().unwrap();
    wait_for_default_sa(&kinds, "team-a").await;

    // A panic kills the controller's actor; the watchdog starts it again.
    assert!(controllers.send(PanicController("serviceaccount")).await.unwrap());
    namespaces.send(create_ns("team-b")).await.unwrap().unwrap();
    wait_for_default_sa(&kinds, "team-b").await;
}

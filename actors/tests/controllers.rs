//! The controller runtime over a real single-member store: the service account controller
//! makes a `default` ServiceAccount in each namespace, makes it again when deleted, and keeps
//! working after its actor panics (the watchdog starts it again); the root CA publisher
//! keeps `kube-root-ca.crt` in each namespace.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use actors::controller::PanicController;
use actors::kind_actor::Fenced;
use actors::kinds::find;
use actors::{Create, Delete, Get, KindActors, Update};
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
    let controllers = actors::controllers::start_all(kinds.clone(), node.clone(), None);
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
    // The store's RocksDB threads must not outlive the test's runtime.
    node.shutdown().await;
}

/// With the cluster CA given, every namespace gets `kube-root-ca.crt` holding it, made
/// again when deleted and put right when edited.
#[actix_rt::test]
async fn every_namespace_gets_the_root_ca_config_map() {
    let dir = tempfile::tempdir().unwrap();
    let node = single_member(dir.path()).await;
    let kinds = KindActors::start(&node);
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let _controllers = actors::controllers::start_all(kinds.clone(), node.clone(), Some(pem.to_string()));
    let namespaces = kinds.get(find("", "v1", "namespaces").unwrap()).unwrap();
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-c"}});
    namespaces.send(Create { namespace: None, obj: ns, field_manager: None }).await.unwrap().unwrap();
    let configmaps = kinds.get(find("", "v1", "configmaps").unwrap()).unwrap();
    let get = || Get { namespace: Some("team-c".into()), name: "kube-root-ca.crt".into() };
    let wait_for_ca = || async {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(cm) = configmaps.send(get()).await.unwrap() {
                if cm["data"]["ca.crt"] == pem {
                    return cm;
                }
            }
            assert!(Instant::now() < deadline, "no kube-root-ca.crt with the CA in team-c");
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let mut cm = wait_for_ca().await;
    cm["data"]["ca.crt"] = json!("tampered");
    let name = "kube-root-ca.crt".to_string();
    let part = actors::object_store::Part::Main;
    let update = Update { namespace: Some("team-c".into()), name, obj: cm, field_manager: None, part };
    configmaps.send(update).await.unwrap().unwrap();
    wait_for_ca().await;
    let delete = Delete { namespace: Some("team-c".into()), name: "kube-root-ca.crt".into(), ..Default::default() };
    configmaps.send(delete).await.unwrap().unwrap();
    wait_for_ca().await;
    node.shutdown().await;
}

/// A deposed leader's writes fail at the store: a write fenced to another term than the
/// current leadership's is refused (503, nothing written), one fenced to the current term is
/// stored; a scheduler binding fenced likewise.
#[actix_rt::test]
async fn writes_fenced_to_an_ended_leadership_fail_at_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let node = single_member(dir.path()).await;
    let kinds = KindActors::start(&node);
    let term = node.leader_term().expect("a single member leads");
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
    let namespaces = kinds.get(find("", "v1", "namespaces").unwrap()).unwrap();
    namespaces.send(Create { namespace: None, obj: namespace, field_manager: None }).await.unwrap().unwrap();
    let configmaps = kinds.get(find("", "v1", "configmaps").unwrap()).unwrap();
    let create = |name: &str| Create {
        namespace: Some("default".into()),
        obj: json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}),
        field_manager: None,
    };

    let stale = configmaps.send(Fenced(term - 1, create("stale"))).await.unwrap().unwrap_err();
    assert_eq!(stale.code(), 503, "{stale}");
    assert!(stale.to_string().contains("fenced"), "{stale}");
    let get = |name: &str| Get { namespace: Some("default".into()), name: name.into() };
    assert_eq!(configmaps.send(get("stale")).await.unwrap().unwrap_err().code(), 404, "nothing was written");

    configmaps.send(Fenced(term, create("current"))).await.unwrap().unwrap();
    let update = |term| {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "current"}, "data": {"k": "v"}});
        let (namespace, name) = (Some("default".into()), "current".into());
        let msg = Update { namespace, name, obj, field_manager: None, part: actors::object_store::Part::Main };
        Fenced(term, msg)
    };
    assert_eq!(configmaps.send(update(term + 1)).await.unwrap().unwrap_err().code(), 503);
    configmaps.send(update(term)).await.unwrap().unwrap();

    // The scheduler's binding.
    let pods = kinds.get(find("", "v1", "pods").unwrap()).unwrap();
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "registry.invalid/c:1"}]}});
    let pod =
        pods.send(Create { namespace: Some("default".into()), obj: pod, field_manager: None }).await.unwrap().unwrap();
    let binding = actors::scheduler::binding::Binding::of(&pod, "node-1");
    let refused = binding.write_fenced(&node, "pods", "test", Some(term - 1)).await.unwrap_err();
    assert_eq!(refused.code(), 503, "{refused}");
    let bound = binding.write_fenced(&node, "pods", "test", Some(term)).await.unwrap();
    assert_eq!(bound["spec"]["nodeName"], "node-1");
    node.shutdown().await;
}

//! The built-in admission chain over a real single-member store, with the resourcequota
//! controller running: NamespaceLifecycle (404 into a missing namespace, 403 into a
//! terminating one, `default` may not be deleted), LimitRanger (defaults and the
//! annotation on a new pod, a limit over `max` refused) and ResourceQuota (creates charged
//! to `status.used` until a limit is exceeded, a pod without the cpu request a quota needs
//! refused, usage recounted by the controller after a delete).

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::admission::builtin;
use actors::controller::Controllers;
use actors::controllers::resource_quota::ResourceQuotaController;
use actors::kinds::find;
use actors::{ApiResult, Create, Delete, Get, KindActors, Update};
use serde_json::{json, Value};

use common::single_member;

async fn create(kinds: &KindActors, resource: &str, ns: Option<&str>, obj: Value) -> ApiResult<Value> {
    let actor = kinds.get(find("", "v1", resource).unwrap()).unwrap();
    actor.send(Create { namespace: ns.map(Into::into), obj, field_manager: None }).await.unwrap()
}

async fn get(kinds: &KindActors, resource: &str, ns: Option<&str>, name: &str) -> ApiResult<Value> {
    let actor = kinds.get(find("", "v1", resource).unwrap()).unwrap();
    actor.send(Get { namespace: ns.map(Into::into), name: name.into() }).await.unwrap()
}

async fn delete(kinds: &KindActors, resource: &str, ns: Option<&str>, name: &str) -> ApiResult<actors::Deleted> {
    let actor = kinds.get(find("", "v1", resource).unwrap()).unwrap();
    let msg = Delete { namespace: ns.map(Into::into), name: name.into(), ..Default::default() };
    actor.send(msg).await.unwrap()
}

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

fn configmap(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}})
}

/// A pod whose one container `app` has `resources`.
fn pod(name: &str, resources: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1", "resources": resources}]}})
}

fn cpu(amount: &str) -> Value {
    json!({"requests": {"cpu": amount}, "limits": {"cpu": amount}})
}

/// Polls quota `q` in `ns` until `check` holds of its `status.used`.
async fn until_used(kinds: &KindActors, ns: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let quota = get(kinds, "resourcequotas", Some(ns), "q").await.unwrap();
        if check(&quota["status"]["used"]) {
            return quota;
        }
        assert!(Instant::now() < deadline, "quota usage never settled: {}", quota["status"]);
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn built_in_admission_keeps_namespaces_limits_and_quotas() {
    let dir = tempfile::tempdir().unwrap();
    let node = single_member(dir.path()).await;
    let kinds = KindActors::start(&node);
    kinds.set_admission(Arc::new(builtin::chain(node.clone())));
    let _controllers = Controllers::new(kinds.clone(), node.clone()).with(ResourceQuotaController::default).run();
    for ns in ["default", "team", "quota"] {
        create(&kinds, "namespaces", None, namespace(ns)).await.unwrap();
    }

    // NamespaceLifecycle: nothing into a missing namespace; `default` stays.
    let missing = create(&kinds, "configmaps", Some("nope"), configmap("c")).await.unwrap_err();
    assert_eq!((missing.code(), missing.to_string()), (404, r#"namespaces "nope" not found"#.to_string()));
    let protected = delete(&kinds, "namespaces", None, "default").await.unwrap_err();
    assert_eq!(protected.code(), 403);
    assert_eq!(protected.to_string(), r#"namespaces "default" is forbidden: this namespace may not be deleted"#);
    assert!(get(&kinds, "namespaces", None, "default").await.is_ok());
    // A terminating namespace refuses new content but its objects still update.
    create(&kinds, "namespaces", None, namespace("doomed")).await.unwrap();
    let mut held = configmap("held");
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    create(&kinds, "configmaps", Some("doomed"), held).await.unwrap();
    delete(&kinds, "namespaces", None, "doomed").await.unwrap();
    let late = create(&kinds, "configmaps", Some("doomed"), configmap("late")).await.unwrap_err();
    assert_eq!(late.code(), 403);
    assert_eq!(
        late.to_string(),
        r#"configmaps "late" is forbidden: unable to create new content in namespace doomed because it is being terminated"#
    );
    let cms = kinds.get(find("", "v1", "configmaps").unwrap()).unwrap();
    let release = Update {
        namespace: Some("doomed".into()),
        name: "held".into(),
        obj: configmap("held"),
        field_manager: None,
        part: actors::Part::Main,
    };
    cms.send(release).await.unwrap().unwrap();

    // LimitRanger: defaults filled in and recorded; a limit past `max` refused.
    let limits = json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "cpu"},
        "spec": {"limits": [{"type": "Container", "max": {"cpu": "1"}, "default": {"cpu": "500m"}, "defaultRequest": {"cpu": "100m"}}]}});
    create(&kinds, "limitranges", Some("team"), limits).await.unwrap();
    let defaulted = create(&kinds, "pods", Some("team"), pod("small", json!({}))).await.unwrap();
    let resources = &defaulted["spec"]["containers"][0]["resources"];
    assert_eq!(resources["requests"]["cpu"], "100m");
    assert_eq!(resources["limits"]["cpu"], "500m");
    assert_eq!(
        defaulted["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu request for container app; cpu limit for container app"
    );
    assert_eq!(defaulted["status"]["qosClass"], "Burstable");
    let big = create(&kinds, "pods", Some("team"), pod("big", cpu("2"))).await.unwrap_err();
    assert_eq!(big.code(), 403);
    assert_eq!(big.to_string(), r#"pods "big" is forbidden: maximum cpu usage per Container is 1, but limit is 2"#);

    // ResourceQuota: the controller fills in the status, then creates are charged.
    let quota = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"},
        "spec": {"hard": {"pods": "2", "requests.cpu": "1", "configmaps": "1"}}});
    create(&kinds, "resourcequotas", Some("quota"), quota).await.unwrap();
    until_used(&kinds, "quota", |used| used == &json!({"pods": "0", "requests.cpu": "0", "configmaps": "0"})).await;
    create(&kinds, "pods", Some("quota"), pod("p1", cpu("400m"))).await.unwrap();
    let charged = get(&kinds, "resourcequotas", Some("quota"), "q").await.unwrap();
    assert_eq!(charged["status"]["used"], json!({"pods": "1", "requests.cpu": "400m", "configmaps": "0"}));
    let over = create(&kinds, "pods", Some("quota"), pod("p2", cpu("700m"))).await.unwrap_err();
    assert_eq!(over.code(), 403);
    assert_eq!(
        over.to_string(),
        r#"pods "p2" is forbidden: exceeded quota: q, requested: requests.cpu=700m, used: requests.cpu=400m, limited: requests.cpu=1"#
    );
    let unstated = create(&kinds, "pods", Some("quota"), pod("p2", json!({}))).await.unwrap_err();
    assert_eq!(unstated.to_string(), r#"pods "p2" is forbidden: failed quota: q: must specify requests.cpu for: app"#);
    create(&kinds, "pods", Some("quota"), pod("p2", cpu("500m"))).await.unwrap();
    let full = create(&kinds, "pods", Some("quota"), pod("p3", cpu("100m"))).await.unwrap_err();
    assert_eq!(
        full.to_string(),
        r#"pods "p3" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"#
    );
    create(&kinds, "configmaps", Some("quota"), configmap("one")).await.unwrap();
    let second = create(&kinds, "configmaps", Some("quota"), configmap("two")).await.unwrap_err();
    assert_eq!(
        second.to_string(),
        r#"configmaps "two" is forbidden: exceeded quota: q, requested: configmaps=1, used: configmaps=1, limited: configmaps=1"#
    );

    // Deletes give the usage back once the controller recounts.
    delete(&kinds, "pods", Some("quota"), "p1").await.unwrap();
    delete(&kinds, "configmaps", Some("quota"), "one").await.unwrap();
    until_used(&kinds, "quota", |used| used == &json!({"pods": "1", "requests.cpu": "500m", "configmaps": "0"})).await;
    create(&kinds, "pods", Some("quota"), pod("p3", cpu("100m"))).await.unwrap();
    node.shutdown().await;
}

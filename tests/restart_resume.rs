//! End-to-end: restart `flotilla up` on the same data dir. Every object is still there
//! with its resourceVersion, new writes get higher ones, and a watch resumed from the last
//! resourceVersion seen before the restart gets exactly the changes made since, in order.

#![allow(clippy::unwrap_used)]

mod common;

use common::Up;
use serde_json::Value;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn rv(obj: &Value) -> i64 {
    obj["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap()
}

#[test]
fn objects_survive_a_restart_and_a_resumed_watch_gets_exactly_the_missed_events() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    up.wait_ready();
    let manifest = dir.path().join("cms.json");
    let cm = |name: &str| {
        format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}},"data":{{"k":"v"}}}}"#)
    };
    std::fs::write(&manifest, format!(r#"{{"apiVersion":"v1","kind":"List","items":[{},{}]}}"#, cm("a"), cm("b")))
        .unwrap();
    up.kubectl_eventually(&["create", "-f", &manifest.display().to_string()]);
    let before = json(&up.kubectl(&["get", "--raw", "/api/v1/namespaces/default/configmaps"]));
    let seen = rv(&before);
    let a_before = json(&up.kubectl(&["get", "cm", "a", "-o", "json"]));
    // A write to another kind: after the restart the configmaps' cache starts later than
    // `seen`, so the resumed watch must replay the store's history up to the cache.
    up.kubectl(&["create", "-f", &{
        let path = dir.path().join("secret.json");
        std::fs::write(&path, r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"}}"#).unwrap();
        path.display().to_string()
    }]);

    let up = up.restart();
    let a_after = json(&up.kubectl(&["get", "cm", "a", "-o", "json"]));
    assert_eq!(a_after, a_before, "an object is unchanged by a restart, resourceVersion included");
    up.kubectl(&["create", "-f", &{
        let path = dir.path().join("c.json");
        std::fs::write(&path, cm("c")).unwrap();
        path.display().to_string()
    }]);
    up.kubectl(&["label", "cm", "a", "changed=yes"]);
    up.kubectl(&["delete", "cm", "b"]);
    let c = json(&up.kubectl(&["get", "cm", "c", "-o", "json"]));
    assert!(rv(&c) > seen, "resourceVersions keep rising across the restart");

    let resumed = up.kubectl(&[
        "get",
        "--raw",
        &format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={seen}&timeoutSeconds=2"),
    ]);
    let events: Vec<(String, String)> = resumed
        .lines()
        .map(json)
        .map(|e| {
            (e["type"].as_str().unwrap().to_string(), e["object"]["metadata"]["name"].as_str().unwrap().to_string())
        })
        .collect();
    let expected = [("ADDED", "c"), ("MODIFIED", "a"), ("DELETED", "b")].map(|(t, n)| (t.to_string(), n.to_string()));
    assert_eq!(events, expected, "{resumed}");
    up.stop();
}

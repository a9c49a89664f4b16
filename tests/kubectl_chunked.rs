//! End-to-end: `kubectl get --chunk-size=50` over 1000 configmaps pages through the list
//! with `limit`/`continue` and returns every object exactly once, while objects created
//! between pages stay out of the list (every page is read at the first page's revision).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use common::Up;

#[test]
fn kubectl_chunked_list_returns_every_object_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    up.wait_ready();
    let items: Vec<String> = (0..1000)
        .map(|i| {
            format!(
                r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"cm-{i:04}"}},"data":{{"i":"{i}"}}}}"#
            )
        })
        .collect();
    up.kubectl_eventually(&["get", "ns", "default", "-o", "name"]);
    // Four kubectl processes at once, 250 objects each: the writes are grouped per commit.
    std::thread::scope(|s| {
        for (n, chunk) in items.chunks(250).enumerate() {
            let manifest = dir.path().join(format!("cms-{n}.json"));
            let list = format!(r#"{{"apiVersion":"v1","kind":"List","items":[{}]}}"#, chunk.join(","));
            std::fs::write(&manifest, list).unwrap();
            let up = &up;
            s.spawn(move || up.kubectl(&["create", "-f", &manifest.display().to_string(), "-o", "name"]));
        }
    });

    let names = up.kubectl(&["get", "configmaps", "--chunk-size=50", "-o", "name"]);
    // The root CA publisher's ConfigMap is there too, as in every kube namespace.
    let names: Vec<&str> = names.lines().filter(|n| *n != "configmap/kube-root-ca.crt").collect();
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(names.len(), 1000, "every object once");
    assert_eq!(unique.len(), 1000, "no object twice");
    assert!(unique.contains("configmap/cm-0000") && unique.contains("configmap/cm-0999"));

    // Pages after the first are read at the first page's revision: a configmap created
    // between two raw pages is not in the second.
    let first: serde_json::Value =
        serde_json::from_str(&up.kubectl(&["get", "--raw", "/api/v1/namespaces/default/configmaps?limit=600"]))
            .unwrap();
    let token = first["metadata"]["continue"].as_str().unwrap().to_string();
    let late = dir.path().join("late.json");
    std::fs::write(&late, r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm-9999"}}"#).unwrap();
    up.kubectl(&["create", "-f", &late.display().to_string()]);
    let second: serde_json::Value = serde_json::from_str(&up.kubectl(&[
        "get",
        "--raw",
        &format!("/api/v1/namespaces/default/configmaps?limit=600&continue={token}"),
    ]))
    .unwrap();
    let ours = |page: &serde_json::Value| {
        page["items"].as_array().unwrap().iter().filter(|o| o["metadata"]["name"] != "kube-root-ca.crt").count()
    };
    assert_eq!(ours(&first) + ours(&second), 1000);
    assert_eq!(second["metadata"]["resourceVersion"], first["metadata"]["resourceVersion"]);
    assert!(second["metadata"].get("continue").is_none(), "{}", second["metadata"]);
    up.stop();
}

//! End-to-end: real kubectl creates, gets, lists, replaces and deletes objects on
//! `flotilla up`: configmaps (optimistic concurrency, AlreadyExists, NotFound, invalid
//! names), namespaces (the initial four, a new one), and a deployment as generic JSON.

#![allow(clippy::unwrap_used)]

mod common;

use common::Up;
use serde_json::Value;

const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo\ndata:\n  color: blue\n";
const NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n";
const DEPLOY: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx:1.27}]
";

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn kubectl_creates_gets_lists_replaces_and_deletes_objects() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    up.wait_ready();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };

    // The initial namespaces appear once the store has a leader.
    let namespaces = up.kubectl_eventually(&["get", "ns", "kube-node-lease", "-o", "name"]);
    assert_eq!(namespaces.trim(), "namespace/kube-node-lease");
    let all = up.kubectl(&["get", "ns", "-o", "name"]);
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(all.lines().any(|l| l == format!("namespace/{ns}")), "{ns} not in {all}");
    }

    let cm = file("cm.yaml", CM);
    assert_eq!(up.kubectl(&["create", "-f", &cm]).trim(), "configmap/demo created");
    let got = json(&up.kubectl(&["get", "cm", "demo", "-o", "json"]));
    assert_eq!(got["data"]["color"], "blue");
    assert!(got["metadata"]["resourceVersion"].as_str().is_some_and(|rv| rv.parse::<i64>().is_ok()), "{got}");
    assert!(up.kubectl(&["get", "cm"]).lines().any(|l| l.starts_with("demo ")));

    // Replace with a changed value works; replacing again from the same (now stale) copy conflicts.
    let mut changed = got.clone();
    changed["data"]["color"] = "red".into();
    let changed = file("changed.json", &changed.to_string());
    assert_eq!(up.kubectl(&["replace", "-f", &changed]).trim(), "configmap/demo replaced");
    assert_eq!(json(&up.kubectl(&["get", "cm", "demo", "-o", "json"]))["data"]["color"], "red");
    let (ok, _, stderr) = up.try_kubectl(&["replace", "-f", &changed]);
    assert!(!ok && stderr.contains("Conflict") && stderr.contains("the object has been modified"), "{stderr}");
    let (ok, _, stderr) = up.try_kubectl(&["create", "-f", &cm]);
    assert!(!ok && stderr.contains("AlreadyExists"), "{stderr}");

    // A second namespace, and a list across all of them.
    let ns = file("ns.yaml", NS);
    up.kubectl(&["create", "-f", &ns]);
    up.kubectl(&["create", "-n", "team-a", "-f", &cm]);
    let everywhere = json(&up.kubectl(&["get", "cm", "-A", "-o", "json"]));
    let mut seen: Vec<String> = everywhere["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            format!("{}/{}", o["metadata"]["namespace"].as_str().unwrap(), o["metadata"]["name"].as_str().unwrap())
        })
        // kube-system holds the control plane's own (extension-apiserver-authentication).
        .filter(|key| !key.starts_with("kube-system/"))
        // Every namespace has the cluster CA's ConfigMap, as in kube.
        .filter(|key| !key.ends_with("/kube-root-ca.crt"))
        .collect();
    seen.sort();
    assert_eq!(seen, ["default/demo", "team-a/demo"]);

    let (ok, _, stderr) = up.try_kubectl(&["create", "-f", &file("bad.yaml", &CM.replace("demo", "Bad_Name"))]);
    assert!(!ok && stderr.contains("metadata.name") && stderr.contains("Bad_Name"), "{stderr}");

    assert_eq!(up.kubectl(&["delete", "cm", "demo"]).trim(), r#"configmap "demo" deleted"#);
    let (ok, _, stderr) = up.try_kubectl(&["get", "cm", "demo"]);
    assert!(!ok && stderr.contains("NotFound") && stderr.contains(r#"configmaps "demo" not found"#), "{stderr}");

    // Any registry kind round-trips as generic JSON.
    up.kubectl(&["create", "-f", &file("deploy.yaml", DEPLOY)]);
    let deploy = json(&up.kubectl(&["get", "deploy", "web", "-o", "json"]));
    assert_eq!((deploy["kind"].as_str(), deploy["apiVersion"].as_str()), (Some("Deployment"), Some("apps/v1")));
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert_eq!(deploy["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.27");
    assert_eq!(deploy["metadata"]["generation"], 1);
    up.stop();
}

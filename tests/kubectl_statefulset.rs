//! End-to-end: the StatefulSet and disruption controllers on `flotilla up` through real
//! kubectl, with a Node made through the API and the test as the kubelet (a thread that makes
//! bound pods Running and Ready and removes the ones being deleted). `kubectl apply` of a
//! headless Service and a StatefulSet with a volumeClaimTemplate; `rollout status sts/web`
//! finishes; pods `web-0..2` with their hostnames and claims `data-web-0..2`; `set image`
//! rolls out revision 2, `rollout history` lists both, `rollout undo` brings the first
//! template back as revision 3; a PodDisruptionBudget's ALLOWED DISRUPTIONS in `kubectl get
//! pdb`, one eviction allowed and the next refused (429); `kubectl scale --replicas=1`
//! removes web-2, then web-1, and keeps every claim.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::AtomicBool;

use common::kubelet::{self, items, json, node_manifest, until, StopOnDrop};
use common::Up;
use serde_json::Value;

const MANIFESTS: &str = "apiVersion: v1
kind: Service
metadata: {name: nginx, labels: {app: nginx}}
spec:
  clusterIP: None
  selector: {app: nginx}
  ports: [{port: 80, name: web}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: nginx
  replicas: 3
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec:
      containers:
      - name: nginx
        image: registry.invalid/nginx:1
        ports: [{containerPort: 80, name: web}]
        volumeMounts: [{name: data, mountPath: /usr/share/nginx/html}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
";

fn rollout_status(up: &Up) {
    let out = up.kubectl(&["rollout", "status", "sts/web", "--timeout=60s"]);
    assert!(out.contains("roll out complete") || out.contains("rolling update complete"), "{out}");
}

/// The revisions `kubectl rollout history` lists.
fn revisions(history: &str) -> Vec<u32> {
    history.lines().filter_map(|l| l.split_whitespace().next()?.parse().ok()).collect()
}

fn names(list: &Value) -> Vec<String> {
    let mut names: Vec<String> =
        items(list).iter().map(|o| o["metadata"]["name"].as_str().unwrap_or("").to_string()).collect();
    names.sort();
    names
}

fn images(up: &Up) -> Vec<String> {
    let out = up.kubectl(&["get", "pods", "-l", "app=nginx", "-o", "jsonpath={.items[*].spec.containers[0].image}"]);
    out.split_whitespace().map(String::from).collect()
}

/// The cells of `name`'s row in a `kubectl get` table.
fn row(table: &str, name: &str) -> Vec<String> {
    let line = table.lines().find(|l| l.split_whitespace().next() == Some(name));
    line.unwrap_or_else(|| panic!("no row {name} in {table}")).split_whitespace().map(String::from).collect()
}

#[test]
fn kubectl_runs_a_statefulset_with_claims_rollouts_budgets_and_ordered_scale_down() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    up.wait_ready();
    let files = tempfile::tempdir().unwrap();
    let path = |name: &str| files.path().join(name).display().to_string();
    std::fs::write(path("node.yaml"), node_manifest("node-1")).unwrap();
    up.kubectl(&["apply", "-f", &path("node.yaml")]);
    std::fs::write(path("web.yaml"), MANIFESTS).unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        s.spawn(|| kubelet::run(&up, &stop, &["node-1"], kubelet::running));

        let applied = up.kubectl(&["apply", "-f", &path("web.yaml")]);
        assert!(applied.contains("statefulset.apps/web created"), "{applied}");
        rollout_status(&up);
        let pods = json(&up.kubectl(&["get", "pods", "-l", "app=nginx", "-o", "json"]));
        assert_eq!(names(&pods), ["web-0", "web-1", "web-2"]);
        for pod in items(&pods) {
            let name = pod["metadata"]["name"].as_str().unwrap();
            assert_eq!(pod["spec"]["hostname"], name);
            assert_eq!(pod["spec"]["subdomain"], "nginx");
            assert_eq!(pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"], name);
        }
        let claims = json(&up.kubectl(&["get", "pvc", "-o", "json"]));
        assert_eq!(names(&claims), ["data-web-0", "data-web-1", "data-web-2"]);
        let table = up.kubectl(&["get", "pvc"]);
        for claim in ["data-web-0", "data-web-1", "data-web-2"] {
            row(&table, claim);
        }
        assert_eq!(row(&up.kubectl(&["get", "sts", "web"]), "web")[1], "3/3");

        // A new image rolls out as revision 2; undo brings revision 1's template back as 3.
        up.kubectl(&["set", "image", "sts/web", "nginx=registry.invalid/nginx:2"]);
        rollout_status(&up);
        assert_eq!(images(&up), ["registry.invalid/nginx:2"; 3]);
        let history = up.kubectl(&["rollout", "history", "sts/web"]);
        assert_eq!(revisions(&history), [1, 2], "{history}");
        let second = up.kubectl(&["rollout", "history", "sts/web", "--revision=2"]);
        assert!(second.contains("registry.invalid/nginx:2"), "{second}");
        assert_eq!(up.kubectl(&["rollout", "undo", "sts/web"]).trim(), "statefulset.apps/web rolled back");
        rollout_status(&up);
        let image = up.kubectl(&["get", "sts", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]);
        assert_eq!(image, "registry.invalid/nginx:1");
        until(&up, "every pod back on the first image", &["get", "pods", "-l", "app=nginx", "-o", "json"], |v| {
            let pods = items(v);
            pods.len() == 3 && pods.iter().all(|p| p["spec"]["containers"][0]["image"] == "registry.invalid/nginx:1")
        });
        let history = up.kubectl(&["rollout", "history", "sts/web"]);
        assert_eq!(revisions(&history), [2, 3], "{history}");

        // A budget of at most one unavailable pod: one eviction goes, the next is refused.
        up.kubectl(&["create", "pdb", "web", "--selector=app=nginx", "--max-unavailable=1"]);
        until(&up, "the budget allows 1", &["get", "pdb", "web", "-o", "json"], |pdb| {
            pdb["status"]["disruptionsAllowed"] == 1 && pdb["status"]["expectedPods"] == 3
        });
        let cells = row(&up.kubectl(&["get", "pdb"]), "web");
        assert_eq!(cells[1..4], ["N/A", "1", "1"], "{cells:?}");
        let evict = |pod: &str| {
            let body = format!(r#"{{"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {{"name": "{pod}"}}}}"#);
            std::fs::write(path("eviction.json"), body).unwrap();
            let raw = format!("/api/v1/namespaces/default/pods/{pod}/eviction");
            up.try_kubectl(&["create", "--raw", &raw, "-f", &path("eviction.json")])
        };
        let (ok, _, stderr) = evict("web-2");
        assert!(ok, "{stderr}");
        let pdb = json(&up.kubectl(&["get", "pdb", "web", "-o", "json"]));
        // Taken by the eviction (its `disruptedPods` entry goes once the controller sees web-2 gone).
        assert_eq!(pdb["status"]["disruptionsAllowed"], 0, "{pdb}");
        let (ok, _, stderr) = evict("web-1");
        assert!(!ok && stderr.contains("Cannot evict pod as it would violate the pod's disruption budget"), "{stderr}");
        rollout_status(&up);

        // Scaled to 1: web-2 goes first, then web-1; the claims stay.
        assert_eq!(up.kubectl(&["scale", "sts", "web", "--replicas=1"]).trim(), "statefulset.apps/web scaled");
        until(&up, "only web-0, web-2 gone before web-1", &["get", "pods", "-l", "app=nginx", "-o", "json"], |v| {
            let active: Vec<String> = items(v)
                .iter()
                .filter(|p| p["metadata"].get("deletionTimestamp").is_none())
                .map(|p| p["metadata"]["name"].as_str().unwrap_or("").to_string())
                .collect();
            let listed = names(v);
            if !active.iter().any(|n| n == "web-1") {
                assert!(!listed.iter().any(|n| n == "web-2"), "web-1 going while web-2 is there: {listed:?}");
            }
            listed == ["web-0"]
        });
        let claims = json(&up.kubectl(&["get", "pvc", "-o", "json"]));
        assert_eq!(names(&claims), ["data-web-0", "data-web-1", "data-web-2"]);
        until(&up, "the budget of one pod", &["get", "pdb", "web", "-o", "json"], |pdb| {
            pdb["status"]["expectedPods"] == 1 && pdb["status"]["disruptionsAllowed"] == 1
        });
        let cells = row(&up.kubectl(&["get", "pdb"]), "web");
        assert_eq!(cells[1..4], ["N/A", "1", "1"], "{cells:?}");
        let events = up.kubectl(&["get", "events", "--field-selector=involvedObject.name=web", "-o", "json"]);
        let said = |message: &str| items(&json(&events)).iter().any(|e| e["message"] == message);
        assert!(said("create Pod web-0 in StatefulSet web successful"), "{events}");
        assert!(said("delete Pod web-1 in StatefulSet web successful"), "{events}");
    });
}

//! End-to-end: real kubectl rolls a Deployment out on `flotilla up`, with the test as the
//! kubelet (a thread marks the Deployment's pods Ready through `kubectl patch
//! --subresource=status`): `create deployment`, `rollout status` finishes, `set image` rolls
//! out a second revision, `rollout history` lists both, `rollout undo` goes back to the
//! first image, and `rollout pause`/`resume`/`restart`.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::Up;
use serde_json::Value;

/// Sets the flag when dropped, so the kubelet thread stops even when the test fails.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// What a kubelet does once a pod's containers are up: every pod of `selector` not yet
/// Ready (and not being deleted) becomes Running and Ready; until `stop`.
fn kubelet(up: &Up, selector: &str, stop: &AtomicBool) {
    let ready = r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}"#;
    while !stop.load(Ordering::SeqCst) {
        let (ok, out, _) = up.try_kubectl(&["get", "pods", "-l", selector, "-o", "json"]);
        let pods: Value = if ok { serde_json::from_str(&out).unwrap_or(Value::Null) } else { Value::Null };
        for pod in pods["items"].as_array().into_iter().flatten() {
            let is_ready = pod["status"]["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
            if is_ready || pod["metadata"].get("deletionTimestamp").is_some() {
                continue;
            }
            let name = pod["metadata"]["name"].as_str().unwrap_or_default();
            // The pod may be gone meanwhile.
            let _ = up.try_kubectl(&["patch", "pod", name, "--subresource=status", "--type=merge", "-p", ready]);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The revisions `kubectl rollout history` lists.
fn revisions(history: &str) -> Vec<u32> {
    history.lines().filter_map(|l| l.split_whitespace().next()?.parse().ok()).collect()
}

fn rollout_status(up: &Up) {
    let out = up.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(out.trim_end().ends_with("deployment \"web\" successfully rolled out"), "{out}");
}

fn images_of_pods(up: &Up) -> Vec<String> {
    let out = up.kubectl(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].spec.containers[0].image}"]);
    out.split_whitespace().map(String::from).collect()
}

#[test]
fn kubectl_rolls_a_deployment_out_through_history_undo_pause_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    up.wait_ready();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        s.spawn(|| kubelet(&up, "app=web", &stop));

        let created = up.kubectl(&["create", "deployment", "web", "--image=nginx:1.27", "--replicas=3"]);
        assert_eq!(created.trim(), "deployment.apps/web created");
        rollout_status(&up);
        assert_eq!(images_of_pods(&up), ["nginx:1.27"; 3]);

        // A new image: a second ReplicaSet takes over.
        up.kubectl(&["set", "image", "deployment/web", "nginx=nginx:1.28"]);
        rollout_status(&up);
        let history = up.kubectl(&["rollout", "history", "deployment/web"]);
        assert_eq!(revisions(&history), [1, 2], "{history}");
        let second = up.kubectl(&["rollout", "history", "deployment/web", "--revision=2"]);
        assert!(second.contains("nginx:1.28"), "{second}");
        let rses = up.kubectl(&["get", "rs", "-l", "app=web", "-o", "jsonpath={.items[*].spec.replicas}"]);
        let mut replicas: Vec<&str> = rses.split_whitespace().collect();
        replicas.sort();
        assert_eq!(replicas, ["0", "3"]);
        assert_eq!(images_of_pods(&up), ["nginx:1.28"; 3]);

        // Undo (client-side in kubectl): revision 1's template comes back as revision 3.
        assert_eq!(up.kubectl(&["rollout", "undo", "deployment/web"]).trim(), "deployment.apps/web rolled back");
        rollout_status(&up);
        let image =
            up.kubectl(&["get", "deployment", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]);
        assert_eq!(image, "nginx:1.27");
        let history = up.kubectl(&["rollout", "history", "deployment/web"]);
        assert_eq!(revisions(&history), [2, 3], "{history}");
        assert_eq!(images_of_pods(&up), ["nginx:1.27"; 3]);

        // Paused, nothing rolls out; restart refuses; resumed, restart rolls out revision 4.
        assert_eq!(up.kubectl(&["rollout", "pause", "deployment/web"]).trim(), "deployment.apps/web paused");
        let (ok, _, err) = up.try_kubectl(&["rollout", "restart", "deployment/web"]);
        assert!(!ok && err.contains("paused"), "{err}");
        assert_eq!(up.kubectl(&["rollout", "resume", "deployment/web"]).trim(), "deployment.apps/web resumed");
        assert_eq!(up.kubectl(&["rollout", "restart", "deployment/web"]).trim(), "deployment.apps/web restarted");
        rollout_status(&up);
        let history = up.kubectl(&["rollout", "history", "deployment/web"]);
        assert_eq!(revisions(&history), [2, 3, 4], "{history}");
        let d: Value = serde_json::from_str(&up.kubectl(&["get", "deployment", "web", "-o", "json"])).unwrap();
        assert_eq!(d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "4");
        let conditions = d["status"]["conditions"].as_array().unwrap();
        let reason = |kind: &str| conditions.iter().find(|c| c["type"] == kind).map(|c| c["reason"].clone());
        assert_eq!(reason("Available"), Some("MinimumReplicasAvailable".into()));
        assert_eq!(reason("Progressing"), Some("NewReplicaSetAvailable".into()));
    });
}

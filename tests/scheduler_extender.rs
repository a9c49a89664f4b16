//! End-to-end: `flotilla up --scheduler-config` with a KubeSchedulerConfiguration naming a
//! scheduler extender (an HTTP server in this test that filters out `node-2` and scores
//! every node alike) and a second profile, 3 Nodes, and the test as the kubelet (bound pods
//! become Running and Ready; pods being deleted go, as in `kubectl_controllers.rs`). A
//! Deployment of 6 lands on node-1 and node-3 only; a pod of the second scheduler is bound
//! with events in its name; `pods/binding` binds a pod no scheduler serves (409 the second
//! time); `pods/eviction` is refused (429) while a PodDisruptionBudget allows no
//! disruption; `kubectl drain node-1 --ignore-daemonsets --delete-emptydir-data` evicts its
//! pods and they are scheduled again on node-3.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use actix_web::{web, App, HttpResponse, HttpServer};
use common::kubelet::{self, items, json as parse, node_manifest, until, StopOnDrop};
use common::Up;
use serde_json::{json, Value};

/// Calls the extender answered, by verb.
#[derive(Default)]
struct Calls {
    filter: AtomicUsize,
    prioritize: AtomicUsize,
}

fn name_of(node: &Value) -> &str {
    node["metadata"]["name"].as_str().unwrap_or("")
}

/// `filter`: every node but node-2 (ExtenderArgs with whole nodes -> ExtenderFilterResult).
async fn filter(calls: web::Data<Calls>, body: web::Bytes) -> HttpResponse {
    calls.filter.fetch_add(1, Ordering::SeqCst);
    let args: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let nodes = args["nodes"]["items"].as_array().cloned().unwrap_or_default();
    let (kept, dropped): (Vec<Value>, Vec<Value>) = nodes.into_iter().partition(|n| name_of(n) != "node-2");
    let failed: serde_json::Map<String, Value> =
        dropped.iter().map(|n| (name_of(n).to_string(), json!("reserved by the test extender"))).collect();
    HttpResponse::Ok().json(json!({"nodes": {"items": kept}, "failedNodes": failed}))
}

/// `prioritize`: the same score for every node (HostPriorityList).
async fn prioritize(calls: web::Data<Calls>, body: web::Bytes) -> HttpResponse {
    calls.prioritize.fetch_add(1, Ordering::SeqCst);
    let args: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let nodes = args["nodes"]["items"].as_array().cloned().unwrap_or_default();
    let scores: Vec<Value> = nodes.iter().map(|n| json!({"host": name_of(n), "score": 5})).collect();
    HttpResponse::Ok().json(scores)
}

/// Starts the extender on a free port of its own actix system; returns the port.
fn start_extender(calls: Arc<Calls>) -> u16 {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let data = web::Data::from(calls);
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(data.clone())
                    .route("/ext/filter", web::post().to(filter))
                    .route("/ext/prioritize", web::post().to(prioritize))
            })
            .workers(1)
            .disable_signals()
            .bind(("127.0.0.1", 0))
            .unwrap();
            tx.send(server.addrs()[0].port()).unwrap();
            let _ = server.run().await;
        })
    });
    rx.recv().unwrap()
}

/// `flotilla up --scheduler-config config` in `dir`.
fn up_with(dir: &std::path::Path, config: &std::path::Path) -> Up {
    let https = chaos::free_port().unwrap();
    let store = format!("127.0.0.1:{}", chaos::free_port().unwrap());
    let child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["up", "--data-dir", &dir.display().to_string(), "--port", &https.to_string(), "--no-node"])
        .args(["--store-listen", &store, "--scheduler-config", &config.display().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Up { child, dir: dir.to_path_buf(), https, store }
}

fn nodes_of(pods: &Value) -> Vec<String> {
    items(pods).iter().map(|p| p["spec"]["nodeName"].as_str().unwrap_or("").to_string()).collect()
}

/// `n` web pods, all bound and Running, none being deleted.
fn web_pods_bound(n: usize) -> impl Fn(&Value) -> bool {
    move |v: &Value| {
        let pods = items(v);
        pods.len() == n
            && pods.iter().all(|p| {
                p["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty())
                    && p["status"]["phase"] == "Running"
                    && p["metadata"].get("deletionTimestamp").is_none()
            })
    }
}

#[test]
fn an_extender_keeps_pods_off_a_node_and_drain_evicts_within_budgets() {
    let calls = Arc::new(Calls::default());
    let port = start_extender(calls.clone());
    let files = tempfile::tempdir().unwrap();
    let config = files.path().join("scheduler.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: default-scheduler
- schedulerName: second-scheduler
extenders:
- urlPrefix: http://127.0.0.1:{port}/ext
  filterVerb: filter
  prioritizeVerb: prioritize
  weight: 2
  httpTimeout: 5s
"
        ),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let up = up_with(dir.path(), &config);
    up.wait_ready();
    let nodes = files.path().join("nodes.yaml");
    std::fs::write(&nodes, (1..=3).map(|i| node_manifest(&format!("node-{i}"))).collect::<String>()).unwrap();
    up.kubectl(&["apply", "-f", &nodes.display().to_string()]);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        s.spawn(|| kubelet::run(&up, &stop, &["node-1", "node-2", "node-3"], kubelet::running));

        // 6 replicas over node-1 and node-3: the extender filters node-2 out.
        up.kubectl(&["create", "deployment", "web", "--image=registry.invalid/web:1", "--replicas=6"]);
        let web = ["get", "pods", "-l", "app=web", "-o", "json"];
        let pods = until(&up, "6 web pods bound and running", &web, web_pods_bound(6));
        let placed = nodes_of(&pods);
        assert!(placed.iter().all(|n| n == "node-1" || n == "node-3"), "{placed:?}");
        assert!(placed.iter().any(|n| n == "node-1") && placed.iter().any(|n| n == "node-3"), "{placed:?}");
        assert!(calls.filter.load(Ordering::SeqCst) >= 6 && calls.prioritize.load(Ordering::SeqCst) >= 6);

        // The second profile schedules its own pods, under its own name.
        up.kubectl(&[
            "run",
            "second",
            "--image=registry.invalid/second:1",
            r#"--overrides={"spec":{"schedulerName":"second-scheduler","nodeSelector":{"kubernetes.io/hostname":"node-3"}}}"#,
        ]);
        let events = until(
            &up,
            "second's Scheduled event",
            &["get", "events", "--field-selector", "involvedObject.name=second,reason=Scheduled", "-o", "json"],
            |v| !items(v).is_empty(),
        );
        assert_eq!(items(&events)[0]["source"]["component"], "second-scheduler");
        let second = parse(&up.kubectl(&["get", "pod", "second", "-o", "json"]));
        assert_eq!(second["spec"]["nodeName"], "node-3");

        // pods/binding: a pod no scheduler serves, bound by hand; a second binding is refused.
        up.kubectl(&[
            "run",
            "manual",
            "--image=registry.invalid/manual:1",
            r#"--overrides={"spec":{"schedulerName":"nobody"}}"#,
        ]);
        let binding = files.path().join("binding.json");
        let body = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "manual"},
            "target": {"apiVersion": "v1", "kind": "Node", "name": "node-3"}});
        std::fs::write(&binding, body.to_string()).unwrap();
        let raw = "/api/v1/namespaces/default/pods/manual/binding";
        up.kubectl(&["create", "--raw", raw, "-f", &binding.display().to_string()]);
        let manual = parse(&up.kubectl(&["get", "pod", "manual", "-o", "json"]));
        assert_eq!(manual["spec"]["nodeName"], "node-3");
        let (ok, _, stderr) = up.try_kubectl(&["create", "--raw", raw, "-f", &binding.display().to_string()]);
        assert!(!ok && stderr.contains("is already assigned to node"), "{stderr}");

        // pods/eviction: refused while a budget needs every web pod.
        up.kubectl(&["create", "pdb", "web", "--selector=app=web", "--min-available=6"]);
        let victim = items(&pods)[0]["metadata"]["name"].as_str().unwrap().to_string();
        let eviction = files.path().join("eviction.json");
        let body = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": victim}});
        std::fs::write(&eviction, body.to_string()).unwrap();
        let raw = format!("/api/v1/namespaces/default/pods/{victim}/eviction");
        let (ok, _, stderr) = up.try_kubectl(&["create", "--raw", &raw, "-f", &eviction.display().to_string()]);
        assert!(!ok && stderr.contains("Cannot evict pod as it would violate the pod's disruption budget"), "{stderr}");
        up.kubectl(&["delete", "pdb", "web"]);

        // Drain node-1: cordoned, its pods evicted and scheduled again on node-3.
        let out = up.kubectl(&["drain", "node-1", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=90s"]);
        assert!(out.contains("node/node-1 drained"), "{out}");
        // Through the eviction subresource (kubectl falls back to DELETE without it).
        let metrics = up.kubectl(&["get", "--raw", "/metrics"]);
        let evictions = metrics
            .lines()
            .find(|l| l.starts_with("apiserver_request_total") && l.contains("pods/eviction") && l.contains("\"201\""));
        assert!(evictions.is_some(), "no evictions answered 201 in /metrics");
        let node1 = parse(&up.kubectl(&["get", "node", "node-1", "-o", "json"]));
        assert_eq!(node1["spec"]["unschedulable"], true);
        let pods = until(&up, "6 web pods on node-3", &web, |v| {
            web_pods_bound(6)(v) && nodes_of(v).iter().all(|n| n == "node-3")
        });
        assert_eq!(items(&pods).len(), 6);
    });
}

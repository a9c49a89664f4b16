//! End-to-end: the real `flotilla up` process serves HTTPS with its own certificates and
//! writes a kubeconfig that real `kubectl` uses; anonymous clients reach only the health and
//! version endpoints; discovery lists every built-in kind (`kubectl api-resources`,
//! `kubectl api-versions`); the store keeps its data, and the PKI its certificates, across restarts;
//! a data dir written in another format is refused with a clear message. The `kubernetes`
//! Service's Endpoints and EndpointSlice name the API at its advertise address.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use chaos::free_port;
use common::{eventually, Up};
use raft_store::client::StoreClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flotilla_up_serves_kubectl_over_https_and_keeps_data_and_certificates_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    up.wait_ready();

    let version: serde_json::Value = serde_json::from_str(&up.kubectl(&["version", "-o", "json"])).unwrap();
    let server = &version["serverVersion"];
    assert_eq!((server["major"].as_str(), server["minor"].as_str()), (Some("1"), Some("32")), "{version}");
    assert!(server["gitVersion"].as_str().unwrap().starts_with("v1.32.0-flotilla."), "{version}");
    assert_eq!(up.kubectl(&["get", "--raw", "/readyz"]), "ok");
    assert_eq!(up.kubectl(&["get", "--raw", "/livez"]), "ok");

    // Anonymous clients: health and version only; everything else is a 401 Status.
    assert_eq!(up.anonymous_get("/readyz").unwrap(), (200, "ok".to_string()));
    assert_eq!(up.anonymous_get("/version").unwrap().0, 200);
    for path in ["/api", "/metrics"] {
        let (code, body) = up.anonymous_get(path).unwrap();
        assert_eq!(code, 401, "{path}: {body}");
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!((status["kind"].as_str(), status["reason"].as_str()), (Some("Status"), Some("Unauthorized")));
        assert_eq!(status["code"], 401);
    }

    // Discovery: kubectl 1.32 reads the aggregated documents; plain JSON clients the legacy ones.
    let names = up.kubectl(&["api-resources", "-o", "name"]);
    let names: Vec<&str> = names.lines().collect();
    for name in [
        "configmaps",
        "deployments.apps",
        "leases.coordination.k8s.io",
        "customresourcedefinitions.apiextensions.k8s.io",
    ] {
        assert!(names.contains(&name), "{name} not in {names:?}");
    }
    assert_eq!(names.len(), actors::kinds::BUILTIN.len() + api_gateway::aggregator::reviews::KINDS.len(), "{names:?}");
    let versions = up.kubectl(&["api-versions"]);
    for gv in ["v1", "apps/v1", "batch/v1"] {
        assert!(versions.lines().any(|l| l == gv), "{gv} not in {versions}");
    }
    let apps: serde_json::Value = serde_json::from_str(&up.kubectl(&["get", "--raw", "/apis/apps/v1"])).unwrap();
    assert_eq!((apps["kind"].as_str(), apps["groupVersion"].as_str()), (Some("APIResourceList"), Some("apps/v1")));
    let core: serde_json::Value = serde_json::from_str(&up.kubectl(&["get", "--raw", "/api"])).unwrap();
    assert_eq!(core["versions"], serde_json::json!(["v1"]), "{core}");

    let client = StoreClient::new(&up.store).unwrap();
    let mut last = 0;
    for i in 0..20 {
        last = client.put(format!("/e2e/{i}"), format!("v{i}")).await.unwrap();
    }
    up.kubectl(&["get", "namespaces"]);
    up.kubectl(&["get", "deployments", "-A"]);
    let metrics = up.kubectl(&["get", "--raw", "/metrics"]);
    assert!(metrics.contains("flotilla_store_applied_entries_total"), "{metrics}");
    // The store's latencies get sub-millisecond buckets.
    assert!(metrics.contains("flotilla_store_txn_seconds_bucket{le=\"0.0005\"}"), "{metrics}");
    // The member's Raft state, sampled every second: it leads, and its revision is the last put's.
    eventually("the store's state in the metrics", || {
        let metrics = up.kubectl(&["get", "--raw", "/metrics"]);
        let gauge = |name: &str| metrics.lines().find_map(|l| l.strip_prefix(&format!("{name} "))?.parse::<f64>().ok());
        let revision = gauge("flotilla_store_revision");
        if gauge("flotilla_store_is_leader") == Some(1.0) && revision.is_some_and(|r| r >= last as f64) {
            assert_eq!(gauge("flotilla_store_has_leader"), Some(1.0), "{metrics}");
            assert!(gauge("flotilla_store_term").is_some_and(|t| t >= 1.0), "{metrics}");
            Ok(())
        } else {
            Err(metrics)
        }
    });
    // Requests are counted and timed by verb and resource, as kube-apiserver does.
    let counted = |verb: &str, resource: &str| {
        metrics.lines().any(|l| {
            l.starts_with("apiserver_request_total{")
                && l.contains(&format!("verb=\"{verb}\""))
                && l.contains(&format!("resource=\"{resource}\""))
        })
    };
    assert!(counted("list", "namespaces") && counted("list", "deployments.apps"), "{metrics}");
    assert!(metrics.contains("apiserver_request_duration_seconds_bucket{"), "{metrics}");
    // The `kubernetes` Service's Endpoints and EndpointSlice name this API server at its
    // advertise address (not loopback: pods reach it there) and port; the API listens there
    // too, and its certificate holds that address and the Service's cluster IP.
    let slice = kubernetes_slice(&up);
    assert_eq!(slice["metadata"]["labels"]["kubernetes.io/service-name"], "kubernetes", "{slice}");
    assert_eq!(slice["ports"], serde_json::json!([{"name": "https", "port": up.https, "protocol": "TCP"}]), "{slice}");
    let advertised: std::net::IpAddr = slice["endpoints"][0]["addresses"][0].as_str().unwrap().parse().unwrap();
    assert!(!advertised.is_loopback(), "{slice}");
    std::net::TcpStream::connect((advertised, up.https)).unwrap();
    let listed = up.kubectl(&["get", "endpointslices", "-n", "default"]);
    assert!(listed.lines().any(|l| l.starts_with("kubernetes ") && l.contains(&up.https.to_string())), "{listed}");
    let endpoints = up.kubectl(&["get", "endpoints", "kubernetes", "-o", "jsonpath={.subsets[0].addresses[0].ip}"]);
    assert_eq!(endpoints, advertised.to_string());
    let cert = dir.path().join("pki/apiserver.crt");
    let sans = Command::new("openssl").args(["x509", "-noout", "-ext", "subjectAltName", "-in"]).arg(&cert).output();
    let sans = String::from_utf8_lossy(&sans.unwrap().stdout).to_string();
    assert!(sans.contains("IP Address:10.96.0.1") && sans.contains(&format!("IP Address:{advertised}")), "{sans}");
    assert!(sans.contains("DNS:kubernetes.default.svc.cluster.local"), "{sans}");

    let ca = std::fs::read_to_string(dir.path().join("pki/ca.crt")).unwrap();
    let kubeconfig = kubeconfig_json(&dir.path().join("kubeconfig"));
    up.stop();

    let up = Up::start(dir.path());
    up.wait_ready();
    assert_eq!(std::fs::read_to_string(dir.path().join("pki/ca.crt")).unwrap(), ca, "the CA is kept");
    let rewritten = kubeconfig_json(&dir.path().join("kubeconfig"));
    assert_eq!(rewritten["clusters"][0]["cluster"]["server"], format!("https://127.0.0.1:{}", up.https));
    assert_eq!(rewritten["users"], kubeconfig["users"], "the admin credentials are kept");
    assert_eq!(up.kubectl(&["get", "--raw", "/readyz"]), "ok");
    let client = StoreClient::new(&up.store).unwrap();
    let all = client.range(&raft_store::RangeRequest::prefix("/e2e/"), true).await.unwrap();
    assert_eq!(all.count, 20);
    // The control plane writes its own objects at start (APIServices, configmaps, leases),
    // so the revision may have moved on since; it never goes back.
    assert!(all.revision >= last, "{} < {last}", all.revision);
    assert!(client.put("/e2e/after", "x").await.unwrap() > all.revision, "revisions keep rising");
    up.stop();
}

/// The EndpointSlice `default/kubernetes`, once the API server has written it.
fn kubernetes_slice(up: &Up) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (ok, out, err) = up.try_kubectl(&["get", "endpointslice", "kubernetes", "-n", "default", "-o", "json"]);
        if ok {
            return serde_json::from_str(&out).unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "no kubernetes EndpointSlice: {err}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn kubeconfig_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_data_dir_written_in_another_format_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join("FLOTILLA_FORMAT"), "99\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["up", "--data-dir", &dir.path().display().to_string()])
        .args(["--port", &free_port().unwrap().to_string()])
        .args(["--store-listen", &format!("127.0.0.1:{}", free_port().unwrap())])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ours = format!("reads format {}", raft_store::db::FORMAT_VERSION);
    assert!(stderr.contains("store format 99") && stderr.contains(&ours), "{stderr}");
}

//! End-to-end: `kubectl top` through the aggregation layer. `flotilla up`; two Nodes whose
//! kubelet endpoints (InternalIP 127.0.0.1, `daemonEndpoints` port) are a fake kubelet in this
//! test serving `/metrics/resource` over HTTPS with counters that rise with the clock; a pod
//! bound to one of them; the real `flotilla-metrics-server` binary, registered with an
//! APIService `v1beta1.metrics.k8s.io` (Service + Endpoints to 127.0.0.1, caBundle), reading
//! the front-proxy CA from the `extension-apiserver-authentication` ConfigMap itself.
//! `kubectl top nodes` / `top pods -A` / `top pod NAME` print the rates and working sets the
//! fake serves; errors are kube's `Status`es; stopping the plugin makes the APIService
//! `Available=False`.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::{web, HttpRequest, HttpResponse};
use api_gateway::pki::Pki;
use common::apiservice::{available, registration};
use common::https::{self, HttpsServer};
use common::kubelet::{self, node_manifest, StopOnDrop};
use common::{Up, DEADLINE};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;

const MI: u64 = 1024 * 1024;

/// What one fake node reports: CPU in nanocores (the counter's slope), working set in bytes,
/// and its pods' containers `(namespace, pod, container, nanocores, bytes)`.
#[derive(Clone)]
struct FakeNode {
    cpu: u64,
    memory: u64,
    containers: Vec<(&'static str, &'static str, &'static str, u64, u64)>,
}

/// The kubelet `/metrics/resource` text of `node` at `now_ms`: cumulative CPU counters that
/// grow by exactly `cpu` nanocores per second since `origin_ms`, with millisecond
/// timestamps, as a kubelet writes them.
fn resource_metrics(node: &FakeNode, origin_ms: u64, now_ms: u64) -> String {
    let elapsed_ms = now_ms - origin_ms;
    // Nanoseconds of CPU: 1 s of CPU to start with, plus the slope times the time passed.
    let seconds = |nanocores: u64| {
        let total = 1_000_000_000 + nanocores / 1000 * elapsed_ms;
        format!("{}.{:09}", total / 1_000_000_000, total % 1_000_000_000)
    };
    let mut text = String::from(
        "# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds\n\
         # TYPE node_cpu_usage_seconds_total counter\n",
    );
    text.push_str(&format!("node_cpu_usage_seconds_total {} {now_ms}\n", seconds(node.cpu)));
    text.push_str("# TYPE node_memory_working_set_bytes gauge\n");
    text.push_str(&format!("node_memory_working_set_bytes {:e} {now_ms}\n", node.memory as f64));
    for (namespace, pod, container, cpu, memory) in &node.containers {
        let labels = format!("container=\"{container}\",namespace=\"{namespace}\",pod=\"{pod}\"");
        text.push_str(&format!("container_cpu_usage_seconds_total{{{labels}}} {} {now_ms}\n", seconds(*cpu)));
        text.push_str(&format!("container_memory_working_set_bytes{{{labels}}} {memory} {now_ms}\n"));
        text.push_str(&format!("container_start_time_seconds{{{labels}}} {} {now_ms}\n", origin_ms / 1000 - 60));
    }
    text.push_str("resource_scrape_error 0\n");
    text
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Answers with the metrics of the node whose port the request came in on.
async fn metrics(req: HttpRequest, nodes: web::Data<Vec<(u16, FakeNode)>>, origin: web::Data<u64>) -> HttpResponse {
    let port = req.app_config().local_addr().port();
    match nodes.iter().find(|(p, _)| *p == port) {
        Some((_, node)) => HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(resource_metrics(
            node,
            **origin,
            now_ms(),
        )),
        None => HttpResponse::NotFound().finish(),
    }
}

/// A fake kubelet listening on one port per node (HTTPS, `pki`'s certificate for 127.0.0.1).
fn start_fake_kubelet(pki: &Pki, nodes: Vec<FakeNode>) -> HttpsServer {
    let listeners: Vec<TcpListener> = nodes.iter().map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let ports = listeners.iter().map(|l| l.local_addr().unwrap().port());
    let by_port: Vec<(u16, FakeNode)> = ports.zip(nodes).collect();
    let (nodes, origin) = (web::Data::new(by_port), web::Data::new(now_ms()));
    HttpsServer::listen(listeners, https::server_config(pki, None), move |routes| {
        routes.app_data(nodes.clone()).app_data(origin.clone()).route("/metrics/resource", web::get().to(metrics));
    })
}

/// The plugin binary beside `flotilla` in the target dir; built when missing.
fn plugin_binary() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_flotilla")).parent().unwrap().to_path_buf();
    let binary = dir.join("flotilla-metrics-server");
    if !binary.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "metrics-server", "--bin", "flotilla-metrics-server"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(status.success(), "cargo build -p metrics-server failed");
    }
    assert!(binary.exists(), "no {} after building it", binary.display());
    binary
}

/// The running plugin; killed when dropped. Its log goes to a file, shown on failures.
struct Plugin {
    child: Child,
    log: PathBuf,
}

impl Plugin {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Rows of a kubectl table, as whitespace-split cells, by their first cell.
fn rows(table: &str) -> Vec<Vec<String>> {
    table.lines().skip(1).map(|l| l.split_whitespace().map(String::from).collect()).collect()
}

/// Polls `kubectl args` until `check` holds on its stdout; fails (with the plugin's log)
/// after twice the deadline.
fn until_output(up: &Up, plugin: &Plugin, args: &[&str], check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + DEADLINE * 2;
    loop {
        let (ok, out, err) = up.try_kubectl(args);
        if ok && check(&out) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "kubectl {args:?} never gave what was wanted; last: {out}{err}\nplugin log:\n{}",
            plugin.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A raw HTTPS GET to the plugin, with the front proxy's client certificate when `as_user`
/// is given (sent as `X-Remote-User`) or `proxy` is set; the status code and body.
fn plugin_get(dir: &Path, port: u16, ca_pem: &str, path: &str, proxy: bool, as_user: Option<&str>) -> (u16, String) {
    let read = |file: &str| std::fs::read(dir.join("pki").join(file)).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = if proxy {
        let chain =
            CertificateDer::pem_slice_iter(&read("front-proxy-client.crt")).collect::<Result<Vec<_>, _>>().unwrap();
        builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_slice(&read("front-proxy-client.key")).unwrap())
    } else {
        Ok(builder.with_no_client_auth())
    };
    let name = ServerName::try_from("metrics-server.kube-system.svc").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config.unwrap()), name).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let user = as_user.map(|u| format!("X-Remote-User: {u}\r\nX-Remote-Group: system:authenticated\r\n"));
    write!(tls, "GET {path} HTTP/1.1\r\nHost: localhost\r\n{}Connection: close\r\n\r\n", user.unwrap_or_default())
        .unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw);
    let response = String::from_utf8_lossy(&raw);
    let code = response.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, response.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
}

#[test]
fn kubectl_top_shows_what_the_kubelets_report_through_the_metrics_server() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    up.wait_ready();

    // Serving certificates for the plugin (its service name) and the fake kubelet (127.0.0.1).
    let pki = https::serving_pki(&["metrics-server.kube-system.svc"]);
    let pki_dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = pki_dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let (cert, key, ca) = (
        write("serving.crt", &pki.apiserver.cert_pem),
        write("serving.key", &pki.apiserver.key_pem),
        write("serving-ca.crt", &pki.ca.cert_pem),
    );

    let node_a = FakeNode {
        cpu: 250_000_000,
        memory: 512 * MI,
        containers: vec![("default", "busy", "app", 100_000_000, 64 * MI)],
    };
    let node_b = FakeNode { cpu: 1_500_000_000, memory: 1024 * MI, containers: vec![] };
    let kubelet = start_fake_kubelet(&pki, vec![node_a, node_b]);

    // Two Nodes reachable at the fake's ports, and a pod bound to node-a.
    let files = tempfile::tempdir().unwrap();
    let manifests = files.path().join("nodes.yaml");
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: busy, namespace: default, labels: {app: busy}}\n\
               spec:\n  nodeName: node-a\n  containers: [{name: app, image: busybox}]\n";
    std::fs::write(&manifests, format!("{}{}{pod}", node_manifest("node-a"), node_manifest("node-b"))).unwrap();
    up.kubectl(&["apply", "-f", &manifests.display().to_string()]);
    for (node, port) in ["node-a", "node-b"].iter().zip(&kubelet.ports) {
        let status = format!(
            r#"{{"status":{{"addresses":[{{"type":"InternalIP","address":"127.0.0.1"}},{{"type":"Hostname","address":"{node}.invalid"}}],"daemonEndpoints":{{"kubeletEndpoint":{{"Port":{port}}}}}}}}}"#
        );
        up.kubectl(&["patch", "node", node, "--subresource=status", "--type=merge", "-p", &status]);
    }
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let _stop_kubelet = StopOnDrop(&stop);
        scope.spawn(|| kubelet::run(&up, &stop, &["node-a", "node-b"], kubelet::running));

        // The plugin, reaching the API server with the admin kubeconfig; kubelets by InternalIP.
        let port = chaos::free_port().unwrap();
        let log = files.path().join("metrics-server.log");
        let child = Command::new(plugin_binary())
            .args(["--kubeconfig", &dir.path().join("kubeconfig").display().to_string()])
            .args(["--cert", &cert, "--key", &key, "--listen", &format!("127.0.0.1:{port}")])
            .args(["--scrape-interval", "1s", "--kubelet-ca", &ca])
            .args(["--kubelet-preferred-address-types", "InternalIP"])
            .env("RUST_LOG", "metrics_server=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut plugin = Plugin { child, log };
        let registration_file = files.path().join("registration.yaml");
        std::fs::write(&registration_file, registration("metrics.k8s.io", "v1beta1", 100, port, &pki.ca.cert_pem))
            .unwrap();
        up.kubectl(&["apply", "-f", &registration_file.display().to_string()]);

        // kubectl top nodes: rates of the counters, working sets as served.
        let top = until_output(&up, &plugin, &["top", "nodes"], |out| {
            let rows = rows(out);
            ["node-a", "node-b"].iter().all(|n| rows.iter().any(|r| r[0] == *n && r[1] != "<unknown>"))
        });
        let rows_of = rows(&top);
        let row = |name: &str| rows_of.iter().find(|r| r[0] == name).cloned().unwrap();
        assert_eq!(row("node-a")[1..], ["250m", "6%", "512Mi", "6%"], "{top}");
        assert_eq!(row("node-b")[1..], ["1500m", "37%", "1024Mi", "12%"], "{top}");
        let selected = up.kubectl(&["top", "nodes", "-l", "kubernetes.io/hostname=node-b", "--no-headers"]);
        assert_eq!(rows(&format!("header\n{selected}")).iter().map(|r| r[0].as_str()).collect::<Vec<_>>(), ["node-b"]);

        // kubectl top pods: the pod on node-a, its container's usage.
        let pods = until_output(&up, &plugin, &["top", "pods", "-A"], |out| out.contains("busy"));
        assert!(
            rows(&pods).iter().any(|r| r[..] == ["default", "busy", "100m", "64Mi"]),
            "{pods}\nplugin log:\n{}",
            plugin.log()
        );
        let one = up.kubectl(&["top", "pod", "busy", "--containers"]);
        assert_eq!(rows(&one), [["busy", "app", "100m", "64Mi"]], "{one}");
        let labelled = up.kubectl(&["top", "pods", "-l", "app=busy", "--no-headers"]);
        assert!(labelled.starts_with("busy "), "{labelled}");

        // The objects, and kube's errors, through the aggregation layer.
        let node: Value =
            serde_json::from_str(&up.kubectl(&["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes/node-a"])).unwrap();
        assert_eq!((&node["kind"], &node["usage"]["memory"]), (&"NodeMetrics".into(), &"512Mi".into()));
        assert_eq!(node["metadata"]["labels"]["kubernetes.io/hostname"], "node-a");
        assert!(node["window"].as_str().unwrap().ends_with('s'), "{node}");
        let (ok, _, err) = up.try_kubectl(&["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes/nope"]);
        assert!(!ok && err.contains(r#"node "nope" not found"#), "{err}");
        let (ok, _, err) = up.try_kubectl(&["top", "pod", "nope"]);
        assert!(!ok && err.contains("not found"), "{err}");
        let (ok, _, err) =
            up.try_kubectl(&["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes?labelSelector=a%20in%20(b"]);
        assert!(!ok && err.contains("unable to parse requirement"), "{err}");
        let table = up.kubectl(&["get", "nodes.metrics.k8s.io", "node-b"]);
        assert!(rows(&table).iter().any(|r| r[..3] == ["node-b", "1500m", "1Gi"]), "{table}");

        // Straight to the plugin: the front proxy's certificate with a user is authorized by a
        // SubjectAccessReview; without one the caller is anonymous and refused; health is open.
        let list = "/apis/metrics.k8s.io/v1beta1/nodes";
        let (code, body) = plugin_get(dir.path(), port, &pki.ca.cert_pem, list, true, Some("jane"));
        assert_eq!(code, 200, "{body}");
        let (code, body) = plugin_get(dir.path(), port, &pki.ca.cert_pem, list, false, None);
        assert_eq!(code, 403, "{body}");
        assert!(
            body.contains(
                r#"User \"system:anonymous\" cannot list resource \"nodes\" in API group \"metrics.k8s.io\""#
            ),
            "{body}"
        );
        let (code, body) = plugin_get(dir.path(), port, &pki.ca.cert_pem, "/readyz", false, None);
        assert_eq!((code, body.as_str()), (200, "ok"));

        // Without the plugin the APIService goes unavailable.
        plugin.stop();
        let deadline = Instant::now() + DEADLINE;
        while available(&up, "v1beta1.metrics.k8s.io").0 != "False" {
            assert!(Instant::now() < deadline, "v1beta1.metrics.k8s.io stayed available");
            std::thread::sleep(Duration::from_millis(200));
        }
        let table = up.kubectl(&["get", "apiservice", "v1beta1.metrics.k8s.io"]);
        assert!(table.contains("False (FailedDiscoveryCheck)"), "{table}");
    });
}

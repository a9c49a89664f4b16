//! End-to-end: `kubectl logs` through the API server's kubelet proxy. `flotilla up`; a Node
//! whose kubelet endpoint (InternalIP 127.0.0.1, `daemonEndpoints` port) is a fake kubelet in
//! this test, serving `/containerLogs/...` over HTTPS with a certificate of its own and
//! requiring a client certificate of the cluster CA (`DIR/pki/ca.crt`), as a kubelet's
//! `--client-ca-file` does; a pod bound to that Node. kubectl's options reach the kubelet in
//! kube's form, the gateway shows itself as `kube-apiserver-kubelet-client`, and errors are
//! kube's words; discovery lets `kubectl auth can-i create pods/exec` answer.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Mutex;

use actix_web::{web, HttpRequest, HttpResponse};
use api_gateway::authn::ClientCertUser;
use common::https::{self, HttpsServer};
use common::kubelet::node_manifest;
use common::Up;

/// What the fake kubelet was asked: the client certificate's user, path and query.
static SEEN: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

async fn container_logs(req: HttpRequest) -> HttpResponse {
    let user = req.conn_data::<ClientCertUser>().map(|ClientCertUser(u)| u.name.clone()).unwrap_or_default();
    let target = match req.query_string() {
        "" => req.path().to_string(),
        query => format!("{}?{query}", req.path()),
    };
    SEEN.lock().unwrap().push((user, target));
    HttpResponse::Ok().content_type("text/plain").body("2026-01-01T00:00:00Z hello from the fake kubelet\n")
}

#[test]
fn kubectl_logs_reads_the_pods_log_from_its_nodes_kubelet() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    up.wait_ready();

    // The fake kubelet: its own CA's certificate (unverified by the gateway, as a kubelet's
    // self-signed one), client certificates required from the cluster CA.
    let cluster_ca = std::fs::read_to_string(dir.path().join("pki/ca.crt")).unwrap();
    let tls = https::server_config(&https::serving_pki(&[]), Some(&cluster_ca));
    let mut kubelet = HttpsServer::start(tls, |routes| {
        routes.route("/containerLogs/{ns}/{pod}/{container}", web::get().to(container_logs));
    });

    let files = tempfile::tempdir().unwrap();
    let manifests = files.path().join("objects.yaml");
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: busy, namespace: default}\n\
               spec:\n  nodeName: logs-node\n  containers: [{name: app, image: busybox}, {name: side, image: busybox}]\n";
    std::fs::write(&manifests, format!("{}{pod}", node_manifest("logs-node"))).unwrap();
    up.kubectl(&["apply", "-f", &manifests.display().to_string()]);
    let status = format!(
        r#"{{"status":{{"addresses":[{{"type":"InternalIP","address":"127.0.0.1"}}],"daemonEndpoints":{{"kubeletEndpoint":{{"Port":{}}}}}}}}}"#,
        kubelet.port()
    );
    up.kubectl(&["patch", "node", "logs-node", "--subresource=status", "--type=merge", "-p", &status]);

    let out = up.kubectl(&["logs", "busy", "-c", "side", "--tail=5", "--timestamps", "--limit-bytes=1000"]);
    assert_eq!(out, "2026-01-01T00:00:00Z hello from the fake kubelet\n");
    let seen = SEEN.lock().unwrap().clone();
    assert_eq!(
        seen,
        [(
            "kube-apiserver-kubelet-client".to_string(),
            "/containerLogs/default/busy/side?limitBytes=1000&tailLines=5&timestamps=true".to_string()
        )]
    );

    let (ok, _, err) = up.try_kubectl(&["logs", "busy", "-c", "nope"]);
    assert!(!ok && err.contains("container nope is not valid for pod busy"), "{err}");
    let (ok, _, err) = up.try_kubectl(&["logs", "nothing-here"]);
    assert!(!ok && err.contains(r#"pods "nothing-here" not found"#), "{err}");
    // Discovery lists the subresource, so kubectl asks without warning.
    let (ok, out, err) = up.try_kubectl(&["auth", "can-i", "create", "pods/exec"]);
    assert!(ok && out.trim() == "yes" && !err.contains("Warning"), "{out}{err}");
    kubelet.stop();
}

//! End-to-end: `kubectl get` on `flotilla up` prints kube-apiserver's columns, from the
//! server-side Tables it asks for: configmaps, secrets, deployments (`-o wide` too),
//! services, namespaces, and a kind with no printer of its own (roles: `NAME`, `CREATED AT`).
//! JSON requests still get the plain objects.

#![allow(clippy::unwrap_used)]

mod common;

use common::Up;
use serde_json::Value;

const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo\ndata:\n  color: blue\n";
const SECRET: &str = "apiVersion: v1
kind: Secret
metadata:
  name: demo
type: Opaque
data:
  password: c2VjcmV0
  user: YWRtaW4=
";
const DEPLOY: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx:1.27}]
";
const SVC: &str = "apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  clusterIP: 10.96.0.20
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: https, port: 443, nodePort: 30443}
";
const ROLE: &str = "apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: reader
rules:
- {apiGroups: [\"\"], resources: [pods], verbs: [get]}
";

/// The whitespace-separated fields of each line of `kubectl get` output.
fn rows(output: &str) -> Vec<Vec<String>> {
    output.lines().map(|l| l.split_whitespace().map(String::from).collect()).collect()
}

/// Whether `cell` is a kubectl age of a just-created object ("0s" ... "5m10s").
fn is_young_age(cell: &str) -> bool {
    let digits = cell.trim_end_matches(|c: char| c == 's' || c == 'm' || c.is_ascii_digit());
    digits.is_empty() && cell.ends_with(['s', 'm']) && cell.starts_with(|c: char| c.is_ascii_digit())
}

#[test]
fn kubectl_get_prints_server_side_tables() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    up.wait_ready();
    up.kubectl_eventually(&["get", "ns", "default", "-o", "name"]);
    for (file, text) in [("cm.yaml", CM), ("secret.yaml", SECRET), ("deploy.yaml", DEPLOY), ("svc.yaml", SVC)] {
        let path = dir.path().join(file);
        std::fs::write(&path, text).unwrap();
        up.kubectl(&["create", "-f", &path.display().to_string()]);
    }

    // Only demo: the namespace also has kube-root-ca.crt (the root CA publisher's).
    let cm = up.kubectl(&["get", "cm", "--field-selector", "metadata.name=demo"]);
    let lines: Vec<&str> = cm.lines().collect();
    assert_eq!(lines[0], "NAME   DATA   AGE", "{cm}");
    let demo = &rows(&cm)[1];
    assert_eq!(demo[..2], ["demo", "1"], "{cm}");
    assert!(is_young_age(&demo[2]), "{cm}");
    // The same through a GET of the name, and across namespaces (kubectl adds NAMESPACE).
    assert_eq!(rows(&up.kubectl(&["get", "cm", "demo"]))[1][..2], ["demo", "1"]);
    let everywhere = rows(&up.kubectl(&["get", "cm", "-A"]));
    assert_eq!(everywhere[0], ["NAMESPACE", "NAME", "DATA", "AGE"]);
    assert!(everywhere.iter().any(|r| r[..3] == ["default", "demo", "1"]), "{everywhere:?}");

    let secret = rows(&up.kubectl(&["get", "secret"]));
    assert_eq!(secret[0], ["NAME", "TYPE", "DATA", "AGE"]);
    assert_eq!(secret[1][..3], ["demo", "Opaque", "2"]);

    // The deployment controller makes the pods (no kubelet runs them: none ready).
    let deadline = std::time::Instant::now() + common::DEADLINE;
    let deploy = loop {
        let deploy = rows(&up.kubectl(&["get", "deploy"]));
        if deploy[1][..4] == ["web", "0/2", "2", "0"] || std::time::Instant::now() > deadline {
            break deploy;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(deploy[0], ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    assert_eq!(deploy[1][..4], ["web", "0/2", "2", "0"]);
    let wide = rows(&up.kubectl(&["get", "deploy", "-o", "wide"]));
    assert_eq!(wide[0], ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]);
    assert_eq!(wide[1][..4], ["web", "0/2", "2", "0"]);
    assert_eq!(wide[1][5..], ["web", "nginx:1.27", "app=web"]);

    let svc = rows(&up.kubectl(&["get", "svc"]));
    assert_eq!(svc[0], ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]);
    // `kubernetes` (the API server's own Service, at the first service IP) comes first.
    assert_eq!(svc[1][..5], ["kubernetes", "ClusterIP", "10.96.0.1", "<none>", "443/TCP"]);
    assert_eq!(svc[2][..5], ["web", "NodePort", "10.96.0.20", "<none>", "80/TCP,443:30443/TCP"]);
    assert_eq!(rows(&up.kubectl(&["get", "svc", "-o", "wide"]))[2][6], "app=web");

    let ns = rows(&up.kubectl(&["get", "ns"]));
    assert_eq!(ns[0], ["NAME", "STATUS", "AGE"]);
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(ns.iter().any(|r| r[..2] == [name, "Active"]), "{name} not Active in {ns:?}");
    }

    // A kind without a printer of its own: kube-apiserver's default table.
    let role = dir.path().join("role.yaml");
    std::fs::write(&role, ROLE).unwrap();
    up.kubectl(&["create", "-f", &role.display().to_string()]);
    let roles = rows(&up.kubectl(&["get", "roles"]));
    assert_eq!(roles[0], ["NAME", "CREATED", "AT"]);
    assert_eq!(roles[1][0], "reader");
    assert!(roles[1][1].ends_with('Z') && roles[1][1].contains('T'), "{roles:?}");

    // JSON output still asks for, and gets, the plain objects.
    let got: Value = serde_json::from_str(&up.kubectl(&["get", "cm", "demo", "-o", "json"])).unwrap();
    assert_eq!((got["kind"].as_str(), got["apiVersion"].as_str()), (Some("ConfigMap"), Some("v1")));
    assert_eq!(got["data"]["color"], "blue");
    let list: Value = serde_json::from_str(&up.kubectl(&["get", "deploy", "-o", "json"])).unwrap();
    assert_eq!(list["items"][0]["spec"]["replicas"], 2);
    let names = up.kubectl(&["get", "cm", "-o", "name"]);
    assert_eq!(names.lines().filter(|n| *n != "configmap/kube-root-ca.crt").collect::<Vec<_>>(), ["configmap/demo"]);
    up.stop();
}

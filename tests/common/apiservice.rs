//! Registering an extension API server served from this process with the aggregation layer,
//! and reading back its APIService's `Available` condition.

use base64::prelude::{Engine, BASE64_STANDARD};
use serde_json::Value;

use super::Up;

/// A Service and Endpoints `kube-system/metrics-server` sending port 443 to `127.0.0.1:port`,
/// and the APIService `{version}.{group}` behind it, trusting the CA `ca_pem`.
pub fn registration(group: &str, version: &str, version_priority: u32, port: u16, ca_pem: &str) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: metrics-server, namespace: kube-system}}
spec:
  ports: [{{name: https, port: 443, targetPort: {port}}}]
---
apiVersion: v1
kind: Endpoints
metadata: {{name: metrics-server, namespace: kube-system}}
subsets:
- addresses: [{{ip: 127.0.0.1}}]
  ports: [{{name: https, port: {port}}}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {{name: {version}.{group}}}
spec:
  group: {group}
  version: {version}
  service: {{namespace: kube-system, name: metrics-server, port: 443}}
  caBundle: {ca}
  groupPriorityMinimum: 100
  versionPriority: {version_priority}
",
        ca = BASE64_STANDARD.encode(ca_pem)
    )
}

/// The `Available` condition's status and reason of APIService `name` (empty while there is
/// no such APIService).
pub fn available(up: &Up, name: &str) -> (String, String) {
    let (found, out, _) = up.try_kubectl(&["get", "apiservice", name, "-o", "json"]);
    if !found {
        return (String::new(), String::new());
    }
    let obj: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let conditions = obj["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let condition = conditions.iter().find(|c| c["type"] == "Available").cloned().unwrap_or(Value::Null);
    (condition["status"].as_str().unwrap_or("").into(), condition["reason"].as_str().unwrap_or("").into())
}

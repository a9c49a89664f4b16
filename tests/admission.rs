//! End-to-end: the built-in admission plugins through real kubectl: ServiceAccount (a pod
//! gets `serviceAccountName: default` and its `kube-api-access-*` token volume) and
//! PodSecurity (a namespace labelled `pod-security.kubernetes.io/enforce=restricted` refuses
//! a plain pod with kube's 403 and list of violations, and admits a hardened one).

#![allow(clippy::unwrap_used)]

mod common;

use common::Up;
use serde_json::Value;

const HARDENED: &str = "apiVersion: v1
kind: Pod
metadata: {name: hardened, namespace: locked}
spec:
  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: app
    image: registry.invalid/app:1
    securityContext:
      allowPrivilegeEscalation: false
      capabilities: {drop: [ALL]}
";

#[test]
fn built_in_admission_defaults_service_accounts_and_enforces_pod_security() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    up.wait_ready();

    up.kubectl(&["run", "plain", "--image=registry.invalid/app:1"]);
    let pod: Value = serde_json::from_str(&up.kubectl(&["get", "pod", "plain", "-o", "json"])).unwrap();
    assert_eq!(pod["spec"]["serviceAccountName"], "default");
    let volume = pod["spec"]["volumes"][0]["name"].as_str().unwrap();
    assert!(volume.starts_with("kube-api-access-"), "{volume}");
    let mount = &pod["spec"]["containers"][0]["volumeMounts"][0];
    assert_eq!(
        (mount["name"].as_str(), mount["mountPath"].as_str()),
        (Some(volume), Some("/var/run/secrets/kubernetes.io/serviceaccount"))
    );

    up.kubectl(&["create", "namespace", "locked"]);
    up.kubectl(&["label", "namespace", "locked", "pod-security.kubernetes.io/enforce=restricted"]);
    let (ok, _, stderr) = up.try_kubectl(&["run", "plain", "-n", "locked", "--image=registry.invalid/app:1"]);
    assert!(!ok);
    assert!(stderr.contains("Error from server (Forbidden)"), "{stderr}");
    assert!(
        stderr.contains(
            r#"pods "plain" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false"#
        ),
        "{stderr}"
    );
    assert!(stderr.contains("runAsNonRoot != true"), "{stderr}");

    let files = tempfile::tempdir().unwrap();
    let hardened = files.path().join("hardened.yaml");
    std::fs::write(&hardened, HARDENED).unwrap();
    assert_eq!(up.kubectl(&["apply", "-f", &hardened.display().to_string()]).trim(), "pod/hardened created");
}

//! End-to-end: the NamespaceLifecycle, LimitRanger and ResourceQuota admission plugins and
//! the resourcequota controller through real kubectl. `kubectl create quota` limits a
//! namespace to 2 pods and 1 cpu: the third pod gets kube's `exceeded quota` 403, `kubectl
//! describe quota` shows the usage, which drops once a pod is deleted; a LimitRange's
//! defaults land in a new pod (with the `kubernetes.io/limit-ranger` annotation); creates
//! into a missing namespace are NotFound, into a terminating one Forbidden; `default` may
//! not be deleted.

#![allow(clippy::unwrap_used)]

mod common;

use common::kubelet::{json, until};
use common::Up;

fn pod(name: &str, cpu: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  containers:
  - name: app
    image: registry.invalid/app:1
    resources: {{requests: {{cpu: {cpu}}}, limits: {{cpu: {cpu}}}}}
"
    )
}

const LIMITS: &str = "apiVersion: v1
kind: LimitRange
metadata: {name: cpu-defaults}
spec:
  limits:
  - type: Container
    default: {cpu: 500m}
    defaultRequest: {cpu: 100m}
    max: {cpu: '1'}
";

const HELD: &str = "apiVersion: v1
kind: ConfigMap
metadata: {name: held, finalizers: [example.com/hold]}
data: {k: v}
";

/// Whether `kubectl describe quota` output has the row `resource  used  hard`.
fn has_row(describe: &str, resource: &str, used: &str, hard: &str) -> bool {
    describe.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == [resource, used, hard])
}

#[test]
fn quotas_limit_ranges_and_namespace_lifecycle_through_kubectl() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    up.wait_ready();
    let files = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = files.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };

    // A quota of 2 pods and 1 cpu; the controller computes its usage first.
    up.kubectl(&["create", "namespace", "shop"]);
    up.kubectl(&["create", "quota", "q", "-n", "shop", "--hard=pods=2,requests.cpu=1"]);
    until(&up, "the quota's usage", &["get", "quota", "q", "-n", "shop", "-o", "json"], |v| {
        v["status"]["used"]["pods"] == "0"
    });
    for name in ["p1", "p2"] {
        up.kubectl(&["create", "-n", "shop", "-f", &file(&format!("{name}.yaml"), &pod(name, "300m"))]);
    }
    let (ok, _, stderr) = up.try_kubectl(&["create", "-n", "shop", "-f", &file("p3.yaml", &pod("p3", "300m"))]);
    assert!(!ok);
    assert!(stderr.contains("Error from server (Forbidden)"), "{stderr}");
    assert!(
        stderr
            .contains(r#"pods "p3" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"#),
        "{stderr}"
    );
    let describe = up.kubectl(&["describe", "quota", "q", "-n", "shop"]);
    assert!(has_row(&describe, "pods", "2", "2"), "{describe}");
    assert!(has_row(&describe, "requests.cpu", "600m", "1"), "{describe}");
    // Deleted, a pod gives its share back once the controller recounts.
    up.kubectl(&["delete", "pod", "p1", "-n", "shop"]);
    let deadline = std::time::Instant::now() + common::DEADLINE;
    loop {
        let describe = up.kubectl(&["describe", "quota", "q", "-n", "shop"]);
        if has_row(&describe, "pods", "1", "2") && has_row(&describe, "requests.cpu", "300m", "1") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "usage never dropped: {describe}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    up.kubectl(&["create", "-n", "shop", "-f", &file("p3.yaml", &pod("p3", "300m"))]);

    // A LimitRange's defaults land in a pod that states none.
    up.kubectl(&["create", "namespace", "limited"]);
    up.kubectl(&["create", "-n", "limited", "-f", &file("limits.yaml", LIMITS)]);
    up.kubectl(&["run", "plain", "-n", "limited", "--image=registry.invalid/app:1"]);
    let plain = json(&up.kubectl(&["get", "pod", "plain", "-n", "limited", "-o", "json"]));
    let resources = &plain["spec"]["containers"][0]["resources"];
    assert_eq!(
        (resources["requests"]["cpu"].as_str(), resources["limits"]["cpu"].as_str()),
        (Some("100m"), Some("500m"))
    );
    assert_eq!(
        plain["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu request for container plain; cpu limit for container plain"
    );
    let (ok, _, stderr) = up.try_kubectl(&["create", "-n", "limited", "-f", &file("big.yaml", &pod("big", "2"))]);
    assert!(
        !ok && stderr.contains(r#"pods "big" is forbidden: maximum cpu usage per Container is 1, but limit is 2"#),
        "{stderr}"
    );

    // NamespaceLifecycle: no namespace, no content; a terminating one takes nothing new.
    let (ok, _, stderr) = up.try_kubectl(&["create", "-n", "nope", "-f", &file("c.yaml", HELD)]);
    let not_found =
        stderr.contains("Error from server (NotFound)") && stderr.contains(r#"namespaces "nope" not found"#);
    assert!(!ok && not_found, "{stderr}");
    up.kubectl(&["create", "namespace", "held"]);
    up.kubectl(&["create", "-n", "held", "-f", &file("held.yaml", HELD)]);
    up.kubectl(&["delete", "namespace", "held", "--wait=false"]);
    let (ok, _, stderr) = up.try_kubectl(&["create", "configmap", "late", "-n", "held", "--from-literal=a=b"]);
    assert!(
        !ok && stderr.contains(
            r#"configmaps "late" is forbidden: unable to create new content in namespace held because it is being terminated"#
        ),
        "{stderr}"
    );
    let remove = r#"[{"op": "remove", "path": "/metadata/finalizers"}]"#;
    up.kubectl(&["patch", "configmap", "held", "-n", "held", "--type=json", "-p", remove]);
    until(&up, "the held namespace gone", &["get", "namespaces", "-o", "json"], |v| {
        v["items"].as_array().is_some_and(|ns| ns.iter().all(|n| n["metadata"]["name"] != "held"))
    });
    let (ok, _, stderr) = up.try_kubectl(&["delete", "namespace", "default"]);
    assert!(
        !ok && stderr.contains(
            r#"Error from server (Forbidden): namespaces "default" is forbidden: this namespace may not be deleted"#
        ),
        "{stderr}"
    );
}

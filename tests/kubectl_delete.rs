//! End-to-end: deletion as kube-apiserver does it, through real kubectl and the Python
//! client on `flotilla up`: kubectl's `deleted` lines; a finalizer keeps a configmap marked
//! with a deletionTimestamp until a JSON patch removes it; `delete -l` and deletecollection
//! delete only what they select; delete preconditions that do not hold are 409s; a scheduled
//! pod is marked for its grace period and goes with `--grace-period=0 --force`; a namespace
//! terminates (refusing new content while something in it is held) and then goes.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::Up;
use serde_json::Value;

const HELD: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: held
  finalizers: [example.com/hold]
data: {a: '1'}
";

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// A configmap (kubectl's `create configmap` would send protobuf, which is not served yet).
fn configmap(name: &str, app: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, labels: {{app: '{app}'}}}}\n")
}

fn namespace(name: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n")
}

fn pod(name: &str, node: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\n\
         spec:\n  nodeName: '{node}'\n  containers: [{{name: web, image: nginx:1.27}}]\n"
    )
}

#[test]
fn kubectl_and_the_python_client_delete_as_kube_apiserver_does() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    up.wait_ready();
    up.kubectl_eventually(&["get", "ns", "default"]);
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };

    // A plain delete: kube's line, then NotFound.
    up.kubectl(&["create", "-f", &file("plain.yaml", &configmap("plain", "none"))]);
    assert_eq!(up.kubectl(&["delete", "cm", "plain"]).trim(), r#"configmap "plain" deleted"#);
    let (ok, _, stderr) = up.try_kubectl(&["delete", "cm", "plain"]);
    assert!(!ok && stderr.contains(r#"configmaps "plain" not found"#), "{stderr}");

    // A finalizer keeps the configmap, marked, until a patch removes it.
    up.kubectl(&["create", "-f", &file("held.yaml", HELD)]);
    assert_eq!(up.kubectl(&["delete", "cm", "held", "--wait=false"]).trim(), r#"configmap "held" deleted"#);
    let held = json(&up.kubectl(&["get", "cm", "held", "-o", "json"]));
    assert!(held["metadata"]["deletionTimestamp"].is_string(), "{held}");
    assert_eq!(held["metadata"]["deletionGracePeriodSeconds"], 0);
    assert_eq!(held["metadata"]["finalizers"][0], "example.com/hold");
    up.kubectl(&["delete", "cm", "held", "--wait=false"]);
    let again = json(&up.kubectl(&["get", "cm", "held", "-o", "json"]));
    assert_eq!(
        again["metadata"]["resourceVersion"], held["metadata"]["resourceVersion"],
        "a second delete changes nothing"
    );
    let (ok, _, stderr) = up.try_kubectl(&["label", "cm", "held", "more=yes"]);
    assert!(ok, "a marked object still takes updates: {stderr}");
    let remove = r#"[{"op":"remove","path":"/metadata/finalizers"}]"#;
    up.kubectl(&["patch", "cm", "held", "--type=json", "-p", remove]);
    let (ok, _, stderr) = up.try_kubectl(&["get", "cm", "held"]);
    assert!(!ok && stderr.contains(r#"configmaps "held" not found"#), "{stderr}");

    // `delete -l` deletes the selected ones only; deletecollection answers with what it deleted.
    for (name, app) in [("web-1", "web"), ("web-2", "web"), ("db-1", "db"), ("db-2", "db")] {
        up.kubectl(&["create", "-f", &file(&format!("{name}.yaml"), &configmap(name, app))]);
    }
    let mut lines: Vec<String> = up.kubectl(&["delete", "cm", "-l", "app=web"]).lines().map(Into::into).collect();
    lines.sort();
    assert_eq!(lines, [r#"configmap "web-1" deleted"#, r#"configmap "web-2" deleted"#]);
    let left = up.kubectl(&["get", "cm", "-o", "name"]);
    let left: Vec<&str> = left.lines().filter(|n| *n != "configmap/kube-root-ca.crt").collect();
    assert_eq!(left, ["configmap/db-1", "configmap/db-2"]);
    let list = json(&up.kubectl(&["delete", "--raw", "/api/v1/namespaces/default/configmaps?labelSelector=app%3Ddb"]));
    assert_eq!(list["kind"], "ConfigMapList");
    let names: Vec<&str> =
        list["items"].as_array().unwrap().iter().map(|o| o["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["db-1", "db-2"]);
    let left = up.kubectl(&["get", "cm", "-o", "name"]);
    assert_eq!(left.lines().filter(|n| *n != "configmap/kube-root-ca.crt").count(), 0, "{left}");

    // A scheduled pod is marked for its grace period; forcing removes it. Unscheduled: at once.
    up.kubectl(&["create", "-f", &file("run.yaml", &pod("run", "node-1"))]);
    assert_eq!(up.kubectl(&["delete", "pod", "run", "--wait=false"]).trim(), r#"pod "run" deleted"#);
    let run = json(&up.kubectl(&["get", "pod", "run", "-o", "json"]));
    assert!(run["metadata"]["deletionTimestamp"].is_string(), "{run}");
    assert_eq!(run["metadata"]["deletionGracePeriodSeconds"], 30);
    let forced = up.kubectl(&["delete", "pod", "run", "--grace-period=0", "--force"]);
    assert_eq!(forced.trim(), r#"pod "run" force deleted"#);
    let (ok, _, stderr) = up.try_kubectl(&["get", "pod", "run"]);
    assert!(!ok && stderr.contains(r#"pods "run" not found"#), "{stderr}");
    up.kubectl(&["create", "-f", &file("pending.yaml", &pod("pending", ""))]);
    assert_eq!(up.kubectl(&["delete", "pod", "pending"]).trim(), r#"pod "pending" deleted"#);

    python_preconditions(&up, &file);

    // A namespace with content held by a finalizer stays Terminating and refuses new content.
    up.kubectl(&["create", "-f", &file("held-ns.yaml", &namespace("held-ns"))]);
    up.kubectl(&["create", "-n", "held-ns", "-f", &file("held2.yaml", HELD)]);
    up.kubectl(&["create", "-n", "held-ns", "-f", &file("free.yaml", &configmap("free", "none"))]);
    assert_eq!(up.kubectl(&["delete", "ns", "held-ns", "--wait=false"]).trim(), r#"namespace "held-ns" deleted"#);
    let ns = json(&up.kubectl(&["get", "ns", "held-ns", "-o", "json"]));
    assert_eq!(ns["status"]["phase"], "Terminating");
    assert!(ns["metadata"]["deletionTimestamp"].is_string(), "{ns}");
    assert_eq!(up.kubectl(&["get", "cm", "-n", "held-ns", "-o", "name"]).trim(), "configmap/held");
    let (ok, _, stderr) =
        up.try_kubectl(&["create", "-n", "held-ns", "-f", &file("late.yaml", &configmap("late", "x"))]);
    assert!(
        !ok && stderr.contains(
            r#"configmaps "late" is forbidden: unable to create new content in namespace held-ns because it is being terminated"#
        ),
        "{stderr}"
    );
    up.kubectl(&["patch", "cm", "held", "-n", "held-ns", "--type=json", "-p", remove]);
    // The namespace controller finishes it; a delete meanwhile does too (kubectl waits).
    up.kubectl(&["delete", "ns", "held-ns", "--ignore-not-found"]);
    let (ok, _, stderr) = up.try_kubectl(&["get", "ns", "held-ns"]);
    assert!(!ok && stderr.contains(r#"namespaces "held-ns" not found"#), "{stderr}");

    // A namespace with nothing holding it goes at once (kubectl waits for it).
    up.kubectl(&["create", "-f", &file("team-a.yaml", &namespace("team-a"))]);
    up.kubectl(&["create", "-n", "team-a", "-f", &file("c.yaml", &configmap("c", "none"))]);
    assert_eq!(up.kubectl(&["delete", "ns", "team-a"]).trim(), r#"namespace "team-a" deleted"#);
    let (ok, _, _) = up.try_kubectl(&["get", "ns", "team-a"]);
    assert!(!ok);
    up.stop();
}

/// The Python client: preconditions that do not hold are 409 Conflicts with kube's
/// messages; ones that hold delete, answered with a `Success` `Status`; a collection by label.
fn python_preconditions(up: &Up, file: &dyn Fn(&str, &str) -> String) {
    for (name, app) in [("pre", "none"), ("py-1", "py"), ("py-2", "py")] {
        up.kubectl(&["create", "-f", &file(&format!("{name}.yaml"), &configmap(name, app))]);
    }
    let available = Command::new("python3").args(["-c", "import kubernetes"]).output();
    if !available.is_ok_and(|o| o.status.success()) {
        eprintln!(
            "SKIPPED the Python preconditions: the `kubernetes` module cannot be imported (pip install kubernetes)"
        );
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/delete_configmaps.py");
    let out = Command::new("python3").arg(script).arg(up.dir.join("kubeconfig")).arg("pre").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "python failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with(r#"409 Conflict Operation cannot be fulfilled on ConfigMap "pre": the UID in the precondition (wrong) does not match the UID in record ("#),
        "{lines:?}"
    );
    assert!(lines[0].ends_with("). The object might have been deleted and then recreated"), "{lines:?}");
    assert!(
        lines[1].starts_with(r#"409 Conflict Operation cannot be fulfilled on ConfigMap "pre": the ResourceVersion in the precondition (1) does not match"#),
        "{lines:?}"
    );
    assert_eq!(lines[2], "Success pre configmaps");
    assert_eq!(lines.get(3).copied().unwrap_or(""), "", "the collection is gone: {lines:?}");
    let (ok, _, _) = up.try_kubectl(&["get", "cm", "pre"]);
    assert!(!ok);
}

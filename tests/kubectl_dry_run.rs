//! End-to-end: server-side dry runs (`dryRun=All`) through real kubectl. Creates, patches,
//! replaces, client- and server-side applies and deletes with `--dry-run=server` answer with
//! the object as it would be (defaulted and admitted: the ServiceAccount plugin's volume is
//! there) and store nothing; a dry-run create is not charged to a ResourceQuota; a dryRun
//! value other than `All` is a 400.

#![allow(clippy::unwrap_used)]

mod common;

use common::kubelet::json;
use common::Up;

#[test]
fn dry_runs_answer_as_a_write_would_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    up.wait_ready();
    let missing = |args: &[&str]| {
        let (ok, _, stderr) = up.try_kubectl(args);
        assert!(!ok && stderr.contains("NotFound"), "{args:?}: {stderr}");
    };

    // Create: the answer is the admitted object; nothing is stored.
    let out = up.kubectl(&["run", "dry", "--image=registry.invalid/app:1", "--dry-run=server", "-o", "json"]);
    let pod = json(&out);
    assert_eq!(pod["spec"]["serviceAccountName"], "default", "admission ran");
    assert_eq!(pod["spec"]["containers"][0]["terminationMessagePath"], "/dev/termination-log", "defaults ran");
    missing(&["get", "pod", "dry"]);

    // Patch, label, replace and apply of a stored object change nothing.
    up.kubectl(&["create", "configmap", "real", "--from-literal=a=1"]);
    let before = json(&up.kubectl(&["get", "configmap", "real", "-o", "json"]));
    let labelled = json(&up.kubectl(&["label", "configmap", "real", "x=y", "--dry-run=server", "-o", "json"]));
    assert_eq!(labelled["metadata"]["labels"]["x"], "y");
    let patch = r#"{"data":{"a":"2"}}"#;
    up.kubectl(&["patch", "configmap", "real", "-p", patch, "--dry-run=server"]);
    let manifest = dir.path().join("real.yaml");
    std::fs::write(&manifest, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: real}\ndata: {a: '3'}\n").unwrap();
    up.kubectl(&["replace", "-f", manifest.to_str().unwrap(), "--dry-run=server"]);
    up.kubectl(&["apply", "-f", manifest.to_str().unwrap(), "--dry-run=server"]);
    let ssa = ["apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", manifest.to_str().unwrap()];
    let applied = up.kubectl(&ssa);
    assert!(applied.contains("serverside-applied (server dry run)"), "{applied}");
    let after = json(&up.kubectl(&["get", "configmap", "real", "-o", "json"]));
    assert_eq!(after, before, "no dry run changed the stored object");
    up.kubectl(&["delete", "configmap", "real", "--dry-run=server"]);
    up.kubectl(&["get", "configmap", "real"]);

    // A dry-run create is not charged to the namespace's quota.
    up.kubectl(&["create", "quota", "q", "--hard=configmaps=3"]);
    let used = || {
        let quota = json(&up.kubectl(&["get", "quota", "q", "-o", "json"]));
        quota["status"]["used"]["configmaps"].as_str().map(String::from)
    };
    let deadline = std::time::Instant::now() + common::DEADLINE;
    while used().is_none() {
        assert!(std::time::Instant::now() < deadline, "the quota's usage was never counted");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let counted = used();
    up.kubectl(&["create", "configmap", "fits", "--dry-run=server"]);
    assert_eq!(used(), counted, "a dry run is not charged");
    missing(&["get", "configmap", "fits"]);

    // Only `All` is a dry run.
    let body = dir.path().join("cm.json");
    std::fs::write(&body, r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"odd"}}"#).unwrap();
    let (ok, _, stderr) = up.try_kubectl(&[
        "create",
        "--raw",
        "/api/v1/namespaces/default/configmaps?dryRun=Sometimes",
        "-f",
        body.to_str().unwrap(),
    ]);
    assert!(!ok && stderr.contains("Unsupported value"), "{stderr}");
    missing(&["get", "configmap", "odd"]);
}

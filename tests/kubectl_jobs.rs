//! End-to-end: the Job and CronJob controllers on `flotilla up` through real kubectl, with
//! Node objects made through the API and the test as the kubelet (a thread that ends bound
//! Job pods: `Failed` for the Job named `fails`, else `Succeeded`; and removes pods whose
//! deletion it is told of). `kubectl create job` completes (`kubectl wait
//! --for=condition=complete`, `get jobs` shows `Complete` and `1/1`); a Job with
//! `backoffLimit: 0` whose pod fails is `Failed` with `BackoffLimitExceeded`; `kubectl create
//! job --from=cronjob/x` runs the CronJob's template under its ownership; deleting a Job
//! takes its pods along.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Up, DEADLINE};
use serde_json::Value;

const JOB_NAME: &str = "batch.kubernetes.io/job-name";

fn node(name: &str) -> String {
    format!(
        "apiVersion: v1
kind: Node
metadata:
  name: {name}
  labels: {{kubernetes.io/hostname: {name}}}
status:
  capacity: {{cpu: '4', memory: 8Gi, pods: '110'}}
  allocatable: {{cpu: '4', memory: 8Gi, pods: '110'}}
  conditions:
  - {{type: Ready, status: 'True', reason: KubeletReady, message: kubelet is posting ready status}}
---
"
    )
}

const FAILING_JOB: &str = "apiVersion: batch/v1
kind: Job
metadata: {name: fails}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - {name: c, image: registry.invalid/fails:1, command: [/bin/false]}
";

struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

fn items(v: &Value) -> Vec<Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

/// The kubelet of every node, faked: bound Job pods end (`Failed` for the Job `fails`,
/// else `Succeeded`); pods being deleted go. Until `stop`.
fn kubelet(up: &Up, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        let (ok, out, _) = up.try_kubectl(&["get", "pods", "-A", "-o", "json"]);
        let pods = if ok { json(&out) } else { Value::Null };
        for pod in items(&pods) {
            let (ns, name) =
                (pod["metadata"]["namespace"].as_str().unwrap_or(""), pod["metadata"]["name"].as_str().unwrap_or(""));
            if pod["spec"]["nodeName"].as_str().unwrap_or("").is_empty() {
                continue;
            }
            if pod["metadata"].get("deletionTimestamp").is_some() {
                let _ =
                    up.try_kubectl(&["delete", "pod", "-n", ns, name, "--grace-period=0", "--force", "--wait=false"]);
                continue;
            }
            let Some(job) = pod["metadata"]["labels"][JOB_NAME].as_str() else { continue };
            if matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed")) {
                continue;
            }
            let phase = if job == "fails" { "Failed" } else { "Succeeded" };
            let status = format!(r#"{{"status":{{"phase":"{phase}"}}}}"#);
            let _ = up.try_kubectl(&[
                "patch",
                "pod",
                "-n",
                ns,
                name,
                "--subresource=status",
                "--type=merge",
                "-p",
                &status,
            ]);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `check` (a kubectl JSON query) until it holds.
fn until(up: &Up, what: &str, args: &[&str], check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (ok, out, _) = up.try_kubectl(args);
        let value = if ok { json(&out) } else { Value::Null };
        if check(&value) {
            return value;
        }
        assert!(Instant::now() < deadline, "never: {what}; last: {value}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn condition<'a>(obj: &'a Value, kind: &str) -> Option<&'a Value> {
    obj["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == kind)
}

#[test]
fn jobs_run_to_completion_or_failure_through_kubectl() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    up.wait_ready();
    let files = tempfile::tempdir().unwrap();
    let nodes = files.path().join("nodes.yaml");
    std::fs::write(&nodes, (1..=2).map(|i| node(&format!("node-{i}"))).collect::<String>()).unwrap();
    up.kubectl(&["apply", "-f", &nodes.display().to_string()]);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        s.spawn(|| kubelet(&up, &stop));

        // A Job of one pod: complete once its pod succeeded.
        up.kubectl(&["create", "job", "pi", "--image=registry.invalid/pi:1", "--", "/bin/true"]);
        let waited = up.kubectl(&["wait", "--for=condition=complete", "job/pi", "--timeout=30s"]);
        assert!(waited.contains("job.batch/pi condition met"), "{waited}");
        let table = up.kubectl(&["get", "jobs"]);
        let row = table.lines().find(|l| l.starts_with("pi ")).unwrap_or_else(|| panic!("{table}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(&cells[..3], ["pi", "Complete", "1/1"], "{table}");
        let job = json(&up.kubectl(&["get", "job", "pi", "-o", "json"]));
        assert_eq!(job["status"]["succeeded"], 1);
        assert!(job["status"]["completionTime"].is_string());
        assert_eq!(condition(&job, "Complete").unwrap()["reason"], "CompletionsReached");
        let pods =
            until(&up, "pi's pod without its finalizer", &["get", "pods", "-l", "job-name=pi", "-o", "json"], |v| {
                items(v).len() == 1 && items(v).iter().all(|p| p["metadata"].get("finalizers").is_none())
            });
        assert_eq!(items(&pods)[0]["status"]["phase"], "Succeeded");
        assert_eq!(items(&pods)[0]["metadata"]["ownerReferences"][0]["kind"], "Job");

        // No retries allowed: the failed pod fails the Job.
        let failing = files.path().join("fails.yaml");
        std::fs::write(&failing, FAILING_JOB).unwrap();
        up.kubectl(&["apply", "-f", &failing.display().to_string()]);
        up.kubectl(&["wait", "--for=condition=failed", "job/fails", "--timeout=30s"]);
        let job = json(&up.kubectl(&["get", "job", "fails", "-o", "json"]));
        assert_eq!(condition(&job, "Failed").unwrap()["reason"], "BackoffLimitExceeded");
        assert_eq!(job["status"]["failed"], 1);
        let table = up.kubectl(&["get", "job", "fails"]);
        assert!(table.lines().any(|l| l.starts_with("fails ") && l.contains("Failed") && l.contains("0/1")), "{table}");

        // A Job from a CronJob's template, owned by it.
        up.kubectl(&[
            "create",
            "cronjob",
            "nightly",
            "--image=registry.invalid/nightly:1",
            "--schedule=0 3 * * *",
            "--",
            "/bin/true",
        ]);
        up.kubectl(&["create", "job", "nightly-manual", "--from=cronjob/nightly"]);
        up.kubectl(&["wait", "--for=condition=complete", "job/nightly-manual", "--timeout=30s"]);
        let job = json(&up.kubectl(&["get", "job", "nightly-manual", "-o", "json"]));
        assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "CronJob");
        assert_eq!(job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"], "manual");
        let cj = json(&up.kubectl(&["get", "cronjob", "nightly", "-o", "json"]));
        assert!(cj["status"].get("lastScheduleTime").is_none(), "not run on its schedule: {cj}");

        // Deleting a Job deletes its pods.
        up.kubectl(&["delete", "job", "pi"]);
        until(&up, "pi's pods gone", &["get", "pods", "-l", "job-name=pi", "-o", "json"], |v| items(v).is_empty());
    });
}

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

use std::sync::atomic::AtomicBool;

use common::kubelet::{self, items, json, node_manifest, until, StopOnDrop};
use common::Up;
use serde_json::Value;

const JOB_NAME: &str = "batch.kubernetes.io/job-name";

/// What the fake kubelet does to a bound Job pod: it ends, `Failed` for the Job `fails`,
/// else `Succeeded`.
fn job_outcome(pod: &Value, _: usize) -> Option<String> {
    let job = pod["metadata"]["labels"][JOB_NAME].as_str()?;
    if matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed")) {
        return None;
    }
    let phase = if job == "fails" { "Failed" } else { "Succeeded" };
    Some(format!(r#"{{"status":{{"phase":"{phase}"}}}}"#))
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
    std::fs::write(&nodes, (1..=2).map(|i| node_manifest(&format!("node-{i}"))).collect::<String>()).unwrap();
    up.kubectl(&["apply", "-f", &nodes.display().to_string()]);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        s.spawn(|| kubelet::run(&up, &stop, &["node-1", "node-2"], job_outcome));

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

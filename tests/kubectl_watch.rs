//! End-to-end: watches on `flotilla up`. Real `kubectl get -w --output-watch-events` sees a
//! configmap created, replaced and deleted; the Python `kubernetes` client's watch sees the
//! same from a list's resourceVersion (skipped, with a note, where the module is missing).

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use common::{Up, DEADLINE};

const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo\ndata:\n  color: blue\n";

/// A child process whose stdout lines arrive on a channel; killed when dropped.
struct Lines {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn spawn(mut command: Command) -> Lines {
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines { child, lines, seen: Vec::new() }
    }

    /// Reads lines until one satisfies `want`, failing after [`DEADLINE`].
    fn until(&mut self, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Err(e) => panic!("no wanted line ({e}); seen: {:#?}", self.seen),
            }
        }
    }

    /// Every line until the process ends (failing after [`DEADLINE`]).
    fn rest(&mut self) -> Vec<String> {
        let deadline = Instant::now() + DEADLINE;
        let mut out = Vec::new();
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => out.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => return out,
                Err(e) => panic!("the process did not end ({e}); seen: {out:#?}"),
            }
        }
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kubectl(up: &Up, args: &[&str]) -> Command {
    let mut command = Command::new(std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into()));
    command.arg("--kubeconfig").arg(up.dir.join("kubeconfig")).arg("--cache-dir").arg(up.dir.join("kube-cache"));
    command.args(args);
    command
}

/// `ADDED      default     demo   0s` -> ("ADDED", "default", "demo").
fn event_row(line: &str) -> (String, String, String) {
    let mut fields = line.split_whitespace().map(String::from);
    let mut next = || fields.next().unwrap_or_default();
    (next(), next(), next())
}

#[test]
fn kubectl_and_the_python_client_watch_configmaps() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    up.wait_ready();
    up.kubectl_eventually(&["get", "ns", "default", "-o", "name"]);
    let cm = dir.path().join("cm.yaml");
    std::fs::write(&cm, CM).unwrap();
    let cm = cm.display().to_string();

    let mut watch = Lines::spawn(kubectl(&up, &["get", "cm", "-A", "-w", "--output-watch-events"]));
    let list: serde_json::Value =
        serde_json::from_str(&up.kubectl(&["get", "--raw", "/api/v1/namespaces/default/configmaps"])).unwrap();
    let start_rv = list["metadata"]["resourceVersion"].as_str().unwrap().to_string();

    up.kubectl(&["create", "-f", &cm]);
    let row = |t: &'static str| move |l: &str| event_row(l) == (t.into(), "default".into(), "demo".into());
    watch.until(row("ADDED"));
    let mut changed: serde_json::Value =
        serde_json::from_str(&up.kubectl(&["get", "cm", "demo", "-o", "json"])).unwrap();
    changed["data"]["color"] = "red".into();
    let changed_file = dir.path().join("changed.json");
    std::fs::write(&changed_file, changed.to_string()).unwrap();
    up.kubectl(&["replace", "-f", &changed_file.display().to_string()]);
    watch.until(row("MODIFIED"));
    up.kubectl(&["delete", "cm", "demo"]);
    watch.until(row("DELETED"));
    // (kube-system's own configmaps and every namespace's kube-root-ca.crt are left out.)
    let events: Vec<_> = watch
        .seen
        .iter()
        .filter(|l| !l.starts_with("EVENT"))
        .map(|l| event_row(l))
        .filter(|(_, ns, name)| ns != "kube-system" && name != "kube-root-ca.crt")
        .map(|(t, _, _)| t)
        .collect();
    assert_eq!(events, ["ADDED", "MODIFIED", "DELETED"], "{:#?}", watch.seen);
    drop(watch);

    python_watch(&up, &start_rv);
    up.stop();
}

/// Replays the changes after `rv` with `kubernetes.watch.Watch` (timeout 5 s), and expects
/// exactly ADDED, MODIFIED, DELETED of `demo`.
fn python_watch(up: &Up, rv: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/watch_configmaps.py");
    let available = Command::new("python3").args(["-c", "import kubernetes"]).output();
    if !available.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED the Python watch: the `kubernetes` module cannot be imported (pip install kubernetes)");
        return;
    }
    let mut python = Command::new("python3");
    python.arg(script).arg(up.dir.join("kubeconfig")).arg(rv);
    let mut run = Lines::spawn(python);
    let lines = run.rest();
    let status = run.child.wait().unwrap();
    assert!(status.success(), "python watch failed: {lines:#?}");
    let lines: Vec<&String> = lines.iter().filter(|l| !l.ends_with(" kube-root-ca.crt")).collect();
    assert_eq!(lines, ["ADDED demo", "MODIFIED demo", "DELETED demo"]);
}

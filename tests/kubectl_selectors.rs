//! End-to-end: label and field selectors on `flotilla up`. Real kubectl lists configmaps
//! with `-l` (equality, set and existence requirements) and `--field-selector`, gets kube's
//! errors for a malformed selector and an unsupported field, and watches with `-l` while
//! `kubectl replace` moves objects into and out of the selection; the Python `kubernetes`
//! client pages through a selector list two at a time (skipped, with a note, where the
//! module is missing).

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use common::{Up, DEADLINE};
use serde_json::Value;

const NS: &str = "sel";

/// Four configmaps: web-a (app=web, tier=a), web-b (app=web, tier=b), db-c (app=db,
/// tier=c, x=1) and plain (no labels).
const CONFIGMAPS: &str = "apiVersion: v1
kind: ConfigMap
metadata: {name: web-a, labels: {app: web, tier: a}}
data: {k: v}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: web-b, labels: {app: web, tier: b}}
data: {k: v}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: db-c, labels: {app: db, tier: c, x: '1'}}
data: {k: v}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: plain}
data: {k: v}
";

/// Two pods, one bound to node n1.
const PODS: &str = "apiVersion: v1
kind: Pod
metadata: {name: on-n1}
spec:
  nodeName: n1
  containers: [{name: c, image: busybox}]
---
apiVersion: v1
kind: Pod
metadata: {name: unbound}
spec:
  containers: [{name: c, image: busybox}]
";

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
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
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

/// The sorted names kubectl prints with `-o name` (`configmap/x` -> `x`).
fn names(output: &str) -> Vec<String> {
    let mut names: Vec<String> =
        output.lines().filter_map(|l| l.split_once('/')).map(|(_, name)| name.to_string()).collect();
    // The root CA publisher's ConfigMap (in every namespace, as in kube) is not the test's.
    names.retain(|n| n != "kube-root-ca.crt");
    names.sort();
    names
}

/// `ADDED   web-a   1   0s` -> ("ADDED", "web-a").
fn event_row(line: &str) -> (String, String) {
    let mut fields = line.split_whitespace().map(String::from);
    (fields.next().unwrap_or_default(), fields.next().unwrap_or_default())
}

#[test]
fn kubectl_lists_and_watches_with_label_and_field_selectors() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    up.wait_ready();
    up.kubectl_eventually(&["get", "ns", "default", "-o", "name"]);
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let namespace = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NS}\n");
    up.kubectl(&["create", "-f", &file("ns.yaml", &namespace)]);
    up.kubectl(&["create", "-n", NS, "-f", &file("cms.yaml", CONFIGMAPS)]);
    let get = |args: &[&str]| names(&up.kubectl(&[&["get", "cm", "-n", NS, "-o", "name"], args].concat()));

    assert_eq!(get(&["-l", "app=web"]), ["web-a", "web-b"]);
    assert_eq!(get(&["-l", "app==web,tier!=b"]), ["web-a"]);
    assert_eq!(get(&["-l", "tier in (a,c)"]), ["db-c", "web-a"]);
    assert_eq!(get(&["-l", "tier notin (a,c)"]), ["plain", "web-b"]);
    assert_eq!(get(&["-l", "!x"]), ["plain", "web-a", "web-b"]);
    assert_eq!(get(&["-l", "x"]), ["db-c"]);
    assert_eq!(get(&["--field-selector", "metadata.name=plain"]), ["plain"]);
    assert_eq!(get(&["--field-selector", "metadata.name!=plain", "-l", "app=web"]), ["web-a", "web-b"]);
    let across = names(&up.kubectl(&["get", "cm", "-A", "-o", "name", "--field-selector", "metadata.namespace=sel"]));
    assert_eq!(across, ["db-c", "plain", "web-a", "web-b"]);
    assert!(get(&["-l", "app=none"]).is_empty());

    // kube's errors, which kubectl prefixes with what it was looking for.
    let (ok, _, stderr) = up.try_kubectl(&["get", "cm", "-n", NS, "--field-selector", "status.phase=Running"]);
    assert!(!ok && stderr.contains("BadRequest"), "{stderr}");
    assert!(stderr.contains(r#""status.phase" is not a known field selector"#), "{stderr}");
    let (ok, _, stderr) = up.try_kubectl(&["get", "cm", "-n", NS, "-l", "app web"]);
    assert!(!ok && stderr.contains("unable to parse requirement"), "{stderr}");

    // Pods select on spec.nodeName; an unknown pod field is named in the error.
    up.kubectl(&["create", "-n", NS, "-f", &file("pods.yaml", PODS)]);
    let pods = |args: &[&str]| names(&up.kubectl(&[&["get", "pods", "-n", NS, "-o", "name"], args].concat()));
    assert_eq!(pods(&["--field-selector", "spec.nodeName=n1"]), ["on-n1"]);
    assert_eq!(pods(&["--field-selector", "spec.nodeName="]), ["unbound"]);
    let (ok, _, stderr) = up.try_kubectl(&["get", "pods", "-n", NS, "--field-selector", "spec.bogus=1"]);
    assert!(!ok && stderr.contains("field label not supported: spec.bogus"), "{stderr}");

    // A watch of app=web: plain gets the label (ADDED), web-a loses it (DELETED).
    let mut watch =
        Lines::spawn(kubectl(&up, &["get", "cm", "-n", NS, "-l", "app=web", "-w", "--output-watch-events"]));
    let row = |t: &'static str, name: &'static str| move |l: &str| event_row(l) == (t.into(), name.into());
    watch.until(row("ADDED", "web-a"));
    watch.until(row("ADDED", "web-b"));
    let relabel = |name: &str, app: &str| {
        let mut obj: Value = serde_json::from_str(&up.kubectl(&["get", "cm", "-n", NS, name, "-o", "json"])).unwrap();
        obj["metadata"]["labels"]["app"] = app.into();
        let path = file(&format!("{name}-{app}.json"), &obj.to_string());
        up.kubectl(&["replace", "-f", &path]);
    };
    relabel("plain", "web");
    watch.until(row("ADDED", "plain"));
    relabel("web-a", "db");
    watch.until(row("DELETED", "web-a"));
    let events: Vec<_> = watch.seen.iter().filter(|l| !l.starts_with("EVENT")).map(|l| event_row(l)).collect();
    let want = [("ADDED", "web-a"), ("ADDED", "web-b"), ("ADDED", "plain"), ("DELETED", "web-a")];
    assert_eq!(events, want.map(|(t, n)| (t.to_string(), n.to_string())), "{:#?}", watch.seen);
    drop(watch);
    assert_eq!(get(&["-l", "app=web"]), ["plain", "web-b"]);

    python_pages(&up, &file);
    up.stop();
}

fn kubectl(up: &Up, args: &[&str]) -> Command {
    let mut command = Command::new(std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into()));
    command.arg("--kubeconfig").arg(up.dir.join("kubeconfig")).arg("--cache-dir").arg(up.dir.join("kube-cache"));
    command.args(args);
    command
}

/// Ten more configmaps p0..p9, the even ones labelled page=yes; the Python client lists
/// page=yes two at a time and must see each of them exactly once, on pages of at most two.
fn python_pages(up: &Up, file: &dyn Fn(&str, &str) -> String) {
    let docs: Vec<String> = (0..10)
        .map(|i| {
            let labels = if i % 2 == 0 { "{page: 'yes'}" } else { "{page: 'no'}" };
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: p{i}, labels: {labels}}}\n")
        })
        .collect();
    up.kubectl(&["create", "-n", NS, "-f", &file("pages.yaml", &docs.join("---\n"))]);
    let available = Command::new("python3").args(["-c", "import kubernetes"]).output();
    if !available.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED the Python paging: the `kubernetes` module cannot be imported (pip install kubernetes)");
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/list_configmaps_paged.py");
    let mut python = Command::new("python3");
    python.arg(script).arg(up.dir.join("kubeconfig")).arg(NS).arg("page=yes");
    let mut run = Lines::spawn(python);
    let pages = run.rest();
    let status = run.child.wait().unwrap();
    assert!(status.success(), "python paging failed: {pages:#?}");
    assert!(pages.len() >= 3, "five matches two at a time: {pages:#?}");
    assert!(pages.iter().all(|p| p.split_whitespace().count() <= 2), "{pages:#?}");
    let seen: Vec<&str> = pages.iter().flat_map(|p| p.split_whitespace()).collect();
    assert_eq!(seen, ["p0", "p2", "p4", "p6", "p8"], "{pages:#?}");
}

//! A fake kubelet for end-to-end tests without a node agent: Node manifests to create, and
//! a loop that does to bound pods what a kubelet would (start them, end them, remove them
//! once deleted), plus node heartbeats.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Up, DEADLINE};

/// A Node with 4 cpu, 8Gi and 110 pods, Ready, as a kubelet registers it (one YAML document).
pub fn node_manifest(name: &str) -> String {
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

/// Sets the flag when dropped, so the kubelet loop stops even when the test fails.
pub struct StopOnDrop<'a>(pub &'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// JSON of kubectl's output (`null` if it is not JSON).
pub fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// The `items` of a list.
pub fn items(v: &Value) -> Vec<Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

/// Polls `kubectl args` (a JSON query) until `check` holds; fails after twice [`DEADLINE`].
pub fn until(up: &Up, what: &str, args: &[&str], check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + DEADLINE * 2;
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

/// The status patch that makes a bound pod Running and Ready with a pod IP made of `n`,
/// unless it runs already.
pub fn running(pod: &Value, n: usize) -> Option<String> {
    let ip = format!("10.244.{}.{}", n / 250 % 250, n % 250 + 1);
    (pod["status"]["phase"] != "Running").then(|| {
        format!(
            r#"{{"status":{{"phase":"Running","podIP":"{ip}","podIPs":[{{"ip":"{ip}"}}],"conditions":[{{"type":"Ready","status":"True"}}]}}}}"#
        )
    })
}

/// Now, as an RFC 3339 UTC timestamp (`2026-11-30T12:00:00Z`).
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Until `stop`: posts the Ready heartbeat of each of `nodes` every 5 s (else the node
/// lifecycle controller marks them Unknown after 40 s); removes bound pods being deleted (their
/// containers stopped); patches each other bound pod with the status `outcome` gives it (the
/// pod and a counter for unique IPs; `None`: leave it).
pub fn run(up: &Up, stop: &AtomicBool, nodes: &[&str], outcome: impl Fn(&Value, usize) -> Option<String>) {
    let mut counter = 10;
    let mut last_heartbeat: Option<Instant> = None;
    while !stop.load(Ordering::SeqCst) {
        if last_heartbeat.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
            last_heartbeat = Some(Instant::now());
            let ready = format!(
                r#"{{"status":{{"conditions":[{{"type":"Ready","status":"True","reason":"KubeletReady","lastHeartbeatTime":"{}"}}]}}}}"#,
                now_rfc3339()
            );
            for node in nodes {
                let _ = up.try_kubectl(&["patch", "node", node, "--subresource=status", "--type=merge", "-p", &ready]);
            }
        }
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
            counter += 1;
            if let Some(status) = outcome(&pod, counter) {
                let args = ["patch", "pod", "-n", ns, name, "--subresource=status", "--type=merge", "-p", &status];
                let _ = up.try_kubectl(&args);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

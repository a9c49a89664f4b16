//! The pod status a real node reports (kubelet's `generateAPIPodStatus` and `getPhase`):
//! from what the runtime shows of the sandbox and each container, plus the worker's own
//! knowledge (back-off, config errors, probe results), as a `pods/status` patch.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

/// One run of a container, as the runtime reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub id: String,
    pub image_ref: String,
    pub attempt: u32,
    pub state: RunState,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    Created,
    Running { started: Timestamp },
    Exited { exit_code: i32, reason: String, message: String, started: Timestamp, finished: Timestamp },
}

/// One container of the spec and what is known of it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerView {
    pub name: String,
    pub image: String,
    /// The latest run.
    pub current: Option<Run>,
    /// The run before it, if it ended (`lastState`).
    pub previous: Option<Run>,
    /// Why it is not running, when the worker knows better than the runtime
    /// (`CrashLoopBackOff`, `CreateContainerConfigError`, `ErrImageNeverPull`, ...).
    pub waiting: Option<(String, String)>,
    /// Readiness (probe, or running when there is none).
    pub ready: bool,
    /// Startup probe passed (or none, and it runs).
    pub started: bool,
}

impl ContainerView {
    fn restart_count(&self) -> u32 {
        self.current.as_ref().map_or(0, |r| r.attempt)
    }

    fn is_running(&self) -> bool {
        matches!(self.current.as_ref().map(|r| &r.state), Some(RunState::Running { .. }))
    }

    /// Exited with code 0 and not about to run again.
    fn succeeded(&self) -> bool {
        matches!(self.current.as_ref().map(|r| &r.state), Some(RunState::Exited { exit_code: 0, .. }))
    }
}

/// Everything the status is made from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    pub sandbox_ready: bool,
    pub pod_ip: Option<String>,
    pub host_ip: String,
    pub init: Vec<ContainerView>,
    pub containers: Vec<ContainerView>,
    /// When the worker first started the pod (`startTime`).
    pub start_time: Option<Timestamp>,
}

fn terminated(run: &Run) -> Option<Value> {
    let RunState::Exited { exit_code, reason, message, started, finished } = &run.state else { return None };
    let reason = if !reason.is_empty() {
        reason.clone()
    } else if *exit_code == 0 {
        "Completed".into()
    } else {
        "Error".into()
    };
    let mut t = json!({
        "exitCode": exit_code,
        "reason": reason,
        "startedAt": Time(*started),
        "finishedAt": Time(*finished),
        "containerID": format!("containerd://{}", run.id),
    });
    if !message.is_empty() {
        t["message"] = json!(message);
    }
    Some(json!({ "terminated": t }))
}

fn state(view: &ContainerView) -> Value {
    if let Some((reason, message)) = &view.waiting {
        return json!({"waiting": {"reason": reason, "message": message}});
    }
    match &view.current {
        None => json!({"waiting": {"reason": "ContainerCreating"}}),
        Some(run) => match &run.state {
            RunState::Created => json!({"waiting": {"reason": "ContainerCreating"}}),
            RunState::Running { started } => json!({"running": {"startedAt": Time(*started)}}),
            RunState::Exited { .. } => terminated(run).unwrap_or(Value::Null),
        },
    }
}

fn container_status(view: &ContainerView) -> Value {
    let mut status = json!({
        "name": view.name,
        "image": view.image,
        "imageID": view.current.as_ref().map(|r| r.image_ref.clone()).unwrap_or_default(),
        "ready": view.ready && view.is_running(),
        "started": view.started && view.is_running(),
        "restartCount": view.restart_count(),
        "state": state(view),
        "lastState": view.previous.as_ref().and_then(terminated).unwrap_or_else(|| json!({})),
    });
    if let Some(run) = &view.current {
        status["containerID"] = json!(format!("containerd://{}", run.id));
    }
    status
}

/// kubelet's `getPhase`.
pub fn phase(pod: &Pod, observed: &Observed) -> &'static str {
    let policy = pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always");
    // Init containers: all must have succeeded; a failed one fails the pod under Never.
    for init in &observed.init {
        if init.succeeded() {
            continue;
        }
        let failed = matches!(init.current.as_ref().map(|r| &r.state), Some(RunState::Exited { exit_code, .. }) if *exit_code != 0);
        return if failed && policy == "Never" { "Failed" } else { "Pending" };
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in &observed.containers {
        match c.current.as_ref().map(|r| &r.state) {
            Some(RunState::Running { .. }) if c.waiting.is_none() => running += 1,
            Some(RunState::Exited { exit_code, .. }) => {
                stopped += 1;
                if *exit_code == 0 {
                    succeeded += 1;
                }
            }
            // Waiting to restart after a run counts as stopped; never run, as waiting.
            _ if c.previous.is_some() || c.restart_count() > 0 => stopped += 1,
            _ => waiting += 1,
        }
    }
    if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        match policy {
            "Always" => "Running",
            _ if stopped == succeeded => "Succeeded",
            "Never" => "Failed",
            _ => "Running",
        }
    } else {
        "Pending"
    }
}

fn condition(pod: &Pod, kind: &str, status: bool, now: Timestamp, why: Option<(&str, String)>) -> Value {
    let status = if status { "True" } else { "False" };
    let previous =
        pod.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|l| l.iter().find(|c| c.type_ == kind));
    let transition =
        previous.filter(|c| c.status == status).and_then(|c| c.last_transition_time.clone()).unwrap_or(Time(now));
    let mut c = json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": transition});
    if let Some((reason, message)) = why {
        c["reason"] = json!(reason);
        c["message"] = json!(message);
    }
    c
}

fn not_ready(views: &[ContainerView], reason: &str) -> Option<(&'static str, String)> {
    let names: Vec<&str> = views.iter().filter(|v| !(v.ready && v.is_running())).map(|v| v.name.as_str()).collect();
    (!names.is_empty()).then(|| {
        let reason = if reason == "init" { "PodCompleted" } else { "ContainersNotReady" };
        (reason, format!("containers with unready status: [{}]", names.join(" ")))
    })
}

/// The whole `status` of `pod` as `observed`, to be sent as a merge patch.
pub fn status(pod: &Pod, observed: &Observed, now: Timestamp) -> Value {
    let phase = phase(pod, observed);
    let initialized = observed.init.iter().all(ContainerView::succeeded);
    let containers_ready = not_ready(&observed.containers, "");
    let terminal = matches!(phase, "Succeeded" | "Failed");
    let ready_why = if terminal { Some(("PodCompleted", String::new())) } else { containers_ready.clone() };
    let init_why = (!initialized).then(|| {
        let pending: Vec<&str> = observed.init.iter().filter(|v| !v.succeeded()).map(|v| v.name.as_str()).collect();
        ("ContainersNotInitialized", format!("containers with incomplete status: [{}]", pending.join(" ")))
    });
    let mut conditions = vec![
        condition(pod, "PodReadyToStartContainers", observed.sandbox_ready, now, None),
        condition(pod, "Initialized", initialized, now, init_why),
        condition(pod, "ContainersReady", containers_ready.is_none() && !terminal, now, containers_ready.clone()),
        condition(pod, "Ready", ready_why.is_none(), now, ready_why),
    ];
    // Keep PodScheduled and any readiness-gate conditions others own.
    for c in pod.status.iter().flat_map(|s| s.conditions.iter().flatten()) {
        if !["PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready"].contains(&c.type_.as_str()) {
            conditions.push(serde_json::to_value(c).unwrap_or(Value::Null));
        }
    }
    let pod_ips: Vec<Value> = observed.pod_ip.iter().map(|ip| json!({"ip": ip})).collect();
    let mut status = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": observed.host_ip,
        "hostIPs": [{"ip": observed.host_ip}],
        "podIP": observed.pod_ip,
        "podIPs": pod_ips,
        "startTime": observed.start_time.map(Time),
        "containerStatuses": observed.containers.iter().map(container_status).collect::<Vec<_>>(),
        "qosClass": pod.status.as_ref().and_then(|s| s.qos_class.clone()),
    });
    if !observed.init.is_empty() {
        status["initContainerStatuses"] = observed.init.iter().map(container_status).collect();
    }
    status
}

/// Whether the pod's current status already says what `wanted` says (ignoring the
/// conditions' probe times), so no write is needed.
pub fn shows(pod: &Pod, wanted: &Value) -> bool {
    let Some(current) = pod.status.as_ref().and_then(|s| serde_json::to_value(s).ok()) else { return false };
    let Some(fields) = wanted.as_object() else { return false };
    fields.iter().all(|(key, value)| {
        let have = current.get(key).unwrap_or(&Value::Null);
        match key.as_str() {
            // The server drops nulls and empty objects: compare what remains.
            _ if value.is_null() => have.is_null(),
            _ => normalize(have) == normalize(value),
        }
    })
}

/// Nulls and empty objects removed, so a value compares equal to its stored form.
fn normalize(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null() && !v.as_object().is_some_and(|o| o.is_empty()))
                .map(|(k, v)| (k.clone(), normalize(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(normalize).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn pod(policy: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u"},
            "spec": {"restartPolicy": policy, "containers": [{"name": "a", "image": "busybox"}]},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]},
        }))
        .unwrap()
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn run(attempt: u32, state: RunState) -> Run {
        Run { id: format!("c{attempt}"), image_ref: "sha256:abc".into(), attempt, state }
    }

    fn exited(code: i32) -> RunState {
        RunState::Exited {
            exit_code: code,
            reason: String::new(),
            message: String::new(),
            started: at(0),
            finished: at(1),
        }
    }

    fn view(current: Option<Run>, previous: Option<Run>, waiting: Option<(&str, &str)>) -> ContainerView {
        ContainerView {
            name: "a".into(),
            image: "busybox".into(),
            current,
            previous,
            waiting: waiting.map(|(r, m)| (r.into(), m.into())),
            ready: true,
            started: true,
        }
    }

    fn observed(c: ContainerView) -> Observed {
        Observed {
            sandbox_ready: true,
            pod_ip: Some("10.244.0.5".into()),
            host_ip: "127.0.0.1".into(),
            containers: vec![c],
            start_time: Some(at(0)),
            ..Observed::default()
        }
    }

    #[test]
    fn phases_follow_kubelet() {
        let running = view(Some(run(0, RunState::Running { started: at(0) })), None, None);
        assert_eq!(phase(&pod("Always"), &observed(running)), "Running");
        assert_eq!(phase(&pod("Always"), &observed(view(None, None, None))), "Pending");
        // Crash looping under Always: Running, with the restart count.
        let looping = view(Some(run(2, exited(1))), Some(run(1, exited(1))), Some(("CrashLoopBackOff", "back-off")));
        assert_eq!(phase(&pod("Always"), &observed(looping.clone())), "Running");
        let status = status(&pod("Always"), &observed(looping), at(5));
        assert_eq!(status["containerStatuses"][0]["restartCount"], 2);
        assert_eq!(status["containerStatuses"][0]["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert_eq!(status["containerStatuses"][0]["lastState"]["terminated"]["exitCode"], 1);
        assert_eq!(status["containerStatuses"][0]["lastState"]["terminated"]["reason"], "Error");
        assert_eq!(phase(&pod("Never"), &observed(view(Some(run(0, exited(0))), None, None))), "Succeeded");
        assert_eq!(phase(&pod("Never"), &observed(view(Some(run(0, exited(3))), None, None))), "Failed");
        assert_eq!(phase(&pod("OnFailure"), &observed(view(Some(run(0, exited(3))), None, None))), "Running");
    }

    #[test]
    fn an_unfinished_init_container_keeps_the_pod_pending() {
        let mut o = observed(view(None, None, None));
        o.init = vec![view(Some(run(0, RunState::Running { started: at(0) })), None, None)];
        assert_eq!(phase(&pod("Always"), &o), "Pending");
        let s = status(&pod("Always"), &o, at(1));
        assert_eq!(s["conditions"][1]["type"], "Initialized");
        assert_eq!(s["conditions"][1]["status"], "False");
        o.init = vec![view(Some(run(0, exited(1))), None, None)];
        assert_eq!(phase(&pod("Never"), &o), "Failed");
    }

    #[test]
    fn the_status_shows_ready_ips_and_keeps_the_scheduler_condition_and_its_transition_times() {
        let running = view(Some(run(0, RunState::Running { started: at(0) })), None, None);
        let s = status(&pod("Always"), &observed(running.clone()), at(3));
        assert_eq!(s["podIP"], "10.244.0.5");
        assert_eq!(s["containerStatuses"][0]["ready"], true);
        assert_eq!(s["containerStatuses"][0]["containerID"], "containerd://c0");
        let kinds: Vec<&str> =
            s["conditions"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready", "PodScheduled"]);
        // Written, then asked again later: the same status, nothing to write.
        let mut written = pod("Always");
        written.status = Some(serde_json::from_value(s.clone()).unwrap());
        let again = status(&written, &observed(running.clone()), at(9));
        assert_eq!(again["conditions"], s["conditions"]);
        assert!(shows(&written, &again));
        // Not ready (probe): ContainersReady and Ready turn False, naming the container.
        let mut unready = running;
        unready.ready = false;
        let s = status(&written, &observed(unready), at(10));
        assert!(!shows(&written, &s));
        assert_eq!(s["conditions"][3]["status"], "False");
        assert_eq!(s["conditions"][3]["message"], "containers with unready status: [a]");
    }
}

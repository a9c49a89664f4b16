//! The status kubelet's status manager posts for a running pod (`generateAPIPodStatus`):
//! phase Running, the pod conditions, addresses, start time and container statuses, as a
//! strategic merge patch of `pods/status` (conditions merge by type, so the scheduler's
//! PodScheduled and readiness-gate conditions stay).

use k8s_openapi::api::core::v1::{Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

use crate::runtime::RunningPod;

/// The Ready condition a running pod gets: True, unless a readiness gate's condition is
/// not True (kubelet's `GeneratePodReadyCondition`).
fn ready(pod: &Pod) -> (bool, Option<(&'static str, String)>) {
    let gates = pod.spec.as_ref().and_then(|s| s.readiness_gates.as_ref());
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    for gate in gates.into_iter().flatten() {
        let found = conditions.and_then(|list| list.iter().find(|c| c.type_ == gate.condition_type));
        let message = match found {
            None => {
                format!("corresponding condition of pod readiness gate \"{}\" does not exist.", gate.condition_type)
            }
            Some(c) if c.status != "True" => {
                format!(
                    "the status of pod readiness gate \"{}\" is not \"True\", but {}",
                    gate.condition_type, c.status
                )
            }
            Some(_) => continue,
        };
        return (false, Some(("ReadinessGatesNotReady", message)));
    }
    (true, None)
}

fn condition<'a>(pod: &'a Pod, kind: &str) -> Option<&'a PodCondition> {
    pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == kind)
}

/// The strategic merge patch of `pods/status` that says `pod` runs as `running` on a node
/// at `host_ip`. Conditions keep their transition time while their status holds.
pub fn running_patch(pod: &Pod, running: &RunningPod, host_ip: &str, now: Timestamp) -> Value {
    let started = Time(running.started);
    let (is_ready, why_not) = ready(pod);
    let cond = |kind: &str, status: bool, why: Option<&(&str, String)>| {
        let status = if status { "True" } else { "False" };
        let transition = condition(pod, kind)
            .filter(|c| c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        let mut c = json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": transition});
        if let Some((reason, message)) = why {
            c["reason"] = json!(reason);
            c["message"] = json!(message);
        }
        c
    };
    let spec = pod.spec.as_ref();
    let containers: Vec<Value> = spec
        .into_iter()
        .flat_map(|s| &s.containers)
        .map(|c| {
            let image = c.image.clone().unwrap_or_default();
            json!({
                "name": c.name,
                "image": image,
                "imageID": format!("hollow://{image}"),
                "containerID": format!("hollow://{}/{}", running.uid, c.name),
                "ready": true,
                "started": true,
                "restartCount": 0,
                "state": {"running": {"startedAt": started}},
            })
        })
        .collect();
    let init_containers: Vec<Value> = spec
        .into_iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .map(|c| {
            let image = c.image.clone().unwrap_or_default();
            // A sidecar (restartPolicy Always) keeps running; others ran to completion.
            let state = if c.restart_policy.as_deref() == Some("Always") {
                json!({"running": {"startedAt": started}})
            } else {
                json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": started}})
            };
            json!({
                "name": c.name,
                "image": image,
                "imageID": format!("hollow://{image}"),
                "containerID": format!("hollow://{}/{}", running.uid, c.name),
                "ready": true,
                "started": c.restart_policy.as_deref() == Some("Always"),
                "restartCount": 0,
                "state": state,
            })
        })
        .collect();
    let ip = running.ip.to_string();
    let mut status = json!({
        "phase": "Running",
        "conditions": [
            cond("PodReadyToStartContainers", true, None),
            cond("Initialized", true, None),
            cond("ContainersReady", true, None),
            cond("Ready", is_ready, why_not.as_ref()),
        ],
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": started,
        "containerStatuses": containers,
    });
    if !init_containers.is_empty() {
        status["initContainerStatuses"] = Value::Array(init_containers);
    }
    json!({"status": status})
}

/// Whether `pod`'s status already says what [`running_patch`] would (phase, address,
/// readiness, every container running and ready).
pub fn shows_running(pod: &Pod, running: &RunningPod) -> bool {
    let Some(status) = pod.status.as_ref() else { return false };
    let wanted_ready = if ready(pod).0 { "True" } else { "False" };
    let containers = pod.spec.as_ref().map_or(0, |s| s.containers.len());
    let statuses = status.container_statuses.as_deref().unwrap_or_default();
    status.phase.as_deref() == Some("Running")
        && status.pod_ip.as_deref() == Some(running.ip.to_string().as_str())
        && condition(pod, "Ready").is_some_and(|c| c.status == wanted_ready)
        && condition(pod, "ContainersReady").is_some_and(|c| c.status == "True")
        && statuses.len() == containers
        && statuses.iter().all(|c| c.ready && c.state.as_ref().is_some_and(|s| s.running.is_some()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn pod(extra_spec: Value, status: Value) -> Pod {
        let mut spec = json!({"nodeName": "n0", "containers": [{"name": "app", "image": "nginx:1"}]});
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
            spec.extend(extra.clone());
        }
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": spec,
            "status": status,
        }))
        .unwrap()
    }

    fn running() -> RunningPod {
        RunningPod {
            uid: "u1".into(),
            namespace: "default".into(),
            name: "web".into(),
            node: "n0".into(),
            ip: "10.244.0.2".parse().unwrap(),
            started: Timestamp::from_second(1_800_000_000).unwrap(),
            containers: vec!["app".into()],
        }
    }

    /// The pod after the patch landed (a merge, as the server's strategic merge would do
    /// for these lists).
    fn applied(pod: &Pod, patch: &Value) -> Pod {
        let mut value = serde_json::to_value(pod).unwrap();
        let mut status = patch["status"].clone();
        let mut conditions = value["status"]["conditions"].as_array().cloned().unwrap_or_default();
        for c in status["conditions"].as_array().unwrap() {
            conditions.retain(|old| old["type"] != c["type"]);
            conditions.push(c.clone());
        }
        status["conditions"] = Value::Array(conditions);
        value["status"] = status;
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_running_pod_is_ready_with_its_address_and_running_containers() {
        let p = pod(json!({}), json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}));
        assert!(!shows_running(&p, &running()));
        let patch = running_patch(&p, &running(), "192.168.1.5", Timestamp::from_second(1_800_000_001).unwrap());
        let status = &patch["status"];
        assert_eq!(status["phase"], "Running");
        assert_eq!(status["podIP"], "10.244.0.2");
        assert_eq!(status["podIPs"], json!([{"ip": "10.244.0.2"}]));
        assert_eq!(status["hostIP"], "192.168.1.5");
        assert_eq!(status["startTime"], "2027-01-15T08:00:00Z");
        assert_eq!(status["containerStatuses"][0]["state"]["running"]["startedAt"], "2027-01-15T08:00:00Z");
        assert_eq!(status["containerStatuses"][0]["ready"], true);
        let types: Vec<&str> =
            status["conditions"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready"]);
        assert!(status.get("initContainerStatuses").is_none());
        let after = applied(&p, &patch);
        assert!(shows_running(&after, &running()));
        // The same status again keeps the transition times.
        let again = running_patch(&after, &running(), "192.168.1.5", Timestamp::from_second(1_800_000_099).unwrap());
        assert_eq!(again["status"]["conditions"][3]["lastTransitionTime"], "2027-01-15T08:00:01Z");
    }

    #[test]
    fn a_readiness_gate_not_true_keeps_the_pod_unready() {
        let gates = json!({"readinessGates": [{"conditionType": "example.com/lb"}]});
        let p = pod(gates.clone(), json!({"phase": "Pending"}));
        let patch = running_patch(&p, &running(), "h", Timestamp::UNIX_EPOCH);
        let ready = &patch["status"]["conditions"][3];
        assert_eq!(ready["status"], "False");
        assert_eq!(ready["reason"], "ReadinessGatesNotReady");
        assert!(shows_running(&applied(&p, &patch), &running()));
        let gated = pod(gates, json!({"conditions": [{"type": "example.com/lb", "status": "True"}]}));
        assert_eq!(
            running_patch(&gated, &running(), "h", Timestamp::UNIX_EPOCH)["status"]["conditions"][3]["status"],
            "True"
        );
    }

    #[test]
    fn init_containers_completed_and_sidecars_running() {
        let init = json!({"initContainers": [{"name": "setup", "image": "busybox"}, {"name": "proxy", "image": "envoy", "restartPolicy": "Always"}]});
        let patch = running_patch(&pod(init, json!({})), &running(), "h", Timestamp::UNIX_EPOCH);
        let statuses = &patch["status"]["initContainerStatuses"];
        assert_eq!(statuses[0]["state"]["terminated"]["reason"], "Completed");
        assert_eq!(statuses[1]["state"]["running"]["startedAt"], "2027-01-15T08:00:00Z");
    }

    #[test]
    fn a_status_marked_unready_by_the_node_controller_is_not_running_as_wanted() {
        let p = pod(json!({}), json!({}));
        let mut after = applied(&p, &running_patch(&p, &running(), "h", Timestamp::UNIX_EPOCH));
        for c in after.status.as_mut().unwrap().conditions.as_mut().unwrap() {
            if c.type_ == "Ready" {
                c.status = "False".into();
            }
        }
        assert!(!shows_running(&after, &running()));
    }
}

//! A Job's pods: made from its template (kube's labels, owner reference, tracking
//! finalizer, completion index), and how the controller classifies them.

use std::cmp::Ordering;

use serde_json::{json, Value};

use super::indexes::COMPLETION_INDEX;
use crate::controllers::pods::{self, name, set_path, str_at, terminating, uid};

/// The finalizer that keeps a finished pod until its Job has counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// The environment variable with an Indexed Job pod's index.
pub const INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

/// The controller reference to Job `job`.
pub fn owner_reference(job: &Value) -> Value {
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": name(job),
        "uid": uid(job),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// A new pod of `job` (kube's `GetPodFromTemplate` plus the Job controller's additions),
/// for completion index `index` of an Indexed Job.
pub fn new_pod(job: &Value, index: Option<i64>) -> Value {
    let mut pod = pods::pod_from_template(job, "Job");
    set_path(&mut pod, &["metadata", "ownerReferences"], json!([owner_reference(job)]));
    let mut finalizers = pod.pointer("/metadata/finalizers").and_then(Value::as_array).cloned().unwrap_or_default();
    if !finalizers.iter().any(|f| f.as_str() == Some(TRACKING_FINALIZER)) {
        finalizers.push(json!(TRACKING_FINALIZER));
    }
    set_path(&mut pod, &["metadata", "finalizers"], Value::Array(finalizers));
    let Some(ix) = index else { return pod };
    let job_name = name(job);
    set_path(&mut pod, &["metadata", "generateName"], json!(format!("{job_name}-{ix}-")));
    set_path(&mut pod, &["metadata", "annotations", COMPLETION_INDEX], json!(ix.to_string()));
    set_path(&mut pod, &["metadata", "labels", COMPLETION_INDEX], json!(ix.to_string()));
    if str_at(&pod, "/spec/hostname").is_empty() {
        set_path(&mut pod, &["spec", "hostname"], json!(format!("{job_name}-{ix}")));
    }
    let env = json!({
        "name": INDEX_ENV,
        "valueFrom": {"fieldRef": {"fieldPath": format!("metadata.annotations['{COMPLETION_INDEX}']")}},
    });
    for list in ["initContainers", "containers"] {
        let Some(containers) = pod.pointer_mut(&format!("/spec/{list}")).and_then(Value::as_array_mut) else {
            continue;
        };
        for container in containers {
            let has = container
                .get("env")
                .and_then(Value::as_array)
                .is_some_and(|e| e.iter().any(|v| v.get("name").and_then(Value::as_str) == Some(INDEX_ENV)));
            if has {
                continue;
            }
            match container.get_mut("env").and_then(Value::as_array_mut) {
                Some(vars) => vars.push(env.clone()),
                None => set_path(container, &["env"], json!([env.clone()])),
            }
        }
    }
    pod
}

pub fn phase(pod: &Value) -> &str {
    str_at(pod, "/status/phase")
}

pub fn succeeded(pod: &Value) -> bool {
    phase(pod) == "Succeeded"
}

/// Finished: `Succeeded` or `Failed`.
pub fn finished(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// Running or waiting to: not finished, not being deleted.
pub fn is_active(pod: &Value) -> bool {
    !finished(pod) && !terminating(pod)
}

/// Being deleted before it finished (kube's `terminating` count).
pub fn is_terminating(pod: &Value) -> bool {
    !finished(pod) && terminating(pod)
}

pub fn has_finalizer(pod: &Value) -> bool {
    pod.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|f| f.as_str() == Some(TRACKING_FINALIZER)))
}

/// `pod` without the tracking finalizer.
pub fn without_finalizer(pod: &Value) -> Value {
    let mut out = pod.clone();
    if let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        let kept: Vec<Value> = meta
            .get("finalizers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|f| f.as_str() != Some(TRACKING_FINALIZER))
            .cloned()
            .collect();
        if kept.is_empty() {
            meta.remove("finalizers");
        } else {
            meta.insert("finalizers".into(), Value::Array(kept));
        }
    }
    out
}

/// The order in which surplus active pods go (kube's `ActivePods`).
pub fn removal_order(a: &Value, b: &Value) -> Ordering {
    pods::deletion_order(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Value {
        json!({
            "metadata": {"name": "pi", "uid": "u1"},
            "spec": {"template": {
                "metadata": {"labels": {"job-name": "pi"}},
                "spec": {"containers": [{"name": "c", "image": "perl", "env": [{"name": "A", "value": "1"}]}], "initContainers": [{"name": "i", "image": "busybox"}]},
            }},
        })
    }

    #[test]
    fn job_pods_carry_the_tracking_finalizer_and_a_batch_owner() {
        let pod = new_pod(&job(), None);
        assert_eq!(pod["metadata"]["generateName"], "pi-");
        assert_eq!(pod["metadata"]["finalizers"], json!([TRACKING_FINALIZER]));
        assert_eq!(pod["metadata"]["ownerReferences"][0]["apiVersion"], "batch/v1");
        assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "Job");
        assert_eq!(pod["metadata"]["labels"]["job-name"], "pi");
        assert!(pod["spec"].get("hostname").is_none());
        assert!(has_finalizer(&pod));
        assert!(!has_finalizer(&without_finalizer(&pod)));
        assert!(without_finalizer(&pod)["metadata"].get("finalizers").is_none());
    }

    #[test]
    fn indexed_pods_get_their_index_hostname_and_env() {
        let pod = new_pod(&job(), Some(2));
        assert_eq!(pod["metadata"]["generateName"], "pi-2-");
        assert_eq!(pod["metadata"]["annotations"][COMPLETION_INDEX], "2");
        assert_eq!(pod["metadata"]["labels"][COMPLETION_INDEX], "2");
        assert_eq!(pod["spec"]["hostname"], "pi-2");
        assert_eq!(pod["spec"]["containers"][0]["env"][1]["name"], INDEX_ENV);
        assert_eq!(pod["spec"]["initContainers"][0]["env"][0]["name"], INDEX_ENV);
        assert_eq!(
            pod["spec"]["containers"][0]["env"][1]["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        );
    }
}

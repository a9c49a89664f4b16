//! One sync of a StatefulSet as a plan (kube's `updateStatefulSet`, without the writes):
//! which pods to create, fix, delete for scale-down and delete for the rolling update, in
//! phases, and the status the set reports. `OrderedReady` plans stop at the first pod that
//! blocks progress (not yet Running and Ready, terminating) so pods come and go one at a
//! time in ordinal order; `Parallel` plans everything at once.

use std::sync::Arc;

use serde_json::{json, Value};
use time::OffsetDateTime;

use super::identity::{
    self, claim_is_stale, claim_owner_up_to_date, claims, identity_matches, in_range, new_versioned_pod, pod_revision,
    replicas, start_ordinal, storage_matches,
};
use crate::controllers::deployment::util::scaled_value;
use crate::controllers::pods::{int_at, is_available, is_ready, name, status_count, str_at, terminating};

/// One write of the plan.
#[derive(Debug, Clone)]
pub enum Step {
    /// Create this pod, its claims first.
    Create(Value),
    /// Create the missing claims of this pending pod.
    CreateClaims(Arc<Value>),
    /// Bring this pod's identity labels, claims and claim owners in line (kube's
    /// `UpdateStatefulPod`).
    Update(Arc<Value>),
    /// Set the owner references of this condemned pod's claims for the retention policy.
    FixClaims(Arc<Value>),
    /// Delete this pod: finished, or beyond the replicas (scale-down).
    Delete(Arc<Value>),
    /// Delete this pod of an old revision so that it comes back at the update revision.
    Roll(Arc<Value>),
}

/// A sync's writes, in phases run one after another; within a phase, one at a time for
/// `OrderedReady` and all at once (in slow-start batches) for `Parallel`. A failed write
/// ends the sync.
#[derive(Debug, Default)]
pub struct Plan {
    pub phases: Vec<Vec<Step>>,
    pub monotonic: bool,
}

impl Plan {
    fn push(&mut self, phase: usize, step: Step) {
        while self.phases.len() <= phase {
            self.phases.push(Vec::new());
        }
        self.phases[phase].push(step);
    }

    /// Every step, in order.
    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.phases.iter().flatten()
    }
}

/// The revisions one sync works with: the set at each (its template from the revision) and
/// their names.
pub struct Revisions<'a> {
    pub current_set: &'a Value,
    pub update_set: &'a Value,
    pub current: &'a str,
    pub update: &'a str,
}

fn phase(pod: &Value) -> &str {
    str_at(pod, "/status/phase")
}

fn running_and_ready(pod: &Value) -> bool {
    phase(pod) == "Running" && is_ready(pod)
}

fn running_and_available(pod: &Value, min_ready: i64, now: OffsetDateTime) -> bool {
    running_and_ready(pod) && is_available(pod, min_ready, now)
}

/// Running, Ready and not terminating (kube's `isHealthy`).
pub fn healthy(pod: &Value) -> bool {
    running_and_ready(pod) && !terminating(pod)
}

fn finished(pod: &Value) -> bool {
    matches!(phase(pod), "Failed" | "Succeeded")
}

fn is_rolling(set: &Value) -> bool {
    str_at(set, "/spec/updateStrategy/type") == "RollingUpdate"
}

/// `spec.updateStrategy.rollingUpdate`, when it is an object.
fn rolling_update(set: &Value) -> Option<&Value> {
    set.pointer("/spec/updateStrategy/rollingUpdate").filter(|r| r.is_object())
}

fn partition(set: &Value) -> i64 {
    rolling_update(set).map_or(0, |r| int_at(r, "/partition"))
}

/// Whether pods may come and go in any order (`podManagementPolicy: Parallel`).
pub fn allows_burst(set: &Value) -> bool {
    str_at(set, "/spec/podManagementPolicy") == "Parallel"
}

/// The new pod of `ordinal` (kube's `newVersionedStatefulSetPod`): below the partition it
/// stays at the current revision, else it is made at the update revision.
pub fn versioned_pod(revs: &Revisions, ordinal: i64) -> Value {
    let current = revs.current_set;
    let start = start_ordinal(current);
    // As kube's condition reads (its `&&` binds before its `||`).
    let at_current = (is_rolling(current)
        && rolling_update(current).is_none()
        && ordinal < start + status_count(current, "currentReplicas"))
        || (rolling_update(current).is_some() && ordinal < start + partition(current));
    if at_current {
        new_versioned_pod(current, revs.current, ordinal)
    } else {
        new_versioned_pod(revs.update_set, revs.update, ordinal)
    }
}

/// The set's pods split by ordinal: those in range at their index (missing ones `None`),
/// and the condemned ones beyond it, highest ordinal first. Pods of other names are left out.
pub fn split(set: &Value, pods: &[Arc<Value>]) -> (Vec<Option<Arc<Value>>>, Vec<Arc<Value>>) {
    let start = start_ordinal(set);
    let mut slots: Vec<Option<Arc<Value>>> = vec![None; replicas(set) as usize];
    let mut condemned = Vec::new();
    for pod in pods {
        let Some(ordinal) = identity::ordinal(pod) else { continue };
        if in_range(set, ordinal) {
            slots[(ordinal - start) as usize] = Some(pod.clone());
        } else {
            condemned.push(pod.clone());
        }
    }
    condemned.sort_by_key(|p| std::cmp::Reverse(identity::ordinal(p)));
    (slots, condemned)
}

/// The claims of a pod as they are: looked up by claim name.
pub type ClaimLookup<'a> = &'a dyn Fn(&str) -> Option<Arc<Value>>;

/// Whether the claims that exist of `pod` have the owners the retention policy wants.
pub fn claims_match_retention(set: &Value, pod: &Value, lookup: ClaimLookup) -> bool {
    let Some(ordinal) = identity::ordinal(pod) else { return true };
    claims(set, ordinal)
        .iter()
        .all(|(_, c)| lookup(name(c)).is_none_or(|claim| claim_owner_up_to_date(&claim, set, pod)))
}

/// The plan of one sync of `set` with its `pods` at `now`.
pub fn plan(set: &Value, revs: &Revisions, pods: &[Arc<Value>], lookup: ClaimLookup, now: OffsetDateTime) -> Plan {
    let monotonic = !allows_burst(set);
    let mut plan = Plan { phases: Vec::new(), monotonic };
    if terminating(set) {
        return plan;
    }
    let min_ready = int_at(set, "/spec/minReadySeconds");
    let start = start_ordinal(set);
    let (slots, condemned) = split(set, pods);
    // The first unhealthy pod, in range (a missing one counts) or else condemned (lowest
    // ordinal first): the one condemned pod OrderedReady deletes even though it is unhealthy.
    let first_unhealthy_condemned = if slots.iter().all(|s| s.as_deref().is_some_and(healthy)) {
        condemned.iter().rev().find(|p| !healthy(p)).map(|p| name(p).to_string())
    } else {
        None
    };

    // 1. The pods in range: recreate finished ones, create missing ones, fix the others.
    for (index, slot) in slots.iter().enumerate() {
        let ordinal = start + index as i64;
        let Some(pod) = slot else {
            let pod = versioned_pod(revs, ordinal);
            let stale = claims(set, ordinal)
                .iter()
                .any(|(_, c)| lookup(name(c)).is_some_and(|c| claim_is_stale(set, &c, &pod)));
            if stale {
                // Its claim goes with the pod it belonged to; the garbage collector deletes it.
                if monotonic {
                    return plan;
                }
                continue;
            }
            plan.push(0, Step::Create(pod));
            if monotonic {
                return plan;
            }
            continue;
        };
        if finished(pod) {
            if !terminating(pod) {
                plan.push(0, Step::Delete(pod.clone()));
            }
            // It is created again once it is gone.
            if monotonic {
                return plan;
            }
            continue;
        }
        if phase(pod) == "Pending" && claims(set, ordinal).iter().any(|(_, c)| lookup(name(c)).is_none()) {
            plan.push(0, Step::CreateClaims(pod.clone()));
        }
        if monotonic && (terminating(pod) || !running_and_available(pod, min_ready, now)) {
            return plan;
        }
        let retention_match = claims_match_retention(revs.update_set, pod, lookup);
        if !(identity_matches(set, pod) && storage_matches(set, pod) && retention_match) {
            plan.push(0, Step::Update(pod.clone()));
        }
    }

    // 2. The condemned pods' claims: owned by their pods when they go with them.
    for pod in &condemned {
        if !claims_match_retention(revs.update_set, pod, lookup) {
            plan.push(1, Step::FixClaims(pod.clone()));
        }
    }

    // 3. Scale-down, from the highest ordinal; OrderedReady waits for each to terminate and
    // deletes only Running and Ready pods (or the first unhealthy one).
    for pod in &condemned {
        if terminating(pod) {
            if monotonic {
                return plan;
            }
            continue;
        }
        let first_unhealthy = first_unhealthy_condemned.as_deref() == Some(name(pod));
        if monotonic && !first_unhealthy && !running_and_available(pod, min_ready, now) {
            return plan;
        }
        plan.push(2, Step::Delete(pod.clone()));
        if monotonic {
            return plan;
        }
    }

    // 4. The rolling update (not for OnDelete): from the highest ordinal down to the
    // partition, one pod of an old revision at a time, each back Running and Ready before
    // the next.
    if !is_rolling(set) {
        return plan;
    }
    let update_min = partition(set).max(0) as usize;
    if let Some(max_unavailable) = rolling_update(set).and_then(|r| r.get("maxUnavailable")) {
        // With maxUnavailable: up to that many pods unavailable at once.
        let max = scaled_value(Some(max_unavailable), replicas(set), false).max(1);
        let unavailable = slots.iter().filter(|s| !s.as_deref().is_some_and(healthy)).count() as i64;
        let mut room = max - unavailable;
        for slot in slots.iter().skip(update_min).rev() {
            if room <= 0 {
                break;
            }
            if let Some(pod) = slot.as_ref().filter(|p| pod_revision(p) != revs.update && !terminating(p)) {
                plan.push(3, Step::Roll(pod.clone()));
                room -= 1;
            }
        }
        return plan;
    }
    for slot in slots.iter().skip(update_min).rev() {
        let Some(pod) = slot else { return plan };
        if pod_revision(pod) != revs.update && !terminating(pod) {
            plan.push(3, Step::Roll(pod.clone()));
            return plan;
        }
        if !healthy(pod) {
            return plan;
        }
    }
    plan
}

/// The set's status after a sync (kube's `updateStatus` and `completeRollingUpdate`): the
/// pods there are (in range or condemned), ready, available, at the current and at the
/// update revision (less the `rolled` pods the update deleted), the revisions and the
/// collision count.
pub fn status(
    set: &Value,
    revs: &Revisions,
    pods: &[Arc<Value>],
    rolled: i64,
    collision_count: i64,
    now: OffsetDateTime,
) -> Value {
    let min_ready = int_at(set, "/spec/minReadySeconds");
    let (mut count, mut ready, mut available, mut current, mut updated) = (0, 0, 0, 0, 0);
    for pod in pods.iter().filter(|p| identity::ordinal(p).is_some()) {
        count += 1;
        if running_and_ready(pod) {
            ready += 1;
            if running_and_available(pod, min_ready, now) {
                available += 1;
            }
        }
        if !terminating(pod) {
            let revision = pod_revision(pod);
            if revision == revs.current {
                current += 1;
            }
            if revision == revs.update {
                updated += 1;
            }
        }
    }
    current -= rolled;
    let mut current_revision = revs.current;
    if is_rolling(set) && updated == count && ready == count {
        current = updated;
        current_revision = revs.update;
    }
    let mut status = json!({
        "observedGeneration": int_at(set, "/metadata/generation"),
        "replicas": count,
        "readyReplicas": ready,
        "currentReplicas": current,
        "updatedReplicas": updated,
        "availableReplicas": available,
        "currentRevision": current_revision,
        "updateRevision": revs.update,
        "collisionCount": collision_count,
    });
    // Go's omitempty, as kube writes it.
    if let Some(map) = status.as_object_mut() {
        map.retain(|k, v| {
            matches!(k.as_str(), "replicas" | "availableReplicas" | "collisionCount")
                || !(v.as_i64() == Some(0) || v.as_str() == Some(""))
        });
    }
    status
}

/// Whether `status` differs from the set's in what kube compares (`inconsistentStatus`).
pub fn status_changed(set: &Value, status: &Value) -> bool {
    let old = set.get("status").unwrap_or(&Value::Null);
    let int = |s: &Value, f: &str| s.get(f).and_then(Value::as_i64).unwrap_or(0);
    let text = |s: &Value, f: &str| s.get(f).and_then(Value::as_str).unwrap_or("").to_string();
    int(status, "observedGeneration") > int(old, "observedGeneration")
        || ["replicas", "currentReplicas", "readyReplicas", "updatedReplicas", "availableReplicas", "collisionCount"]
            .iter()
            .any(|f| int(status, f) != int(old, f))
        || ["currentRevision", "updateRevision"].iter().any(|f| text(status, f) != text(old, f))
        || old.get("collisionCount").is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::daemon_set::REVISION_HASH;
    use crate::controllers::pods::parse_time;

    fn set(replicas: i64, policy: &str, strategy: Value) -> Value {
        json!({
            "metadata": {"name": "web", "namespace": "d", "uid": "set-uid", "generation": 2},
            "spec": {
                "replicas": replicas,
                "podManagementPolicy": policy,
                "updateStrategy": strategy,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
            },
        })
    }

    fn rolling(partition: i64) -> Value {
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": partition}})
    }

    fn pod(ordinal: i64, revision: &str, phase: &str, ready: bool) -> Arc<Value> {
        Arc::new(json!({
            "metadata": {"name": format!("web-{ordinal}"), "namespace": "d", "uid": format!("uid-{ordinal}"),
                "labels": {"app": "web", REVISION_HASH: revision, identity::POD_NAME_LABEL: format!("web-{ordinal}"),
                    identity::POD_INDEX_LABEL: ordinal.to_string()}},
            "spec": {},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"},
                "lastTransitionTime": "2024-01-01T00:00:00Z"}]},
        }))
    }

    fn deleting(p: Arc<Value>) -> Arc<Value> {
        let mut p = (*p).clone();
        p["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        Arc::new(p)
    }

    fn revs<'a>(s: &'a Value, current: &'a str, update: &'a str) -> Revisions<'a> {
        Revisions { current_set: s, update_set: s, current, update }
    }

    fn now() -> OffsetDateTime {
        parse_time("2024-01-01T00:10:00Z").unwrap()
    }

    fn no_claims(_: &str) -> Option<Arc<Value>> {
        None
    }

    /// The plan as `(verb, pod name)`.
    fn steps(s: &Value, r: &Revisions, pods: &[Arc<Value>]) -> Vec<(&'static str, String)> {
        let p = plan(s, r, pods, &no_claims, now());
        p.steps()
            .map(|step| match step {
                Step::Create(p) => ("create", name(p).to_string()),
                Step::CreateClaims(p) => ("claims", name(p).to_string()),
                Step::Update(p) => ("update", name(p).to_string()),
                Step::FixClaims(p) => ("fix", name(p).to_string()),
                Step::Delete(p) => ("delete", name(p).to_string()),
                Step::Roll(p) => ("roll", name(p).to_string()),
            })
            .collect()
    }

    fn s(verb: &'static str, pod: &str) -> (&'static str, String) {
        (verb, pod.to_string())
    }

    #[test]
    fn ordered_ready_creates_one_pod_after_its_predecessors_are_ready() {
        let set = set(3, "OrderedReady", rolling(0));
        let r = revs(&set, "web-a", "web-a");
        assert_eq!(steps(&set, &r, &[]), [s("create", "web-0")]);
        assert_eq!(steps(&set, &r, &[pod(0, "web-a", "Pending", false)]), []);
        assert_eq!(steps(&set, &r, &[pod(0, "web-a", "Running", true)]), [s("create", "web-1")]);
        // A finished pod is deleted (and made again once gone).
        let failed = [pod(0, "web-a", "Failed", false), pod(1, "web-a", "Running", true)];
        assert_eq!(steps(&set, &r, &failed), [s("delete", "web-0")]);
    }

    #[test]
    fn parallel_creates_every_missing_pod_at_once() {
        let set = set(3, "Parallel", rolling(0));
        let r = revs(&set, "web-a", "web-a");
        assert_eq!(steps(&set, &r, &[pod(1, "web-a", "Pending", false)]), [s("create", "web-0"), s("create", "web-2")]);
        let beyond =
            [pod(0, "web-a", "Running", true), pod(3, "web-a", "Running", true), pod(4, "web-a", "Pending", false)];
        assert_eq!(
            steps(&set, &r, &beyond),
            [s("create", "web-1"), s("create", "web-2"), s("delete", "web-4"), s("delete", "web-3")]
        );
    }

    #[test]
    fn ordered_scale_down_goes_from_the_highest_ordinal_one_at_a_time() {
        let set = set(1, "OrderedReady", rolling(0));
        let r = revs(&set, "web-a", "web-a");
        let three =
            [pod(0, "web-a", "Running", true), pod(1, "web-a", "Running", true), pod(2, "web-a", "Running", true)];
        assert_eq!(steps(&set, &r, &three), [s("delete", "web-2")]);
        let going = [three[0].clone(), three[1].clone(), deleting(three[2].clone())];
        assert_eq!(steps(&set, &r, &going), [], "waits for web-2 to terminate");
        // An unready condemned pod blocks unless it is the first unhealthy one.
        let unready = [three[0].clone(), pod(1, "web-a", "Running", false), three[2].clone()];
        assert_eq!(steps(&set, &r, &unready), [s("delete", "web-2")]);
        let top_unready = [three[0].clone(), pod(1, "web-a", "Running", false), pod(2, "web-a", "Running", false)];
        assert_eq!(steps(&set, &r, &top_unready), [], "web-1 is the first unhealthy one, web-2 goes first");
    }

    #[test]
    fn rolling_updates_go_from_the_highest_ordinal_down_to_the_partition() {
        let set = set(3, "OrderedReady", rolling(0));
        let r = revs(&set, "web-a", "web-b");
        let old =
            [pod(0, "web-a", "Running", true), pod(1, "web-a", "Running", true), pod(2, "web-a", "Running", true)];
        assert_eq!(steps(&set, &r, &old), [s("roll", "web-2")]);
        let mid = [old[0].clone(), old[1].clone(), pod(2, "web-b", "Pending", false)];
        assert_eq!(steps(&set, &r, &mid), [], "web-2 must be ready first");
        let ready = [old[0].clone(), old[1].clone(), pod(2, "web-b", "Running", true)];
        assert_eq!(steps(&set, &r, &ready), [s("roll", "web-1")]);
        let partitioned = super::tests::set(3, "OrderedReady", rolling(2));
        let r = revs(&partitioned, "web-a", "web-b");
        assert_eq!(steps(&partitioned, &r, &ready), [], "web-0 and web-1 are below the partition");
        // A missing pod below the partition comes back at the current revision.
        let p = plan(&partitioned, &r, &[old[1].clone(), ready[2].clone()], &no_claims, now());
        let Some(Step::Create(web0)) = p.steps().next() else { panic!("{p:?}") };
        assert_eq!(web0["metadata"]["labels"][REVISION_HASH], "web-a");

        let on_delete = super::tests::set(3, "OrderedReady", json!({"type": "OnDelete"}));
        assert_eq!(steps(&on_delete, &revs(&on_delete, "web-a", "web-b"), &old), []);
        let max2 = super::tests::set(
            3,
            "OrderedReady",
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0, "maxUnavailable": 2}}),
        );
        assert_eq!(steps(&max2, &revs(&max2, "web-a", "web-b"), &old), [s("roll", "web-2"), s("roll", "web-1")]);
    }

    #[test]
    fn status_counts_pods_and_completes_the_rollout() {
        let set = set(3, "OrderedReady", rolling(0));
        let r = revs(&set, "web-a", "web-b");
        let pods =
            [pod(0, "web-a", "Running", true), pod(1, "web-b", "Running", true), pod(2, "web-b", "Pending", false)];
        let st = status(&set, &r, &pods, 0, 0, now());
        assert_eq!(
            st,
            json!({"observedGeneration": 2, "replicas": 3, "readyReplicas": 2, "currentReplicas": 1, "updatedReplicas": 2,
                "availableReplicas": 2, "currentRevision": "web-a", "updateRevision": "web-b", "collisionCount": 0})
        );
        let done =
            [pod(0, "web-b", "Running", true), pod(1, "web-b", "Running", true), pod(2, "web-b", "Running", true)];
        let st = status(&set, &r, &done, 0, 0, now());
        assert_eq!((st["currentRevision"].as_str(), st["currentReplicas"].as_i64()), (Some("web-b"), Some(3)));
        let mut stored = set.clone();
        stored["status"] = st.clone();
        assert!(!status_changed(&stored, &st));
        assert!(status_changed(&set, &st));
    }
}

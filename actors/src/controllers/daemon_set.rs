//! The DaemonSet controller (kube-controller-manager's `daemonset-controller`): one pod of
//! each DaemonSet on every node it should run on (node name, node selector and affinity,
//! taints against the template's tolerations plus the ones kube adds to daemon pods), each
//! pinned to its node by a `metadata.name` node affinity for the scheduler to bind; surplus,
//! finished and misplaced pods deleted; updates rolled out (`RollingUpdate` within
//! `maxUnavailable`, or with `maxSurge`; `OnDelete`); the template's history kept in
//! ControllerRevisions (what `kubectl rollout history/undo ds` read); `status` as kube counts
//! it. Expectations as the ReplicaSet controller's: a DaemonSet is not managed again until
//! its informer has seen the pods it created and deleted.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{join_all, LocalBoxFuture};
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use super::deployment::util::{equal_ignore_hash, scaled_value, template_hash};
use super::expectations::Expectations;
use super::node_lifecycle::{
    nodes, DISK_PRESSURE, MEMORY_PRESSURE, NETWORK_UNAVAILABLE, NOT_READY, PID_PRESSURE, UNREACHABLE, UNSCHEDULABLE,
};
use super::pods::{
    self, annotation, claim, controlled_by, controller_ref, int_at, is_available, is_ready, kind, name, namespace, now,
    owner_reference, str_at, terminating, Selector,
};
use crate::api_error::ApiError;
use crate::controller::informer::resource_version;
use crate::controller::{controller_of, Action, Ctx, Lister, ObjectKey, Reconciler, Watched};
use crate::deletion::DeleteOptions;
use crate::kinds::ResourceKind;
use crate::object_store::Part;
use crate::scheduler::pod_info::{tolerated, PodInfo, Taint};

/// The label of a DaemonSet's pods and revisions with the revision's hash.
pub const REVISION_HASH: &str = "controller-revision-hash";
/// The label of a DaemonSet's pods with its template generation (when the DaemonSet has one).
pub const TEMPLATE_GENERATION: &str = "pod-template-generation";
const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";
/// At most this many pods created or deleted per reconcile (upstream's `BurstReplicas`).
pub const BURST_REPLICAS: usize = 250;
pub use super::expectations::EXPECTATIONS_TIMEOUT;
/// The first and the longest wait before deleting a failed pod on a node again.
const FAILED_BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(15 * 60));

pub fn daemon_sets() -> &'static ResourceKind {
    kind("apps", "daemonsets")
}

pub fn controller_revisions() -> &'static ResourceKind {
    kind("apps", "controllerrevisions")
}

// ---------------------------------------------------------------------------------------
// Daemon pods

/// The tolerations kube adds to every daemon pod (`AddOrUpdateDaemonPodTolerations`): not
/// evicted from not-ready or unreachable nodes, scheduled despite pressure and cordons.
fn daemon_tolerations(host_network: bool) -> Vec<Value> {
    let mut all = vec![
        json!({"key": NOT_READY, "operator": "Exists", "effect": "NoExecute"}),
        json!({"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}),
        json!({"key": DISK_PRESSURE, "operator": "Exists", "effect": "NoSchedule"}),
        json!({"key": MEMORY_PRESSURE, "operator": "Exists", "effect": "NoSchedule"}),
        json!({"key": PID_PRESSURE, "operator": "Exists", "effect": "NoSchedule"}),
        json!({"key": UNSCHEDULABLE, "operator": "Exists", "effect": "NoSchedule"}),
    ];
    if host_network {
        all.push(json!({"key": NETWORK_UNAVAILABLE, "operator": "Exists", "effect": "NoSchedule"}));
    }
    all
}

/// Adds the daemon tolerations to a pod spec, replacing one with the same key, operator,
/// value and effect (`AddOrUpdateTolerationInPodSpec`).
fn add_daemon_tolerations(spec: &mut Value) {
    let host_network = spec.get("hostNetwork").and_then(Value::as_bool) == Some(true);
    let mut tolerations = spec.get("tolerations").and_then(Value::as_array).cloned().unwrap_or_default();
    let same = |a: &Value, b: &Value| ["key", "operator", "value", "effect"].iter().all(|f| a.get(f) == b.get(f));
    for toleration in daemon_tolerations(host_network) {
        match tolerations.iter_mut().find(|t| same(t, &toleration)) {
            Some(existing) => *existing = toleration,
            None => tolerations.push(toleration),
        }
    }
    pods::set_path(spec, &["tolerations"], Value::Array(tolerations));
}

/// The DaemonSet's template generation annotation, if it has one.
fn template_generation(ds: &Value) -> Option<&str> {
    annotation(ds, TEMPLATE_GENERATION_ANNOTATION)
}

/// Whether `pod` is of the DaemonSet's current template (kube's `IsPodUpdated`).
pub fn is_updated(pod: &Value, hash: &str, generation: Option<&str>) -> bool {
    let label = |k: &str| pod.pointer("/metadata/labels").and_then(|l| l.get(k)).and_then(Value::as_str);
    (!hash.is_empty() && label(REVISION_HASH) == Some(hash))
        || generation.is_some_and(|g| label(TEMPLATE_GENERATION) == Some(g))
}

/// Pins a pod spec to `node`: its required node affinity becomes one `metadata.name` term
/// (kube's `ReplaceDaemonSetPodNodeNameNodeAffinity`).
pub fn pin_to_node(spec: &mut Value, node: &str) {
    let term = json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]});
    pods::set_path(
        spec,
        &["affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms"],
        json!([term]),
    );
}

/// A new pod of `ds` for `node` (`CreatePodTemplate`, then `GetPodFromTemplate`).
pub fn new_pod(ds: &Value, hash: &str, node: &str) -> Value {
    let mut owner = ds.clone();
    if let Some(template) = owner.pointer_mut("/spec/template") {
        let mut spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
        add_daemon_tolerations(&mut spec);
        pin_to_node(&mut spec, node);
        template["spec"] = spec;
        if let Some(generation) = template_generation(ds) {
            pods::set_path(template, &["metadata", "labels", TEMPLATE_GENERATION], json!(generation));
        }
        if !hash.is_empty() {
            pods::set_path(template, &["metadata", "labels", REVISION_HASH], json!(hash));
        }
    }
    pods::pod_from_template(&owner, "DaemonSet")
}

/// The node a daemon pod is for: its `spec.nodeName`, or its `metadata.name` affinity
/// (kube's `GetTargetNodeName`).
pub fn target_node(pod: &Value) -> Option<&str> {
    if let Some(node) = pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
        return Some(node);
    }
    let terms = pod
        .pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")?
        .as_array()?;
    terms.iter().flat_map(|t| t.get("matchFields").and_then(Value::as_array).into_iter().flatten()).find_map(|f| {
        let values = f.get("values")?.as_array()?;
        let ok = str_at(f, "/key") == "metadata.name" && str_at(f, "/operator") == "In" && values.len() == 1;
        if ok {
            values[0].as_str()
        } else {
            None
        }
    })
}

/// Where a DaemonSet's pods belong (kube's `NodeShouldRunDaemonPod`), its template read once.
pub struct Placement {
    pod: Option<PodInfo>,
    node_name: String,
}

impl Placement {
    pub fn of(ds: &Value) -> Placement {
        let mut spec = ds.pointer("/spec/template/spec").cloned().unwrap_or_else(|| json!({}));
        add_daemon_tolerations(&mut spec);
        let node_name = str_at(&spec, "/nodeName").to_string();
        let pod = json!({
            "metadata": {
                "name": name(ds),
                "namespace": namespace(ds),
                "labels": ds.pointer("/spec/template/metadata/labels").cloned().unwrap_or(Value::Null),
            },
            "spec": spec,
        });
        Placement { pod: PodInfo::parse(&pod), node_name }
    }

    /// (should run, should continue running): a node whose taints the pod does not tolerate
    /// only for scheduling keeps a pod it has.
    pub fn check(&self, node: &Value) -> (bool, bool) {
        let Some(pod) = &self.pod else { return (false, false) };
        let node_name = name(node);
        if !self.node_name.is_empty() && self.node_name != node_name {
            return (false, false);
        }
        if !pod.admits_node(node_name, node.pointer("/metadata/labels")) {
            return (false, false);
        }
        let taints: Vec<Taint> =
            node.pointer("/spec/taints").and_then(Value::as_array).into_iter().flatten().map(Taint::parse).collect();
        let untolerated = |effects: &[&str]| {
            taints.iter().any(|t| effects.contains(&t.effect.as_str()) && !tolerated(&pod.tolerations, t))
        };
        if untolerated(&["NoSchedule", "NoExecute"]) {
            return (false, !untolerated(&["NoExecute"]));
        }
        (true, true)
    }
}

/// Scheduled first, then older, then by name (kube's `podByCreationTimestampAndPhase`).
fn by_age(a: &Arc<Value>, b: &Arc<Value>) -> Ordering {
    let scheduled = |p: &Value| !str_at(p, "/spec/nodeName").is_empty();
    scheduled(b).cmp(&scheduled(a)).then_with(|| pods::by_creation(a, b))
}

fn phase(pod: &Value) -> &str {
    str_at(pod, "/status/phase")
}

fn is_rolling(ds: &Value) -> bool {
    matches!(str_at(ds, "/spec/updateStrategy/type"), "RollingUpdate" | "")
}

/// `maxSurge` and `maxUnavailable` for `desired` pods (kube's `SurgeCount` and
/// `UnavailableCount`, rounding up); both 0 count as an unavailability of 1.
pub fn fenceposts(ds: &Value, desired: i64) -> (i64, i64) {
    if !is_rolling(ds) {
        return (0, 0);
    }
    let rolling = ds.pointer("/spec/updateStrategy/rollingUpdate");
    let surge = scaled_value(rolling.and_then(|r| r.get("maxSurge")), desired, true);
    let mut unavailable = scaled_value(rolling.and_then(|r| r.get("maxUnavailable")), desired, true);
    if desired > 0 && surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable)
}

fn allows_surge(ds: &Value) -> bool {
    fenceposts(ds, 1).0 != 0
}

/// The pods of a DaemonSet by their node (pods for no node left out).
pub type ByNode = BTreeMap<String, Vec<Arc<Value>>>;

pub fn by_node(pods: &[Arc<Value>]) -> ByNode {
    let mut map = ByNode::new();
    for pod in pods {
        if let Some(node) = target_node(pod) {
            map.entry(node.to_string()).or_default().push(pod.clone());
        }
    }
    map
}

/// The old and new (not deleted) pods on a node; `None` if there are several of either.
fn old_and_new<'a>(pods: &'a [Arc<Value>], hash: &str, generation: Option<&str>) -> Option<Opt2<'a>> {
    let (mut new, mut old) = (None, None);
    for pod in pods.iter().filter(|p| !terminating(p)) {
        let slot = if is_updated(pod, hash, generation) { &mut new } else { &mut old };
        if slot.is_some() {
            return None;
        }
        *slot = Some(pod);
    }
    Some((new, old))
}

type Opt2<'a> = (Option<&'a Arc<Value>>, Option<&'a Arc<Value>>);

/// What one sync does: the nodes to create pods on, the pods to delete.
#[derive(Debug, Default)]
pub struct Changes {
    pub create_on: Vec<String>,
    pub delete: Vec<Arc<Value>>,
    /// Warnings about failed pods being deleted.
    pub failed: Vec<String>,
    /// Look again after this long (a failed pod in backoff).
    pub requeue: Option<Duration>,
}

impl Changes {
    fn delete(&mut self, pod: &Arc<Value>) {
        if !self.delete.iter().any(|p| name(p) == name(pod)) {
            self.delete.push(pod.clone());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.create_on.is_empty() && self.delete.is_empty()
    }
}

/// The rolling update's deletions and (when surging) creations (kube's `rollingUpdate`).
pub fn rolling_update(
    ds: &Value,
    nodes: &[Arc<Value>],
    by_node: &ByNode,
    hash: &str,
    placement: &Placement,
    at: OffsetDateTime,
) -> Changes {
    let generation = template_generation(ds);
    let min_ready = int_at(ds, "/spec/minReadySeconds");
    let available = |p: &Value| is_available(p, min_ready, at);
    let mut all: BTreeMap<&str, &[Arc<Value>]> = by_node.iter().map(|(n, p)| (n.as_str(), p.as_slice())).collect();
    let mut desired = 0;
    let mut should_run: HashMap<&str, bool> = HashMap::new();
    for node in nodes {
        let run = placement.check(node).0;
        should_run.insert(name(node), run);
        if run {
            desired += 1;
            all.entry(name(node)).or_insert(&[]);
        }
    }
    let (max_surge, max_unavailable) = fenceposts(ds, desired);
    let mut changes = Changes::default();
    if max_surge == 0 {
        let (mut unavailable, mut replace, mut candidates) = (0, Vec::new(), Vec::new());
        for pods in all.values() {
            match old_and_new(pods, hash, generation) {
                None | Some((None, None)) | Some((Some(_), Some(_))) => unavailable += 1,
                Some((Some(new), None)) => {
                    if !available(new) {
                        unavailable += 1;
                    }
                }
                Some((None, Some(old))) => {
                    if !available(old) {
                        replace.push(old);
                    } else if unavailable < max_unavailable {
                        candidates.push(old);
                    }
                }
            }
        }
        let room = (max_unavailable - unavailable).clamp(0, candidates.len() as i64) as usize;
        for pod in replace.into_iter().chain(candidates.into_iter().take(room)) {
            changes.delete(pod);
        }
        return changes;
    }
    let (mut surging, mut available_nodes) = (0, 0);
    let (mut allowed, mut candidates, mut misplaced) = (Vec::new(), Vec::new(), Vec::new());
    for (node, pods) in &all {
        let Some((new, old)) = old_and_new(pods, hash, generation) else {
            surging += 1;
            continue;
        };
        if old.is_some_and(|p| available(p)) || new.is_some_and(|p| available(p)) {
            available_nodes += 1;
        }
        if !should_run.get(node).copied().unwrap_or(false) {
            misplaced.extend(old.into_iter().chain(new));
            continue;
        }
        match (new, old) {
            (_, None) => {}
            (None, Some(old)) => {
                if !available(old) {
                    allowed.push(node.to_string());
                } else if surging < max_surge {
                    candidates.push(node.to_string());
                }
            }
            (Some(new), Some(old)) => {
                if available(new) {
                    changes.delete(old);
                } else {
                    surging += 1;
                }
            }
        }
    }
    // Pods where they should no longer run go only while enough others are available.
    let deletable = (available_nodes - desired).clamp(0, misplaced.len() as i64) as usize;
    for pod in misplaced.into_iter().take(deletable) {
        changes.delete(pod);
    }
    let room = (max_surge - surging).clamp(0, candidates.len() as i64) as usize;
    changes.create_on = allowed.into_iter().chain(candidates.into_iter().take(room)).collect();
    changes
}

/// The status of `ds` (kube's `updateDaemonSetStatus`), from its current one.
pub fn calculate_status(
    ds: &Value,
    nodes: &[Arc<Value>],
    by_node: &ByNode,
    hash: &str,
    placement: &Placement,
    observed: bool,
    at: OffsetDateTime,
) -> Value {
    let generation = template_generation(ds);
    let min_ready = int_at(ds, "/spec/minReadySeconds");
    let (mut desired, mut current, mut misscheduled, mut ready, mut updated, mut available) = (0, 0, 0, 0, 0, 0);
    for node in nodes {
        let pods = by_node.get(name(node)).filter(|p| !p.is_empty());
        if !placement.check(node).0 {
            if pods.is_some() {
                misscheduled += 1;
            }
            continue;
        }
        desired += 1;
        let Some(pods) = pods else { continue };
        current += 1;
        let mut sorted = pods.clone();
        sorted.sort_by(by_age);
        let pod = &sorted[0];
        if is_ready(pod) {
            ready += 1;
            if is_available(pod, min_ready, at) {
                available += 1;
            }
        }
        if is_updated(pod, hash, generation) {
            updated += 1;
        }
    }
    let mut status: Map<String, Value> = ds.get("status").and_then(Value::as_object).cloned().unwrap_or_default();
    status.insert("desiredNumberScheduled".into(), json!(desired));
    status.insert("currentNumberScheduled".into(), json!(current));
    status.insert("numberMisscheduled".into(), json!(misscheduled));
    status.insert("numberReady".into(), json!(ready));
    for (field, value) in [
        ("updatedNumberScheduled", updated),
        ("numberAvailable", available),
        ("numberUnavailable", desired - available),
    ] {
        if value == 0 {
            status.remove(field);
        } else {
            status.insert(field.into(), json!(value));
        }
    }
    if observed {
        status.insert("observedGeneration".into(), json!(int_at(ds, "/metadata/generation")));
    }
    Value::Object(status)
}

// ---------------------------------------------------------------------------------------
// History

fn revision(cr: &Value) -> i64 {
    int_at(cr, "/revision")
}

fn label<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.pointer("/metadata/labels").and_then(|l| l.get(key)).and_then(Value::as_str)
}

/// What a revision stores: a strategic merge patch restoring the template (kube's `getPatch`).
pub fn revision_data(ds: &Value) -> Value {
    let mut template = ds.pointer("/spec/template").cloned().unwrap_or_else(|| json!({}));
    if let Some(t) = template.as_object_mut() {
        t.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": template}})
}

/// Whether revision `cr` is the DaemonSet's template (kube's `Match`).
pub fn matches(ds: &Value, cr: &Value) -> bool {
    let mut stored = cr.pointer("/data/spec/template").cloned().unwrap_or(Value::Null);
    if let Some(t) = stored.as_object_mut() {
        t.remove("$patch");
    }
    equal_ignore_hash(Some(&stored), ds.pointer("/spec/template"))
}

fn collision_count(ds: &Value) -> Option<i64> {
    ds.pointer("/status/collisionCount").and_then(Value::as_i64)
}

/// The revision of the DaemonSet's template as it would be created (kube's `snapshot`).
pub fn new_revision(ds: &Value, number: i64) -> Value {
    let template = ds.pointer("/spec/template").cloned().unwrap_or(Value::Null);
    let hash = template_hash(&template, collision_count(ds));
    let mut labels = template.pointer("/metadata/labels").and_then(Value::as_object).cloned().unwrap_or_default();
    labels.insert(REVISION_HASH.into(), json!(hash));
    let mut metadata = json!({
        "name": format!("{}-{hash}", name(ds)),
        "namespace": namespace(ds),
        "labels": labels,
        "ownerReferences": [owner_reference(ds, "DaemonSet")],
    });
    if let Some(annotations) = ds.pointer("/metadata/annotations").filter(|a| !pods::is_empty(a)) {
        metadata["annotations"] = annotations.clone();
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": metadata,
        "data": revision_data(ds),
        "revision": number,
    })
}

// ---------------------------------------------------------------------------------------
// The controller

/// The controller; keys are DaemonSets.
#[derive(Default)]
pub struct DaemonSets {
    expectations: Expectations,
    /// The informers' copies of DaemonSets and nodes, for the key functions (known once the
    /// first reconcile ran; by then every DaemonSet was queued by the first list).
    daemon_sets: Rc<RefCell<Option<Lister>>>,
    nodes: Rc<RefCell<Option<Lister>>>,
    /// Failed pods' deletion backoff per (DaemonSet, node): next allowed, current delay.
    failed_backoff: RefCell<HashMap<(ObjectKey, String), (Instant, Duration)>>,
}

/// What of a node the DaemonSet controller reads.
fn node_fingerprint(node: &Value) -> Value {
    let true_conditions: Vec<&str> = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| str_at(c, "/status") == "True")
        .map(|c| str_at(c, "/type"))
        .collect();
    json!([node.pointer("/metadata/labels"), node.get("spec"), true_conditions])
}

impl DaemonSets {
    pub fn new() -> Self {
        DaemonSets::default()
    }

    /// The pods to create and delete so that each node has its one pod (kube's `manage`
    /// and `podsShouldBeOnNode`).
    fn manage(
        &self,
        key: &ObjectKey,
        ds: &Value,
        nodes: &[Arc<Value>],
        by_node: &ByNode,
        hash: &str,
        placement: &Placement,
    ) -> Changes {
        let mut changes = Changes::default();
        let surge = allows_surge(ds);
        let min_ready = int_at(ds, "/spec/minReadySeconds");
        let at = now();
        let mut backoff = self.failed_backoff.borrow_mut();
        for node in nodes {
            let node_name = name(node);
            let (should_run, should_continue) = placement.check(node);
            let pods = by_node.get(node_name);
            match pods {
                None if should_run => changes.create_on.push(node_name.to_string()),
                None => {}
                Some(pods) if should_continue => {
                    let mut running: Vec<Arc<Value>> = Vec::new();
                    for pod in pods.iter().filter(|p| !terminating(p)) {
                        match phase(pod) {
                            "Failed" => {
                                let slot = (key.clone(), node_name.to_string());
                                let now = Instant::now();
                                let delay = match backoff.get(&slot) {
                                    Some((next, _)) if *next > now => {
                                        let wait = *next - now;
                                        changes.requeue = Some(changes.requeue.map_or(wait, |r| r.min(wait)));
                                        continue;
                                    }
                                    Some((_, delay)) => (*delay * 2).min(FAILED_BACKOFF.1),
                                    None => FAILED_BACKOFF.0,
                                };
                                backoff.insert(slot, (now + delay, delay));
                                changes.failed.push(format!(
                                    "Found failed daemon pod {}/{} on node {node_name}, will try to kill it",
                                    namespace(pod),
                                    name(pod)
                                ));
                                changes.delete(pod);
                            }
                            "Succeeded" => changes.delete(pod),
                            _ => running.push(pod.clone()),
                        }
                    }
                    running.sort_by(by_age);
                    if !surge {
                        for pod in running.iter().skip(1) {
                            changes.delete(pod);
                        }
                        continue;
                    }
                    if running.len() <= 1 {
                        if running.is_empty() && should_run {
                            changes.create_on.push(node_name.to_string());
                        }
                        continue;
                    }
                    // Surging: at most the oldest new pod and, while that one is not yet
                    // available, the oldest old one if it is ready.
                    let (mut oldest_new, mut oldest_old) = (None, None);
                    for pod in &running {
                        let slot =
                            if label(pod, REVISION_HASH) == Some(hash) { &mut oldest_new } else { &mut oldest_old };
                        if slot.is_none() {
                            *slot = Some(pod);
                        } else {
                            changes.delete(pod);
                        }
                    }
                    if let (Some(new), Some(old)) = (oldest_new, oldest_old) {
                        if !is_ready(old) || is_available(new, min_ready, at) {
                            changes.delete(old);
                        }
                    }
                }
                Some(pods) => {
                    for pod in pods.iter().filter(|p| !terminating(p)) {
                        changes.delete(pod);
                    }
                }
            }
        }
        // Unscheduled pods for nodes that no longer exist.
        for (node, pods) in by_node {
            if !nodes.iter().any(|n| name(n) == node) {
                for pod in pods.iter().filter(|p| str_at(p, "/spec/nodeName").is_empty() && !terminating(p)) {
                    changes.delete(pod);
                }
            }
        }
        changes
    }

    /// Creates and deletes pods (in slow-start batches), recording events and expectations
    /// (kube's `syncNodes`).
    async fn sync_nodes(
        &self,
        ctx: &Ctx,
        key: &ObjectKey,
        ds: &Value,
        hash: &str,
        changes: Changes,
    ) -> Result<(), ApiError> {
        let ns = key.namespace.as_deref();
        for message in &changes.failed {
            ctx.event(ds, "Warning", "FailedDaemonPod", message).await;
        }
        let mut failure = None;
        let mut created = 0;
        let mut remaining: Vec<&String> = changes.create_on.iter().take(BURST_REPLICAS).collect();
        let mut batch = 1;
        while !remaining.is_empty() && failure.is_none() {
            let now_nodes: Vec<&String> = remaining.drain(..batch.min(remaining.len())).collect();
            let results =
                join_all(now_nodes.iter().map(|node| ctx.create(pods::pods(), ns, new_pod(ds, hash, node)))).await;
            let mut events = Vec::new();
            let mut stop = false;
            for result in results {
                match result {
                    Ok(p) => {
                        created = created.max(resource_version(&p).unwrap_or(0));
                        events.push(("Normal", "SuccessfulCreate", format!("Created pod: {}", name(&p))));
                    }
                    // The namespace is going: every create would fail.
                    Err(ApiError::Forbidden { .. }) => stop = true,
                    Err(e) => {
                        events.push(("Warning", "FailedCreate", format!("Error creating: {e}")));
                        failure.get_or_insert(e);
                    }
                }
            }
            join_all(events.iter().map(|(t, reason, msg)| ctx.event(ds, t, reason, msg))).await;
            if stop {
                break;
            }
            batch *= 2;
        }
        let doomed: Vec<&Arc<Value>> = changes.delete.iter().take(BURST_REPLICAS).collect();
        let (deleted, failed) = pods::delete_burst(ctx, ds, ns, &doomed).await;
        if let Some(e) = failed {
            failure.get_or_insert(e);
        }
        self.expectations.expect(key, created, deleted);
        failure.map_or(Ok(()), Err)
    }
}

/// The DaemonSet's revisions: the current one (created, deduplicated, renumbered as
/// needed) and the others (kube's `constructHistory`).
async fn construct_history(
    ctx: &Ctx,
    ds: &Value,
    revisions: &Lister,
    pods: &[Arc<Value>],
) -> Result<(Value, Vec<Value>), ApiError> {
    let ns = namespace(ds);
    let mut current = Vec::new();
    let mut old = Vec::new();
    for cr in revisions.list(Some(ns)).into_iter().filter(|cr| controlled_by(cr, ds)) {
        let mut cr = (*cr).clone();
        if label(&cr, REVISION_HASH).is_none() {
            let patch = json!({"metadata": {"labels": {REVISION_HASH: name(&cr)}}});
            cr = ctx.merge_patch(controller_revisions(), (Some(ns), name(&cr)), Part::Main, &patch).await?;
        }
        if matches(ds, &cr) {
            current.push(cr);
        } else {
            old.push(cr);
        }
    }
    let next = old.iter().map(revision).max().unwrap_or(0) + 1;
    current.sort_by_key(|cr| std::cmp::Reverse(revision(cr)));
    let mut current = current.into_iter();
    let Some(mut cur) = current.next() else {
        return Ok((snapshot(ctx, ds, next).await?, old));
    };
    // Duplicates: their pods move to the kept revision's hash; they go.
    let keep_hash = label(&cur, REVISION_HASH).unwrap_or_default().to_string();
    for dup in current {
        let dup_hash = label(&dup, REVISION_HASH).unwrap_or_default();
        for pod in pods.iter().filter(|p| label(p, REVISION_HASH) == Some(dup_hash)) {
            let patch = json!({"metadata": {"labels": {REVISION_HASH: keep_hash}}});
            match ctx.merge_patch(pods::pods(), (Some(ns), name(pod)), Part::Main, &patch).await {
                Ok(_) | Err(ApiError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        match ctx.delete(controller_revisions(), (Some(ns), name(&dup)), DeleteOptions::default()).await {
            Ok(_) | Err(ApiError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    if revision(&cur) < next {
        cur["revision"] = json!(next);
        cur = ctx.update(controller_revisions(), Part::Main, cur).await?;
    }
    Ok((cur, old))
}

/// Creates the revision of the DaemonSet's template; on a name collision with another
/// template, bumps `status.collisionCount` and fails (the next try hashes differently).
async fn snapshot(ctx: &Ctx, ds: &Value, number: i64) -> Result<Value, ApiError> {
    let ns = namespace(ds);
    let cr = new_revision(ds, number);
    let cr_name = name(&cr).to_string();
    match ctx.create(controller_revisions(), Some(ns), cr).await {
        Err(ApiError::AlreadyExists(subject)) => {
            let existing = ctx.get(controller_revisions(), Some(ns), &cr_name).await?;
            if matches(ds, &existing) {
                if controller_ref(&existing).is_some() {
                    return Ok(existing);
                }
                // An orphan of this template (its DaemonSet was deleted, orphaning it): adopted.
                let mut adopted = existing;
                let mut refs =
                    adopted.pointer("/metadata/ownerReferences").and_then(Value::as_array).cloned().unwrap_or_default();
                refs.push(owner_reference(ds, "DaemonSet"));
                pods::set_path(&mut adopted, &["metadata", "ownerReferences"], Value::Array(refs));
                return ctx.update(controller_revisions(), Part::Main, adopted).await;
            }
            let mut fresh = ctx.get(daemon_sets(), Some(ns), name(ds)).await?;
            if collision_count(&fresh) != collision_count(ds) {
                return Err(ApiError::Conflict(subject));
            }
            pods::set_path(&mut fresh, &["status", "collisionCount"], json!(collision_count(ds).unwrap_or(0) + 1));
            ctx.update(daemon_sets(), Part::Status, fresh).await?;
            Err(ApiError::AlreadyExists(subject))
        }
        result => result,
    }
}

/// Deletes the oldest revisions beyond `revisionHistoryLimit` that no pod runs (kube's
/// `cleanupHistory`).
async fn cleanup_history(ctx: &Ctx, ds: &Value, mut old: Vec<Value>, by_node: &ByNode) -> Result<(), ApiError> {
    let limit = ds.pointer("/spec/revisionHistoryLimit").and_then(Value::as_i64).unwrap_or(10).max(0) as usize;
    let Some(mut excess) = old.len().checked_sub(limit).filter(|n| *n > 0) else { return Ok(()) };
    let live: Vec<&str> = by_node.values().flatten().filter_map(|p| label(p, REVISION_HASH)).collect();
    old.sort_by_key(revision);
    for cr in &old {
        if excess == 0 {
            break;
        }
        if label(cr, REVISION_HASH).is_some_and(|h| live.contains(&h)) {
            continue;
        }
        match ctx.delete(controller_revisions(), (Some(namespace(ds)), name(cr)), DeleteOptions::default()).await {
            Ok(_) | Err(ApiError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        excess -= 1;
    }
    Ok(())
}

impl Reconciler for DaemonSets {
    fn name(&self) -> &'static str {
        "daemonset"
    }

    fn watches(&self) -> Vec<Watched> {
        let observe = self.expectations.observer();
        let owners = self.daemon_sets.clone();
        let pod_keys = move |pod: &Value, old: Option<&Value>| {
            observe(pod);
            let mut keys: Vec<ObjectKey> = Vec::new();
            for p in std::iter::once(pod).chain(old) {
                let found: Vec<ObjectKey> = match controller_ref(p) {
                    Some(_) => controller_of(p, "DaemonSet").into_iter().collect(),
                    None => match owners.try_borrow().ok().and_then(|d| d.clone()) {
                        Some(lister) => lister
                            .list(Some(namespace(p)))
                            .iter()
                            .filter(|ds| Selector::of(ds).matches(p))
                            .filter_map(|ds| ObjectKey::of(ds))
                            .collect(),
                        None => Vec::new(),
                    },
                };
                for key in found {
                    if !keys.contains(&key) {
                        keys.push(key);
                    }
                }
            }
            keys
        };
        let (ds_lister, node_lister) = (self.daemon_sets.clone(), self.nodes.clone());
        let node_keys = move |node: &Value, old: Option<&Value>| {
            let gone = node_lister
                .try_borrow()
                .ok()
                .and_then(|l| l.as_ref().map(|l| l.get(&ObjectKey::new(None, name(node))).is_none()))
                .unwrap_or(false);
            let changed = old.is_none_or(|o| node_fingerprint(o) != node_fingerprint(node));
            if !gone && !changed {
                return Vec::new();
            }
            match ds_lister.try_borrow().ok().and_then(|d| d.clone()) {
                Some(lister) => lister.list(None).iter().filter_map(|ds| ObjectKey::of(ds)).collect(),
                None => Vec::new(),
            }
        };
        vec![
            Watched::objects(daemon_sets()),
            Watched::with(pods::pods(), pod_keys),
            Watched::owned_by(controller_revisions(), "DaemonSet"),
            Watched::with(nodes(), node_keys),
        ]
    }

    fn reconcile(self: Rc<Self>, ctx: Ctx, key: ObjectKey) -> LocalBoxFuture<'static, Result<Action, ApiError>> {
        Box::pin(async move {
            let listers = (
                ctx.lister(daemon_sets()).cloned(),
                ctx.lister(pods::pods()).cloned(),
                ctx.lister(nodes()).cloned(),
                ctx.lister(controller_revisions()).cloned(),
            );
            let (Some(ds_lister), Some(pod_lister), Some(node_lister), Some(cr_lister)) = listers else {
                return Ok(Action::Done);
            };
            *self.daemon_sets.borrow_mut() = Some(ds_lister.clone());
            *self.nodes.borrow_mut() = Some(node_lister.clone());
            let Some(ds) = ds_lister.get(&key) else {
                self.expectations.forget(&key);
                self.failed_backoff.borrow_mut().retain(|(k, _), _| *k != key);
                return Ok(Action::Done);
            };
            let selector = Selector::of(&ds);
            if selector.is_everything() {
                let message = "This daemon set is selecting all pods. A non-empty selector is required.";
                ctx.event(&ds, "Warning", "SelectingAll", message).await;
                return Ok(Action::Done);
            }
            if terminating(&ds) {
                return Ok(Action::Done);
            }
            let nodes = node_lister.list(None);
            let candidates = pod_lister.list(key.namespace.as_deref());
            let pods = claim(&ctx, pods::pods(), &ds, "DaemonSet", &selector, candidates).await?;
            let (cur, old) = construct_history(&ctx, &ds, &cr_lister, &pods).await?;
            let hash = label(&cur, REVISION_HASH).unwrap_or_default().to_string();
            let placement = Placement::of(&ds);
            let by_node = by_node(&pods);
            let satisfied = self.expectations.satisfied(&key, &pod_lister);
            let mut failure = None;
            let mut requeue = None;
            if satisfied {
                let mut changes = self.manage(&key, &ds, &nodes, &by_node, &hash, &placement);
                requeue = changes.requeue;
                // Rolling updates wait until what manage did is seen.
                if changes.is_empty() && is_rolling(&ds) {
                    let rolling = rolling_update(&ds, &nodes, &by_node, &hash, &placement, now());
                    changes.create_on = rolling.create_on;
                    changes.delete = rolling.delete;
                }
                failure = self.sync_nodes(&ctx, &key, &ds, &hash, changes).await.err();
                if failure.is_none() {
                    failure = cleanup_history(&ctx, &ds, old, &by_node).await.err();
                }
            }
            let status = calculate_status(&ds, &nodes, &by_node, &hash, &placement, satisfied, now());
            if pods::normalized(ds.get("status")) != pods::normalized(Some(&status)) {
                let mut updated = (*ds).clone();
                updated["status"] = status.clone();
                ctx.update(daemon_sets(), Part::Status, updated).await?;
            }
            if let Some(e) = failure {
                return Err(e);
            }
            if !satisfied {
                return Ok(Action::RequeueAfter(EXPECTATIONS_TIMEOUT));
            }
            let min_ready = int_at(&ds, "/spec/minReadySeconds");
            let count = |f: &str| status.get(f).and_then(Value::as_i64).unwrap_or(0);
            if min_ready > 0 && count("numberReady") != count("numberAvailable") {
                let after = Duration::from_secs(min_ready as u64);
                requeue = Some(requeue.map_or(after, |r| r.min(after)));
            }
            Ok(requeue.map_or(Action::Done, Action::RequeueAfter))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(spec: Value) -> Value {
        let mut spec = spec;
        spec["selector"] = json!({"matchLabels": {"app": "agent"}});
        let template_spec =
            spec.get("template").cloned().unwrap_or_else(|| json!({"containers": [{"name": "c", "image": "i"}]}));
        spec["template"] = json!({"metadata": {"labels": {"app": "agent"}}, "spec": template_spec});
        json!({"metadata": {"name": "agent", "namespace": "d", "uid": "ds-uid", "generation": 2}, "spec": spec})
    }

    fn node(name: &str, labels: Value, taints: Value) -> Arc<Value> {
        Arc::new(json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}}))
    }

    fn pod(name: &str, node: &str, hash: &str, ready: bool, created: &str) -> Arc<Value> {
        Arc::new(json!({
            "metadata": {"name": name, "labels": {REVISION_HASH: hash}, "creationTimestamp": created},
            "spec": {"nodeName": node},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}, "lastTransitionTime": created}]},
        }))
    }

    #[test]
    fn daemon_pods_are_pinned_tolerant_and_labelled() {
        let mut d = ds(json!({"template": {"containers": [{"name": "c"}], "hostNetwork": true,
            "tolerations": [{"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}]}}}}}));
        d["metadata"]["annotations"] = json!({TEMPLATE_GENERATION_ANNOTATION: "2"});
        let p = new_pod(&d, "h1", "n1");
        assert_eq!(p["metadata"]["generateName"], "agent-");
        assert_eq!(p["metadata"]["labels"], json!({"app": "agent", REVISION_HASH: "h1", TEMPLATE_GENERATION: "2"}));
        assert_eq!(target_node(&p), Some("n1"));
        let terms = &p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"];
        assert_eq!(terms.as_array().unwrap().len(), 1, "the template's terms are replaced");
        let tolerations = p["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(tolerations.len(), 7, "{tolerations:?}");
        let not_ready: Vec<&Value> = tolerations.iter().filter(|t| t["key"] == NOT_READY).collect();
        assert_eq!(not_ready, [&json!({"key": NOT_READY, "operator": "Exists", "effect": "NoExecute"})], "replaced");
        assert!(tolerations.iter().any(|t| t["key"] == NETWORK_UNAVAILABLE), "host network");
        assert!(controlled_by(&p, &d));
        assert!(is_updated(&p, "h1", None) && is_updated(&p, "other", Some("2")) && !is_updated(&p, "other", None));
    }

    #[test]
    fn placement_follows_selectors_and_taints() {
        let d = ds(json!({"template": {"containers": [{"name": "c"}], "nodeSelector": {"role": "edge"}}}));
        let placement = Placement::of(&d);
        let edge = |taints: Value| node("n", json!({"role": "edge"}), taints);
        assert_eq!(placement.check(&edge(json!([]))), (true, true));
        assert_eq!(placement.check(&node("n", json!({}), json!([]))), (false, false));
        let no_schedule = json!([{"key": "dedicated", "effect": "NoSchedule"}]);
        assert_eq!(placement.check(&edge(no_schedule)), (false, true), "keeps a pod it has");
        let no_execute = json!([{"key": "dedicated", "effect": "NoExecute"}]);
        assert_eq!(placement.check(&edge(no_execute)), (false, false));
        let tolerated =
            json!([{"key": UNREACHABLE, "effect": "NoExecute"}, {"key": UNSCHEDULABLE, "effect": "NoSchedule"}]);
        assert_eq!(placement.check(&edge(tolerated)), (true, true), "the daemon tolerations");
        let unreachable = json!([{"key": UNREACHABLE, "effect": "NoSchedule"}]);
        assert_eq!(placement.check(&edge(unreachable)), (false, true));
    }

    #[test]
    fn a_rolling_update_replaces_at_most_max_unavailable_pods_at_once() {
        let d = ds(json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}}));
        let placement = Placement::of(&d);
        let nodes: Vec<Arc<Value>> = ["a", "b", "c"].iter().map(|n| node(n, json!({}), json!([]))).collect();
        let t = "2024-01-01T00:00:00Z";
        let at = pods::parse_time("2024-01-01T00:01:00Z").unwrap();
        let old =
            by_node(&[pod("pa", "a", "old", true, t), pod("pb", "b", "old", true, t), pod("pc", "c", "old", true, t)]);
        let changes = rolling_update(&d, &nodes, &old, "new", &placement, at);
        assert_eq!(changes.delete.len(), 1);
        assert!(changes.create_on.is_empty());
        // One new pod not yet ready: nothing more goes.
        let mid =
            by_node(&[pod("na", "a", "new", false, t), pod("pb", "b", "old", true, t), pod("pc", "c", "old", true, t)]);
        assert!(rolling_update(&d, &nodes, &mid, "new", &placement, at).delete.is_empty());
        // Ready: the next old pod goes.
        let mid =
            by_node(&[pod("na", "a", "new", true, t), pod("pb", "b", "old", true, t), pod("pc", "c", "old", true, t)]);
        assert_eq!(rolling_update(&d, &nodes, &mid, "new", &placement, at).delete.len(), 1);
        // An unavailable old pod is replaced whatever the budget.
        let broken = by_node(&[
            pod("na", "a", "new", false, t),
            pod("pb", "b", "old", false, t),
            pod("pc", "c", "old", true, t),
        ]);
        let changes = rolling_update(&d, &nodes, &broken, "new", &placement, at);
        assert_eq!(changes.delete.iter().map(|p| name(p)).collect::<Vec<_>>(), ["pb"]);

        let status = calculate_status(&d, &nodes, &mid, "new", &placement, true, at);
        assert_eq!(
            status,
            json!({"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberMisscheduled": 0, "numberReady": 3,
                "updatedNumberScheduled": 1, "numberAvailable": 3, "observedGeneration": 2})
        );
    }

    #[test]
    fn surging_creates_new_pods_beside_available_old_ones() {
        let d = ds(
            json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}}),
        );
        let placement = Placement::of(&d);
        let nodes: Vec<Arc<Value>> = ["a", "b"].iter().map(|n| node(n, json!({}), json!([]))).collect();
        let t = "2024-01-01T00:00:00Z";
        let at = pods::parse_time("2024-01-01T00:01:00Z").unwrap();
        let old = by_node(&[pod("pa", "a", "old", true, t), pod("pb", "b", "old", true, t)]);
        let changes = rolling_update(&d, &nodes, &old, "new", &placement, at);
        assert_eq!((changes.create_on.len(), changes.delete.len()), (1, 0));
        let both =
            by_node(&[pod("pa", "a", "old", true, t), pod("na", "a", "new", true, t), pod("pb", "b", "old", true, t)]);
        let changes = rolling_update(&d, &nodes, &both, "new", &placement, at);
        assert_eq!(changes.delete.iter().map(|p| name(p)).collect::<Vec<_>>(), ["pa"]);
        assert_eq!(changes.create_on, ["b"]);
    }

    #[test]
    fn revisions_hold_the_template_and_match_it() {
        let d = ds(json!({}));
        let cr = new_revision(&d, 3);
        assert!(name(&cr).starts_with("agent-"));
        assert_eq!(cr["revision"], 3);
        assert_eq!(cr["data"]["spec"]["template"]["$patch"], "replace");
        assert_eq!(label(&cr, "app"), Some("agent"));
        assert_eq!(label(&cr, REVISION_HASH).map(|h| format!("agent-{h}")).as_deref(), Some(name(&cr)));
        assert!(matches(&d, &cr));
        let mut changed = d.clone();
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("j");
        assert!(!matches(&changed, &cr));
        assert_ne!(name(&new_revision(&changed, 4)), name(&cr));
    }

    #[test]
    fn pods_with_no_node_name_find_their_node_in_the_affinity() {
        let p = json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n9"]}]}]}}}}});
        assert_eq!(target_node(&p), Some("n9"));
        assert_eq!(target_node(&json!({"spec": {}})), None);
        let created_at = pods::created(&json!({"metadata": {"creationTimestamp": "2024-01-01T00:00:00Z"}}));
        assert!(created_at.is_some());
    }
}

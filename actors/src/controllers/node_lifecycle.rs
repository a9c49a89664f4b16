//! The node lifecycle controller (kube-controller-manager's `node-lifecycle-controller`)
//! and its taint manager (`taint-eviction-controller`).
//!
//! [`NodeLifecycle`] watches each node's heartbeat, its Lease in `kube-node-lease`
//! (`spec.renewTime`) and its Ready condition's `lastHeartbeatTime`: when neither moved for
//! the grace period it sets the node's conditions to `Unknown`, and it keeps the taints that
//! follow the conditions (`not-ready`, `unreachable`, the pressure taints, `unschedulable`;
//! `NoSchedule`, and `NoExecute` for not-ready and unreachable), with kube's disruption
//! modes: when every node is not ready, nothing is evicted. Pods on a node that stops being
//! ready are marked not ready.
//!
//! [`TaintEviction`] deletes the pods on a node with `NoExecute` taints they do not tolerate,
//! at once, or `tolerationSeconds` after the taint's `timeAdded`.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{join_all, LocalBoxFuture};
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::pods::{self, kind, name, now, parse_time, str_at, terminating, timestamp};
use crate::api_error::ApiError;
use crate::controller::{Action, Ctx, Lister, ObjectKey, Reconciler, Watched};
use crate::deletion::DeleteOptions;
use crate::kinds::ResourceKind;
use crate::object_store::Part;
use crate::scheduler::pod_info::{Taint, Toleration};

/// The namespace of the nodes' heartbeat Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
pub const DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
pub const PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
pub const NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";
/// Nodes with this label do not count towards their zone's disruption state.
const EXCLUDE_DISRUPTION: &str = "node.kubernetes.io/exclude-disruption";

/// Which condition status calls for which `NoSchedule` taint (kube's
/// `nodeConditionToTaintKeyStatusMap`).
const CONDITION_TAINTS: [(&str, &str, &str); 6] = [
    ("Ready", "False", NOT_READY),
    ("Ready", "Unknown", UNREACHABLE),
    ("MemoryPressure", "True", MEMORY_PRESSURE),
    ("DiskPressure", "True", DISK_PRESSURE),
    ("NetworkUnavailable", "True", NETWORK_UNAVAILABLE),
    ("PIDPressure", "True", PID_PRESSURE),
];

/// The conditions set to `Unknown` when a node stops posting.
const MONITORED: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

pub fn nodes() -> &'static ResourceKind {
    kind("", "nodes")
}

pub fn leases() -> &'static ResourceKind {
    kind("coordination.k8s.io", "leases")
}

/// The status of the node's condition `kind`.
pub fn condition_status<'a>(node: &'a Value, kind: &str) -> Option<&'a str> {
    pods::condition(node.get("status")?, kind)?.get("status")?.as_str()
}

fn ready_heartbeat(node: &Value) -> Option<(String, String)> {
    let ready = pods::condition(node.get("status")?, "Ready")?;
    Some((str_at(ready, "/status").to_string(), str_at(ready, "/lastHeartbeatTime").to_string()))
}

fn taints_of(node: &Value) -> Vec<Value> {
    node.pointer("/spec/taints").and_then(Value::as_array).cloned().unwrap_or_default()
}

fn taint_is(t: &Value, key: &str, effect: &str) -> bool {
    str_at(t, "/key") == key && str_at(t, "/effect") == effect
}

fn has_taint(node: &Value, key: &str, effect: &str) -> bool {
    taints_of(node).iter().any(|t| taint_is(t, key, effect))
}

/// What to do about a node's `NoExecute` not-ready and unreachable taints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoExecute {
    /// Neither.
    Remove,
    /// This one, not the other.
    Want(&'static str),
    /// As they are (evictions are paused in the node's zone).
    Keep,
}

/// The taints `node` should have: those of its conditions and `spec.unschedulable` as
/// `NoSchedule` (kube's `doNoScheduleTaintingPass`), the `NoExecute` ones as `no_execute`
/// says, everything else as it is; `None` if that is what it has. New taints are stamped
/// with `timeAdded`.
pub fn desired_taints(node: &Value, no_execute: NoExecute, at: OffsetDateTime) -> Option<Vec<Value>> {
    let mut wanted: Vec<&str> = CONDITION_TAINTS
        .iter()
        .filter(|(kind, status, _)| condition_status(node, kind) == Some(*status))
        .map(|(_, _, key)| *key)
        .collect();
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        wanted.push(UNSCHEDULABLE);
    }
    let managed = |key: &str| key == UNSCHEDULABLE || CONDITION_TAINTS.iter().any(|(_, _, k)| *k == key);
    let current = taints_of(node);
    let mut taints: Vec<Value> = current
        .iter()
        .filter(|t| {
            let key = str_at(t, "/key");
            match str_at(t, "/effect") {
                "NoSchedule" => !managed(key) || wanted.contains(&key),
                "NoExecute" if key == NOT_READY || key == UNREACHABLE => match no_execute {
                    NoExecute::Remove => false,
                    NoExecute::Want(want) => key == want,
                    NoExecute::Keep => true,
                },
                _ => true,
            }
        })
        .cloned()
        .collect();
    let added = timestamp(at);
    for key in wanted {
        if !taints.iter().any(|t| taint_is(t, key, "NoSchedule")) {
            taints.push(json!({"key": key, "effect": "NoSchedule", "timeAdded": added}));
        }
    }
    if let NoExecute::Want(key) = no_execute {
        if !taints.iter().any(|t| taint_is(t, key, "NoExecute")) {
            taints.push(json!({"key": key, "effect": "NoExecute", "timeAdded": added}));
        }
    }
    (taints != current).then_some(taints)
}

/// The node's status with its monitored conditions `Unknown`, if that changes its Ready
/// condition (kube's `tryUpdateNodeHealth` after the grace period).
pub fn unknown_status(node: &Value, at: OffsetDateTime) -> Option<Value> {
    let mut status = node.get("status").filter(|s| s.is_object()).cloned().unwrap_or_else(|| json!({}));
    let before = pods::condition(&status, "Ready").cloned();
    let now = timestamp(at);
    for kind in MONITORED {
        let conditions = status.get_mut("conditions").and_then(Value::as_array_mut);
        let found = conditions.and_then(|list| list.iter_mut().find(|c| str_at(c, "/type") == kind));
        match found {
            Some(cond) => {
                if str_at(cond, "/status") != "Unknown" {
                    cond["status"] = json!("Unknown");
                    cond["reason"] = json!("NodeStatusUnknown");
                    cond["message"] = json!("Kubelet stopped posting node status.");
                    cond["lastTransitionTime"] = json!(now);
                }
            }
            None => {
                let cond = json!({
                    "type": kind,
                    "status": "Unknown",
                    "reason": "NodeStatusNeverUpdated",
                    "message": "Kubelet never posted node status.",
                    "lastHeartbeatTime": str_at(node, "/metadata/creationTimestamp"),
                    "lastTransitionTime": now,
                });
                match status.get_mut("conditions").and_then(Value::as_array_mut) {
                    Some(list) => list.push(cond),
                    None => status["conditions"] = json!([cond]),
                }
            }
        }
    }
    (pods::condition(&status, "Ready") != before.as_ref()).then_some(status)
}

/// A zone's health (kube's `ComputeZoneState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneState {
    Normal,
    /// More than 2 nodes and at least the threshold not ready.
    Partial,
    /// None ready.
    Full,
}

pub fn zone_state(ready: usize, not_ready: usize, unhealthy_threshold: f64) -> ZoneState {
    if ready == 0 && not_ready > 0 {
        ZoneState::Full
    } else if not_ready > 2 && not_ready as f64 / (ready + not_ready) as f64 >= unhealthy_threshold {
        ZoneState::Partial
    } else {
        ZoneState::Normal
    }
}

/// A node's zone as kube's `GetZoneKey` (region and zone labels).
fn zone_key(node: &Value) -> String {
    let label = |new: &str, old: &str| {
        let labels = node.pointer("/metadata/labels");
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str).unwrap_or("");
        match get(new) {
            "" => get(old).to_string(),
            v => v.to_string(),
        }
    };
    let region = label("topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region");
    let zone = label("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone");
    if region.is_empty() && zone.is_empty() {
        return String::new();
    }
    format!("{region}:\x00:{zone}")
}

/// What the controller last saw of a node's heartbeat.
#[derive(Debug, Clone)]
struct Health {
    uid: String,
    /// The Ready condition's status and `lastHeartbeatTime`.
    ready: Option<(String, String)>,
    /// The Lease's `renewTime`.
    renew: Option<String>,
    /// When a heartbeat was last seen to move.
    probe: Instant,
}

#[derive(Debug, Default)]
struct State {
    health: HashMap<String, Health>,
    /// Nodes whose Ready condition is not `True`: their Lease renewals are looked at at once.
    unhealthy: Rc<RefCell<HashSet<String>>>,
    /// Nodes whose pods are still to be marked not ready.
    to_mark: HashSet<String>,
    /// Every zone is fully disrupted: no evictions.
    all_disrupted: bool,
}

/// A node's planned writes.
struct Plan {
    node: Arc<Value>,
    /// The status to write.
    status: Option<Value>,
    no_execute: NoExecute,
}

/// kube's node lifecycle controller; one key, a pass over every node.
pub struct NodeLifecycle {
    /// Without a heartbeat for this long a node's conditions become `Unknown`
    /// (`--node-monitor-grace-period`).
    pub grace_period: Duration,
    /// The same for a node that never posted a Ready condition, from its creation
    /// (`--node-startup-grace-period`).
    pub startup_grace_period: Duration,
    /// How often every node is looked at (`--node-monitor-period`).
    pub monitor_period: Duration,
    /// A zone of more nodes than this keeps evicting (slowly, upstream) in partial disruption.
    pub large_cluster_threshold: usize,
    /// The share of not-ready nodes that puts a zone in partial disruption.
    pub unhealthy_zone_threshold: f64,
    state: RefCell<State>,
}

impl Default for NodeLifecycle {
    fn default() -> Self {
        NodeLifecycle {
            grace_period: Duration::from_secs(40),
            startup_grace_period: Duration::from_secs(60),
            monitor_period: Duration::from_secs(5),
            large_cluster_threshold: 50,
            unhealthy_zone_threshold: 0.55,
            state: RefCell::default(),
        }
    }
}

/// The `NoExecute` decision for a node whose Ready condition will be `ready` (kube's
/// `processTaintBaseEviction`, and `markNodeAsReachable` for every node while every zone is
/// fully disrupted). Where evictions are paused an existing opposite taint is still swapped.
fn no_execute_for(ready: Option<&str>, node: &Value, all_disrupted: bool, zone_allows: bool) -> NoExecute {
    if all_disrupted {
        return NoExecute::Remove;
    }
    let (want, opposite) = match ready {
        None => return NoExecute::Keep,
        Some("True") => return NoExecute::Remove,
        Some("False") => (NOT_READY, UNREACHABLE),
        Some(_) => (UNREACHABLE, NOT_READY),
    };
    if zone_allows || has_taint(node, opposite, "NoExecute") {
        NoExecute::Want(want)
    } else {
        NoExecute::Keep
    }
}

fn monitor_key() -> ObjectKey {
    ObjectKey::new(None, "")
}

fn is_ready(node: &Value) -> bool {
    condition_status(node, "Ready") == Some("True")
}

impl NodeLifecycle {
    /// A controller with this grace period (and a monitor period to match).
    pub fn with_grace(grace_period: Duration) -> Self {
        NodeLifecycle {
            grace_period,
            startup_grace_period: grace_period,
            monitor_period: (grace_period / 8).max(Duration::from_millis(50)),
            ..NodeLifecycle::default()
        }
    }

    /// Everything up to the writes: heartbeats seen, statuses made `Unknown`, zones, the
    /// `NoExecute` decision of each node.
    fn plan(&self, nodes: &[Arc<Value>], leases: Option<&Lister>, at: Instant, wall: OffsetDateTime) -> Vec<Plan> {
        let mut guard = self.state.borrow_mut();
        let state = &mut *guard;
        let names: HashSet<&str> = nodes.iter().map(|n| name(n)).collect();
        state.health.retain(|n, _| names.contains(n.as_str()));
        state.to_mark.retain(|n| names.contains(n.as_str()));
        let mut plans = Vec::with_capacity(nodes.len());
        for node in nodes {
            let node_name = name(node);
            let ready = ready_heartbeat(node);
            let renew = leases
                .and_then(|l| l.get(&ObjectKey::new(Some(LEASE_NAMESPACE), node_name)))
                .map(|lease| str_at(&lease, "/spec/renewTime").to_string())
                .filter(|r| !r.is_empty());
            let uid = pods::uid(node).to_string();
            let health = match state.health.get_mut(node_name).filter(|h| h.uid == uid) {
                Some(h) => {
                    if h.ready != ready || (renew.is_some() && h.renew != renew) {
                        h.probe = at;
                    }
                    // The kubelet itself says not ready: its pods are marked too.
                    let status = |r: &Option<(String, String)>| r.as_ref().map(|(s, _)| s == "True");
                    if status(&h.ready) == Some(true) && status(&ready) != Some(true) {
                        state.to_mark.insert(node_name.to_string());
                    }
                    h.ready = ready.clone();
                    h.renew = renew;
                    h.clone()
                }
                None => {
                    // First sight: a node that never posted counts from its creation.
                    let probe = match (&ready, pods::created(node)) {
                        (None, Some(created)) => {
                            let age = (wall - created).clamp(time::Duration::ZERO, time::Duration::days(1));
                            at.checked_sub(Duration::from_millis(age.whole_milliseconds() as u64)).unwrap_or(at)
                        }
                        _ => at,
                    };
                    let h = Health { uid, ready: ready.clone(), renew, probe };
                    state.health.insert(node_name.to_string(), h.clone());
                    h
                }
            };
            let grace = if ready.is_some() { self.grace_period } else { self.startup_grace_period };
            let status = if at.duration_since(health.probe) > grace { unknown_status(node, wall) } else { None };
            plans.push(Plan { node: node.clone(), status, no_execute: NoExecute::Keep });
        }
        // Zones, from the conditions as they will be.
        let after = |p: &Plan| -> bool {
            match &p.status {
                Some(status) => pods::condition(status, "Ready").and_then(|c| c.get("status")) == Some(&json!("True")),
                None => is_ready(&p.node),
            }
        };
        let mut zones: HashMap<String, (usize, usize)> = HashMap::new();
        for p in &plans {
            if p.node.pointer("/metadata/labels").and_then(|l| l.get(EXCLUDE_DISRUPTION)).is_some() {
                continue;
            }
            let counts = zones.entry(zone_key(&p.node)).or_default();
            if after(p) {
                counts.0 += 1;
            } else {
                counts.1 += 1;
            }
        }
        let zone_states: HashMap<&String, (ZoneState, usize)> = zones
            .iter()
            .map(|(zone, (ready, not_ready))| {
                (zone, (zone_state(*ready, *not_ready, self.unhealthy_zone_threshold), ready + not_ready))
            })
            .collect();
        let all_disrupted = !zone_states.is_empty() && zone_states.values().all(|(s, _)| *s == ZoneState::Full);
        if state.all_disrupted && !all_disrupted {
            // Leaving full disruption: every node gets a fresh grace period (as upstream).
            for h in state.health.values_mut() {
                h.probe = at;
            }
        }
        if all_disrupted != state.all_disrupted {
            tracing::info!(all_disrupted, "node lifecycle: every zone fully disrupted: evictions stop");
        }
        state.all_disrupted = all_disrupted;
        let mut unhealthy = HashSet::new();
        for p in &mut plans {
            let ready_after = match &p.status {
                Some(status) => pods::condition(status, "Ready").and_then(|c| c.get("status")).and_then(Value::as_str),
                None => condition_status(&p.node, "Ready"),
            };
            if ready_after != Some("True") {
                unhealthy.insert(name(&p.node).to_string());
            }
            let zone_allows = match zone_states.get(&zone_key(&p.node)) {
                Some((ZoneState::Partial, size)) => *size > self.large_cluster_threshold,
                _ => true,
            };
            p.no_execute = no_execute_for(ready_after, &p.node, all_disrupted, zone_allows);
        }
        *state.unhealthy.borrow_mut() = unhealthy;
        plans
    }

    /// Writes one node's status and taints; marks its pods not ready if it stopped being
    /// ready.
    async fn apply(&self, ctx: &Ctx, plan: Plan, pods: Option<&Lister>, wall: OffsetDateTime) -> Result<(), ApiError> {
        let mut node = (*plan.node).clone();
        let node_name = name(&node).to_string();
        if let Some(status) = plan.status {
            let was_ready = is_ready(&node);
            node["status"] = status;
            node = ctx.update(nodes(), Part::Status, node).await?;
            // Our own write is no heartbeat.
            if let Some(h) = self.state.borrow_mut().health.get_mut(&node_name) {
                h.ready = ready_heartbeat(&node);
            }
            tracing::info!(node = %node_name, "node stopped posting status: conditions Unknown");
            if was_ready {
                let message = format!("Node {node_name} status is now: NodeNotReady");
                ctx.event(&node, "Normal", "NodeNotReady", &message).await;
                self.state.borrow_mut().to_mark.insert(node_name.clone());
            }
        }
        if let Some(taints) = desired_taints(&node, plan.no_execute, wall) {
            if taints.is_empty() {
                if let Some(spec) = node.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.remove("taints");
                }
            } else {
                pods::set_path(&mut node, &["spec", "taints"], Value::Array(taints));
            }
            node = ctx.update(nodes(), Part::Main, node).await?;
        }
        let marking = self.state.borrow().to_mark.contains(&node_name);
        if marking && !is_ready(&node) {
            if let Some(pods) = pods {
                mark_pods_not_ready(ctx, pods, &node_name).await?;
            }
        }
        self.state.borrow_mut().to_mark.remove(&node_name);
        Ok(())
    }
}

/// Sets the Ready condition of the pods on `node` to `False` (kube's `MarkPodsNotReady`).
async fn mark_pods_not_ready(ctx: &Ctx, pods: &Lister, node: &str) -> Result<(), ApiError> {
    let on_node = pods.list_where(None, |p| str_at(p, "/spec/nodeName") == node && !terminating(p));
    let at = timestamp(now());
    let writes = on_node.iter().filter_map(|pod| {
        let mut pod = (**pod).clone();
        let conditions = pod.pointer_mut("/status/conditions").and_then(Value::as_array_mut)?;
        let ready = conditions.iter_mut().find(|c| str_at(c, "/type") == "Ready")?;
        if str_at(ready, "/status") == "False" {
            return None;
        }
        ready["status"] = json!("False");
        ready["lastTransitionTime"] = json!(at);
        Some(async move {
            match ctx.update(pods::pods(), Part::Status, pod.clone()).await {
                Ok(written) => {
                    ctx.event(&written, "Warning", "NodeNotReady", "Node is not ready").await;
                    Ok(())
                }
                Err(ApiError::NotFound(_)) => Ok(()),
                Err(e) => Err(e),
            }
        })
    });
    join_all(writes).await.into_iter().collect()
}

impl Reconciler for NodeLifecycle {
    fn name(&self) -> &'static str {
        "node-lifecycle"
    }

    fn watches(&self) -> Vec<Watched> {
        let unhealthy = self.state.borrow().unhealthy.clone();
        let lease_keys = move |lease: &Value, _: Option<&Value>| {
            let renewed_unhealthy = pods::namespace(lease) == LEASE_NAMESPACE
                && unhealthy.try_borrow().is_ok_and(|u| u.contains(name(lease)));
            if renewed_unhealthy {
                vec![monitor_key()]
            } else {
                Vec::new()
            }
        };
        vec![
            Watched::with(nodes(), |_: &Value, _: Option<&Value>| vec![monitor_key()]),
            Watched::with(leases(), lease_keys),
            Watched::with(pods::pods(), |_: &Value, _: Option<&Value>| Vec::new()),
        ]
    }

    fn reconcile(self: Rc<Self>, ctx: Ctx, _key: ObjectKey) -> LocalBoxFuture<'static, Result<Action, ApiError>> {
        Box::pin(async move {
            let Some(node_lister) = ctx.lister(nodes()).cloned() else { return Ok(Action::Done) };
            let (leases, pod_lister) = (ctx.lister(leases()).cloned(), ctx.lister(pods::pods()).cloned());
            let all = node_lister.list(None);
            if all.is_empty() {
                return Ok(Action::Done);
            }
            let wall = now();
            let plans = self.plan(&all, leases.as_ref(), Instant::now(), wall);
            let writes = plans.into_iter().map(|plan| self.apply(&ctx, plan, pod_lister.as_ref(), wall));
            let mut failure = None;
            for result in join_all(writes).await {
                match result {
                    Ok(()) | Err(ApiError::NotFound(_)) => {}
                    Err(e) => {
                        failure.get_or_insert(e);
                    }
                }
            }
            match failure {
                Some(e) => Err(e),
                None => Ok(Action::RequeueAfter(self.monitor_period)),
            }
        })
    }

    fn workers(&self) -> usize {
        1
    }
}

// ---------------------------------------------------------------------------------------
// The taint manager

/// When `pod`, on a node with `taints`, is to go: `Some(None)` at once, `Some(Some(at))` at
/// that time, `None` never (kube's `processPodOnNode`, with the taint's `timeAdded` as the
/// start of each toleration). For each `NoExecute` taint the first toleration that matches
/// counts.
pub fn eviction_time(pod: &Value, taints: &[Value], seen: OffsetDateTime) -> Option<Option<OffsetDateTime>> {
    let tolerations: Vec<(Toleration, Option<i64>)> = pod
        .pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|t| (Toleration::parse(t), t.get("tolerationSeconds").and_then(Value::as_i64)))
        .collect();
    let mut earliest: Option<OffsetDateTime> = None;
    for taint in taints.iter().filter(|t| str_at(t, "/effect") == "NoExecute") {
        let parsed = Taint::parse(taint);
        let Some((_, seconds)) = tolerations.iter().find(|(t, _)| t.tolerates(&parsed)) else {
            return Some(None);
        };
        let Some(seconds) = seconds else { continue };
        let added = parse_time(str_at(taint, "/timeAdded")).unwrap_or(seen);
        let at = added.checked_add(time::Duration::seconds((*seconds).max(0))).unwrap_or(added);
        earliest = Some(earliest.map_or(at, |e| e.min(at)));
    }
    earliest.map(Some)
}

fn no_execute_taints(node: &Value) -> Vec<Value> {
    taints_of(node).into_iter().filter(|t| str_at(t, "/effect") == "NoExecute").collect()
}

/// The taint manager; keys are pods.
#[derive(Default)]
pub struct TaintEviction {
    /// The pods informer's copy (known once the first reconcile ran), for a node's pods.
    pods: Rc<RefCell<Option<Lister>>>,
    /// Pods with an eviction planned, for the cancel event.
    planned: RefCell<HashSet<ObjectKey>>,
}

impl TaintEviction {
    async fn evict(&self, ctx: &Ctx, key: &ObjectKey, pod: &Value) -> Result<Action, ApiError> {
        let ns = key.namespace.as_deref();
        let message = format!("Marking for deletion Pod {key}");
        ctx.event(pod, "Normal", "TaintManagerEviction", &message).await;
        let mut fresh = match ctx.get(pods::pods(), ns, &key.name).await {
            Ok(p) if pods::uid(&p) == pods::uid(pod) => p,
            Ok(_) | Err(ApiError::NotFound(_)) => return Ok(Action::Done),
            Err(e) => return Err(e),
        };
        let mut status = fresh.get("status").filter(|s| s.is_object()).cloned().unwrap_or_else(|| json!({}));
        let cond = json!({
            "type": "DisruptionTarget",
            "status": "True",
            "lastTransitionTime": timestamp(now()),
            "reason": "DeletionByTaintManager",
            "message": "Taint manager: deleting due to NoExecute taint",
        });
        pods::set_condition(&mut status, cond);
        if Some(&status) != fresh.get("status") {
            fresh["status"] = status;
            match ctx.update(pods::pods(), Part::Status, fresh).await {
                Ok(_) => {}
                Err(ApiError::NotFound(_)) => return Ok(Action::Done),
                Err(e) => return Err(e),
            }
        }
        let options = DeleteOptions { uid: Some(pods::uid(pod).to_string()), ..DeleteOptions::default() };
        match ctx.delete(pods::pods(), (ns, &key.name), options).await {
            Ok(_) | Err(ApiError::NotFound(_)) | Err(ApiError::Unfulfilled { .. }) => {}
            Err(e) => return Err(e),
        }
        self.planned.borrow_mut().remove(key);
        Ok(Action::Done)
    }
}

impl Reconciler for TaintEviction {
    fn name(&self) -> &'static str {
        "taint-eviction"
    }

    fn watches(&self) -> Vec<Watched> {
        let pods = self.pods.clone();
        let node_keys = move |node: &Value, old: Option<&Value>| -> Vec<ObjectKey> {
            let taints = no_execute_taints(node);
            if old.is_some_and(|o| no_execute_taints(o) == taints) {
                return Vec::new();
            }
            let Ok(pods) = pods.try_borrow() else { return Vec::new() };
            let Some(lister) = pods.as_ref() else { return Vec::new() };
            let node_name = name(node);
            lister
                .list_where(None, |p| str_at(p, "/spec/nodeName") == node_name)
                .iter()
                .filter_map(|p| ObjectKey::of(p))
                .collect()
        };
        let pod_keys = |pod: &Value, _: Option<&Value>| -> Vec<ObjectKey> {
            if str_at(pod, "/spec/nodeName").is_empty() {
                return Vec::new();
            }
            ObjectKey::of(pod).into_iter().collect()
        };
        vec![Watched::with(pods::pods(), pod_keys), Watched::with(nodes(), node_keys)]
    }

    fn reconcile(self: Rc<Self>, ctx: Ctx, key: ObjectKey) -> LocalBoxFuture<'static, Result<Action, ApiError>> {
        Box::pin(async move {
            let (Some(pod_lister), Some(node_lister)) =
                (ctx.lister(pods::pods()).cloned(), ctx.lister(nodes()).cloned())
            else {
                return Ok(Action::Done);
            };
            if self.pods.borrow().is_none() {
                *self.pods.borrow_mut() = Some(pod_lister.clone());
            }
            let pod = pod_lister.get(&key);
            let node = pod.as_ref().and_then(|p| node_lister.get(&ObjectKey::new(None, str_at(p, "/spec/nodeName"))));
            let (Some(pod), Some(node)) = (pod, node) else {
                self.planned.borrow_mut().remove(&key);
                return Ok(Action::Done);
            };
            let at = now();
            let when = if terminating(&pod) { None } else { eviction_time(&pod, &no_execute_taints(&node), at) };
            match when {
                None => {
                    if self.planned.borrow_mut().remove(&key) {
                        let message = format!("Cancelling deletion of Pod {key}");
                        ctx.event(&pod, "Normal", "TaintManagerEviction", &message).await;
                    }
                    Ok(Action::Done)
                }
                Some(Some(later)) if later > at => {
                    self.planned.borrow_mut().insert(key);
                    let wait = (later - at).whole_milliseconds().clamp(0, i64::MAX as i128) as u64;
                    Ok(Action::RequeueAfter(Duration::from_millis(wait + 10)))
                }
                Some(_) => self.evict(&ctx, &key, &pod).await,
            }
        })
    }

    fn workers(&self) -> usize {
        8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(conditions: Value, taints: Value) -> Value {
        json!({"metadata": {"name": "n", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"taints": taints}, "status": {"conditions": conditions}})
    }

    fn at(ts: &str) -> OffsetDateTime {
        parse_time(ts).unwrap()
    }

    #[test]
    fn conditions_become_unknown_and_missing_ones_never_updated() {
        let n =
            node(json!([{"type": "Ready", "status": "True", "lastHeartbeatTime": "2024-01-01T00:00:01Z"}]), json!([]));
        let status = unknown_status(&n, at("2024-01-01T00:01:00Z")).unwrap();
        let ready = pods::condition(&status, "Ready").unwrap();
        assert_eq!(
            (ready["status"].as_str(), ready["reason"].as_str(), ready["message"].as_str()),
            (Some("Unknown"), Some("NodeStatusUnknown"), Some("Kubelet stopped posting node status."))
        );
        assert_eq!(ready["lastHeartbeatTime"], "2024-01-01T00:00:01Z");
        assert_eq!(ready["lastTransitionTime"], "2024-01-01T00:01:00Z");
        let disk = pods::condition(&status, "DiskPressure").unwrap();
        assert_eq!(
            (disk["status"].as_str(), disk["reason"].as_str()),
            (Some("Unknown"), Some("NodeStatusNeverUpdated"))
        );
        let mut again = n.clone();
        again["status"] = status;
        assert!(unknown_status(&again, at("2024-01-01T00:02:00Z")).is_none(), "already Unknown");
    }

    #[test]
    fn taints_follow_the_conditions_and_leave_others_alone() {
        let t0 = at("2024-01-01T00:00:00Z");
        let user = json!({"key": "dedicated", "value": "x", "effect": "NoSchedule"});
        let unknown = node(json!([{"type": "Ready", "status": "Unknown"}]), json!([user]));
        let taints = desired_taints(&unknown, NoExecute::Want(UNREACHABLE), t0).unwrap();
        let keys: Vec<(&str, &str)> =
            taints.iter().map(|t| (t["key"].as_str().unwrap(), t["effect"].as_str().unwrap())).collect();
        assert_eq!(keys, [("dedicated", "NoSchedule"), (UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")]);
        assert_eq!(taints[2]["timeAdded"], "2024-01-01T00:00:00Z");

        let mut tainted = unknown.clone();
        tainted["spec"]["taints"] = json!(taints);
        assert!(desired_taints(&tainted, NoExecute::Want(UNREACHABLE), t0).is_none(), "nothing to change");
        assert!(desired_taints(&tainted, NoExecute::Keep, t0).is_none());

        // Not ready now: the taints swap.
        tainted["status"]["conditions"] = json!([{"type": "Ready", "status": "False"}]);
        let swapped = desired_taints(&tainted, NoExecute::Want(NOT_READY), t0).unwrap();
        assert!(swapped.iter().all(|t| t["key"] != UNREACHABLE));
        assert!(swapped.iter().any(|t| taint_is(t, NOT_READY, "NoExecute")));

        // Ready again and cordoned: only the user's taint and unschedulable stay.
        tainted["status"]["conditions"] =
            json!([{"type": "Ready", "status": "True"}, {"type": "DiskPressure", "status": "True"}]);
        tainted["spec"]["unschedulable"] = json!(true);
        let healed = desired_taints(&tainted, NoExecute::Remove, t0).unwrap();
        let keys: Vec<&str> = healed.iter().map(|t| t["key"].as_str().unwrap()).collect();
        assert_eq!(keys, ["dedicated", DISK_PRESSURE, UNSCHEDULABLE]);
    }

    #[test]
    fn zones_are_disrupted_when_none_or_most_nodes_are_ready() {
        assert_eq!(zone_state(0, 1, 0.55), ZoneState::Full);
        assert_eq!(zone_state(1, 1, 0.55), ZoneState::Normal);
        assert_eq!(zone_state(2, 2, 0.55), ZoneState::Normal, "2 not ready are never partial");
        assert_eq!(zone_state(2, 3, 0.55), ZoneState::Partial);
        assert_eq!(zone_state(0, 0, 0.55), ZoneState::Normal);
    }

    #[test]
    fn a_lapsed_heartbeat_makes_the_node_unknown_unless_every_node_is_down() {
        let lifecycle = NodeLifecycle::with_grace(Duration::from_secs(10));
        let ready = |name: &str| {
            Arc::new(json!({"metadata": {"name": name, "uid": name},
                "status": {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "t0"}]}}))
        };
        let (a, b) = (ready("a"), ready("b"));
        assert!(lifecycle.plan(&[], None, Instant::now(), now()).is_empty());
        let t0 = Instant::now();
        let wall = now();
        let plans = lifecycle.plan(&[a.clone(), b.clone()], None, t0, wall);
        assert!(plans.iter().all(|p| p.status.is_none() && p.no_execute == NoExecute::Remove));
        // a posts again; b does not.
        let mut a2 = (*a).clone();
        a2["status"]["conditions"][0]["lastHeartbeatTime"] = json!("t1");
        let t1 = t0 + Duration::from_secs(8);
        lifecycle.plan(&[Arc::new(a2.clone()), b.clone()], None, t1, wall);
        let t2 = t0 + Duration::from_secs(11);
        let a2 = Arc::new(a2);
        let plans = lifecycle.plan(&[a2.clone(), b.clone()], None, t2, wall);
        assert!(plans[0].status.is_none());
        assert!(plans[1].status.is_some(), "b is Unknown");
        assert_eq!(plans[1].no_execute, NoExecute::Want(UNREACHABLE));
        assert!(lifecycle.state.borrow().unhealthy.borrow().contains("b"));
        // Both silent: full disruption, no NoExecute taints anywhere.
        let plans = lifecycle.plan(&[a2, b], None, t0 + Duration::from_secs(30), wall);
        assert!(plans.iter().all(|p| p.status.is_some() && p.no_execute == NoExecute::Remove));
    }

    #[test]
    fn pods_go_at_once_after_their_toleration_or_never() {
        let taints = [json!({"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": "2024-01-01T00:00:00Z"})];
        let pod = |tolerations: Value| json!({"spec": {"tolerations": tolerations}});
        let seen = at("2024-01-01T00:00:05Z");
        assert_eq!(eviction_time(&pod(json!([])), &taints, seen), Some(None));
        let two =
            pod(json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2}]));
        assert_eq!(eviction_time(&two, &taints, seen), Some(Some(at("2024-01-01T00:00:02Z"))));
        let forever = pod(json!([{"operator": "Exists"}]));
        assert_eq!(eviction_time(&forever, &taints, seen), None);
        let other = pod(json!([{"key": "x", "operator": "Exists"}]));
        assert_eq!(eviction_time(&other, &taints, seen), Some(None));
        assert_eq!(eviction_time(&pod(json!([])), &[json!({"key": "k", "effect": "NoSchedule"})], seen), None);
    }
}

//! The scheduler's state and its decisions, without awaiting anything: the cache, the
//! active queue (pods ready for an attempt, in priority order), the unschedulable pods and
//! their backoff. [`State::step`] takes in what a reconcile's key says about its pod, then
//! pops the first pod of the active queue and decides where it goes ([`Decision`]); the
//! writes that follow are the reconcile's ([`super::Scheduler`]).

use std::collections::HashSet;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::active::ActiveQueue;
use super::cache::{Cache, PodState};
use super::config::SchedulerConfig;
use super::extender::{Extended, Extender, ExtenderError};
use super::filters::{node_filters, Code, Rejection};
use super::node_info::NodeObj;
use super::pod_info::{is_terminal, node_name, PodInfo};
use super::preemption::{self, Candidate, PostFilter};
use super::priority;
use super::queue::{fingerprint, Attempt, Touched, Unschedulable};
use super::schedule_one::{feasible, schedule, score_nodes, select_host, Rng, Unfit};
use crate::controller::{Lister, ObjectKey};

/// How often the cache is checked against the informers' copies (what a relist after a
/// leadership change does not report as gone).
const SWEEP_EVERY: Duration = Duration::from_secs(30);

fn meta<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.pointer(&format!("/metadata/{field}")).and_then(Value::as_str).unwrap_or("")
}

fn deleting(pod: &Value) -> bool {
    pod.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null())
}

fn gated(pod: &Value) -> bool {
    pod.pointer("/spec/schedulingGates").and_then(Value::as_array).is_some_and(|g| !g.is_empty())
}

/// A pod whose extenders are to be asked before its node is chosen.
#[derive(Debug)]
pub struct Extending {
    pub pod: Arc<Value>,
    pub info: PodInfo,
    pub profile: &'static str,
    /// The feasible nodes with the scheduler's own scores, and their Node objects.
    pub scored: Vec<(String, i64)>,
    pub nodes: Vec<Arc<Value>>,
    /// The nodes the filters rejected.
    pub unfit: Unfit,
}

/// What to write for one pod.
#[derive(Debug)]
pub enum Decision {
    /// Bind the pod (assumed onto the node in the cache).
    Bind { pod: Arc<Value>, node: String, profile: &'static str },
    /// Ask the extenders, then decide ([`State::extended`]).
    Extend(Box<Extending>),
    /// Mark it unschedulable (`PodScheduled` False), with a `FailedScheduling` event when
    /// `after` is set (then look again after that long); evict `preempt`'s victims first.
    Unschedulable {
        pod: Arc<Value>,
        profile: &'static str,
        reason: &'static str,
        message: String,
        after: Option<Duration>,
        preempt: Option<Candidate>,
    },
}

/// What one reconcile does: at most one decision, and when to look at its key again.
#[derive(Debug, Default)]
pub struct Plan {
    pub decision: Option<Decision>,
    pub requeue: Option<Duration>,
}

/// Everything the scheduler keeps between reconciles.
pub struct State {
    pub cache: Cache,
    pub pending: Unschedulable,
    pub active: ActiveQueue,
    /// Nodes whose events arrived since the cache last read them.
    pub dirty_nodes: HashSet<String>,
    /// The informers' copies, once a reconcile has seen them (key functions use them).
    pub pods: Option<Lister>,
    pub classes: Option<Lister>,
    /// Pods whose extenders are being asked (not to be decided twice meanwhile).
    pub extending: HashSet<ObjectKey>,
    pub rng: Rng,
    pub last_sweep: Instant,
    pub config: Arc<SchedulerConfig>,
    pub extenders: Rc<Vec<Extender>>,
}

impl State {
    pub fn new(config: Arc<SchedulerConfig>, seed: u64) -> State {
        let extenders = config
            .extenders
            .iter()
            .filter_map(|c| {
                Extender::new(c.clone()).map_err(|e| tracing::error!(error = %e, "scheduler extender left out")).ok()
            })
            .collect();
        State {
            cache: Cache::default(),
            pending: Unschedulable::default(),
            active: ActiveQueue::default(),
            dirty_nodes: HashSet::new(),
            pods: None,
            classes: None,
            extending: HashSet::new(),
            rng: Rng::new(seed),
            last_sweep: Instant::now(),
            config,
            extenders: Rc::new(extenders),
        }
    }

    /// The profile serving `pod` (by its `schedulerName`), if this scheduler serves it.
    pub fn profile_of(&self, pod: &Value) -> Option<&'static str> {
        self.config.profile(pod.pointer("/spec/schedulerName").and_then(Value::as_str))
    }

    /// The pod as the scheduler reads it, with its priority resolved from its class.
    pub fn parse(&self, pod: &Value) -> Option<PodInfo> {
        let mut info = PodInfo::parse(pod)?;
        let resolved = priority::resolve(pod, self.classes.as_ref());
        info.priority = resolved.value;
        info.preempt_never = resolved.preempt_never;
        Some(info)
    }

    /// Queues a pod an event showed, if it waits for a node, is this scheduler's and is not
    /// waiting out a backoff (those go back through their own reconcile).
    pub fn enqueue(&mut self, key: &ObjectKey, pod: &Value) {
        let gone = self.pods.as_ref().is_some_and(|l| l.get(key).is_none());
        if gone || node_name(pod).is_some() || deleting(pod) || gated(pod) || self.profile_of(pod).is_none() {
            self.active.remove(key);
            return;
        }
        if self.pending.contains(key) || self.extending.contains(key) || self.in_flight(key, meta(pod, "uid")) {
            return;
        }
        self.push(key, pod);
    }

    /// Sorts the queue again now that PriorityClasses are known (pods queued before the
    /// first reconcile were queued by their own `spec.priority` only).
    pub fn reorder(&mut self, pods: &Lister) {
        for key in self.active.keys() {
            if let Some(pod) = pods.get(&key) {
                self.push(&key, &pod);
            }
        }
    }

    fn push(&mut self, key: &ObjectKey, pod: &Value) {
        let priority = priority::resolve(pod, self.classes.as_ref()).value;
        self.active.push(key, priority, meta(pod, "creationTimestamp"));
    }

    /// Whether this scheduler is binding (or has bound) this very pod.
    fn in_flight(&self, key: &ObjectKey, uid: &str) -> bool {
        self.cache.pod(key).is_some_and(|c| c.info.uid == uid && matches!(c.state, PodState::Binding | PodState::Bound))
    }

    /// Reads the nodes whose events arrived since the last reconcile.
    pub fn sync_nodes(&mut self, nodes: &Lister) {
        for name in std::mem::take(&mut self.dirty_nodes) {
            match nodes.get(&ObjectKey::new(None, &name)) {
                Some(node) => {
                    self.cache.set_node(&name, NodeObj::parse(&node));
                }
                None => self.cache.remove_node(&name),
            }
        }
    }

    /// Drops what the informers no longer have: nodes, and pods gone, finished or bound
    /// elsewhere (bindings of this scheduler not yet seen are kept).
    pub fn sweep(&mut self, pods: &Lister, nodes: &Lister, now: Instant) {
        if now.duration_since(self.last_sweep) < SWEEP_EVERY || !pods.has_synced() || !nodes.has_synced() {
            return;
        }
        self.last_sweep = now;
        for name in self.cache.node_names() {
            if nodes.get(&ObjectKey::new(None, &name)).is_none() {
                self.cache.remove_node(&name);
            }
        }
        for node in nodes.list(None) {
            let name = meta(&node, "name");
            if self.cache.node(name).is_none_or(|n| n.node.is_none()) {
                self.dirty_nodes.insert(name.to_string());
            }
        }
        let stale: Vec<ObjectKey> = self
            .cache
            .pods()
            .filter(|(key, cached)| match pods.get(key) {
                None => cached.state != PodState::Binding,
                Some(pod) => {
                    cached.state == PodState::Observed
                        && (meta(&pod, "uid") != cached.info.uid
                            || node_name(&pod) != Some(cached.node.as_str())
                            || is_terminal(&pod))
                }
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in stale {
            self.cache.remove_pod(&key);
        }
        for key in self.pending.keys() {
            if pods.get(&key).is_none() {
                self.pending.forget(&key);
            }
        }
        metrics::gauge!("flotilla_scheduler_pending_pods").set(self.pending.len() as f64);
    }

    /// Takes in what the pod at `key` (`None`: gone) now is; queues it if it is to be tried
    /// (a pending pod goes when its backoff allows). Returns the `SchedulingGated`
    /// decision for a gated pod.
    pub fn take_in(&mut self, key: &ObjectKey, pod: Option<Arc<Value>>) -> Plan {
        let Some(pod) = pod else {
            self.cache.remove_pod(key);
            self.pending.forget(key);
            self.active.remove(key);
            return Plan::default();
        };
        let uid = meta(&pod, "uid");
        if let Some(node) = node_name(&pod) {
            self.pending.forget(key);
            self.active.remove(key);
            if is_terminal(&pod) {
                self.cache.remove_pod(key);
            } else if let Some(info) = self.parse(&pod) {
                self.cache.add_pod(Rc::new(info), node, PodState::Observed);
            }
            return Plan::default();
        }
        if let Some(cached) = self.cache.pod(key) {
            if cached.info.uid == uid && matches!(cached.state, PodState::Binding | PodState::Bound) {
                // Bound (or being bound) by this scheduler; the informer is behind.
                return Plan::default();
            }
            if cached.info.uid != uid || cached.state == PodState::Observed {
                self.cache.remove_pod(key);
            }
        }
        let Some(profile) = self.profile_of(&pod).filter(|_| !deleting(&pod)) else {
            self.forget(key);
            return Plan::default();
        };
        if gated(&pod) {
            self.forget(key);
            let message = "Scheduling is blocked due to non-empty scheduling gates".to_string();
            let decision = Decision::Unschedulable {
                pod,
                profile,
                reason: "SchedulingGated",
                message,
                after: None,
                preempt: None,
            };
            return Plan { decision: Some(decision), requeue: None };
        }
        if self.extending.contains(key) {
            return Plan::default();
        }
        if self.pending.touch(key, uid, fingerprint(&pod)) == Touched::New {
            self.push(key, &pod);
        }
        Plan::default()
    }

    /// Forgets a pod that is not (or no longer) to be scheduled, its reservation with it.
    fn forget(&mut self, key: &ObjectKey) {
        self.pending.forget(key);
        self.active.remove(key);
        if self.cache.pod(key).is_some_and(|c| c.state == PodState::Nominated) {
            self.cache.remove_pod(key);
        }
    }

    /// One reconcile's decision: the pod at `key` taken in, then the first pod of the
    /// active queue decided. Asks to run again at once while the queue is not empty.
    pub fn step(&mut self, key: &ObjectKey, pods: &Lister, nodes: &Lister, now: Instant) -> Plan {
        self.sync_nodes(nodes);
        self.sweep(pods, nodes, now);
        let mut plan = Plan::default();
        if key.namespace.is_some() {
            plan = self.take_in(key, pods.get(key));
        }
        let (ready, next_backoff) = self.pending.take_ready(self.cache.generation, now);
        for key in ready {
            if let Some(pod) = pods.get(&key) {
                self.push(&key, &pod);
            }
        }
        if let Some(at) = next_backoff {
            plan.requeue = Some(at.saturating_duration_since(now));
        }
        if plan.decision.is_none() {
            plan.decision = self.next(pods, nodes, now);
        }
        if !self.active.is_empty() {
            plan.requeue = Some(Duration::ZERO);
        }
        plan
    }

    /// Pops the active queue until a pod still waiting for this scheduler; decides it.
    fn next(&mut self, pods: &Lister, nodes: &Lister, now: Instant) -> Option<Decision> {
        while let Some(key) = self.active.pop() {
            let Some(pod) = pods.get(&key) else { continue };
            if node_name(&pod).is_some() || deleting(&pod) || gated(&pod) || self.extending.contains(&key) {
                continue;
            }
            let Some(profile) = self.profile_of(&pod) else { continue };
            if self.in_flight(&key, meta(&pod, "uid")) {
                continue;
            }
            let Some(info) = self.parse(&pod) else { continue };
            return Some(self.decide(pod, info, profile, nodes, now));
        }
        None
    }

    /// Where `pod` goes: bound (assumed in the cache), handed to the extenders, or
    /// unschedulable (with preemption tried).
    fn decide(
        &mut self,
        pod: Arc<Value>,
        info: PodInfo,
        profile: &'static str,
        nodes: &Lister,
        now: Instant,
    ) -> Decision {
        let key = info.key.clone();
        // Its own reservation does not count against it.
        if self.cache.pod(&key).is_some_and(|c| c.state == PodState::Nominated) {
            self.cache.remove_pod(&key);
        }
        let extended = self.extenders.iter().any(|e| (e.filters() || e.prioritizes()) && e.interested(&pod));
        if extended {
            let (feasible, unfit) = feasible(&mut self.cache, &info, true);
            if feasible.is_empty() {
                return self.unschedulable(pod, info, profile, unfit, now);
            }
            let scored = score_nodes(&self.cache, &info, &feasible);
            let objects = scored.iter().filter_map(|(n, _)| nodes.get(&ObjectKey::new(None, n))).collect();
            self.extending.insert(key);
            return Decision::Extend(Box::new(Extending { pod, info, profile, scored, nodes: objects, unfit }));
        }
        match schedule(&mut self.cache, &info, &mut self.rng) {
            Ok(node) => {
                self.pending.forget(&key);
                self.cache.add_pod(Rc::new(info), &node, PodState::Binding);
                Decision::Bind { pod, node, profile }
            }
            Err(unfit) => self.unschedulable(pod, info, profile, unfit, now),
        }
    }

    /// A pod that fits nowhere: preemption, then the unschedulable queue.
    fn unschedulable(
        &mut self,
        pod: Arc<Value>,
        info: PodInfo,
        profile: &'static str,
        unfit: Unfit,
        now: Instant,
    ) -> Decision {
        let nominated = pod.pointer("/status/nominatedNodeName").and_then(Value::as_str).filter(|n| !n.is_empty());
        let outcome = preemption::preempt(&self.cache, &info, nominated, &unfit);
        let message = outcome.message(&unfit);
        let key = info.key.clone();
        let attempt = Attempt {
            uid: &info.uid,
            generation: self.cache.generation,
            fingerprint: fingerprint(&pod),
            priority: info.priority,
            created: meta(&pod, "creationTimestamp"),
        };
        let after = self.pending.failed(&key, attempt, now);
        metrics::counter!("flotilla_scheduler_attempts_total", "result" => "unschedulable").increment(1);
        let preempt = match outcome {
            PostFilter::Preempt(candidate) => {
                // Held on the node being freed, against pods of lower priority.
                self.cache.add_pod(Rc::new(info), &candidate.node, PodState::Nominated);
                metrics::counter!("flotilla_scheduler_preemption_attempts_total").increment(1);
                Some(candidate)
            }
            PostFilter::Failed(_) => None,
        };
        Decision::Unschedulable { pod, profile, reason: "Unschedulable", message, after: Some(after), preempt }
    }

    /// Decides a pod after its extenders answered: the best node left (the scheduler's
    /// score plus the extenders'), if it still fits; or why none is left.
    pub fn extended(
        &mut self,
        e: Extending,
        answer: Result<Extended, ExtenderError>,
        now: Instant,
    ) -> Option<Decision> {
        let key = e.info.key.clone();
        self.extending.remove(&key);
        let uid = e.info.uid.clone();
        if self
            .pods
            .as_ref()
            .is_some_and(|l| l.get(&key).is_none_or(|p| meta(&p, "uid") != uid || node_name(&p).is_some()))
        {
            return None;
        }
        let extended = match answer {
            Ok(extended) => extended,
            Err(error) => {
                let attempt = Attempt {
                    uid: &uid,
                    generation: self.cache.generation,
                    fingerprint: fingerprint(&e.pod),
                    priority: e.info.priority,
                    created: meta(&e.pod, "creationTimestamp"),
                };
                let after = self.pending.failed(&key, attempt, now);
                let message = error.to_string();
                let (pod, profile) = (e.pod, e.profile);
                return Some(Decision::Unschedulable {
                    pod,
                    profile,
                    reason: "SchedulerError",
                    message,
                    after: Some(after),
                    preempt: None,
                });
            }
        };
        let left: Vec<(String, i64)> = e
            .scored
            .iter()
            .filter(|(n, _)| extended.nodes.contains(n))
            .map(|(n, s)| (n.clone(), s.saturating_add(extended.scores.get(n).copied().unwrap_or(0))))
            .collect();
        if left.is_empty() {
            let mut unfit = e.unfit;
            for (node, reason, resolvable) in extended.failed {
                let code = if resolvable { Code::Unschedulable } else { Code::Unresolvable };
                unfit.rejected.push((node, Rejection::new(code, reason)));
            }
            // Feasible nodes the extenders dropped without a reason still count as failed.
            let named: HashSet<String> = unfit.rejected.iter().map(|(n, _)| n.clone()).collect();
            for (node, _) in e.scored.iter().filter(|(n, _)| !named.contains(n)) {
                unfit.rejected.push((
                    node.clone(),
                    Rejection::new(Code::Unschedulable, "node(s) were filtered out by an extender"),
                ));
            }
            return Some(self.unschedulable(e.pod, e.info, e.profile, unfit, now));
        }
        let scores: Vec<i64> = left.iter().map(|(_, s)| *s).collect();
        let node = select_host(&scores, &mut self.rng).and_then(|i| left.get(i)).map(|(n, _)| n.clone())?;
        // Other decisions were made meanwhile: the node must still have room.
        let fits = self
            .cache
            .node(&node)
            .and_then(|ni| Some(node_filters(&e.info, ni, ni.node.as_ref()?).is_none()))
            .unwrap_or(false);
        if !fits {
            self.push(&key, &e.pod);
            return None;
        }
        self.pending.forget(&key);
        self.cache.add_pod(Rc::new(e.info), &node, PodState::Binding);
        Some(Decision::Bind { pod: e.pod, node, profile: e.profile })
    }

    /// Forgets an assumption whose binding failed; the pod goes back to the queue unless
    /// it is gone or bound (`retry`).
    pub fn forget_binding(&mut self, key: &ObjectKey, pod: &Value, retry: bool) {
        let uid = meta(pod, "uid");
        if self.cache.pod(key).is_some_and(|c| c.info.uid == uid && c.state == PodState::Binding) {
            self.cache.remove_pod(key);
        }
        if retry {
            self.push(key, pod);
        }
    }

    /// The pending pods to try again, by priority (and the cluster marked changed), for a
    /// key function.
    pub fn wake(&mut self) -> Vec<ObjectKey> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        self.cache.generation += 1;
        self.pending.wake();
        self.pending.keys()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn lister(resource: &str, objects: &[Value]) -> Lister {
        let group = if resource == "priorityclasses" { "scheduling.k8s.io" } else { "" };
        let lister = Lister::new(crate::kinds::find(group, "v1", resource).unwrap());
        lister.replace(objects.to_vec());
        lister
    }

    fn pod(name: &str, created: &str, spec: Value) -> Value {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "c", "resources": {"requests": {"cpu": "3"}}}]);
        json!({"metadata": {"namespace": "d", "name": name, "uid": name, "creationTimestamp": created}, "spec": spec})
    }

    fn decided(plan: &Plan) -> Option<&str> {
        match plan.decision.as_ref()? {
            Decision::Bind { pod, .. } | Decision::Unschedulable { pod, .. } => pod["metadata"]["name"].as_str(),
            Decision::Extend(e) => e.pod["metadata"]["name"].as_str(),
        }
    }

    #[test]
    fn the_highest_priority_pod_is_decided_first_whichever_key_comes() {
        let mut state = State::new(Arc::new(SchedulerConfig::default()), 1);
        let classes = lister("priorityclasses", &[json!({"metadata": {"name": "high"}, "value": 1000})]);
        state.classes = Some(classes);
        let pods = [
            pod("low-old", "2026-01-01T00:00:00Z", json!({})),
            pod("low-new", "2026-01-01T00:00:05Z", json!({})),
            pod("high", "2026-01-01T00:00:09Z", json!({"priorityClassName": "high"})),
        ];
        let pods_lister = lister("pods", &pods);
        let node = json!({"metadata": {"name": "n1"}, "status": {"allocatable": {"cpu": "4", "pods": "110"}}});
        let nodes = lister("nodes", &[node]);
        state.dirty_nodes.insert("n1".into());
        for p in &pods {
            state.enqueue(&ObjectKey::of(p).unwrap(), p);
        }
        let now = Instant::now();
        // The oldest pod's key comes first; the highest priority pod is the one decided.
        let first = state.step(&ObjectKey::new(Some("d"), "low-old"), &pods_lister, &nodes, now);
        assert_eq!(decided(&first), Some("high"));
        assert!(matches!(first.decision, Some(Decision::Bind { .. })));
        assert_eq!(first.requeue, Some(Duration::ZERO), "more pods wait");
        // Then the older of the two: it does not fit (3 of 4 cpu are taken) ...
        let second = state.step(&ObjectKey::new(Some("d"), "high"), &pods_lister, &nodes, now);
        assert_eq!(decided(&second), Some("low-old"));
        let Some(Decision::Unschedulable { message, preempt, .. }) = second.decision else { panic!("bound") };
        assert!(preempt.is_none(), "a pod of higher priority is no victim");
        assert!(message.starts_with("0/1 nodes are available: 1 Insufficient cpu."), "{message}");
        let third = state.step(&ObjectKey::new(Some("d"), "low-new"), &pods_lister, &nodes, now);
        assert_eq!(decided(&third), Some("low-new"));
        assert_eq!(third.requeue, None);
    }
}

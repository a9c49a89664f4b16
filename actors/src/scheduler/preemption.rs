//! kube's DefaultPreemption (PostFilter), simplified: for a pod that fits no node, find
//! the nodes where evicting pods of lower priority makes it fit (a dry run per node: all
//! of them out, then each put back, most important first, while the pod still fits), and
//! pick the one whose victims matter least (lowest highest priority, then lowest sum, then
//! fewest). Pod disruption budgets and inter-pod affinity to victims are not weighed.
//!
//! The writes (victims deleted with their grace period, `Preempted` events, the
//! preemptor's `status.nominatedNodeName`) are the scheduler's ([`super::binding`]).

use std::collections::HashMap;
use std::rc::Rc;

use super::cache::{Cache, PodState};
use super::filters::{node_filters, Code, Rejection};
use super::inter_pod::CycleState;
use super::pod_info::PodInfo;
use super::schedule_one::{histogram, Unfit, NOT_ELIGIBLE_NEVER, NOT_HELPFUL, NO_VICTIMS};

/// kube's `minCandidateNodesAbsolute`: at least this many candidates are looked for.
const MIN_CANDIDATES: usize = 100;
/// kube's `minCandidateNodesPercentage`.
const MIN_CANDIDATES_PERCENTAGE: usize = 10;

/// PodEligibleToPreemptOthers' words for a pod whose nominated node is still freeing up.
pub const NOT_ELIGIBLE_TERMINATING: &str = "not eligible due to a terminating pod on the nominated node.";

/// A node where preemption makes room, and the pods to evict there.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub node: String,
    pub victims: Vec<Rc<PodInfo>>,
}

impl Candidate {
    fn rank(&self) -> (i64, i128, usize) {
        let highest = self.victims.iter().map(|v| v.priority).max().unwrap_or(i64::MIN);
        // kube adds MaxInt32 + 1 to each priority so that negative ones still add up.
        let sum = self.victims.iter().map(|v| i128::from(v.priority) + i128::from(i32::MAX) + 1).sum();
        (highest, sum, self.victims.len())
    }
}

/// What preemption decided.
#[derive(Debug, Clone)]
pub enum PostFilter {
    /// Evict `victims` on `node`; the pod waits for the room.
    Preempt(Candidate),
    /// Nothing to do: the `preemption: ...` part of the pod's FitError message.
    Failed(String),
}

impl PostFilter {
    /// The pod's `FitError` message: the filters' reasons, then preemption's if it failed.
    pub fn message(&self, unfit: &Unfit) -> String {
        match self {
            PostFilter::Preempt(_) => unfit.reasons(),
            PostFilter::Failed(why) => format!("{} preemption: {why}", unfit.reasons()),
        }
    }
}

/// Runs preemption for `pod`, which `unfit` says fits nowhere; `nominated` is its
/// `status.nominatedNodeName` (if any).
pub fn preempt(cache: &Cache, pod: &PodInfo, nominated: Option<&str>, unfit: &Unfit) -> PostFilter {
    if unfit.all == 0 {
        return PostFilter::Failed(super::schedule_one::NO_NODES.into());
    }
    if pod.preempt_never {
        return PostFilter::Failed(NOT_ELIGIBLE_NEVER.into());
    }
    // Lower-priority pods, by node (reservations of other preemptors are not victims).
    let mut lower: HashMap<&str, Vec<Rc<PodInfo>>> = HashMap::new();
    for (_, cached) in cache.pods() {
        if cached.info.priority < pod.priority && cached.info.key != pod.key {
            lower.entry(cached.node.as_str()).or_default().push(cached.info.clone());
        }
    }
    if let Some(node) = nominated {
        let helpful = unfit.rejected.iter().any(|(n, r)| n == node && r.code == Code::Unschedulable);
        let terminating = lower.get(node).is_some_and(|pods| pods.iter().any(|p| p.deleting));
        if helpful && terminating {
            return PostFilter::Failed(NOT_ELIGIBLE_TERMINATING.into());
        }
    }
    let reserved: HashMap<&str, Vec<Rc<PodInfo>>> = {
        let mut reserved: HashMap<&str, Vec<Rc<PodInfo>>> = HashMap::new();
        for (_, cached) in cache.pods() {
            if cached.state == PodState::Nominated && cached.info.priority < pod.priority {
                reserved.entry(cached.node.as_str()).or_default().push(cached.info.clone());
            }
        }
        reserved
    };
    let cycle = CycleState::new(cache, pod);
    let helpful = unfit.rejected.iter().filter(|(_, r)| r.code == Code::Unschedulable).count();
    let wanted = (helpful * MIN_CANDIDATES_PERCENTAGE / 100).max(MIN_CANDIDATES);
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut statuses: Vec<Vec<String>> = Vec::new();
    for (name, rejection) in &unfit.rejected {
        if rejection.code == Code::Unresolvable || candidates.len() >= wanted {
            statuses.push(vec![NOT_HELPFUL.into()]);
            continue;
        }
        let empty = Vec::new();
        let victims = lower.get(name.as_str()).unwrap_or(&empty);
        let victims: Vec<Rc<PodInfo>> = victims
            .iter()
            .filter(|v| !reserved.get(name.as_str()).is_some_and(|r| r.iter().any(|p| p.key == v.key)))
            .cloned()
            .collect();
        match dry_run(cache, pod, &cycle, name, victims, reserved.get(name.as_str()).map(Vec::as_slice)) {
            Ok(candidate) => candidates.push(candidate),
            Err(reasons) => statuses.push(reasons),
        }
    }
    match candidates.into_iter().min_by_key(Candidate::rank) {
        Some(best) => PostFilter::Preempt(best),
        None => {
            let reasons = histogram(statuses.iter().flat_map(|r| r.iter().map(String::as_str)));
            PostFilter::Failed(format!("0/{} nodes are available: {reasons}.", unfit.all))
        }
    }
}

/// kube's SelectVictimsOnNode: the fewest of `victims` (pods of lower priority on `name`)
/// whose eviction makes `pod` fit there; or the node's reasons why it cannot.
fn dry_run(
    cache: &Cache,
    pod: &PodInfo,
    cycle: &CycleState,
    name: &str,
    mut victims: Vec<Rc<PodInfo>>,
    reserved: Option<&[Rc<PodInfo>]>,
) -> Result<Candidate, Vec<String>> {
    let (Some(info), true) = (cache.node(name), !victims.is_empty()) else { return Err(vec![NO_VICTIMS.into()]) };
    let Some(node) = info.node.as_ref() else { return Err(vec![NOT_HELPFUL.into()]) };
    let mut trial = info.clone();
    for p in victims.iter().chain(reserved.into_iter().flatten()) {
        trial.usage.remove(p);
    }
    let fits = |trial: &super::node_info::NodeInfo| -> Option<Rejection> {
        node_filters(pod, trial, node).or_else(|| cycle.filter(pod, node))
    };
    if let Some(rejection) = fits(&trial) {
        return Err(rejection.reasons);
    }
    // Most important first: each put back if the pod still fits without evicting it.
    victims.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.key.cmp(&b.key)));
    let mut evicted = Vec::new();
    for victim in victims {
        trial.usage.add(&victim);
        if fits(&trial).is_some() {
            trial.usage.remove(&victim);
            evicted.push(victim);
        }
    }
    if evicted.is_empty() {
        return Err(vec![NO_VICTIMS.into()]);
    }
    Ok(Candidate { node: name.to_string(), victims: evicted })
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::scheduler::node_info::NodeObj;
    use crate::scheduler::schedule_one::{schedule, Rng};

    fn cluster(nodes: &[&str]) -> Cache {
        let mut cache = Cache::default();
        for name in nodes {
            let obj = json!({"status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}});
            cache.set_node(name, NodeObj::parse(&obj));
        }
        cache
    }

    fn pod(name: &str, cpu: &str, priority: i64, extra: Value) -> Rc<PodInfo> {
        let mut spec = json!({"priority": priority,
            "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]});
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        Rc::new(PodInfo::parse(&json!({"metadata": {"namespace": "d", "name": name}, "spec": spec})).unwrap())
    }

    fn run(cache: &mut Cache, p: &PodInfo) -> PostFilter {
        let unfit = schedule(cache, p, &mut Rng::new(1)).unwrap_err();
        preempt(cache, p, None, &unfit)
    }

    fn names(victims: &[Rc<PodInfo>]) -> Vec<&str> {
        let mut names: Vec<&str> = victims.iter().map(|v| v.key.name.as_str()).collect();
        names.sort();
        names
    }

    #[test]
    fn the_node_whose_victims_matter_least_is_chosen_with_the_fewest_victims() {
        let mut cache = cluster(&["n1", "n2"]);
        // n1: two pods of priority 10; n2: one of priority 50 and two of priority 1.
        cache.add_pod(pod("a", "2", 10, json!({})), "n1", PodState::Observed);
        cache.add_pod(pod("b", "2", 10, json!({})), "n1", PodState::Observed);
        cache.add_pod(pod("c", "2", 50, json!({})), "n2", PodState::Observed);
        cache.add_pod(pod("d", "1", 1, json!({})), "n2", PodState::Observed);
        cache.add_pod(pod("e", "1", 1, json!({})), "n2", PodState::Observed);
        // Needs 2 cpu: n1 frees one pod of 10 (highest victim 10); n2 both of priority 1
        // (highest victim 1): n2 wins, and its priority-50 pod is spared.
        let PostFilter::Preempt(c) = run(&mut cache, &pod("p", "2", 100, json!({}))) else { panic!("no candidate") };
        assert_eq!(c.node, "n2");
        assert_eq!(names(&c.victims), ["d", "e"]);
        // Needs 1 cpu: one victim of priority 1 on n2 is enough.
        let PostFilter::Preempt(c) = run(&mut cache, &pod("q", "1", 100, json!({}))) else { panic!("no candidate") };
        assert_eq!((c.node.as_str(), c.victims.len()), ("n2", 1));
        assert_eq!(c.victims[0].priority, 1);
    }

    #[test]
    fn pods_of_equal_or_higher_priority_are_never_victims() {
        let mut cache = cluster(&["n1"]);
        cache.add_pod(pod("same", "4", 100, json!({})), "n1", PodState::Observed);
        let p = pod("p", "1", 100, json!({}));
        let PostFilter::Failed(why) = run(&mut cache, &p) else { panic!("preempted a peer") };
        assert_eq!(why, "0/1 nodes are available: 1 No preemption victims found for incoming pod.");
        let never = pod("never", "1", 1000, json!({"preemptionPolicy": "Never"}));
        let PostFilter::Failed(why) = run(&mut cache, &never) else { panic!("preempted under Never") };
        assert_eq!(why, NOT_ELIGIBLE_NEVER);
    }

    #[test]
    fn a_node_too_small_even_empty_gives_the_filters_reasons() {
        let mut cache = cluster(&["n1"]);
        cache.add_pod(pod("low", "1", 0, json!({})), "n1", PodState::Observed);
        let huge = pod("huge", "8", 100, json!({}));
        let unfit = schedule(&mut cache, &huge, &mut Rng::new(1)).unwrap_err();
        let outcome = preempt(&cache, &huge, None, &unfit);
        assert_eq!(
            outcome.message(&unfit),
            "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 Insufficient cpu."
        );
    }

    #[test]
    fn a_preemptor_waits_while_its_nominated_node_frees_up() {
        let mut cache = cluster(&["n1"]);
        let going = json!({"metadata": {"namespace": "d", "name": "going", "deletionTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"priority": 0, "containers": [{"name": "c", "resources": {"requests": {"cpu": "4"}}}]}});
        cache.add_pod(Rc::new(PodInfo::parse(&going).unwrap()), "n1", PodState::Observed);
        let p = pod("p", "2", 100, json!({}));
        let unfit = schedule(&mut cache, &p, &mut Rng::new(1)).unwrap_err();
        let PostFilter::Failed(why) = preempt(&cache, &p, Some("n1"), &unfit) else { panic!("preempted again") };
        assert_eq!(why, NOT_ELIGIBLE_TERMINATING);
    }
}

//! One scheduling decision, as kube's `schedulePod`: PreFilter, then Filter over the nodes
//! from where the last cycle stopped until enough feasible nodes are found
//! (`percentageOfNodesToScore`'s adaptive default), Score those, pick the best (ties at
//! random). A pod that fits nowhere gets kube's `FitError` diagnosis ([`Unfit`]) and
//! message, with the preemption summary kube's DefaultPreemption adds.

use std::collections::BTreeMap;

use super::cache::Cache;
use super::filters::{node_filters, Code, Rejection};
use super::inter_pod::CycleState;
use super::node_info::{NodeInfo, NodeObj};
use super::pod_info::PodInfo;
use super::scores::score;

/// kube's `minFeasibleNodesToFind`.
const MIN_FEASIBLE_NODES: usize = 100;
/// kube's `minFeasibleNodesPercentageToFind`.
const MIN_FEASIBLE_PERCENTAGE: usize = 5;

pub const NO_NODES: &str = "no nodes available to schedule pods";

/// How many feasible nodes to find before scoring: all of a small cluster, else
/// `50 - nodes/125` percent (at least 5%, at least 100 nodes).
pub fn feasible_nodes_to_find(all: usize) -> usize {
    if all < MIN_FEASIBLE_NODES {
        return all;
    }
    let percentage = 50usize.saturating_sub(all / 125).max(MIN_FEASIBLE_PERCENTAGE);
    (all * percentage / 100).max(MIN_FEASIBLE_NODES)
}

/// A small deterministic generator for tie-breaks (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
    }
}

/// Why a pod fits no node: how many nodes there are, and each rejected node with its
/// failure (kube's `FitError` diagnosis).
#[derive(Debug, Clone, Default)]
pub struct Unfit {
    pub all: usize,
    pub rejected: Vec<(String, Rejection)>,
}

impl Unfit {
    /// kube's `FitError` message when preemption was not tried or found nothing (its
    /// summary for each node as [`fit_error`] gives it).
    pub fn message(&self, pod: &PodInfo) -> String {
        fit_error(pod, self.all, &self.rejected)
    }

    /// The first part of the message: `0/N nodes are available: reasons.`
    pub fn reasons(&self) -> String {
        if self.all == 0 {
            return NO_NODES.into();
        }
        let reasons = histogram(self.rejected.iter().flat_map(|(_, r)| r.reasons.iter().map(String::as_str)));
        format!("0/{} nodes are available: {reasons}.", self.all)
    }
}

/// The nodes a pod fits (by live index), from where the last cycle stopped, until enough
/// are found; and the nodes it was found not to fit, with why (only when it fits none,
/// unless `always_why`).
pub fn feasible(cache: &mut Cache, pod: &PodInfo, always_why: bool) -> (Vec<usize>, Unfit) {
    let all = cache.live_len();
    if all == 0 {
        return (Vec::new(), Unfit::default());
    }
    let cycle = CycleState::new(cache, pod);
    let wanted = feasible_nodes_to_find(all);
    let start = cache.next_start % all;
    let mut feasible: Vec<usize> = Vec::new();
    let mut rejected: Vec<(usize, Rejection)> = Vec::new();
    for i in 0..all {
        let n = (start + i) % all;
        let info = cache.live_node(n);
        let Some(node) = info.node.as_ref() else { continue };
        match node_filters(pod, info, node).or_else(|| cycle.filter(pod, node)) {
            None => feasible.push(n),
            Some(r) => rejected.push((n, r)),
        }
        if feasible.len() >= wanted {
            break;
        }
    }
    cache.next_start = (start + feasible.len() + rejected.len()) % all;
    let rejected = if feasible.is_empty() || always_why {
        rejected.into_iter().map(|(n, r)| (cache.live_node(n).name.clone(), r)).collect()
    } else {
        Vec::new()
    };
    (feasible, Unfit { all, rejected })
}

/// The scores of the nodes at `feasible` (live indices), in order.
pub fn score_nodes(cache: &Cache, pod: &PodInfo, feasible: &[usize]) -> Vec<(String, i64)> {
    if let [only] = feasible {
        return vec![(cache.live_node(*only).name.clone(), 0)];
    }
    let nodes: Vec<(&NodeInfo, &NodeObj)> = feasible
        .iter()
        .filter_map(|n| {
            let info = cache.live_node(*n);
            Some((info, info.node.as_ref()?))
        })
        .collect();
    let scores = score(pod, &nodes);
    nodes.iter().zip(scores).map(|((info, _), s)| (info.name.clone(), s)).collect()
}

/// kube's selectHost: the index of the best score; among equals, each equally likely.
pub fn select_host(scores: &[i64], rng: &mut Rng) -> Option<usize> {
    let first = scores.first()?;
    let (mut best, mut best_score, mut ties) = (0, *first, 1);
    for (i, s) in scores.iter().enumerate().skip(1) {
        if *s > best_score {
            (best, best_score, ties) = (i, *s, 1);
        } else if *s == best_score {
            ties += 1;
            if rng.below(ties) == 0 {
                best = i;
            }
        }
    }
    Some(best)
}

/// Where a pod goes, or why it goes nowhere.
pub fn schedule(cache: &mut Cache, pod: &PodInfo, rng: &mut Rng) -> Result<String, Unfit> {
    let (feasible, unfit) = feasible(cache, pod, false);
    if feasible.is_empty() {
        return Err(unfit);
    }
    if let [only] = feasible.as_slice() {
        return Ok(cache.live_node(*only).name.clone());
    }
    let scored = score_nodes(cache, pod, &feasible);
    let scores: Vec<i64> = scored.iter().map(|(_, s)| *s).collect();
    let best = select_host(&scores, rng).ok_or_else(Unfit::default)?;
    scored.into_iter().nth(best).map(|(name, _)| name).ok_or_else(Unfit::default)
}

/// `count reason` for each reason, sorted as strings, joined by `, ` (kube's histogram).
pub fn histogram<'a>(reasons: impl Iterator<Item = &'a str>) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in reasons {
        *counts.entry(r).or_insert(0) += 1;
    }
    let mut lines: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    lines.sort();
    lines.join(", ")
}

/// kube's `FitError.Error()` plus DefaultPreemption's PostFilter message, for a pod that
/// preemption cannot help: nodes that fail with an unresolvable reason are not helped by
/// preemption; the others have no victims.
pub fn fit_error(pod: &PodInfo, all: usize, rejected: &[(String, Rejection)]) -> String {
    if all == 0 {
        return NO_NODES.into();
    }
    let reasons = histogram(rejected.iter().flat_map(|(_, r)| r.reasons.iter().map(String::as_str)));
    let preemption = if pod.preempt_never {
        NOT_ELIGIBLE_NEVER.to_string()
    } else {
        let outcomes = rejected.iter().map(|(_, r)| match r.code {
            Code::Unresolvable => NOT_HELPFUL,
            Code::Unschedulable => NO_VICTIMS,
        });
        format!("0/{all} nodes are available: {}.", histogram(outcomes))
    };
    format!("0/{all} nodes are available: {reasons}. preemption: {preemption}")
}

/// DefaultPreemption's words for a node whose failure preemption cannot fix.
pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
/// ... for a node with no pod of lower priority.
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";
/// ... for a pod with `preemptionPolicy: Never`.
pub const NOT_ELIGIBLE_NEVER: &str = "not eligible due to preemptionPolicy=Never.";

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use serde_json::{json, Value};

    use super::*;
    use crate::scheduler::cache::PodState;

    fn cluster(n: usize, spec: impl Fn(usize) -> Value) -> Cache {
        let mut cache = Cache::default();
        for i in 0..n {
            let obj = json!({"metadata": {"labels": {"kubernetes.io/hostname": format!("n{i}")}}, "spec": spec(i),
                "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}});
            cache.set_node(&format!("n{i}"), NodeObj::parse(&obj));
        }
        cache
    }

    fn pod(name: &str, cpu: &str) -> PodInfo {
        let spec = json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}}}]});
        PodInfo::parse(&json!({"metadata": {"namespace": "d", "name": name}, "spec": spec})).unwrap()
    }

    #[test]
    fn the_feasible_node_count_follows_kubes_adaptive_percentage() {
        assert_eq!(feasible_nodes_to_find(50), 50);
        assert_eq!(feasible_nodes_to_find(100), 100);
        assert_eq!(feasible_nodes_to_find(1000), 420);
        assert_eq!(feasible_nodes_to_find(5000), 500);
        assert_eq!(feasible_nodes_to_find(100_000), 5000);
    }

    #[test]
    fn pods_spread_over_the_least_allocated_nodes() {
        let mut cache = cluster(3, |_| json!({}));
        let mut rng = Rng::new(7);
        let mut placed = Vec::new();
        for i in 0..6 {
            let p = Rc::new(pod(&format!("p{i}"), "1"));
            let node = schedule(&mut cache, &p, &mut rng).unwrap();
            cache.add_pod(p, &node, PodState::Binding);
            placed.push(node);
        }
        for n in ["n0", "n1", "n2"] {
            assert_eq!(placed.iter().filter(|p| *p == n).count(), 2, "{placed:?}");
        }
    }

    #[test]
    fn a_pod_that_fits_nowhere_gets_kubes_message() {
        let mut cache = cluster(3, |i| {
            if i == 0 {
                json!({})
            } else {
                json!({"taints": [{"key": "key", "value": "value", "effect": "NoSchedule"}]})
            }
        });
        let big = pod("big", "5");
        let err = schedule(&mut cache, &big, &mut Rng::new(1)).unwrap_err().message(&big);
        assert_eq!(
            err,
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {key: value}. \
             preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, \
             2 Preemption is not helpful for scheduling."
        );
        let p = pod("p", "1");
        assert_eq!(schedule(&mut Cache::default(), &p, &mut Rng::new(1)).unwrap_err().message(&p), NO_NODES);
    }

    #[test]
    fn large_clusters_are_walked_round_robin_a_slice_at_a_time() {
        let mut cache = cluster(1000, |_| json!({}));
        let mut rng = Rng::new(3);
        schedule(&mut cache, &pod("a", "100m"), &mut rng).unwrap();
        assert_eq!(cache.next_start, 420);
        schedule(&mut cache, &pod("b", "100m"), &mut rng).unwrap();
        assert_eq!(cache.next_start, 840);
    }
}

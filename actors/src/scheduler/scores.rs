//! The default profile's score plugins, each scoring 0..=100 per node after
//! normalisation, times its weight: TaintToleration (3, fewer untolerated
//! `PreferNoSchedule` taints), NodeAffinity (2, preferred terms), NodeResourcesFit (1,
//! LeastAllocated over cpu and memory), NodeResourcesBalancedAllocation (1).
//! PodTopologySpread, InterPodAffinity and ImageLocality scores are not computed (they
//! score every node alike for pods without preferred terms or images on nodes).

use super::filters::untolerated;
use super::node_info::{NodeInfo, NodeObj};
use super::pod_info::PodInfo;

pub const MAX_NODE_SCORE: i64 = 100;

const TAINT_WEIGHT: i64 = 3;
const NODE_AFFINITY_WEIGHT: i64 = 2;
const FIT_WEIGHT: i64 = 1;
const BALANCED_WEIGHT: i64 = 1;

/// kube's `DefaultNormalizeScore`: scales to 0..=100 by the highest score (reversed: the
/// lowest raw score scores highest).
fn normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        let scaled = MAX_NODE_SCORE * *s / max;
        *s = if reverse { MAX_NODE_SCORE - scaled } else { scaled };
    }
}

/// `(capacity - requested) * 100 / capacity`, 0 when over capacity.
fn least_requested(requested: i64, capacity: i64) -> i64 {
    if capacity <= 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

/// NodeResourcesFit's LeastAllocated over cpu and memory (weights 1), counting requests
/// with the scheduler's defaults for containers that have none.
fn least_allocated(pod: &PodInfo, info: &NodeInfo, node: &NodeObj) -> i64 {
    let pairs = [
        (info.usage.non_zero_cpu.saturating_add(pod.non_zero_cpu), node.allocatable.milli_cpu),
        (info.usage.non_zero_memory.saturating_add(pod.non_zero_memory), node.allocatable.memory),
    ];
    let counted: Vec<i64> =
        pairs.iter().filter(|(_, cap)| *cap != 0).map(|(r, cap)| least_requested(*r, *cap)).collect();
    if counted.is_empty() {
        return 0;
    }
    counted.iter().sum::<i64>() / counted.len() as i64
}

/// NodeResourcesBalancedAllocation: 100 × (1 − the standard deviation of the cpu and
/// memory fractions requested), with the pod's actual requests.
fn balanced(pod: &PodInfo, info: &NodeInfo, node: &NodeObj) -> i64 {
    let used = &info.usage.requested;
    let pairs = [
        (used.milli_cpu.saturating_add(pod.requests.milli_cpu), node.allocatable.milli_cpu),
        (used.memory.saturating_add(pod.requests.memory), node.allocatable.memory),
    ];
    let fractions: Vec<f64> =
        pairs.iter().filter(|(_, cap)| *cap != 0).map(|(r, cap)| (*r as f64 / *cap as f64).min(1.0)).collect();
    let std = match fractions.as_slice() {
        [a, b] => ((a - b) / 2.0).abs(),
        _ => 0.0,
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

/// The weighted sum of the plugins' normalised scores for each node.
pub fn score(pod: &PodInfo, nodes: &[(&NodeInfo, &NodeObj)]) -> Vec<i64> {
    let mut taints: Vec<i64> = nodes
        .iter()
        .map(|(_, node)| {
            let prefer = |effect: &str| effect == "PreferNoSchedule";
            // Only tolerations that name PreferNoSchedule (or every effect) count here.
            node.taints
                .iter()
                .filter(|t| prefer(&t.effect) && untolerated(pod, std::slice::from_ref(*t), prefer).is_some())
                .count() as i64
        })
        .collect();
    normalize(&mut taints, true);
    let mut affinity: Vec<i64> = nodes
        .iter()
        .map(|(info, node)| {
            let matching =
                pod.preferred_node_affinity.iter().filter(|(_, t)| t.matches(&info.name, Some(&node.labels)));
            matching.map(|(w, _)| *w).sum()
        })
        .collect();
    normalize(&mut affinity, false);
    nodes
        .iter()
        .zip(taints.iter().zip(&affinity))
        .map(|((info, node), (taint, affinity))| {
            TAINT_WEIGHT * taint
                + NODE_AFFINITY_WEIGHT * affinity
                + FIT_WEIGHT * least_allocated(pod, info, node)
                + BALANCED_WEIGHT * balanced(pod, info, node)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::scheduler::node_info::Usage;

    fn node(name: &str, spec: Value, labels: Value) -> (NodeInfo, NodeObj) {
        let obj = json!({"metadata": {"labels": labels}, "spec": spec,
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}});
        (NodeInfo { name: name.into(), node: None, usage: Usage::default() }, NodeObj::parse(&obj))
    }

    fn pod(spec: Value) -> PodInfo {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "c", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]);
        PodInfo::parse(&json!({"metadata": {"namespace": "d", "name": "p"}, "spec": spec})).unwrap()
    }

    fn scores(pod: &PodInfo, nodes: &[(NodeInfo, NodeObj)]) -> Vec<i64> {
        let refs: Vec<(&NodeInfo, &NodeObj)> = nodes.iter().map(|(i, n)| (i, n)).collect();
        score(pod, &refs)
    }

    #[test]
    fn emptier_nodes_score_higher() {
        let (mut busy, obj) = node("busy", json!({}), json!({}));
        let p = pod(json!({}));
        busy.usage.add(&p);
        busy.usage.add(&p);
        let nodes = vec![(busy, obj), node("idle", json!({}), json!({}))];
        let s = scores(&p, &nodes);
        assert!(s[1] > s[0], "{s:?}");
        // LeastAllocated: (4000-1000)/4000 and (8-1)/8 → 75 and 87 → 81.
        assert_eq!(least_allocated(&p, &nodes[1].0, &nodes[1].1), 81);
    }

    #[test]
    fn prefer_no_schedule_taints_and_preferred_affinity_steer_the_choice() {
        let tainted = node("t", json!({"taints": [{"key": "k", "effect": "PreferNoSchedule"}]}), json!({}));
        let plain = node("p", json!({}), json!({}));
        let s = scores(&pod(json!({})), &[tainted, plain]);
        assert_eq!(s[1] - s[0], TAINT_WEIGHT * MAX_NODE_SCORE);
        let preferred = json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 5, "preference": {"matchExpressions": [{"key": "ssd", "operator": "Exists"}]}}]}}});
        let s = scores(&pod(preferred), &[node("a", json!({}), json!({})), node("b", json!({}), json!({"ssd": "1"}))]);
        assert_eq!(s[1] - s[0], NODE_AFFINITY_WEIGHT * MAX_NODE_SCORE);
    }
}

//! The filters that count other pods across topology domains, each a PreFilter (one pass
//! over the cache per scheduling attempt, only for pods that need it) and a Filter:
//!
//! - InterPodAffinity: the pod's required affinity and anti-affinity terms, and the
//!   required anti-affinity terms of pods already placed.
//! - PodTopologySpread: `DoNotSchedule` constraints (max skew, min domains, node
//!   inclusion policies, `matchLabelKeys`).

use std::collections::HashMap;

use super::cache::Cache;
use super::filters::{blocks_scheduling, untolerated, Code, Rejection};
use super::node_info::NodeObj;
use super::pod_info::{AffinityTerm, PodInfo};

pub const REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub const REASON_EXISTING_ANTI_AFFINITY: &str = "node(s) didn't satisfy existing pods anti-affinity rules";
pub const REASON_SPREAD: &str = "node(s) didn't match pod topology spread constraints";
pub const REASON_SPREAD_LABEL: &str = "node(s) didn't match pod topology spread constraints (missing required label)";

/// (topology key, value) -> how many matching pods there are in that domain.
type Counts = HashMap<(String, String), i64>;

fn count(counts: &mut Counts, node: &NodeObj, key: &str) {
    if let Some(value) = node.label(key) {
        *counts.entry((key.to_string(), value.to_string())).or_insert(0) += 1;
    }
}

/// One spread constraint's counts: matching pods per domain, and the smallest count.
#[derive(Debug, Default)]
struct Spread {
    per_domain: HashMap<String, i64>,
    min: i64,
}

/// What the PreFilters computed for one attempt.
#[derive(Debug, Default)]
pub struct CycleState {
    affinity: Counts,
    anti_affinity: Counts,
    existing_anti_affinity: Counts,
    spread: Vec<Spread>,
}

fn matches_all(terms: &[AffinityTerm], namespace: &str, labels: &serde_json::Value) -> bool {
    terms.iter().all(|t| t.matches(namespace, labels))
}

impl CycleState {
    /// The PreFilters of InterPodAffinity and PodTopologySpread for `pod`.
    pub fn new(cache: &Cache, pod: &PodInfo) -> CycleState {
        let mut state = CycleState::default();
        for existing in cache.anti_affinity_pods() {
            let Some(node) = cache.node(&existing.node).and_then(|n| n.node.as_ref()) else { continue };
            for term in &existing.info.pod_anti_affinity {
                if term.matches(&pod.namespace, &pod.labels) {
                    count(&mut state.existing_anti_affinity, node, &term.topology_key);
                }
            }
        }
        if !pod.pod_affinity.is_empty() || !pod.pod_anti_affinity.is_empty() {
            for (_, existing) in cache.pods() {
                let Some(node) = cache.node(&existing.node).and_then(|n| n.node.as_ref()) else { continue };
                let (ns, labels) = (&existing.info.namespace, &existing.info.labels);
                if !pod.pod_affinity.is_empty() && matches_all(&pod.pod_affinity, ns, labels) {
                    for term in &pod.pod_affinity {
                        count(&mut state.affinity, node, &term.topology_key);
                    }
                }
                for term in &pod.pod_anti_affinity {
                    if term.matches(ns, labels) {
                        count(&mut state.anti_affinity, node, &term.topology_key);
                    }
                }
            }
        }
        if !pod.spread.is_empty() {
            state.spread = spread_counts(cache, pod);
        }
        state
    }

    /// The PodTopologySpread and InterPodAffinity filters for one node.
    pub fn filter(&self, pod: &PodInfo, node: &NodeObj) -> Option<Rejection> {
        self.filter_spread(pod, node).or_else(|| self.filter_affinity(pod, node))
    }

    fn filter_spread(&self, pod: &PodInfo, node: &NodeObj) -> Option<Rejection> {
        for (c, counts) in pod.spread.iter().zip(&self.spread) {
            let Some(value) = node.label(&c.topology_key) else {
                return Some(Rejection::new(Code::Unresolvable, REASON_SPREAD_LABEL));
            };
            let matching = counts.per_domain.get(value).copied().unwrap_or(0);
            let own = i64::from(c.selects(&pod.labels));
            if matching + own - counts.min > c.max_skew {
                return Some(Rejection::new(Code::Unschedulable, REASON_SPREAD));
            }
        }
        None
    }

    fn filter_affinity(&self, pod: &PodInfo, node: &NodeObj) -> Option<Rejection> {
        let domain =
            |term: &AffinityTerm| node.label(&term.topology_key).map(|v| (term.topology_key.clone(), v.to_string()));
        // Pod affinity: every term's domain must hold a matching pod, unless no pod matches
        // anywhere and the pod matches its own terms (the first of a group).
        let mut pods_exist = true;
        for term in &pod.pod_affinity {
            let Some(pair) = domain(term) else {
                return Some(Rejection::new(Code::Unresolvable, REASON_AFFINITY));
            };
            if self.affinity.get(&pair).copied().unwrap_or(0) <= 0 {
                pods_exist = false;
            }
        }
        let first_of_group = self.affinity.is_empty() && matches_all(&pod.pod_affinity, &pod.namespace, &pod.labels);
        if !pods_exist && !first_of_group {
            return Some(Rejection::new(Code::Unresolvable, REASON_AFFINITY));
        }
        let taken = |counts: &Counts, pair: Option<(String, String)>| pair.is_some_and(|p| counts.get(&p) > Some(&0));
        if pod.pod_anti_affinity.iter().any(|term| taken(&self.anti_affinity, domain(term))) {
            return Some(Rejection::new(Code::Unschedulable, REASON_ANTI_AFFINITY));
        }
        if !self.existing_anti_affinity.is_empty() {
            let labels = node.labels.as_object().into_iter().flatten();
            let pairs = labels.filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())));
            if pairs.into_iter().any(|p| taken(&self.existing_anti_affinity, Some(p))) {
                return Some(Rejection::new(Code::Unschedulable, REASON_EXISTING_ANTI_AFFINITY));
            }
        }
        None
    }
}

/// Matching pods per domain of each constraint, over the nodes the constraint counts:
/// those with every constraint's topology label, that the pod's node affinity admits
/// (`nodeAffinityPolicy: Honor`) and, with `nodeTaintsPolicy: Honor`, whose taints it
/// tolerates.
fn spread_counts(cache: &Cache, pod: &PodInfo) -> Vec<Spread> {
    // Matching pods per node, per constraint.
    let mut per_node: Vec<HashMap<&str, i64>> = vec![HashMap::new(); pod.spread.len()];
    for (_, existing) in cache.pods() {
        if existing.info.namespace != pod.namespace || existing.info.deleting {
            continue;
        }
        for (c, counts) in pod.spread.iter().zip(per_node.iter_mut()) {
            if c.selects(&existing.info.labels) {
                *counts.entry(existing.node.as_str()).or_insert(0) += 1;
            }
        }
    }
    let mut out: Vec<Spread> = pod.spread.iter().map(|_| Spread::default()).collect();
    for n in 0..cache.live_len() {
        let info = cache.live_node(n);
        let Some(node) = info.node.as_ref() else { continue };
        if !pod.spread.iter().all(|c| node.label(&c.topology_key).is_some()) {
            continue;
        }
        for ((c, counts), spread) in pod.spread.iter().zip(&per_node).zip(out.iter_mut()) {
            if c.honor_affinity && !pod.admits_node(&info.name, Some(&node.labels)) {
                continue;
            }
            if c.honor_taints && untolerated(pod, &node.taints, blocks_scheduling).is_some() {
                continue;
            }
            let value = node.label(&c.topology_key).unwrap_or_default();
            *spread.per_domain.entry(value.to_string()).or_insert(0) += counts.get(info.name.as_str()).unwrap_or(&0);
        }
    }
    for (c, spread) in pod.spread.iter().zip(out.iter_mut()) {
        let domains = spread.per_domain.len() as i64;
        spread.min = if domains < c.min_domains {
            0
        } else {
            spread.per_domain.values().copied().min().unwrap_or(i64::from(i32::MAX))
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use serde_json::{json, Value};

    use super::*;
    use crate::scheduler::cache::PodState;

    fn cluster(nodes: &[(&str, &str)]) -> Cache {
        let mut cache = Cache::default();
        for (name, zone) in nodes {
            let labels = json!({"kubernetes.io/hostname": name, "zone": zone});
            let obj = json!({"metadata": {"labels": labels}, "status": {"allocatable": {"cpu": "4", "pods": "10"}}});
            cache.set_node(name, NodeObj::parse(&obj));
        }
        cache
    }

    fn pod(name: &str, labels: Value, spec: Value) -> Rc<PodInfo> {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "c"}]);
        let pod = json!({"metadata": {"namespace": "d", "name": name, "labels": labels}, "spec": spec});
        Rc::new(PodInfo::parse(&pod).unwrap())
    }

    fn rejected(cache: &Cache, pod: &PodInfo) -> Vec<(String, Option<String>)> {
        let state = CycleState::new(cache, pod);
        (0..cache.live_len())
            .map(|n| {
                let info = cache.live_node(n);
                let r = state.filter(pod, info.node.as_ref().unwrap());
                (info.name.clone(), r.map(|r| r.reasons[0].clone()))
            })
            .collect()
    }

    #[test]
    fn anti_affinity_keeps_matching_pods_apart_both_ways() {
        let mut cache = cluster(&[("n1", "a"), ("n2", "a"), ("n3", "b")]);
        let anti = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}});
        cache.add_pod(pod("w1", json!({"app": "web"}), anti.clone()), "n1", PodState::Observed);
        let web = pod("w2", json!({"app": "web"}), anti);
        let got = rejected(&cache, &web);
        assert_eq!(got[0].1.as_deref(), Some(REASON_ANTI_AFFINITY));
        assert_eq!((got[1].1.clone(), got[2].1.clone()), (None, None));
        // A pod without terms is kept off n1 by the existing pod's term.
        let plain = pod("w3", json!({"app": "web"}), json!({}));
        assert_eq!(rejected(&cache, &plain)[0].1.as_deref(), Some(REASON_EXISTING_ANTI_AFFINITY));
    }

    #[test]
    fn affinity_needs_a_matching_pod_in_the_domain_unless_it_is_the_first() {
        let mut cache = cluster(&[("n1", "a"), ("n2", "a"), ("n3", "b")]);
        let affinity = json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}]}}});
        let first = pod("db0", json!({"app": "db"}), affinity.clone());
        assert!(rejected(&cache, &first).iter().all(|(_, r)| r.is_none()));
        cache.add_pod(pod("db1", json!({"app": "db"}), json!({})), "n3", PodState::Observed);
        let got = rejected(&cache, &pod("c", json!({}), affinity));
        assert_eq!(got.iter().map(|(_, r)| r.is_none()).collect::<Vec<_>>(), [false, false, true]);
    }

    #[test]
    fn spread_rejects_domains_over_the_max_skew() {
        let mut cache = cluster(&[("n1", "a"), ("n2", "b")]);
        let spread = json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone",
            "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]});
        cache.add_pod(pod("w1", json!({"app": "web"}), json!({})), "n1", PodState::Observed);
        let got = rejected(&cache, &pod("w2", json!({"app": "web"}), spread.clone()));
        assert_eq!(got[0].1.as_deref(), Some(REASON_SPREAD));
        assert_eq!(got[1].1, None);
        let odd = cluster(&[("n1", "a")]);
        let mut labelless = odd;
        labelless.set_node("n9", NodeObj::parse(&json!({"status": {"allocatable": {"pods": "1"}}})));
        let got = rejected(&labelless, &pod("w2", json!({"app": "web"}), spread));
        assert_eq!(got[1].1.as_deref(), Some(REASON_SPREAD_LABEL));
    }
}

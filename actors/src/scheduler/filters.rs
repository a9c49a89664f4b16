//! The default profile's filter plugins that look at one node, in kube's order:
//! NodeUnschedulable, NodeName, TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit
//! (PodTopologySpread and InterPodAffinity, which need the whole cluster, are in
//! [`super::inter_pod`]). Each returns kube's reasons and whether preemption could help.

use super::node_info::{NodeInfo, NodeObj};
use super::pod_info::{tolerated, PodInfo, Taint};

pub const REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
pub const REASON_NODE_NAME: &str = "node(s) didn't match the requested node name";
pub const REASON_NODE_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
pub const REASON_NODE_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";
pub const REASON_TOO_MANY_PODS: &str = "Too many pods";

/// How a node failed a filter: as kube's `Unschedulable` (preemption might help) or
/// `UnschedulableAndUnresolvable` (it cannot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Unschedulable,
    Unresolvable,
}

/// A node's failure: its code and reasons (NodeResourcesFit may give several).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: Code,
    pub reasons: Vec<String>,
}

impl Rejection {
    pub fn new(code: Code, reason: impl Into<String>) -> Rejection {
        Rejection { code, reasons: vec![reason.into()] }
    }
}

/// The taint a pod does not tolerate among those whose effect `keep` selects.
pub fn untolerated<'a>(pod: &PodInfo, taints: &'a [Taint], keep: impl Fn(&str) -> bool) -> Option<&'a Taint> {
    taints.iter().find(|t| keep(&t.effect) && !tolerated(&pod.tolerations, t))
}

/// Whether a taint's effect keeps pods off a node (`NoSchedule`, `NoExecute`).
pub fn blocks_scheduling(effect: &str) -> bool {
    effect == "NoSchedule" || effect == "NoExecute"
}

/// Runs the node-local filters in order; the first failure is the node's.
pub fn node_filters(pod: &PodInfo, info: &NodeInfo, node: &NodeObj) -> Option<Rejection> {
    if node.unschedulable {
        let taint =
            Taint { key: "node.kubernetes.io/unschedulable".into(), value: String::new(), effect: "NoSchedule".into() };
        if !tolerated(&pod.tolerations, &taint) {
            return Some(Rejection::new(Code::Unresolvable, REASON_UNSCHEDULABLE));
        }
    }
    // NodeName: the pods scheduled here have no spec.nodeName, so it always passes.
    if let Some(taint) = untolerated(pod, &node.taints, blocks_scheduling) {
        let reason = format!("node(s) had untolerated taint {{{}: {}}}", taint.key, taint.value);
        return Some(Rejection::new(Code::Unresolvable, reason));
    }
    if !pod.admits_node(&info.name, Some(&node.labels)) {
        return Some(Rejection::new(Code::Unresolvable, REASON_NODE_AFFINITY));
    }
    if pod.host_ports.iter().any(|p| info.usage.port_conflict(p)) {
        return Some(Rejection::new(Code::Unschedulable, REASON_NODE_PORTS));
    }
    fit(pod, info, node)
}

/// NodeResourcesFit: room for one more pod, and for each resource the pod requests.
pub fn fit(pod: &PodInfo, info: &NodeInfo, node: &NodeObj) -> Option<Rejection> {
    let (want, used, have) = (&pod.requests, &info.usage.requested, &node.allocatable);
    let mut reasons = Vec::new();
    if info.usage.pods + 1 > node.allowed_pods {
        reasons.push(REASON_TOO_MANY_PODS.to_string());
    }
    if !want.is_zero() {
        let short = |want: i64, used: i64, have: i64| want > 0 && want > have.saturating_sub(used);
        if short(want.milli_cpu, used.milli_cpu, have.milli_cpu) {
            reasons.push("Insufficient cpu".into());
        }
        if short(want.memory, used.memory, have.memory) {
            reasons.push("Insufficient memory".into());
        }
        if short(want.ephemeral_storage, used.ephemeral_storage, have.ephemeral_storage) {
            reasons.push("Insufficient ephemeral-storage".into());
        }
        for (name, amount) in &want.scalars {
            let have = have.scalars.get(name).copied().unwrap_or(0);
            let used = used.scalars.get(name).copied().unwrap_or(0);
            if *amount != 0 && short(*amount, used, have) {
                reasons.push(format!("Insufficient {name}"));
            }
        }
    }
    (!reasons.is_empty()).then_some(Rejection { code: Code::Unschedulable, reasons })
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::scheduler::node_info::Usage;

    fn node(spec: Value, labels: Value) -> (NodeInfo, NodeObj) {
        let obj = json!({"metadata": {"labels": labels}, "spec": spec,
            "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "2", "example.com/gpu": "1"}}});
        let info = NodeInfo { name: "n1".into(), node: None, usage: Usage::default() };
        (info, NodeObj::parse(&obj))
    }

    fn pod(spec: Value) -> PodInfo {
        PodInfo::parse(&json!({"metadata": {"namespace": "d", "name": "p"}, "spec": spec})).unwrap()
    }

    fn reasons(pod_spec: Value, node_spec: Value) -> Option<Vec<String>> {
        let (info, obj) = node(node_spec, json!({"zone": "a"}));
        node_filters(&pod(pod_spec), &info, &obj).map(|r| r.reasons)
    }

    #[test]
    fn filters_give_kubes_reasons() {
        let plain = json!({"containers": [{"name": "c"}]});
        assert_eq!(reasons(plain.clone(), json!({})), None);
        assert_eq!(reasons(plain.clone(), json!({"unschedulable": true})).unwrap(), [REASON_UNSCHEDULABLE]);
        let taints = json!({"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]});
        assert_eq!(reasons(plain.clone(), taints.clone()).unwrap(), ["node(s) had untolerated taint {k: v}"]);
        let tolerant = json!({"containers": [{"name": "c"}], "tolerations": [{"key": "k", "operator": "Exists"}]});
        assert_eq!(reasons(tolerant, taints), None);
        let prefer = json!({"taints": [{"key": "k", "effect": "PreferNoSchedule"}]});
        assert_eq!(reasons(plain, prefer), None);
        let elsewhere = json!({"containers": [{"name": "c"}], "nodeSelector": {"zone": "b"}});
        assert_eq!(reasons(elsewhere, json!({})).unwrap(), [REASON_NODE_AFFINITY]);
        let big = json!({"containers": [{"name": "c", "resources": {"requests": {
            "cpu": "3", "memory": "5Gi", "example.com/gpu": "2"}}}]});
        assert_eq!(
            reasons(big, json!({})).unwrap(),
            ["Insufficient cpu", "Insufficient memory", "Insufficient example.com/gpu"]
        );
    }

    #[test]
    fn the_pod_count_and_host_ports_count_what_is_on_the_node() {
        let (mut info, obj) = node(json!({}), json!({}));
        let web = pod(json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 80}]}]}));
        assert_eq!(node_filters(&web, &info, &obj), None);
        info.usage.add(&web);
        assert_eq!(node_filters(&web, &info, &obj).unwrap().reasons, [REASON_NODE_PORTS]);
        let other = pod(json!({"containers": [{"name": "c"}]}));
        info.usage.add(&other);
        assert_eq!(node_filters(&other, &info, &obj).unwrap().reasons, [REASON_TOO_MANY_PODS]);
    }
}

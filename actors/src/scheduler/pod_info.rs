//! What the scheduler reads of a pod, parsed once per attempt (kube's `framework.PodInfo`):
//! requests, tolerations, node selector and affinity, host ports, pod (anti-)affinity
//! terms, topology spread constraints, priority.

use serde_json::Value;

use super::resources::{pod_requests, Resources};
use crate::controller::ObjectKey;
use crate::selectors::{LabelSelector, Operator, Requirement};

fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn items(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

fn strings(v: Option<&Value>) -> Vec<String> {
    items(v).iter().filter_map(Value::as_str).map(String::from).collect()
}

/// A node taint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: String,
}

impl Taint {
    pub fn parse(v: &Value) -> Taint {
        Taint { key: str_at(v, "key").into(), value: str_at(v, "value").into(), effect: str_at(v, "effect").into() }
    }
}

/// A pod toleration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toleration {
    pub key: String,
    pub operator: String,
    pub value: String,
    pub effect: String,
}

impl Toleration {
    pub fn parse(v: &Value) -> Toleration {
        Toleration {
            key: str_at(v, "key").into(),
            operator: str_at(v, "operator").into(),
            value: str_at(v, "value").into(),
            effect: str_at(v, "effect").into(),
        }
    }

    /// kube's `Toleration.ToleratesTaint`: an empty effect matches every effect, an empty
    /// key (with `Exists`) every key.
    pub fn tolerates(&self, taint: &Taint) -> bool {
        if !self.effect.is_empty() && self.effect != taint.effect {
            return false;
        }
        if !self.key.is_empty() && self.key != taint.key {
            return false;
        }
        match self.operator.as_str() {
            "" | "Equal" => self.value == taint.value,
            "Exists" => true,
            _ => false,
        }
    }
}

/// Whether any of `tolerations` tolerates `taint`.
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| t.tolerates(taint))
}

/// A `metav1.LabelSelector` as a parsed selector; `None` (a null or malformed selector)
/// selects nothing, `{}` everything.
pub fn label_selector(v: Option<&Value>) -> Option<LabelSelector> {
    let v = v.filter(|v| v.is_object())?;
    let mut requirements = Vec::new();
    for (key, value) in v.get("matchLabels").and_then(Value::as_object).into_iter().flatten() {
        requirements.push(Requirement { key: key.clone(), op: Operator::Equals, values: vec![value.as_str()?.into()] });
    }
    for expr in items(v.get("matchExpressions")) {
        let op = match str_at(expr, "operator") {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            _ => return None,
        };
        requirements.push(Requirement { key: str_at(expr, "key").into(), op, values: strings(expr.get("values")) });
    }
    Some(LabelSelector { requirements })
}

/// One `nodeSelectorTerm`: its expressions over node labels and its fields (only
/// `metadata.name`), all of which must hold. An empty or malformed term matches nothing.
#[derive(Debug, Clone)]
pub struct NodeSelectorTerm {
    labels: LabelSelector,
    names: Vec<(bool, Vec<String>)>,
    valid: bool,
}

impl NodeSelectorTerm {
    pub fn parse(v: &Value) -> NodeSelectorTerm {
        let mut term = NodeSelectorTerm { labels: LabelSelector::default(), names: Vec::new(), valid: true };
        let expressions = items(v.get("matchExpressions"));
        let fields = items(v.get("matchFields"));
        if expressions.is_empty() && fields.is_empty() {
            term.valid = false;
        }
        for expr in expressions {
            let values = strings(expr.get("values"));
            let op = match str_at(expr, "operator") {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                "Gt" => Operator::GreaterThan,
                "Lt" => Operator::LessThan,
                _ => {
                    term.valid = false;
                    continue;
                }
            };
            term.labels.requirements.push(Requirement { key: str_at(expr, "key").into(), op, values });
        }
        for field in fields {
            let in_ = match (str_at(field, "key"), str_at(field, "operator")) {
                ("metadata.name", "In") => true,
                ("metadata.name", "NotIn") => false,
                _ => {
                    term.valid = false;
                    continue;
                }
            };
            term.names.push((in_, strings(field.get("values"))));
        }
        term
    }

    pub fn is_valid(&self) -> bool {
        self.valid
    }

    pub fn matches(&self, name: &str, labels: Option<&Value>) -> bool {
        self.valid
            && self.labels.matches(labels)
            && self.names.iter().all(|(in_, values)| values.iter().any(|v| v == name) == *in_)
    }
}

/// A host port a container asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i64,
}

/// A required pod (anti-)affinity term, its namespaces resolved against the pod's own.
#[derive(Debug, Clone)]
pub struct AffinityTerm {
    pub selector: Option<LabelSelector>,
    pub namespaces: Vec<String>,
    /// `namespaceSelector: {}`: every namespace.
    pub all_namespaces: bool,
    pub topology_key: String,
}

impl AffinityTerm {
    fn parse(term: &Value, pod_namespace: &str) -> AffinityTerm {
        let mut namespaces = strings(term.get("namespaces"));
        let ns_selector = term.get("namespaceSelector").filter(|v| v.is_object());
        if namespaces.is_empty() && ns_selector.is_none() {
            namespaces.push(pod_namespace.into());
        }
        // A namespace selector with requirements would need namespace labels: only `{}` is
        // honoured (every namespace).
        let all_namespaces = label_selector(ns_selector).is_some_and(|s| s.is_empty());
        AffinityTerm {
            selector: label_selector(term.get("labelSelector")),
            namespaces,
            all_namespaces,
            topology_key: str_at(term, "topologyKey").into(),
        }
    }

    /// Whether a pod in `namespace` with `labels` is one this term selects.
    pub fn matches(&self, namespace: &str, labels: &Value) -> bool {
        (self.all_namespaces || self.namespaces.iter().any(|n| n == namespace))
            && self.selector.as_ref().is_some_and(|s| s.matches(Some(labels)))
    }
}

/// A `DoNotSchedule` topology spread constraint.
#[derive(Debug, Clone)]
pub struct SpreadConstraint {
    pub max_skew: i64,
    pub topology_key: String,
    pub selector: Option<LabelSelector>,
    pub min_domains: i64,
    /// `nodeAffinityPolicy: Honor` (the default): only nodes the pod's node affinity
    /// admits count.
    pub honor_affinity: bool,
    /// `nodeTaintsPolicy: Honor`: only nodes whose taints the pod tolerates count.
    pub honor_taints: bool,
}

impl SpreadConstraint {
    fn parse(c: &Value, pod_labels: &Value) -> SpreadConstraint {
        let mut selector = label_selector(c.get("labelSelector"));
        if let Some(selector) = selector.as_mut() {
            for key in strings(c.get("matchLabelKeys")) {
                if let Some(value) = pod_labels.get(&key).and_then(Value::as_str) {
                    selector.requirements.push(Requirement { key, op: Operator::In, values: vec![value.into()] });
                }
            }
        }
        SpreadConstraint {
            max_skew: c.get("maxSkew").and_then(Value::as_i64).unwrap_or(1),
            topology_key: str_at(c, "topologyKey").into(),
            selector,
            min_domains: c.get("minDomains").and_then(Value::as_i64).unwrap_or(1),
            honor_affinity: str_at(c, "nodeAffinityPolicy") != "Ignore",
            honor_taints: str_at(c, "nodeTaintsPolicy") == "Honor",
        }
    }

    pub fn selects(&self, labels: &Value) -> bool {
        self.selector.as_ref().is_some_and(|s| s.matches(Some(labels)))
    }
}

/// A pod as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub key: ObjectKey,
    pub uid: String,
    pub namespace: String,
    /// `metadata.labels` (an object, or null).
    pub labels: Value,
    /// What the fit filter counts.
    pub requests: Resources,
    /// cpu (millicores) and memory requests with the scheduler's defaults for containers
    /// that have none, for scoring.
    pub non_zero_cpu: i64,
    pub non_zero_memory: i64,
    pub tolerations: Vec<Toleration>,
    pub node_selector: Vec<(String, String)>,
    /// `requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms` (any may match).
    pub required_node_affinity: Option<Vec<NodeSelectorTerm>>,
    pub preferred_node_affinity: Vec<(i64, NodeSelectorTerm)>,
    pub host_ports: Vec<HostPort>,
    pub priority: i64,
    pub preempt_never: bool,
    pub pod_affinity: Vec<AffinityTerm>,
    pub pod_anti_affinity: Vec<AffinityTerm>,
    pub spread: Vec<SpreadConstraint>,
    /// `spec.schedulingGates` is not empty.
    pub gated: bool,
    /// Has a `deletionTimestamp`.
    pub deleting: bool,
}

impl PodInfo {
    /// `None` for an object without a namespace and name.
    pub fn parse(pod: &Value) -> Option<PodInfo> {
        let key = ObjectKey::of(pod)?;
        let namespace = key.namespace.clone()?;
        let meta = pod.get("metadata").unwrap_or(&Value::Null);
        let spec = pod.get("spec").unwrap_or(&Value::Null);
        let labels = meta.get("labels").cloned().unwrap_or(Value::Null);
        let affinity = spec.get("affinity").unwrap_or(&Value::Null);
        let node_affinity = affinity.get("nodeAffinity").unwrap_or(&Value::Null);
        let required_node_affinity = node_affinity
            .get("requiredDuringSchedulingIgnoredDuringExecution")
            .filter(|v| v.is_object())
            .map(|r| items(r.get("nodeSelectorTerms")).iter().map(NodeSelectorTerm::parse).collect());
        let preferred_node_affinity = items(node_affinity.get("preferredDuringSchedulingIgnoredDuringExecution"))
            .iter()
            .filter_map(|p| {
                let weight = p.get("weight").and_then(Value::as_i64).unwrap_or(0);
                let term = NodeSelectorTerm::parse(p.get("preference").unwrap_or(&Value::Null));
                (weight != 0 && term.is_valid()).then_some((weight, term))
            })
            .collect();
        let required_terms = |key: &str| -> Vec<AffinityTerm> {
            let terms = affinity.get(key).and_then(|a| a.get("requiredDuringSchedulingIgnoredDuringExecution"));
            items(terms).iter().map(|t| AffinityTerm::parse(t, &namespace)).collect()
        };
        let sidecars = items(spec.get("initContainers"))
            .iter()
            .filter(|c| c.get("restartPolicy").and_then(Value::as_str) == Some("Always"));
        let host_ports = items(spec.get("containers"))
            .iter()
            .chain(sidecars)
            .flat_map(|c| items(c.get("ports")))
            .filter_map(|p| {
                let port = p.get("hostPort").and_then(Value::as_i64).filter(|p| *p > 0)?;
                let ip = match str_at(p, "hostIP") {
                    "" => "0.0.0.0",
                    ip => ip,
                };
                let protocol = match str_at(p, "protocol") {
                    "" => "TCP",
                    protocol => protocol,
                };
                Some(HostPort { ip: ip.into(), protocol: protocol.into(), port })
            })
            .collect();
        let spread = items(spec.get("topologySpreadConstraints"))
            .iter()
            .filter(|c| str_at(c, "whenUnsatisfiable") == "DoNotSchedule")
            .map(|c| SpreadConstraint::parse(c, &labels))
            .collect();
        let non_zero = pod_requests(spec, true);
        Some(PodInfo {
            uid: str_at(meta, "uid").into(),
            requests: pod_requests(spec, false),
            non_zero_cpu: non_zero.milli_cpu,
            non_zero_memory: non_zero.memory,
            tolerations: items(spec.get("tolerations")).iter().map(Toleration::parse).collect(),
            node_selector: spec
                .get("nodeSelector")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect(),
            required_node_affinity,
            preferred_node_affinity,
            host_ports,
            priority: spec.get("priority").and_then(Value::as_i64).unwrap_or(0),
            preempt_never: str_at(spec, "preemptionPolicy") == "Never",
            pod_affinity: required_terms("podAffinity"),
            pod_anti_affinity: required_terms("podAntiAffinity"),
            spread,
            gated: !items(spec.get("schedulingGates")).is_empty(),
            deleting: meta.get("deletionTimestamp").is_some_and(|t| !t.is_null()),
            key,
            namespace,
            labels,
        })
    }

    /// Whether the pod's node selector and required node affinity admit a node.
    pub fn admits_node(&self, name: &str, labels: Option<&Value>) -> bool {
        let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        if !self.node_selector.iter().all(|(k, v)| label(k) == Some(v.as_str())) {
            return false;
        }
        match &self.required_node_affinity {
            Some(terms) => terms.iter().any(|t| t.matches(name, labels)),
            None => true,
        }
    }
}

/// The pod's node, if it is bound.
pub fn node_name(pod: &Value) -> Option<&str> {
    pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty())
}

/// Whether the pod finished (`Succeeded` or `Failed`): it no longer holds resources.
pub fn is_terminal(pod: &Value) -> bool {
    matches!(pod.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint { key: key.into(), value: value.into(), effect: effect.into() }
    }

    #[test]
    fn tolerations_match_taints_as_kube_does() {
        let t = |v: Value| Toleration::parse(&v);
        let gpu = taint("gpu", "yes", "NoSchedule");
        assert!(t(json!({"key": "gpu", "value": "yes", "effect": "NoSchedule"})).tolerates(&gpu));
        assert!(t(json!({"key": "gpu", "operator": "Equal", "value": "yes"})).tolerates(&gpu));
        assert!(t(json!({"key": "gpu", "operator": "Exists"})).tolerates(&gpu));
        assert!(t(json!({"operator": "Exists"})).tolerates(&gpu));
        assert!(!t(json!({"key": "gpu", "value": "no"})).tolerates(&gpu));
        assert!(!t(json!({"key": "gpu", "operator": "Exists", "effect": "NoExecute"})).tolerates(&gpu));
        assert!(!t(json!({"key": "gpu", "operator": "Bogus"})).tolerates(&gpu));
    }

    #[test]
    fn node_affinity_terms_use_every_operator() {
        let pod = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {
            "nodeSelector": {"disk": "ssd"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [
                    {"key": "zone", "operator": "In", "values": ["a", "b"]},
                    {"key": "cores", "operator": "Gt", "values": ["4"]},
                    {"key": "old", "operator": "DoesNotExist"},
                ]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["special"]}]},
            ]}}},
        }});
        let info = PodInfo::parse(&pod).unwrap();
        let ok = json!({"disk": "ssd", "zone": "a", "cores": "8"});
        assert!(info.admits_node("n1", Some(&ok)));
        assert!(!info.admits_node("n1", Some(&json!({"zone": "a", "cores": "8"}))), "nodeSelector");
        assert!(!info.admits_node("n1", Some(&json!({"disk": "ssd", "zone": "c", "cores": "8"}))));
        assert!(!info.admits_node("n1", Some(&json!({"disk": "ssd", "zone": "a", "cores": "2"}))));
        assert!(!info.admits_node("n1", Some(&json!({"disk": "ssd", "zone": "a", "cores": "8", "old": ""}))));
        assert!(info.admits_node("special", Some(&json!({"disk": "ssd"}))));
    }

    #[test]
    fn pods_parse_ports_priority_and_affinity_terms() {
        let pod = json!({"metadata": {"name": "p", "namespace": "d", "labels": {"app": "web"}, "uid": "u"}, "spec": {
            "priority": 10,
            "containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81}]}],
            "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"},
            ]}},
        }});
        let info = PodInfo::parse(&pod).unwrap();
        assert_eq!(info.priority, 10);
        assert_eq!(info.host_ports, [HostPort { ip: "0.0.0.0".into(), protocol: "TCP".into(), port: 8080 }]);
        let term = &info.pod_anti_affinity[0];
        assert!(term.matches("d", &json!({"app": "web"})));
        assert!(!term.matches("other", &json!({"app": "web"})));
        assert!(!term.matches("d", &json!({"app": "db"})));
    }
}

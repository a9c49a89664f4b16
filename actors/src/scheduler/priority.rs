//! Pod priority as kube's Priority admission resolves it: `spec.priority` when set, else
//! the value of the PriorityClass `spec.priorityClassName` names (the two built-in
//! `system-*-critical` classes included), else the cluster's `globalDefault` class, else 0;
//! `preemptionPolicy` likewise. The scheduler reads it through the PriorityClass informer,
//! so pods created before an admission sets `spec.priority` still get their class's.

use serde_json::Value;

use crate::controller::{Lister, ObjectKey};

/// The value of the built-in `system-cluster-critical` class.
pub const SYSTEM_CLUSTER_CRITICAL: i64 = 2_000_000_000;
/// The value of the built-in `system-node-critical` class.
pub const SYSTEM_NODE_CRITICAL: i64 = 2_000_001_000;

/// A pod's priority and whether it may preempt (`preemptionPolicy: Never` may not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Priority {
    pub value: i64,
    pub preempt_never: bool,
}

fn policy_never(v: Option<&Value>) -> Option<bool> {
    v.and_then(Value::as_str).map(|p| p == "Never")
}

/// What a PriorityClass object says.
fn of_class(class: &Value) -> Priority {
    Priority {
        value: class.get("value").and_then(Value::as_i64).unwrap_or(0),
        preempt_never: policy_never(class.get("preemptionPolicy")).unwrap_or(false),
    }
}

/// The class named `name`: an object of the informer, or a built-in one.
fn class(classes: Option<&Lister>, name: &str) -> Option<Priority> {
    if let Some(class) = classes.and_then(|l| l.get(&ObjectKey::new(None, name))) {
        return Some(of_class(&class));
    }
    match name {
        "system-cluster-critical" => Some(Priority { value: SYSTEM_CLUSTER_CRITICAL, preempt_never: false }),
        "system-node-critical" => Some(Priority { value: SYSTEM_NODE_CRITICAL, preempt_never: false }),
        _ => None,
    }
}

/// The `globalDefault` class, if one is marked so (the lowest valued if several are).
fn global_default(classes: Option<&Lister>) -> Option<Priority> {
    let defaults = classes?.list_where(None, |c| c.get("globalDefault").and_then(Value::as_bool) == Some(true));
    defaults.iter().map(|c| of_class(c)).min_by_key(|p| p.value)
}

/// The pod's priority: its own `spec.priority`, else its class's, else the default class's.
pub fn resolve(pod: &Value, classes: Option<&Lister>) -> Priority {
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let own_policy = policy_never(spec.get("preemptionPolicy"));
    if let Some(value) = spec.get("priority").and_then(Value::as_i64) {
        return Priority { value, preempt_never: own_policy.unwrap_or(false) };
    }
    let named = spec.get("priorityClassName").and_then(Value::as_str).filter(|n| !n.is_empty());
    let from_class = match named {
        Some(name) => class(classes, name),
        None => global_default(classes),
    };
    let mut priority = from_class.unwrap_or_default();
    if let Some(never) = own_policy {
        priority.preempt_never = never;
    }
    priority
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::watch::WatchEvent;

    fn classes(objects: &[Value]) -> Lister {
        let lister = Lister::new(crate::kinds::find("scheduling.k8s.io", "v1", "priorityclasses").unwrap());
        lister.replace(Vec::new());
        for obj in objects {
            lister.apply(&WatchEvent { event_type: "ADDED", object: obj.clone() });
        }
        lister
    }

    #[test]
    fn priority_comes_from_the_pod_its_class_or_the_default_class() {
        let high = json!({"metadata": {"name": "high"}, "value": 1000, "preemptionPolicy": "Never"});
        let default = json!({"metadata": {"name": "base"}, "value": 10, "globalDefault": true});
        let lister = classes(&[high, default]);
        let pod = |spec: Value| json!({"spec": spec});
        assert_eq!(resolve(&pod(json!({"priority": 5})), Some(&lister)).value, 5);
        let classed = resolve(&pod(json!({"priorityClassName": "high"})), Some(&lister));
        assert_eq!(classed, Priority { value: 1000, preempt_never: true });
        let overridden = resolve(
            &pod(json!({"priorityClassName": "high", "preemptionPolicy": "PreemptLowerPriority"})),
            Some(&lister),
        );
        assert!(!overridden.preempt_never);
        assert_eq!(resolve(&pod(json!({})), Some(&lister)).value, 10);
        assert_eq!(resolve(&pod(json!({})), None).value, 0);
        assert_eq!(resolve(&pod(json!({"priorityClassName": "missing"})), Some(&lister)).value, 0);
        let critical = resolve(&pod(json!({"priorityClassName": "system-node-critical"})), None);
        assert_eq!(critical.value, SYSTEM_NODE_CRITICAL);
    }
}

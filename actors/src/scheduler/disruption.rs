//! Pod disruption budgets as the eviction subresource reads them: which budgets select a
//! pod, and how many disruptions a budget allows now. A budget whose status a disruption
//! controller keeps (`status.observedGeneration` current) is taken at its word; one
//! without is computed here from its `minAvailable`/`maxUnavailable` and the ready pods it
//! selects (the pods it selects standing in for their controllers' scale).

use serde_json::Value;

use super::pod_info::{is_terminal, label_selector};
use super::resources::value;

/// What a budget allows now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub name: String,
    pub disruptions_allowed: i64,
    pub desired_healthy: i64,
    pub current_healthy: i64,
    /// Read from the budget's status (kept by a controller), not computed here.
    pub from_status: bool,
}

fn meta<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.pointer(&format!("/metadata/{field}")).and_then(Value::as_str).unwrap_or("")
}

/// Whether `pdb` selects `pod` (same namespace; a null selector selects nothing, `{}`
/// every pod).
pub fn selects(pdb: &Value, pod: &Value) -> bool {
    meta(pdb, "namespace") == meta(pod, "namespace")
        && label_selector(pdb.pointer("/spec/selector"))
            .is_some_and(|s| s.matches(Some(pod.pointer("/metadata/labels").unwrap_or(&Value::Null))))
}

/// Ready, and not on its way out: what a budget counts as healthy.
pub fn is_healthy(pod: &Value) -> bool {
    let ready = pod.pointer("/status/conditions").and_then(Value::as_array).is_some_and(|cs| {
        cs.iter().any(|c| {
            c.get("type").and_then(Value::as_str) == Some("Ready")
                && c.get("status").and_then(Value::as_str) == Some("True")
        })
    });
    ready && pod.pointer("/metadata/deletionTimestamp").is_none_or(Value::is_null)
}

/// An int-or-percent of `total`, rounded up (kube's `GetScaledValueFromIntOrPercent`).
fn scaled(v: &Value, total: i64) -> Option<i64> {
    match v {
        Value::String(s) if s.ends_with('%') => {
            let percent: i64 = s.trim_end_matches('%').parse().ok()?;
            Some(percent.saturating_mul(total).saturating_add(99).div_euclid(100))
        }
        Value::String(_) | Value::Number(_) => Some(value(v)),
        _ => None,
    }
}

/// What `pdb` allows, given `pods`: every pod in its namespace (those it selects count).
pub fn budget<'a>(pdb: &Value, pods: impl IntoIterator<Item = &'a Value>) -> Budget {
    let name = meta(pdb, "name").to_string();
    let status = pdb.get("status").unwrap_or(&Value::Null);
    let observed = status.get("observedGeneration").and_then(Value::as_i64);
    let generation = pdb.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
    let int = |field: &str| status.get(field).and_then(Value::as_i64).unwrap_or(0);
    if observed.is_some_and(|o| o >= generation) {
        return Budget {
            name,
            disruptions_allowed: int("disruptionsAllowed"),
            desired_healthy: int("desiredHealthy"),
            current_healthy: int("currentHealthy"),
            from_status: true,
        };
    }
    let selected: Vec<&Value> = pods.into_iter().filter(|p| selects(pdb, p) && !is_terminal(p)).collect();
    let expected = selected.len() as i64;
    let current_healthy = selected.iter().filter(|p| is_healthy(p)).count() as i64;
    let spec = pdb.get("spec").unwrap_or(&Value::Null);
    let desired_healthy = match (spec.get("minAvailable"), spec.get("maxUnavailable")) {
        (Some(min), _) if !min.is_null() => scaled(min, expected).unwrap_or(expected),
        (_, Some(max)) if !max.is_null() => expected.saturating_sub(scaled(max, expected).unwrap_or(0)),
        // Neither: kube defaults minAvailable to 1.
        _ => 1,
    };
    Budget {
        name,
        disruptions_allowed: current_healthy.saturating_sub(desired_healthy).max(0),
        desired_healthy,
        current_healthy,
        from_status: false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(name: &str, ready: bool) -> Value {
        json!({"metadata": {"name": name, "namespace": "d", "labels": {"app": "web"}},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
    }

    fn pdb(spec: Value) -> Value {
        let mut spec = spec;
        spec["selector"] = json!({"matchLabels": {"app": "web"}});
        json!({"metadata": {"name": "b", "namespace": "d", "generation": 1}, "spec": spec})
    }

    #[test]
    fn budgets_count_the_ready_pods_they_select() {
        let pods = [pod("a", true), pod("b", true), pod("c", false)];
        let other = json!({"metadata": {"name": "x", "namespace": "d", "labels": {"app": "db"}}});
        let all: Vec<&Value> = pods.iter().chain([&other]).collect();
        let min2 = budget(&pdb(json!({"minAvailable": 2})), all.iter().copied());
        assert_eq!((min2.disruptions_allowed, min2.desired_healthy, min2.current_healthy), (0, 2, 2));
        let min1 = budget(&pdb(json!({"minAvailable": 1})), all.iter().copied());
        assert_eq!(min1.disruptions_allowed, 1);
        // maxUnavailable 1 of 3 selected: 2 must stay healthy, 2 are.
        assert_eq!(budget(&pdb(json!({"maxUnavailable": 1})), all.iter().copied()).disruptions_allowed, 0);
        // 50% of 3, rounded up: 2.
        assert_eq!(budget(&pdb(json!({"minAvailable": "50%"})), all.iter().copied()).desired_healthy, 2);
        assert!(!selects(&pdb(json!({})), &other));
    }

    #[test]
    fn a_budget_a_controller_keeps_is_taken_at_its_word() {
        let mut kept = pdb(json!({"minAvailable": 5}));
        kept["status"] =
            json!({"observedGeneration": 1, "disruptionsAllowed": 3, "desiredHealthy": 5, "currentHealthy": 8});
        let b = budget(&kept, []);
        assert_eq!((b.disruptions_allowed, b.from_status), (3, true));
        kept["metadata"]["generation"] = json!(2);
        assert!(!budget(&kept, []).from_status, "a status behind the spec is not read");
    }
}

//! Resource quantities as the scheduler counts them: cpu in millicores, everything else in
//! whole units (bytes, pods, devices), each rounded up as `Quantity.MilliValue()` and
//! `Quantity.Value()` do; a pod's requests as `resourcehelper.PodRequests` sums them.

use std::collections::BTreeMap;

use serde_json::Value;

/// What the scheduler assumes a container without a cpu request uses, for scoring only.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// What the scheduler assumes a container without a memory request uses (200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// A quantity (`"500m"`, `"1.5Gi"`, `"2e3"`, or a JSON number) scaled by `10^scale` and
/// rounded up (away from zero); `None` if it is not a quantity. Saturates at `i64` bounds.
pub fn scaled(quantity: &Value, scale: i32) -> Option<i64> {
    match quantity {
        Value::String(s) => parse_scaled(s.trim(), scale),
        Value::Number(n) => parse_scaled(&n.to_string(), scale),
        _ => None,
    }
}

/// Millicores (or milli-units) of a quantity; 0 if unparsable.
pub fn milli_value(quantity: &Value) -> i64 {
    scaled(quantity, 3).unwrap_or(0)
}

/// Whole units of a quantity; 0 if unparsable.
pub fn value(quantity: &Value) -> i64 {
    scaled(quantity, 0).unwrap_or(0)
}

fn pow10(exp: u32) -> Option<u128> {
    10u128.checked_pow(exp)
}

fn parse_scaled(s: &str, scale: i32) -> Option<i64> {
    let (negative, rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    // Base-10 exponent and power-of-two multiplier of the suffix.
    let (exp10, shift): (i64, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        other if other.len() > 1 && other.starts_with(['e', 'E']) => (other[1..].parse::<i64>().ok()?, 0),
        _ => return None,
    };
    let digits = format!("{whole}{fraction}");
    let digits = digits.trim_start_matches('0');
    let magnitude = if digits.is_empty() {
        0
    } else {
        let Ok(mantissa) = digits.parse::<u128>() else { return Some(saturate(negative)) };
        // value = mantissa * 2^shift * 10^(exp10 + scale - fraction digits)
        let exp = exp10 + i64::from(scale) - fraction.len() as i64;
        let Some(mut n) = mantissa.checked_mul(1u128 << shift) else { return Some(saturate(negative)) };
        if exp >= 0 {
            match u32::try_from(exp).ok().and_then(pow10).and_then(|p| n.checked_mul(p)) {
                Some(v) => n = v,
                None => return Some(saturate(negative)),
            }
        } else {
            match u32::try_from(-exp).ok().and_then(pow10) {
                Some(d) => n = n.div_ceil(d),
                // Smaller than any unit: rounds up to one.
                None => n = 1,
            }
        }
        n
    };
    let clamped = i64::try_from(magnitude).unwrap_or(i64::MAX);
    Some(if negative { -clamped } else { clamped })
}

fn saturate(negative: bool) -> i64 {
    if negative {
        i64::MIN
    } else {
        i64::MAX
    }
}

/// Whether the scheduler counts `name` as a scalar resource: an extended resource
/// (`example.com/foo`), hugepages or attachable volumes.
pub fn is_scalar(name: &str) -> bool {
    name.starts_with("hugepages-") || name.starts_with("attachable-volumes-") || is_extended(name)
}

/// An extended resource: domain-prefixed, outside `kubernetes.io/`, not a quota `requests.` name.
pub fn is_extended(name: &str) -> bool {
    name.contains('/') && !name.contains("kubernetes.io/") && !name.starts_with("requests.")
}

/// Amounts of the resources a pod requests or a node offers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub scalars: BTreeMap<String, i64>,
}

impl Resources {
    /// The resources of a `ResourceList` (`{"cpu": "1", "memory": "1Gi"}`); others ignored.
    pub fn of_list(list: Option<&Value>) -> Resources {
        let mut out = Resources::default();
        for (name, quantity) in list.and_then(Value::as_object).into_iter().flatten() {
            out.add_one(name, quantity);
        }
        out
    }

    fn add_one(&mut self, name: &str, quantity: &Value) {
        match name {
            "cpu" => self.milli_cpu = self.milli_cpu.saturating_add(milli_value(quantity)),
            "memory" => self.memory = self.memory.saturating_add(value(quantity)),
            "ephemeral-storage" => self.ephemeral_storage = self.ephemeral_storage.saturating_add(value(quantity)),
            other if is_scalar(other) => {
                let slot = self.scalars.entry(other.to_string()).or_insert(0);
                *slot = slot.saturating_add(value(quantity));
            }
            _ => {}
        }
    }

    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.saturating_add(other.ephemeral_storage);
        for (name, v) in &other.scalars {
            let slot = self.scalars.entry(name.clone()).or_insert(0);
            *slot = slot.saturating_add(*v);
        }
    }

    pub fn subtract(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_sub(other.milli_cpu);
        self.memory = self.memory.saturating_sub(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.saturating_sub(other.ephemeral_storage);
        for (name, v) in &other.scalars {
            let slot = self.scalars.entry(name.clone()).or_insert(0);
            *slot = slot.saturating_sub(*v);
            if *slot == 0 {
                self.scalars.remove(name);
            }
        }
    }

    /// Each resource the larger of the two.
    fn max_with(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (name, v) in &other.scalars {
            let slot = self.scalars.entry(name.clone()).or_insert(0);
            *slot = (*slot).max(*v);
        }
    }

    /// Whether nothing is requested (kube's `fitsRequest` shortcut).
    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0 && self.memory == 0 && self.ephemeral_storage == 0 && self.scalars.is_empty()
    }
}

/// A container's requests: `resources.requests`, with limits standing in for requests it
/// lacks (as API defaulting sets them). With `non_missing`, a missing cpu or memory
/// request counts as the scheduler's defaults (for scoring).
fn container_requests(container: &Value, non_missing: bool) -> Resources {
    let resources = container.get("resources");
    let requests = resources.and_then(|r| r.get("requests")).and_then(Value::as_object);
    let limits = resources.and_then(|r| r.get("limits")).and_then(Value::as_object);
    let mut out = Resources::default();
    let seen = |name: &str| requests.is_some_and(|r| r.contains_key(name));
    for (name, quantity) in requests.into_iter().flatten() {
        out.add_one(name, quantity);
    }
    for (name, quantity) in limits.into_iter().flatten() {
        if !seen(name) {
            out.add_one(name, quantity);
        }
    }
    if non_missing {
        let has = |name: &str| seen(name) || limits.is_some_and(|l| l.contains_key(name));
        if !has("cpu") {
            out.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if !has("memory") {
            out.memory = DEFAULT_MEMORY_REQUEST;
        }
    }
    out
}

/// A pod's requests, as `resourcehelper.PodRequests`: the sum over containers and sidecars
/// (init containers with `restartPolicy: Always`), or the largest init container (plus the
/// sidecars started before it) if larger, plus `spec.overhead`.
pub fn pod_requests(spec: &Value, non_missing: bool) -> Resources {
    let list = |key: &str| spec.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let mut total = Resources::default();
    for container in list("containers") {
        total.add(&container_requests(container, non_missing));
    }
    let mut sidecars = Resources::default();
    let mut init_max = Resources::default();
    for container in list("initContainers") {
        let mut requests = container_requests(container, non_missing);
        if container.get("restartPolicy").and_then(Value::as_str) == Some("Always") {
            total.add(&requests);
            sidecars.add(&requests);
            requests = sidecars.clone();
        } else {
            requests.add(&sidecars);
        }
        init_max.max_with(&requests);
    }
    total.max_with(&init_max);
    total.add(&Resources::of_list(spec.get("overhead")));
    total
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn quantities_round_up_to_millis_and_units() {
        assert_eq!(milli_value(&json!("500m")), 500);
        assert_eq!(milli_value(&json!("1")), 1000);
        assert_eq!(milli_value(&json!("0.1")), 100);
        assert_eq!(milli_value(&json!("1.5")), 1500);
        assert_eq!(milli_value(&json!(2)), 2000);
        assert_eq!(milli_value(&json!(0.25)), 250);
        assert_eq!(milli_value(&json!("100u")), 1);
        assert_eq!(value(&json!("1Gi")), 1 << 30);
        assert_eq!(value(&json!("8Gi")), 8 << 30);
        assert_eq!(value(&json!("1.5Gi")), 3 << 29);
        assert_eq!(value(&json!("128974848")), 128_974_848);
        assert_eq!(value(&json!("129e6")), 129_000_000);
        assert_eq!(value(&json!("123Mi")), 123 << 20);
        assert_eq!(value(&json!("1k")), 1000);
        assert_eq!(value(&json!("500m")), 1);
        assert_eq!(value(&json!("1e100")), i64::MAX);
        assert_eq!(value(&json!("1e-100")), 1);
        assert_eq!(scaled(&json!("abc"), 0), None);
        assert_eq!(scaled(&json!("5Xi"), 0), None);
        assert_eq!(value(&json!("-1")), -1);
    }

    #[test]
    fn pod_requests_take_the_larger_of_containers_and_init_containers_plus_overhead() {
        let spec = json!({
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "200m", "memory": "100Mi"}}},
                {"name": "b", "resources": {"limits": {"cpu": "300m", "example.com/gpu": "1"}}},
            ],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2", "memory": "10Mi"}}}],
            "overhead": {"cpu": "10m"},
        });
        let r = pod_requests(&spec, false);
        assert_eq!(r.milli_cpu, 2010);
        assert_eq!(r.memory, 100 << 20);
        assert_eq!(r.scalars.get("example.com/gpu"), Some(&1));
        // Scoring counts a container without requests as 100m and 200Mi.
        let empty = json!({"containers": [{"name": "a"}, {"name": "b", "resources": {"requests": {"cpu": "0"}}}]});
        let r = pod_requests(&empty, true);
        assert_eq!((r.milli_cpu, r.memory), (100, 2 * DEFAULT_MEMORY_REQUEST));
        assert!(pod_requests(&empty, false).is_zero());
    }

    #[test]
    fn sidecars_add_to_containers_and_to_later_init_containers() {
        let spec = json!({
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}],
            "initContainers": [
                {"name": "s", "restartPolicy": "Always", "resources": {"requests": {"cpu": "500m"}}},
                {"name": "i", "resources": {"requests": {"cpu": "1800m"}}},
            ],
        });
        assert_eq!(pod_requests(&spec, false).milli_cpu, 2300);
    }
}

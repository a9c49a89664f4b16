//! Pods that found no node (kube's unschedulable pods and backoff queue): each is tried
//! again when something that could help happens (a node added or changed, a pod gone, the
//! pod itself changed), but not before its backoff (1 s doubling to 10 s) has passed, and
//! at the latest 5 minutes after its last attempt.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::controller::ObjectKey;

/// kube's `podInitialBackoffDuration`.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// kube's `podMaxBackoffDuration`.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// kube's `podMaxInUnschedulablePodsDuration`: tried again after this even if nothing moved.
pub const FLUSH: Duration = Duration::from_secs(300);

/// What of a pod decides where it can go: its spec and labels.
pub fn fingerprint(pod: &Value) -> u64 {
    let mut h = DefaultHasher::new();
    pod.get("spec").map(Value::to_string).hash(&mut h);
    pod.pointer("/metadata/labels").map(Value::to_string).hash(&mut h);
    h.finish()
}

/// The delay after `attempts` failed attempts.
pub fn backoff(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(8);
    INITIAL_BACKOFF.saturating_mul(1 << doublings).min(MAX_BACKOFF)
}

#[derive(Debug)]
struct Pending {
    uid: String,
    attempts: u32,
    last_attempt: Instant,
    /// The cache generation and pod fingerprint at the last attempt.
    generation: u64,
    fingerprint: u64,
    /// Requeues already asked for (so that wake-ups do not pile timers up).
    timers: Vec<Instant>,
}

/// What to do with a pending pod now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Try to schedule it.
    Attempt,
    /// Not yet: look again after this long (`None`: a requeue is already due by then).
    Wait(Option<Duration>),
}

/// The pods that found no node.
#[derive(Debug, Default)]
pub struct Unschedulable {
    pods: HashMap<ObjectKey, Pending>,
}

impl Unschedulable {
    pub fn keys(&self) -> Vec<ObjectKey> {
        self.pods.keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    pub fn forget(&mut self, key: &ObjectKey) {
        self.pods.remove(key);
    }

    /// Whether to try `key` now: not before its backoff, and before the flush only if the
    /// cluster (`generation`) or the pod (`fingerprint`) changed since its last attempt.
    pub fn gate(&mut self, key: &ObjectKey, uid: &str, generation: u64, fingerprint: u64, now: Instant) -> Gate {
        let Some(p) = self.pods.get_mut(key) else { return Gate::Attempt };
        if p.uid != uid {
            self.pods.remove(key);
            return Gate::Attempt;
        }
        p.timers.retain(|t| *t > now);
        let due = p.last_attempt + backoff(p.attempts);
        if now < due {
            return wait_until(p, due, now);
        }
        let changed = p.generation != generation || p.fingerprint != fingerprint;
        let flush = p.last_attempt + FLUSH;
        if changed || now >= flush {
            Gate::Attempt
        } else {
            wait_until(p, flush, now)
        }
    }

    /// Records a failed attempt; returns when to try again if nothing happens meanwhile.
    pub fn failed(&mut self, key: &ObjectKey, uid: &str, generation: u64, fingerprint: u64, now: Instant) -> Duration {
        let p = self.pods.entry(key.clone()).or_insert_with(|| Pending {
            uid: uid.to_string(),
            attempts: 0,
            last_attempt: now,
            generation,
            fingerprint,
            timers: Vec::new(),
        });
        p.attempts += 1;
        p.last_attempt = now;
        p.generation = generation;
        p.fingerprint = fingerprint;
        p.timers.push(now + FLUSH);
        FLUSH
    }
}

fn wait_until(p: &mut Pending, at: Instant, now: Instant) -> Gate {
    if p.timers.iter().any(|t| *t <= at) {
        return Gate::Wait(None);
    }
    p.timers.push(at);
    Gate::Wait(Some(at.saturating_duration_since(now)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_to_ten() {
        let delays: Vec<u64> = (1..=6).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn a_pending_pod_waits_out_its_backoff_then_goes_only_if_something_changed() {
        let mut q = Unschedulable::default();
        let key = ObjectKey::new(Some("d"), "p");
        let t0 = Instant::now();
        assert_eq!(q.gate(&key, "u", 1, 9, t0), Gate::Attempt);
        assert_eq!(q.failed(&key, "u", 1, 9, t0), FLUSH);
        // Woken at once: wait for the backoff, once.
        assert_eq!(q.gate(&key, "u", 2, 9, t0), Gate::Wait(Some(INITIAL_BACKOFF)));
        assert_eq!(q.gate(&key, "u", 2, 9, t0), Gate::Wait(None));
        let later = t0 + INITIAL_BACKOFF;
        assert_eq!(q.gate(&key, "u", 2, 9, later), Gate::Attempt, "the cluster changed");
        assert_eq!(q.gate(&key, "u", 1, 9, later), Gate::Wait(None), "nothing changed; the flush timer is set");
        assert_eq!(q.gate(&key, "u", 1, 8, later), Gate::Attempt, "the pod changed");
        assert_eq!(q.gate(&key, "u", 1, 9, t0 + FLUSH), Gate::Attempt);
        assert_eq!(q.gate(&key, "other", 1, 9, later), Gate::Attempt, "a new pod of the same name");
        assert!(q.is_empty());
    }
}

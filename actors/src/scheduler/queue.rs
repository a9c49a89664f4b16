//! Pods that found no node (kube's unschedulable pods and backoff queue): each is tried
//! again when something that could help happens (a node added or changed, a pod gone, the
//! pod itself changed), but not before its backoff (1 s doubling to 10 s) has passed, and
//! at the latest 5 minutes after its last attempt. [`Unschedulable::take_ready`] hands out
//! every pod ready again at once, so that the active queue orders them (priority, then
//! creation) as kube's backoff flush does.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
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

/// One failed attempt: the pod's identity and order, the cluster and pod it failed on.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    pub uid: &'a str,
    /// The cache generation at the attempt.
    pub generation: u64,
    /// The pod's [`fingerprint`].
    pub fingerprint: u64,
    pub priority: i64,
    /// `metadata.creationTimestamp`.
    pub created: &'a str,
}

#[derive(Debug)]
struct Pending {
    uid: String,
    priority: i64,
    created: String,
    attempts: u32,
    last_attempt: Instant,
    /// The cache generation and pod fingerprint at the last attempt.
    generation: u64,
    fingerprint: u64,
    /// The pod changed since its last attempt.
    changed: bool,
    /// Handed out by [`Unschedulable::take_ready`] and not attempted since.
    queued: bool,
}

impl Pending {
    fn backoff_until(&self) -> Instant {
        self.last_attempt + backoff(self.attempts)
    }

    /// Something that could help happened since the last attempt.
    fn moved(&self, generation: u64) -> bool {
        self.changed || self.generation != generation
    }
}

/// What [`Unschedulable::touch`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Touched {
    /// Not a pending pod (or a new pod of the same name, now forgotten): try it now.
    New,
    /// Pending; it goes when [`Unschedulable::take_ready`] says.
    Pending,
}

/// The pods that found no node.
#[derive(Debug, Default)]
pub struct Unschedulable {
    pods: HashMap<ObjectKey, Pending>,
    /// When each failed attempt's flush falls due (stale entries are skipped).
    due: BinaryHeap<Reverse<(Instant, ObjectKey)>>,
    /// Something moved since the pods were last looked over.
    dirty: bool,
    /// When a pod that moved comes out of its backoff.
    next_backoff: Option<Instant>,
    /// The cache generation when the pods were last looked over.
    scanned: u64,
    /// Where the backoff flush ticks count from (the first failure).
    epoch: Option<Instant>,
}

impl Unschedulable {
    /// The pending pods, higher priority first, then older first.
    pub fn keys(&self) -> Vec<ObjectKey> {
        let mut pods: Vec<(&ObjectKey, &Pending)> = self.pods.iter().collect();
        pods.sort_by(|(ka, a), (kb, b)| {
            (Reverse(a.priority), &a.created, ka).cmp(&(Reverse(b.priority), &b.created, kb))
        });
        pods.into_iter().map(|(k, _)| k.clone()).collect()
    }

    pub fn contains(&self, key: &ObjectKey) -> bool {
        self.pods.contains_key(key)
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

    /// The cluster changed: every pending pod may fit now.
    pub fn wake(&mut self) {
        self.dirty = true;
    }

    /// The pod at `key` was seen as `uid` with `fingerprint`: a change of its own counts
    /// as something that could help.
    pub fn touch(&mut self, key: &ObjectKey, uid: &str, fingerprint: u64) -> Touched {
        let Some(p) = self.pods.get_mut(key) else { return Touched::New };
        if p.uid != uid {
            self.pods.remove(key);
            return Touched::New;
        }
        if p.fingerprint != fingerprint && !p.changed {
            p.changed = true;
            self.dirty = true;
        }
        Touched::Pending
    }

    /// The pods to try again now, in order: those that something moved for and whose
    /// backoff is over, and those whose last attempt is [`FLUSH`] old. Also when to look
    /// again for pods still in their backoff.
    pub fn take_ready(&mut self, generation: u64, now: Instant) -> (Vec<ObjectKey>, Option<Instant>) {
        let mut ready: Vec<ObjectKey> = Vec::new();
        if self.dirty || self.scanned != generation || self.next_backoff.is_some_and(|t| t <= now) {
            self.dirty = false;
            self.scanned = generation;
            self.next_backoff = None;
            for (key, p) in self.pods.iter_mut().filter(|(_, p)| !p.queued && p.moved(generation)) {
                let until = p.backoff_until();
                if until <= now {
                    p.queued = true;
                    ready.push(key.clone());
                } else {
                    let tick = flush_tick(self.epoch.unwrap_or(now), until);
                    self.next_backoff = Some(self.next_backoff.map_or(tick, |t| t.min(tick)));
                }
            }
        }
        while let Some(Reverse((at, _))) = self.due.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, key))) = self.due.pop() else { break };
            if let Some(p) = self.pods.get_mut(&key).filter(|p| !p.queued && p.last_attempt + FLUSH == at) {
                p.queued = true;
                ready.push(key);
            }
        }
        ready.sort_by(|a, b| {
            let order = |k: &ObjectKey| self.pods.get(k).map(|p| (Reverse(p.priority), p.created.clone()));
            order(a).cmp(&order(b)).then_with(|| a.cmp(b))
        });
        (ready, self.next_backoff)
    }

    /// Records a failed attempt; returns when to try again if nothing happens meanwhile.
    pub fn failed(&mut self, key: &ObjectKey, attempt: Attempt<'_>, now: Instant) -> Duration {
        self.epoch.get_or_insert(now);
        let p = self.pods.entry(key.clone()).or_insert_with(|| Pending {
            uid: attempt.uid.to_string(),
            priority: attempt.priority,
            created: attempt.created.to_string(),
            attempts: 0,
            last_attempt: now,
            generation: attempt.generation,
            fingerprint: attempt.fingerprint,
            changed: false,
            queued: false,
        });
        if p.uid != attempt.uid {
            p.uid = attempt.uid.to_string();
            p.attempts = 0;
        }
        p.attempts += 1;
        p.last_attempt = now;
        p.generation = attempt.generation;
        p.fingerprint = attempt.fingerprint;
        p.priority = attempt.priority;
        p.changed = false;
        p.queued = false;
        self.due.push(Reverse((now + FLUSH, key.clone())));
        FLUSH
    }
}

/// The first backoff flush tick at or after `at`: every [`INITIAL_BACKOFF`], half a tick
/// after `epoch` (the first failure; kube flushes its backoff queue each second), so that
/// pods whose backoffs end close together, as pods that failed in one burst, come out
/// together, in priority order.
fn flush_tick(epoch: Instant, at: Instant) -> Instant {
    let grid = epoch + INITIAL_BACKOFF / 2;
    let since = at.saturating_duration_since(grid).as_nanos();
    let tick = INITIAL_BACKOFF.as_nanos();
    let ticks = since.div_ceil(tick);
    let offset = Duration::from_nanos(u64::try_from(ticks.saturating_mul(tick)).unwrap_or(u64::MAX));
    grid.checked_add(offset).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(uid: &str, generation: u64, fingerprint: u64, priority: i64) -> Attempt<'_> {
        Attempt { uid, generation, fingerprint, priority, created: "2026-01-01T00:00:00Z" }
    }

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
        assert_eq!(q.touch(&key, "u", 9), Touched::New);
        assert_eq!(q.failed(&key, attempt("u", 1, 9, 0), t0), FLUSH);
        assert_eq!(q.touch(&key, "u", 9), Touched::Pending);
        // Nothing moved: not even after the backoff.
        assert_eq!(q.take_ready(1, t0 + INITIAL_BACKOFF), (vec![], None));
        // The cluster moved: not before the backoff (at the next flush tick), then once.
        let tick = t0 + INITIAL_BACKOFF + INITIAL_BACKOFF / 2;
        assert_eq!(q.take_ready(2, t0), (vec![], Some(tick)));
        assert_eq!(q.take_ready(2, tick), (vec![key.clone()], None));
        assert_eq!(q.take_ready(2, tick).0, Vec::<ObjectKey>::new(), "handed out once");
        // Failed again: the pod itself changed.
        let t1 = tick;
        q.failed(&key, attempt("u", 2, 9, 0), t1);
        q.touch(&key, "u", 8);
        assert_eq!(q.take_ready(2, t1 + backoff(2)).0, std::slice::from_ref(&key));
        // A new pod of the same name is not pending.
        assert_eq!(q.touch(&key, "other", 8), Touched::New);
        assert!(q.is_empty());
    }

    #[test]
    fn pods_ready_together_come_by_priority_and_each_falls_due_after_the_flush() {
        let mut q = Unschedulable::default();
        let t0 = Instant::now();
        let (low, high) = (ObjectKey::new(Some("d"), "low"), ObjectKey::new(Some("d"), "high"));
        q.failed(&low, attempt("l", 1, 1, 0), t0);
        q.failed(&high, attempt("h", 1, 1, 100), t0 + Duration::from_millis(500));
        assert_eq!(q.keys(), [high.clone(), low.clone()]);
        q.wake();
        let later = t0 + Duration::from_secs(2);
        assert_eq!(q.take_ready(2, later).0, [high.clone(), low.clone()]);
        q.failed(&low, attempt("l", 2, 1, 0), later);
        q.failed(&high, attempt("h", 2, 1, 100), later);
        assert!(q.take_ready(2, later + FLUSH - Duration::from_millis(1)).0.is_empty());
        assert_eq!(q.take_ready(2, later + FLUSH).0, [high, low]);
    }

    #[test]
    fn backoffs_that_end_between_two_flush_ticks_come_out_together_by_priority() {
        let mut q = Unschedulable::default();
        let t0 = Instant::now();
        let (low, high) = (ObjectKey::new(Some("d"), "low"), ObjectKey::new(Some("d"), "high"));
        q.failed(&low, attempt("l", 1, 1, 0), t0 + Duration::from_millis(100));
        q.failed(&high, attempt("h", 1, 1, 100), t0 + Duration::from_millis(300));
        let woken = t0 + Duration::from_millis(400);
        let (ready, tick) = q.take_ready(2, woken);
        assert!(ready.is_empty());
        let tick = tick.unwrap();
        assert_eq!(tick, t0 + Duration::from_millis(1600), "the first tick after both backoffs (1.1 s, 1.3 s)");
        assert_eq!(q.take_ready(2, tick).0, [high, low]);
    }
}

//! The pods waiting for a scheduling attempt, in kube's activeQ order: higher priority
//! first, then earlier creation, then arrival. Each pod is in it at most once.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};

use crate::controller::ObjectKey;

/// Where a pod sorts: (higher priority first, older first, first come first).
type Order = (Reverse<i64>, String, u64);

/// The active queue.
#[derive(Debug, Default)]
pub struct ActiveQueue {
    order: BTreeSet<(Order, ObjectKey)>,
    index: HashMap<ObjectKey, Order>,
    arrivals: u64,
}

impl ActiveQueue {
    /// Queues a pod of `priority` created at `created` (an RFC 3339 timestamp); a pod already
    /// queued keeps its place unless its priority changed.
    pub fn push(&mut self, key: &ObjectKey, priority: i64, created: &str) {
        if let Some(order) = self.index.get(key) {
            if order.0 == Reverse(priority) {
                return;
            }
            let old = (order.clone(), key.clone());
            self.order.remove(&old);
        }
        self.arrivals += 1;
        let order = (Reverse(priority), created.to_string(), self.arrivals);
        self.order.insert((order.clone(), key.clone()));
        self.index.insert(key.clone(), order);
    }

    /// The first pod in order, taken out.
    pub fn pop(&mut self) -> Option<ObjectKey> {
        let (_, key) = self.order.pop_first()?;
        self.index.remove(&key);
        Some(key)
    }

    pub fn remove(&mut self, key: &ObjectKey) {
        if let Some(order) = self.index.remove(key) {
            self.order.remove(&(order, key.clone()));
        }
    }

    /// The queued pods, in order.
    pub fn keys(&self) -> Vec<ObjectKey> {
        self.order.iter().map(|(_, k)| k.clone()).collect()
    }

    pub fn contains(&self, key: &ObjectKey) -> bool {
        self.index.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new(Some("d"), name)
    }

    #[test]
    fn pods_come_out_by_priority_then_creation_then_arrival() {
        let mut q = ActiveQueue::default();
        q.push(&key("low-old"), 0, "2026-01-01T00:00:00Z");
        q.push(&key("high"), 100, "2026-01-01T00:00:09Z");
        q.push(&key("low-new"), 0, "2026-01-01T00:00:05Z");
        q.push(&key("low-same-second"), 0, "2026-01-01T00:00:05Z");
        q.push(&key("negative"), -5, "2026-01-01T00:00:00Z");
        q.push(&key("low-old"), 0, "2026-01-01T00:00:00Z");
        assert_eq!(q.len(), 5, "a queued pod is there once");
        let order: Vec<String> = std::iter::from_fn(|| q.pop()).map(|k| k.name).collect();
        assert_eq!(order, ["high", "low-old", "low-new", "low-same-second", "negative"]);
        assert!(q.is_empty());
    }

    #[test]
    fn a_pod_whose_priority_changes_moves_and_a_removed_one_goes() {
        let mut q = ActiveQueue::default();
        q.push(&key("a"), 0, "t1");
        q.push(&key("b"), 0, "t2");
        q.push(&key("b"), 10, "t2");
        q.push(&key("c"), 0, "t3");
        q.remove(&key("c"));
        assert!(!q.contains(&key("c")));
        assert_eq!(q.pop().map(|k| k.name), Some("b".into()));
        assert_eq!(q.pop().map(|k| k.name), Some("a".into()));
        assert_eq!(q.pop(), None);
    }
}

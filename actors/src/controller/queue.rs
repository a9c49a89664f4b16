//! A controller's work queue, as client-go's rate-limited workqueue: each key at most once
//! in the queue and never in two reconciles at once (a key added while it is being worked on
//! is queued again when that work is done), and per-key exponential backoff on failure.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::time::Duration;

/// The first retry's delay; each further failure doubles it.
pub const BASE_DELAY: Duration = Duration::from_millis(5);
/// The longest retry delay.
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// After this many failures in a row a key is retried only every [`MAX_DELAY`].
pub const MAX_RETRIES: u32 = 15;

/// The queue of keys `K`.
#[derive(Debug)]
pub struct WorkQueue<K> {
    queue: VecDeque<K>,
    queued: HashSet<K>,
    processing: HashSet<K>,
    /// Added while being processed: queued again by [`WorkQueue::done`].
    dirty: HashSet<K>,
    failures: HashMap<K, u32>,
}

impl<K> Default for WorkQueue<K> {
    fn default() -> Self {
        WorkQueue {
            queue: VecDeque::new(),
            queued: HashSet::new(),
            processing: HashSet::new(),
            dirty: HashSet::new(),
            failures: HashMap::new(),
        }
    }
}

impl<K: Clone + Eq + Hash> WorkQueue<K> {
    /// Queues `key` unless it is queued already (or marks it to go again after its work).
    pub fn add(&mut self, key: K) {
        if self.processing.contains(&key) {
            self.dirty.insert(key);
        } else if self.queued.insert(key.clone()) {
            self.queue.push_back(key);
        }
    }

    /// The next key to work on, marked as being processed.
    pub fn take_next(&mut self) -> Option<K> {
        let key = self.queue.pop_front()?;
        self.queued.remove(&key);
        self.processing.insert(key.clone());
        Some(key)
    }

    /// The work on `key` is finished; it goes again if it was added meanwhile.
    pub fn done(&mut self, key: &K) {
        self.processing.remove(key);
        if let Some(key) = self.dirty.take(key) {
            self.add(key);
        }
    }

    /// `key` succeeded: its backoff starts over.
    pub fn forget(&mut self, key: &K) {
        self.failures.remove(key);
    }

    /// `key` failed: how long to wait before adding it again.
    pub fn backoff(&mut self, key: &K) -> Duration {
        let failures = self.failures.entry(key.clone()).or_insert(0);
        *failures += 1;
        if *failures > MAX_RETRIES {
            return MAX_DELAY;
        }
        let delay = BASE_DELAY.saturating_mul(1 << (*failures - 1).min(20));
        delay.min(MAX_DELAY)
    }

    /// Keys waiting (not counting those being processed).
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Keys being processed.
    pub fn in_progress(&self) -> usize {
        self.processing.len()
    }

    /// Forgets everything (the controller lost leadership or restarts).
    pub fn clear(&mut self) {
        *self = WorkQueue::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_queued_once_and_never_worked_on_twice_at_once() {
        let mut q = WorkQueue::default();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        assert_eq!(q.take_next(), Some("a"));
        // Added while in progress: not handed out again until done.
        q.add("a");
        assert_eq!(q.take_next(), Some("b"));
        assert_eq!(q.take_next(), None);
        q.done(&"a");
        assert_eq!(q.take_next(), Some("a"));
        q.done(&"a");
        q.done(&"b");
        assert!(q.is_empty());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut q = WorkQueue::default();
        let delays: Vec<_> = (0..4).map(|_| q.backoff(&"k")).collect();
        assert_eq!(delays, [BASE_DELAY, BASE_DELAY * 2, BASE_DELAY * 4, BASE_DELAY * 8]);
        for _ in 0..20 {
            q.backoff(&"k");
        }
        assert_eq!(q.backoff(&"k"), MAX_DELAY);
        q.forget(&"k");
        assert_eq!(q.backoff(&"k"), BASE_DELAY);
    }
}

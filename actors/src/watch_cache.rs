//! A resource kind's watch cache: the current objects under a key prefix and a ring of
//! recent events, kept at a known store revision and fed by the store's watch stream.
//!
//! It answers gets and (paged) lists at its revision, and "every event after revision R"
//! for watches, or says R is too old (the API turns that into 410 Gone). It is a plain
//! struct: the kind actor owns one and feeds it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use raft_store::{EventKind, KeyValue, RangeResponse, Revision, RevisionEvents};

/// One change as the cache keeps it; objects are shared with the cache's current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedEvent {
    pub revision: Revision,
    pub kind: EventKind,
    /// The object after the change (for a delete: the object as it was before).
    pub object: Arc<KeyValue>,
    pub prev: Option<Arc<KeyValue>>,
}

impl CachedEvent {
    /// The cached form of a store event at `revision` that the cache does not hold (a
    /// replay from the store's history): the previous object comes from the event.
    pub fn from_store(revision: Revision, event: &raft_store::Event) -> CachedEvent {
        let prev = event.prev_kv.clone().map(Arc::new);
        let object = match event.kind {
            EventKind::Put => Arc::new(event.kv.clone()),
            EventKind::Delete => {
                let mut gone = event.prev_kv.clone().unwrap_or_else(|| event.kv.clone());
                gone.mod_revision = revision;
                Arc::new(gone)
            }
        };
        CachedEvent { revision, kind: event.kind, object, prev }
    }
}

/// Why the cache cannot serve a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    /// Events after this revision are no longer in the ring.
    #[error("too old resource version: {requested} (oldest available: {oldest})")]
    TooOld { requested: Revision, oldest: Revision },
    /// A batch out of order: the feed and the cache disagree, so the cache must relist.
    #[error("event at revision {got} does not follow cache revision {at}")]
    OutOfOrder { at: Revision, got: Revision },
}

pub struct WatchCache {
    objects: BTreeMap<Vec<u8>, Arc<KeyValue>>,
    events: VecDeque<CachedEvent>,
    capacity: usize,
    /// The cache holds every change up to and including this revision.
    revision: Revision,
    /// Every event after this revision is in the ring.
    oldest: Revision,
}

impl WatchCache {
    /// An empty cache keeping at most `capacity` recent events; fill it with [`Self::reset`].
    pub fn new(capacity: usize) -> Self {
        WatchCache {
            objects: BTreeMap::new(),
            events: VecDeque::new(),
            capacity: capacity.max(1),
            revision: 0,
            oldest: 0,
        }
    }

    /// Replaces the contents with a list taken from the store at `list.revision`.
    pub fn reset(&mut self, list: RangeResponse) {
        self.objects = list.kvs.into_iter().map(|kv| (kv.key.clone(), Arc::new(kv))).collect();
        self.events.clear();
        self.revision = list.revision;
        self.oldest = list.revision;
    }

    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// Every event after this revision is in the ring.
    pub fn oldest(&self) -> Revision {
        self.oldest
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Applies one revision from the store's watch (an empty batch only moves the revision).
    pub fn apply(&mut self, batch: &RevisionEvents) -> Result<(), CacheError> {
        if batch.revision < self.revision || (batch.revision == self.revision && !batch.events.is_empty()) {
            return Err(CacheError::OutOfOrder { at: self.revision, got: batch.revision });
        }
        for event in &batch.events {
            let prev = self.objects.get(&event.kv.key).cloned();
            let object = match event.kind {
                EventKind::Put => {
                    let object = Arc::new(event.kv.clone());
                    self.objects.insert(event.kv.key.clone(), object.clone());
                    object
                }
                EventKind::Delete => {
                    self.objects.remove(&event.kv.key);
                    // A delete shows the last state of the object, at the deleting revision.
                    let last = prev.clone().or_else(|| event.prev_kv.clone().map(Arc::new));
                    let mut gone = last.map(|kv| (*kv).clone()).unwrap_or_else(|| event.kv.clone());
                    gone.mod_revision = batch.revision;
                    Arc::new(gone)
                }
            };
            self.push(CachedEvent { revision: batch.revision, kind: event.kind, object, prev });
        }
        self.revision = batch.revision;
        Ok(())
    }

    fn push(&mut self, event: CachedEvent) {
        if self.events.len() == self.capacity {
            if let Some(dropped) = self.events.pop_front() {
                self.oldest = dropped.revision;
            }
        }
        self.events.push_back(event);
    }

    pub fn get(&self, key: &[u8]) -> Option<Arc<KeyValue>> {
        self.objects.get(key).cloned()
    }

    /// Objects under `prefix` after `start_after`, at most `limit` (0: all), and whether
    /// more remain.
    pub fn list(&self, prefix: &[u8], start_after: Option<&[u8]>, limit: usize) -> (Vec<Arc<KeyValue>>, bool) {
        self.list_matching(prefix, start_after, limit, |_| true)
    }

    /// [`Self::list`] of the objects `keep` selects: the walk stops once `limit` (0: all)
    /// are found, and "more remain" means more keys follow under the prefix, selected or
    /// not, as kube-apiserver pages selector lists (a next page may then be empty).
    pub fn list_matching(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
        mut keep: impl FnMut(&KeyValue) -> bool,
    ) -> (Vec<Arc<KeyValue>>, bool) {
        use std::ops::Bound;
        let lower = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after.to_vec()),
            _ => Bound::Included(prefix.to_vec()),
        };
        let mut matching = self.objects.range((lower, Bound::Unbounded)).take_while(|(k, _)| k.starts_with(prefix));
        let mut out = Vec::new();
        for (_, object) in matching.by_ref() {
            if limit > 0 && out.len() == limit {
                return (out, true);
            }
            if keep(object) {
                out.push(object.clone());
            }
        }
        (out, false)
    }

    /// Every cached event after `revision`, in order.
    pub fn events_after(&self, revision: Revision) -> Result<Vec<CachedEvent>, CacheError> {
        if revision < self.oldest {
            return Err(CacheError::TooOld { requested: revision, oldest: self.oldest });
        }
        let start = self.events.partition_point(|e| e.revision <= revision);
        Ok(self.events.range(start..).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use raft_store::Event;

    use super::*;

    fn kv(key: &str, value: &str, rev: Revision) -> KeyValue {
        KeyValue { key: key.into(), value: value.into(), create_revision: rev, mod_revision: rev, version: 1 }
    }

    fn put(rev: Revision, key: &str, value: &str) -> RevisionEvents {
        RevisionEvents {
            revision: rev,
            events: vec![Event { kind: EventKind::Put, kv: kv(key, value, rev), prev_kv: None }],
        }
    }

    fn delete(rev: Revision, key: &str) -> RevisionEvents {
        let tomb = KeyValue { key: key.into(), value: vec![], create_revision: 0, mod_revision: rev, version: 0 };
        RevisionEvents { revision: rev, events: vec![Event { kind: EventKind::Delete, kv: tomb, prev_kv: None }] }
    }

    fn cache_at_10() -> WatchCache {
        let mut cache = WatchCache::new(3);
        cache.reset(RangeResponse {
            revision: 10,
            kvs: vec![kv("/p/a", "1", 5), kv("/p/b", "1", 6)],
            count: 2,
            more: false,
        });
        cache
    }

    #[test]
    fn applied_events_update_objects_and_are_served_after_a_revision() {
        let mut cache = cache_at_10();
        cache.apply(&put(11, "/p/c", "1")).unwrap();
        cache.apply(&delete(12, "/p/a")).unwrap();
        assert_eq!(cache.revision(), 12);
        assert!(cache.get(b"/p/a").is_none());
        let events = cache.events_after(10).unwrap();
        assert_eq!(
            events.iter().map(|e| (e.revision, e.kind)).collect::<Vec<_>>(),
            vec![(11, EventKind::Put), (12, EventKind::Delete)]
        );
        let deleted = &events[1];
        assert_eq!(
            (deleted.object.value.as_slice(), deleted.object.mod_revision),
            (&b"1"[..], 12),
            "last state, at the deleting revision"
        );
        assert_eq!(cache.events_after(11).unwrap().len(), 1);
        assert!(cache.events_after(12).unwrap().is_empty());
    }

    #[test]
    fn events_that_fell_out_of_the_ring_are_too_old() {
        let mut cache = cache_at_10();
        for rev in 11..=15 {
            cache.apply(&put(rev, "/p/x", "v")).unwrap();
        }
        // Capacity 3 keeps revisions 13..=15: a watch from 12 or later is complete.
        assert_eq!(cache.events_after(12).unwrap().len(), 3);
        assert_eq!(cache.events_after(11), Err(CacheError::TooOld { requested: 11, oldest: 12 }));
    }

    #[test]
    fn progress_moves_the_revision_and_disorder_is_refused() {
        let mut cache = cache_at_10();
        cache.apply(&RevisionEvents { revision: 14, events: vec![] }).unwrap();
        assert_eq!(cache.revision(), 14);
        assert!(cache.events_after(10).unwrap().is_empty());
        assert_eq!(cache.apply(&put(13, "/p/late", "v")), Err(CacheError::OutOfOrder { at: 14, got: 13 }));
    }

    #[test]
    fn lists_page_in_key_order() {
        let mut cache = cache_at_10();
        cache.apply(&put(11, "/p/c", "1")).unwrap();
        cache.apply(&put(12, "/q/a", "1")).unwrap();
        let (page, more) = cache.list(b"/p/", None, 2);
        assert_eq!(page.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>(), vec![b"/p/a".to_vec(), b"/p/b".to_vec()]);
        assert!(more);
        let (rest, more) = cache.list(b"/p/", Some(b"/p/b"), 2);
        assert_eq!(rest.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>(), vec![b"/p/c".to_vec()]);
        assert!(!more);
        assert_eq!(cache.list(b"", None, 0).0.len(), 4);
    }

    #[test]
    fn filtered_lists_count_only_kept_objects_and_stop_at_the_limit() {
        let mut cache = cache_at_10();
        for (rev, key) in [(11, "/p/c"), (12, "/p/d"), (13, "/p/e")] {
            cache.apply(&put(rev, key, "1")).unwrap();
        }
        let odd = |kv: &KeyValue| matches!(kv.key.as_slice(), b"/p/a" | b"/p/c" | b"/p/e");
        let keys = |page: &[Arc<KeyValue>]| page.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>();
        let (page, more) = cache.list_matching(b"/p/", None, 2, odd);
        assert_eq!((keys(&page), more), (vec![b"/p/a".to_vec(), b"/p/c".to_vec()], true));
        let (page, more) = cache.list_matching(b"/p/", Some(b"/p/c"), 2, odd);
        assert_eq!((keys(&page), more), (vec![b"/p/e".to_vec()], false));
        // The limit reached on the last key: nothing follows, so no more.
        let (page, more) = cache.list_matching(b"/p/", Some(b"/p/a"), 2, odd);
        assert_eq!((keys(&page), more), (vec![b"/p/c".to_vec(), b"/p/e".to_vec()], false));
        // Keys follow the limit but none is kept: more (the next page is empty), as kube.
        let (page, more) = cache.list_matching(b"/p/", None, 1, |kv: &KeyValue| kv.key == b"/p/a");
        assert_eq!((keys(&page), more), (vec![b"/p/a".to_vec()], true));
    }
}

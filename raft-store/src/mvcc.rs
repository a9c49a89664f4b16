//! etcd's MVCC model on RocksDB column families: transactions, ranges at a revision, the
//! per-revision event log that feeds watches, and compaction of history.
//!
//! The state machine is the only writer. It applies a Raft entry's transactions into one
//! `WriteBatch`, reading through an [`Overlay`] of the entry's earlier writes, so readers
//! (which use RocksDB snapshots) always see the state after a whole number of entries.

use std::sync::Arc;

use rocksdb::{Direction, IteratorMode, SnapshotWithThreadMode, WriteBatch, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::db::{cf, CF_EVENTS, CF_HIST, CF_KV, CF_META};
use crate::error::{Rejection, Result, StoreError};
use crate::keys;
use crate::types::*;

const META_REVISION: &[u8] = b"sm/revision";
const META_COMPACTED: &[u8] = b"sm/compacted";
/// How far [`compact_history`] got (it trails `META_COMPACTED`).
const META_HISTORY_COMPACTED: &[u8] = b"sm/history_compacted";

pub type Snapshot<'a> = SnapshotWithThreadMode<'a, DB>;

/// What the entry being applied has written so far, not yet in the database.
#[derive(Debug, Default)]
pub struct Overlay {
    /// key -> current value (`None`: deleted).
    writes: std::collections::HashMap<Vec<u8>, Option<KeyValue>>,
    /// The newest revision whose history is in the database (the revision before the entry).
    settled: Revision,
    /// Current values as of `settled`, consulted before the database.
    cache: CurrentCache,
}

impl Overlay {
    pub fn new(settled: Revision) -> Self {
        Overlay { writes: Default::default(), settled, cache: CurrentCache::default() }
    }

    /// An overlay that reads through `cache`, which must hold the database's state as of
    /// `settled` (the state machine keeps it so).
    pub fn with_cache(settled: Revision, cache: CurrentCache) -> Self {
        Overlay { writes: Default::default(), settled, cache }
    }

    /// The cache with this entry's writes in it: call only once the entry's batch is written.
    pub fn into_cache(self) -> CurrentCache {
        let mut cache = self.cache;
        for (key, value) in self.writes {
            cache.insert(key, value);
        }
        cache
    }
}

/// Most bytes [`CurrentCache`] holds before it starts over.
const CURRENT_CACHE_BYTES: usize = 64 << 20;

/// The current value (or absence) of recently written keys, kept by the state machine so
/// that a transaction reads a key's previous version from memory, not from RocksDB (a
/// memtable lookup per put was ~12% of a member's CPU under load). It is a cache, not an
/// index: a key it does not hold is read from the database, and when it outgrows its budget
/// it is emptied. The state machine is the only writer, so it stays exact by taking each
/// entry's writes after they are in the database, and by being emptied when a snapshot
/// replaces the state.
#[derive(Debug, Default)]
pub struct CurrentCache {
    values: std::collections::HashMap<Vec<u8>, Option<KeyValue>>,
    bytes: usize,
}

impl CurrentCache {
    fn get(&self, key: &[u8]) -> Option<&Option<KeyValue>> {
        self.values.get(key)
    }

    /// Removes `key`'s entry and returns it.
    fn take(&mut self, key: &[u8]) -> Option<Option<KeyValue>> {
        let value = self.values.remove(key)?;
        self.bytes -= Self::size(key, &value);
        Some(value)
    }

    /// Rough footprint: the key twice (map and value), the value, and fixed overhead.
    fn size(key: &[u8], value: &Option<KeyValue>) -> usize {
        2 * key.len() + value.as_ref().map_or(0, |kv| kv.value.len()) + 96
    }

    fn insert(&mut self, key: Vec<u8>, value: Option<KeyValue>) {
        let added = Self::size(&key, &value);
        if let Some(old) = self.values.get(&key) {
            self.bytes -= Self::size(&key, old);
        }
        if self.bytes + added > CURRENT_CACHE_BYTES {
            self.values.clear();
            self.bytes = 0;
        }
        self.bytes += added;
        self.values.insert(key, value);
    }
}

/// The state-machine records of the entry being applied, gathered in one buffer so that
/// each column family's records reach the `WriteBatch` in key order: RocksDB inserts a
/// batch into a memtable skiplist one record at a time, starting each search from where
/// the previous insert landed, so sorted inserts at random keys search less (the inserts
/// were ~35% of `tests/apply_cost.rs`' CPU). The bytes written are the same.
#[derive(Debug, Default)]
pub struct EntryWrites {
    buf: Vec<u8>,
    /// kv key -> encoded value (`None`: delete), in the order written.
    kv: Vec<(Span, Option<Span>)>,
    hist: Vec<(Span, Span)>,
    events: Vec<(Span, Span)>,
}

type Span = std::ops::Range<usize>;

impl EntryWrites {
    fn bytes(&mut self, bytes: &[u8]) -> Span {
        let start = self.buf.len();
        self.buf.extend_from_slice(bytes);
        start..self.buf.len()
    }

    fn encoded<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<Span> {
        let start = self.buf.len();
        bincode::serialize_into(&mut self.buf, v).map_err(|e| StoreError::Storage(format!("encode: {e}")))?;
        Ok(start..self.buf.len())
    }

    fn put_kv(&mut self, kv: &KeyValue) -> Result<()> {
        let key = self.bytes(&kv.key);
        let value = self.encoded(kv)?;
        self.kv.push((key, Some(value)));
        Ok(())
    }

    fn delete_kv(&mut self, key: &[u8]) {
        let key = self.bytes(key);
        self.kv.push((key, None));
    }

    /// The version of `key` made at `rev` (`None`: deleted there).
    fn put_hist(&mut self, key: &[u8], rev: Revision, version: Option<&KeyValue>) -> Result<()> {
        let start = self.buf.len();
        keys::push_hist_key(&mut self.buf, key, rev);
        let hist_key = start..self.buf.len();
        let value = self.encoded(&version)?;
        self.hist.push((hist_key, value));
        Ok(())
    }

    fn put_events(&mut self, events: &RevisionEvents) -> Result<()> {
        let key = self.bytes(&keys::revision_key(events.revision));
        let value = self.encoded(events)?;
        self.events.push((key, value));
        Ok(())
    }

    /// Moves the records into `batch`, each column family's in key order, and empties
    /// itself (keeping its buffers). The sort is stable: a kv key written twice in the
    /// entry keeps its writes in order, so the later one wins as before.
    pub fn write_into(&mut self, db: &DB, batch: &mut WriteBatch) -> Result<()> {
        let buf = &self.buf;
        self.kv.sort_by(|a, b| buf[a.0.clone()].cmp(&buf[b.0.clone()]));
        self.hist.sort_by(|a, b| buf[a.0.clone()].cmp(&buf[b.0.clone()]));
        self.events.sort_by(|a, b| buf[a.0.clone()].cmp(&buf[b.0.clone()]));
        let kv_cf = cf(db, CF_KV)?;
        for (key, value) in &self.kv {
            match value {
                Some(value) => batch.put_cf(kv_cf, &buf[key.clone()], &buf[value.clone()]),
                None => batch.delete_cf(kv_cf, &buf[key.clone()]),
            }
        }
        for (name, records) in [(CF_HIST, &self.hist), (CF_EVENTS, &self.events)] {
            let handle = cf(db, name)?;
            for (key, value) in records {
                batch.put_cf(handle, &buf[key.clone()], &buf[value.clone()]);
            }
        }
        self.clear();
        Ok(())
    }

    /// Forgets every record (an entry that failed half-way).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.kv.clear();
        self.hist.clear();
        self.events.clear();
    }
}

pub fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    bincode::serialize(v).map_err(|e| StoreError::Storage(format!("encode: {e}")))
}

pub fn decode<T: DeserializeOwned>(raw: &[u8]) -> Result<T> {
    bincode::deserialize(raw).map_err(|e| StoreError::Storage(format!("corrupt record: {e}")))
}

/// Revision counters of the applied state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Revisions {
    pub current: Revision,
    pub compacted: Revision,
}

/// MVCC reads and writes over the member's database.
#[derive(Clone)]
pub struct Mvcc {
    db: Arc<DB>,
}

impl Mvcc {
    pub fn new(db: Arc<DB>) -> Self {
        Mvcc { db }
    }

    /// Revision counters as of a consistent snapshot.
    pub fn revisions(&self) -> Result<Revisions> {
        let snap = self.db.snapshot();
        self.revisions_in(&snap)
    }

    fn revisions_in(&self, snap: &Snapshot<'_>) -> Result<Revisions> {
        let meta = cf(&self.db, CF_META)?;
        let read = |key: &[u8]| -> Result<Revision> {
            Ok(snap.get_cf(meta, key)?.map(|raw| decode(&raw)).transpose()?.unwrap_or(0))
        };
        Ok(Revisions { current: read(META_REVISION)?, compacted: read(META_COMPACTED)? })
    }

    /// Serves a range read at the current revision or at `req.revision`.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        let snap = self.db.snapshot();
        let revs = self.revisions_in(&snap)?;
        self.range_in(&snap, &Overlay::new(revs.current), revs, req).map_err(|e| e.into_store_error())
    }

    /// Revisions made earlier in the entry being applied are only readable as the current state.
    fn range_in(
        &self,
        snap: &Snapshot<'_>,
        overlay: &Overlay,
        revs: Revisions,
        req: &RangeRequest,
    ) -> Result<RangeResponse, ReadError> {
        let at = check_revision(req, overlay.settled, revs)?;
        let mut resp = RangeResponse { revision: at, kvs: Vec::new(), count: 0, more: false };
        let mut visit = |kv: KeyValue| {
            resp.count += 1;
            if req.count_only || (req.limit > 0 && resp.kvs.len() as u64 >= req.limit) {
                return;
            }
            let kv = if req.keys_only { KeyValue { value: Vec::new(), ..kv } } else { kv };
            resp.kvs.push(kv);
        };
        if at == revs.current {
            self.scan_current(snap, overlay, req, &mut visit)?;
        } else {
            self.scan_history(snap, req, at, &mut visit)?;
        }
        resp.more = req.limit > 0 && resp.count > req.limit;
        Ok(resp)
    }

    /// Visits the current value of every key in range, in key order, overlay included.
    fn scan_current(
        &self,
        snap: &Snapshot<'_>,
        overlay: &Overlay,
        req: &RangeRequest,
        visit: &mut dyn FnMut(KeyValue),
    ) -> Result<()> {
        let after = |key: &[u8]| req.start_after.as_ref().is_none_or(|a| key > a.as_slice());
        let touched: Vec<(&Vec<u8>, &Option<KeyValue>)> =
            overlay.writes.iter().filter(|(k, _)| req.keys.contains(k) && after(k)).collect();
        if !touched.is_empty() {
            // Rare (a range or delete over keys this entry already wrote): merge in memory.
            let mut merged = std::collections::BTreeMap::new();
            self.scan_stored(snap, req, &mut |kv| {
                merged.insert(kv.key.clone(), kv);
            })?;
            for (key, value) in touched {
                match value {
                    Some(kv) => merged.insert(key.clone(), kv.clone()),
                    None => merged.remove(key),
                };
            }
            merged.into_values().for_each(visit);
            return Ok(());
        }
        self.scan_stored(snap, req, visit)
    }

    fn scan_stored(&self, snap: &Snapshot<'_>, req: &RangeRequest, visit: &mut dyn FnMut(KeyValue)) -> Result<()> {
        let kv_cf = cf(&self.db, CF_KV)?;
        match &req.keys {
            KeySet::Key(key) => {
                if req.start_after.as_ref().is_some_and(|after| key <= after) {
                    return Ok(());
                }
                if let Some(raw) = snap.get_cf(kv_cf, key)? {
                    visit(decode(&raw)?);
                }
            }
            KeySet::Prefix(prefix) => {
                let start = match &req.start_after {
                    Some(after) if after.as_slice() >= prefix.as_slice() => keys::successor(after),
                    _ => prefix.clone(),
                };
                for item in snap.iterator_cf(kv_cf, IteratorMode::From(&start, Direction::Forward)) {
                    let (key, raw) = item?;
                    if !key.starts_with(prefix) {
                        break;
                    }
                    visit(decode(&raw)?);
                }
            }
        }
        Ok(())
    }

    /// Visits, for every key in range, its newest version at or before `at` unless deleted.
    fn scan_history(
        &self,
        snap: &Snapshot<'_>,
        req: &RangeRequest,
        at: Revision,
        visit: &mut dyn FnMut(KeyValue),
    ) -> Result<()> {
        let hist = cf(&self.db, CF_HIST)?;
        let (prefix, exact) = match &req.keys {
            KeySet::Key(k) => (k.clone(), true),
            KeySet::Prefix(p) => (p.clone(), false),
        };
        let enc_prefix = keys::escape(&prefix);
        let start = match &req.start_after {
            Some(after) if after.as_slice() >= prefix.as_slice() => keys::hist_after_key(after),
            _ => enc_prefix.clone(),
        };
        let mut pending: Option<(Vec<u8>, Option<KeyValue>)> = None;
        let mut flush = |pending: &mut Option<(Vec<u8>, Option<KeyValue>)>| {
            if let Some((_, Some(kv))) = pending.take() {
                visit(kv);
            }
        };
        for item in snap.iterator_cf(hist, IteratorMode::From(&start, Direction::Forward)) {
            let (raw_key, raw) = item?;
            if !raw_key.starts_with(&enc_prefix) {
                break;
            }
            let (key, rev) =
                keys::decode_hist_key(&raw_key).ok_or_else(|| StoreError::Storage("corrupt history key".into()))?;
            if exact && key != prefix {
                break;
            }
            if pending.as_ref().is_some_and(|(k, _)| *k != key) {
                flush(&mut pending);
            }
            if rev <= at {
                let version: Option<KeyValue> = decode(&raw)?;
                pending = Some((key, version));
            } else if pending.is_none() {
                // Only newer versions so far: remember the key with no visible version.
                pending = Some((key, None));
            }
        }
        flush(&mut pending);
        Ok(())
    }

    /// Events with revision >= `from` touching `keys`, and the newest revision the read saw
    /// (so a caller can continue from there).
    pub fn events_since(&self, keys: &KeySet, from: Revision) -> Result<(Vec<RevisionEvents>, Revision)> {
        let snap = self.db.snapshot();
        let revs = self.revisions_in(&snap)?;
        if from < revs.compacted {
            return Err(StoreError::Compacted { requested: from, compacted: revs.compacted });
        }
        let events_cf = cf(&self.db, CF_EVENTS)?;
        let mut out = Vec::new();
        let start = keys::revision_key(from.max(0));
        for item in snap.iterator_cf(events_cf, IteratorMode::From(&start, Direction::Forward)) {
            let (_, raw) = item?;
            let mut batch: RevisionEvents = decode(&raw)?;
            batch.events.retain(|e| keys.contains(&e.kv.key));
            if !batch.events.is_empty() {
                out.push(batch);
            }
        }
        Ok((out, revs.current))
    }

    /// Applies one transaction of an entry into `out`, reading `snap` (the state before the
    /// entry) through `overlay` (the entry's earlier writes), which it then updates. The caller
    /// moves `out` into the entry's batch and writes it, with the revision counter, once for
    /// the whole entry.
    /// Returns the response and the events of the new revision (none if nothing changed).
    pub fn apply_txn(
        &self,
        snap: &Snapshot<'_>,
        overlay: &mut Overlay,
        txn: Txn,
        revs: &mut Revisions,
        out: &mut EntryWrites,
    ) -> Result<Result<(TxnResponse, Option<RevisionEvents>), Rejection>> {
        let kv_cf = cf(&self.db, CF_KV)?;
        let stored =
            |key: &[u8]| -> Result<Option<KeyValue>> { snap.get_cf(kv_cf, key)?.map(|r| decode(&r)).transpose() };

        let mut succeeded = true;
        for c in &txn.compare {
            let holds = match overlay.writes.get(&c.key).or_else(|| overlay.cache.get(&c.key)) {
                Some(value) => compare_holds(c, value.as_ref()),
                None => compare_holds(c, stored(&c.key)?.as_ref()),
            };
            if !holds {
                succeeded = false;
                break;
            }
        }
        let ops = if succeeded { txn.success } else { txn.failure };
        // Refuse before writing anything: a rejected transaction leaves no trace in the batch.
        for op in &ops {
            if let Op::Range(req) = op {
                if let Err(rejection) = check_revision(req, overlay.settled, *revs) {
                    return Ok(Err(rejection));
                }
            }
        }
        let rev = revs.current + 1;
        let mut events = Vec::new();
        let mut responses = Vec::with_capacity(ops.len());
        // Reads within the transaction see the state before it (etcd: no key is written twice).
        let mut writes: Vec<(Vec<u8>, Option<KeyValue>)> = Vec::new();
        for op in ops {
            match op {
                Op::Put { key, value, prev_kv } => {
                    // The previous version: a cached one is moved out, not copied (the key's
                    // new version replaces it once the entry is written; until then a read
                    // of the key finds the same version in `snap`).
                    let prev = match overlay.writes.get(&key) {
                        Some(value) => value.clone(),
                        None => match overlay.cache.take(&key) {
                            Some(value) => value,
                            None => stored(&key)?,
                        },
                    };
                    let kv = KeyValue {
                        create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
                        mod_revision: rev,
                        version: prev.as_ref().map_or(1, |p| p.version + 1),
                        key,
                        value,
                    };
                    out.put_kv(&kv)?;
                    out.put_hist(&kv.key, rev, Some(&kv))?;
                    writes.push((kv.key.clone(), Some(kv.clone())));
                    let answer = if prev_kv { prev.clone() } else { None };
                    events.push(Event { kind: EventKind::Put, kv, prev_kv: prev });
                    responses.push(OpResponse::Put { prev: answer });
                }
                Op::Delete { keys: set } => {
                    let mut deleted = Vec::new();
                    let req = RangeRequest { keys: set, ..RangeRequest::prefix(Vec::new()) };
                    self.scan_current(snap, overlay, &req, &mut |kv| deleted.push(kv))?;
                    for prev in &deleted {
                        out.delete_kv(&prev.key);
                        out.put_hist(&prev.key, rev, None)?;
                        writes.push((prev.key.clone(), None));
                        let tomb = KeyValue {
                            key: prev.key.clone(),
                            value: Vec::new(),
                            create_revision: 0,
                            mod_revision: rev,
                            version: 0,
                        };
                        events.push(Event { kind: EventKind::Delete, kv: tomb, prev_kv: Some(prev.clone()) });
                    }
                    responses.push(OpResponse::Delete { deleted });
                }
                Op::Range(req) => match self.range_in(snap, overlay, *revs, &req) {
                    Ok(resp) => responses.push(OpResponse::Range(resp)),
                    Err(ReadError::Rejected(r)) => return Ok(Err(r)),
                    Err(ReadError::Store(e)) => return Err(e),
                },
            }
        }
        if events.is_empty() {
            return Ok(Ok((TxnResponse { succeeded, revision: revs.current, responses }, None)));
        }
        overlay.writes.extend(writes);
        let rev_events = RevisionEvents { revision: rev, events };
        out.put_events(&rev_events)?;
        revs.current = rev;
        Ok(Ok((TxnResponse { succeeded, revision: rev, responses }, Some(rev_events))))
    }

    /// Records the revision counter in `batch` (once per entry).
    pub fn write_revision(&self, revs: &Revisions, batch: &mut WriteBatch) -> Result<()> {
        batch.put_cf(cf(&self.db, CF_META)?, META_REVISION, encode(&revs.current)?);
        Ok(())
    }

    /// Compacts at `rev`: reads and watches before it fail from now on, and events older
    /// than it go. The history versions it makes unreachable are left to [`compact_history`].
    pub fn apply_compact(
        &self,
        rev: Revision,
        revs: &mut Revisions,
        batch: &mut WriteBatch,
    ) -> Result<Result<Revision, Rejection>> {
        if rev > revs.current {
            return Ok(Err(Rejection::FutureRevision { requested: rev, current: revs.current }));
        }
        if rev <= revs.compacted {
            return Ok(Err(Rejection::Compacted { requested: rev, compacted: revs.compacted }));
        }
        // Reads and watches before `rev` fail from here on; the versions no read can reach
        // any more are deleted later, off the apply path ([`compact_history`]).
        let events_cf = cf(&self.db, CF_EVENTS)?;
        batch.delete_range_cf(events_cf, keys::revision_key(0), keys::revision_key(rev));
        batch.put_cf(cf(&self.db, CF_META)?, META_COMPACTED, encode(&rev)?);
        revs.compacted = rev;
        Ok(Ok(rev))
    }
}

/// History records read per chunk of [`compact_history`] (the database is held open only
/// for one chunk at a time).
const COMPACT_CHUNK: usize = 10_000;

/// Deletes the history versions that a compaction at `rev` made unreachable: every version
/// of a key that a newer version at or before `rev` hides, and a key's newest version at or
/// before `rev` too when it is a tombstone. Then records `rev` as done (a restart after a
/// crash does it again). One pass over the history, in chunks, decoding no values.
///
/// Safe beside concurrent applies: they only add versions after the current revision, and
/// whatever is unreachable at `rev` stays so in every later state (an installed snapshot
/// included: it is the same history). Returns the versions deleted, or `None` if the
/// database closed meanwhile.
pub fn compact_history(db: &std::sync::Weak<DB>, rev: Revision) -> Result<Option<u64>> {
    // The newest version at or before `rev` seen so far of the key being scanned (its record
    // and whether it is live), and that key's encoded form.
    let mut newest: Option<(Vec<u8>, bool)> = None;
    let mut current: Vec<u8> = Vec::new();
    let mut resume: Option<Vec<u8>> = None;
    let mut deleted = 0u64;
    loop {
        let Some(db) = db.upgrade() else { return Ok(None) };
        let hist = cf(&db, CF_HIST)?;
        let mut batch = WriteBatch::default();
        let from = resume.take();
        let mode = match &from {
            Some(key) => IteratorMode::From(key, Direction::Forward),
            None => IteratorMode::Start,
        };
        for (read, item) in db.iterator_cf(hist, mode).enumerate() {
            let (raw_key, raw) = item?;
            if read == COMPACT_CHUNK {
                resume = Some(raw_key.to_vec());
                break;
            }
            let (key, krev) =
                keys::split_hist_key(&raw_key).ok_or_else(|| StoreError::Storage("corrupt history key".into()))?;
            if key != current.as_slice() {
                drop_if_tombstone(&mut newest, &mut batch, hist);
                current.clear();
                current.extend_from_slice(key);
            }
            if krev <= rev {
                if let Some((older, _)) = newest.replace((raw_key.to_vec(), !is_tombstone(&raw))) {
                    batch.delete_cf(hist, older);
                }
            }
        }
        let finished = resume.is_none();
        if finished {
            drop_if_tombstone(&mut newest, &mut batch, hist);
        }
        deleted += batch.len() as u64;
        if finished {
            batch.put_cf(cf(&db, CF_META)?, META_HISTORY_COMPACTED, encode(&rev)?);
        }
        crate::db::write_state_machine(&db, batch)?;
        if finished {
            return Ok(Some(deleted));
        }
    }
}

/// The end of a key's versions in [`compact_history`]: its newest version at or before the
/// compacted revision stays unless it is a tombstone.
fn drop_if_tombstone(newest: &mut Option<(Vec<u8>, bool)>, batch: &mut WriteBatch, hist: &rocksdb::ColumnFamily) {
    if let Some((raw_key, false)) = newest.take() {
        batch.delete_cf(hist, raw_key);
    }
}

/// The revision up to which [`compact_history`] last finished (0 if never).
pub fn history_compacted(db: &DB) -> Result<Revision> {
    Ok(db.get_cf(cf(db, CF_META)?, META_HISTORY_COMPACTED)?.map(|raw| decode(&raw)).transpose()?.unwrap_or(0))
}

/// Whether a history record (an encoded `Option<KeyValue>`) is a deletion: bincode writes
/// `None` as the single byte 0 and `Some` as 1 and the value.
fn is_tombstone(raw: &[u8]) -> bool {
    raw == [0]
}

/// The revision a range reads at, or why it cannot. `settled`: see [`Overlay`].
fn check_revision(req: &RangeRequest, settled: Revision, revs: Revisions) -> Result<Revision, Rejection> {
    let at = if req.revision <= 0 { revs.current } else { req.revision };
    if at > revs.current || (at > settled && at < revs.current) {
        // No client can have seen a revision made inside the entry being applied.
        return Err(Rejection::FutureRevision { requested: at, current: settled });
    }
    if req.revision > 0 && at < revs.compacted {
        return Err(Rejection::Compacted { requested: at, compacted: revs.compacted });
    }
    Ok(at)
}

/// Range reads can fail because of the request (deterministic) or because of storage.
enum ReadError {
    Rejected(Rejection),
    Store(StoreError),
}

impl ReadError {
    fn into_store_error(self) -> StoreError {
        match self {
            ReadError::Rejected(r) => r.into(),
            ReadError::Store(e) => e,
        }
    }
}

impl From<Rejection> for ReadError {
    fn from(r: Rejection) -> Self {
        ReadError::Rejected(r)
    }
}

impl From<StoreError> for ReadError {
    fn from(e: StoreError) -> Self {
        ReadError::Store(e)
    }
}

fn compare_holds(c: &Compare, kv: Option<&KeyValue>) -> bool {
    use std::cmp::Ordering;
    let ord: Ordering = match &c.target {
        CompareTarget::Version(v) => kv.map_or(0, |kv| kv.version).cmp(v),
        CompareTarget::CreateRevision(r) => kv.map_or(0, |kv| kv.create_revision).cmp(r),
        CompareTarget::ModRevision(r) => kv.map_or(0, |kv| kv.mod_revision).cmp(r),
        CompareTarget::Value(v) => match kv {
            Some(kv) => kv.value.as_slice().cmp(v.as_slice()),
            // etcd: a value compare against a missing key is false whatever the operator.
            None => return false,
        },
    };
    match c.op {
        CompareOp::Equal => ord == Ordering::Equal,
        CompareOp::NotEqual => ord != Ordering::Equal,
        CompareOp::Greater => ord == Ordering::Greater,
        CompareOp::Less => ord == Ordering::Less,
    }
}

/// Checks a transaction before it is proposed: each key is written at most once per branch,
/// as in etcd, so no operation depends on an earlier one in the same branch.
pub fn validate_txn(txn: &Txn) -> Result<()> {
    for branch in [&txn.success, &txn.failure] {
        let mut puts: Vec<&[u8]> = Vec::new();
        let mut deletes: Vec<&KeySet> = Vec::new();
        for op in branch {
            match op {
                Op::Put { key, .. } => {
                    if puts.contains(&key.as_slice()) {
                        return Err(StoreError::InvalidArgument("duplicate key given in txn request".into()));
                    }
                    puts.push(key);
                }
                Op::Delete { keys } => deletes.push(keys),
                Op::Range(_) => {}
            }
        }
        if puts.iter().any(|k| deletes.iter().any(|d| d.contains(k))) {
            return Err(StoreError::InvalidArgument("a key is both put and deleted in one txn branch".into()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

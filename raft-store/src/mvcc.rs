//! etcd's MVCC model on RocksDB column families: transactions, ranges at a revision, the
//! history that feeds watches, and compaction of history.
//!
//! Every change writes one [`Version`] twice: under its key in `kv` (the newest version of
//! each key, deletions included until compaction passes them) and under its [`Position`] in
//! `hist`, appended in revision order. Each version points at the key's previous one, so a
//! read at a past revision walks back from the newest, and a watch reads `hist` in order.
//!
//! The state machine is the only writer of new versions. It applies a Raft entry's
//! transactions into one `WriteBatch`, reading through an [`Overlay`] of the entry's earlier
//! writes, so readers (which use RocksDB snapshots) always see the state after a whole
//! number of entries.

use std::sync::{Arc, Mutex, MutexGuard};

use rocksdb::{ColumnFamily, Direction, IteratorMode, SnapshotWithThreadMode, WriteBatch, DB};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::db::{cf, CF_HIST, CF_KV, CF_META};
use crate::error::{Rejection, Result, StoreError};
use crate::keys;
use crate::types::*;

const META_REVISION: &[u8] = b"sm/revision";
const META_COMPACTED: &[u8] = b"sm/compacted";
/// How far [`compact_history`] got (it trails `META_COMPACTED`).
const META_HISTORY_COMPACTED: &[u8] = b"sm/history_compacted";

pub type Snapshot<'a> = SnapshotWithThreadMode<'a, DB>;

/// Where a version sits in the history: the revision that made it and its place among that
/// revision's changes (etcd's main and sub revision).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    pub rev: Revision,
    pub sub: u32,
}

impl Position {
    /// "No version": a key's first version points at it.
    pub const NONE: Position = Position { rev: 0, sub: 0 };
}

/// One version of a key, as stored in `kv` and `hist`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub at: Position,
    /// The key's previous version ([`Position::NONE`] if it had none).
    pub prev: Position,
    /// A deletion: `kv` then holds only the key and the deleting revision (the event's
    /// tombstone).
    pub deleted: bool,
    pub kv: KeyValue,
}

/// The leading fields of an encoded [`Version`] (bincode writes fields in order), decoded
/// without the value.
#[derive(Debug, Deserialize)]
struct VersionHeader {
    at: Position,
    prev: Position,
    deleted: bool,
}

impl Version {
    fn live(&self) -> Option<&KeyValue> {
        (!self.deleted).then_some(&self.kv)
    }

    fn into_live(self) -> Option<KeyValue> {
        (!self.deleted).then_some(self.kv)
    }
}

/// The live value of a key whose newest version is `v`.
fn live(v: Option<&Version>) -> Option<&KeyValue> {
    v.and_then(Version::live)
}

/// What the entry being applied has written so far, not yet in the database.
#[derive(Debug, Default)]
pub struct Overlay {
    /// key -> its newest version (deletions included).
    writes: std::collections::HashMap<Vec<u8>, Version>,
    /// The newest revision whose history is in the database (the revision before the entry).
    settled: Revision,
    /// Newest versions as of `settled`, consulted before the database.
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
        for (key, version) in self.writes {
            cache.insert(key, Some(version));
        }
        cache
    }
}

/// Most bytes [`CurrentCache`] holds before it starts over.
const CURRENT_CACHE_BYTES: usize = 64 << 20;

/// The newest version (or absence) of recently written keys, kept by the state machine so
/// that a transaction reads a key's previous version from memory, not from RocksDB (a
/// memtable lookup per put was ~12% of a member's CPU under load). It is a cache, not an
/// index: a key it does not hold is read from the database, and when it outgrows its budget
/// it is emptied. The state machine is the only writer of versions, so it stays exact by
/// taking each entry's writes after they are in the database, and by being emptied when a
/// snapshot replaces the state. (The compactor may drop a cached deletion from `kv`; the
/// cached copy then only names a previous version that reads treat the same way.)
#[derive(Debug, Default)]
pub struct CurrentCache {
    values: std::collections::HashMap<Vec<u8>, Option<Version>>,
    bytes: usize,
}

impl CurrentCache {
    fn get(&self, key: &[u8]) -> Option<&Option<Version>> {
        self.values.get(key)
    }

    /// Removes `key`'s entry and returns it.
    fn take(&mut self, key: &[u8]) -> Option<Option<Version>> {
        let value = self.values.remove(key)?;
        self.bytes -= Self::size(key, &value);
        Some(value)
    }

    /// Rough footprint: the key twice (map and value), the value, and fixed overhead.
    fn size(key: &[u8], value: &Option<Version>) -> usize {
        2 * key.len() + value.as_ref().map_or(0, |v| v.kv.value.len()) + 128
    }

    fn insert(&mut self, key: Vec<u8>, value: Option<Version>) {
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
/// the `kv` records reach the `WriteBatch` in key order: RocksDB inserts a batch into a
/// memtable skiplist one record at a time, starting each search from where the previous
/// insert landed, so sorted inserts at random keys search less. (`hist` records are made in
/// position order already.)
#[derive(Debug, Default)]
pub struct EntryWrites {
    buf: Vec<u8>,
    /// (key, encoded version) for `kv`, in the order written, and (position, encoded
    /// version) for `hist`: the two share each version's bytes.
    kv: Vec<(Span, Span)>,
    hist: Vec<([u8; keys::POSITION_KEY_LEN], Span)>,
}

type Span = std::ops::Range<usize>;

impl EntryWrites {
    fn put_version(&mut self, version: &Version) -> Result<()> {
        let start = self.buf.len();
        self.buf.extend_from_slice(&version.kv.key);
        let key = start..self.buf.len();
        let start = self.buf.len();
        bincode::serialize_into(&mut self.buf, version).map_err(|e| StoreError::Storage(format!("encode: {e}")))?;
        let value = start..self.buf.len();
        self.kv.push((key, value.clone()));
        self.hist.push((keys::position_key(version.at), value));
        Ok(())
    }

    /// Moves the records into `batch`, `kv`'s in key order, and empties itself (keeping its
    /// buffers). The sort is stable: a key written twice in the entry keeps its writes in
    /// order, so the later one wins as before.
    pub fn write_into(&mut self, db: &DB, batch: &mut WriteBatch) -> Result<()> {
        let buf = &self.buf;
        self.kv.sort_by(|a, b| buf[a.0.clone()].cmp(&buf[b.0.clone()]));
        let kv_cf = cf(db, CF_KV)?;
        for (key, value) in &self.kv {
            batch.put_cf(kv_cf, &buf[key.clone()], &buf[value.clone()]);
        }
        let hist_cf = cf(db, CF_HIST)?;
        for (key, value) in &self.hist {
            batch.put_cf(hist_cf, key, &buf[value.clone()]);
        }
        self.clear();
        Ok(())
    }

    /// Forgets every record (an entry that failed half-way).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.kv.clear();
        self.hist.clear();
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
    /// Held while a batch that writes `kv` is written by anyone but the apply path's one
    /// thread: the compactor checks that a deletion is still a key's newest version and
    /// drops it under this lock, and applies take it to write.
    writer: Arc<Mutex<()>>,
}

impl Mvcc {
    pub fn new(db: Arc<DB>) -> Self {
        Mvcc { db, writer: Arc::default() }
    }

    /// Takes the lock that orders writes of `kv` (see the field).
    pub fn lock_writes(&self) -> MutexGuard<'_, ()> {
        lock(&self.writer)
    }

    /// The lock itself, for the compactor.
    pub fn writer(&self) -> Arc<Mutex<()>> {
        self.writer.clone()
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
            self.scan_current(snap, overlay, req, &mut |v| {
                visit(v.kv);
                Ok(())
            })?;
        } else {
            let hist = cf(&self.db, CF_HIST)?;
            self.scan_stored(snap, req, true, &mut |v| {
                if let Some(kv) = version_at(snap, hist, v, at)? {
                    visit(kv);
                }
                Ok(())
            })?;
        }
        resp.more = req.limit > 0 && resp.count > req.limit;
        Ok(resp)
    }

    /// Visits the newest version of every live key in range, in key order, overlay included.
    fn scan_current(
        &self,
        snap: &Snapshot<'_>,
        overlay: &Overlay,
        req: &RangeRequest,
        visit: &mut dyn FnMut(Version) -> Result<()>,
    ) -> Result<()> {
        let after = |key: &[u8]| req.start_after.as_ref().is_none_or(|a| key > a.as_slice());
        let touched: Vec<(&Vec<u8>, &Version)> =
            overlay.writes.iter().filter(|(k, _)| req.keys.contains(k) && after(k)).collect();
        if !touched.is_empty() {
            // Rare (a range or delete over keys this entry already wrote): merge in memory.
            let mut merged = std::collections::BTreeMap::new();
            self.scan_stored(snap, req, false, &mut |v| {
                merged.insert(v.kv.key.clone(), v);
                Ok(())
            })?;
            for (key, version) in touched {
                match version.deleted {
                    false => merged.insert(key.clone(), version.clone()),
                    true => merged.remove(key),
                };
            }
            return merged.into_values().try_for_each(visit);
        }
        self.scan_stored(snap, req, false, visit)
    }

    /// Visits the stored newest version of every key in range, in key order; deletions
    /// only if `deleted` (a read at a past revision walks back from them).
    fn scan_stored(
        &self,
        snap: &Snapshot<'_>,
        req: &RangeRequest,
        deleted: bool,
        visit: &mut dyn FnMut(Version) -> Result<()>,
    ) -> Result<()> {
        let kv_cf = cf(&self.db, CF_KV)?;
        let mut visit_raw = |raw: &[u8]| -> Result<()> {
            let version: Version = decode(raw)?;
            if deleted || !version.deleted {
                visit(version)?;
            }
            Ok(())
        };
        match &req.keys {
            KeySet::Key(key) => {
                if req.start_after.as_ref().is_some_and(|after| key <= after) {
                    return Ok(());
                }
                if let Some(raw) = snap.get_cf(kv_cf, key)? {
                    visit_raw(&raw)?;
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
                    visit_raw(&raw)?;
                }
            }
        }
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
        let hist = cf(&self.db, CF_HIST)?;
        let mut out: Vec<RevisionEvents> = Vec::new();
        let start = keys::position_key(Position { rev: from.max(0), sub: 0 });
        for item in snap.iterator_cf(hist, IteratorMode::From(&start, Direction::Forward)) {
            let (_, raw) = item?;
            let version: Version = decode(&raw)?;
            if !keys.contains(&version.kv.key) {
                continue;
            }
            // Versions at or after the compacted revision keep their previous one, unless
            // that was a deletion (no previous value either way).
            let prev_kv = match version.prev {
                Position::NONE => None,
                prev => read_version(&snap, hist, prev)?.and_then(Version::into_live),
            };
            let kind = if version.deleted { EventKind::Delete } else { EventKind::Put };
            let event = Event { kind, kv: version.kv, prev_kv };
            match out.last_mut() {
                Some(batch) if batch.revision == version.at.rev => batch.events.push(event),
                _ => out.push(RevisionEvents { revision: version.at.rev, events: vec![event] }),
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
            |key: &[u8]| -> Result<Option<Version>> { snap.get_cf(kv_cf, key)?.map(|r| decode(&r)).transpose() };

        let mut succeeded = true;
        for c in &txn.compare {
            let holds = match overlay.writes.get(&c.key) {
                Some(version) => compare_holds(c, version.live()),
                None => match overlay.cache.get(&c.key) {
                    Some(cached) => compare_holds(c, live(cached.as_ref())),
                    None => compare_holds(c, live(stored(&c.key)?.as_ref())),
                },
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
        let mut sub = 0;
        let mut next_position = || {
            sub += 1;
            Position { rev, sub: sub - 1 }
        };
        let mut events = Vec::new();
        let mut responses = Vec::with_capacity(ops.len());
        // Reads within the transaction see the state before it (etcd: no key is written twice).
        let mut writes: Vec<(Vec<u8>, Version)> = Vec::new();
        for op in ops {
            match op {
                Op::Put { key, value, prev_kv } => {
                    // The previous version: a cached one is moved out, not copied (the key's
                    // new version replaces it once the entry is written; until then a read
                    // of the key finds the same version in `snap`).
                    let prev = match overlay.writes.get(&key) {
                        Some(version) => Some(version.clone()),
                        None => match overlay.cache.take(&key) {
                            Some(cached) => cached,
                            None => stored(&key)?,
                        },
                    };
                    let prev_at = prev.as_ref().map_or(Position::NONE, |v| v.at);
                    let prev = prev.and_then(Version::into_live);
                    let kv = KeyValue {
                        create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
                        mod_revision: rev,
                        version: prev.as_ref().map_or(1, |p| p.version + 1),
                        key,
                        value,
                    };
                    let version = Version { at: next_position(), prev: prev_at, deleted: false, kv };
                    out.put_version(&version)?;
                    let answer = if prev_kv { prev.clone() } else { None };
                    events.push(Event { kind: EventKind::Put, kv: version.kv.clone(), prev_kv: prev });
                    writes.push((version.kv.key.clone(), version));
                    responses.push(OpResponse::Put { prev: answer });
                }
                Op::Delete { keys: set } => {
                    let mut found = Vec::new();
                    let req = RangeRequest { keys: set, ..RangeRequest::prefix(Vec::new()) };
                    self.scan_current(snap, overlay, &req, &mut |v| {
                        found.push(v);
                        Ok(())
                    })?;
                    let mut deleted = Vec::with_capacity(found.len());
                    for prev in found {
                        let tomb = KeyValue {
                            key: prev.kv.key.clone(),
                            value: Vec::new(),
                            create_revision: 0,
                            mod_revision: rev,
                            version: 0,
                        };
                        let version = Version { at: next_position(), prev: prev.at, deleted: true, kv: tomb };
                        out.put_version(&version)?;
                        events.push(Event {
                            kind: EventKind::Delete,
                            kv: version.kv.clone(),
                            prev_kv: Some(prev.kv.clone()),
                        });
                        writes.push((version.kv.key.clone(), version));
                        deleted.push(prev.kv);
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
        revs.current = rev;
        Ok(Ok((TxnResponse { succeeded, revision: rev, responses }, Some(RevisionEvents { revision: rev, events }))))
    }

    /// Records the revision counter in `batch` (once per entry).
    pub fn write_revision(&self, revs: &Revisions, batch: &mut WriteBatch) -> Result<()> {
        batch.put_cf(cf(&self.db, CF_META)?, META_REVISION, encode(&revs.current)?);
        Ok(())
    }

    /// Compacts at `rev`: reads and watches before it fail from now on. The history it
    /// makes unreachable is left to [`compact_history`], off the apply path.
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
        batch.put_cf(cf(&self.db, CF_META)?, META_COMPACTED, encode(&rev)?);
        revs.compacted = rev;
        Ok(Ok(rev))
    }
}

fn lock(writer: &Mutex<()>) -> MutexGuard<'_, ()> {
    // The lock guards no data, only an order: a panic while holding it leaves nothing torn.
    writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn read_version(snap: &Snapshot<'_>, hist: &ColumnFamily, at: Position) -> Result<Option<Version>> {
    snap.get_cf(hist, keys::position_key(at))?.map(|raw| decode(&raw)).transpose()
}

/// The key's value at revision `at`, walking back from `newest`, its newest version.
fn version_at(snap: &Snapshot<'_>, hist: &ColumnFamily, newest: Version, at: Revision) -> Result<Option<KeyValue>> {
    let mut version = newest;
    loop {
        if version.at.rev <= at {
            return Ok(version.into_live());
        }
        if version.prev == Position::NONE {
            return Ok(None);
        }
        match read_version(snap, hist, version.prev)? {
            Some(prev) => version = prev,
            // Gone with a compaction: reads at or after the compacted revision reach a removed
            // version only if it was a deletion (see [`compact_history`]).
            None => return Ok(None),
        }
    }
}

/// History records read per chunk of [`compact_history`] (the database is held open only
/// for one chunk at a time).
const COMPACT_CHUNK: usize = 10_000;

/// Deletes the history that a compaction at `rev` made unreachable: every version that a
/// newer version of its key made before `rev` replaced, and every deletion before `rev`
/// (from `hist`, and from `kv` while it is still its key's newest version). Then records
/// `rev` as done. One pass, in revision order, over the versions made since the last
/// compaction finished (each names the version it replaced), reading only their headers.
///
/// Reads at or after `rev` never need what goes: a walk back from a key's newest version
/// stops at the first version at or before the read's revision, before any replaced
/// version; and past a deletion a key is absent, whether or not the deletion is still
/// there. Watches from `rev` on read versions at or after `rev` and the versions they
/// replaced, which are kept unless they were deletions.
///
/// Safe beside concurrent applies: they only add versions after the current revision, and
/// a deletion leaves `kv` only under `writer` after a check that it is still the key's
/// newest version. Returns the records deleted, or `None` if the database closed meanwhile.
pub fn compact_history(db: &std::sync::Weak<DB>, writer: &Mutex<()>, rev: Revision) -> Result<Option<u64>> {
    let Some(from) = db.upgrade().map(|db| history_compacted(&db)).transpose()? else { return Ok(None) };
    let mut resume = keys::position_key(Position { rev: from, sub: 0 }).to_vec();
    let mut deleted = 0u64;
    loop {
        let Some(db) = db.upgrade() else { return Ok(None) };
        let hist = cf(&db, CF_HIST)?;
        let kv = cf(&db, CF_KV)?;
        let mut batch = WriteBatch::default();
        // Deletions found in this chunk: (key, the deletion's position).
        let mut tombstones: Vec<(Vec<u8>, Position)> = Vec::new();
        let mut finished = true;
        for (read, item) in db.iterator_cf(hist, IteratorMode::From(&resume, Direction::Forward)).enumerate() {
            let (raw_key, raw) = item?;
            if read == COMPACT_CHUNK {
                resume = raw_key.to_vec();
                finished = false;
                break;
            }
            let header: VersionHeader = decode(&raw)?;
            if header.at.rev >= rev {
                break;
            }
            if header.prev != Position::NONE {
                batch.delete_cf(hist, keys::position_key(header.prev));
            }
            if header.deleted {
                batch.delete_cf(hist, &raw_key);
                let version: Version = decode(&raw)?;
                tombstones.push((version.kv.key, header.at));
            }
        }
        let _writing = lock(writer);
        for (key, at) in tombstones {
            let newest = db.get_cf(kv, &key)?.map(|raw| decode::<VersionHeader>(&raw)).transpose()?;
            if newest.is_some_and(|v| v.deleted && v.at == at) {
                batch.delete_cf(kv, key);
            }
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

/// The revision up to which [`compact_history`] last finished (0 if never).
pub fn history_compacted(db: &DB) -> Result<Revision> {
    Ok(db.get_cf(cf(db, CF_META)?, META_HISTORY_COMPACTED)?.map(|raw| decode(&raw)).transpose()?.unwrap_or(0))
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

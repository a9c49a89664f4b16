//! The replicated state machine (openraft's `RaftStateMachine`): applies committed commands
//! through [`Mvcc`], publishes each revision to watchers, builds and installs snapshots.
//!
//! Each entry is applied in one RocksDB write batch together with the applied log id, so
//! the stored state always matches the stored `last_applied`. These writes skip RocksDB's
//! WAL (see [`crate::db`]): after a crash, the state machine is what the last (atomic)
//! memtable flush stored, and openraft applies the committed entries after it again from
//! the fsync'd log.
//!
//! A snapshot is a consistent RocksDB snapshot of the state-machine column families,
//! serialized record by record into `snapshot.bin` in the data dir (never whole in memory:
//! with its history a store's state runs to hundreds of megabytes); openraft sends it in
//! chunks to members that fell behind the purged log.

use std::fs::File;
use std::io::{BufReader, BufWriter, Cursor, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use rocksdb::{IteratorMode, WriteBatch, WriteOptions, DB};
use serde::{Deserialize, Serialize};

use crate::compactor::Compactor;
use crate::db::{cf, CF_META, SM_CFS};
use crate::durable::Durability;
use crate::error::{Rejection, StoreError};
use crate::mvcc::{decode, encode, CurrentCache, EntryWrites, Mvcc, Overlay, Revisions};
use crate::types::{Command, CommandResult, NodeId, TypeConfig};
use crate::watch::WatchHub;

const META_APPLIED: &[u8] = b"sm/applied";
const META_MEMBERSHIP: &[u8] = b"sm/membership";
/// Every state-machine key in the meta column family starts with this.
const SM_META_PREFIX: &[u8] = b"sm/";
const SNAPSHOT_FILE: &str = "snapshot.bin";

type StorageResult<T> = Result<T, StorageError<NodeId>>;
type Membership = StoredMembership<NodeId, BasicNode>;

fn sm_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

/// The serialized content of a snapshot.
#[derive(Serialize, Deserialize)]
struct SnapshotData {
    /// (column family name, key, value) of every state-machine record, meta included.
    records: Vec<(String, Vec<u8>, Vec<u8>)>,
}

/// What `snapshot.bin` holds, as bincode encodes it: the meta, then the data's length and
/// bytes (a [`SnapshotData`]). Written and read in pieces, never as this struct.
#[cfg(test)]
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

pub struct StateMachine {
    db: Arc<DB>,
    mvcc: Mvcc,
    revs: Revisions,
    last_applied: Option<LogId<NodeId>>,
    membership: Membership,
    hub: WatchHub,
    dir: PathBuf,
    /// Current values of recently written keys, exact as of the last applied entry.
    cache: CurrentCache,
    /// The records of the entry being applied (kept for its buffers).
    writes: EntryWrites,
    compactor: Compactor,
    /// How far the member's Raft log is on disk: an entry is applied only once it is there
    /// (the leader's own appends are reported flushed before they are; see [`crate::durable`]).
    durable: Option<Arc<Durability>>,
}

impl StateMachine {
    /// Loads the applied state from the database in `dir`.
    pub fn open(db: Arc<DB>, dir: PathBuf) -> Result<Self, StoreError> {
        let mvcc = Mvcc::new(db.clone());
        let revs = mvcc.revisions()?;
        let meta = cf(&db, CF_META)?;
        let last_applied = db.get_cf(meta, META_APPLIED)?.map(|r| decode(&r)).transpose()?.flatten();
        let membership = db.get_cf(meta, META_MEMBERSHIP)?.map(|r| decode(&r)).transpose()?.unwrap_or_default();
        let hub = WatchHub::new(revs.current);
        let compactor = Compactor::start(&db, mvcc.writer(), revs.compacted)
            .map_err(|e| StoreError::Storage(format!("start the history compactor: {e}")))?;
        Ok(StateMachine {
            compactor,
            db,
            mvcc,
            revs,
            last_applied,
            membership,
            hub,
            dir,
            cache: CurrentCache::default(),
            writes: EntryWrites::default(),
            durable: None,
        })
    }

    /// Applies entries only once `durable` says they are on disk.
    pub fn waiting_for(mut self, durable: Arc<Durability>) -> Self {
        self.durable = Some(durable);
        self
    }

    pub fn mvcc(&self) -> Mvcc {
        self.mvcc.clone()
    }

    pub fn hub(&self) -> WatchHub {
        self.hub.clone()
    }

    /// How many voters the applied membership names (0 before the cluster is initialized).
    pub fn voters(&self) -> usize {
        self.membership.membership().voter_ids().count()
    }

    /// Applies one entry in one write batch, together with the applied log id, so the stored
    /// state always matches the stored `last_applied`; watchers hear of it once it is written.
    fn apply_one(&mut self, entry: Entry<TypeConfig>) -> Result<CommandResult, StoreError> {
        let log_id = entry.log_id;
        let db = self.db.clone();
        let meta = cf(&db, CF_META)?;
        let mut batch = WriteBatch::default();
        let mut revs = self.revs;
        let mut published = Vec::new();
        // The entry's transactions read through the cache; it gets their writes back only once
        // they are in the database (an error on the way leaves it empty, never wrong).
        let mut written: Option<Overlay> = None;
        let result = match entry.payload {
            EntryPayload::Blank => CommandResult::None,
            EntryPayload::Normal(Command::Txns(txns)) => {
                let snap = db.snapshot();
                let mut overlay = Overlay::with_cache(revs.current, std::mem::take(&mut self.cache));
                let mut results = Vec::with_capacity(txns.len());
                self.writes.clear();
                for txn in txns {
                    let proposed = log_id.leader_id.term;
                    if let Some(fenced) = txn.leader_term.filter(|term| *term != proposed) {
                        results.push(Err(Rejection::Fenced { fenced, proposed }));
                        continue;
                    }
                    match self.mvcc.apply_txn(&snap, &mut overlay, txn, &mut revs, &mut self.writes)? {
                        Ok((resp, events)) => {
                            published.extend(events);
                            results.push(Ok(resp));
                        }
                        Err(rejection) => results.push(Err(rejection)),
                    }
                }
                self.writes.write_into(&db, &mut batch)?;
                self.mvcc.write_revision(&revs, &mut batch)?;
                written = Some(overlay);
                CommandResult::Txns(results)
            }
            EntryPayload::Normal(Command::Compact(rev)) => match self.mvcc.apply_compact(rev, &mut revs, &mut batch)? {
                Ok(revision) => CommandResult::Compacted { revision },
                Err(rejection) => CommandResult::Rejected(rejection),
            },
            EntryPayload::Membership(m) => {
                let membership = StoredMembership::new(Some(log_id), m);
                batch.put_cf(meta, META_MEMBERSHIP, encode(&membership)?);
                self.membership = membership;
                CommandResult::None
            }
        };
        batch.put_cf(meta, META_APPLIED, encode(&Some(log_id))?);
        {
            let _writing = self.mvcc.lock_writes();
            crate::db::write_state_machine(&self.db, batch)?;
        }
        if let CommandResult::Compacted { revision } = &result {
            self.compactor.request(*revision);
        }
        if let Some(overlay) = written {
            self.cache = overlay.into_cache();
        }
        self.revs = revs;
        self.last_applied = Some(log_id);
        for events in published {
            self.hub.publish(events);
        }
        Ok(result)
    }

    fn snapshot_path(&self) -> PathBuf {
        self.dir.join(SNAPSHOT_FILE)
    }

    fn install(&mut self, meta: &SnapshotMeta<NodeId, BasicNode>, raw: &[u8]) -> Result<(), StoreError> {
        // Emptied first: from here on the stored state may no longer be what it holds.
        self.cache = CurrentCache::default();
        let data: SnapshotData = decode(raw)?;
        let mut batch = WriteBatch::default();
        let meta_cf = cf(&self.db, CF_META)?;
        for name in SM_CFS {
            let handle = cf(&self.db, name)?;
            for item in self.db.iterator_cf(handle, IteratorMode::Start) {
                batch.delete_cf(handle, item?.0);
            }
        }
        for item in self.db.prefix_iterator_cf(meta_cf, SM_META_PREFIX) {
            let (key, _) = item?;
            if !key.starts_with(SM_META_PREFIX) {
                break;
            }
            batch.delete_cf(meta_cf, key);
        }
        for (name, key, value) in &data.records {
            if name != CF_META && !SM_CFS.contains(&name.as_str()) {
                return Err(StoreError::Storage(format!("snapshot names unknown column family {name}")));
            }
            batch.put_cf(cf(&self.db, name)?, key, value);
        }
        batch.put_cf(meta_cf, META_APPLIED, encode(&meta.last_log_id)?);
        batch.put_cf(meta_cf, META_MEMBERSHIP, encode(&meta.last_membership)?);
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        {
            let _writing = self.mvcc.lock_writes();
            self.db.write_opt(batch, &sync)?;
        }
        write_snapshot_file(&self.snapshot_path(), meta, |out| Ok(out.write_all(raw)?))?;
        self.revs = self.mvcc.revisions()?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.hub.reset(self.revs.current);
        // The snapshot's history may not have been compacted as far as its revision says.
        self.compactor.request(self.revs.compacted);
        Ok(())
    }

    /// The revision up to which history has been compacted on disk, as it moves.
    pub fn history_compacted(&self) -> tokio::sync::watch::Receiver<crate::types::Revision> {
        self.compactor.done()
    }
}

/// Writes `snapshot.bin`: the meta, then the data's length and the data, which `write_data`
/// streams in. Written to a temporary file, fsync'd, then renamed over the old one, so a
/// crash leaves the previous snapshot whole. Returns the data's length.
fn write_snapshot_file(
    path: &Path,
    meta: &SnapshotMeta<NodeId, BasicNode>,
    write_data: impl FnOnce(&mut BufWriter<File>) -> Result<(), StoreError>,
) -> Result<u64, StoreError> {
    let tmp = path.with_extension("tmp");
    let io = |e: std::io::Error| StoreError::Storage(format!("write {}: {e}", tmp.display()));
    let meta = encode(meta)?;
    let mut out = BufWriter::with_capacity(1 << 20, File::create(&tmp).map_err(io)?);
    out.write_all(&meta).map_err(io)?;
    out.write_all(&0u64.to_le_bytes()).map_err(io)?; // the data's length, filled in below
    write_data(&mut out)?;
    let mut file = out.into_inner().map_err(|e| io(e.into_error()))?;
    let data_at = meta.len() as u64 + 8;
    let data_len = file.stream_position().map_err(io)? - data_at;
    file.seek(SeekFrom::Start(meta.len() as u64)).map_err(io)?;
    file.write_all(&data_len.to_le_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(data_len)
}

/// Reads `snapshot.bin` (`None` if there is none yet).
fn read_snapshot_file(path: &Path) -> Result<Option<Snapshot<TypeConfig>>, StoreError> {
    let io = |e: std::io::Error| StoreError::Storage(format!("read {}: {e}", path.display()));
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let size = file.metadata().map_err(io)?.len();
    let mut reader = BufReader::new(file);
    let meta: SnapshotMeta<NodeId, BasicNode> = bincode::deserialize_from(&mut reader)
        .map_err(|e| StoreError::Storage(format!("corrupt snapshot meta: {e}")))?;
    let mut len = [0u8; 8];
    reader.read_exact(&mut len).map_err(io)?;
    let len = u64::from_le_bytes(len);
    if len > size {
        return Err(StoreError::Storage(format!("corrupt snapshot: {len} bytes of data in a file of {size}")));
    }
    let mut data = Vec::with_capacity(len as usize);
    reader.take(len).read_to_end(&mut data).map_err(io)?;
    if data.len() as u64 != len {
        return Err(StoreError::Storage(format!("truncated snapshot: {} of {len} bytes of data", data.len())));
    }
    Ok(Some(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
}

/// Builds snapshots from a point-in-time view of the database, off the apply path.
pub struct SnapshotBuilder {
    db: Arc<DB>,
    path: PathBuf,
}

impl SnapshotBuilder {
    /// Writes the snapshot file; returns its meta and the data's length.
    fn build(&self) -> Result<(SnapshotMeta<NodeId, BasicNode>, u64), StoreError> {
        let snap = self.db.snapshot();
        // openraft refuses to start a member whose snapshot is past its state machine, which
        // after a crash is as of its last flush (its writes skip the WAL): flush what the
        // snapshot holds before the snapshot exists.
        crate::db::persist_state_machine(&self.db)?;
        let meta_cf = cf(&self.db, CF_META)?;
        let last_applied: Option<LogId<NodeId>> =
            snap.get_cf(meta_cf, META_APPLIED)?.map(|r| decode(&r)).transpose()?.flatten();
        let membership: Membership =
            snap.get_cf(meta_cf, META_MEMBERSHIP)?.map(|r| decode(&r)).transpose()?.unwrap_or_default();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let snapshot_id = match last_applied {
            Some(id) => format!("{}-{}-{nanos}", id.leader_id, id.index),
            None => format!("empty-{nanos}"),
        };
        let meta = SnapshotMeta { last_log_id: last_applied, last_membership: membership, snapshot_id };
        // A `SnapshotData` as bincode encodes it: the number of records, then each record.
        let records = |out: &mut BufWriter<File>| -> Result<(), StoreError> {
            let count_at = out.stream_position()?;
            out.write_all(&0u64.to_le_bytes())?; // the number of records, filled in below
            let mut count = 0u64;
            let mut record = |out: &mut BufWriter<File>, name: &str, k: &[u8], v: &[u8]| {
                count += 1;
                bincode::serialize_into(out, &(name, k, v)).map_err(|e| StoreError::Storage(format!("encode: {e}")))
            };
            for name in SM_CFS {
                for item in snap.iterator_cf(cf(&self.db, name)?, IteratorMode::Start) {
                    let (k, v) = item?;
                    record(out, name, &k, &v)?;
                }
            }
            for item in snap.iterator_cf(meta_cf, IteratorMode::From(SM_META_PREFIX, rocksdb::Direction::Forward)) {
                let (k, v) = item?;
                if !k.starts_with(SM_META_PREFIX) {
                    break;
                }
                record(out, CF_META, &k, &v)?;
            }
            out.seek(SeekFrom::Start(count_at))?;
            out.write_all(&count.to_le_bytes())?;
            out.seek(SeekFrom::End(0))?;
            Ok(())
        };
        let bytes = write_snapshot_file(&self.path, &meta, records)?;
        Ok((meta, bytes))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let builder = SnapshotBuilder { db: self.db.clone(), path: self.path.clone() };
        let started = std::time::Instant::now();
        let (meta, bytes) = tokio::task::spawn_blocking(move || builder.build())
            .await
            .map_err(|e| StorageError::from(StorageIOError::write_snapshot(None, AnyError::new(&e))))?
            .map_err(|e| StorageError::from(StorageIOError::write_snapshot(None, AnyError::new(&e))))?;
        metrics::counter!("flotilla_store_snapshots_built_total").increment(1);
        metrics::histogram!("flotilla_store_snapshot_build_seconds").record(started.elapsed().as_secs_f64());
        tracing::info!(last_log_id = ?meta.last_log_id, bytes, took = ?started.elapsed(), "built snapshot");
        // openraft keeps only the meta of a snapshot it had built; the data stays in the file
        // until a member needs it (`get_current_snapshot`).
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(Vec::new())) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> StorageResult<(Option<LogId<NodeId>>, Membership)> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<CommandResult>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let started = std::time::Instant::now();
        let mut out = Vec::new();
        for entry in entries {
            let log_id = entry.log_id;
            if let Some(durable) = self.durable.as_ref().filter(|d| !d.is_durable(log_id.index)) {
                let waited = std::time::Instant::now();
                durable
                    .wait(log_id.index)
                    .await
                    .map_err(|e| StorageError::from(StorageIOError::apply(log_id, AnyError::new(&e))))?;
                metrics::histogram!("flotilla_store_apply_durable_wait_seconds").record(waited.elapsed().as_secs_f64());
            }
            let result = self
                .apply_one(entry)
                .map_err(|e| StorageError::from(StorageIOError::apply(log_id, AnyError::new(&e))))?;
            out.push(result);
        }
        metrics::counter!("flotilla_store_applied_entries_total").increment(out.len() as u64);
        metrics::histogram!("flotilla_store_apply_seconds").record(started.elapsed().as_secs_f64());
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { db: self.db.clone(), path: self.snapshot_path() }
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let raw = snapshot.into_inner();
        tracing::info!(last_log_id = ?meta.last_log_id, bytes = raw.len(), "installing snapshot");
        self.install(meta, &raw).map_err(sm_err)?;
        metrics::counter!("flotilla_store_snapshots_installed_total").increment(1);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        read_snapshot_file(&self.snapshot_path())
            .map_err(|e| StorageIOError::read_snapshot(None, AnyError::new(&e)).into())
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, LogId};

    use super::*;
    use crate::types::{KeySet, Op, OpResponse, RangeRequest, Txn};

    fn entry(index: u64, txns: Vec<Txn>) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Command::Txns(txns)),
        }
    }

    #[tokio::test]
    async fn a_fenced_txn_applies_only_under_the_leader_of_its_term() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::open(dir.path()).unwrap();
        let mut sm = StateMachine::open(db, dir.path().into()).unwrap();
        // `entry` proposes in term 1.
        let current = Txn::put("k", "mine").fenced(Some(1));
        let deposed = Txn::put("k", "stale").fenced(Some(0));
        let results = sm.apply([entry(1, vec![current, deposed])]).await.unwrap();
        let CommandResult::Txns(results) = &results[0] else { panic!("{results:?}") };
        assert!(results[0].as_ref().unwrap().succeeded);
        assert_eq!(results[1], Err(Rejection::Fenced { fenced: 0, proposed: 1 }));
        let read = sm.mvcc().range(&RangeRequest::key("k")).unwrap();
        assert_eq!((read.kvs[0].value.as_slice(), read.revision), (&b"mine"[..], 1), "the fenced write left no trace");
    }

    /// A state machine that applies only what `Durability` says is on disk (nothing yet).
    fn waiting_state_machine() -> (tempfile::TempDir, StateMachine, Arc<Durability>) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::open(dir.path()).unwrap();
        let durable = Arc::new(Durability::new(0));
        let sm = StateMachine::open(db, dir.path().into()).unwrap().waiting_for(durable.clone());
        (dir, sm, durable)
    }

    #[tokio::test]
    async fn an_entry_is_applied_only_once_the_log_holds_it_on_disk() {
        use futures::FutureExt;
        let (_dir, mut sm, durable) = waiting_state_machine();
        // Written to the log (and reported flushed to openraft, as a leader's own) but not synced.
        let seq = durable.appended(1);
        let mut apply = Box::pin(sm.apply([entry(1, vec![Txn::put("k", "v")])]));
        assert!((&mut apply).now_or_never().is_none(), "applied before the log's sync");
        durable.synced(seq);
        apply.await.unwrap();
        assert_eq!(sm.mvcc().range(&RangeRequest::key("k")).unwrap().kvs.len(), 1);
    }

    #[tokio::test]
    async fn a_failed_log_sync_fails_the_apply() {
        let (_dir, mut sm, durable) = waiting_state_machine();
        durable.appended(1);
        durable.failed();
        assert!(sm.apply([entry(1, vec![Txn::put("k", "v")])]).await.is_err());
        assert!(sm.mvcc().range(&RangeRequest::key("k")).unwrap().kvs.is_empty(), "nothing applied");
    }

    #[tokio::test]
    async fn an_entry_is_applied_atomically_and_watchers_hear_each_revision() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::open(dir.path()).unwrap();
        let mut sm = StateMachine::open(db.clone(), dir.path().into()).unwrap();
        let mut revisions = sm.hub().revision();
        let txns = vec![Txn::put("a", "1"), Txn::put("b", "1"), Txn::put("a", "2")];
        let results = sm.apply([entry(7, txns)]).await.unwrap();
        let CommandResult::Txns(results) = &results[0] else { panic!("{results:?}") };
        let revs: Vec<_> = results.iter().map(|r| r.as_ref().unwrap().revision).collect();
        assert_eq!(revs, vec![1, 2, 3], "one revision per transaction");
        assert_eq!(*revisions.borrow_and_update(), 3);
        drop(sm);
        // Reopened from disk: the whole entry and its applied log id are there.
        let mut sm = StateMachine::open(db, dir.path().into()).unwrap();
        assert_eq!(sm.applied_state().await.unwrap().0.map(|l| l.index), Some(7));
        let a = sm.mvcc().range(&RangeRequest::key("a")).unwrap().kvs.remove(0);
        assert_eq!((a.version, a.create_revision, a.mod_revision), (2, 1, 3));
    }

    #[tokio::test]
    async fn prefix_reads_and_deletes_see_earlier_writes_of_the_same_entry() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::open(dir.path()).unwrap();
        let mut sm = StateMachine::open(db, dir.path().into()).unwrap();
        sm.apply([entry(1, vec![Txn::put("p/stored", "x")])]).await.unwrap();
        let list = Txn { success: vec![Op::Range(RangeRequest::prefix("p/"))], ..Default::default() };
        let wipe = Txn { success: vec![Op::Delete { keys: KeySet::Prefix(b"p/".to_vec()) }], ..Default::default() };
        let results =
            sm.apply([entry(2, vec![Txn::put("p/new", "y"), list, wipe, Txn::put("p/after", "z")])]).await.unwrap();
        let CommandResult::Txns(results) = &results[0] else { panic!("{results:?}") };
        let OpResponse::Range(listed) = &results[1].as_ref().unwrap().responses[0] else { panic!() };
        assert_eq!(listed.count, 2, "the range sees the put made earlier in the entry");
        let OpResponse::Delete { deleted } = &results[2].as_ref().unwrap().responses[0] else { panic!() };
        assert_eq!(deleted.len(), 2, "the delete removes stored and new keys alike");
        let all = sm.mvcc().range(&RangeRequest::prefix("p/")).unwrap();
        assert_eq!(all.kvs.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>(), vec![b"p/after".to_vec()]);
    }

    #[tokio::test]
    async fn a_rejected_transaction_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::open(dir.path()).unwrap();
        let mut sm = StateMachine::open(db, dir.path().into()).unwrap();
        let future = RangeRequest { revision: 99, ..RangeRequest::key("k") };
        let txn = Txn { success: vec![Op::put("k", "v"), Op::Range(future)], ..Default::default() };
        let results = sm.apply([entry(1, vec![txn])]).await.unwrap();
        let CommandResult::Txns(results) = &results[0] else { panic!("{results:?}") };
        assert!(matches!(results[0], Err(crate::error::Rejection::FutureRevision { .. })));
        assert_eq!(sm.mvcc().range(&RangeRequest::prefix("")).unwrap().count, 0);
    }

    fn put_prev(key: &str, value: &str) -> Txn {
        Txn { success: vec![Op::put_returning_prev(key, value)], ..Default::default() }
    }

    fn put_response(results: &[CommandResult]) -> (Option<crate::types::KeyValue>, crate::types::Revision) {
        let CommandResult::Txns(results) = &results[0] else { panic!("{results:?}") };
        let resp = results[0].as_ref().unwrap();
        let OpResponse::Put { prev } = &resp.responses[0] else { panic!("{resp:?}") };
        (prev.clone(), resp.revision)
    }

    #[tokio::test]
    async fn puts_see_the_previous_version_across_entries_and_after_a_snapshot_replaced_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(crate::db::open(dir.path()).unwrap(), dir.path().into()).unwrap();
        sm.apply([entry(1, vec![Txn::put("k", "1")])]).await.unwrap();
        let delete = Txn { success: vec![Op::delete("k")], ..Default::default() };
        sm.apply([entry(2, vec![Txn::put("k", "2"), delete])]).await.unwrap();
        let (prev, rev) = put_response(&sm.apply([entry(3, vec![put_prev("k", "3")])]).await.unwrap());
        assert_eq!((prev, rev), (None, 4), "deleted in the entry before: a new key");
        let (prev, _) = put_response(&sm.apply([entry(4, vec![put_prev("k", "4")])]).await.unwrap());
        let prev = prev.unwrap();
        assert_eq!((prev.value.as_slice(), prev.create_revision, prev.version), (&b"3"[..], 4, 1));

        // Another member's state, where "k" has another history, replaces this one.
        let other_dir = tempfile::tempdir().unwrap();
        let mut other =
            StateMachine::open(crate::db::open(other_dir.path()).unwrap(), other_dir.path().into()).unwrap();
        other.apply([entry(1, vec![Txn::put("x", "1"), Txn::put("k", "other")])]).await.unwrap();
        let built = other.get_snapshot_builder().await.build_snapshot().await.unwrap();
        let snapshot = other.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(snapshot.meta, built.meta);
        sm.install_snapshot(&snapshot.meta, snapshot.snapshot).await.unwrap();
        let (prev, rev) = put_response(&sm.apply([entry(2, vec![put_prev("k", "5")])]).await.unwrap());
        let prev = prev.unwrap();
        assert_eq!((prev.value.as_slice(), prev.create_revision, prev.version), (&b"other"[..], 2, 1));
        assert_eq!(rev, 3);
        let k = sm.mvcc().range(&RangeRequest::key("k")).unwrap().kvs.remove(0);
        assert_eq!((k.create_revision, k.mod_revision, k.version), (2, 3, 2));
    }

    fn history_len(db: &DB) -> usize {
        db.iterator_cf(cf(db, crate::db::CF_HIST).unwrap(), IteratorMode::Start).count()
    }

    async fn history_compacted_to(sm: &StateMachine, rev: crate::types::Revision) {
        let mut done = sm.history_compacted();
        tokio::time::timeout(std::time::Duration::from_secs(20), done.wait_for(|r| *r >= rev))
            .await
            .expect("history not compacted in time")
            .unwrap();
    }

    /// Applying a compaction leaves the history to the compactor thread, which deletes it
    /// soon after, and also after a restart that came between the two.
    #[tokio::test]
    async fn compacted_history_goes_in_the_background_and_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::open(dir.path()).unwrap();
        let mut sm = StateMachine::open(db.clone(), dir.path().into()).unwrap();
        for i in 1..=5 {
            sm.apply([entry(i, vec![Txn::put("k", format!("{i}"))])]).await.unwrap();
        }
        let compact = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), 6),
            payload: EntryPayload::Normal(Command::Compact(5)),
        };
        assert!(matches!(sm.apply([compact]).await.unwrap()[..], [CommandResult::Compacted { revision: 5 }]));
        history_compacted_to(&sm, 5).await;
        // k@5, and k@4 (what a watch from 5 hears k@5 replaced).
        assert_eq!(history_len(&db), 2);

        for i in 7..=9 {
            sm.apply([entry(i, vec![Txn::put("k", format!("{i}"))])]).await.unwrap();
        }
        // A compaction applied just before a crash: its history deletion never ran.
        let mut revs = sm.mvcc().revisions().unwrap();
        let mut batch = WriteBatch::default();
        sm.mvcc().apply_compact(revs.current, &mut revs, &mut batch).unwrap().unwrap();
        db.write(batch).unwrap();
        drop(sm);
        assert_eq!(history_len(&db), 5);
        let sm = StateMachine::open(db.clone(), dir.path().into()).unwrap();
        history_compacted_to(&sm, revs.current).await;
        assert_eq!(history_len(&db), 2);
    }

    /// The file is written in pieces, but reads back as the one bincode value it stands for,
    /// holding every state-machine record (so snapshots of earlier versions still install).
    #[tokio::test]
    async fn a_streamed_snapshot_file_is_one_stored_snapshot_of_every_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(crate::db::open(dir.path()).unwrap(), dir.path().into()).unwrap();
        let value = "v".repeat(3000);
        for i in 1..=50 {
            sm.apply([entry(i, vec![Txn::put(format!("k{}", i % 7), value.clone())])]).await.unwrap();
        }
        let built = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        assert_eq!(built.meta.last_log_id.map(|l| l.index), Some(50));

        let stored: StoredSnapshot = decode(&std::fs::read(sm.snapshot_path()).unwrap()).unwrap();
        assert_eq!(stored.meta, built.meta);
        let data: SnapshotData = decode(&stored.data).unwrap();
        let kv = data.records.iter().filter(|(name, ..)| name == crate::db::CF_KV).count();
        assert_eq!(kv, 7, "one current record per key");
        assert!(data.records.iter().any(|(name, key, _)| name == CF_META && key == META_APPLIED));
        let read = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!((read.meta, read.snapshot.into_inner()), (built.meta, stored.data));
    }

    #[tokio::test]
    async fn a_put_of_a_cached_key_leaves_reads_of_it_in_the_same_entry_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(crate::db::open(dir.path()).unwrap(), dir.path().into()).unwrap();
        sm.apply([entry(1, vec![Txn::put("k", "1")])]).await.unwrap();
        // "k" is in the cache now; the put moves its version out of it.
        let put_and_read = Txn { success: vec![Op::put_returning_prev("k", "2"), Op::get("k")], ..Default::default() };
        let compare = Txn {
            compare: vec![crate::types::Compare::mod_revision_is("k", 2)],
            success: vec![Op::put_returning_prev("k", "3")],
            ..Default::default()
        };
        let results = sm.apply([entry(2, vec![put_and_read, compare])]).await.unwrap();
        let CommandResult::Txns(results) = &results[0] else { panic!("{results:?}") };
        let first = results[0].as_ref().unwrap();
        let OpResponse::Put { prev: Some(prev) } = &first.responses[0] else { panic!("{first:?}") };
        let OpResponse::Range(read) = &first.responses[1] else { panic!("{first:?}") };
        assert_eq!((prev.value.as_slice(), read.kvs[0].value.as_slice()), (&b"1"[..], &b"1"[..]));
        let second = results[1].as_ref().unwrap();
        assert!(second.succeeded, "the next transaction sees the put: {second:?}");
        let OpResponse::Put { prev: Some(prev) } = &second.responses[0] else { panic!("{second:?}") };
        assert_eq!((prev.value.as_slice(), prev.version, prev.create_revision), (&b"2"[..], 2, 1));
        let (prev, rev) = put_response(&sm.apply([entry(3, vec![put_prev("k", "4")])]).await.unwrap());
        let prev = prev.unwrap();
        assert_eq!((prev.value.as_slice(), prev.version, prev.mod_revision, rev), (&b"3"[..], 3, 3, 4));
    }

    #[tokio::test]
    async fn transactions_in_one_entry_see_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::open(dir.path()).unwrap();
        let mut sm = StateMachine::open(db, dir.path().into()).unwrap();
        let create = Txn {
            compare: vec![crate::types::Compare::absent("k")],
            success: vec![crate::types::Op::put("k", "v")],
            failure: vec![],
            leader_term: None,
        };
        let results = sm.apply([entry(1, vec![create.clone(), create])]).await.unwrap();
        let CommandResult::Txns(results) = &results[0] else { panic!("{results:?}") };
        assert!(results[0].as_ref().unwrap().succeeded);
        assert!(!results[1].as_ref().unwrap().succeeded, "the second create sees the first");
    }
}

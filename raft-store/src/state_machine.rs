//! The replicated state machine (openraft's `RaftStateMachine`): applies committed commands
//! through [`Mvcc`], publishes each revision to watchers, builds and installs snapshots.
//!
//! Each entry is applied in its own RocksDB write batch together with the applied log id, so
//! the stored state always matches the stored `last_applied`. These writes are not fsync'd:
//! after a crash, openraft re-applies committed entries from the (fsync'd) log.
//!
//! A snapshot is a consistent RocksDB snapshot of the state-machine column families,
//! serialized and kept in `snapshot.bin` in the data dir; openraft sends it in chunks to
//! members that fell behind the purged log.

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use rocksdb::{IteratorMode, WriteBatch, WriteOptions, DB};
use serde::{Deserialize, Serialize};

use crate::db::{cf, CF_META, SM_CFS};
use crate::error::{Rejection, StoreError};
use crate::mvcc::{decode, encode, Mvcc, Revisions};
use crate::types::{Command, CommandResult, NodeId, Txn, TxnResponse, TypeConfig};
use crate::watch::WatchHub;

const META_APPLIED: &[u8] = b"sm/applied";
const META_MEMBERSHIP: &[u8] = b"sm/membership";
/// (entry index, position) of the last transaction written from a batched entry.
const META_APPLIED_TXN: &[u8] = b"sm/applied_txn";
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

/// What `snapshot.bin` holds.
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
    applied_txn: Option<(u64, usize)>,
    hub: WatchHub,
    dir: PathBuf,
}

impl StateMachine {
    /// Loads the applied state from the database in `dir`.
    pub fn open(db: Arc<DB>, dir: PathBuf) -> Result<Self, StoreError> {
        let mvcc = Mvcc::new(db.clone());
        let revs = mvcc.revisions()?;
        let meta = cf(&db, CF_META)?;
        let last_applied = db.get_cf(meta, META_APPLIED)?.map(|r| decode(&r)).transpose()?.flatten();
        let membership = db.get_cf(meta, META_MEMBERSHIP)?.map(|r| decode(&r)).transpose()?.unwrap_or_default();
        let applied_txn = db.get_cf(meta, META_APPLIED_TXN)?.map(|r| decode(&r)).transpose()?;
        let hub = WatchHub::new(revs.current);
        Ok(StateMachine { db, mvcc, revs, last_applied, membership, applied_txn, hub, dir })
    }

    pub fn mvcc(&self) -> Mvcc {
        self.mvcc.clone()
    }

    pub fn hub(&self) -> WatchHub {
        self.hub.clone()
    }

    fn apply_one(&mut self, entry: Entry<TypeConfig>) -> Result<CommandResult, StoreError> {
        let log_id = entry.log_id;
        let db = self.db.clone();
        let meta = cf(&db, CF_META)?;
        let mut batch = WriteBatch::default();
        let result = match entry.payload {
            EntryPayload::Blank => CommandResult::None,
            EntryPayload::Normal(Command::Txns(txns)) => CommandResult::Txns(self.apply_txns(log_id.index, &txns)?),
            EntryPayload::Normal(Command::Compact(rev)) => {
                let mut revs = self.revs;
                let result = match self.mvcc.apply_compact(rev, &mut revs, &mut batch)? {
                    Ok(revision) => CommandResult::Compacted { revision },
                    Err(rejection) => CommandResult::Rejected(rejection),
                };
                self.revs = revs;
                result
            }
            EntryPayload::Membership(m) => {
                let membership = StoredMembership::new(Some(log_id), m);
                batch.put_cf(meta, META_MEMBERSHIP, encode(&membership)?);
                self.membership = membership;
                CommandResult::None
            }
        };
        batch.put_cf(meta, META_APPLIED, encode(&Some(log_id))?);
        self.db.write(batch)?;
        self.last_applied = Some(log_id);
        Ok(result)
    }

    /// Applies each transaction in its own write batch, so each one sees the ones before it.
    /// Each batch also records (entry index, position): after a crash mid-entry, the entry is
    /// applied again and the transactions already written are skipped, not repeated.
    fn apply_txns(&mut self, index: u64, txns: &[Txn]) -> Result<Vec<Result<TxnResponse, Rejection>>, StoreError> {
        let db = self.db.clone();
        let meta = cf(&db, CF_META)?;
        let mut results = Vec::with_capacity(txns.len());
        for (pos, txn) in txns.iter().enumerate() {
            if self.applied_txn.is_some_and(|(i, p)| i == index && pos <= p) {
                results.push(Err(Rejection::Replayed));
                continue;
            }
            let mut batch = WriteBatch::default();
            let mut revs = self.revs;
            let (result, events) = match self.mvcc.apply_txn(txn, &mut revs, &mut batch)? {
                Ok((resp, events)) => (Ok(resp), events),
                Err(rejection) => (Err(rejection), None),
            };
            batch.put_cf(meta, META_APPLIED_TXN, encode(&(index, pos))?);
            self.db.write(batch)?;
            self.revs = revs;
            self.applied_txn = Some((index, pos));
            if let Some(events) = events {
                self.hub.publish(events);
            }
            results.push(result);
        }
        Ok(results)
    }

    fn snapshot_path(&self) -> PathBuf {
        self.dir.join(SNAPSHOT_FILE)
    }

    fn install(&mut self, meta: &SnapshotMeta<NodeId, BasicNode>, raw: &[u8]) -> Result<(), StoreError> {
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
        self.db.write_opt(batch, &sync)?;
        save_snapshot_file(&self.snapshot_path(), meta, raw)?;
        self.revs = self.mvcc.revisions()?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        // A snapshot taken mid-entry carries the position reached inside that entry.
        self.applied_txn = self.db.get_cf(meta_cf, META_APPLIED_TXN)?.map(|r| decode(&r)).transpose()?;
        self.hub.reset(self.revs.current);
        Ok(())
    }
}

fn save_snapshot_file(
    path: &std::path::Path,
    meta: &SnapshotMeta<NodeId, BasicNode>,
    raw: &[u8],
) -> Result<(), StoreError> {
    let stored = StoredSnapshot { meta: meta.clone(), data: raw.to_vec() };
    let tmp = path.with_extension("tmp");
    let io = |e: std::io::Error| StoreError::Storage(format!("write {}: {e}", path.display()));
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&encode(&stored)?).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}

/// Builds snapshots from a point-in-time view of the database, off the apply path.
pub struct SnapshotBuilder {
    db: Arc<DB>,
    path: PathBuf,
}

impl SnapshotBuilder {
    fn build(&self) -> Result<(SnapshotMeta<NodeId, BasicNode>, Vec<u8>), StoreError> {
        let snap = self.db.snapshot();
        let meta_cf = cf(&self.db, CF_META)?;
        let last_applied: Option<LogId<NodeId>> =
            snap.get_cf(meta_cf, META_APPLIED)?.map(|r| decode(&r)).transpose()?.flatten();
        let membership: Membership =
            snap.get_cf(meta_cf, META_MEMBERSHIP)?.map(|r| decode(&r)).transpose()?.unwrap_or_default();
        let mut records = Vec::new();
        for name in SM_CFS {
            for item in snap.iterator_cf(cf(&self.db, name)?, IteratorMode::Start) {
                let (k, v) = item?;
                records.push((name.to_string(), k.to_vec(), v.to_vec()));
            }
        }
        for item in snap.iterator_cf(meta_cf, IteratorMode::From(SM_META_PREFIX, rocksdb::Direction::Forward)) {
            let (k, v) = item?;
            if !k.starts_with(SM_META_PREFIX) {
                break;
            }
            records.push((CF_META.to_string(), k.to_vec(), v.to_vec()));
        }
        let raw = encode(&SnapshotData { records })?;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let snapshot_id = match last_applied {
            Some(id) => format!("{}-{}-{nanos}", id.leader_id, id.index),
            None => format!("empty-{nanos}"),
        };
        let meta = SnapshotMeta { last_log_id: last_applied, last_membership: membership, snapshot_id };
        save_snapshot_file(&self.path, &meta, &raw)?;
        Ok((meta, raw))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let builder = SnapshotBuilder { db: self.db.clone(), path: self.path.clone() };
        let (meta, raw) = tokio::task::spawn_blocking(move || builder.build())
            .await
            .map_err(|e| StorageError::from(StorageIOError::write_snapshot(None, AnyError::new(&e))))?
            .map_err(|e| StorageError::from(StorageIOError::write_snapshot(None, AnyError::new(&e))))?;
        metrics::counter!("flotilla_store_snapshots_built_total").increment(1);
        tracing::info!(last_log_id = ?meta.last_log_id, bytes = raw.len(), "built snapshot");
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(raw)) })
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
        let mut out = Vec::new();
        for entry in entries {
            let log_id = entry.log_id;
            let result = self
                .apply_one(entry)
                .map_err(|e| StorageError::from(StorageIOError::apply(log_id, AnyError::new(&e))))?;
            out.push(result);
        }
        metrics::counter!("flotilla_store_applied_entries_total").increment(out.len() as u64);
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
        let path = self.snapshot_path();
        let raw = match std::fs::read(&path) {
            Ok(raw) => raw,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageIOError::read_snapshot(None, AnyError::new(&e)).into()),
        };
        let stored: StoredSnapshot =
            decode(&raw).map_err(|e| StorageError::from(StorageIOError::read_snapshot(None, AnyError::new(&e))))?;
        Ok(Some(Snapshot { meta: stored.meta, snapshot: Box::new(Cursor::new(stored.data)) }))
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, LogId};

    use super::*;
    use crate::types::{RangeRequest, Txn};

    fn entry(index: u64, txns: Vec<Txn>) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Command::Txns(txns)),
        }
    }

    #[tokio::test]
    async fn an_entry_cut_short_by_a_crash_is_finished_without_repeating_its_transactions() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::open(dir.path()).unwrap();
        let txns = vec![Txn::put("a", "1"), Txn::put("b", "1"), Txn::put("c", "1")];
        {
            // The crash: the first two transactions of entry 7 were written, the entry was not
            // marked applied.
            let mut sm = StateMachine::open(db.clone(), dir.path().into()).unwrap();
            sm.apply_txns(7, &txns[..2]).unwrap();
        }
        let mut sm = StateMachine::open(db, dir.path().into()).unwrap();
        let results = sm.apply([entry(7, txns)]).await.unwrap();
        let CommandResult::Txns(results) = &results[0] else { panic!("{results:?}") };
        assert_eq!(results[0], Err(Rejection::Replayed));
        assert_eq!(results[1], Err(Rejection::Replayed));
        assert_eq!(results[2].as_ref().unwrap().revision, 3);
        let all = sm.mvcc().range(&RangeRequest::prefix("")).unwrap();
        assert_eq!(all.revision, 3, "each transaction applied exactly once");
        assert!(all.kvs.iter().all(|kv| kv.version == 1));
        assert_eq!(sm.applied_state().await.unwrap().0.map(|l| l.index), Some(7));
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
        };
        let results = sm.apply([entry(1, vec![create.clone(), create])]).await.unwrap();
        let CommandResult::Txns(results) = &results[0] else { panic!("{results:?}") };
        assert!(results[0].as_ref().unwrap().succeeded);
        assert!(!results[1].as_ref().unwrap().succeeded, "the second create sees the first");
    }
}

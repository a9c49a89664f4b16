//! The Raft log and vote in RocksDB (openraft's `RaftLogStorage`).
//!
//! Correctness rules kept here: a vote is fsync'd before `save_vote` returns; appended
//! entries are readable when `append` returns and fsync'd before openraft hears they are
//! flushed; purging first flushes the state machine (whose writes skip the WAL, so these
//! entries are its only durable record until then), then writes the purge point, so a
//! crash never leaves a gap.
//!
//! Appends are written without waiting for the disk; a flusher thread then syncs the
//! write-ahead log once for every append that queued up meanwhile (group commit), and
//! reports each one flushed, in order. The Raft core never waits on an fsync, so the leader
//! replicates to followers while its own disk write is in progress.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Weak};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, Entry, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions, DB};

use crate::db::{cf, CF_LOG, CF_META};
use crate::mvcc::{decode, encode};
use crate::types::{NodeId, TypeConfig};

const META_VOTE: &[u8] = b"raft/vote";
const META_COMMITTED: &[u8] = b"raft/committed";
const META_PURGED: &[u8] = b"raft/last_purged";

type StorageResult<T> = Result<T, StorageError<NodeId>>;

/// Raft log storage over the member's database. Cheap to clone (the reader is a clone).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    flusher: std::sync::mpsc::Sender<LogFlushed<TypeConfig>>,
}

fn io_err(e: impl std::error::Error + 'static) -> AnyError {
    AnyError::new(&e)
}

fn sync_opts() -> WriteOptions {
    let mut opts = WriteOptions::default();
    opts.set_sync(true);
    opts
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl LogStore {
    pub fn new(db: Arc<DB>) -> Result<Self, std::io::Error> {
        let (tx, rx) = std::sync::mpsc::channel();
        // A weak reference: the database is closed by whoever owns it last (the node, in its
        // own thread), never by this thread as the process exits (RocksDB crashes then).
        let flush_db = Arc::downgrade(&db);
        std::thread::Builder::new().name("raft-log-flush".into()).spawn(move || flush_loop(&flush_db, &rx))?;
        Ok(LogStore { db, flusher: tx })
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, AnyError> {
        let meta = cf(&self.db, CF_META).map_err(io_err)?;
        match self.db.get_cf(meta, key).map_err(io_err)? {
            Some(raw) => Ok(Some(decode(&raw).map_err(io_err)?)),
            None => Ok(None),
        }
    }

    fn put_meta_sync<T: serde::Serialize>(&self, key: &[u8], value: &T) -> Result<(), AnyError> {
        let meta = cf(&self.db, CF_META).map_err(io_err)?;
        let raw = encode(value).map_err(io_err)?;
        self.db.put_cf_opt(meta, key, raw, &sync_opts()).map_err(io_err)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => *i + 1,
            Bound::Unbounded => 0,
        };
        let log = cf(&self.db, CF_LOG).map_err(|e| StorageIOError::read_logs(io_err(e)))?;
        let mut out = Vec::new();
        for item in self.db.iterator_cf(log, IteratorMode::From(&index_key(start), Direction::Forward)) {
            let (key, raw) = item.map_err(|e| StorageIOError::read_logs(io_err(e)))?;
            let index = u64::from_be_bytes(
                key.as_ref().try_into().map_err(|_| StorageIOError::read_logs(AnyError::error("corrupt log key")))?,
            );
            if !range.contains(&index) {
                break;
            }
            out.push(decode(&raw).map_err(|e| StorageIOError::read_logs(io_err(e)))?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let log = cf(&self.db, CF_LOG).map_err(|e| StorageIOError::read_logs(io_err(e)))?;
        let last = match self.db.iterator_cf(log, IteratorMode::End).next() {
            Some(item) => {
                let (_, raw) = item.map_err(|e| StorageIOError::read_logs(io_err(e)))?;
                let entry: Entry<TypeConfig> = decode(&raw).map_err(|e| StorageIOError::read_logs(io_err(e)))?;
                Some(entry.log_id)
            }
            None => None,
        };
        // Stored as `Option<LogId>` (what `purge` writes): decoding it as a bare `LogId`
        // shifts every field by the option's tag byte and yields a nonsense purge point.
        let last_purged: Option<LogId<NodeId>> =
            self.get_meta::<Option<LogId<NodeId>>>(META_PURGED).map_err(StorageIOError::read_logs)?.flatten();
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last.or(last_purged) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        self.put_meta_sync(META_VOTE, vote).map_err(StorageIOError::write_vote)?;
        Ok(())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        Ok(self.get_meta(META_VOTE).map_err(StorageIOError::read_vote)?)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        // Not fsync'd: losing it only means re-learning the commit point from the leader.
        let meta = cf(&self.db, CF_META).map_err(|e| StorageIOError::write(io_err(e)))?;
        let raw = encode(&committed).map_err(|e| StorageIOError::write(io_err(e)))?;
        self.db.put_cf(meta, META_COMMITTED, raw).map_err(|e| StorageIOError::write(io_err(e)))?;
        Ok(())
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        let committed: Option<Option<LogId<NodeId>>> = self.get_meta(META_COMMITTED).map_err(StorageIOError::read)?;
        Ok(committed.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let log = cf(&self.db, CF_LOG).map_err(|e| StorageIOError::write_logs(io_err(e)))?;
        let mut batch = WriteBatch::default();
        let mut n = 0u64;
        for entry in entries {
            let raw = encode(&entry).map_err(|e| StorageIOError::write_logs(io_err(e)))?;
            batch.put_cf(log, index_key(entry.log_id.index), raw);
            n += 1;
        }
        // Written (readable) now; durable once the flusher has synced the WAL.
        self.db.write(batch).map_err(|e| StorageIOError::write_logs(io_err(e)))?;
        metrics::counter!("flotilla_store_log_appends_total").increment(1);
        metrics::counter!("flotilla_store_log_entries_total").increment(n);
        self.flusher.send(callback).map_err(|_| StorageIOError::write_logs(AnyError::error("log flusher stopped")))?;
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let log = cf(&self.db, CF_LOG).map_err(|e| StorageIOError::write_logs(io_err(e)))?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(log, index_key(log_id.index), index_key(u64::MAX));
        self.db.write_opt(batch, &sync_opts()).map_err(|e| StorageIOError::write_logs(io_err(e)))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        // The state machine must not need these entries after a crash: its writes skip the
        // WAL, so flush it first (openraft purges only entries it has applied).
        let started = std::time::Instant::now();
        crate::db::persist_state_machine(&self.db).map_err(|e| StorageIOError::write_logs(io_err(e)))?;
        metrics::histogram!("flotilla_store_purge_flush_seconds").record(started.elapsed().as_secs_f64());
        tracing::debug!(upto = log_id.index, took = ?started.elapsed(), "state machine flushed before purging the log");
        // Record the purge point first: a crash in between leaves extra entries, never a gap.
        self.put_meta_sync(META_PURGED, &Some(log_id)).map_err(StorageIOError::write_logs)?;
        let log = cf(&self.db, CF_LOG).map_err(|e| StorageIOError::write_logs(io_err(e)))?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(log, index_key(0), index_key(log_id.index + 1));
        self.db.write_opt(batch, &sync_opts()).map_err(|e| StorageIOError::write_logs(io_err(e)))?;
        Ok(())
    }
}

/// Syncs the write-ahead log for every append queued since the last sync, then reports them
/// flushed in order. Ends when the log store is dropped.
fn flush_loop(db: &Weak<DB>, rx: &std::sync::mpsc::Receiver<LogFlushed<TypeConfig>>) {
    while let Ok(first) = rx.recv() {
        let mut waiting = vec![first];
        waiting.extend(rx.try_iter());
        let started = std::time::Instant::now();
        let result = match db.upgrade() {
            Some(db) => db.flush_wal(true).map_err(|e| e.to_string()),
            None => Err("the database is closed".to_string()),
        };
        metrics::counter!("flotilla_store_wal_syncs_total").increment(1);
        // etcd's wal_fsync_duration_seconds: the disk's share of every write's latency.
        metrics::histogram!("flotilla_store_wal_sync_seconds").record(started.elapsed().as_secs_f64());
        for callback in waiting {
            callback.log_io_completed(result.clone().map_err(std::io::Error::other));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use openraft::CommittedLeaderId;

    use super::*;

    #[tokio::test]
    async fn the_purge_point_reads_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let purged = LogId::new(CommittedLeaderId::new(213, 36), 14_999);
        let mut store = LogStore::new(crate::db::open(dir.path()).unwrap()).unwrap();
        store.purge(purged).await.unwrap();
        // What openraft reads at start-up (from the meta record, not from memory).
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(purged));
        assert_eq!(state.last_log_id, Some(purged));
    }
}

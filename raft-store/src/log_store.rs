//! openraft's `RaftLogStorage`: entries in the log's own segment files ([`crate::wal`]), the
//! vote and the purge point in RocksDB's meta column family (the commit point is not kept).
//!
//! Correctness rules kept here: a vote is fsync'd before `save_vote` returns; appended
//! entries are readable when `append` returns and fsync'd before openraft hears they are
//! flushed; purging first flushes the state machine (whose writes skip RocksDB's WAL, so
//! these entries are its only durable record until then), then writes the purge point, so a
//! crash never leaves a gap.
//!
//! Appends are written without waiting for the disk; a flusher thread then syncs the log's
//! files once for every append that queued up meanwhile (group commit), and reports each one
//! flushed, in order. openraft 0.9's core waits for that report before it replicates, so the
//! appends of a leader of the current term (its own entries) are reported flushed once
//! written, and [`crate::durable`] holds back everything that depends on them until the
//! flusher has synced them: the leader replicates while its own disk write is in progress.

use std::fmt::Debug;
use std::fs::File;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, Entry, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use rocksdb::{WriteOptions, DB};

use crate::db::{cf, CF_META};
use crate::durable::Durability;
use crate::mvcc::{decode, encode};
use crate::types::{NodeId, TypeConfig};
use crate::wal::{self, Wal};

const META_VOTE: &[u8] = b"raft/vote";
/// Where the purge point is kept (written before the log's files are removed).
const META_PURGED: &[u8] = b"raft/last_purged";

type StorageResult<T> = Result<T, StorageError<NodeId>>;

/// Raft log storage over the member's log files and database. Cheap to clone (the reader is
/// a clone).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    wal: Arc<Mutex<Wal>>,
    flusher: std::sync::mpsc::Sender<Queued>,
    durable: Arc<Durability>,
    /// This member's id and its last saved vote: it leads while that vote is its own and
    /// committed.
    id: NodeId,
    vote: Arc<Mutex<Option<Vote<NodeId>>>>,
}

fn io_err(e: impl std::error::Error + 'static) -> AnyError {
    AnyError::new(&e)
}

fn sync_opts() -> WriteOptions {
    let mut opts = WriteOptions::default();
    opts.set_sync(true);
    opts
}

fn locked(wal: &Mutex<Wal>) -> Result<std::sync::MutexGuard<'_, Wal>, AnyError> {
    wal.lock().map_err(|_| AnyError::error("the Raft log's lock was poisoned"))
}

impl LogStore {
    /// Opens the log in `dir` (segments of `segment_bytes`) beside the member's database, for
    /// member `id`.
    pub fn new(db: Arc<DB>, dir: &Path, segment_bytes: u64, id: NodeId) -> Result<Self, std::io::Error> {
        let purged: Option<Option<LogId<NodeId>>> = read_meta(&db, META_PURGED).map_err(std::io::Error::other)?;
        let vote: Option<Vote<NodeId>> = read_meta(&db, META_VOTE).map_err(std::io::Error::other)?;
        let wal = Wal::open(dir, segment_bytes, purged.flatten().map(|p| p.index))?;
        // What a crash left unsynced may still be in the page cache: make it durable before
        // anything counts on it.
        wal.sync()?;
        let durable = Arc::new(Durability::new(wal.last_log_id().map_or(0, |l| l.index)));
        let (tx, rx) = std::sync::mpsc::channel();
        let flushed = durable.clone();
        std::thread::Builder::new().name("raft-log-flush".into()).spawn(move || flush_loop(&rx, &flushed))?;
        let store =
            LogStore { db, wal: Arc::new(Mutex::new(wal)), flusher: tx, durable, id, vote: Arc::new(Mutex::new(vote)) };
        // openraft 0.9 restores a member that led when it stopped as leader of the same term.
        // Its entries of that term reached followers before its own disk (see `append`), so
        // after a machine crash it may have lost some that followers hold, and leading on in
        // that term it would give new entries the same log ids. Taking back the vote's
        // commitment makes it stand for election in a new term instead; it still counts as
        // having voted for itself in the old one.
        if let Some(term) = store.leading() {
            let uncommitted = Vote::new(term, id);
            store.put_meta_sync(META_VOTE, &uncommitted).map_err(std::io::Error::other)?;
            *store.vote.lock().unwrap_or_else(|p| p.into_inner()) = Some(uncommitted);
        }
        Ok(store)
    }

    /// How far the log is on disk.
    pub fn durability(&self) -> Arc<Durability> {
        self.durable.clone()
    }

    /// The term this member leads, if its last saved vote is its own and committed.
    fn leading(&self) -> Option<u64> {
        let vote = self.vote.lock().unwrap_or_else(|p| p.into_inner());
        vote.as_ref().filter(|v| v.is_committed() && v.leader_id().node_id == self.id).map(|v| v.leader_id().term)
    }

    fn put_meta_sync<T: serde::Serialize>(&self, key: &[u8], value: &T) -> Result<(), AnyError> {
        let meta = cf(&self.db, CF_META).map_err(io_err)?;
        let raw = encode(value).map_err(io_err)?;
        self.db.put_cf_opt(meta, key, raw, &sync_opts()).map_err(io_err)
    }
}

fn read_meta<T: serde::de::DeserializeOwned>(db: &DB, key: &[u8]) -> Result<Option<T>, AnyError> {
    let meta = cf(db, CF_META).map_err(io_err)?;
    match db.get_cf(meta, key).map_err(io_err)? {
        Some(raw) => Ok(Some(decode(&raw).map_err(io_err)?)),
        None => Ok(None),
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
        let end = match range.end_bound() {
            Bound::Included(i) => i.saturating_add(1),
            Bound::Excluded(i) => *i,
            Bound::Unbounded => u64::MAX,
        };
        let read_err = |e: std::io::Error| StorageIOError::read_logs(io_err(e));
        let places = locked(&self.wal).map_err(StorageIOError::read_logs)?.locate(start, end).map_err(read_err)?;
        let mut out = Vec::with_capacity(places.len());
        for (file, offset, len) in places {
            let raw = wal::read(&file, offset, len).map_err(read_err)?;
            out.push(decode(&raw).map_err(|e| StorageIOError::read_logs(io_err(e)))?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last = locked(&self.wal).map_err(StorageIOError::read_logs)?.last_log_id();
        // Stored as `Option<LogId>` (what `purge` writes): decoding it as a bare `LogId`
        // shifts every field by the option's tag byte and yields a nonsense purge point.
        let last_purged: Option<LogId<NodeId>> =
            read_meta::<Option<LogId<NodeId>>>(&self.db, META_PURGED).map_err(StorageIOError::read_logs)?.flatten();
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last.or(last_purged) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        // A leader stepping down must not go on to acknowledge, as a follower, entries of its
        // own that are not on disk yet (see `append`).
        self.durable.wait_all().await.map_err(|e| StorageIOError::write_vote(io_err(e)))?;
        self.put_meta_sync(META_VOTE, vote).map_err(StorageIOError::write_vote)?;
        *self.vote.lock().unwrap_or_else(|p| p.into_inner()) = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        Ok(read_meta(&self.db, META_VOTE).map_err(StorageIOError::read_vote)?)
    }

    // `save_committed` / `read_committed` keep openraft's defaults (nothing saved): the core
    // awaits the save before every apply, on every member, which cost ~3% of a lone put's
    // latency (BENCHMARKS.md, 2026-12-03 afternoon). Without it a restarted member starts from
    // its state machine as last flushed and learns the commit point from the leader.

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let write_err = |e: std::io::Error| StorageIOError::write_logs(io_err(e));
        let leading = self.leading();
        let mut own = true;
        let mut encoded = Vec::new();
        for entry in entries {
            own &= leading == Some(entry.log_id.leader_id.term) && entry.log_id.leader_id.node_id == self.id;
            let raw = encode(&entry).map_err(|e| StorageIOError::write_logs(io_err(e)))?;
            encoded.push((entry.log_id, raw));
        }
        // Written (readable) now; durable once the flusher has synced the files.
        let written = locked(&self.wal).map_err(StorageIOError::write_logs)?.append(&encoded).map_err(write_err)?;
        metrics::counter!("flotilla_store_log_appends_total").increment(1);
        metrics::counter!("flotilla_store_log_entries_total").increment(encoded.len() as u64);
        let seq = self.durable.appended(encoded.last().map_or(0, |(id, _)| id.index));
        // The leader's own entries: reported now, so that openraft replicates them while they
        // are synced; `durable` holds back whatever depends on them until they are.
        let callback = if own {
            callback.log_io_completed(Ok(()));
            None
        } else {
            Some(callback)
        };
        self.flusher
            .send(Queued { written, seq, callback, at: std::time::Instant::now() })
            .map_err(|_| StorageIOError::write_logs(AnyError::error("log flusher stopped")))?;
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let mut wal = locked(&self.wal).map_err(StorageIOError::write_logs)?;
        wal.truncate(log_id.index).map_err(|e| StorageIOError::write_logs(io_err(e)))?;
        self.durable.truncated(log_id.index);
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
        let mut wal = locked(&self.wal).map_err(StorageIOError::write_logs)?;
        wal.purge(log_id.index).map_err(|e| StorageIOError::write_logs(io_err(e)))?;
        Ok(())
    }
}

/// Syncs the log's files for every append queued since the last sync, then reports them
/// flushed in order. Ends when the log store is dropped.
fn flush_loop(rx: &std::sync::mpsc::Receiver<Queued>, durable: &Durability) {
    while let Ok(first) = rx.recv() {
        let mut waiting = vec![first];
        waiting.extend(rx.try_iter());
        let started = std::time::Instant::now();
        let mut files: Vec<&Arc<File>> = Vec::new();
        for file in waiting.iter().flat_map(|queued| &queued.written) {
            if !files.iter().any(|f| Arc::ptr_eq(f, file)) {
                files.push(file);
            }
        }
        let result = files.iter().try_for_each(|f| f.sync_data()).map_err(|e| e.to_string());
        metrics::counter!("flotilla_store_wal_syncs_total").increment(1);
        // etcd's wal_fsync_duration_seconds: the disk's share of every write's latency.
        metrics::histogram!("flotilla_store_wal_sync_seconds").record(started.elapsed().as_secs_f64());
        let last = waiting.last().map_or(0, |q| q.seq);
        match &result {
            Ok(()) => durable.synced(last),
            Err(e) => {
                tracing::error!(error = %e, "syncing the Raft log failed");
                durable.failed();
            }
        }
        // The sync itself plus the wait for the flusher (and for a sync already running).
        let histogram = metrics::histogram!("flotilla_store_log_append_durable_seconds");
        for queued in waiting {
            histogram.record(queued.at.elapsed().as_secs_f64());
            if let Some(callback) = queued.callback {
                callback.log_io_completed(result.clone().map_err(std::io::Error::other));
            }
        }
    }
}

/// An append written and waiting for the flusher's sync.
struct Queued {
    written: wal::Written,
    /// Its sequence number in [`Durability`].
    seq: u64,
    /// `None` when reported flushed already (the leader's own entries).
    callback: Option<LogFlushed<TypeConfig>>,
    at: std::time::Instant,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use openraft::CommittedLeaderId;

    use super::*;

    #[tokio::test]
    async fn a_member_that_led_reopens_as_a_candidate_of_its_term_not_its_leader() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::open(dir.path()).unwrap();
        let log = dir.path().join("raft-log");
        let mut store = LogStore::new(db.clone(), &log, 1 << 20, 1).unwrap();
        store.save_vote(&Vote::new_committed(7, 1)).await.unwrap();
        assert_eq!(store.leading(), Some(7));
        drop(store);
        let mut store = LogStore::new(db.clone(), &log, 1 << 20, 1).unwrap();
        assert_eq!(store.read_vote().await.unwrap(), Some(Vote::new(7, 1)));
        assert_eq!(store.leading(), None);
        // Another member's committed vote is kept as it is.
        store.save_vote(&Vote::new_committed(8, 2)).await.unwrap();
        drop(store);
        let mut store = LogStore::new(db, &log, 1 << 20, 1).unwrap();
        assert_eq!(store.read_vote().await.unwrap(), Some(Vote::new_committed(8, 2)));
    }

    #[tokio::test]
    async fn the_purge_point_reads_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let purged = LogId::new(CommittedLeaderId::new(213, 36), 14_999);
        let db = crate::db::open(dir.path()).unwrap();
        let mut store = LogStore::new(db, &dir.path().join("raft-log"), 1 << 20, 1).unwrap();
        store.purge(purged).await.unwrap();
        // What openraft reads at start-up (from the meta record, not from memory).
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(purged));
        assert_eq!(state.last_log_id, Some(purged));
    }
}

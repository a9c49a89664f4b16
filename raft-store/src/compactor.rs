//! History compaction in the background: applying a compaction only moves the compacted
//! revision (reads and watches before it fail from then on); this thread then deletes the
//! versions no read can reach any more ([`crate::mvcc::compact_history`]), so writes never
//! wait for a scan of all history. etcd compacts its backend the same way.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, Weak};

use rocksdb::DB;
use tokio::sync::watch;

use crate::mvcc::{compact_history, history_compacted};
use crate::types::Revision;

/// Handle to the member's compactor thread; the thread ends when this is dropped.
pub struct Compactor {
    requests: mpsc::Sender<Revision>,
    done: watch::Receiver<Revision>,
}

impl Compactor {
    /// Starts the thread, and has it finish a compaction that a restart interrupted.
    /// `writer`: the lock that orders writes of `kv` ([`crate::mvcc::Mvcc::writer`]).
    pub fn start(db: &Arc<DB>, writer: Arc<Mutex<()>>, compacted: Revision) -> std::io::Result<Self> {
        let finished = history_compacted(db).unwrap_or(0);
        let (requests, rx) = mpsc::channel();
        let (tx_done, done) = watch::channel(finished);
        // A weak reference, as the log flusher's: the database closes with the member.
        let weak = Arc::downgrade(db);
        std::thread::Builder::new()
            .name("history-compactor".into())
            .spawn(move || run(&weak, &writer, &rx, &tx_done))?;
        let compactor = Compactor { requests, done };
        compactor.request(compacted);
        Ok(compactor)
    }

    /// Asks for the history before `rev` to go (nothing if that is done already).
    pub fn request(&self, rev: Revision) {
        let _ = self.requests.send(rev);
    }

    /// The revision up to which history has been compacted, as it moves.
    pub fn done(&self) -> watch::Receiver<Revision> {
        self.done.clone()
    }
}

fn run(db: &Weak<DB>, writer: &Mutex<()>, requests: &mpsc::Receiver<Revision>, done: &watch::Sender<Revision>) {
    while let Ok(first) = requests.recv() {
        let rev = requests.try_iter().fold(first, Revision::max);
        if rev <= *done.borrow() {
            continue;
        }
        let started = std::time::Instant::now();
        match compact_history(db, writer, rev) {
            Ok(Some(deleted)) => {
                metrics::histogram!("flotilla_store_compact_seconds").record(started.elapsed().as_secs_f64());
                tracing::debug!(revision = rev, deleted, took = ?started.elapsed(), "history compacted");
                done.send_replace(rev);
            }
            Ok(None) => return,
            // Left for the next compaction, which starts again where the last finished one ended.
            Err(e) => tracing::warn!(revision = rev, error = %e, "history compaction failed"),
        }
    }
}

//! Watches: every change once, in revision order, from any start revision still in history.
//!
//! The state machine publishes each applied revision on a broadcast channel. A watcher first
//! subscribes, then reads the stored event log from its start revision, then follows the
//! broadcast, skipping what it already delivered. Whenever it falls behind the broadcast
//! (lag) or the state jumps (snapshot install), it goes back to the stored log.

use std::sync::Arc;

use futures::Stream;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::error::{Result, StoreError};
use crate::mvcc::Mvcc;
use crate::types::{Revision, RevisionEvents, WatchRequest};

/// Buffered revisions per watcher before it falls back to reading the stored log.
const BROADCAST_CAPACITY: usize = 4096;
/// Buffered batches between a watcher's task and its consumer.
const STREAM_BUFFER: usize = 256;
/// How often a watcher with `progress_notify` hears of revisions that did not concern it.
pub const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

#[derive(Debug, Clone)]
enum Notice {
    Revision(Arc<RevisionEvents>),
    /// The applied state was replaced (snapshot install): re-read from storage.
    Reset,
}

/// Fan-out point between the state machine and watchers on this member.
#[derive(Clone)]
pub struct WatchHub {
    tx: broadcast::Sender<Notice>,
    revision: Arc<watch::Sender<Revision>>,
}

impl WatchHub {
    pub fn new(current: Revision) -> Self {
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        let (revision, _) = watch::channel(current);
        WatchHub { tx, revision: Arc::new(revision) }
    }

    /// Called by the state machine after the revision is durable in the database.
    pub fn publish(&self, events: RevisionEvents) {
        let rev = events.revision;
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(Notice::Revision(Arc::new(events)));
        self.revision.send_replace(rev);
    }

    /// Called after a snapshot replaced the state.
    pub fn reset(&self, current: Revision) {
        let _ = self.tx.send(Notice::Reset);
        self.revision.send_replace(current);
    }

    /// The applied revision on this member, updated as revisions are applied.
    pub fn revision(&self) -> watch::Receiver<Revision> {
        self.revision.subscribe()
    }

    /// Number of watchers subscribed on this member.
    pub fn watchers(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Starts a watch. Each item is one revision's events for the watched keys; an error
    /// (e.g. [`StoreError::Compacted`]) ends the stream.
    pub fn watch(&self, mvcc: Mvcc, req: WatchRequest) -> impl Stream<Item = Result<RevisionEvents>> + Send + 'static {
        let (out_tx, out_rx) = mpsc::channel(STREAM_BUFFER);
        let rx = self.tx.subscribe();
        tokio::spawn(async move {
            metrics::gauge!("flotilla_store_watchers").increment(1.0);
            if let Err(e) = follow(mvcc, req, rx, &out_tx).await {
                let _ = out_tx.send(Err(e)).await;
            }
            metrics::gauge!("flotilla_store_watchers").decrement(1.0);
        });
        ReceiverStream::new(out_rx)
    }
}

/// Delivers events until the consumer goes away (Ok) or the watch fails (Err).
async fn follow(
    mvcc: Mvcc,
    req: WatchRequest,
    mut rx: broadcast::Receiver<Notice>,
    out: &mpsc::Sender<Result<RevisionEvents>>,
) -> Result<()> {
    let mut next = if req.start_revision > 0 { req.start_revision } else { mvcc.revisions()?.current + 1 };
    let progress = |revision| Ok(RevisionEvents { revision, events: Vec::new() });
    let mut last_progress = tokio::time::Instant::now();
    let mut pending_progress: Option<Revision> = None;
    loop {
        // Catch up from the stored event log. Everything newer arrives on `rx`, which was
        // subscribed before this read.
        let read = mvcc.clone();
        let keys = req.keys.clone();
        let (batches, seen) = tokio::task::spawn_blocking(move || read.events_since(&keys, next))
            .await
            .map_err(|e| StoreError::Unavailable(format!("watch reader failed: {e}")))??;
        for batch in batches {
            next = batch.revision + 1;
            if out.send(Ok(batch)).await.is_err() {
                return Ok(());
            }
        }
        next = next.max(seen + 1);
        if req.progress_notify {
            if out.send(progress(next - 1)).await.is_err() {
                return Ok(());
            }
            last_progress = tokio::time::Instant::now();
        }
        // Follow live revisions.
        loop {
            let progress_due = last_progress + PROGRESS_EVERY;
            let notice = tokio::select! {
                notice = rx.recv() => notice,
                _ = out.closed() => return Ok(()),
                // A skipped revision is reported once the rate limit allows, even if no more come.
                _ = tokio::time::sleep_until(progress_due), if pending_progress.is_some() => {
                    if let Some(revision) = pending_progress.take() {
                        last_progress = tokio::time::Instant::now();
                        if out.send(progress(revision)).await.is_err() {
                            return Ok(());
                        }
                    }
                    continue;
                }
            };
            match notice {
                Ok(Notice::Revision(batch)) => {
                    if batch.revision < next {
                        continue;
                    }
                    if batch.revision > next {
                        break; // a gap: re-read storage
                    }
                    next = batch.revision + 1;
                    let events: Vec<_> =
                        batch.events.iter().filter(|e| req.keys.contains(&e.kv.key)).cloned().collect();
                    let item = if !events.is_empty() {
                        Some(Ok(RevisionEvents { revision: batch.revision, events }))
                    } else if req.progress_notify && last_progress.elapsed() >= PROGRESS_EVERY {
                        Some(progress(batch.revision))
                    } else {
                        if req.progress_notify {
                            pending_progress = Some(batch.revision);
                        }
                        None
                    };
                    if let Some(item) = item {
                        pending_progress = None;
                        last_progress = tokio::time::Instant::now();
                        if out.send(item).await.is_err() {
                            return Ok(());
                        }
                    }
                }
                Ok(Notice::Reset) | Err(broadcast::error::RecvError::Lagged(_)) => break,
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(StoreError::Unavailable("member is shutting down".into()));
                }
            }
        }
    }
}

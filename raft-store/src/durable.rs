//! How far this member's Raft log is known to be on disk.
//!
//! openraft 0.9's core waits for an append to be reported flushed before it sends the entries
//! to followers, so a leader that reported its own appends only after their fsync would
//! replicate only after it: its disk write and its followers' would run one after the other.
//! The log store therefore reports a leader's own appends flushed as soon as they are written,
//! and this tracker keeps what that report stood for: nothing depends on a leader's entry
//! until it is durable here.
//! - The state machine applies an entry (and so answers its client) only once it is durable.
//! - An AppendEntries carries a commit index only once the log is durable up to it, so a
//!   follower never applies an entry that a majority does not hold on disk.
//! - Saving a vote (how a leader steps down to follow another) waits until every append is
//!   durable, so as a follower it never acknowledges entries it holds only in memory.
//!
//! The leader's fsync thus overlaps the replication round trip, as etcd's does (the Raft
//! thesis, 10.2.1).

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::watch;

/// What the flusher has made durable so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mark {
    /// Every entry up to this index is on disk (0: none).
    index: u64,
    /// Appends up to this sequence number are synced.
    synced: u64,
    /// A sync failed: nothing more will become durable.
    failed: bool,
}

#[derive(Debug)]
struct State {
    /// Sequence number of the last append.
    appended: u64,
    /// Appends not yet synced, in order: (sequence number, last index).
    pending: VecDeque<(u64, u64)>,
    mark: Mark,
}

/// Shared by the log store (appends, truncations), its flusher (syncs), the state machine and
/// the network (waits).
#[derive(Debug)]
pub struct Durability {
    state: Mutex<State>,
    tx: watch::Sender<Mark>,
}

/// A sync of the log failed; the member cannot go on.
#[derive(Debug, thiserror::Error)]
#[error("the Raft log could not be synced to disk")]
pub struct SyncFailed;

impl Durability {
    /// Everything up to `index` is on disk already (the log as found at start-up, synced).
    pub fn new(index: u64) -> Self {
        let mark = Mark { index, synced: 0, failed: false };
        Durability {
            state: Mutex::new(State { appended: 0, pending: VecDeque::new(), mark }),
            tx: watch::Sender::new(mark),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a few integers updated in place: a panic elsewhere cannot leave it torn.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records an append ending at `last`, written and not yet synced; returns its sequence
    /// number for [`Durability::synced`]. Called in log order.
    pub fn appended(&self, last: u64) -> u64 {
        let mut state = self.state();
        state.appended += 1;
        let seq = state.appended;
        state.pending.push_back((seq, last));
        seq
    }

    /// Every append up to sequence number `seq` is synced.
    pub fn synced(&self, seq: u64) {
        let mut state = self.state();
        while let Some(&(s, last)) = state.pending.front() {
            if s > seq {
                break;
            }
            state.pending.pop_front();
            state.mark.index = state.mark.index.max(last);
        }
        state.mark.synced = state.mark.synced.max(seq);
        self.tx.send_replace(state.mark);
    }

    /// A sync failed: waiters fail from now on.
    pub fn failed(&self) {
        let mut state = self.state();
        state.mark.failed = true;
        self.tx.send_replace(state.mark);
    }

    /// The entries from `index` on were removed (and the removal synced).
    pub fn truncated(&self, index: u64) {
        let mut state = self.state();
        let kept = index.saturating_sub(1);
        for (_, last) in state.pending.iter_mut() {
            *last = (*last).min(kept);
        }
        state.mark.index = state.mark.index.min(kept);
        self.tx.send_replace(state.mark);
    }

    /// Whether the entry at `index` is on disk now.
    pub fn is_durable(&self, index: u64) -> bool {
        self.tx.borrow().index >= index
    }

    /// Waits until every entry up to `index` is on disk.
    pub async fn wait(&self, index: u64) -> Result<(), SyncFailed> {
        self.wait_for(|m| m.index >= index).await
    }

    /// Waits until every append made so far is on disk.
    pub async fn wait_all(&self) -> Result<(), SyncFailed> {
        let seq = self.state().appended;
        self.wait_for(|m| m.synced >= seq).await
    }

    async fn wait_for(&self, done: impl Fn(&Mark) -> bool) -> Result<(), SyncFailed> {
        let mut rx = self.tx.subscribe();
        let mark = rx.wait_for(|m| m.failed || done(m)).await.map_err(|_| SyncFailed)?;
        if done(&mark) {
            Ok(())
        } else {
            Err(SyncFailed)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn now<F: std::future::Future>(f: F) -> Option<F::Output> {
        use futures::FutureExt;
        f.now_or_never()
    }

    #[test]
    fn entries_become_durable_as_their_appends_are_synced_in_order() {
        let d = Durability::new(3);
        assert!(d.is_durable(3));
        let a = d.appended(5);
        let b = d.appended(6);
        assert!(!d.is_durable(4));
        assert!(now(d.wait(4)).is_none());
        d.synced(a);
        assert!(d.is_durable(5) && !d.is_durable(6));
        assert!(now(d.wait(5)).unwrap().is_ok());
        assert!(now(d.wait_all()).is_none());
        d.synced(b);
        assert!(d.is_durable(6));
        assert!(now(d.wait_all()).unwrap().is_ok());
    }

    #[test]
    fn a_truncation_takes_back_what_was_durable_and_what_is_pending() {
        let d = Durability::new(10);
        let a = d.appended(12);
        d.truncated(9);
        assert!(!d.is_durable(9) && d.is_durable(8));
        // The append's entries from 9 on are gone; its sync makes only up to 8 durable.
        d.synced(a);
        assert!(!d.is_durable(9));
        let b = d.appended(9);
        d.synced(b);
        assert!(d.is_durable(9) && !d.is_durable(10));
    }

    #[test]
    fn a_failed_sync_fails_every_waiter() {
        let d = Durability::new(0);
        d.appended(1);
        d.failed();
        assert!(now(d.wait(1)).unwrap().is_err());
        assert!(now(d.wait_all()).unwrap().is_err());
        // What was durable before stays so.
        assert!(now(d.wait(0)).unwrap().is_ok());
    }

    #[tokio::test]
    async fn a_waiter_wakes_when_another_thread_syncs() {
        let d = std::sync::Arc::new(Durability::new(0));
        let seq = d.appended(1);
        let syncer = d.clone();
        let t = std::thread::spawn(move || syncer.synced(seq));
        d.wait(1).await.unwrap();
        t.join().unwrap();
    }
}

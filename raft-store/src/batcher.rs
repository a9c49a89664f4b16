//! Group commit: concurrent transactions on a member are gathered into one Raft entry, so
//! they share one fsync'd log append and one replication round trip.
//!
//! A batch is cut as soon as the previous one is committed; while it is being committed,
//! new transactions queue up and form the next, larger batch. A lone transaction is
//! proposed at once, from its caller's own task ([`propose_alone`]), so batching adds no
//! latency at low load.
//!
//! One batch in flight per member: openraft keeps one append in flight per follower, so
//! more batches only split what one round trip carries into more, smaller entries, each
//! with its own log write, apply and (from a follower) forward. Measured at 256 clients,
//! 3 members: 1 in flight gave ~12% more puts/s than 4 (BENCHMARKS.md, 2026-12-02 midday).

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::error::{Result, StoreError};
use crate::node::StoreNode;
use crate::types::{Command, CommandResult, Txn, TxnResponse};

/// At most this many transactions per entry...
const MAX_TXNS: usize = 1024;
/// ...and roughly at most this many bytes of values.
const MAX_BYTES: usize = 4 << 20;
/// Transactions waiting for a batch before callers feel back-pressure.
pub const QUEUE: usize = 8192;

pub struct Pending {
    pub txn: Txn,
    pub reply: oneshot::Sender<Result<TxnResponse>>,
}

/// Runs until every sender is gone. `turn` (one permit) is held by whoever has a batch in
/// flight: this loop, or a caller proposing its lone transaction itself ([`propose_alone`]).
pub async fn run(node: StoreNode, mut rx: mpsc::Receiver<Pending>, turn: Arc<Semaphore>) {
    while let Some(first) = rx.recv().await {
        let Ok(_turn) = turn.acquire().await else { return };
        // Keep the turn while transactions keep queueing, so that a lone caller never cuts
        // in between two batches.
        let mut next = Some(first);
        while let Some(first) = next.take() {
            let mut bytes = txn_bytes(&first.txn);
            let mut batch = vec![first];
            while batch.len() < MAX_TXNS && bytes < MAX_BYTES {
                match rx.try_recv() {
                    Ok(more) => {
                        bytes += txn_bytes(&more.txn);
                        batch.push(more);
                    }
                    Err(_) => break,
                }
            }
            metrics::histogram!("flotilla_store_batch_txns").record(batch.len() as f64);
            // Proposed here, not in a task of its own: the next batch waits for this one anyway.
            let (txns, replies): (Vec<Txn>, Vec<_>) = batch.into_iter().map(|p| (p.txn, p.reply)).unzip();
            let results = propose(&node, txns).await;
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result);
            }
            next = rx.try_recv().ok();
        }
    }
}

/// Proposes `txn` from the caller's task when no batch is in flight (saving the hand-off to
/// the batcher and back); gives it back when one is.
pub async fn propose_alone(
    node: &StoreNode,
    turn: &Semaphore,
    txn: Txn,
) -> std::result::Result<Result<TxnResponse>, Txn> {
    let Ok(_turn) = turn.try_acquire() else { return Err(txn) };
    metrics::histogram!("flotilla_store_batch_txns").record(1.0);
    Ok(propose(node, vec![txn]).await.pop().unwrap_or_else(|| Err(StoreError::Storage("no result".into()))))
}

/// Proposes `txns` as one entry; a result for each.
async fn propose(node: &StoreNode, txns: Vec<Txn>) -> Vec<Result<TxnResponse>> {
    let n = txns.len();
    match node.propose(Command::Txns(txns)).await {
        Ok(CommandResult::Txns(results)) if results.len() == n => {
            results.into_iter().map(|r| r.map_err(StoreError::from)).collect()
        }
        Ok(other) => {
            let e = StoreError::Storage(format!("unexpected result for a batch: {other:?}"));
            vec![Err(e); n]
        }
        Err(e) => vec![Err(e); n],
    }
}

fn txn_bytes(txn: &Txn) -> usize {
    use crate::types::Op;
    let op_bytes = |op: &Op| match op {
        Op::Put { key, value, .. } => key.len() + value.len(),
        _ => 64,
    };
    txn.success.iter().chain(&txn.failure).map(op_bytes).sum::<usize>() + 16
}

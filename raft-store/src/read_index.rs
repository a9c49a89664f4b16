//! Linearizable reads share read-index rounds: all reads that arrive while a round is in
//! progress wait for the next one, then share its answer. Sharing is safe because every
//! read in a round arrived before the round asked the leader, so the index it returns
//! covers every write acknowledged before any of those reads began.

use tokio::sync::{mpsc, oneshot};

use crate::error::Result;
use crate::node::StoreNode;

pub type Waiter = oneshot::Sender<Result<u64>>;

/// Reads waiting for a round before callers feel back-pressure.
pub const QUEUE: usize = 8192;

/// Runs rounds until every sender is gone.
pub async fn run(node: StoreNode, mut rx: mpsc::Receiver<Waiter>) {
    while let Some(first) = rx.recv().await {
        let mut waiting = vec![first];
        while let Ok(next) = rx.try_recv() {
            waiting.push(next);
        }
        metrics::histogram!("flotilla_store_read_index_batch").record(waiting.len() as f64);
        let result = node.read_index_round().await;
        for waiter in waiting {
            let _ = waiter.send(result.clone());
        }
    }
}

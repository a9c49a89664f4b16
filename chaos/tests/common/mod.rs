//! What the chaos tests that write through the store API share: writers that record what
//! was acknowledged, and waiting for progress.

#![allow(clippy::unwrap_used, dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chaos::{AckedWrites, FlotillaCluster};
use raft_store::StoreError;
use tokio::sync::watch;

pub const DEADLINE: Duration = Duration::from_secs(60);
pub const PREFIX: &[u8] = b"/chaos/";

/// Writers put distinct keys through rotating members until `stop` turns true.
pub fn start_writers(
    cluster: &FlotillaCluster,
    writers: usize,
    acked: Arc<Mutex<AckedWrites>>,
    progress: watch::Sender<usize>,
    stop: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let clients: Vec<_> = cluster.ids().into_iter().map(|id| cluster.client(id).unwrap()).collect();
    let progress = Arc::new(progress);
    (0..writers)
        .map(|w| {
            let (clients, acked, progress, stop) = (clients.clone(), acked.clone(), progress.clone(), stop.clone());
            tokio::spawn(async move {
                let mut i = 0usize;
                while !*stop.borrow() {
                    let key = format!("/chaos/w{w}/{i}").into_bytes();
                    let value = format!("value-{w}-{i}").into_bytes();
                    let client = &clients[(w + i) % clients.len()];
                    let result = client.put(key.clone(), value.clone()).await;
                    let failed = result.is_err();
                    {
                        let mut acked = acked.lock().unwrap();
                        match result {
                            Ok(rev) => acked.ack(key, value, rev),
                            Err(StoreError::Indeterminate(_)) => acked.indeterminate += 1,
                            Err(_) => acked.failed += 1,
                        }
                        progress.send_replace(acked.len());
                    }
                    i += 1;
                    if failed {
                        // A back-off, not a wait for anything: with every member down, puts
                        // fail at once, and writers retrying in a tight loop would starve the
                        // test's own deadlines (a failing run then hung instead of failing).
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    }
                }
            })
        })
        .collect()
}

pub async fn wait_acked(progress: &mut watch::Receiver<usize>, at_least: usize, what: &str) {
    tokio::time::timeout(DEADLINE, progress.wait_for(|n| *n >= at_least))
        .await
        .unwrap_or_else(|_| panic!("{what}: fewer than {at_least} acknowledged writes in time"))
        .unwrap();
}

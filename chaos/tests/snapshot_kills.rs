//! Members killed again and again while snapshots are built and logs purged (a snapshot every
//! 50 entries): every restart must come up, catch up, and hold every acknowledged write.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chaos::{flotilla_binary, AckedWrites, FlotillaCluster, FAST_ELECTIONS};
use common::{start_writers, wait_acked, DEADLINE, PREFIX};
use tokio::sync::watch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_killed_while_snapshotting_restart_and_keep_every_write() {
    let tmp = tempfile::tempdir().unwrap();
    let mut args: Vec<&str> = FAST_ELECTIONS.to_vec();
    args.extend(["--snapshot-after-logs", "50"]);
    let mut cluster = FlotillaCluster::start(&flotilla_binary().unwrap(), tmp.path(), 3, &args).unwrap();
    cluster.wait_for_leader(DEADLINE).await.unwrap();
    let acked = Arc::new(Mutex::new(AckedWrites::default()));
    let (progress_tx, mut progress) = watch::channel(0);
    let (stop_tx, stop_rx) = watch::channel(false);
    let writers = start_writers(&cluster, 6, acked.clone(), progress_tx, stop_rx);

    for round in 0..12 {
        let leader = cluster.wait_for_leader(DEADLINE).await.unwrap();
        let victim = if round % 2 == 0 { leader } else { cluster.ids().into_iter().find(|id| *id != leader).unwrap() };
        let now = acked.lock().unwrap().len();
        wait_acked(&mut progress, now + 100, "before the kill").await;
        cluster.kill(victim).unwrap();
        let now = acked.lock().unwrap().len();
        wait_acked(&mut progress, now + 100, "after the kill").await;
        cluster.restart(victim).unwrap();
        // The restarted member must come up and answer.
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while cluster.client(victim).unwrap().status().await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "member {victim} did not come back (round {round}):\n{}",
                cluster.log_tail(victim, 40)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    stop_tx.send_replace(true);
    for w in writers {
        w.await.unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let last = acked.max_revision();
    for id in cluster.ids() {
        let client = cluster.client(id).unwrap();
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while !client.status().await.is_ok_and(|s| s.revision >= last) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "member {id} never applied revision {last}:\n{}",
                cluster.log_tail(id, 40)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let lost = acked.check_member(&client, PREFIX).await.unwrap();
        assert!(lost.is_empty(), "member {id} lost {} acknowledged writes", lost.len());
    }
}

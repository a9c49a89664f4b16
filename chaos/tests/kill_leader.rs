//! Kill -9 the leader of a 3-process cluster under a steady write load, restart it, and
//! check that every acknowledged write is on all three members.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chaos::{flotilla_binary, AckedWrites, FlotillaCluster, FAST_ELECTIONS};
use common::{start_writers, wait_acked, DEADLINE, PREFIX};
use tokio::sync::watch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_a_leader_kill_on_all_three_members() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = FlotillaCluster::start(&flotilla_binary().unwrap(), tmp.path(), 3, &FAST_ELECTIONS).unwrap();
    let leader = cluster.wait_for_leader(DEADLINE).await.unwrap();

    let acked = Arc::new(Mutex::new(AckedWrites::default()));
    let (progress_tx, mut progress) = watch::channel(0);
    let (stop_tx, stop_rx) = watch::channel(false);
    let writers = start_writers(&cluster, 6, acked.clone(), progress_tx, stop_rx);

    wait_acked(&mut progress, 200, "before the kill").await;
    cluster.kill(leader).unwrap();
    let at_kill = acked.lock().unwrap().len();
    let new_leader = cluster.wait_for_leader(DEADLINE).await.unwrap();
    assert_ne!(new_leader, leader);
    wait_acked(&mut progress, at_kill + 200, "after failover").await;

    cluster.restart(leader).unwrap();
    let at_restart = acked.lock().unwrap().len();
    wait_acked(&mut progress, at_restart + 100, "after the restart").await;
    stop_tx.send_replace(true);
    for w in writers {
        w.await.unwrap();
    }

    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let last = acked.max_revision();
    for id in cluster.ids() {
        let client = cluster.client(id).unwrap();
        // The restarted member catches up; wait for it to apply the last acknowledged write.
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            if client.status().await.is_ok_and(|s| s.revision >= last) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "member {id} never applied revision {last}:\n{}",
                cluster.log_tail(id, 30)
            );
        }
        let lost = acked.check_member(&client, PREFIX).await.unwrap();
        assert!(
            lost.is_empty(),
            "member {id} lost {} acknowledged writes, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(3)]
        );
    }
    eprintln!(
        "acknowledged {} writes ({} before the kill), {} indeterminate, {} refused; leader {leader} -> {new_leader}",
        acked.len(),
        at_kill,
        acked.indeterminate,
        acked.failed
    );
}

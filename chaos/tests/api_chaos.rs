//! The chaos suite through the Kubernetes API: a multi-process cluster (every member serving
//! the API), the workload of `chaos::workload` (creates, compare-and-swap updates, deletes and
//! quorum reads of ConfigMaps through every member, watchers on different members), and
//! faults: SIGKILL of the leader (five times), SIGKILL of a follower, a network partition
//! isolating the leader (iptables rules on the members' loopback addresses), SIGSTOP of the
//! leader, and a follower replaced by a new member (membership change under load).
//! The history goes through the checkers: no linearizability violation, no acknowledged write
//! lost, no watch gap, duplicate, reordering or phantom. A failed run keeps its history in
//! `$CARGO_TARGET_TMPDIR/chaos-*` (or the system temp dir) for `Report::check_dir`.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use chaos::{
    flotilla_binary, CheckOptions, FlotillaCluster, Report, Verdict, Workload, WorkloadConfig, FAST_ELECTIONS,
};

const DEADLINE: Duration = Duration::from_secs(60);

/// Waits until the workload has had `more` operations acknowledged since now.
async fn progress(workload: &Workload, cluster: &FlotillaCluster, more: usize, what: &str) {
    let target = workload.acknowledged() + more;
    let deadline = Instant::now() + DEADLINE;
    while workload.acknowledged() < target {
        assert!(
            Instant::now() < deadline,
            "no progress after {what} (logs in {}):\n{}",
            cluster.base().display(),
            cluster.log_tails(&cluster.running())
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn run(members: u64, leader_kills: usize) {
    // Kept when the run fails (member logs, history); removed when it passes.
    let dir = tempfile::Builder::new().prefix("chaos-").tempdir_in(std::env::temp_dir()).unwrap().keep();
    let base = dir.as_path();
    let mut cluster =
        FlotillaCluster::start_with_api(&flotilla_binary().unwrap(), base, members, &FAST_ELECTIONS).unwrap();
    let urls: Vec<String> = cluster.ids().iter().map(|id| cluster.api(*id).unwrap().to_string()).collect();
    cluster.wait_for_leader(DEADLINE).await.unwrap();
    let config = WorkloadConfig { seed: members, ..WorkloadConfig::default() };
    let workload = Workload::start(&urls, &cluster.pki_dir(), config).unwrap();
    progress(&workload, &cluster, 50, "start").await;

    for kill in 0..leader_kills {
        let leader = cluster.wait_for_leader(DEADLINE).await.unwrap();
        cluster.kill(leader).unwrap();
        progress(&workload, &cluster, 30, &format!("leader kill {kill}")).await;
        cluster.restart(leader).unwrap();
        progress(&workload, &cluster, 30, &format!("restart after kill {kill}")).await;
    }
    let leader = cluster.wait_for_leader(DEADLINE).await.unwrap();
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    cluster.kill(follower).unwrap();
    progress(&workload, &cluster, 30, "follower kill").await;
    cluster.restart(follower).unwrap();
    // The leader cut off from the others: the majority elects another and goes on; the old
    // leader's side can neither commit nor answer a quorum read.
    let leader = cluster.wait_for_leader(DEADLINE).await.unwrap();
    cluster.partition(&[leader]).unwrap();
    let majority: Vec<_> = cluster.running().into_iter().filter(|id| *id != leader).collect();
    let successor = cluster.wait_for_leader_among(&majority, DEADLINE).await.unwrap();
    assert_ne!(successor, leader, "the majority side elects one of its own");
    progress(&workload, &cluster, 30, "leader partition").await;
    cluster.heal().unwrap();
    progress(&workload, &cluster, 30, "partition healed").await;
    let leader = cluster.wait_for_leader(DEADLINE).await.unwrap();
    cluster.pause(leader).unwrap();
    progress(&workload, &cluster, 30, "leader pause").await;
    cluster.resume(leader).unwrap();
    progress(&workload, &cluster, 30, "leader resume").await;
    // Membership change under load: a follower out, a new member in.
    let leader = cluster.wait_for_leader(DEADLINE).await.unwrap();
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    cluster.replace(follower, leader, &FAST_ELECTIONS, DEADLINE).await.unwrap();
    let urls: Vec<String> = cluster.ids().iter().map(|id| cluster.api(*id).unwrap().to_string()).collect();
    workload.set_members(&urls, &cluster.pki_dir()).unwrap();
    progress(&workload, &cluster, 30, "member replaced").await;
    cluster.wait_for_leader(DEADLINE).await.unwrap();

    let history = workload.finish().await;
    let report = Report::check(&history, &CheckOptions::default());
    eprintln!("{members} members, {leader_kills} leader kills:\n{report}");
    if report.verdict() != Verdict::Valid {
        history.save(&base.join("history")).unwrap();
        panic!("chaos run failed; history in {}\n{report}", base.join("history").display());
    }
    drop(cluster);
    let _ = std::fs::remove_dir_all(base);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_survive_leader_kills_partitions_pauses_and_follower_kills() {
    run(3, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_members_survive_leader_kills_partitions_pauses_and_follower_kills() {
    run(5, 5).await;
}

//! `flotilla server --join`: a new process joins a running 3-member cluster online, becomes
//! a voter, and receives every earlier write; it restarts from its data even once the
//! member it joined through is gone.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chaos::{flotilla_binary, FlotillaCluster, FAST_ELECTIONS};
use raft_store::RangeRequest;

const DEADLINE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_member_joins_a_running_cluster_and_becomes_a_voter_with_all_data() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = FlotillaCluster::start(&flotilla_binary().unwrap(), tmp.path(), 3, &FAST_ELECTIONS).unwrap();
    let leader = cluster.wait_for_leader(DEADLINE).await.unwrap();
    let client = cluster.client(leader).unwrap();
    for i in 0..50 {
        client.put(format!("/join/{i}"), "x").await.unwrap();
    }

    cluster.join(4, 2, &FAST_ELECTIONS).unwrap();
    let joined = cluster.client(4).unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tick.tick().await;
        if let Ok(status) = joined.status().await {
            if status.voters == vec![1, 2, 3, 4] && status.leader.is_some() {
                break;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "member 4 never became a voter:\n{}", cluster.log_tail(4, 30));
    }
    // Writes through the new member work, and it holds everything written before it came.
    client.put("/join/after", "y").await.unwrap();
    joined.put("/join/via-new", "z").await.unwrap();
    let all = joined.range(&RangeRequest::prefix("/join/"), true).await.unwrap();
    assert_eq!(all.count, 52);
    for id in [1, 2, 3] {
        assert_eq!(cluster.client(id).unwrap().status().await.unwrap().voters, vec![1, 2, 3, 4]);
    }

    // Its seed leaves the cluster for good; the joined member restarts from its own data
    // and comes back without asking the seed.
    client.change_membership([1, 3, 4].into_iter().collect()).await.unwrap();
    cluster.kill(2).unwrap();
    cluster.kill(4).unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    // Retried: the removal may have deposed the leader.
    while cluster.client(1).unwrap().put("/join/while-down", "w").await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "no write after the seed left:\n{}", cluster.log_tail(1, 30));
        tick.tick().await;
    }
    cluster.restart(4).unwrap();
    loop {
        tick.tick().await;
        if let Ok(all) = joined.range(&RangeRequest::prefix("/join/"), true).await {
            if all.count == 53 {
                break;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "member 4 never came back:\n{}", cluster.log_tail(4, 30));
    }
    assert_eq!(joined.status().await.unwrap().voters, vec![1, 3, 4]);
}

/// `flotilla member`: a dead follower is removed and a replacement joins, while writes go on
/// through the survivors; `member list` shows the new membership.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_member_is_replaced_online_with_flotilla_member() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = flotilla_binary().unwrap();
    let mut cluster = FlotillaCluster::start(&bin, tmp.path(), 3, &FAST_ELECTIONS).unwrap();
    let leader = cluster.wait_for_leader(DEADLINE).await.unwrap();
    let dead = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    cluster.kill(dead).unwrap();
    let client = cluster.client(leader).unwrap();
    client.put("/replace/before", "x").await.unwrap();

    let endpoint = cluster.addr(leader).unwrap().to_string();
    let member = |args: &[&str]| {
        let out =
            std::process::Command::new(&bin).args(["member", "--endpoint", &endpoint]).args(args).output().unwrap();
        assert!(out.status.success(), "flotilla member {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    member(&["remove", &dead.to_string()]);
    client.put("/replace/between", "x").await.unwrap();
    cluster.join(4, leader, &FAST_ELECTIONS).unwrap();
    let joined = cluster.client(4).unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tick.tick().await;
        if let Ok(status) = joined.status().await {
            if status.voters.contains(&4) && !status.voters.contains(&dead) && status.voters.len() == 3 {
                break;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "member 4 never became a voter:\n{}", cluster.log_tail(4, 30));
    }
    client.put("/replace/after", "x").await.unwrap();
    assert_eq!(joined.range(&RangeRequest::prefix("/replace/"), true).await.unwrap().count, 3);

    let list = member(&["list"]);
    let roles: Vec<(String, String)> = list
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[2].to_string())
        })
        .collect();
    assert_eq!(roles.len(), 3, "{list}");
    assert!(roles.iter().all(|(id, _)| *id != dead.to_string()), "{list}");
    assert!(roles.contains(&(leader.to_string(), "leader".to_string())), "{list}");
    assert!(roles.contains(&("4".to_string(), "voter".to_string())), "{list}");
}

//! In-process clusters: election, writes through any member, linearizable reads, watches
//! on followers, restart and catch-up (by log and by snapshot), and membership changes.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{collect_watch, TestCluster, DEADLINE};
use raft_store::*;

fn value(kv: &Option<KeyValue>) -> Option<String> {
    kv.as_ref().map(|kv| String::from_utf8(kv.value.clone()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_elect_a_leader_and_accept_writes_through_any_member() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = cluster.followers(leader)[0];

    let r1 = cluster.node(leader).put("/k/via-leader", "1").await.unwrap();
    let r2 = cluster.node(follower).put("/k/via-follower", "2").await.unwrap();
    assert_eq!(r2, r1 + 1, "each write raises the revision by one");

    // A linearizable read on every member sees both writes right after they were acknowledged.
    for node in cluster.nodes.values() {
        assert_eq!(value(&node.get("/k/via-leader").await.unwrap()).as_deref(), Some("1"), "member {}", node.id());
        assert_eq!(value(&node.get("/k/via-follower").await.unwrap()).as_deref(), Some("2"), "member {}", node.id());
        let all = node.range(RangeRequest::prefix("/k/"), true).await.unwrap();
        assert_eq!((all.count, all.revision), (2, r2));
    }

    // Conditional writes are decided once, by the state machine, whichever member is asked.
    let create = |v: &str| Txn {
        compare: vec![Compare::absent("/k/once")],
        success: vec![Op::put("/k/once", v)],
        failure: vec![],
        leader_term: None,
    };
    let a = cluster.node(leader).txn(create("a")).await.unwrap();
    let b = cluster.node(follower).txn(create("b")).await.unwrap();
    assert!(a.succeeded && !b.succeeded);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_on_a_follower_sees_exactly_the_committed_events_in_order() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = cluster.followers(leader)[1];
    let mut expected = Vec::new();
    for i in 0..30 {
        let writer = cluster.node(if i % 2 == 0 { leader } else { follower });
        let key = format!("/w/{}", i % 7);
        let rev = if i % 5 == 4 {
            writer.txn(Txn { success: vec![Op::delete(key.clone())], ..Default::default() }).await.unwrap().revision
        } else {
            writer.put(key.clone(), format!("v{i}")).await.unwrap()
        };
        writer.put("/other/noise", format!("{i}")).await.unwrap();
        expected.push((rev, key));
    }
    let last = expected.last().unwrap().0;
    let seen = collect_watch(cluster.node(follower), WatchRequest::prefix("/w/", 1), last).await;
    let got: Vec<(Revision, String)> = seen
        .iter()
        .flat_map(|b| b.events.iter().map(move |e| (b.revision, String::from_utf8(e.kv.key.clone()).unwrap())))
        .collect();
    // Deletes of absent keys change nothing and make no event.
    let expected: Vec<_> = expected.into_iter().filter(|(rev, _)| seen.iter().any(|b| b.revision == *rev)).collect();
    assert_eq!(got, expected);
    assert!(got.len() >= 24, "most writes produce events: {}", got.len());

    // A live watch started now sees the next change, once.
    let next = cluster.node(leader).put("/w/live", "x").await.unwrap();
    let live = collect_watch(cluster.node(follower), WatchRequest::prefix("/w/", next), next).await;
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].events[0].kv.value, b"x");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_member_catches_up_from_the_log() {
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let victim = cluster.followers(leader)[0];
    cluster.node(leader).put("/r/before", "1").await.unwrap();
    cluster.stop(victim).await;
    let mut last = 0;
    for i in 0..20 {
        last = cluster.node(leader).put(format!("/r/{i}"), "x").await.unwrap();
    }
    let node = cluster.restart(victim).await;
    node.wait_revision(last, DEADLINE).await.unwrap();
    let all = node.range(RangeRequest::prefix("/r/"), false).await.unwrap();
    assert_eq!(all.count, 21);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_behind_the_purged_log_catches_up_by_snapshot_after_compaction() {
    let mut cluster = TestCluster::start_with(3, |cfg| {
        cfg.snapshot_after_logs = 20;
        cfg.logs_kept_after_snapshot = 0;
    })
    .await;
    let leader = cluster.leader().await;
    let victim = cluster.followers(leader)[0];
    cluster.stop(victim).await;
    let mut last = 0;
    for i in 0..60 {
        last = cluster.node(leader).put(format!("/s/{}", i % 10), format!("v{i}")).await.unwrap();
    }
    cluster.node(leader).compact(last - 5).await.unwrap();
    // Make sure the leader really purged the log past what the victim has.
    cluster.node(leader).raft().trigger().snapshot().await.unwrap();
    cluster
        .node(leader)
        .raft()
        .wait(Some(DEADLINE))
        .metrics(|m| m.purged.is_some_and(|p| p.index >= 40), "leader purged its log")
        .await
        .unwrap();

    // The compaction makes no revision: wait for the victim to apply everything the leader
    // has (the snapshot it gets may be from before the compaction, which then follows in
    // the log).
    let applied = cluster.node(leader).raft().metrics().borrow().last_applied.map(|id| id.index);

    let node = cluster.restart(victim).await;
    node.raft().wait(Some(DEADLINE)).metrics(|m| m.snapshot.is_some(), "victim installed a snapshot").await.unwrap();
    node.raft().wait(Some(DEADLINE)).applied_index_at_least(applied, "victim caught up").await.unwrap();
    node.wait_revision(last, DEADLINE).await.unwrap();
    let status = node.status().unwrap();
    assert_eq!(status.compact_revision, last - 5, "compaction reaches the member behind");
    let all = node.range(RangeRequest::prefix("/s/"), false).await.unwrap();
    assert_eq!(all.count, 10);
    assert_eq!(value(&all.kvs.into_iter().find(|kv| kv.key == b"/s/9")).as_deref(), Some("v59"));
    // History before the compaction point is gone there too; after it, watches still work.
    let err = node.range(RangeRequest { revision: last - 10, ..RangeRequest::prefix("/s/") }, false).await.unwrap_err();
    assert!(matches!(err, StoreError::Compacted { .. }), "{err:?}");
    let tail = collect_watch(&node, WatchRequest::prefix("/s/", last - 5), last).await;
    assert_eq!(tail.len(), 6);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_grows_from_one_to_three_to_five_and_shrinks_to_three() {
    let mut cluster = TestCluster::start(1).await;
    let first = cluster.node(1).clone();
    first.put("/m/0", "x").await.unwrap();
    for id in 2..=5 {
        cluster.launch(id, &|cfg| cfg.compaction = None).await;
    }
    let addr = |c: &TestCluster, id| c.node(id).addr().to_string();

    for id in [2, 3] {
        first.add_learner(id, addr(&cluster, id)).await.unwrap();
    }
    first.change_membership(BTreeSet::from([1, 2, 3])).await.unwrap();
    assert_eq!(first.status().unwrap().voters, vec![1, 2, 3]);
    // Membership changes work through a follower too.
    for id in [4, 5] {
        cluster.node(2).add_learner(id, addr(&cluster, id)).await.unwrap();
    }
    cluster.node(3).change_membership(BTreeSet::from([1, 2, 3, 4, 5])).await.unwrap();
    let rev = cluster.node(5).put("/m/5", "x").await.unwrap();
    for node in cluster.nodes.values() {
        node.wait_revision(rev, DEADLINE).await.unwrap();
        assert_eq!(node.status().unwrap().voters, vec![1, 2, 3, 4, 5]);
    }

    // Shrink to three, removing the original member (often the leader) too.
    cluster.node(4).change_membership(BTreeSet::from([3, 4, 5])).await.unwrap();
    cluster.stop(1).await;
    cluster.stop(2).await;
    let leader = cluster.leader().await;
    assert!([3, 4, 5].contains(&leader));
    let rev = cluster.node(3).put("/m/after", "x").await.unwrap();
    for node in cluster.nodes.values() {
        node.wait_revision(rev, DEADLINE).await.unwrap();
        let status = node.status().unwrap();
        assert_eq!(status.voters, vec![3, 4, 5]);
        assert!(status.learners.is_empty());
        assert_eq!(node.range(RangeRequest::prefix("/m/"), true).await.unwrap().count, 3);
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_member_transport_is_rejected_and_the_cluster_keeps_working() {
    use raft_store::proto::{kv_client::KvClient, raft_client::RaftClient, Blob};
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let target = format!("http://{}", cluster.node(leader).addr());
    let junk = || tonic::Request::new(Blob { data: vec![0xde, 0xad, 0xbe, 0xef, 1, 2, 3] });

    let mut raft = RaftClient::connect(target.clone()).await.unwrap();
    for status in [
        raft.append_entries(junk()).await.unwrap_err(),
        raft.vote(junk()).await.unwrap_err(),
        raft.install_snapshot(junk()).await.unwrap_err(),
    ] {
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    }
    // On the append stream, garbage ends the stream with the same error.
    let junk_blob = Blob { data: vec![0xde, 0xad, 0xbe, 0xef] };
    let mut answers = raft.append_stream(tokio_stream::iter([junk_blob])).await.unwrap().into_inner();
    let status = answers.message().await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let mut kv = KvClient::connect(target).await.unwrap();
    // So on the forwarding stream.
    let junk_blob = Blob { data: vec![0xde, 0xad, 0xbe, 0xef] };
    let mut answers = kv.propose_stream(tokio_stream::iter([junk_blob])).await.unwrap().into_inner();
    let status = answers.message().await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert_eq!(kv.propose(junk()).await.unwrap_err().code(), tonic::Code::InvalidArgument);
    assert_eq!(kv.txn(junk()).await.unwrap_err().code(), tonic::Code::InvalidArgument);
    assert_eq!(kv.range(junk()).await.unwrap_err().code(), tonic::Code::InvalidArgument);
    assert_eq!(kv.add_learner(junk()).await.unwrap_err().code(), tonic::Code::InvalidArgument);
    // An invalid transaction is refused before it reaches the log.
    let dup = Txn { success: vec![Op::put("a", "1"), Op::put("a", "2")], ..Default::default() };
    assert!(matches!(cluster.node(leader).txn(dup).await, Err(StoreError::InvalidArgument(_))));

    // No member fell over: each still answers and accepts writes.
    for node in cluster.nodes.values() {
        let rev = node.put(format!("/still/works/{}", node.id()), "yes").await.unwrap();
        assert_eq!(node.get(format!("/still/works/{}", node.id())).await.unwrap().unwrap().mod_revision, rev);
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_member_restarts_with_all_its_data() {
    let mut cluster = TestCluster::start(1).await;
    let mut revs = BTreeMap::new();
    for i in 0..10 {
        revs.insert(i, cluster.node(1).put(format!("/p/{i}"), format!("{i}")).await.unwrap());
    }
    cluster.stop(1).await;
    let node = cluster.restart(1).await;
    cluster.leader().await;
    let all = node.range(RangeRequest::prefix("/p/"), true).await.unwrap();
    assert_eq!(all.count, 10);
    assert_eq!(all.revision, revs[&9]);
    let next = node.put("/p/next", "x").await.unwrap();
    assert_eq!(next, revs[&9] + 1, "revisions keep rising after a restart");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transactions_share_raft_entries_and_each_gets_its_own_revision() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let node = cluster.node(leader).clone();
    let last_index = |node: &raft_store::node::StoreNode| node.raft().metrics().borrow().last_log_index.unwrap_or(0);
    let before = last_index(&node);
    let puts: Vec<_> = (0..64)
        .map(|i| {
            let node = node.clone();
            tokio::spawn(async move { node.put(format!("/g/{i}"), "x").await })
        })
        .collect();
    let mut revs = BTreeSet::new();
    for put in puts {
        revs.insert(put.await.unwrap().unwrap());
    }
    assert_eq!(revs.len(), 64, "one revision per transaction");
    let entries = last_index(&node) - before;
    // One in flight at a time (the first alone, from its caller), the rest batched behind it.
    assert!(entries <= 32, "64 concurrent puts took {entries} Raft entries");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_compacts_old_history_automatically_on_every_member() {
    let cluster = TestCluster::start_with(3, |cfg| {
        cfg.compaction =
            Some(raft_store::node::CompactionPolicy { interval: std::time::Duration::from_millis(50), retain: 5 });
    })
    .await;
    let leader = cluster.leader().await;
    let mut last = 0;
    for i in 0..30 {
        last = cluster.node(leader).put(format!("/c/{}", i % 3), format!("{i}")).await.unwrap();
    }
    for node in cluster.nodes.values() {
        // Compaction is a replicated command: wait for each member to apply it.
        let mut revision = node.raft().metrics();
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while node.status().unwrap().compact_revision < last - 5 {
            assert!(tokio::time::Instant::now() < deadline, "member {} never compacted", node.id());
            let _ = tokio::time::timeout_at(deadline, revision.changed()).await;
        }
        let old = RangeRequest { revision: last - 10, ..RangeRequest::prefix("/c/") };
        assert!(matches!(node.range(old, false).await, Err(StoreError::Compacted { .. })));
        assert_eq!(node.range(RangeRequest::prefix("/c/"), false).await.unwrap().count, 3);
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_client_watches_a_follower_over_grpc_and_hears_when_history_is_gone() {
    use futures::StreamExt;
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = cluster.followers(leader)[0];
    let client = raft_store::client::StoreClient::new(cluster.node(follower).addr()).unwrap();
    let first = client.put("/g/a", "1").await.unwrap();
    client.put("/g/b", "1").await.unwrap();
    let last = client.txn(&Txn { success: vec![Op::delete("/g/a")], ..Default::default() }).await.unwrap().revision;

    let req = WatchRequest::prefix("/g/", first);
    let mut stream = Box::pin(client.watch(&req).await.unwrap());
    let mut seen = Vec::new();
    while seen.last().is_none_or(|(rev, _)| *rev < last) {
        let batch = tokio::time::timeout(DEADLINE, stream.next()).await.unwrap().unwrap().unwrap();
        seen.extend(batch.events.iter().map(|e| (batch.revision, e.kind)));
    }
    assert_eq!(seen, vec![(first, EventKind::Put), (first + 1, EventKind::Put), (last, EventKind::Delete)]);

    client.compact(last).await.unwrap();
    // A linearizable read makes the follower apply everything committed so far, compaction included.
    client.range(&RangeRequest::key("/g/b"), true).await.unwrap();
    let stale = WatchRequest::prefix("/g/", first);
    let mut stream = Box::pin(client.watch(&stale).await.unwrap());
    let end = tokio::time::timeout(DEADLINE, stream.next()).await.unwrap().unwrap();
    assert!(
        matches!(end, Err(StoreError::Compacted { requested, compacted }) if requested == first && compacted == last)
    );
    cluster.shutdown().await;
}

/// A stopping member ends its remote watches with UNAVAILABLE, so the watcher knows to go
/// elsewhere and the member's shutdown does not wait on the open stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_member_ends_its_remote_watches() {
    use futures::StreamExt;
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = cluster.followers(leader)[0];
    let client = raft_store::client::StoreClient::new(cluster.node(follower).addr()).unwrap();
    let first = client.put("/stop/a", "1").await.unwrap();
    let mut stream = Box::pin(client.watch(&WatchRequest::prefix("/stop/", first)).await.unwrap());
    assert_eq!(next_batch(&mut stream).await.revision, first);

    tokio::time::timeout(DEADLINE, cluster.stop(follower)).await.expect("shutdown waited on the open watch");
    let end =
        tokio::time::timeout(DEADLINE, stream.next()).await.expect("watch went quiet").expect("watch ended silently");
    assert!(matches!(end, Err(StoreError::Unavailable(_))), "{end:?}");
    cluster.shutdown().await;
}

async fn next_batch(stream: &mut (impl futures::Stream<Item = Result<RevisionEvents>> + Unpin)) -> RevisionEvents {
    use futures::StreamExt;
    tokio::time::timeout(DEADLINE, stream.next()).await.expect("watch went quiet").expect("watch ended").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_with_progress_notify_learns_how_far_the_store_has_gone() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = cluster.followers(leader)[0];
    let before = cluster.node(leader).put("/quiet/a", "1").await.unwrap();
    cluster.node(follower).wait_revision(before, DEADLINE).await.unwrap();
    let req = WatchRequest { progress_notify: true, ..WatchRequest::prefix("/quiet/", before) };
    let mut stream = Box::pin(cluster.node(follower).watch(req));
    let first = next_batch(&mut stream).await;
    assert_eq!((first.revision, first.events.len()), (before, 1));
    let caught_up = next_batch(&mut stream).await;
    assert!(caught_up.events.is_empty() && caught_up.revision >= before, "{caught_up:?}");

    // Only other keys change: the watcher still hears, with no events, how far the store got.
    let mut seen = caught_up.revision;
    for _ in 0..3 {
        let written = cluster.node(leader).put("/noise", "x").await.unwrap();
        while seen < written {
            let item = next_batch(&mut stream).await;
            assert!(item.events.is_empty(), "no events for other keys: {item:?}");
            assert!(item.revision > seen, "progress only moves forward");
            seen = item.revision;
        }
    }
    cluster.shutdown().await;
}

/// Leadership fencing: once another member has taken over (the leader was stopped and came
/// back as a follower), a write fenced to the old leader's term is refused whichever member
/// it is sent to, and leaves no trace; a write fenced to the new term goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_fenced_to_a_deposed_leaders_term_are_rejected() {
    let mut cluster = TestCluster::start(3).await;
    let old = cluster.leader().await;
    let old_term = cluster.node(old).leader_term().unwrap();
    let fenced = |v: &str, term| Txn::put("/fence/k", v).fenced(Some(term));
    cluster.node(old).txn(fenced("old", old_term)).await.unwrap();

    cluster.stop(old).await;
    let successor = cluster.leader().await;
    let new_term = cluster.node(successor).leader_term().unwrap();
    assert!(new_term > old_term);
    cluster.restart(old).await;
    assert_eq!(cluster.leader().await, successor);

    for member in [old, successor] {
        let refused = cluster.node(member).txn(fenced("stale", old_term)).await.unwrap_err();
        assert_eq!(refused, StoreError::Fenced { fenced: old_term, proposed: new_term }, "via member {member}");
    }
    cluster.node(old).txn(fenced("new", new_term)).await.unwrap();
    for node in cluster.nodes.values() {
        assert_eq!(value(&node.get("/fence/k").await.unwrap()).as_deref(), Some("new"), "member {}", node.id());
    }
    cluster.shutdown().await;
}

/// A member that was down while thousands of entries were written catches up, even with
/// short heartbeats: openraft gives each AppendEntries one heartbeat interval, so the log must
/// go over in small steps (a step of a thousand entries timed out every time, for ever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_far_behind_catches_up_under_short_heartbeats() {
    let tune = |cfg: &mut StoreConfig| {
        cfg.heartbeat_ms = 20;
        cfg.election_timeout_min_ms = 200;
        cfg.election_timeout_max_ms = 400;
        cfg.snapshot_after_logs = 1_000_000;
    };
    let mut cluster = TestCluster::start_with(3, tune).await;
    let leader = cluster.leader().await;
    let behind = cluster.followers(leader)[0];
    cluster.stop(behind).await;
    // Sequential writes: one log entry each.
    let writer = cluster.node(leader).clone();
    let value = "x".repeat(512);
    let mut last = 0;
    for i in 0..3000 {
        last = writer.put(format!("/behind/{i}"), value.clone()).await.unwrap();
    }
    let node = cluster.restart(behind).await;
    node.wait_revision(last, common::DEADLINE).await.unwrap();
    let all = node.range(RangeRequest::prefix("/behind/"), false).await.unwrap();
    assert_eq!(all.count, 3000);
    cluster.shutdown().await;
}

/// Every member of a cluster names it alike, and refuses member calls from another cluster
/// (whose member may have taken over a reused port): no foreign log entry or vote gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_refuse_calls_from_another_cluster() {
    let ours = TestCluster::start(3).await;
    let theirs = TestCluster::start(1).await;
    let ids: Vec<Option<String>> = ours.nodes.values().map(|n| n.cluster_id()).collect();
    assert!(ids[0].is_some() && ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let their_id = theirs.nodes.values().next().unwrap().cluster_id();
    assert!(their_id.is_some() && their_id != ids[0]);

    let target = ours.nodes.values().next().unwrap().addr().to_string();
    let channel = raft_store::network::channel(&target, None).unwrap();
    let mut client = raft_store::proto::raft_client::RaftClient::new(channel);
    let call = |cluster: Option<String>| {
        let cluster: raft_store::network::ClusterId = std::sync::Arc::new(std::sync::RwLock::new(cluster));
        raft_store::network::tagged(raft_store::proto::Blob { data: vec![1, 2, 3] }, &cluster)
    };
    let foreign = client.vote(call(their_id.clone())).await.unwrap_err();
    assert_eq!(foreign.code(), tonic::Code::FailedPrecondition, "{foreign}");
    let cluster: raft_store::network::ClusterId = std::sync::Arc::new(std::sync::RwLock::new(their_id));
    let appends = tokio_stream::iter([raft_store::proto::Blob { data: vec![1, 2, 3] }]);
    let foreign = client.append_stream(raft_store::network::tagged(appends, &cluster)).await.unwrap_err();
    assert_eq!(foreign.code(), tonic::Code::FailedPrecondition, "{foreign}");
    let mut kv = raft_store::proto::kv_client::KvClient::new(raft_store::network::channel(&target, None).unwrap());
    let proposals = tokio_stream::iter([raft_store::proto::Blob { data: vec![1, 2, 3] }]);
    let foreign = kv.propose_stream(raft_store::network::tagged(proposals, &cluster)).await.unwrap_err();
    assert_eq!(foreign.code(), tonic::Code::FailedPrecondition, "{foreign}");
    // The same call from its own cluster gets past the check (to the payload, garbage here).
    let own = client.append_entries(call(ids[0].clone())).await.unwrap_err();
    assert_eq!(own.code(), tonic::Code::InvalidArgument, "{own}");
    ours.shutdown().await;
    theirs.shutdown().await;
}

//! The health actor against a real single-member store: it turns ready once a leader is elected.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actors::{GetHealth, HealthActor};
use raft_store::{StoreConfig, StoreNode};

#[actix_rt::test]
async fn health_actor_reports_ready_once_the_single_member_has_elected_itself() {
    let dir = tempfile::tempdir().unwrap();
    let node = StoreNode::start(StoreConfig::new(1, dir.path(), "127.0.0.1:0".parse().unwrap())).await.unwrap();
    node.initialize(&BTreeMap::from([(1, node.addr().to_string())])).await.unwrap();

    let health = HealthActor::start_supervised(node.clone(), Duration::from_millis(10));
    let deadline = Instant::now() + Duration::from_secs(10);
    let last = loop {
        let h = health.send(GetHealth).await.unwrap();
        if h.ready || Instant::now() >= deadline {
            break h;
        }
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(last.ready, "not ready before the deadline: {}", last.reason);
    assert!(last.live);
    assert_eq!(last.status.as_ref().and_then(|s| s.leader), Some(1));

    node.shutdown().await;
}

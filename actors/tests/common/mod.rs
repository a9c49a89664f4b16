//! Shared set-up for the actor tests: a real single-member store, and a ConfigMap.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use raft_store::{StoreConfig, StoreNode};
use serde_json::{json, Value};

/// A single-member store in `dir` that has elected itself leader.
pub async fn single_member(dir: &std::path::Path) -> StoreNode {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = StoreConfig::new(1, dir, ([127, 0, 0, 1], port).into());
    StoreNode::start_single(config, Duration::from_secs(10)).await.unwrap()
}

pub fn cm(name: &str, value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": value}})
}

pub fn ns() -> Option<String> {
    Some("default".into())
}

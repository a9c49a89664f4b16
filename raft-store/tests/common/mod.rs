//! One shared helper for in-process clusters: members on loopback, each with its own data
//! dir, that tests stop, restart and reconfigure.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use raft_store::{NodeId, Revision, RevisionEvents, StoreConfig, StoreNode, WatchRequest};

pub const DEADLINE: Duration = Duration::from_secs(20);

pub struct TestCluster {
    pub tmp: tempfile::TempDir,
    /// Running members; a stopped member keeps its config so it can restart.
    pub nodes: BTreeMap<NodeId, StoreNode>,
    pub configs: BTreeMap<NodeId, StoreConfig>,
}

impl TestCluster {
    /// Starts `n` members (ids 1..=n) and bootstraps them as one cluster.
    pub async fn start(n: u64) -> Self {
        Self::start_with(n, |_| {}).await
    }

    pub async fn start_with(n: u64, tune: impl Fn(&mut StoreConfig)) -> Self {
        // Logs of a failing test, with RUST_LOG set (e.g. RUST_LOG=openraft=info).
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let mut cluster =
            TestCluster { tmp: tempfile::tempdir().unwrap(), nodes: BTreeMap::new(), configs: BTreeMap::new() };
        for id in 1..=n {
            cluster.launch(id, &tune).await;
        }
        let members: BTreeMap<NodeId, String> =
            cluster.nodes.iter().map(|(id, node)| (*id, node.addr().to_string())).collect();
        for node in cluster.nodes.values() {
            node.initialize(&members).await.unwrap();
        }
        cluster.leader().await;
        cluster
    }

    /// Starts a new, uninitialized member (for membership changes).
    pub async fn launch(&mut self, id: NodeId, tune: &dyn Fn(&mut StoreConfig)) -> StoreNode {
        let listen = SocketAddr::from(([127, 0, 0, 1], unused_port()));
        let mut cfg = StoreConfig::new(id, self.tmp.path().join(format!("member-{id}")), listen);
        cfg.heartbeat_ms = 50;
        cfg.election_timeout_min_ms = 300;
        cfg.election_timeout_max_ms = 600;
        cfg.compaction = None;
        tune(&mut cfg);
        let node = StoreNode::start(cfg.clone()).await.unwrap();
        // Restarts must come back on the same address, which peers know it by.
        cfg.listen = node.addr().parse().unwrap();
        self.configs.insert(id, cfg);
        self.nodes.insert(id, node.clone());
        node
    }

    pub fn node(&self, id: NodeId) -> &StoreNode {
        &self.nodes[&id]
    }

    /// Waits until every running voter agrees on one leader, and returns it.
    pub async fn leader(&self) -> NodeId {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let views: Vec<_> = self
                .nodes
                .values()
                .map(|n| n.status().unwrap())
                .filter(|s| s.voters.contains(&s.id))
                .map(|s| s.leader)
                .collect();
            if let Some(Some(leader)) = views.first() {
                if views.iter().all(|v| *v == Some(*leader)) && self.nodes.contains_key(leader) {
                    return *leader;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "no agreed leader: {views:?}");
            // Wake on the next metrics change of any member instead of sleeping.
            let mut changes: Vec<_> = self.nodes.values().map(|n| n.raft().metrics()).collect();
            let any = futures::future::select_all(changes.iter_mut().map(|m| Box::pin(m.changed())));
            let _ = tokio::time::timeout(Duration::from_millis(200), any).await;
        }
    }

    pub fn followers(&self, leader: NodeId) -> Vec<NodeId> {
        self.nodes.keys().copied().filter(|id| *id != leader).collect()
    }

    /// Stops a member, keeping its data dir.
    pub async fn stop(&mut self, id: NodeId) {
        let node = self.nodes.remove(&id).expect("member is running");
        node.shutdown().await;
        drop(node);
    }

    /// Restarts a stopped member on its data dir and address.
    pub async fn restart(&mut self, id: NodeId) -> StoreNode {
        let cfg = self.configs[&id].clone();
        // The old database handle may still be closing; retry opening within the deadline.
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let node = loop {
            match StoreNode::start(cfg.clone()).await {
                Ok(node) => break node,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "restart not ready");
                    tokio::task::yield_now().await;
                }
                Err(e) => {
                    let sockets = std::process::Command::new("ss").args(["-tanpe"]).output().unwrap();
                    let port = cfg.listen.port().to_string();
                    let held: Vec<_> = String::from_utf8_lossy(&sockets.stdout)
                        .lines()
                        .filter(|l| l.contains(&port))
                        .map(String::from)
                        .collect();
                    panic!("restart of member {id} failed: {e}; sockets on its port: {held:#?}")
                }
            }
        };
        // Until Raft has loaded the stored membership, the member's status names no voters
        // and `leader()` would leave it out of the agreement it waits for.
        let mut metrics = node.raft().metrics();
        while node.status().unwrap().voters.is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "member {id} did not load its membership");
            let _ = tokio::time::timeout(Duration::from_millis(200), metrics.changed()).await;
        }
        self.nodes.insert(id, node.clone());
        node
    }

    pub async fn shutdown(self) {
        for node in self.nodes.values() {
            node.shutdown().await;
        }
    }
}

/// A port free now on 127.0.0.1, from 10000-29999: below the kernel's ephemeral range, so
/// that no outgoing connection takes it as its local port while its member is stopped (a
/// restart must bind it again; seen: one could not for 20 s).
fn unused_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let random = || std::collections::hash_map::RandomState::new().build_hasher().finish();
    (0..1000)
        .map(|_| 10_000 + (random() % 20_000) as u16)
        .find(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .unwrap_or(0)
}

/// Collects a watch's events until it has seen `until` (inclusive), with a deadline.
pub async fn collect_watch(node: &StoreNode, req: WatchRequest, until: Revision) -> Vec<RevisionEvents> {
    let mut stream = Box::pin(node.watch(req));
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while out.last().is_none_or(|b: &RevisionEvents| b.revision < until) {
        let item = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "watch did not reach revision {until}; got {:?}",
                    out.last().map(|b: &RevisionEvents| b.revision)
                )
            })
            .expect("watch stream ended");
        out.push(item.expect("watch failed"));
    }
    out
}

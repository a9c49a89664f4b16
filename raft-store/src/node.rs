//! One store member: opens storage, runs openraft and the gRPC server, and offers the store
//! API (transactions, ranges, watches, compaction, membership) to the rest of Flotilla.
//!
//! Writes go through the leader: a member that is not the leader forwards the request over
//! gRPC. Reads are served locally, after a read-index round trip when linearizable.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::Stream;
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{BasicNode, Raft, ServerState};
use tokio::sync::{mpsc, oneshot};
use tonic::transport::Channel;

use crate::error::{Result, StoreError};
use crate::log_store::LogStore;
use crate::mvcc::{decode, encode, validate_txn, Mvcc};
use crate::network::{self, Network};
use crate::proto::kv_client::KvClient;
use crate::proto::Blob;
use crate::state_machine::StateMachine;
use crate::types::*;
use crate::watch::WatchHub;
use crate::{batcher, read_index};

/// How a member runs. `Default` gives timings suited to members on one machine or a LAN.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub id: NodeId,
    pub data_dir: PathBuf,
    /// Where the gRPC server binds; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Address other members and clients use; defaults to the bound address.
    pub advertise: Option<String>,
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many new log entries.
    pub snapshot_after_logs: u64,
    /// Log entries kept behind a snapshot, so slightly lagging members need no snapshot.
    pub logs_kept_after_snapshot: u64,
    /// Automatic compaction of MVCC history; `None` turns it off.
    pub compaction: Option<CompactionPolicy>,
    /// How long a write or read waits for a leader before giving up.
    pub request_timeout: Duration,
}

/// Keep the newest `retain` revisions, checked every `interval` (by the leader).
#[derive(Debug, Clone, Copy)]
pub struct CompactionPolicy {
    pub interval: Duration,
    pub retain: i64,
}

impl StoreConfig {
    pub fn new(id: NodeId, data_dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        StoreConfig {
            id,
            data_dir: data_dir.into(),
            listen,
            advertise: None,
            heartbeat_ms: 100,
            election_timeout_min_ms: 400,
            election_timeout_max_ms: 800,
            snapshot_after_logs: 20_000,
            logs_kept_after_snapshot: 5_000,
            compaction: Some(CompactionPolicy { interval: Duration::from_secs(60), retain: 10_000 }),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// A running member. Cheap to clone.
#[derive(Clone)]
pub struct StoreNode {
    inner: Arc<Inner>,
}

struct Inner {
    id: NodeId,
    addr: String,
    raft: Raft<TypeConfig>,
    mvcc: Mvcc,
    hub: WatchHub,
    request_timeout: Duration,
    /// Raft's heartbeat interval: the pause before a read-index round is asked again.
    heartbeat: Duration,
    peers: Mutex<HashMap<String, KvClient<Channel>>>,
    /// Idle ProposeStream calls to leaders, by address (see [`StoreNode::forward`]).
    forwards: Mutex<HashMap<String, Vec<network::Exchange>>>,
    /// Where connections to peers come from (see [`local_address`]).
    local: Option<std::net::IpAddr>,
    /// The cluster this member belongs to (see [`network::CLUSTER_HEADER`]), and its DB.
    cluster: network::ClusterId,
    db: Arc<rocksdb::DB>,
    batcher: mpsc::Sender<batcher::Pending>,
    /// Held by whoever has a batch of transactions in flight (see [`batcher`]).
    proposing: Arc<tokio::sync::Semaphore>,
    reads: mpsc::Sender<read_index::Waiter>,
    /// Turns true when the member stops: its server and its long-lived streams end.
    stopping: tokio::sync::watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// How long a leader asks again for a read-index round a majority left unanswered.
const QUORUM_RETRY: Duration = Duration::from_secs(1);

/// Where a member keeps its cluster id (the meta column family).
const CLUSTER_KEY: &[u8] = b"cluster/id";
/// Idle forwarding streams kept per leader (a member's batcher keeps one batch in flight;
/// compactions and reads add a few more at times).
const MAX_IDLE_FORWARD_STREAMS: usize = 4;

/// The cluster id kept in the data dir, if the member has one.
fn read_cluster_id(db: &rocksdb::DB) -> Result<Option<String>> {
    let meta = crate::db::cf(db, crate::db::CF_META)?;
    Ok(db.get_cf(meta, CLUSTER_KEY)?.map(|raw| String::from_utf8_lossy(&raw).into_owned()))
}

/// FNV-1a, 64 bits: a hash that stays the same across builds and versions.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// A member that restarts into a cluster of several voters stands for election only once it
/// has heard from a leader or waited `hold`: without a leader's heartbeat yet, its election
/// timer would otherwise fire first and its higher term depose the healthy leader (openraft
/// 0.9 has no pre-vote). `voters` comes from the stored state: Raft's metrics may not have
/// loaded it yet when this runs.
fn hold_elections_after_restart(raft: &Raft<TypeConfig>, voters: usize, hold: Duration) {
    if voters < 2 {
        return;
    }
    raft.runtime_config().elect(false);
    let raft = raft.clone();
    tokio::spawn(async move {
        let mut metrics = raft.metrics();
        let me = metrics.borrow().id;
        let heard = async {
            loop {
                let leader = metrics.borrow().current_leader;
                if leader.is_some_and(|l| l != me) {
                    return;
                }
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(hold, heard).await;
        raft.runtime_config().elect(true);
    });
}

/// The address a member's connections to its peers come from: its listen address, when that
/// names one (so that members on one machine, each on its own loopback address, can be
/// partitioned from each other by address); the system's choice otherwise.
fn local_address(cfg: &StoreConfig) -> Option<std::net::IpAddr> {
    let ip = cfg.listen.ip();
    (!ip.is_unspecified()).then_some(ip)
}

fn fatal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("raft stopped: {e}"))
}

impl StoreNode {
    /// Opens the data dir, starts Raft and the gRPC server. The member takes part in a
    /// cluster once [`StoreNode::initialize`] runs somewhere or a leader adds it.
    pub async fn start(cfg: StoreConfig) -> Result<Self> {
        let db = crate::db::open(&cfg.data_dir)?;
        let log_dir = cfg.data_dir.join("raft-log");
        let log_store = LogStore::new(db.clone(), &log_dir, crate::wal::SEGMENT_BYTES, cfg.id)
            .map_err(|e| StoreError::Storage(format!("open the Raft log in {}: {e}", log_dir.display())))?;
        let durable = log_store.durability();
        let sm = StateMachine::open(db.clone(), cfg.data_dir.clone())?.waiting_for(durable.clone());
        let (mvcc, hub, voters) = (sm.mvcc(), sm.hub(), sm.voters());
        let raft_config = openraft::Config {
            cluster_name: "flotilla".into(),
            heartbeat_interval: cfg.heartbeat_ms,
            election_timeout_min: cfg.election_timeout_min_ms,
            election_timeout_max: cfg.election_timeout_max_ms,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(cfg.snapshot_after_logs),
            max_in_snapshot_log_to_keep: cfg.logs_kept_after_snapshot,
            // openraft gives each AppendEntries one heartbeat interval (tens of ms) to finish:
            // a member catching up must get its log in small steps, or every try times out
            // and it never catches up (each entry may hold a batch of many transactions).
            max_payload_entries: 32,
            ..Default::default()
        }
        .validate()
        .map_err(|e| StoreError::InvalidArgument(format!("raft config: {e}")))?;
        let cluster: network::ClusterId = Arc::new(std::sync::RwLock::new(read_cluster_id(&db)?));
        let retry = Duration::from_millis(cfg.heartbeat_ms.max(10));
        let network = Network::new(local_address(&cfg), retry, cluster.clone(), durable);
        let raft = Raft::new(cfg.id, Arc::new(raft_config), network, log_store, sm).await.map_err(fatal)?;
        hold_elections_after_restart(&raft, voters, Duration::from_millis(2 * cfg.election_timeout_max_ms));
        if voters == 1 {
            // A sole voter that led before it stopped leads again in a new term (the log store
            // does not let it resume the old one): at once, rather than after an election timeout.
            raft.trigger().elect().await.map_err(fatal)?;
        }

        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| StoreError::Unavailable(format!("bind {}: {e}", cfg.listen)))?;
        let bound = listener.local_addr().map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let addr = cfg.advertise.clone().unwrap_or_else(|| bound.to_string());
        let (batch_tx, batch_rx) = mpsc::channel(batcher::QUEUE);
        let (reads_tx, reads_rx) = mpsc::channel(read_index::QUEUE);
        let node = StoreNode {
            inner: Arc::new(Inner {
                id: cfg.id,
                addr,
                raft,
                mvcc,
                hub,
                request_timeout: cfg.request_timeout,
                heartbeat: Duration::from_millis(cfg.heartbeat_ms.max(10)),
                peers: Mutex::new(HashMap::new()),
                forwards: Mutex::new(HashMap::new()),
                local: local_address(&cfg),
                cluster,
                db: db.clone(),
                batcher: batch_tx,
                proposing: Arc::new(tokio::sync::Semaphore::new(1)),
                reads: reads_tx,
                stopping: tokio::sync::watch::Sender::new(false),
                tasks: Mutex::new(Vec::new()),
            }),
        };
        let server = tokio::spawn(crate::server::serve(node.clone(), listener));
        let mut tasks = vec![
            server,
            tokio::spawn(batcher::run(node.clone(), batch_rx, node.inner.proposing.clone())),
            tokio::spawn(read_index::run(node.clone(), reads_rx)),
            tokio::spawn(publish_status(node.clone())),
        ];
        if let Some(policy) = cfg.compaction {
            tasks.push(tokio::spawn(compaction_loop(node.clone(), policy)));
        }
        *node.inner.tasks.lock().unwrap_or_else(|p| p.into_inner()) = tasks;
        tracing::info!(id = cfg.id, addr = %node.addr(), dir = %cfg.data_dir.display(), "store member started");
        Ok(node)
    }

    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// The gRPC address of this member.
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.inner.raft
    }

    /// Starts a member alone in its cluster (bootstrapped now, or as it was) and waits up to
    /// `timeout` until it leads: the one-member store of tests, benchmarks and tools.
    pub async fn start_single(cfg: StoreConfig, timeout: Duration) -> Result<Self> {
        let node = StoreNode::start(cfg).await?;
        node.initialize(&BTreeMap::from([(node.inner.id, node.addr().to_string())])).await?;
        node.inner
            .raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a leader")
            .await
            .map_err(|e| StoreError::Unavailable(format!("the single member did not lead: {e}")))?;
        Ok(node)
    }

    /// Bootstraps a new cluster with these voting members. Every initial member may call it
    /// with the same list; a member that already has state ignores it.
    pub async fn initialize(&self, members: &BTreeMap<NodeId, String>) -> Result<()> {
        // Every member bootstraps from the same list, so each names the cluster alike (also
        // one that a peer's initialization reached first).
        let list: Vec<String> = members.iter().map(|(id, addr)| format!("{id}={addr}")).collect();
        self.adopt_cluster_id(&format!("{:016x}", fnv1a(list.join(",").as_bytes())))?;
        if self.inner.raft.is_initialized().await.map_err(fatal)? {
            return Ok(());
        }
        let nodes: BTreeMap<NodeId, BasicNode> = members.iter().map(|(id, a)| (*id, BasicNode::new(a))).collect();
        match self.inner.raft.initialize(nodes).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(e)) => {
                tracing::info!(error = %e, "cluster already initialized");
                Ok(())
            }
            Err(RaftError::Fatal(e)) => Err(fatal(e)),
        }
    }

    /// Runs a transaction through the leader (batched with concurrent ones).
    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        validate_txn(&txn)?;
        let started = Instant::now();
        let result = match batcher::propose_alone(self, &self.inner.proposing, txn).await {
            Ok(result) => result,
            Err(txn) => {
                let (reply, response) = oneshot::channel();
                self.inner
                    .batcher
                    .send(batcher::Pending { txn, reply })
                    .await
                    .map_err(|_| StoreError::Unavailable("member is shutting down".into()))?;
                response.await.map_err(|_| StoreError::Indeterminate("member stopped mid-write".into()))?
            }
        };
        metrics::histogram!("flotilla_store_txn_seconds").record(started.elapsed().as_secs_f64());
        result
    }

    /// Puts one key unconditionally; returns the new revision.
    pub async fn put(&self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Result<Revision> {
        Ok(self.txn(Txn::put(key, value)).await?.revision)
    }

    /// Compacts history before `revision` on every member.
    pub async fn compact(&self, revision: Revision) -> Result<Revision> {
        match self.propose(Command::Compact(revision)).await? {
            CommandResult::Compacted { revision } => Ok(revision),
            CommandResult::Rejected(r) => Err(r.into()),
            other => Err(StoreError::Storage(format!("unexpected compact result {other:?}"))),
        }
    }

    /// Proposes a command here if leader, else forwards it to the leader. Retries only while
    /// the command is known not to be in the log (no leader yet, or leadership moved).
    pub(crate) async fn propose(&self, cmd: Command) -> Result<CommandResult> {
        let deadline = Instant::now() + self.inner.request_timeout;
        loop {
            // Go straight to a leader we know of; ask our own Raft only when we may be it.
            let leader = match self.remote_leader() {
                Some(leader) => Some(leader),
                None => match self.propose_here(cmd.clone()).await {
                    Err(StoreError::NotLeader { leader: Some(id), leader_addr: Some(addr) }) if id != self.inner.id => {
                        Some((id, addr))
                    }
                    Err(StoreError::NotLeader { .. }) => None,
                    other => return other,
                },
            };
            if let Some((leader_id, addr)) = &leader {
                match self.forward_while_leading(*leader_id, addr, &cmd, deadline).await {
                    Err(StoreError::NotLeader { .. }) | Err(StoreError::Unavailable(_)) => {}
                    other => return other,
                }
            }
            if Instant::now() >= deadline {
                return Err(StoreError::Unavailable("no leader elected in time".into()));
            }
            self.wait_for_leader_change(leader.map(|(id, _)| id), deadline).await;
        }
    }

    /// Proposes through this member's Raft only; a follower answers `NotLeader` (this is what
    /// a forwarded proposal runs, so proposals never bounce between members).
    pub(crate) async fn propose_here(&self, cmd: Command) -> Result<CommandResult> {
        match self.inner.raft.client_write(cmd).await {
            Ok(resp) => Ok(resp.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(StoreError::NotLeader { leader: f.leader_id, leader_addr: f.leader_node.map(|n| n.addr) })
            }
            Err(RaftError::APIError(e)) => Err(StoreError::InvalidArgument(e.to_string())),
            Err(RaftError::Fatal(e)) => Err(StoreError::Indeterminate(format!("raft stopped: {e}"))),
        }
    }

    /// The leader and its address, when it is known and is another member.
    fn remote_leader(&self) -> Option<(NodeId, String)> {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow();
        let leader = m.current_leader.filter(|id| *id != self.inner.id)?;
        let node = m.membership_config.membership().get_node(&leader)?;
        Some((leader, node.addr.clone()))
    }

    /// Waits until the known leader differs from `seen` (or briefly, if it does not change).
    async fn wait_for_leader_change(&self, seen: Option<NodeId>, deadline: Instant) {
        let mut metrics = self.inner.raft.metrics();
        let wait = async {
            loop {
                if metrics.changed().await.is_err() {
                    return;
                }
                let m = metrics.borrow().clone();
                if m.current_leader.is_some() && m.current_leader != seen {
                    return;
                }
            }
        };
        let cap = deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(200));
        let _ = tokio::time::timeout(cap, wait).await;
    }

    /// Waits for `call` (a request to `leader`) until it answers; `None` if first this member
    /// sees a later term led by another or by no one yet (a paused or partitioned leader may
    /// never answer) or `deadline` passes.
    ///
    /// Only a later term counts: the metrics may lag behind the Raft core that named
    /// `leader` (a restarted old leader reports its restored leadership of the old term for
    /// a moment after the core has stepped down).
    async fn while_leading<T>(&self, leader: NodeId, deadline: Instant, call: impl Future<Output = T>) -> Option<T> {
        let mut metrics = self.inner.raft.metrics();
        let term = metrics.borrow().current_term;
        let deposed = async {
            loop {
                {
                    let m = metrics.borrow_and_update();
                    if m.current_term > term && m.current_leader != Some(leader) {
                        tracing::debug!(leader, term = m.current_term, now = ?m.current_leader, "leader replaced while forwarding");
                        return;
                    }
                }
                if metrics.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        let timeout = deadline.saturating_duration_since(Instant::now());
        tokio::select! {
            answer = call => Some(answer),
            _ = deposed => None,
            _ = tokio::time::sleep(timeout) => None,
        }
    }

    /// [`Self::forward`] while `leader` leads: given up, the proposal may still be committed
    /// by a later leader, so the outcome is unknown.
    async fn forward_while_leading(
        &self,
        leader: NodeId,
        addr: &str,
        cmd: &Command,
        deadline: Instant,
    ) -> Result<CommandResult> {
        match self.while_leading(leader, deadline, self.forward(leader, addr, cmd)).await {
            Some(result) => result,
            None => Err(StoreError::Indeterminate(format!("leader {leader} was replaced or silent while forwarding"))),
        }
    }

    /// Sends `cmd` to the leader over a ProposeStream call kept open between forwards (no
    /// new HTTP/2 stream, headers or server task per forward); one per forward in flight.
    async fn forward(&self, leader: NodeId, addr: &str, cmd: &Command) -> Result<CommandResult> {
        let mut client = self.peer(addr)?;
        let idle = self.idle_forward_stream(addr);
        let open = move |rx| async move { client.propose_stream(self.to_peer(rx)).await };
        let sent = network::exchange(idle, Blob { data: encode(cmd)? }, open).await;
        metrics::counter!("flotilla_store_forwarded_total").increment(1);
        match sent {
            Ok((answer, stream)) => {
                self.keep_forward_stream(addr, stream);
                decode::<Result<CommandResult>>(&answer.data)?
            }
            // Connection refused: the request never left, so it is safe to retry elsewhere.
            Err(status) if status.code() == tonic::Code::Unavailable && is_connect_error(&status) => {
                Err(StoreError::Unavailable(format!("leader {leader} unreachable: {}", status.message())))
            }
            Err(status) => Err(StoreError::Indeterminate(format!("forward to leader {leader}: {}", status.message()))),
        }
    }

    /// An idle forwarding stream to `addr` whose call is still open (one that ended, say as
    /// the leader restarted, would fail a forward that never left).
    fn idle_forward_stream(&self, addr: &str) -> Option<network::Exchange> {
        let mut forwards = self.inner.forwards.lock().unwrap_or_else(|p| p.into_inner());
        let idle = forwards.get_mut(addr)?;
        std::iter::from_fn(|| idle.pop()).find(network::Exchange::is_open)
    }

    /// Keeps a forwarding stream that answered for the next forward to `addr`.
    fn keep_forward_stream(&self, addr: &str, stream: network::Exchange) {
        let mut forwards = self.inner.forwards.lock().unwrap_or_else(|p| p.into_inner());
        let idle = forwards.entry(addr.to_string()).or_default();
        if idle.len() < MAX_IDLE_FORWARD_STREAMS {
            idle.push(stream);
        }
    }

    fn peer(&self, addr: &str) -> Result<KvClient<Channel>> {
        let mut peers = self.inner.peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = peers.get(addr) {
            return Ok(c.clone());
        }
        let ch = network::channel(addr, self.inner.local)
            .map_err(|e| StoreError::Unavailable(format!("bad peer address {addr}: {e}")))?;
        let client = KvClient::new(ch)
            .max_decoding_message_size(network::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(network::MAX_MESSAGE_BYTES);
        peers.insert(addr.to_string(), client.clone());
        Ok(client)
    }

    /// Reads a key or range. `linearizable` first confirms with the leader that this member
    /// has applied every write acknowledged before the call; otherwise the member's applied
    /// state is used as is.
    pub async fn range(&self, req: RangeRequest, linearizable: bool) -> Result<RangeResponse> {
        if linearizable {
            self.wait_read_index().await?;
        }
        let mvcc = self.inner.mvcc.clone();
        tokio::task::spawn_blocking(move || mvcc.range(&req))
            .await
            .map_err(|e| StoreError::Unavailable(format!("read task failed: {e}")))?
    }

    /// Gets one key's current value, linearizably.
    pub async fn get(&self, key: impl Into<Vec<u8>>) -> Result<Option<KeyValue>> {
        Ok(self.range(RangeRequest::key(key), true).await?.kvs.pop())
    }

    async fn wait_read_index(&self) -> Result<()> {
        let deadline = Instant::now() + self.inner.request_timeout;
        let (tx, rx) = oneshot::channel();
        self.inner.reads.send(tx).await.map_err(|_| StoreError::Unavailable("member is shutting down".into()))?;
        let index = rx.await.map_err(|_| StoreError::Unavailable("member is shutting down".into()))??;
        self.wait_applied(index, deadline).await
    }

    /// One read-index round: from our own Raft when leader, else from the leader over gRPC.
    /// [`read_index::run`] shares each round among all reads that arrived before it began.
    pub(crate) async fn read_index_round(&self) -> Result<u64> {
        let deadline = Instant::now() + self.inner.request_timeout;
        loop {
            let leader = match self.remote_leader() {
                Some(leader) => Some(leader),
                None => match self.read_index_local().await {
                    Ok(index) => return Ok(index),
                    Err(StoreError::NotLeader { leader: Some(id), leader_addr: Some(addr) }) if id != self.inner.id => {
                        Some((id, addr))
                    }
                    Err(StoreError::NotLeader { .. }) => None,
                    Err(e) => return Err(e),
                },
            };
            if let Some((id, addr)) = &leader {
                let mut client = self.peer(addr)?;
                let asked = client.read_index(self.to_peer(Blob { data: Vec::new() }));
                // Reads are safe to ask again: a silent leader is given up when replaced.
                match self.while_leading(*id, deadline, asked).await {
                    Some(Ok(resp)) => match decode::<Result<u64>>(&resp.into_inner().data)? {
                        Ok(index) => return Ok(index),
                        Err(StoreError::NotLeader { .. }) => {}
                        Err(e) => return Err(e),
                    },
                    Some(Err(status)) => {
                        tracing::debug!(leader = id, %status, "read index from leader failed")
                    }
                    None => tracing::debug!(leader = id, "read index: the leader was replaced or silent"),
                }
            }
            if Instant::now() >= deadline {
                return Err(StoreError::Unavailable("no leader confirmed a read index in time".into()));
            }
            self.wait_for_leader_change(leader.map(|(id, _)| id), deadline).await;
        }
    }

    /// On the leader: confirms leadership with a quorum and returns the log index that a
    /// linearizable read must see applied.
    pub async fn read_index_local(&self) -> Result<u64> {
        // A round a majority did not answer in time (a peer slow for a moment) is asked again
        // for a little while; a leader cut off for longer fails the read.
        let give_up = Instant::now() + QUORUM_RETRY;
        loop {
            match self.inner.raft.get_read_log_id().await {
                Ok((read_log_id, _)) => return Ok(read_log_id.map_or(0, |id| id.index)),
                Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f))) => {
                    return Err(StoreError::NotLeader {
                        leader: f.leader_id,
                        leader_addr: f.leader_node.map(|n| n.addr),
                    })
                }
                Err(RaftError::APIError(openraft::error::CheckIsLeaderError::QuorumNotEnough(_)))
                    if Instant::now() < give_up =>
                {
                    tokio::time::sleep(self.inner.heartbeat).await;
                }
                Err(RaftError::APIError(e)) => return Err(StoreError::Unavailable(e.to_string())),
                Err(RaftError::Fatal(e)) => return Err(fatal(e)),
            }
        }
    }

    async fn wait_applied(&self, index: u64, deadline: Instant) -> Result<()> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        self.inner
            .raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "linearizable read")
            .await
            .map(|_| ())
            .map_err(|e| StoreError::Unavailable(format!("waiting to apply index {index}: {e}")))
    }

    /// Watches keys from a revision; see [`WatchHub::watch`].
    pub fn watch(&self, req: WatchRequest) -> impl Stream<Item = Result<RevisionEvents>> + Send + 'static {
        self.inner.hub.watch(self.inner.mvcc.clone(), req)
    }

    /// Waits until this member has applied `revision` (or the deadline passes).
    pub async fn wait_revision(&self, revision: Revision, timeout: Duration) -> Result<()> {
        let mut rx = self.inner.hub.revision();
        tokio::time::timeout(timeout, rx.wait_for(|r| *r >= revision))
            .await
            .map_err(|_| StoreError::Unavailable(format!("revision {revision} not applied within {timeout:?}")))?
            .map_err(|_| StoreError::Unavailable("member is shutting down".into()))?;
        Ok(())
    }

    /// This member's view of the cluster.
    /// The id of the cluster this member belongs to, once bootstrapped or joined.
    pub fn cluster_id(&self) -> Option<String> {
        self.inner.cluster.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Takes `id` as this member's cluster id (a member joining learns it from the cluster),
    /// unless it already has one; kept in its data dir.
    pub fn adopt_cluster_id(&self, id: &str) -> Result<()> {
        let mut cluster = self.inner.cluster.write().unwrap_or_else(|p| p.into_inner());
        if cluster.is_some() {
            return Ok(());
        }
        let meta = crate::db::cf(&self.inner.db, crate::db::CF_META)?;
        let mut sync = rocksdb::WriteOptions::default();
        sync.set_sync(true);
        self.inner.db.put_cf_opt(meta, CLUSTER_KEY, id.as_bytes(), &sync)?;
        *cluster = Some(id.to_string());
        Ok(())
    }

    /// `msg` as a request to a peer, carrying this member's cluster id.
    fn to_peer<T>(&self, msg: T) -> tonic::Request<T> {
        network::tagged(msg, &self.inner.cluster)
    }

    pub fn status(&self) -> Result<MemberStatus> {
        let m = self.inner.raft.metrics().borrow().clone();
        let revs = self.inner.mvcc.revisions()?;
        let membership = m.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let learners: Vec<NodeId> = membership.learner_ids().collect();
        let addresses = membership.nodes().map(|(id, n)| (*id, n.addr.clone())).collect();
        Ok(MemberStatus {
            id: self.inner.id,
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index,
            applied_index: m.last_applied.map(|l| l.index),
            revision: revs.current,
            compact_revision: revs.compacted,
            voters,
            learners,
            addresses,
            cluster_id: self.cluster_id(),
        })
    }

    pub fn is_leader(&self) -> bool {
        self.inner.raft.metrics().borrow().state == ServerState::Leader
    }

    /// The term of this member's leadership, when it is the leader; the fence for writes
    /// that only this leadership may make ([`Txn::fenced`]).
    pub fn leader_term(&self) -> Option<u64> {
        let metrics = self.inner.raft.metrics().borrow().clone();
        (metrics.state == ServerState::Leader).then_some(metrics.current_term)
    }

    /// Adds a non-voting member and waits until it has caught up with the log.
    pub async fn add_learner(&self, id: NodeId, addr: String) -> Result<()> {
        self.membership_call(MembershipChange::AddLearner(id, addr)).await
    }

    /// Makes exactly these members the voters; removed voters leave the cluster.
    pub async fn change_membership(&self, voters: BTreeSet<NodeId>) -> Result<()> {
        self.membership_call(MembershipChange::SetVoters(voters)).await
    }

    pub(crate) async fn membership_call(&self, change: MembershipChange) -> Result<()> {
        let deadline = Instant::now() + self.inner.request_timeout * 3;
        loop {
            let result = match &change {
                MembershipChange::AddLearner(id, addr) => {
                    self.inner.raft.add_learner(*id, BasicNode::new(addr), true).await.map(|_| ())
                }
                MembershipChange::SetVoters(voters) => {
                    self.inner.raft.change_membership(voters.clone(), false).await.map(|_| ())
                }
            };
            let leader = match result {
                Ok(()) => return Ok(()),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                    f.leader_id.zip(f.leader_node).filter(|(id, _)| *id != self.inner.id)
                }
                // The previous change is still being committed: wait for it, then retry.
                Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                    ChangeMembershipError::InProgress(_),
                ))) if Instant::now() < deadline => {
                    let mut metrics = self.inner.raft.metrics();
                    let _ = tokio::time::timeout(Duration::from_millis(100), metrics.changed()).await;
                    continue;
                }
                Err(RaftError::APIError(e)) => return Err(StoreError::InvalidArgument(e.to_string())),
                Err(RaftError::Fatal(e)) => return Err(fatal(e)),
            };
            if let Some((id, node)) = &leader {
                let mut client = self.peer(&node.addr)?;
                let data = encode(&change)?;
                let sent = match &change {
                    MembershipChange::AddLearner(..) => client.add_learner(self.to_peer(Blob { data })).await,
                    MembershipChange::SetVoters(_) => client.change_membership(self.to_peer(Blob { data })).await,
                };
                match sent {
                    Ok(resp) => match decode::<Result<()>>(&resp.into_inner().data)? {
                        Err(StoreError::NotLeader { .. }) | Err(StoreError::Unavailable(_)) => {}
                        other => return other,
                    },
                    Err(status) => {
                        tracing::debug!(leader = id, %status, "membership change via leader failed")
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(StoreError::Unavailable("membership change did not reach a leader in time".into()));
            }
            self.wait_for_leader_change(leader.map(|(id, _)| id), deadline).await;
        }
    }

    /// Resolves once the member is stopping (at once if it is).
    pub(crate) fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut stopping = self.inner.stopping.subscribe();
        async move {
            // An error means the member is gone: stopped as well.
            let _ = stopping.wait_for(|stopping| *stopping).await;
        }
    }

    /// Stops Raft, the server and background tasks. The data dir can then be reopened.
    pub async fn shutdown(&self) {
        self.inner.stopping.send_replace(true);
        let tasks: Vec<_> = std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}

/// True when the call failed to connect, so the request was never sent.
pub(crate) fn is_connect_error(status: &tonic::Status) -> bool {
    let text = format!("{status:?}").to_lowercase();
    text.contains("connection refused") || text.contains("tcp connect error")
}

/// A membership request, as forwarded to the leader.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) enum MembershipChange {
    AddLearner(NodeId, String),
    SetVoters(BTreeSet<NodeId>),
}

/// On the leader, periodically compacts history older than the newest `retain` revisions.
/// How often [`publish_status`] samples the member's state.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// Publishes the member's Raft and MVCC state as gauges, sampled every [`STATUS_EVERY`]
/// (etcd's server_has_leader, server_is_leader, leader_changes_seen_total and its current
/// and compacted revisions). Sampled, not pushed: Raft's state changes with every entry.
async fn publish_status(node: StoreNode) {
    let mut tick = tokio::time::interval(STATUS_EVERY);
    let mut leader = None;
    loop {
        tick.tick().await;
        let Ok(status) = node.status() else { continue };
        if status.leader.is_some() && status.leader != leader {
            metrics::counter!("flotilla_store_leader_changes_seen_total").increment(1);
            leader = status.leader;
        }
        let flag = |yes: bool| if yes { 1.0 } else { 0.0 };
        metrics::gauge!("flotilla_store_has_leader").set(flag(status.leader.is_some()));
        metrics::gauge!("flotilla_store_is_leader").set(flag(status.leader == Some(status.id)));
        metrics::gauge!("flotilla_store_term").set(status.term as f64);
        metrics::gauge!("flotilla_store_last_log_index").set(status.last_log_index.unwrap_or(0) as f64);
        metrics::gauge!("flotilla_store_applied_index").set(status.applied_index.unwrap_or(0) as f64);
        metrics::gauge!("flotilla_store_revision").set(status.revision as f64);
        metrics::gauge!("flotilla_store_compact_revision").set(status.compact_revision as f64);
        metrics::gauge!("flotilla_store_voters").set(status.voters.len() as f64);
    }
}

async fn compaction_loop(node: StoreNode, policy: CompactionPolicy) {
    let mut tick = tokio::time::interval(policy.interval);
    tick.tick().await;
    loop {
        tick.tick().await;
        if !node.is_leader() {
            continue;
        }
        let Ok(status) = node.status() else { continue };
        let target = status.revision - policy.retain;
        if target > status.compact_revision {
            match node.compact(target).await {
                Ok(rev) => tracing::info!(revision = rev, "compacted history"),
                Err(e) => tracing::warn!(error = %e, "automatic compaction failed"),
            }
        }
    }
}

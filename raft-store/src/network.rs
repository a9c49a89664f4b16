//! Raft traffic to other members over gRPC (openraft's `RaftNetwork`), one lazily connected
//! channel per peer; appends go over a long-lived stream per replication session.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{AnyError, BasicNode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::Streaming;

use crate::durable::Durability;
use crate::mvcc::{decode, encode};
use crate::proto::raft_client::RaftClient;
use crate::proto::Blob;
use crate::types::{NodeId, TypeConfig};

/// Largest message between members (snapshot chunks are 3 MiB by default).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// The gRPC metadata key that carries the sender's cluster id on every member-to-member
/// call: a member refuses calls from another cluster (a port reused by another cluster's
/// member must not feed it foreign log entries).
pub const CLUSTER_HEADER: &str = "x-flotilla-cluster";

/// This member's cluster id, once known (set when the cluster is bootstrapped or joined).
pub type ClusterId = Arc<std::sync::RwLock<Option<String>>>;

/// `msg` as a request carrying the cluster id `cluster`, if known.
pub fn tagged<T>(msg: T, cluster: &ClusterId) -> tonic::Request<T> {
    let mut request = tonic::Request::new(msg);
    let id = cluster.read().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(value) = id.and_then(|id| id.parse().ok()) {
        request.metadata_mut().insert(CLUSTER_HEADER, value);
    }
    request
}

/// A lazily connected channel to a member's gRPC address (`host:port`), from the local
/// address `local` when given (a member's own listen address: a network fault between two
/// members on one machine, each on its own loopback address, is then a rule on their pair).
pub fn channel(addr: &str, local: Option<IpAddr>) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(std::time::Duration::from_secs(2))
        .tcp_nodelay(true)
        .local_address(local)
        .connect_lazy())
}

/// Creates connections to peers for openraft. openraft asks for a new client per
/// replication stream and per leadership check, so channels (HTTP/2 connections, which
/// multiplex) are cached per address.
#[derive(Clone, Default)]
pub struct Network {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    /// The member's own address, where its connections to peers come from.
    local: Option<IpAddr>,
    /// How soon a failed peer is tried again (see [`Connection::backoff`]).
    retry: std::time::Duration,
    cluster: ClusterId,
    /// How far this member's log is on disk (a commit index is sent only that far).
    durable: Option<Arc<Durability>>,
}

impl Network {
    /// Peers' connections from `local` (see [`channel`]); a failed peer is tried again
    /// every `retry`.
    pub fn new(
        local: Option<IpAddr>,
        retry: std::time::Duration,
        cluster: ClusterId,
        durable: Arc<Durability>,
    ) -> Self {
        Network { local, retry, cluster, durable: Some(durable), ..Network::default() }
    }

    fn channel(&self, addr: &str) -> Result<Channel, String> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ch) = channels.get(addr) {
            return Ok(ch.clone());
        }
        let ch = channel(addr, self.local).map_err(|e| e.to_string())?;
        channels.insert(addr.to_string(), ch.clone());
        Ok(ch)
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        let client = self.channel(&node.addr).map(|ch| {
            RaftClient::new(ch)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES)
        });
        Connection {
            target,
            client,
            retry: self.retry,
            cluster: self.cluster.clone(),
            appends: None,
            durable: self.durable.clone(),
        }
    }
}

pub struct Connection {
    target: NodeId,
    client: Result<RaftClient<Channel>, String>,
    retry: std::time::Duration,
    cluster: ClusterId,
    /// The open AppendStream call to the peer, between appends (opened by the first one,
    /// dropped on any failure so that a late answer is never taken for a later request's).
    appends: Option<Exchange>,
    durable: Option<Arc<Durability>>,
}

/// One bidirectional call (AppendStream, ProposeStream): requests go in through `requests`,
/// answers come back in order.
pub(crate) struct Exchange {
    requests: mpsc::Sender<Blob>,
    answers: Streaming<Blob>,
}

impl Exchange {
    /// Whether the call is still open (its request stream not yet dropped by tonic).
    pub(crate) fn is_open(&self) -> bool {
        !self.requests.is_closed()
    }
}

/// Sends one request on `stream` (a call opened with `open` if `None`) and waits for its
/// answer; gives the stream back only with the answer. The caller's future may be dropped
/// mid-way (a timeout): the stream goes with it, so a late answer is never read as the next
/// request's.
pub(crate) async fn exchange<F, Fut>(
    stream: Option<Exchange>,
    request: Blob,
    open: F,
) -> Result<(Blob, Exchange), tonic::Status>
where
    F: FnOnce(ReceiverStream<Blob>) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<Streaming<Blob>>, tonic::Status>>,
{
    let mut open = match stream {
        Some(open) => {
            open.requests.send(request).await.map_err(|_| tonic::Status::unavailable("stream closed"))?;
            open
        }
        None => {
            // The first request is queued before the call starts, so it leaves with the
            // call's headers instead of a round trip later.
            let (requests, rx) = mpsc::channel(1);
            requests.try_send(request).map_err(|_| tonic::Status::internal("stream queue"))?;
            let answers = open(ReceiverStream::new(rx)).await?.into_inner();
            Exchange { requests, answers }
        }
    };
    match open.answers.message().await? {
        Some(answer) => Ok((answer, open)),
        None => Err(tonic::Status::unavailable("the peer ended the stream")),
    }
}

impl Connection {
    async fn call<Req, Resp, E>(
        &mut self,
        req: &Req,
        option: &RPCOption,
        rpc: RpcKind,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = match &mut self.client {
            Ok(c) => c,
            Err(e) => return Err(RPCError::Unreachable(Unreachable::new(&AnyError::error(e.clone())))),
        };
        let blob = Blob { data: encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))? };
        let (appends, cluster) = (&mut self.appends, &self.cluster);
        let started = std::time::Instant::now();
        let fut = async {
            match rpc {
                RpcKind::Append => {
                    let open = move |rx| async move { client.append_stream(tagged(rx, cluster)).await };
                    let (answer, stream) = exchange(appends.take(), blob, open).await?;
                    *appends = Some(stream);
                    Ok(answer)
                }
                RpcKind::Vote => client.vote(tagged(blob, cluster)).await.map(tonic::Response::into_inner),
                RpcKind::Snapshot => {
                    client.install_snapshot(tagged(blob, cluster)).await.map(tonic::Response::into_inner)
                }
            }
        };
        let resp = match tokio::time::timeout(option.hard_ttl(), fut).await {
            Err(_) => return Err(RPCError::Unreachable(Unreachable::new(&AnyError::error("rpc timed out")))),
            Ok(Err(status)) => return Err(RPCError::Unreachable(Unreachable::new(&status))),
            Ok(Ok(resp)) => resp,
        };
        // etcd's peer_round_trip_time_seconds; an append's includes the peer's log fsync.
        metrics::histogram!("flotilla_store_peer_rpc_seconds", "rpc" => rpc.name())
            .record(started.elapsed().as_secs_f64());
        let result: Result<Resp, RaftError<NodeId, E>> =
            decode(&resp.data).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[derive(Clone, Copy)]
enum RpcKind {
    Append,
    Vote,
    Snapshot,
}

impl RpcKind {
    fn name(self) -> &'static str {
        match self {
            RpcKind::Append => "append_entries",
            RpcKind::Vote => "vote",
            RpcKind::Snapshot => "install_snapshot",
        }
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    /// openraft waits 500 ms between tries to reach a failed peer by default. A restarted
    /// member then goes that long without heartbeats, times out and stands for election with
    /// a higher term, deposing a healthy leader; tried again every heartbeat, it hears from
    /// the leader first.
    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(self.retry))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        // Followers apply what the leader says is committed; the leader counts its own entries
        // before they are on its disk (see `crate::durable`), so say it only once they are.
        let commit = rpc.leader_commit.map_or(0, |c| c.index);
        if let Some(durable) = self.durable.as_ref().filter(|d| !d.is_durable(commit)) {
            match tokio::time::timeout(option.hard_ttl(), durable.wait(commit)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(RPCError::Unreachable(Unreachable::new(&e))),
                Err(_) => return Err(RPCError::Unreachable(Unreachable::new(&AnyError::error("log sync timed out")))),
            }
        }
        self.call(&rpc, &option, RpcKind::Append).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        self.call(&rpc, &option, RpcKind::Snapshot).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(&rpc, &option, RpcKind::Vote).await
    }
}

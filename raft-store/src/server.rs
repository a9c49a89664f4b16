//! The member's gRPC server: Raft traffic from peers and the store API for clients.
//!
//! Every payload is decoded defensively: garbage is answered with INVALID_ARGUMENT.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status, Streaming};

use crate::error::Result;
use crate::mvcc::{encode, validate_txn};
use crate::network::MAX_MESSAGE_BYTES;
use crate::node::{MembershipChange, StoreNode};
use crate::proto::kv_server::{Kv, KvServer};
use crate::proto::raft_server::{Raft, RaftServer};
use crate::proto::Blob;
use crate::types::*;

/// Serves until the member stops or the listener fails.
pub async fn serve(node: StoreNode, listener: tokio::net::TcpListener) {
    let stopped = node.stopped();
    let svc = Service { node };
    // Our own incoming stream bypasses the builder's tcp_nodelay; without it, small Raft
    // messages wait for delayed ACKs (~40 ms stalls).
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|conn| {
        conn.inspect(|stream| {
            if let Err(e) = stream.set_nodelay(true) {
                tracing::warn!(error = %e, "cannot set TCP_NODELAY");
            }
        })
    });
    let result = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(
            RaftServer::new(svc.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            KvServer::new(svc)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(incoming, stopped)
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "store gRPC server stopped");
    }
}

#[derive(Clone)]
struct Service {
    node: StoreNode,
}

impl Service {
    /// Refuses a member's call from another cluster: one whose cluster-id header differs
    /// from this member's (calls without the header, from store clients, pass).
    fn same_cluster<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let theirs = req.metadata().get(crate::network::CLUSTER_HEADER).and_then(|v| v.to_str().ok());
        match (theirs, self.node.cluster_id()) {
            (Some(theirs), Some(ours)) if theirs != ours => Err(Status::failed_precondition(format!(
                "the caller belongs to cluster {theirs}, this member to cluster {ours}"
            ))),
            _ => Ok(()),
        }
    }
}

fn parse<T: DeserializeOwned>(req: Request<Blob>) -> Result<T, Status> {
    decode_payload(&req.into_inner().data)
}

fn decode_payload<T: DeserializeOwned>(data: &[u8]) -> Result<T, Status> {
    bincode::deserialize(data).map_err(|e| Status::invalid_argument(format!("undecodable request payload: {e}")))
}

/// Takes one AppendEntries request in and answers it, timed.
async fn serve_append(node: StoreNode, data: Vec<u8>) -> Result<Blob, Status> {
    let started = std::time::Instant::now();
    let rpc: openraft::raft::AppendEntriesRequest<TypeConfig> = decode_payload(&data)?;
    let kind = if rpc.entries.is_empty() { "empty" } else { "entries" };
    let result = node.raft().append_entries(rpc).await;
    // How long this member took to take entries in (their fsync included), without the network.
    metrics::histogram!("flotilla_store_append_served_seconds", "append" => kind)
        .record(started.elapsed().as_secs_f64());
    let data = encode(&result).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Blob { data })
}

/// Proposes one forwarded command here (this member leads, or the answer says it does not).
async fn serve_proposal(node: StoreNode, data: Vec<u8>) -> Result<Blob, Status> {
    let cmd: Command = decode_payload(&data)?;
    let valid = match &cmd {
        Command::Txns(txns) => txns.iter().try_for_each(validate_txn),
        _ => Ok(()),
    };
    let result = match valid {
        Ok(()) => node.propose_here(cmd).await,
        Err(e) => Err(e),
    };
    let data = encode(&result).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Blob { data })
}

fn reply<T: Serialize>(value: &T) -> Result<Response<Blob>, Status> {
    let data = encode(value).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(Blob { data }))
}

type AnswerStream = Pin<Box<dyn Stream<Item = Result<Blob, Status>> + Send>>;

/// Answers a stream's requests with `serve`, in the order they come, one at a time. The
/// stream ends when this member stops (a graceful shutdown waits for open streams).
fn answer_in_order<F, Fut>(node: &StoreNode, requests: Streaming<Blob>, serve: F) -> AnswerStream
where
    F: Fn(StoreNode, Vec<u8>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<Blob, Status>> + Send + 'static,
{
    let local = node.clone();
    let answers = requests.then(move |request| {
        let node = local.clone();
        let data = request.map(|blob| blob.data);
        let answer = data.map(|data| serve(node, data));
        async move { answer?.await }
    });
    Box::pin(answers.take_until(node.stopped()))
}

#[tonic::async_trait]
impl Raft for Service {
    async fn append_entries(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        self.same_cluster(&req)?;
        Ok(Response::new(serve_append(self.node.clone(), req.into_inner().data).await?))
    }

    type AppendStreamStream = AnswerStream;

    /// Answers the requests in the order they come, one at a time; an undecodable one ends
    /// the stream with INVALID_ARGUMENT (tonic ends an answer stream at its first error).
    async fn append_stream(&self, req: Request<Streaming<Blob>>) -> Result<Response<AnswerStream>, Status> {
        self.same_cluster(&req)?;
        Ok(Response::new(answer_in_order(&self.node, req.into_inner(), serve_append)))
    }

    async fn vote(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        self.same_cluster(&req)?;
        let rpc = parse(req)?;
        reply(&self.node.raft().vote(rpc).await)
    }

    async fn install_snapshot(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        self.same_cluster(&req)?;
        let rpc = parse(req)?;
        reply(&self.node.raft().install_snapshot(rpc).await)
    }
}

#[tonic::async_trait]
impl Kv for Service {
    async fn txn(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let txn: Txn = parse(req)?;
        reply(&self.node.txn(txn).await)
    }

    async fn range(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let (range, linearizable): (RangeRequest, bool) = parse(req)?;
        reply(&self.node.range(range, linearizable).await)
    }

    type WatchStream = AnswerStream;

    async fn watch(&self, req: Request<Blob>) -> Result<Response<AnswerStream>, Status> {
        let watch: WatchRequest = parse(req)?;
        let stream = self.node.watch(watch).map(|item: Result<RevisionEvents>| {
            encode(&item).map(|data| Blob { data }).map_err(|e| Status::internal(e.to_string()))
        });
        // A stopping member ends its watches with UNAVAILABLE (the client re-watches on
        // another member): a graceful shutdown would otherwise wait on them for ever.
        let stopping = futures::stream::once(self.node.stopped())
            .map(|()| Err(Status::unavailable("the store member is stopping; watch another member")));
        Ok(Response::new(Box::pin(futures::stream::select(stream, stopping))))
    }

    async fn compact(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let rev: Revision = parse(req)?;
        reply(&self.node.compact(rev).await)
    }

    async fn propose(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        self.same_cluster(&req)?;
        Ok(Response::new(serve_proposal(self.node.clone(), req.into_inner().data).await?))
    }

    type ProposeStreamStream = AnswerStream;

    /// Answers forwarded proposals in the order they come, one at a time (a member keeps one
    /// stream per proposal in flight); an undecodable one ends the stream with INVALID_ARGUMENT.
    async fn propose_stream(&self, req: Request<Streaming<Blob>>) -> Result<Response<AnswerStream>, Status> {
        self.same_cluster(&req)?;
        Ok(Response::new(answer_in_order(&self.node, req.into_inner(), serve_proposal)))
    }

    async fn read_index(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        self.same_cluster(&req)?;
        reply(&self.node.read_index_local().await)
    }

    async fn status(&self, _req: Request<Blob>) -> Result<Response<Blob>, Status> {
        reply(&self.node.status())
    }

    async fn add_learner(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let change: MembershipChange = parse(req)?;
        if !matches!(change, MembershipChange::AddLearner(..)) {
            return Err(Status::invalid_argument("AddLearner expects an AddLearner payload"));
        }
        reply(&self.node.membership_call(change).await)
    }

    async fn change_membership(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let change: MembershipChange = parse(req)?;
        if !matches!(change, MembershipChange::SetVoters(_)) {
            return Err(Status::invalid_argument("ChangeMembership expects a SetVoters payload"));
        }
        reply(&self.node.membership_call(change).await)
    }
}

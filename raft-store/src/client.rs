//! A client for one member's gRPC store API, for other processes (benchmarks, tests, tools).

use std::collections::BTreeSet;

use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::Channel;

use crate::error::{Result, StoreError};
use crate::mvcc::{decode, encode};
use crate::network::{self, MAX_MESSAGE_BYTES};
use crate::node::MembershipChange;
use crate::proto::kv_client::KvClient;
use crate::proto::Blob;
use crate::types::*;

/// Talks to one member; the member forwards writes to the leader itself.
#[derive(Clone)]
pub struct StoreClient {
    addr: String,
    kv: KvClient<Channel>,
}

fn transport(addr: &str, status: tonic::Status) -> StoreError {
    match status.code() {
        tonic::Code::InvalidArgument => StoreError::InvalidArgument(status.message().to_string()),
        _ => StoreError::Unavailable(format!("{addr}: {}", status.message())),
    }
}

impl StoreClient {
    /// A lazily connected client for the member at `addr` (`host:port`).
    pub fn new(addr: &str) -> Result<Self> {
        let ch =
            network::channel(addr, None).map_err(|e| StoreError::InvalidArgument(format!("address {addr}: {e}")))?;
        let kv =
            KvClient::new(ch).max_decoding_message_size(MAX_MESSAGE_BYTES).max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(StoreClient { addr: addr.to_string(), kv })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    async fn call<Req: Serialize, Resp: DeserializeOwned>(&self, method: Method, req: &Req) -> Result<Resp> {
        let mut kv = self.kv.clone();
        let request = tonic::Request::new(Blob { data: encode(req)? });
        let resp = match method {
            Method::Txn => kv.txn(request).await,
            Method::Range => kv.range(request).await,
            Method::Compact => kv.compact(request).await,
            Method::Status => kv.status(request).await,
            Method::AddLearner => kv.add_learner(request).await,
            Method::ChangeMembership => kv.change_membership(request).await,
        };
        let blob = match resp {
            Ok(r) => r.into_inner(),
            // A write whose connection broke after sending may have been applied.
            Err(status)
                if method == Method::Txn
                    && status.code() != tonic::Code::InvalidArgument
                    && !crate::node::is_connect_error(&status) =>
            {
                return Err(StoreError::Indeterminate(format!("{}: {}", self.addr, status.message())));
            }
            Err(status) => return Err(transport(&self.addr, status)),
        };
        decode::<Result<Resp>>(&blob.data)?
    }

    pub async fn txn(&self, txn: &Txn) -> Result<TxnResponse> {
        self.call(Method::Txn, txn).await
    }

    pub async fn put(&self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Result<Revision> {
        Ok(self.txn(&Txn::put(key, value)).await?.revision)
    }

    pub async fn range(&self, req: &RangeRequest, linearizable: bool) -> Result<RangeResponse> {
        self.call(Method::Range, &(req, linearizable)).await
    }

    pub async fn compact(&self, revision: Revision) -> Result<Revision> {
        self.call(Method::Compact, &revision).await
    }

    pub async fn status(&self) -> Result<MemberStatus> {
        self.call(Method::Status, &()).await
    }

    pub async fn add_learner(&self, id: NodeId, addr: &str) -> Result<()> {
        self.call(Method::AddLearner, &MembershipChange::AddLearner(id, addr.to_string())).await
    }

    pub async fn change_membership(&self, voters: BTreeSet<NodeId>) -> Result<()> {
        self.call(Method::ChangeMembership, &MembershipChange::SetVoters(voters)).await
    }

    /// Watches keys from `start_revision`; the stream ends with an error if the watch fails.
    pub async fn watch(&self, req: &WatchRequest) -> Result<impl Stream<Item = Result<RevisionEvents>>> {
        let mut kv = self.kv.clone();
        let addr = self.addr.clone();
        let stream = kv
            .watch(tonic::Request::new(Blob { data: encode(req)? }))
            .await
            .map_err(|s| transport(&self.addr, s))?
            .into_inner();
        Ok(stream.map(move |item| match item {
            Ok(blob) => decode::<Result<RevisionEvents>>(&blob.data)?,
            Err(status) => Err(transport(&addr, status)),
        }))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    Txn,
    Range,
    Compact,
    Status,
    AddLearner,
    ChangeMembership,
}

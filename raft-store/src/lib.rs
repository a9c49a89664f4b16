//! Flotilla's replicated store: etcd's MVCC key-value model, replicated with openraft and
//! persisted in RocksDB.
//!
//! Start at [`node::StoreNode`]: it assembles a member (storage, Raft, gRPC transport) and is
//! the API the rest of Flotilla uses. The write path, in order:
//! [`node`] -> [`batcher`] (group commit) -> propose, or forward to the leader -> [`network`] / [`server`] (gRPC between
//! members) -> [`log_store`] (Raft log in [`wal`] segment files, fsync'd; [`durable`] tracks how far) -> [`state_machine`] (apply) ->
//! [`mvcc`] (transactions, history, events) -> [`watch`] (fan-out to watchers); [`compactor`]
//! deletes compacted history in the background.
//! [`client`] talks to any member over gRPC from another process.

pub mod batcher;
pub mod client;
pub mod compactor;
pub mod db;
pub mod durable;
pub mod error;
pub mod keys;
pub mod log_store;
pub mod mvcc;
pub mod network;
pub mod node;
pub mod read_index;
pub mod server;
pub mod state_machine;
pub mod types;
pub mod wal;
pub mod watch;

/// Generated gRPC code for `proto/store.proto`.
pub mod proto {
    tonic::include_proto!("flotilla.store.v1");
}

pub use error::{Result, StoreError};
pub use node::{StoreConfig, StoreNode};
pub use types::*;

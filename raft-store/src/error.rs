//! Errors of the store, shared by members and clients (they cross the wire, so they serialize).

use serde::{Deserialize, Serialize};

use crate::types::{NodeId, Revision};

/// Errors a caller of the store can see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum StoreError {
    /// The requested revision was compacted away (the API layer answers 410 Gone).
    #[error("required revision {requested} has been compacted (compacted up to {compacted})")]
    Compacted { requested: Revision, compacted: Revision },
    /// The requested revision is newer than the store's current one.
    #[error("required revision {requested} is a future revision (current {current})")]
    FutureRevision { requested: Revision, current: Revision },
    /// The request is malformed.
    #[error("invalid request: {0}")]
    InvalidArgument(String),
    /// No leader is known right now, or the member is shutting down; safe to retry.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A write may or may not have been committed (the connection to the leader broke mid-call).
    #[error("write outcome unknown: {0}")]
    Indeterminate(String),
    /// This member is not the leader; the caller should ask the named one.
    #[error("not the leader; leader is {leader:?}")]
    NotLeader { leader: Option<NodeId>, leader_addr: Option<String> },
    /// The write was fenced to a leadership that has ended (see `Txn::leader_term`).
    #[error(
        "write fenced: it was made for the leadership of term {fenced}, but the leader of term {proposed} proposed it"
    )]
    Fenced { fenced: u64, proposed: u64 },
    /// Local storage failed (disk, corruption).
    #[error("storage error: {0}")]
    Storage(String),
    /// The data directory cannot be used by this version.
    #[error("{0}")]
    IncompatibleDataDir(String),
}

/// Deterministic rejections made by the state machine while applying a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Rejection {
    #[error("required revision {requested} has been compacted (compacted up to {compacted})")]
    Compacted { requested: Revision, compacted: Revision },
    #[error("required revision {requested} is a future revision (current {current})")]
    FutureRevision { requested: Revision, current: Revision },
    #[error(
        "write fenced: it was made for the leadership of term {fenced}, but the leader of term {proposed} proposed it"
    )]
    Fenced { fenced: u64, proposed: u64 },
}

impl From<Rejection> for StoreError {
    fn from(r: Rejection) -> Self {
        match r {
            Rejection::Compacted { requested, compacted } => StoreError::Compacted { requested, compacted },
            Rejection::FutureRevision { requested, current } => StoreError::FutureRevision { requested, current },
            Rejection::Fenced { fenced, proposed } => StoreError::Fenced { fenced, proposed },
        }
    }
}

impl From<rocksdb::Error> for StoreError {
    fn from(e: rocksdb::Error) -> Self {
        StoreError::Storage(e.to_string())
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Storage(format!("i/o: {e}"))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

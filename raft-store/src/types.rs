//! The store's data model: etcd-style keys, revisions, transactions, ranges and watch events.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

/// A global revision: rises by one for every committed transaction that changes something.
pub type Revision = i64;

/// Raft member id.
pub type NodeId = u64;

/// A key and its value at some revision, with etcd's per-key counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    #[serde(with = "byte_string")]
    pub key: Vec<u8>,
    #[serde(with = "byte_string")]
    pub value: Vec<u8>,
    /// Revision of the change that created this key (since its last deletion).
    pub create_revision: Revision,
    /// Revision of the last change to this key.
    pub mod_revision: Revision,
    /// Number of changes since creation: 1 after create, +1 per update.
    pub version: i64,
}

/// What a [`Compare`] looks at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    /// The key's version; 0 when absent. `Version == 0` means "does not exist".
    Version(i64),
    CreateRevision(Revision),
    ModRevision(Revision),
    Value(Vec<u8>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareOp {
    Equal,
    NotEqual,
    Greater,
    Less,
}

/// One guard of a transaction, evaluated against the current state of one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    pub key: Vec<u8>,
    pub op: CompareOp,
    pub target: CompareTarget,
}

impl Compare {
    /// True when `key` does not exist (create-if-absent).
    pub fn absent(key: impl Into<Vec<u8>>) -> Self {
        Compare { key: key.into(), op: CompareOp::Equal, target: CompareTarget::Version(0) }
    }
    /// True when `key` exists.
    pub fn exists(key: impl Into<Vec<u8>>) -> Self {
        Compare { key: key.into(), op: CompareOp::Greater, target: CompareTarget::Version(0) }
    }
    /// True when `key` was last modified at `rev` (update-if-unchanged).
    pub fn mod_revision_is(key: impl Into<Vec<u8>>, rev: Revision) -> Self {
        Compare { key: key.into(), op: CompareOp::Equal, target: CompareTarget::ModRevision(rev) }
    }
}

/// Which keys a range or delete covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeySet {
    /// Exactly one key.
    Key(Vec<u8>),
    /// Every key that starts with these bytes (the empty prefix is every key).
    Prefix(Vec<u8>),
}

impl KeySet {
    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            KeySet::Key(k) => k.as_slice() == key,
            KeySet::Prefix(p) => key.starts_with(p),
        }
    }
}

/// A read of one key or a prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeRequest {
    pub keys: KeySet,
    /// Only keys strictly greater than this one (for paging).
    pub start_after: Option<Vec<u8>>,
    /// At most this many keys; 0 means no limit.
    pub limit: u64,
    /// Read at this past revision; 0 means the current one.
    pub revision: Revision,
    /// Return only the count, no key-values.
    pub count_only: bool,
    /// Leave values empty.
    pub keys_only: bool,
}

impl RangeRequest {
    pub fn key(key: impl Into<Vec<u8>>) -> Self {
        Self::new(KeySet::Key(key.into()))
    }
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        Self::new(KeySet::Prefix(prefix.into()))
    }
    fn new(keys: KeySet) -> Self {
        RangeRequest { keys, start_after: None, limit: 0, revision: 0, count_only: false, keys_only: false }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeResponse {
    /// The revision the read was served at.
    pub revision: Revision,
    pub kvs: Vec<KeyValue>,
    /// Number of keys in the whole range (after `start_after`), ignoring `limit`.
    pub count: u64,
    /// More keys remain past `limit`.
    pub more: bool,
}

/// One operation of a transaction branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Put {
        #[serde(with = "byte_string")]
        key: Vec<u8>,
        #[serde(with = "byte_string")]
        value: Vec<u8>,
        /// Answer with the key's previous version (etcd's `prev_kv`); off, the answer carries
        /// none, which spares every put a copy of the old value on its way back.
        prev_kv: bool,
    },
    Delete {
        keys: KeySet,
    },
    Range(RangeRequest),
}

impl Op {
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Op::Put { key: key.into(), value: value.into(), prev_kv: false }
    }
    /// A put answered with the key's previous version.
    pub fn put_returning_prev(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Op::Put { key: key.into(), value: value.into(), prev_kv: true }
    }
    pub fn delete(key: impl Into<Vec<u8>>) -> Self {
        Op::Delete { keys: KeySet::Key(key.into()) }
    }
    pub fn get(key: impl Into<Vec<u8>>) -> Self {
        Op::Range(RangeRequest::key(key))
    }
}

/// etcd's transaction: if every compare holds, run `success`, else run `failure`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    pub compare: Vec<Compare>,
    pub success: Vec<Op>,
    pub failure: Vec<Op>,
    /// Leadership fencing: when set, the transaction is applied only if the Raft leader that
    /// proposed its log entry is of this term; otherwise it is rejected with
    /// [`crate::Rejection::Fenced`]. Controllers stamp their writes with the term in which
    /// they started leading, so a deposed leader's writes fail here, on every member alike.
    pub leader_term: Option<u64>,
}

impl Txn {
    /// An unconditional single put.
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Txn { success: vec![Op::put(key, value)], ..Txn::default() }
    }

    /// This transaction, fenced to the leadership of `term` (see [`Txn::leader_term`]).
    pub fn fenced(mut self, term: Option<u64>) -> Self {
        self.leader_term = term;
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpResponse {
    /// The key's previous value, if it existed and the put asked for it.
    Put {
        prev: Option<KeyValue>,
    },
    /// The deleted keys' last values.
    Delete {
        deleted: Vec<KeyValue>,
    },
    Range(RangeResponse),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResponse {
    pub succeeded: bool,
    /// The store revision after this transaction (unchanged if it wrote nothing).
    pub revision: Revision,
    pub responses: Vec<OpResponse>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change to one key. For a delete, `kv` holds the key with `mod_revision` set to the
/// deleting revision and an empty value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    pub prev_kv: Option<KeyValue>,
}

/// All events of one committed revision, in the order the transaction made them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionEvents {
    pub revision: Revision,
    pub events: Vec<Event>,
}

/// Which changes a watch delivers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchRequest {
    pub keys: KeySet,
    /// First revision to deliver; 0 means "changes after now".
    pub start_revision: Revision,
    /// Also report progress: a [`RevisionEvents`] with no events says "nothing for you up to
    /// this revision". Sent once caught up with stored history, then at most every
    /// [`crate::watch::PROGRESS_EVERY`] while other keys change.
    pub progress_notify: bool,
}

impl WatchRequest {
    /// Every change under `prefix` from `start_revision` on, without progress reports.
    pub fn prefix(prefix: impl Into<Vec<u8>>, start_revision: Revision) -> Self {
        WatchRequest { keys: KeySet::Prefix(prefix.into()), start_revision, progress_notify: false }
    }
}

/// A member's own view of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    pub id: NodeId,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
    /// Store revision of the applied state.
    pub revision: Revision,
    pub compact_revision: Revision,
    /// Voting members.
    pub voters: Vec<NodeId>,
    /// Non-voting members (learners).
    pub learners: Vec<NodeId>,
    /// Member id -> gRPC address.
    pub addresses: Vec<(NodeId, String)>,
    /// The cluster's id, once bootstrapped or joined (a joining member adopts it).
    pub cluster_id: Option<String>,
}

/// A command replicated through the Raft log and applied by every member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Transactions applied one after another, each with its own revision. Concurrent
    /// client transactions share one entry: one fsync'd append for all of them.
    Txns(Vec<Txn>),
    /// Forget history before this revision.
    Compact(Revision),
}

/// The state machine's answer to a [`Command`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    /// One result per transaction, in order.
    Txns(Vec<Result<TxnResponse, crate::error::Rejection>>),
    Compacted {
        revision: Revision,
    },
    /// The command was valid Raft-wise but rejected by the state machine (same on every member).
    Rejected(crate::error::Rejection),
    /// Membership changes and blank entries produce no result for clients.
    #[default]
    None,
}

openraft::declare_raft_types!(
    /// openraft type parameters for the store.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = NodeId,
        Node = openraft::BasicNode,
);

/// Keys and values as one byte string, not a sequence of `u8`s: bincode then copies them
/// whole instead of one byte at a time (records, log entries and messages between members
/// are bincode). bincode encodes both the same way (a u64 length, then the bytes), so
/// nothing stored or sent changes; other formats may hand over a sequence, also accepted.
mod byte_string {
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        deserializer.deserialize_byte_buf(BytesVisitor)
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
            while let Some(b) = seq.next_element()? {
                out.push(b);
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// What bincode wrote before keys and values were byte strings: the same shape with
    /// plain `Vec<u8>` fields. Records and log entries written then must read back the same.
    #[derive(Serialize, Deserialize)]
    struct PlainKeyValue {
        key: Vec<u8>,
        value: Vec<u8>,
        create_revision: Revision,
        mod_revision: Revision,
        version: i64,
    }

    #[test]
    fn byte_string_fields_encode_as_plain_byte_vectors_did() {
        let kv =
            KeyValue { key: b"/k\0".to_vec(), value: vec![0, 1, 255], create_revision: 3, mod_revision: 9, version: 2 };
        let plain = PlainKeyValue {
            key: kv.key.clone(),
            value: kv.value.clone(),
            create_revision: 3,
            mod_revision: 9,
            version: 2,
        };
        let raw = bincode::serialize(&kv).unwrap();
        assert_eq!(raw, bincode::serialize(&plain).unwrap());
        assert_eq!(bincode::deserialize::<KeyValue>(&raw).unwrap(), kv);
        let op = Op::put("key", "value");
        assert_eq!(bincode::deserialize::<Op>(&bincode::serialize(&op).unwrap()).unwrap(), op);
    }
}

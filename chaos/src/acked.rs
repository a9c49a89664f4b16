//! Records acknowledged writes and checks that every one of them survives on every member.

use std::collections::BTreeMap;

use raft_store::client::StoreClient;
use raft_store::{RangeRequest, Revision};

/// Writes the store acknowledged: key -> (value, revision). Each key is written once.
#[derive(Debug, Default)]
pub struct AckedWrites {
    acked: BTreeMap<Vec<u8>, (Vec<u8>, Revision)>,
    /// Writes whose outcome is unknown (connection broke); they may or may not exist.
    pub indeterminate: usize,
    /// Writes refused with an error that says they did not happen.
    pub failed: usize,
}

/// A key the store acknowledged but a member does not have (or has differently).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    pub member: String,
    pub key: String,
    pub expected: String,
    pub found: Option<String>,
}

impl AckedWrites {
    pub fn ack(&mut self, key: Vec<u8>, value: Vec<u8>, revision: Revision) {
        self.acked.insert(key, (value, revision));
    }

    pub fn len(&self) -> usize {
        self.acked.len()
    }

    pub fn is_empty(&self) -> bool {
        self.acked.is_empty()
    }

    /// The highest acknowledged revision.
    pub fn max_revision(&self) -> Revision {
        self.acked.values().map(|(_, r)| *r).max().unwrap_or(0)
    }

    /// Compares the acknowledged writes with what a member holds under `prefix`.
    pub fn check(&self, member: &str, found: &BTreeMap<Vec<u8>, Vec<u8>>) -> Vec<Lost> {
        let show = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        self.acked
            .iter()
            .filter(|(key, (value, _))| found.get(*key) != Some(value))
            .map(|(key, (value, _))| Lost {
                member: member.to_string(),
                key: show(key),
                expected: show(value),
                found: found.get(key).map(|v| show(v)),
            })
            .collect()
    }

    /// Reads `prefix` from a member (at its applied state) and checks it.
    pub async fn check_member(&self, client: &StoreClient, prefix: &[u8]) -> Result<Vec<Lost>, raft_store::StoreError> {
        let resp = client.range(&RangeRequest::prefix(prefix.to_vec()), false).await?;
        let found = resp.kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
        Ok(self.check(client.addr(), &found))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_or_changed_write_is_reported_and_extra_keys_are_not() {
        let mut acked = AckedWrites::default();
        acked.ack(b"a".to_vec(), b"1".to_vec(), 1);
        acked.ack(b"b".to_vec(), b"2".to_vec(), 2);
        acked.ack(b"c".to_vec(), b"3".to_vec(), 3);
        let found: BTreeMap<Vec<u8>, Vec<u8>> = [
            (b"a".to_vec(), b"1".to_vec()),
            (b"b".to_vec(), b"stale".to_vec()),
            (b"x".to_vec(), b"indeterminate write that landed".to_vec()),
        ]
        .into();
        let lost = acked.check("m1", &found);
        assert_eq!(lost.len(), 2);
        assert_eq!(lost[0].key, "b");
        assert_eq!(lost[0].found.as_deref(), Some("stale"));
        assert_eq!((lost[1].key.as_str(), lost[1].found.as_deref()), ("c", None));
        assert_eq!(acked.max_revision(), 3);
    }
}

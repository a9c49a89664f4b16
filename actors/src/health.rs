//! Member health: whether this member is live and ready, judged from the store's status.

use raft_store::{MemberStatus, StoreError};

/// The health of one member, as `/livez` and `/readyz` report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The process can make progress; false only when local storage failed.
    pub live: bool,
    /// The member can serve requests: a leader is known and the state machine has applied.
    pub ready: bool,
    /// Why the member is not ready (or not live); empty when all is well.
    pub reason: String,
    /// The status this assessment was made from, when the store answered.
    pub status: Option<MemberStatus>,
}

impl Health {
    /// The health before the first assessment: live, not ready yet.
    pub fn starting() -> Self {
        Health { live: true, ready: false, reason: "not yet checked".into(), status: None }
    }
}

/// Judges a member's health from the result of `StoreNode::status()`.
pub fn assess(status: Result<MemberStatus, StoreError>) -> Health {
    match status {
        Err(e) => {
            let live = !matches!(e, StoreError::Storage(_));
            Health { live, ready: false, reason: format!("store error: {e}"), status: None }
        }
        Ok(s) => {
            let reason = if s.leader.is_none() {
                "no leader elected"
            } else if s.applied_index.is_none() {
                "no log entry applied yet"
            } else {
                ""
            };
            Health { live: true, ready: reason.is_empty(), reason: reason.into(), status: Some(s) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(leader: Option<u64>, applied_index: Option<u64>) -> MemberStatus {
        MemberStatus {
            id: 1,
            leader,
            term: 1,
            last_log_index: applied_index,
            applied_index,
            revision: 0,
            compact_revision: 0,
            voters: vec![1],
            learners: vec![],
            addresses: vec![],
            cluster_id: None,
        }
    }

    #[test]
    fn a_member_with_a_leader_and_applied_entries_is_ready() {
        let h = assess(Ok(status(Some(1), Some(3))));
        assert!(h.live && h.ready);
        assert_eq!(h.reason, "");
        assert!(h.status.is_some());
    }

    #[test]
    fn a_member_without_a_leader_is_live_but_not_ready() {
        let h = assess(Ok(status(None, Some(3))));
        assert!(h.live && !h.ready);
        assert_eq!(h.reason, "no leader elected");
    }

    #[test]
    fn a_member_that_applied_nothing_is_not_ready() {
        let h = assess(Ok(status(Some(1), None)));
        assert!(h.live && !h.ready);
        assert_eq!(h.reason, "no log entry applied yet");
    }

    #[test]
    fn a_storage_error_makes_the_member_not_live() {
        let h = assess(Err(StoreError::Storage("disk gone".into())));
        assert!(!h.live && !h.ready);
        assert_eq!(h.reason, "store error: storage error: disk gone");
        assert!(h.status.is_none());
    }

    #[test]
    fn a_transient_store_error_keeps_the_member_live() {
        let h = assess(Err(StoreError::Unavailable("no leader".into())));
        assert!(h.live && !h.ready);
        assert!(h.reason.starts_with("store error: "), "{}", h.reason);
    }
}

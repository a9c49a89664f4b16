//! Order-preserving encodings of the column-family keys.
//!
//! `kv` is keyed by the user key itself. `hist` is keyed by a version's [`Position`]: its
//! revision, then its place among that revision's changes, both big-endian, so history is
//! appended in order (no insert at a random place in the memtable) and read back in
//! revision order, as etcd's bbolt keys its revisions.

use crate::mvcc::Position;

/// Length of a [`position_key`].
pub const POSITION_KEY_LEN: usize = 12;

pub fn position_key(at: Position) -> [u8; POSITION_KEY_LEN] {
    let mut out = [0; POSITION_KEY_LEN];
    out[..8].copy_from_slice(&(at.rev as u64).to_be_bytes());
    out[8..].copy_from_slice(&at.sub.to_be_bytes());
    out
}

pub fn decode_position_key(raw: &[u8]) -> Option<Position> {
    let raw: &[u8; POSITION_KEY_LEN] = raw.try_into().ok()?;
    let (rev, sub) = raw.split_at(8);
    Some(Position {
        rev: u64::from_be_bytes(rev.try_into().ok()?) as i64,
        sub: u32::from_be_bytes(sub.try_into().ok()?),
    })
}

/// The key right after `key` in byte order (for "start after" paging).
pub fn successor(key: &[u8]) -> Vec<u8> {
    let mut out = key.to_vec();
    out.push(0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_sort_by_revision_then_sub() {
        let at = |rev, sub| Position { rev, sub };
        let mut positions = [at(2, 0), at(1, 7), at(256, 0), at(1, 0), at(1, 256)];
        let mut raw: Vec<_> = positions.iter().map(|p| position_key(*p)).collect();
        raw.sort();
        positions.sort();
        let decoded: Vec<_> = raw.iter().map(|k| decode_position_key(k).unwrap()).collect();
        assert_eq!(decoded, positions);
        assert_eq!(decode_position_key(b"short"), None);
    }
}

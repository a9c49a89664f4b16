//! Order-preserving encodings of the column-family keys.
//!
//! History keys are `escape(user_key) 0x00 0x00 revision_be`, where `escape` turns each 0x00
//! into 0x00 0xFF. All versions of one key are then contiguous and sorted by revision, and
//! the encoding of a prefix is a prefix of the encodings of the keys it covers.

use crate::types::Revision;

pub fn revision_key(rev: Revision) -> [u8; 8] {
    (rev as u64).to_be_bytes()
}

pub fn decode_revision_key(key: &[u8]) -> Option<Revision> {
    let bytes: [u8; 8] = key.try_into().ok()?;
    Some(u64::from_be_bytes(bytes) as Revision)
}

/// Escaped user key, without terminator: a prefix of every history key of keys it prefixes.
pub fn escape(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 2);
    for &b in key {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out
}

pub fn hist_key(key: &[u8], rev: Revision) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 10);
    push_hist_key(&mut out, key, rev);
    out
}

/// Appends [`hist_key`]`(key, rev)` to `out`.
pub fn push_hist_key(out: &mut Vec<u8>, key: &[u8], rev: Revision) {
    out.reserve(key.len() + 10);
    for &b in key {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&revision_key(rev));
}

/// The smallest history key that sorts after every version of `key`, and before every
/// version of any longer key that `key` prefixes.
pub fn hist_after_key(key: &[u8]) -> Vec<u8> {
    let mut out = escape(key);
    out.extend_from_slice(&[0, 1]);
    out
}

/// Splits a history key into the user key and revision.
/// Splits a [`hist_key`] into its key part, still encoded (equal for every version of one
/// key, and only of that key), and its revision.
pub fn split_hist_key(raw: &[u8]) -> Option<(&[u8], Revision)> {
    if raw.len() < 10 {
        return None;
    }
    let (body, rev) = raw.split_at(raw.len() - 8);
    Some((body, decode_revision_key(rev)?))
}

pub fn decode_hist_key(raw: &[u8]) -> Option<(Vec<u8>, Revision)> {
    if raw.len() < 10 {
        return None;
    }
    let (body, rev) = raw.split_at(raw.len() - 8);
    let rev = decode_revision_key(rev)?;
    let body = body.strip_suffix(&[0, 0])?;
    let mut key = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        key.push(body[i]);
        if body[i] == 0 {
            if body.get(i + 1) != Some(&0xFF) {
                return None;
            }
            i += 1;
        }
        i += 1;
    }
    Some((key, rev))
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
    fn history_keys_round_trip_even_with_zero_bytes() {
        for key in [&b"/registry/pods/a"[..], b"a\0b", b"\0", b"", b"\0\xff\0"] {
            let raw = hist_key(key, 42);
            assert_eq!(decode_hist_key(&raw), Some((key.to_vec(), 42)));
        }
    }

    #[test]
    fn versions_of_a_key_sort_before_longer_keys_it_prefixes() {
        let mut keys = [hist_key(b"a\0", 1), hist_key(b"a", 9), hist_key(b"ab", 1), hist_key(b"a", 2)];
        keys.sort();
        let decoded: Vec<_> = keys.iter().map(|k| decode_hist_key(k).unwrap()).collect();
        assert_eq!(decoded, vec![(b"a".to_vec(), 2), (b"a".to_vec(), 9), (b"a\0".to_vec(), 1), (b"ab".to_vec(), 1)]);
        assert!(hist_after_key(b"a") > hist_key(b"a", i64::MAX));
        assert!(hist_after_key(b"a") < hist_key(b"a\0", 0));
    }
}

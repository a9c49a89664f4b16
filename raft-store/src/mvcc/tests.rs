//! Unit tests of the MVCC layer over a real RocksDB in a temp dir.

use super::*;

struct Fixture {
    _dir: tempfile::TempDir,
    db: Arc<DB>,
    mvcc: Mvcc,
    revs: Revisions,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::open(dir.path()).unwrap();
        Fixture { mvcc: Mvcc::new(db.clone()), db, _dir: dir, revs: Revisions::default() }
    }

    /// Applies a transaction as an entry of its own.
    fn txn(&mut self, txn: Txn) -> TxnResponse {
        let mut batch = WriteBatch::default();
        let mut writes = EntryWrites::default();
        let snap = self.db.snapshot();
        let (resp, _) = self
            .mvcc
            .apply_txn(&snap, &mut Overlay::new(self.revs.current), txn, &mut self.revs, &mut writes)
            .unwrap()
            .unwrap();
        writes.write_into(&self.db, &mut batch).unwrap();
        self.mvcc.write_revision(&self.revs, &mut batch).unwrap();
        drop(snap);
        self.db.write(batch).unwrap();
        resp
    }

    /// a=1 @1, b=1 @2, a=2 @3, b deleted @4, c=1 @5.
    fn with_five_revisions() -> Self {
        let mut f = Fixture::new();
        f.put("a", "1");
        f.put("b", "1");
        f.put("a", "2");
        f.delete("b");
        f.put("c", "1");
        f
    }

    fn put(&mut self, key: &str, value: &str) -> Revision {
        self.txn(Txn::put(key, value)).revision
    }

    fn delete(&mut self, key: &str) -> TxnResponse {
        self.txn(Txn { success: vec![Op::delete(key)], ..Default::default() })
    }

    /// Applies a compaction, then deletes the history it made unreachable (which a member
    /// does in the background).
    fn compact(&mut self, rev: Revision) -> Result<Revision, Rejection> {
        let out = self.compact_logically(rev);
        if out.is_ok() {
            assert!(compact_history(&Arc::downgrade(&self.db), &self.mvcc.writer(), rev).unwrap().is_some());
            assert_eq!(history_compacted(&self.db).unwrap(), rev);
        }
        out
    }

    /// Applies a compaction only: the history stays until [`compact_history`] runs.
    fn compact_logically(&mut self, rev: Revision) -> Result<Revision, Rejection> {
        let mut batch = WriteBatch::default();
        let out = self.mvcc.apply_compact(rev, &mut self.revs, &mut batch).unwrap();
        self.db.write(batch).unwrap();
        out
    }

    /// (key, revision) of every version in history, in revision order.
    fn history(&self) -> Vec<(Vec<u8>, Revision)> {
        let hist = cf(&self.db, CF_HIST).unwrap();
        self.db
            .iterator_cf(hist, IteratorMode::Start)
            .map(|item| {
                let (key, raw) = item.unwrap();
                let version: Version = decode(&raw).unwrap();
                assert_eq!(keys::decode_position_key(&key), Some(version.at));
                (version.kv.key, version.at.rev)
            })
            .collect()
    }

    /// The keys `kv` holds a record for (deletions included).
    fn kv_keys(&self) -> Vec<Vec<u8>> {
        let kv = cf(&self.db, CF_KV).unwrap();
        self.db.iterator_cf(kv, IteratorMode::Start).map(|item| item.unwrap().0.to_vec()).collect()
    }

    fn values(&self, req: RangeRequest) -> Vec<(String, String)> {
        let resp = self.mvcc.range(&req).unwrap();
        resp.kvs
            .into_iter()
            .map(|kv| (String::from_utf8(kv.key).unwrap(), String::from_utf8(kv.value).unwrap()))
            .collect()
    }
}

/// Every key, read at `rev`.
fn all_at(rev: Revision) -> RangeRequest {
    RangeRequest { revision: rev, ..RangeRequest::prefix("") }
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn each_change_raises_the_revision_by_one_and_keeps_per_key_counters() {
    let mut f = Fixture::new();
    assert_eq!(f.put("a", "1"), 1);
    assert_eq!(f.put("b", "1"), 2);
    assert_eq!(f.put("a", "2"), 3);
    let kv = f.mvcc.range(&RangeRequest::key("a")).unwrap().kvs.remove(0);
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (1, 3, 2));
    // Deleting a missing key changes nothing, so the revision stays.
    assert_eq!(f.delete("missing").revision, 3);
    assert_eq!(f.delete("a").revision, 4);
    assert_eq!(f.put("a", "3"), 5);
    let kv = f.mvcc.range(&RangeRequest::key("a")).unwrap().kvs.remove(0);
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (5, 5, 1), "recreated key starts over");
}

#[test]
fn compares_decide_the_branch() {
    let mut f = Fixture::new();
    let create = |v: &str| Txn {
        compare: vec![Compare::absent("k")],
        success: vec![Op::put("k", v)],
        failure: vec![Op::get("k")],
        leader_term: None,
    };
    assert!(f.txn(create("first")).succeeded);
    let resp = f.txn(create("second"));
    assert!(!resp.succeeded, "create-if-absent must fail when the key exists");
    let OpResponse::Range(current) = &resp.responses[0] else { panic!("expected range response") };
    assert_eq!(current.kvs[0].value, b"first");

    let rev = current.kvs[0].mod_revision;
    let cas = |rev: Revision| Txn {
        compare: vec![Compare::mod_revision_is("k", rev)],
        success: vec![Op::put("k", "updated")],
        failure: vec![],
        leader_term: None,
    };
    assert!(f.txn(cas(rev)).succeeded);
    assert!(!f.txn(cas(rev)).succeeded, "update with a stale mod_revision must fail");

    let value_is = |op, v: &str| Compare { key: b"k".to_vec(), op, target: CompareTarget::Value(v.into()) };
    for (cmp, expect) in [
        (value_is(CompareOp::Equal, "updated"), true),
        (value_is(CompareOp::NotEqual, "updated"), false),
        (value_is(CompareOp::Greater, "a"), true),
        (value_is(CompareOp::Less, "a"), false),
        (
            Compare { key: b"nope".to_vec(), op: CompareOp::NotEqual, target: CompareTarget::Value(b"x".to_vec()) },
            false,
        ),
        (Compare { key: b"k".to_vec(), op: CompareOp::Equal, target: CompareTarget::Version(2) }, true),
        (Compare { key: b"k".to_vec(), op: CompareOp::Less, target: CompareTarget::CreateRevision(2) }, true),
        (Compare::exists("nope"), false),
    ] {
        let txn = Txn { compare: vec![cmp.clone()], success: vec![], failure: vec![], leader_term: None };
        assert_eq!(f.txn(txn).succeeded, expect, "{cmp:?}");
    }
}

#[test]
fn range_by_prefix_with_limit_and_paging() {
    let mut f = Fixture::new();
    for k in ["p/a", "p/b", "p/c", "p/d", "q/a"] {
        f.put(k, "v");
    }
    let mut req = RangeRequest::prefix("p/");
    req.limit = 2;
    let page1 = f.mvcc.range(&req).unwrap();
    assert_eq!((page1.count, page1.more, page1.kvs.len()), (4, true, 2));
    req.start_after = Some(page1.kvs[1].key.clone());
    let page2 = f.mvcc.range(&req).unwrap();
    assert_eq!((page2.count, page2.more), (2, false));
    let keys: Vec<_> = page2.kvs.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(keys, vec![b"p/c".to_vec(), b"p/d".to_vec()]);

    let mut count = RangeRequest::prefix("");
    count.count_only = true;
    let resp = f.mvcc.range(&count).unwrap();
    assert_eq!((resp.count, resp.kvs.len()), (5, 0));
}

#[test]
fn range_at_a_past_revision_sees_that_revision() {
    let f = Fixture::with_five_revisions();
    assert_eq!(f.values(all_at(1)), pairs(&[("a", "1")]));
    assert_eq!(f.values(all_at(2)), pairs(&[("a", "1"), ("b", "1")]));
    assert_eq!(f.values(all_at(3)), pairs(&[("a", "2"), ("b", "1")]));
    assert_eq!(f.values(all_at(4)), pairs(&[("a", "2")]));
    assert_eq!(f.values(all_at(0)), pairs(&[("a", "2"), ("c", "1")]));
    let mut paged = all_at(3);
    paged.start_after = Some(b"a".to_vec());
    assert_eq!(f.values(paged), pairs(&[("b", "1")]));
    let mut single = RangeRequest::key("b");
    single.revision = 2;
    assert_eq!(f.values(single), pairs(&[("b", "1")]));
    assert!(matches!(f.mvcc.range(&all_at(9)), Err(StoreError::FutureRevision { requested: 9, current: 5 })));
}

#[test]
fn compaction_forgets_old_revisions_but_keeps_the_visible_state() {
    let mut f = Fixture::with_five_revisions();
    assert_eq!(f.compact(4), Ok(4));
    assert!(matches!(f.mvcc.range(&all_at(3)), Err(StoreError::Compacted { requested: 3, compacted: 4 })));
    assert_eq!(f.values(all_at(4)), pairs(&[("a", "2")]));
    assert_eq!(f.values(all_at(5)), pairs(&[("a", "2"), ("c", "1")]));
    assert_eq!(f.compact(4), Err(Rejection::Compacted { requested: 4, compacted: 4 }));
    assert_eq!(f.compact(6), Err(Rejection::FutureRevision { requested: 6, current: 5 }));
    // Watches cannot start before the compacted revision but can start at it, and then
    // still hear what the first event replaced.
    assert!(matches!(f.mvcc.events_since(&KeySet::Prefix(vec![]), 3), Err(StoreError::Compacted { .. })));
    let (events, _) = f.mvcc.events_since(&KeySet::Prefix(vec![]), 4).unwrap();
    assert_eq!(events.iter().map(|e| e.revision).collect::<Vec<_>>(), vec![4, 5]);
    assert_eq!(events[0].events[0].kind, EventKind::Delete);
    assert_eq!(events[0].events[0].prev_kv.as_ref().map(|kv| kv.value.as_slice()), Some(&b"1"[..]));
    // a@1 went (replaced at 3); b@2 stays for the watch from 4, as does b's deletion.
    assert_eq!(f.history(), vec![(b"b".to_vec(), 2), (b"a".to_vec(), 3), (b"b".to_vec(), 4), (b"c".to_vec(), 5)]);
    assert_eq!(f.kv_keys(), vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    // Past the deletion, it goes from history and from `kv`, with the version it replaced.
    assert_eq!(f.compact(5), Ok(5));
    assert_eq!(f.history(), vec![(b"a".to_vec(), 3), (b"c".to_vec(), 5)]);
    assert_eq!(f.kv_keys(), vec![b"a".to_vec(), b"c".to_vec()]);
    assert_eq!(f.values(all_at(5)), pairs(&[("a", "2"), ("c", "1")]));
}

/// A key deleted and made again reads right at every revision, before and after the
/// deletion is compacted away; the compactor leaves the new version in `kv`.
#[test]
fn a_recreated_key_reads_right_at_every_revision() {
    let mut f = Fixture::new();
    f.put("k", "1"); // @1
    f.delete("k"); // @2
    f.put("other", "x"); // @3
    f.put("k", "2"); // @4
    let k_at = |f: &Fixture, rev| f.values(RangeRequest { revision: rev, ..RangeRequest::key("k") });
    assert_eq!(k_at(&f, 1), pairs(&[("k", "1")]));
    assert_eq!(k_at(&f, 2), pairs(&[]));
    assert_eq!(k_at(&f, 3), pairs(&[]));
    assert_eq!(k_at(&f, 4), pairs(&[("k", "2")]));
    let kv = f.mvcc.range(&RangeRequest::key("k")).unwrap().kvs.remove(0);
    assert_eq!((kv.create_revision, kv.version), (4, 1));
    assert_eq!(f.compact(3), Ok(3));
    assert_eq!(f.history(), vec![(b"other".to_vec(), 3), (b"k".to_vec(), 4)]);
    assert_eq!(k_at(&f, 3), pairs(&[]));
    assert_eq!(k_at(&f, 4), pairs(&[("k", "2")]));
    let (events, _) = f.mvcc.events_since(&KeySet::Key(b"k".to_vec()), 3).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].events[0].prev_kv, None, "the version before a recreation is none");
    // A deleted key that existed at a past revision is found through its deletion in `kv`.
    f.delete("other"); // @5
    assert_eq!(f.values(all_at(4)), pairs(&[("k", "2"), ("other", "x")]));
    assert_eq!(f.values(all_at(5)), pairs(&[("k", "2")]));
}

/// Keys that extend one another, or hold zero bytes, keep their own newest version.
#[test]
fn compaction_keeps_each_keys_newest_version_and_drops_deletions() {
    let mut f = Fixture::new();
    for round in 1..=3 {
        for key in ["k", "k\0", "k\0x", "kx"] {
            f.put(key, &format!("{key}-{round}"));
        }
    }
    f.txn(Txn { success: vec![Op::delete("k\0")], ..Default::default() });
    f.put("z", "1");
    let current = f.revs.current;
    assert_eq!(f.compact(current), Ok(current));
    assert_eq!(
        f.history(),
        vec![(b"k".to_vec(), 9), (b"k\0x".to_vec(), 11), (b"kx".to_vec(), 12), (b"z".to_vec(), 14)]
    );
    assert_eq!(f.kv_keys(), vec![b"k".to_vec(), b"k\0x".to_vec(), b"kx".to_vec(), b"z".to_vec()]);
    assert_eq!(f.values(all_at(current)), pairs(&[("k", "k-3"), ("k\0x", "k\0x-3"), ("kx", "kx-3"), ("z", "1")]));
}

/// Between a compaction's apply and the background deletion of the history it made
/// unreachable, every read answers as after the deletion: the old versions are only bytes.
#[test]
fn reads_are_the_same_before_and_after_the_history_is_deleted() {
    let mut f = Fixture::with_five_revisions();
    let before = f.history();
    assert_eq!(f.compact_logically(4), Ok(4));
    assert_eq!(f.history(), before, "apply leaves the history in place");
    assert!(matches!(f.mvcc.range(&all_at(3)), Err(StoreError::Compacted { requested: 3, compacted: 4 })));
    let reads = |f: &Fixture| (f.values(all_at(4)), f.values(all_at(5)), f.values(RangeRequest::key("a")));
    let logical = reads(&f);
    assert_eq!(logical.0, pairs(&[("a", "2")]));
    assert!(compact_history(&Arc::downgrade(&f.db), &f.mvcc.writer(), 4).unwrap().is_some());
    assert!(f.history().len() < before.len());
    assert_eq!(reads(&f), logical);
}

/// History is deleted chunk by chunk; keys whose versions span chunks keep their newest.
#[test]
fn history_compaction_works_across_chunks() {
    let mut f = Fixture::new();
    let keys = 7;
    for round in 0..(COMPACT_CHUNK / keys + 3) {
        for k in 0..keys {
            f.put(&format!("k{k}"), &format!("{round}"));
        }
    }
    let current = f.revs.current;
    assert_eq!(f.compact(current), Ok(current));
    // Each key's newest version, and the one the version at `current` replaced.
    assert_eq!(f.history().len(), keys + 1);
    let last = format!("{}", COMPACT_CHUNK / keys + 2);
    let expected: Vec<(String, String)> = (0..keys).map(|k| (format!("k{k}"), last.clone())).collect();
    assert_eq!(f.values(all_at(current)), expected);
}

#[test]
fn a_versions_header_decodes_without_its_value() {
    let kv = KeyValue { key: b"k".to_vec(), value: b"v".to_vec(), create_revision: 1, mod_revision: 7, version: 3 };
    let version = Version { at: Position { rev: 7, sub: 2 }, prev: Position { rev: 5, sub: 1 }, deleted: true, kv };
    let header: VersionHeader = decode(&encode(&version).unwrap()).unwrap();
    assert_eq!((header.at, header.prev, header.deleted), (version.at, version.prev, true));
}

#[test]
fn events_come_in_revision_order_with_previous_values() {
    let mut f = Fixture::new();
    f.put("w/a", "1");
    f.put("other", "x");
    f.put("w/a", "2");
    f.txn(Txn { success: vec![Op::put("w/b", "1"), Op::delete("w/a")], ..Default::default() });
    let (batches, seen) = f.mvcc.events_since(&KeySet::Prefix(b"w/".to_vec()), 1).unwrap();
    assert_eq!(seen, 4);
    let revs: Vec<_> = batches.iter().map(|b| b.revision).collect();
    assert_eq!(revs, vec![1, 3, 4]);
    let last = &batches[2].events;
    assert_eq!(last[0].kind, EventKind::Put);
    assert_eq!(last[1].kind, EventKind::Delete);
    assert_eq!(last[1].prev_kv.as_ref().unwrap().value, b"2");
    assert_eq!(batches[1].events[0].prev_kv.as_ref().unwrap().value, b"1");
}

#[test]
fn a_txn_writing_one_key_twice_is_invalid() {
    let dup = Txn { success: vec![Op::put("a", "1"), Op::put("a", "2")], ..Default::default() };
    assert!(matches!(validate_txn(&dup), Err(StoreError::InvalidArgument(_))));
    let overlap = Txn {
        success: vec![Op::put("a/1", "1"), Op::Delete { keys: KeySet::Prefix(b"a/".to_vec()) }],
        ..Default::default()
    };
    assert!(validate_txn(&overlap).is_err());
    assert!(validate_txn(&Txn::put("a", "1")).is_ok());
}

//! The history checkers on hand-made histories (each bug they exist for, and good histories
//! with concurrency, indeterminate writes and a 410 relist), then on randomized histories of a
//! simulated linearizable store, before and after one mutation that breaks them.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use chaos::{
    CheckOptions, FailReason, FindingKind, History, Op, OpKind, Outcome, Report, Verdict, Versioned, WatchEventType,
    WatchLog, WriteFinding,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn op(client: u32, key: &str, kind: OpKind, at: (u64, Option<u64>), outcome: Outcome) -> Op {
    Op { client, key: key.into(), kind, invoked_ns: at.0, completed_ns: at.1, outcome }
}

fn create(client: u32, key: &str, value: &str, at: (u64, u64), rv: u64) -> Op {
    op(client, key, OpKind::Create { value: value.into() }, (at.0, Some(at.1)), ok(rv, value))
}

fn update(client: u32, key: &str, value: &str, expected_rv: u64, at: (u64, u64), outcome: Outcome) -> Op {
    op(client, key, OpKind::Update { value: value.into(), expected_rv }, (at.0, Some(at.1)), outcome)
}

fn get(client: u32, key: &str, at: (u64, u64), outcome: Outcome) -> Op {
    op(client, key, OpKind::Get, (at.0, Some(at.1)), outcome)
}

fn lost(client: u32, key: &str, kind: OpKind, invoked: u64) -> Op {
    op(client, key, kind, (invoked, None), Outcome::Indeterminate)
}

fn ok(rv: u64, value: &str) -> Outcome {
    Outcome::Ok { rv: Some(rv), value: Some(value.into()) }
}

fn fail(reason: FailReason) -> Outcome {
    Outcome::Fail { reason }
}

fn state(objects: &[(&str, u64, &str)]) -> BTreeMap<String, Versioned> {
    objects.iter().map(|(k, rv, v)| (k.to_string(), Versioned { rv: *rv, value: v.to_string() })).collect()
}

fn history(ops: Vec<Op>, watches: Vec<WatchLog>, final_state: &[(&str, u64, &str)]) -> History {
    History {
        ops,
        watches: watches.into_iter().map(|w| (w.watcher, w)).collect(),
        final_state: Some(state(final_state)),
    }
}

/// A watcher from an empty namespace at rv 0 that received `events`.
fn watcher(id: u32, events: &[(WatchEventType, &str, u64, &str)]) -> WatchLog {
    let mut log = WatchLog::new(id, 0, Some(BTreeMap::new()));
    for (t, key, rv, value) in events {
        log.push(*t, key, *rv, Some(value));
    }
    log
}

fn check(history: &History) -> Report {
    Report::check(history, &CheckOptions::default())
}

fn assert_valid(history: &History) {
    let report = check(history);
    assert_eq!(report.verdict(), Verdict::Valid, "{report}");
}

use WatchEventType::{Added, Deleted, Modified};

/// k: create a@1, update b@3 (and a conflicting concurrent CAS), a concurrent read of the old
/// value; j: create x@2. Watcher 1 sees everything, watcher 2 loses its watch to a 410 and
/// relists at rv 2.
fn good_history() -> History {
    let ops = vec![
        create(1, "k", "a", (0, 10), 1),
        create(4, "j", "x", (5, 15), 2),
        update(1, "k", "b", 1, (20, 40), ok(3, "b")),
        update(2, "k", "c", 1, (25, 45), fail(FailReason::Conflict)),
        get(3, "k", (30, 50), ok(1, "a")),
        get(2, "k", (50, 60), ok(3, "b")),
        get(2, "gone", (50, 60), fail(FailReason::NotFound)),
        update(3, "j", "y", 2, (55, 70), fail(FailReason::Other)),
    ];
    let w1 = watcher(1, &[(Added, "k", 1, "a"), (Added, "j", 2, "x"), (Modified, "k", 3, "b")]);
    let mut w2 = watcher(2, &[(Added, "k", 1, "a")]);
    w2.relist(2, Some(state(&[("k", 1, "a"), ("j", 2, "x")])));
    w2.push(Modified, "k", 3, Some("b"));
    history(ops, vec![w1, w2], &[("k", 3, "b"), ("j", 2, "x")])
}

#[test]
fn concurrent_operations_and_a_relist_after_410_pass() {
    let history = good_history();
    assert_valid(&history);
    let report = check(&history);
    assert_eq!(report.summary.relists, 1);
    assert_eq!(report.summary.ops["update"].conflict, 1);
    assert_eq!(report.summary.watchers.iter().map(|w| w.last_rv).collect::<Vec<_>>(), vec![3, 3]);
}

#[test]
fn indeterminate_writes_that_did_and_did_not_take_effect_pass() {
    let ops = vec![
        create(1, "k", "a", (0, 10), 1),
        // Took effect at rv 2: a later read and a CAS reveal it.
        lost(1, "k", OpKind::Update { value: "b".into(), expected_rv: 1 }, 20),
        get(2, "k", (30, 40), ok(2, "b")),
        // Never took effect; its rv 3 was burnt by nothing anyone saw.
        lost(4, "j", OpKind::Create { value: "z".into() }, 45),
        update(3, "k", "c", 2, (50, 60), ok(4, "c")),
        // Too stale to ever take effect.
        lost(1, "k", OpKind::Update { value: "d".into(), expected_rv: 1 }, 70),
        // Took effect at rv 5, seen only by the watcher and the final state.
        lost(2, "m", OpKind::Create { value: "q".into() }, 80),
    ];
    let w = watcher(1, &[(Added, "k", 1, "a"), (Modified, "k", 2, "b"), (Modified, "k", 4, "c"), (Added, "m", 5, "q")]);
    assert_valid(&history(ops, vec![w], &[("k", 4, "c"), ("m", 5, "q")]));
}

#[test]
fn deletes_returning_either_rv_convention_pass() {
    let delete = |expected_rv, at: (u64, u64), rv| {
        op(1, "k", OpKind::Delete { expected_rv }, (at.0, Some(at.1)), Outcome::Ok { rv: Some(rv), value: None })
    };
    let ops = vec![
        create(1, "k", "a", (0, 10), 1),
        delete(Some(1), (20, 30), 1), // flotilla: the deleted object as it last was
        get(2, "k", (35, 40), fail(FailReason::NotFound)),
        create(1, "k", "b", (50, 60), 3),
        delete(None, (70, 80), 4), // kube-apiserver: the deletion revision
        update(2, "k", "c", 3, (85, 90), fail(FailReason::NotFound)),
    ];
    let w = watcher(1, &[(Added, "k", 1, "a"), (Deleted, "k", 2, "a"), (Added, "k", 3, "b"), (Deleted, "k", 4, "b")]);
    assert_valid(&history(ops, vec![w], &[]));
}

#[test]
fn a_lost_write_is_caught_by_the_final_state() {
    let ops = vec![create(1, "k", "a", (0, 10), 1), update(1, "k", "b", 1, (20, 30), ok(2, "b"))];
    let report = check(&history(ops, vec![], &[("k", 1, "a")]));
    assert_eq!(report.verdict(), Verdict::Invalid);
    assert!(matches!(&report.writes[..], [WriteFinding::LostWrite { key, .. }] if key == "k"), "{report}");
    let violation = &report.linearizability.violations[0];
    assert!(violation.op.starts_with("final state"), "{violation}");
}

#[test]
fn a_stale_read_after_a_completed_update_is_caught() {
    let ops = vec![
        create(1, "k", "a", (0, 10), 1),
        update(1, "k", "b", 1, (20, 30), ok(2, "b")),
        get(2, "k", (40, 50), ok(1, "a")),
    ];
    let report = check(&history(ops, vec![], &[("k", 2, "b")]));
    let violations = &report.linearizability.violations;
    assert_eq!(violations.len(), 1, "{report}");
    assert!(violations[0].op.contains("get()"), "{}", violations[0]);
    assert!(violations[0].reason.contains("read \"a\" at rv 1"), "{}", violations[0]);
    assert!(
        report.writes.iter().any(|f| matches!(f, WriteFinding::RevisionWentBackwards { key: Some(k), .. } if k == "k")),
        "{report}"
    );
    // The same read concurrent with the update is fine.
    let ops = vec![
        create(1, "k", "a", (0, 10), 1),
        update(1, "k", "b", 1, (20, 45), ok(2, "b")),
        get(2, "k", (40, 50), ok(1, "a")),
    ];
    assert_valid(&history(ops, vec![], &[("k", 2, "b")]));
}

#[test]
fn a_compare_and_swap_that_succeeds_twice_on_one_rv_is_caught() {
    let ops = vec![
        create(1, "k", "a", (0, 10), 1),
        update(1, "k", "b", 1, (20, 40), ok(2, "b")),
        update(2, "k", "c", 1, (25, 45), ok(3, "c")),
    ];
    let report = check(&history(ops, vec![], &[("k", 3, "c")]));
    let violations = &report.linearizability.violations;
    assert_eq!(violations.len(), 1, "{report}");
    assert!(violations[0].reason.contains("expected rv 1"), "{}", violations[0]);
    assert!(report.to_string().contains("verdict: INVALID"));
}

/// k: a@1, b@2, c@3, all acknowledged.
fn three_writes() -> Vec<Op> {
    vec![
        create(1, "k", "a", (0, 10), 1),
        update(1, "k", "b", 1, (20, 30), ok(2, "b")),
        update(1, "k", "c", 2, (40, 50), ok(3, "c")),
    ]
}

fn watch_findings(events: &[(WatchEventType, &str, u64, &str)]) -> Vec<(FindingKind, u64)> {
    let report = check(&history(three_writes(), vec![watcher(7, events)], &[("k", 3, "c")]));
    assert!(report.linearizability.violations.is_empty() && report.writes.is_empty(), "{report}");
    report.watches.iter().map(|f| (f.kind, f.rv)).collect()
}

#[test]
fn watch_streams_with_a_gap_a_reorder_a_duplicate_or_a_phantom_are_caught() {
    let (a, b, c) = ((Added, "k", 1, "a"), (Modified, "k", 2, "b"), (Modified, "k", 3, "c"));
    assert!(watch_findings(&[a, b, c]).is_empty());
    assert_eq!(watch_findings(&[a, c]), vec![(FindingKind::Gap, 2)]);
    assert!(watch_findings(&[a, c, b]).contains(&(FindingKind::Reordered, 2)));
    assert_eq!(watch_findings(&[a, b, b, c]), vec![(FindingKind::Duplicate, 2)]);
    let phantom = watch_findings(&[a, b, c, (Modified, "k", 9, "zzz")]);
    assert!(phantom.contains(&(FindingKind::Phantom, 9)), "{phantom:?}");
    let ghost = watch_findings(&[a, b, (Added, "ghost", 3, "c"), c]);
    assert!(ghost.contains(&(FindingKind::Phantom, 3)), "{ghost:?}");
    let wrong_value = watch_findings(&[a, (Modified, "k", 2, "not-b"), c]);
    assert!(wrong_value.contains(&(FindingKind::Mismatch, 2)), "{wrong_value:?}");
    let wrong_type = watch_findings(&[a, (Added, "k", 2, "b"), c]);
    assert!(wrong_type.contains(&(FindingKind::Mismatch, 2)), "{wrong_type:?}");
}

#[test]
fn a_watcher_whose_view_ends_away_from_the_final_state_is_caught() {
    // A bookmark at rv 3 claims everything up to 3 was sent; the view still holds "a".
    let mut log = watcher(1, &[(Added, "k", 1, "a")]);
    log.push(WatchEventType::Bookmark, "", 3, None);
    let report = check(&history(three_writes(), vec![log], &[("k", 3, "c")]));
    let kinds: Vec<_> = report.watches.iter().map(|f| f.kind).collect();
    assert_eq!(kinds, vec![FindingKind::Gap, FindingKind::Gap, FindingKind::Diverged], "{report}");
}

#[test]
fn watchers_that_disagree_on_an_unacknowledged_change_are_caught() {
    let mut ops = three_writes();
    ops.push(lost(2, "m", OpKind::Create { value: "q".into() }, 60));
    ops.push(lost(3, "m", OpKind::Create { value: "r".into() }, 60));
    let w1 = watcher(1, &[(Added, "k", 1, "a"), (Added, "m", 4, "q")]);
    let w2 = watcher(2, &[(Added, "k", 1, "a"), (Added, "m", 4, "r")]);
    // Watcher 3's bookmark says it got everything up to rv 4, yet it missed the create.
    let w3 = watcher(3, &[(Added, "k", 1, "a"), (Modified, "k", 2, "b"), (Modified, "k", 3, "c")]);
    let mut history = history(ops, vec![w1, w2, w3], &[("k", 3, "c"), ("m", 4, "q")]);
    history.watches.get_mut(&3).unwrap().push(WatchEventType::Bookmark, "", 4, None);
    let report = check(&history);
    let findings: Vec<_> = report.watches.iter().map(|f| (f.watcher, f.kind, f.rv)).collect();
    assert!(findings.contains(&(2, FindingKind::Mismatch, 4)), "{report}");
    assert!(findings.contains(&(3, FindingKind::Gap, 4)), "{report}");
}

#[test]
fn a_search_over_budget_is_undecided_not_a_violation() {
    let mut ops = vec![create(1, "k", "v0", (0, 1), 1)];
    // Many concurrent reads of the same value: trivially linearizable, but not in 3 steps.
    ops.extend((0..20).map(|c| get(c, "k", (10, 100), ok(1, "v0"))));
    let history = History { ops, ..History::default() };
    let report = Report::check(&history, &CheckOptions { step_budget: 3, include_final_state: false });
    assert_eq!(report.verdict(), Verdict::Unknown, "{report}");
    assert_eq!(report.linearizability.unchecked[0].key, "k");
    assert_eq!(check(&history).verdict(), Verdict::Valid);
}

#[test]
fn a_history_reloaded_from_disk_gives_the_same_report() {
    let tmp = tempfile::tempdir().unwrap();
    let history = good_history();
    history.save(tmp.path()).unwrap();
    let reloaded = History::load(tmp.path()).unwrap();
    assert_eq!(reloaded, history);
    assert_eq!(check(&reloaded), check(&history));
}

// ---- Randomized: a simulated linearizable store with concurrent clients. ----

/// A simulated run: the history, each update's overwritten value, and the change log.
struct Sim {
    history: History,
    /// For acknowledged updates: the value they replaced.
    replaced: BTreeMap<usize, String>,
}

/// A change the store made: rv, key, type, value (the last value for deletes).
type Change = (u64, String, WatchEventType, String);

fn snapshot(changes: &[Change], at: u64) -> BTreeMap<String, Versioned> {
    let mut state = BTreeMap::new();
    for (rv, key, t, value) in changes.iter().filter(|c| c.0 <= at) {
        if *t == Deleted {
            state.remove(key);
        } else {
            state.insert(key.clone(), Versioned { rv: *rv, value: value.clone() });
        }
    }
    state
}

fn simulate(seed: u64) -> Sim {
    simulate_n(seed, 240, 5, 0.06)
}

/// Clients invoke, take effect (atomically, at a random later step) and complete operations
/// in random interleavings; a share `lost` of them are lost (indeterminate) before or after
/// taking effect.
fn simulate_n(seed: u64, steps: usize, clients: usize, lost: f64) -> Sim {
    let mut rng = StdRng::seed_from_u64(seed);
    let keys = ["k0", "k1", "k2"];
    let deletion_rv = rng.gen_bool(0.5);
    let mut store: BTreeMap<String, Versioned> = BTreeMap::new();
    let mut changes: Vec<Change> = Vec::new();
    let mut ops: Vec<Op> = Vec::new();
    let mut replaced = BTreeMap::new();
    // Per client: the pending op's index, whether it took effect, whether its reply is lost.
    let mut pending: Vec<Option<(usize, bool, bool)>> = vec![None; clients];
    // Per client: the rv it last saw of each key.
    let mut seen: Vec<BTreeMap<String, u64>> = vec![BTreeMap::new(); clients];
    let (mut now, mut rv, mut n) = (0u64, 0u64, 0);
    for _ in 0..steps {
        now += rng.gen_range(1..4);
        let c = rng.gen_range(0..clients);
        match pending[c] {
            None => {
                let key = keys[rng.gen_range(0..keys.len())];
                // Like a real client, it expects the rv it last saw (now and then any rv).
                let last_seen = seen[c].get(key).copied();
                let guess = |rng: &mut StdRng| match last_seen {
                    Some(rv) if rng.gen_bool(0.9) => rv,
                    _ => rng.gen_range(1..=rv.max(1)),
                };
                n += 1;
                let kind = match rng.gen_range(0..10) {
                    0..=1 => OpKind::Create { value: format!("c{c}-{n}") },
                    2..=4 => {
                        let value = match store.get(key) {
                            Some(v) if rng.gen_bool(0.1) => v.value.clone(), // a no-op update
                            _ => format!("u{c}-{n}"),
                        };
                        OpKind::Update { value, expected_rv: guess(&mut rng) }
                    }
                    5 => OpKind::Delete { expected_rv: rng.gen_bool(0.5).then(|| guess(&mut rng)) },
                    _ => OpKind::Get,
                };
                ops.push(op(c as u32, key, kind, (now, None), Outcome::Indeterminate));
                pending[c] = Some((ops.len() - 1, false, rng.gen_bool(lost)));
            }
            Some((i, false, lost)) => {
                if lost && rng.gen_bool(0.5) {
                    // Lost before taking effect: it never will.
                    pending[c] = None;
                    continue;
                }
                let key = ops[i].key.clone();
                let current = store.get(&key).cloned();
                let outcome = match (&ops[i].kind, current) {
                    (OpKind::Get, Some(v)) => ok(v.rv, &v.value),
                    (OpKind::Update { .. } | OpKind::Delete { .. } | OpKind::Get, None) => fail(FailReason::NotFound),
                    (OpKind::Create { .. }, Some(_)) => fail(FailReason::AlreadyExists),
                    (OpKind::Create { value }, None) => {
                        rv += 1;
                        store.insert(key.clone(), Versioned { rv, value: value.clone() });
                        changes.push((rv, key, Added, value.clone()));
                        ok(rv, value)
                    }
                    (OpKind::Update { expected_rv, .. }, Some(v)) if *expected_rv != v.rv => fail(FailReason::Conflict),
                    (OpKind::Update { value, .. }, Some(v)) if *value == v.value => ok(v.rv, value),
                    (OpKind::Update { value, .. }, Some(v)) => {
                        rv += 1;
                        replaced.insert(i, v.value);
                        store.insert(key.clone(), Versioned { rv, value: value.clone() });
                        changes.push((rv, key, Modified, value.clone()));
                        ok(rv, value)
                    }
                    (OpKind::Delete { expected_rv: Some(e) }, Some(v)) if *e != v.rv => fail(FailReason::Conflict),
                    (OpKind::Delete { .. }, Some(v)) => {
                        rv += 1;
                        store.remove(&key);
                        changes.push((rv, key, Deleted, v.value.clone()));
                        let returned = if deletion_rv { rv } else { v.rv };
                        Outcome::Ok { rv: Some(returned), value: Some(v.value) }
                    }
                };
                // Now and then a refusal that did nothing (the store state was not touched).
                let refused = !ops[i].kind.is_write() && rng.gen_bool(0.03);
                ops[i].outcome = if refused { fail(FailReason::Other) } else { outcome };
                pending[c] = Some((i, true, lost));
            }
            Some((i, true, lost)) => {
                if lost {
                    ops[i].outcome = Outcome::Indeterminate;
                } else {
                    ops[i].completed_ns = Some(now);
                    match (&ops[i].kind, &ops[i].outcome) {
                        (OpKind::Delete { .. }, Outcome::Ok { .. }) => seen[c].remove(&ops[i].key),
                        (_, Outcome::Ok { rv: Some(rv), .. }) => seen[c].insert(ops[i].key.clone(), *rv),
                        _ => None,
                    };
                }
                pending[c] = None;
            }
        }
    }
    // Replies still in flight at the end are lost.
    for (i, ..) in pending.into_iter().flatten() {
        ops[i].outcome = Outcome::Indeterminate;
        ops[i].completed_ns = None;
    }
    // Watcher 1 from the start; watcher 2 from the middle, with a 410 and a relist later.
    let mut w1 = WatchLog::new(1, 0, Some(BTreeMap::new()));
    for (rv, key, t, value) in &changes {
        w1.push(*t, key, *rv, Some(value));
    }
    let from = rng.gen_range(0..=rv);
    let mut w2 = WatchLog::new(2, from, Some(snapshot(&changes, from)));
    let expire_at = rng.gen_range(from..=rv);
    let relist_at = rng.gen_range(expire_at..=rv);
    for (rv, key, t, value) in changes.iter().filter(|c| c.0 > from && c.0 <= expire_at) {
        w2.push(*t, key, *rv, Some(value));
    }
    w2.relist(relist_at, Some(snapshot(&changes, relist_at)));
    for (rv, key, t, value) in changes.iter().filter(|c| c.0 > relist_at) {
        w2.push(*t, key, *rv, Some(value));
    }
    let history = History { ops, watches: [(1, w1), (2, w2)].into(), final_state: Some(store) };
    Sim { history, replaced }
}

const SEEDS: u64 = 40;

#[test]
fn simulated_linearizable_histories_pass() {
    let (mut lost_writes, mut lost_then_seen, mut no_ops, mut conflicts, mut deletes) = (0, 0, 0, 0, 0);
    for seed in 0..SEEDS {
        let history = simulate(seed).history;
        let report = check(&history);
        assert_eq!(report.verdict(), Verdict::Valid, "seed {seed}:\n{report}");
        let watched: Vec<&str> =
            history.watches[&1].segments[0].events.iter().map(|e| e.value.as_deref().unwrap_or("")).collect();
        for op in &history.ops {
            let written = op.kind.written_value();
            lost_writes += usize::from(op.is_indeterminate() && op.kind.is_write());
            lost_then_seen += usize::from(op.is_indeterminate() && written.is_some_and(|v| watched.contains(&v)));
            no_ops += usize::from(matches!(op.kind, OpKind::Update { .. }) && op.is_ok() && op.written_rv().is_none());
            conflicts += usize::from(op.outcome == fail(FailReason::Conflict));
            deletes += usize::from(matches!(op.kind, OpKind::Delete { .. }) && op.is_ok());
        }
    }
    // The generator covers what the checkers must get right, not only the easy cases.
    for (what, n) in [("lost", lost_writes), ("lost, took effect", lost_then_seen), ("no-op", no_ops)] {
        assert!(n >= 5, "only {n} {what} writes");
    }
    assert!(conflicts >= 20 && deletes >= 20, "{conflicts} conflicts, {deletes} deletes");
}

#[test]
fn a_long_history_with_many_clients_is_decided() {
    let history = simulate_n(7, 3000, 12, 0.06).history;
    assert!(history.ops.len() > 900);
    let report = check(&history);
    assert_eq!(report.verdict(), Verdict::Valid, "{report}");
}

#[test]
fn a_long_history_with_hundreds_of_lost_writes_is_decided() {
    // As a 30-minute chaos run has per key: tens of thousands of operations, hundreds lost.
    let history = simulate_n(3, 60_000, 12, 0.05).history;
    let lost = history.ops.iter().filter(|op| op.is_indeterminate() && op.kind.is_write()).count();
    assert!(history.ops.len() > 20_000 && lost > 300, "{} operations, {lost} lost writes", history.ops.len());
    let report = check(&history);
    assert_eq!(report.verdict(), Verdict::Valid, "{report}");
}

#[test]
fn a_lost_write_never_read_back_may_still_explain_a_refusal() {
    // Nobody reads "x", yet only its create explains the AlreadyExists, and the delete that
    // expects an rv nobody acknowledged removes it again.
    let ops = vec![
        lost(1, "k", OpKind::Create { value: "x".into() }, 0),
        op(2, "k", OpKind::Create { value: "y".into() }, (5, Some(6)), fail(FailReason::AlreadyExists)),
        op(3, "k", OpKind::Delete { expected_rv: Some(7) }, (8, Some(9)), Outcome::Ok { rv: None, value: None }),
        get(2, "k", (10, 11), fail(FailReason::NotFound)),
    ];
    assert_valid(&history(ops, vec![], &[]));
}

#[test]
fn a_lost_compare_and_swap_takes_effect_only_while_its_rv_is_current() {
    let before = |read: Outcome| {
        vec![
            create(1, "k", "a", (0, 1), 1),
            lost(1, "k", OpKind::Update { value: "b".into(), expected_rv: 1 }, 2),
            get(2, "k", (3, 10), read),
        ]
    };
    // The get is the first to show an rv above 1: the lost update may precede it.
    let mut ops = before(ok(5, "b"));
    ops.push(update(2, "k", "c", 5, (11, 12), ok(6, "c")));
    assert_valid(&history(ops, vec![], &[("k", 6, "c")]));
    // Once rv 3 was shown, the update expecting rv 1 can no longer take effect.
    let mut ops = before(ok(1, "a"));
    ops.push(update(2, "k", "c", 1, (11, 12), ok(3, "c")));
    ops.push(get(2, "k", (13, 14), ok(5, "b")));
    let report = check(&history(ops, vec![], &[("k", 5, "b")]));
    assert_eq!(report.verdict(), Verdict::Invalid, "{report}");
}

/// Indices of the acknowledged gets.
fn ok_gets(history: &History) -> Vec<usize> {
    let ops = history.ops.iter().enumerate();
    ops.filter(|(_, op)| op.kind == OpKind::Get && op.is_ok()).map(|(i, _)| i).collect()
}

#[test]
fn a_read_of_a_value_never_written_is_caught() {
    for seed in 0..SEEDS {
        let mut history = simulate(seed).history;
        let gets = ok_gets(&history);
        let Some(&i) = gets.get(seed as usize % gets.len().max(1)) else { continue };
        if let Outcome::Ok { value, .. } = &mut history.ops[i].outcome {
            *value = Some("bogus".into());
        }
        let report = check(&history);
        assert_eq!(report.linearizability.violations.len(), 1, "seed {seed}:\n{report}");
    }
}

#[test]
fn a_stale_read_after_a_completed_update_is_caught_in_random_histories() {
    let mut mutated = 0;
    for seed in 0..SEEDS {
        let Sim { mut history, replaced } = simulate(seed);
        // A get invoked after an acknowledged update completed, made to return what that
        // update replaced: its rv is below the update's, so no order explains it.
        let ops = &history.ops;
        let target = ok_gets(&history).into_iter().find_map(|g| {
            let (i, _) = replaced.iter().find(|&(&u, _)| {
                ops[u].key == ops[g].key && ops[u].completed_ns.is_some_and(|c| c < ops[g].invoked_ns)
            })?;
            Some((g, *i))
        });
        let Some((g, u)) = target else { continue };
        let OpKind::Update { expected_rv, .. } = history.ops[u].kind else { unreachable!() };
        history.ops[g].outcome = ok(expected_rv, &replaced[&u]);
        let report = check(&history);
        assert_eq!(report.verdict(), Verdict::Invalid, "seed {seed}:\n{report}");
        assert_eq!(report.linearizability.violations.len(), 1, "seed {seed}:\n{report}");
        mutated += 1;
    }
    assert!(mutated > SEEDS / 2, "only {mutated} histories had a stale read to plant");
}

#[test]
fn a_final_state_missing_the_last_acknowledged_update_is_caught() {
    let mut mutated = 0;
    for seed in 0..SEEDS {
        let Sim { mut history, replaced } = simulate(seed);
        let final_state = history.final_state.as_mut().unwrap();
        // Roll a key back to before the acknowledged update that wrote its final object.
        let target = replaced.iter().find(|(&u, _)| {
            let op = &history.ops[u];
            final_state.get(&op.key).is_some_and(|v| Some(v.rv) == op.written_rv())
        });
        let Some((&u, old)) = target else { continue };
        let OpKind::Update { expected_rv, .. } = history.ops[u].kind else { unreachable!() };
        final_state.insert(history.ops[u].key.clone(), Versioned { rv: expected_rv, value: old.clone() });
        let report = check(&history);
        assert!(report.writes.iter().any(|f| matches!(f, WriteFinding::LostWrite { .. })), "seed {seed}:\n{report}");
        assert_eq!(report.linearizability.violations.len(), 1, "seed {seed}:\n{report}");
        mutated += 1;
    }
    assert!(mutated > SEEDS / 2, "only {mutated} histories had a final update to roll back");
}

/// A change to one watcher's events.
type EditEvents = Box<dyn Fn(&mut Vec<chaos::WatchEvent>)>;

#[test]
fn a_dropped_swapped_or_repeated_watch_event_is_caught_in_random_histories() {
    for seed in 0..SEEDS {
        let history = simulate(seed).history;
        let events = history.watches[&1].segments[0].events.clone();
        if events.len() < 3 {
            continue;
        }
        // An acknowledged change that is not the last event, so the watcher's window covers it.
        let acked = |rv: u64| history.ops.iter().any(|op| op.written_rv() == Some(rv));
        let Some(at) = (0..events.len() - 1).find(|&i| acked(events[i].rv)) else { continue };
        let mutations: [(FindingKind, EditEvents); 3] = [
            (
                FindingKind::Gap,
                Box::new(move |e| {
                    e.remove(at);
                }),
            ),
            (FindingKind::Reordered, Box::new(move |e| e.swap(at, at + 1))),
            (FindingKind::Duplicate, Box::new(move |e| e.insert(at, e[at].clone()))),
        ];
        for (kind, mutate) in mutations {
            let mut bad = history.clone();
            mutate(&mut bad.watches.get_mut(&1).unwrap().segments[0].events);
            let report = check(&bad);
            assert!(report.watch_findings(kind).next().is_some(), "seed {seed} {kind:?}:\n{report}");
            assert!(report.linearizability.violations.is_empty() && report.writes.is_empty(), "{report}");
        }
    }
}

#[test]
fn a_stale_read_in_a_long_history_with_lost_writes_is_reported() {
    let Sim { mut history, replaced } = simulate_n(3, 60_000, 12, 0.05);
    let ops = &history.ops;
    let (g, u) = ok_gets(&history)
        .into_iter()
        .rev()
        .find_map(|g| {
            let (u, _) = replaced.iter().find(|&(&u, _)| {
                ops[u].key == ops[g].key && ops[u].completed_ns.is_some_and(|c| c + 1000 < ops[g].invoked_ns)
            })?;
            Some((g, *u))
        })
        .unwrap();
    let OpKind::Update { expected_rv, .. } = history.ops[u].kind else { unreachable!() };
    history.ops[g].outcome = ok(expected_rv, &replaced[&u]);
    let report = check(&history);
    assert_eq!(report.verdict(), Verdict::Invalid, "{report}");
    // The search over every operation may not finish, but the reduced one names the read.
    let lin = &report.linearizability;
    let named = |text: &str| text.contains(&format!("#{g} "));
    assert!(lin.violations.iter().any(|v| named(&v.op)) || lin.unchecked.iter().any(|u| named(&u.why)), "{report}");
}

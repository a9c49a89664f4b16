//! Linearizability of each key's operations against [`crate::model`], by Lowe's variant of the
//! Wing–Gong search as Porcupine runs it.
//!
//! Keys are independent objects, so each key's sub-history is checked on its own
//! (P-compositionality), in parallel. The search walks call/return entries in time order,
//! tries to take each pending operation's effect next, and backtracks when an operation's
//! return is reached before it could take effect; a cache of (operations lifted, state) cuts
//! repeated subtrees. The final state, when known, is one last read that every determinate
//! operation precedes.
//!
//! Indeterminate writes may take effect once after their call, or never. Left pending to the
//! end, a few hundred of them make a long history undecidable, so the checker narrows them:
//! - One whose value an operation returned (and no other write wrote) took effect before that
//!   operation: it becomes required, by that operation's return.
//! - A compare-and-swap expecting rv E can no longer take effect once a determinate operation
//!   has shown the key at a higher rv (revisions only rise): it gets that deadline, and the
//!   search drops it when it reaches the deadline still pending.
//! - The key is first searched with only the indeterminate writes so bounded; the others most
//!   likely never took effect. Where that finds no order, the writes invoked last before the
//!   blocked operation are added back and it runs again. A linearization of such a subset is
//!   one of the whole history (the writes left out never took effect), so it decides VALID;
//!   anything else is left to the search over every operation.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::history::{FailReason, History, Op, OpKind, Outcome};
use crate::model::{self, Role, State};

/// How hard to look.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Search steps per key before giving up with [`Unchecked`].
    pub step_budget: u64,
    /// Whether the final state is a read that ends each key's history.
    pub include_final_state: bool,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions { step_budget: 2_000_000, include_final_state: true }
    }
}

/// A key whose operations admit no linearization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub key: String,
    /// The operation no order could fit, described (`final state` for the final read).
    pub op: String,
    /// Why it could not take effect after the longest order found.
    pub reason: String,
    /// The register's state after that order.
    pub state: String,
    /// The last operations of that order, oldest first.
    pub linearized: Vec<String>,
    /// Other operations still pending then (concurrent with `op`).
    pub pending: Vec<String>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "key {:?}: {} cannot take effect: {}", self.key, self.op, self.reason)?;
        writeln!(f, "    state then: {}", self.state)?;
        for op in &self.linearized {
            writeln!(f, "    after     {op}")?;
        }
        for op in &self.pending {
            writeln!(f, "    pending   {op}")?;
        }
        Ok(())
    }
}

/// A key the checker could not decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unchecked {
    pub key: String,
    pub why: String,
}

/// The outcome over all keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinearizabilityReport {
    pub keys: usize,
    pub violations: Vec<Violation>,
    pub unchecked: Vec<Unchecked>,
}

/// Checks every key of `history`.
pub fn check(history: &History, options: &CheckOptions) -> LinearizabilityReport {
    let mut by_key: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, op) in history.ops.iter().enumerate() {
        by_key.entry(&op.key).or_default().push(i);
    }
    if options.include_final_state {
        for key in history.final_state.iter().flat_map(|state| state.keys()) {
            by_key.entry(key).or_default();
        }
    }
    let keys: Vec<(&str, Vec<usize>)> = by_key.into_iter().collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(keys.len().max(1));
    let chunk = keys.len().div_ceil(threads).max(1);
    let results: Vec<KeyResult> = std::thread::scope(|scope| {
        let handles: Vec<_> = keys
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter().map(|(key, ops)| check_key(history, key, ops, options)).collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect::<Vec<_>>()
    });
    let mut report = LinearizabilityReport { keys: keys.len(), ..Default::default() };
    for result in results {
        match result {
            KeyResult::Linearizable => {}
            KeyResult::Violation(v) => report.violations.push(v),
            KeyResult::Unchecked(u) => report.unchecked.push(u),
        }
    }
    report
}

enum KeyResult {
    Linearizable,
    Violation(Violation),
    Unchecked(Unchecked),
}

/// One operation of the key's search, with its history index (`None`: the final read).
#[derive(Clone)]
struct Entry {
    index: Option<usize>,
    op: Op,
    required: bool,
    /// A required operation's return: when it must have taken effect by (its completion, or
    /// for an indeterminate write that something read back, that read's completion). An
    /// optional operation's: when it can no longer take effect.
    deadline: Option<u64>,
}

impl Entry {
    fn describe(&self) -> String {
        match self.index {
            Some(i) => self.op.describe(i),
            None => match &self.op.outcome {
                Outcome::Ok { rv: Some(rv), value: Some(v) } => format!("final state ({v:?} at rv {rv})"),
                _ => "final state (absent)".to_string(),
            },
        }
    }
}

const NIL: usize = usize::MAX;
const HEAD: usize = 0;

/// A call or return in the doubly linked list the search lifts operations out of.
#[derive(Clone, Copy)]
struct Node {
    op: usize,
    is_call: bool,
    prev: usize,
    next: usize,
}

struct List {
    nodes: Vec<Node>,
    /// Per operation: its call node and its return node.
    ends: Vec<(usize, usize)>,
}

impl List {
    /// Orders calls and returns by time; at equal times calls first, so touching operations
    /// count as concurrent (never a false violation). An optional operation's return is its
    /// deadline, after the returns at that time, or last of all without one.
    fn new(entries: &[Entry], final_call: u64) -> Self {
        let mut events = Vec::with_capacity(entries.len() * 2);
        for (i, e) in entries.iter().enumerate() {
            let (call, ret) = match (e.index, e.required) {
                (None, _) => ((final_call, 0), (u64::MAX, 1)),
                (Some(_), true) => ((e.op.invoked_ns, 0), (e.deadline.unwrap_or(u64::MAX), 1)),
                (Some(_), false) => ((e.op.invoked_ns, 0), (e.deadline.unwrap_or(u64::MAX), 2)),
            };
            events.push((call, i, true));
            events.push((ret, i, false));
        }
        events.sort();
        let mut nodes = vec![Node { op: NIL, is_call: false, prev: NIL, next: NIL }];
        let mut ends = vec![(NIL, NIL); entries.len()];
        for (_, op, is_call) in events {
            let at = nodes.len();
            let last = at - 1;
            nodes[last].next = at;
            nodes.push(Node { op, is_call, prev: last, next: NIL });
            if is_call {
                ends[op].0 = at;
            } else {
                ends[op].1 = at;
            }
        }
        List { nodes, ends }
    }

    fn unlink(&mut self, n: usize) {
        let Node { prev, next, .. } = self.nodes[n];
        self.nodes[prev].next = next;
        if next != NIL {
            self.nodes[next].prev = prev;
        }
    }

    fn relink(&mut self, n: usize) {
        let Node { prev, next, .. } = self.nodes[n];
        self.nodes[prev].next = n;
        if next != NIL {
            self.nodes[next].prev = n;
        }
    }

    fn lift(&mut self, op: usize) {
        let (call, ret) = self.ends[op];
        self.unlink(call);
        self.unlink(ret);
    }

    /// Undoes [`List::lift`]; lifts are undone in reverse order.
    fn unlift(&mut self, op: usize) {
        let (call, ret) = self.ends[op];
        self.relink(ret);
        self.relink(call);
    }
}

/// The deepest point the search reached, for the explanation.
struct Deepest {
    depth: usize,
    order: Vec<usize>,
    state: State,
    blocked: usize,
    pending: Vec<usize>,
}

fn check_key(history: &History, key: &str, indices: &[usize], options: &CheckOptions) -> KeyResult {
    let mut entries = Vec::new();
    let mut malformed = Vec::new();
    for &i in indices {
        let op = &history.ops[i];
        let required = match model::role(op) {
            Ok(Role::Required) => true,
            Ok(Role::Optional) => false,
            Ok(Role::Ignored) => continue,
            Err(why) => {
                malformed.push(format!("{}: {why}", op.describe(i)));
                continue;
            }
        };
        entries.push(Entry { index: Some(i), op: op.clone(), required, deadline: op.completed_ns });
    }
    if !malformed.is_empty() {
        return KeyResult::Unchecked(Unchecked { key: key.to_string(), why: malformed.join("; ") });
    }
    let final_call = entries.iter().map(|e| e.op.completed_ns.unwrap_or(0).max(e.op.invoked_ns)).max().unwrap_or(0);
    if let Some(state) = history.final_state.as_ref().filter(|_| options.include_final_state) {
        let outcome = match state.get(key) {
            Some(v) => Outcome::Ok { rv: Some(v.rv), value: Some(v.value.clone()) },
            None => Outcome::Fail { reason: FailReason::NotFound },
        };
        let op = Op {
            client: u32::MAX,
            key: key.to_string(),
            kind: OpKind::Get,
            invoked_ns: final_call.saturating_add(1),
            completed_ns: Some(u64::MAX),
            outcome,
        };
        entries.push(Entry { index: None, op, required: true, deadline: Some(u64::MAX) });
    }
    bound_indeterminate_writes(&mut entries);

    let observed: HashSet<&str> = entries
        .iter()
        .filter_map(|e| match &e.op.outcome {
            Outcome::Ok { value: Some(v), .. } => Some(v.as_str()),
            _ => None,
        })
        .collect();
    let mut included: Vec<bool> = entries
        .iter()
        .map(|e| e.required || e.deadline.is_some() || e.op.kind.written_value().is_some_and(|v| observed.contains(v)))
        .collect();
    let final_call = final_call.saturating_add(1);
    match reduced_search(key, &entries, &mut included, final_call, options) {
        Some(Found::Linearizable) => KeyResult::Linearizable,
        reduced => match (search(key, &entries, final_call, options.step_budget), reduced) {
            (Found::Undecided(mut u), Some(Found::Violation { violation, .. })) => {
                u.why = format!("{}; the search without some indeterminate writes ended at: {violation}", u.why);
                KeyResult::Unchecked(u)
            }
            (found, _) => found.into(),
        },
    }
}

/// How many times [`reduced_search`] adds writes back before it leaves it to the full search.
const REDUCED_ROUNDS: usize = 2_000;

/// Searches the key with only the `included` indeterminate writes. Where that finds no
/// order, the indeterminate writes invoked last before the blocked operation's return are
/// added back (one, then twice as many while the same operation stays blocked) and the search
/// runs again. `None`: every write was included (the full search is all that is left).
fn reduced_search(
    key: &str,
    entries: &[Entry],
    included: &mut [bool],
    final_call: u64,
    options: &CheckOptions,
) -> Option<Found> {
    let (mut last_blocked, mut grow) = (None, 1);
    let mut found = None;
    for _ in 0..REDUCED_ROUNDS {
        if included.iter().all(|&i| i) {
            return found;
        }
        let subset: Vec<usize> = (0..entries.len()).filter(|&i| included[i]).collect();
        let reduced: Vec<Entry> = subset.iter().map(|&i| entries[i].clone()).collect();
        let result = search(key, &reduced, final_call, options.step_budget);
        let blocked = match &result {
            Found::Violation { blocked: Some(b), .. } => subset[*b],
            // Over budget: the last violation found says more than that.
            Found::Undecided(_) if found.is_some() => return found,
            _ => return Some(result),
        };
        grow = if last_blocked == Some(blocked) { grow * 2 } else { 1 };
        last_blocked = Some(blocked);
        let until = entries[blocked].op.completed_ns.unwrap_or(u64::MAX);
        let mut candidates: Vec<usize> =
            (0..entries.len()).filter(|&i| !included[i] && entries[i].op.invoked_ns <= until).collect();
        if candidates.is_empty() {
            return Some(result);
        }
        candidates.sort_by_key(|&i| std::cmp::Reverse(entries[i].op.invoked_ns));
        for &i in candidates.iter().take(grow) {
            included[i] = true;
        }
        found = Some(result);
    }
    found
}

/// Narrows the window of indeterminate writes where the rest of the history allows:
/// - one whose value no other write wrote, and that an operation returned, took effect
///   before that operation: it becomes required, by the earliest such operation's return;
/// - a compare-and-swap expecting rv E can no longer take effect once a required operation
///   showed the key at an rv above E: that operation's return is its deadline.
fn bound_indeterminate_writes(entries: &mut [Entry]) {
    let mut writers: HashMap<&str, usize> = HashMap::new();
    let mut read_by: HashMap<&str, u64> = HashMap::new();
    // (rv shown, completion) of the required operations.
    let mut shown: Vec<(u64, u64)> = Vec::new();
    for e in entries.iter() {
        if let Some(v) = e.op.kind.written_value() {
            *writers.entry(v).or_default() += 1;
        }
        if let (true, Outcome::Ok { rv, value }, Some(done)) = (e.required, &e.op.outcome, e.deadline) {
            if let Some(v) = value {
                let first = read_by.entry(v).or_insert(done);
                *first = (*first).min(done);
            }
            if let Some(rv) = rv {
                shown.push((*rv, done));
            }
        }
    }
    let read_back: Vec<Option<u64>> = entries
        .iter()
        .map(|e| match e.op.kind.written_value() {
            Some(v) if !e.required && writers.get(v) == Some(&1) => read_by.get(v).copied(),
            _ => None,
        })
        .collect();
    // By rv, with the earliest completion among all rvs from there up.
    shown.sort_unstable();
    let mut earliest_from = vec![u64::MAX; shown.len() + 1];
    for i in (0..shown.len()).rev() {
        earliest_from[i] = earliest_from[i + 1].min(shown[i].1);
    }
    for (e, read_back) in entries.iter_mut().zip(read_back) {
        if e.required {
            continue;
        }
        if let Some(by) = read_back {
            e.required = true;
            e.deadline = Some(by);
            continue;
        }
        let expected = match e.op.kind {
            OpKind::Update { expected_rv, .. } | OpKind::Delete { expected_rv: Some(expected_rv) } => expected_rv,
            _ => continue,
        };
        let above = shown.partition_point(|&(rv, _)| rv <= expected);
        e.deadline = Some(earliest_from[above]).filter(|&t| t != u64::MAX);
    }
}

/// A 128-bit random tag per operation; the XOR of the lifted operations' tags identifies the
/// set in the cache. A collision can only prune an unexplored branch, so it could at worst
/// report a violation that is not one, never pass a history that has one.
fn tag(op: usize) -> u128 {
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let seed = (op as u64).wrapping_mul(2).wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (u128::from(mix(seed)) << 64) | u128::from(mix(seed.wrapping_add(0x9e37_79b9_7f4a_7c15)))
}

/// An operation taken (its effect applied) or dropped (an optional one past its deadline).
struct Frame {
    op: usize,
    before: State,
    dropped: bool,
}

/// What one search found.
enum Found {
    Linearizable,
    /// `blocked`: the entry whose return the longest order could not get past.
    Violation {
        violation: Violation,
        blocked: Option<usize>,
    },
    Undecided(Unchecked),
}

impl From<Found> for KeyResult {
    fn from(found: Found) -> Self {
        match found {
            Found::Linearizable => KeyResult::Linearizable,
            Found::Violation { violation, .. } => KeyResult::Violation(violation),
            Found::Undecided(u) => KeyResult::Unchecked(u),
        }
    }
}

fn search(key: &str, entries: &[Entry], final_call: u64, budget: u64) -> Found {
    let mut list = List::new(entries, final_call);
    let tags: Vec<u128> = (0..entries.len()).map(tag).collect();
    let required = entries.iter().filter(|e| e.required).count();
    let mut remaining = required;
    let mut lifted: u128 = 0;
    let mut cache: HashSet<(u128, State)> = HashSet::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut state = State::default();
    let mut deepest: Option<Deepest> = None;
    let mut entry = list.nodes[HEAD].next;
    let mut steps = 0u64;
    while remaining > 0 {
        steps += 1;
        if steps > budget {
            let why = format!("undecided after {budget} search steps ({} operations)", entries.len());
            return Found::Undecided(Unchecked { key: key.to_string(), why });
        }
        // The list still holds a required return, so the walk meets one before its end.
        let node = list.nodes[entry];
        let op = node.op;
        let next = if node.is_call {
            model::step(&state, &entries[op].op).ok()
        } else if !entries[op].required {
            // Past its deadline: this optional operation never took effect.
            Some(state.clone())
        } else {
            None
        };
        if let Some(next) = next {
            if cache.insert((lifted ^ tags[op], next.clone())) {
                lifted ^= tags[op];
                let before = std::mem::replace(&mut state, next);
                stack.push(Frame { op, before, dropped: !node.is_call });
                list.lift(op);
                remaining -= usize::from(entries[op].required);
                entry = list.nodes[HEAD].next;
                continue;
            }
        }
        if node.is_call {
            entry = node.next;
            continue;
        }
        if entries[op].required {
            let depth = required - remaining;
            if deepest.as_ref().is_none_or(|d| depth > d.depth) {
                let mut pending = Vec::new();
                let mut n = list.nodes[HEAD].next;
                while n != entry {
                    if list.nodes[n].is_call {
                        pending.push(list.nodes[n].op);
                    }
                    n = list.nodes[n].next;
                }
                let order = stack.iter().filter(|f| !f.dropped).map(|f| f.op).collect();
                deepest = Some(Deepest { depth, order, state: state.clone(), blocked: op, pending });
            }
        }
        // Backtrack to the last operation taken and try the calls after it; a drop had no
        // alternative, so undo past it.
        loop {
            let Some(frame) = stack.pop() else {
                let blocked = deepest.as_ref().map(|d| d.blocked);
                return Found::Violation { violation: explain(key, entries, deepest), blocked };
            };
            state = frame.before;
            lifted ^= tags[frame.op];
            list.unlift(frame.op);
            remaining += usize::from(entries[frame.op].required);
            if !frame.dropped {
                entry = list.nodes[list.ends[frame.op].0].next;
                break;
            }
        }
    }
    Found::Linearizable
}

/// How many operations of the longest order a violation shows.
const SHOWN: usize = 6;

fn explain(key: &str, entries: &[Entry], deepest: Option<Deepest>) -> Violation {
    let Some(d) = deepest else {
        return Violation {
            key: key.to_string(),
            op: "?".into(),
            reason: "no operation can take effect first".into(),
            state: State::default().to_string(),
            linearized: Vec::new(),
            pending: Vec::new(),
        };
    };
    let blocked = &entries[d.blocked];
    let reason = match model::step(&d.state, &blocked.op) {
        Err(why) => why,
        Ok(_) => "every order of it and the pending operations fails later".into(),
    };
    let skip = d.order.len().saturating_sub(SHOWN);
    Violation {
        key: key.to_string(),
        op: blocked.describe(),
        reason,
        state: d.state.to_string(),
        linearized: d.order[skip..].iter().map(|&i| entries[i].describe()).collect(),
        pending: d.pending.iter().filter(|&&i| i != d.blocked).map(|&i| entries[i].describe()).collect(),
    }
}

//! Linearizability of each key's operations against [`crate::model`], by Lowe's variant of the
//! Wing–Gong search as Porcupine runs it.
//!
//! Keys are independent objects, so each key's sub-history is checked on its own
//! (P-compositionality), in parallel. The search walks call/return entries in time order,
//! tries to take each pending operation's effect next, and backtracks when an operation's
//! return is reached before it could take effect; a cache of (operations taken, state) cuts
//! repeated subtrees. Indeterminate writes return at infinity and may never take effect. The
//! final state, when known, is one last read that every determinate operation precedes.

use std::collections::{BTreeMap, HashSet};

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
struct Entry {
    index: Option<usize>,
    op: Op,
    required: bool,
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
    /// count as concurrent (never a false violation). Optional returns come last of all.
    fn new(entries: &[Entry], final_call: u64) -> Self {
        let mut events = Vec::with_capacity(entries.len() * 2);
        for (i, e) in entries.iter().enumerate() {
            let (call, ret) = match (e.index, e.required) {
                (None, _) => ((final_call, 0), (u64::MAX, 1)),
                (Some(_), true) => ((e.op.invoked_ns, 0), (e.op.completed_ns.unwrap_or(u64::MAX), 1)),
                (Some(_), false) => ((e.op.invoked_ns, 0), (u64::MAX, 2)),
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
        match model::role(op) {
            Ok(Role::Required) => entries.push(Entry { index: Some(i), op: op.clone(), required: true }),
            Ok(Role::Optional) => entries.push(Entry { index: Some(i), op: op.clone(), required: false }),
            Ok(Role::Ignored) => {}
            Err(why) => malformed.push(format!("{}: {why}", op.describe(i))),
        }
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
        entries.push(Entry { index: None, op, required: true });
    }
    search(key, &entries, final_call.saturating_add(1), options.step_budget)
}

fn search(key: &str, entries: &[Entry], final_call: u64, budget: u64) -> KeyResult {
    let mut list = List::new(entries, final_call);
    let required = entries.iter().filter(|e| e.required).count();
    let mut remaining = required;
    let mut taken = vec![0u64; entries.len().div_ceil(64)];
    let mut cache: HashSet<(Vec<u64>, State)> = HashSet::new();
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut state = State::default();
    let mut deepest: Option<Deepest> = None;
    let mut entry = list.nodes[HEAD].next;
    let mut steps = 0u64;
    while remaining > 0 {
        steps += 1;
        if steps > budget {
            let why = format!("undecided after {budget} search steps ({} operations)", entries.len());
            return KeyResult::Unchecked(Unchecked { key: key.to_string(), why });
        }
        // The list still holds a required return, so the walk meets one before its end.
        let node = list.nodes[entry];
        let op = node.op;
        if node.is_call {
            if let Ok(next) = model::step(&state, &entries[op].op) {
                taken[op / 64] |= 1 << (op % 64);
                if cache.insert((taken.clone(), next.clone())) {
                    stack.push((op, std::mem::replace(&mut state, next)));
                    list.lift(op);
                    remaining -= usize::from(entries[op].required);
                    entry = list.nodes[HEAD].next;
                    continue;
                }
                taken[op / 64] &= !(1 << (op % 64));
            }
            entry = node.next;
        } else {
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
                let order = stack.iter().map(|(op, _)| *op).collect();
                deepest = Some(Deepest { depth, order, state: state.clone(), blocked: op, pending });
            }
            let Some((undone, before)) = stack.pop() else {
                return KeyResult::Violation(explain(key, entries, deepest));
            };
            state = before;
            taken[undone / 64] &= !(1 << (undone % 64));
            list.unlift(undone);
            remaining += usize::from(entries[undone].required);
            entry = list.nodes[list.ends[undone].0].next;
        }
    }
    KeyResult::Linearizable
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

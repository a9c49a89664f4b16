//! Two direct checks on writes, cheaper and plainer to read than a linearizability violation:
//! no acknowledged write is lost from the final state, and resourceVersions only rise in real
//! time (per object, and globally for writes, since the rv is the store revision).

use std::collections::{BTreeMap, HashMap};

use crate::history::{History, Op, OpKind, Outcome, Rv};
use crate::model::{self, Role};

/// Something wrong with the writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteFinding {
    /// An acknowledged write is not in the final state, and nothing later replaced it.
    LostWrite { key: String, op: String, detail: String },
    /// The final state holds an object no write could have produced.
    UnexplainedFinal { key: String, rv: Rv, value: String, detail: String },
    /// An operation that began after another had ended saw an older resourceVersion (or the
    /// same one for a write). `key` is `None` for the global order of writes.
    RevisionWentBackwards { key: Option<String>, earlier: String, later: String },
    /// Two acknowledged changes got the same resourceVersion.
    DuplicateRevision { rv: Rv, first: String, second: String },
}

impl std::fmt::Display for WriteFinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteFinding::LostWrite { key, op, detail } => write!(f, "lost write on {key:?}: {op}: {detail}"),
            WriteFinding::UnexplainedFinal { key, rv, value, detail } => {
                write!(f, "final state of {key:?} ({value:?} at rv {rv}) unexplained: {detail}")
            }
            WriteFinding::RevisionWentBackwards { key, earlier, later } => {
                let scope = key.as_ref().map_or("globally".to_string(), |k| format!("on {k:?}"));
                write!(f, "resourceVersion went backwards {scope}: {later} began after {earlier} ended")
            }
            WriteFinding::DuplicateRevision { rv, first, second } => {
                write!(f, "rv {rv} given to two changes: {first} and {second}")
            }
        }
    }
}

/// Runs both checks.
pub fn check(history: &History) -> Vec<WriteFinding> {
    let usable: Vec<(usize, &Op)> =
        history.ops.iter().enumerate().filter(|(_, op)| model::role(op) == Ok(Role::Required)).collect();
    let mut findings = Vec::new();
    if let Some(final_state) = &history.final_state {
        findings.extend(lost_writes(history, final_state));
    }
    findings.extend(revision_order(&usable));
    findings
}

/// A write's kind as the order check needs it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// A create or a real update: its rv is new, above everything before it.
    Wrote,
    /// A get or a no-op update: the rv is the object's, at least anything before it.
    Read,
    /// A delete: the returned rv is at most the deletion revision, so anything after is above it.
    Deleted,
}

fn seen(op: &Op) -> Option<(Rv, Seen)> {
    let Outcome::Ok { rv: Some(rv), .. } = op.outcome else { return None };
    let how = match op.kind {
        OpKind::Delete { .. } => Seen::Deleted,
        _ if op.written_rv().is_some() => Seen::Wrote,
        _ => Seen::Read,
    };
    Some((rv, how))
}

/// Sweeps operations by invocation, holding the highest rv of those already completed.
fn revision_order(ops: &[(usize, &Op)]) -> Vec<WriteFinding> {
    let mut findings = Vec::new();
    let mut by_key: BTreeMap<&str, Vec<(usize, &Op)>> = BTreeMap::new();
    for &(i, op) in ops {
        if seen(op).is_some() {
            by_key.entry(&op.key).or_default().push((i, op));
        }
    }
    for (key, ops) in by_key {
        findings.extend(sweep(&ops, Some(key)));
    }
    let writes: Vec<(usize, &Op)> = ops.iter().copied().filter(|(_, op)| op.written_rv().is_some()).collect();
    findings.extend(sweep(&writes, None));
    let mut first_at: HashMap<Rv, usize> = HashMap::new();
    for &(i, op) in &writes {
        if let Some(rv) = op.written_rv() {
            if let Some(&j) = first_at.get(&rv) {
                let (first, second) = (ops_describe(ops, j), op.describe(i));
                findings.push(WriteFinding::DuplicateRevision { rv, first, second });
            } else {
                first_at.insert(rv, i);
            }
        }
    }
    findings
}

fn ops_describe(ops: &[(usize, &Op)], index: usize) -> String {
    ops.iter().find(|(i, _)| *i == index).map_or(format!("#{index}"), |(i, op)| op.describe(*i))
}

fn sweep(ops: &[(usize, &Op)], key: Option<&str>) -> Vec<WriteFinding> {
    let mut by_invoke: Vec<&(usize, &Op)> = ops.iter().collect();
    by_invoke.sort_by_key(|(_, op)| op.invoked_ns);
    let mut by_complete: Vec<&(usize, &Op)> = ops.iter().collect();
    by_complete.sort_by_key(|(_, op)| op.completed_ns);
    let mut done = by_complete.into_iter().peekable();
    // The highest rv among completed operations, and among completed deletes.
    let mut max_any: Option<(Rv, usize, &Op)> = None;
    let mut max_deleted: Option<(Rv, usize, &Op)> = None;
    let mut findings = Vec::new();
    for &&(i, op) in &by_invoke {
        while let Some(&&(j, earlier)) = done.peek() {
            if earlier.completed_ns.is_none_or(|c| c >= op.invoked_ns) {
                break;
            }
            done.next();
            let Some((rv, how)) = seen(earlier) else { continue };
            if max_any.is_none_or(|(m, _, _)| rv > m) {
                max_any = Some((rv, j, earlier));
            }
            if how == Seen::Deleted && max_deleted.is_none_or(|(m, _, _)| rv > m) {
                max_deleted = Some((rv, j, earlier));
            }
        }
        let Some((rv, how)) = seen(op) else { continue };
        let strict_any = if key.is_some() { how == Seen::Wrote } else { true };
        let broken = match (max_any, max_deleted) {
            (Some((m, ..)), _) if rv < m || (strict_any && rv == m) => max_any,
            (_, Some((d, ..))) if key.is_some() && rv <= d => max_deleted,
            _ => None,
        };
        if let Some((_, j, earlier)) = broken {
            findings.push(WriteFinding::RevisionWentBackwards {
                key: key.map(str::to_string),
                earlier: earlier.describe(j),
                later: op.describe(i),
            });
        }
    }
    findings
}

/// Every key's final object must be the last acknowledged write's, or a later one's.
fn lost_writes(history: &History, final_state: &BTreeMap<String, crate::history::Versioned>) -> Vec<WriteFinding> {
    let mut by_key: BTreeMap<&str, Vec<(usize, &Op)>> = BTreeMap::new();
    for (i, op) in history.ops.iter().enumerate() {
        if op.kind.is_write() && model::role(op).is_ok_and(|r| r != Role::Ignored) {
            by_key.entry(&op.key).or_default().push((i, op));
        }
    }
    let writer_of: HashMap<Rv, (usize, &Op)> =
        history.ops.iter().enumerate().filter_map(|(i, op)| op.written_rv().map(|rv| (rv, (i, op)))).collect();
    let mut findings = Vec::new();
    for (key, ops) in &by_key {
        let last_put = ops.iter().filter_map(|&(i, op)| op.written_rv().map(|rv| (rv, i, op))).max_by_key(|w| w.0);
        let key = key.to_string();
        match final_state.get(&key) {
            Some(object) => {
                if let Some((rv, i, op)) = last_put.filter(|(rv, ..)| *rv > object.rv) {
                    let detail = format!("the final state holds the older rv {}, not {rv}", object.rv);
                    findings.push(WriteFinding::LostWrite { key: key.clone(), op: op.describe(i), detail });
                }
                for &(i, op) in ops {
                    let deleted_at = match (&op.kind, &op.outcome) {
                        (OpKind::Delete { .. }, Outcome::Ok { rv: Some(rv), .. }) => *rv,
                        _ => continue,
                    };
                    if deleted_at >= object.rv {
                        let detail = format!("the deleted object is still there at rv {}", object.rv);
                        findings.push(WriteFinding::LostWrite { key: key.clone(), op: op.describe(i), detail });
                    }
                }
                if let Some(finding) = unexplained(&key, object, ops, &writer_of) {
                    findings.push(finding);
                }
            }
            None => {
                let Some((rv, i, op)) = last_put else { continue };
                let may_delete = |d: &Op| match (&d.kind, &d.outcome) {
                    (OpKind::Delete { .. }, Outcome::Ok { rv: deleted, .. }) => deleted.is_none_or(|d| d >= rv),
                    (OpKind::Delete { expected_rv }, Outcome::Indeterminate) => expected_rv.is_none_or(|e| e >= rv),
                    _ => false,
                };
                if !ops.iter().any(|(_, d)| may_delete(d)) {
                    let detail = "the object is absent and no delete could have removed it".to_string();
                    findings.push(WriteFinding::LostWrite { key, op: op.describe(i), detail });
                }
            }
        }
    }
    for (key, object) in final_state {
        if !by_key.contains_key(key.as_str()) {
            if let Some(finding) = unexplained(key, object, &[], &writer_of) {
                findings.push(finding);
            }
        }
    }
    findings
}

/// The final object must come from an acknowledged write at its rv, or an indeterminate one.
fn unexplained(
    key: &str,
    object: &crate::history::Versioned,
    ops: &[(usize, &Op)],
    writer_of: &HashMap<Rv, (usize, &Op)>,
) -> Option<WriteFinding> {
    let detail = match writer_of.get(&object.rv) {
        Some((_, op)) if op.key == key && op.kind.written_value() == Some(object.value.as_str()) => return None,
        Some((i, op)) => format!("rv {} was written by {}", object.rv, op.describe(*i)),
        None => {
            let lost = ops
                .iter()
                .any(|(_, op)| op.is_indeterminate() && op.kind.written_value() == Some(object.value.as_str()));
            if lost {
                return None;
            }
            "no write of this value on this key was acknowledged or indeterminate".to_string()
        }
    };
    Some(WriteFinding::UnexplainedFinal { key: key.to_string(), rv: object.rv, value: object.value.clone(), detail })
}

//! Runs every checker over a [`History`] and sums up: counts of what clients did, then each
//! checker's findings, then a verdict.

use std::collections::BTreeMap;
use std::fmt;

use crate::history::{FailReason, History, Outcome, WatchEventType};
use crate::linearizability::{self, CheckOptions, LinearizabilityReport};
use crate::watch_check::{self, Coverage, FindingKind, WatchFinding};
use crate::writes_check::{self, WriteFinding};

/// Outcomes of one kind of operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindCounts {
    pub ok: usize,
    pub not_found: usize,
    pub already_exists: usize,
    pub conflict: usize,
    pub other: usize,
    pub indeterminate: usize,
}

impl KindCounts {
    pub fn failed(&self) -> usize {
        self.not_found + self.already_exists + self.conflict + self.other
    }

    pub fn total(&self) -> usize {
        self.ok + self.failed() + self.indeterminate
    }
}

/// What the run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// By kind name (`create`, `update`, `delete`, `get`).
    pub ops: BTreeMap<&'static str, KindCounts>,
    pub keys: usize,
    pub watchers: Vec<Coverage>,
    /// 410s the watchers recovered from by relisting.
    pub relists: usize,
    /// Objects in the final state; `None` if it was not read.
    pub final_objects: Option<usize>,
}

impl Summary {
    fn of(history: &History) -> Self {
        let mut ops: BTreeMap<&'static str, KindCounts> = BTreeMap::new();
        for op in &history.ops {
            let counts = ops.entry(op.kind.name()).or_default();
            match op.outcome {
                Outcome::Ok { .. } => counts.ok += 1,
                Outcome::Fail { reason: FailReason::NotFound } => counts.not_found += 1,
                Outcome::Fail { reason: FailReason::AlreadyExists } => counts.already_exists += 1,
                Outcome::Fail { reason: FailReason::Conflict } => counts.conflict += 1,
                Outcome::Fail { reason: FailReason::Other } => counts.other += 1,
                Outcome::Indeterminate => counts.indeterminate += 1,
            }
        }
        let mut keys: Vec<&str> = history.ops.iter().map(|op| op.key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        let relists = history
            .watches
            .values()
            .flat_map(|log| log.segments.iter().flat_map(|s| &s.events))
            .filter(|e| e.event_type == WatchEventType::Error410)
            .count();
        Summary {
            ops,
            keys: keys.len(),
            watchers: Vec::new(),
            relists,
            final_objects: history.final_state.as_ref().map(BTreeMap::len),
        }
    }
}

/// Whether the history holds up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every checker passed on every key.
    Valid,
    /// At least one checker found a violation.
    Invalid,
    /// No violation, but some keys were not decided (search budget, unusable records).
    Unknown,
}

/// Everything the checkers found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub summary: Summary,
    pub linearizability: LinearizabilityReport,
    pub writes: Vec<WriteFinding>,
    pub watches: Vec<WatchFinding>,
}

impl Report {
    /// Runs the linearizability, write and watch checkers over `history`.
    pub fn check(history: &History, options: &CheckOptions) -> Report {
        let mut summary = Summary::of(history);
        let watch = watch_check::check(history);
        summary.watchers = watch.coverage;
        Report {
            summary,
            linearizability: linearizability::check(history, options),
            writes: writes_check::check(history),
            watches: watch.findings,
        }
    }

    /// Loads the run directory `dir` (see [`History::load`]) and checks it.
    pub fn check_dir(dir: &std::path::Path, options: &CheckOptions) -> Result<Report, crate::HistoryError> {
        Ok(Report::check(&History::load(dir)?, options))
    }

    /// Findings of all checkers (undecided keys are not violations).
    pub fn violations(&self) -> usize {
        self.linearizability.violations.len() + self.writes.len() + self.watches.len()
    }

    pub fn verdict(&self) -> Verdict {
        if self.violations() > 0 {
            Verdict::Invalid
        } else if !self.linearizability.unchecked.is_empty() {
            Verdict::Unknown
        } else {
            Verdict::Valid
        }
    }

    /// The watch findings of one kind.
    pub fn watch_findings(&self, kind: FindingKind) -> impl Iterator<Item = &WatchFinding> {
        self.watches.iter().filter(move |f| f.kind == kind)
    }
}

/// How many findings of each checker the report prints.
const LISTED: usize = 20;

fn list<T: fmt::Display>(f: &mut fmt::Formatter<'_>, items: &[T]) -> fmt::Result {
    for item in items.iter().take(LISTED) {
        let text = item.to_string();
        writeln!(f, "  - {}", text.trim_end().replace('\n', "\n    "))?;
    }
    if items.len() > LISTED {
        writeln!(f, "  ... and {} more", items.len() - LISTED)?;
    }
    Ok(())
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total: usize = self.ops.values().map(KindCounts::total).sum();
        let final_objects = self.final_objects.map_or("not read".to_string(), |n| format!("{n} objects"));
        writeln!(f, "{total} operations on {} keys; final state: {final_objects}", self.keys)?;
        for (kind, c) in &self.ops {
            writeln!(
                f,
                "  {kind:<7} {:>7} ok {:>6} failed (not-found {}, already-exists {}, conflict {}, other {}) {:>6} indeterminate",
                c.ok,
                c.failed(),
                c.not_found,
                c.already_exists,
                c.conflict,
                c.other,
                c.indeterminate
            )?;
        }
        writeln!(f, "{} watchers; {} watches expired (410) and relisted", self.watchers.len(), self.relists)?;
        for w in &self.watchers {
            writeln!(
                f,
                "  watcher {}: {} events in {} segments, up to rv {}",
                w.watcher, w.events, w.segments, w.last_rv
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.summary)?;
        let lin = &self.linearizability;
        writeln!(
            f,
            "linearizability: {} keys, {} violations, {} undecided",
            lin.keys,
            lin.violations.len(),
            lin.unchecked.len()
        )?;
        list(f, &lin.violations)?;
        for u in lin.unchecked.iter().take(LISTED) {
            writeln!(f, "  ? key {:?}: {}", u.key, u.why)?;
        }
        writeln!(f, "writes (lost, rv order): {} findings", self.writes.len())?;
        list(f, &self.writes)?;
        let mut by_kind: BTreeMap<FindingKind, usize> = BTreeMap::new();
        for finding in &self.watches {
            *by_kind.entry(finding.kind).or_default() += 1;
        }
        writeln!(f, "watches: {} findings {by_kind:?}", self.watches.len())?;
        list(f, &self.watches)?;
        let verdict = match self.verdict() {
            Verdict::Valid => "VALID",
            Verdict::Invalid => "INVALID",
            Verdict::Unknown => "UNKNOWN (no violation found, some keys undecided)",
        };
        writeln!(f, "verdict: {verdict}")
    }
}

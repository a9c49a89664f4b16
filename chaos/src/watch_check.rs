//! Checks every watcher's stream: in rv order without repeats, complete (every known change
//! after its start, up to the last rv it saw), nothing no write produced, the same change at
//! each rv for every watcher, and, replayed over the list it started from, the final state.
//!
//! A change is known if it was acknowledged (a create or update with its rv) or if some
//! watcher saw it and a write could have produced it (deletes and indeterminate writes).

use std::collections::{BTreeMap, HashMap};

use crate::history::{History, Op, OpKind, Outcome, Rv, Versioned, WatchEvent, WatchEventType, WatchSegment};
use crate::model::{self, Role};

/// What kind of thing is wrong with a watch stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FindingKind {
    /// A known change inside the watcher's window never arrived.
    Gap,
    /// The same revision arrived twice.
    Duplicate,
    /// A revision arrived after a later one (or not after the watch's start).
    Reordered,
    /// An event no write could have produced.
    Phantom,
    /// An event at a known revision with the wrong key, type or value, or one that does not
    /// fit the watcher's own view (Added for an object it holds...).
    Mismatch,
    /// The watcher's view, replayed from its list, differs from the final state.
    Diverged,
    /// The log itself is inconsistent (events after a 410 without a relist).
    Malformed,
}

/// One problem in one watcher's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchFinding {
    pub watcher: u32,
    pub kind: FindingKind,
    pub key: String,
    pub rv: Rv,
    pub detail: String,
}

impl std::fmt::Display for WatchFinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "watcher {} {:?} at rv {} on {:?}: {}", self.watcher, self.kind, self.rv, self.key, self.detail)
    }
}

/// How far a watcher got, for the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    pub watcher: u32,
    pub segments: usize,
    pub events: usize,
    pub last_rv: Rv,
}

/// The findings over all watchers, and each one's coverage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchReport {
    pub findings: Vec<WatchFinding>,
    pub coverage: Vec<Coverage>,
}

/// A change at one revision, as a watch event shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Change {
    key: String,
    event_type: WatchEventType,
    value: Option<String>,
    /// Who established it, for messages.
    source: String,
}

impl Change {
    fn same_as(&self, e: &WatchEvent) -> bool {
        // A Deleted event's value is the object's last one, checked by the replay instead.
        self.key == e.key
            && self.event_type == e.event_type
            && (self.event_type == WatchEventType::Deleted || self.value == e.value)
    }
}

/// The writes a watch event or listed object may come from.
struct Writes<'h> {
    acked: HashMap<Rv, (usize, &'h Op)>,
    by_key: HashMap<&'h str, Vec<(usize, &'h Op)>>,
}

impl<'h> Writes<'h> {
    fn new(history: &'h History) -> Self {
        let mut acked = HashMap::new();
        let mut by_key: HashMap<&str, Vec<(usize, &Op)>> = HashMap::new();
        for (i, op) in history.ops.iter().enumerate() {
            if !op.kind.is_write() || !model::role(op).is_ok_and(|r| r != Role::Ignored) {
                continue;
            }
            if let Some(rv) = op.written_rv() {
                acked.insert(rv, (i, op));
            }
            by_key.entry(&op.key).or_default().push((i, op));
        }
        Writes { acked, by_key }
    }

    /// The change an acknowledged write made at `rv`.
    fn acked_change(&self, rv: Rv) -> Option<Change> {
        let &(i, op) = self.acked.get(&rv)?;
        let event_type = match op.kind {
            OpKind::Create { .. } => WatchEventType::Added,
            _ => WatchEventType::Modified,
        };
        let value = op.kind.written_value().map(str::to_string);
        Some(Change { key: op.key.clone(), event_type, value, source: op.describe(i) })
    }

    /// Why no write explains `(key, rv, value)` as an event of type `event_type` (`None`: an
    /// object in a list, which a create or an update may have written), if none does.
    fn unexplained(
        &self,
        event_type: Option<WatchEventType>,
        key: &str,
        rv: Rv,
        value: Option<&str>,
    ) -> Option<String> {
        use WatchEventType::{Added, Deleted, Modified};
        if let Some(change) = self.acked_change(rv) {
            let type_ok = event_type.is_none_or(|t| t == change.event_type);
            if change.key == key && type_ok && change.value.as_deref() == value {
                return None;
            }
            return Some(format!("rv {rv} is the revision of {}", change.source));
        }
        let fits = |op: &Op| match (&op.kind, &op.outcome, event_type) {
            (OpKind::Create { value: v }, Outcome::Indeterminate, None | Some(Added))
            | (OpKind::Update { value: v, .. }, Outcome::Indeterminate, None | Some(Modified)) => {
                Some(v.as_str()) == value
            }
            (OpKind::Delete { .. }, Outcome::Ok { rv: returned, .. }, Some(Deleted)) => {
                returned.is_none_or(|r| r <= rv)
            }
            (OpKind::Delete { .. }, Outcome::Indeterminate, Some(Deleted)) => true,
            _ => false,
        };
        let ops = self.by_key.get(key).map_or(&[][..], |ops| &ops[..]);
        if ops.iter().any(|(_, op)| fits(op)) {
            None
        } else {
            Some(format!("no acknowledged or indeterminate write on {key:?} could produce it"))
        }
    }
}

/// Checks all watchers of `history`.
pub fn check(history: &History) -> WatchReport {
    let writes = Writes::new(history);
    let mut report = WatchReport::default();
    let known = known_changes(history, &writes);
    for log in history.watches.values() {
        let mut events = 0;
        let mut last_rv = 0;
        for (n, segment) in log.segments.iter().enumerate() {
            let last_segment = n + 1 == log.segments.len();
            let final_state = history.final_state.as_ref().filter(|_| last_segment);
            let (seen, last) = check_segment(log.watcher, segment, &writes, &known, final_state, &mut report.findings);
            events += seen;
            last_rv = last;
        }
        report.coverage.push(Coverage { watcher: log.watcher, segments: log.segments.len(), events, last_rv });
    }
    report
}

/// Acknowledged changes, then what watchers saw that some write explains (the first watcher to
/// see a revision establishes it; [`check_event`] reports the others that disagree).
fn known_changes(history: &History, writes: &Writes) -> BTreeMap<Rv, Change> {
    let mut known: BTreeMap<Rv, Change> =
        writes.acked.keys().filter_map(|&rv| Some((rv, writes.acked_change(rv)?))).collect();
    for log in history.watches.values() {
        for event in log.segments.iter().flat_map(|s| &s.events) {
            if !is_change(event)
                || writes.unexplained(Some(event.event_type), &event.key, event.rv, event.value.as_deref()).is_some()
            {
                continue;
            }
            known.entry(event.rv).or_insert_with(|| Change {
                key: event.key.clone(),
                event_type: event.event_type,
                value: event.value.clone(),
                source: format!("watcher {}", event.watcher),
            });
        }
    }
    known
}

/// The known changes after `from`, up to `to` (none if `to <= from`).
fn between(known: &BTreeMap<Rv, Change>, from: Rv, to: Rv) -> impl Iterator<Item = (&Rv, &Change)> {
    let range = (from < to).then(|| known.range(from + 1..=to));
    range.into_iter().flatten()
}

fn is_change(event: &WatchEvent) -> bool {
    matches!(event.event_type, WatchEventType::Added | WatchEventType::Modified | WatchEventType::Deleted)
}

fn finding(event: &WatchEvent, kind: FindingKind, detail: String) -> WatchFinding {
    WatchFinding { watcher: event.watcher, kind, key: event.key.clone(), rv: event.rv, detail }
}

/// Checks one segment; returns how many change events it had and the last rv it reached.
fn check_segment(
    watcher: u32,
    segment: &WatchSegment,
    writes: &Writes,
    known: &BTreeMap<Rv, Change>,
    final_state: Option<&BTreeMap<String, Versioned>>,
    findings: &mut Vec<WatchFinding>,
) -> (usize, Rv) {
    let start = segment.start.rv;
    for (key, object) in segment.start.state.iter().flatten() {
        if let Some(why) = writes.unexplained(None, key, object.rv, Some(&object.value)) {
            let detail = format!("listed {:?} at start rv {start}: {why}", object.value);
            findings.push(WatchFinding {
                watcher,
                kind: FindingKind::Phantom,
                key: key.clone(),
                rv: object.rv,
                detail,
            });
        }
    }
    let mut view = segment.start.state.clone();
    let mut last = start;
    let mut seen: HashMap<Rv, &WatchEvent> = HashMap::new();
    let mut expired = false;
    for event in &segment.events {
        if expired {
            findings.push(finding(event, FindingKind::Malformed, "event after a 410 without a relist".into()));
            continue;
        }
        match event.event_type {
            WatchEventType::Error410 => expired = true,
            WatchEventType::Bookmark if event.rv < last => {
                findings.push(finding(event, FindingKind::Reordered, format!("bookmark after rv {last}")));
            }
            WatchEventType::Bookmark => last = event.rv,
            _ => {
                if let Some(first) = seen.get(&event.rv) {
                    let detail = format!("already received {:?} {:?} at this rv", first.event_type, first.key);
                    findings.push(finding(event, FindingKind::Duplicate, detail));
                    continue;
                }
                if event.rv <= start {
                    let detail = format!("not after the watch's start rv {start}");
                    findings.push(finding(event, FindingKind::Reordered, detail));
                } else if event.rv <= last {
                    findings.push(finding(event, FindingKind::Reordered, format!("arrived after rv {last}")));
                }
                seen.insert(event.rv, event);
                last = last.max(event.rv);
                check_event(event, writes, known, findings);
                if let Some(view) = view.as_mut() {
                    apply(view, event, findings);
                }
            }
        }
    }
    for (&rv, change) in between(known, start, last) {
        if !seen.contains_key(&rv) {
            let detail = format!("missing {:?} from {}", change.event_type, change.source);
            findings.push(WatchFinding { watcher, kind: FindingKind::Gap, key: change.key.clone(), rv, detail });
        }
    }
    if let (Some(view), Some(final_state)) = (&view, final_state) {
        diverged(watcher, view, last, final_state, known, findings);
    }
    (seen.len(), last)
}

/// An event at a known revision must be that change; any other must come from some write.
fn check_event(event: &WatchEvent, writes: &Writes, known: &BTreeMap<Rv, Change>, findings: &mut Vec<WatchFinding>) {
    if let Some(why) = writes.unexplained(Some(event.event_type), &event.key, event.rv, event.value.as_deref()) {
        let kind = if writes.acked_change(event.rv).is_some_and(|c| c.key == event.key) {
            FindingKind::Mismatch
        } else {
            FindingKind::Phantom
        };
        findings.push(finding(event, kind, why));
    } else if let Some(change) = known.get(&event.rv).filter(|c| !c.same_as(event)) {
        let detail = format!("{} has {:?} {:?} {:?} here", change.source, change.event_type, change.key, change.value);
        findings.push(finding(event, FindingKind::Mismatch, detail));
    }
}

/// Applies `event` to the watcher's view of the objects, reporting events that do not fit it.
fn apply(view: &mut BTreeMap<String, Versioned>, event: &WatchEvent, findings: &mut Vec<WatchFinding>) {
    let current = view.get(&event.key);
    let problem = match (event.event_type, current) {
        (WatchEventType::Added, Some(c)) => Some(format!("Added, but the watcher holds {:?} at rv {}", c.value, c.rv)),
        (WatchEventType::Modified | WatchEventType::Deleted, None) => {
            Some(format!("{:?}, but the watcher holds no such object", event.event_type))
        }
        (WatchEventType::Deleted, Some(c)) if event.value.as_ref().is_some_and(|v| *v != c.value) => {
            Some(format!("Deleted {:?}, but the watcher holds {:?}", event.value, c.value))
        }
        _ => None,
    };
    if let Some(detail) = problem {
        findings.push(finding(event, FindingKind::Mismatch, detail));
    }
    match (event.event_type, &event.value) {
        (WatchEventType::Deleted, _) => {
            view.remove(&event.key);
        }
        (_, Some(value)) => {
            view.insert(event.key.clone(), Versioned { rv: event.rv, value: value.clone() });
        }
        (_, None) => {}
    }
}

/// Keys whose final object the watcher should have reached (its rv is within the watcher's
/// window) must match its view, and keys a known delete within the window removed must be gone.
fn diverged(
    watcher: u32,
    view: &BTreeMap<String, Versioned>,
    last: Rv,
    final_state: &BTreeMap<String, Versioned>,
    known: &BTreeMap<Rv, Change>,
    findings: &mut Vec<WatchFinding>,
) {
    for (key, object) in final_state.iter().filter(|(_, o)| o.rv <= last) {
        if view.get(key) != Some(object) {
            let held = view.get(key).map_or("nothing".to_string(), |v| format!("{:?} at rv {}", v.value, v.rv));
            let detail = format!("final state is {:?} at rv {}, the watcher holds {held}", object.value, object.rv);
            findings.push(WatchFinding {
                watcher,
                kind: FindingKind::Diverged,
                key: key.clone(),
                rv: object.rv,
                detail,
            });
        }
    }
    for (key, held) in view.iter().filter(|(k, _)| !final_state.contains_key(*k)) {
        let deleted_in_window =
            between(known, held.rv, last).any(|(_, c)| c.key == *key && c.event_type == WatchEventType::Deleted);
        if deleted_in_window {
            let detail = format!("final state is absent, the watcher holds {:?} at rv {}", held.value, held.rv);
            findings.push(WatchFinding { watcher, kind: FindingKind::Diverged, key: key.clone(), rv: held.rv, detail });
        }
    }
}

//! What clients saw during a chaos run: operations on keys, watch streams, the final state.
//!
//! A run directory holds three files: `ops.jsonl` (one [`Op`] a line), `watch.jsonl` (one
//! [`WatchRecord`] a line: a watcher's start or relist, or an event it received) and
//! `final.json` (key -> [`Versioned`], read once the faults stopped). A resourceVersion is the
//! store revision: global, rising by one per committed change.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A resourceVersion: the store revision of a change.
pub type Rv = u64;

/// Errors reading or writing a history directory.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A line is not the JSON it should be.
    #[error("{path}:{line}: {source}")]
    Json { path: PathBuf, line: usize, source: serde_json::Error },
    /// The records are valid JSON but do not fit together (an event before its watcher started).
    #[error("{path}:{line}: {message}")]
    Format { path: PathBuf, line: usize, message: String },
}

pub type Result<T, E = HistoryError> = std::result::Result<T, E>;

/// What a client asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OpKind {
    /// POST: succeeds only if the object is absent.
    Create { value: String },
    /// PUT with `metadata.resourceVersion = expected_rv`: compare-and-swap.
    Update { value: String, expected_rv: Rv },
    /// DELETE, with `preconditions.resourceVersion` when `expected_rv` is set.
    Delete {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expected_rv: Option<Rv>,
    },
    /// A linearizable (quorum) GET.
    Get,
}

impl OpKind {
    /// The kind's name, for counts and messages.
    pub fn name(&self) -> &'static str {
        match self {
            OpKind::Create { .. } => "create",
            OpKind::Update { .. } => "update",
            OpKind::Delete { .. } => "delete",
            OpKind::Get => "get",
        }
    }

    /// Whether the operation changes the object when it succeeds.
    pub fn is_write(&self) -> bool {
        !matches!(self, OpKind::Get)
    }

    /// The value a create or update writes.
    pub fn written_value(&self) -> Option<&str> {
        match self {
            OpKind::Create { value } | OpKind::Update { value, .. } => Some(value),
            _ => None,
        }
    }
}

/// Why the server refused an operation (the Status `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FailReason {
    /// 404: the object is absent.
    NotFound,
    /// 409 AlreadyExists: a create found the object present.
    AlreadyExists,
    /// 409 Conflict: the resourceVersion precondition did not hold.
    Conflict,
    /// Any refusal that says the operation did not happen (400, 422, 429, 503 before
    /// proposing...). Use [`Outcome::Indeterminate`] when it may have happened.
    Other,
}

/// What the client learnt about its operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// 2xx. `rv` and `value` are those of the returned object: for create and update the new
    /// object (both required), for get the object read (both required), for delete the deleted
    /// object as it last was (either may be missing; its rv may be the deletion revision, as
    /// newer kube-apiservers return, or its last resourceVersion, as flotilla returns).
    Ok {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rv: Option<Rv>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<String>,
    },
    /// A refusal: the operation had no effect.
    Fail { reason: FailReason },
    /// Timeout, broken connection, 5xx after proposing: it may or may not have taken effect,
    /// at any time after it was invoked.
    Indeterminate,
}

/// One client operation on one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    pub client: u32,
    pub key: String,
    pub kind: OpKind,
    /// Nanoseconds since the run started, taken before sending the request.
    pub invoked_ns: u64,
    /// Taken after the response arrived; `None` if none did (then `outcome` is indeterminate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_ns: Option<u64>,
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl Op {
    /// The resourceVersion of a successful create or update, unless it was a no-op update
    /// (same value: the server writes nothing and returns the object unchanged).
    pub fn written_rv(&self) -> Option<Rv> {
        match (&self.kind, &self.outcome) {
            (OpKind::Create { .. }, Outcome::Ok { rv, .. }) => *rv,
            (OpKind::Update { expected_rv, .. }, Outcome::Ok { rv: Some(rv), .. }) if rv != expected_rv => Some(*rv),
            _ => None,
        }
    }

    pub fn is_ok(&self) -> bool {
        matches!(self.outcome, Outcome::Ok { .. })
    }

    pub fn is_indeterminate(&self) -> bool {
        matches!(self.outcome, Outcome::Indeterminate)
    }

    /// A one-line description for reports: `#12 c3 update(v=a, expected 5) -> ok rv 7 [100..250]`.
    pub fn describe(&self, index: usize) -> String {
        let kind = match &self.kind {
            OpKind::Create { value } => format!("create({value:?})"),
            OpKind::Update { value, expected_rv } => format!("update({value:?}, expected rv {expected_rv})"),
            OpKind::Delete { expected_rv: Some(rv) } => format!("delete(expected rv {rv})"),
            OpKind::Delete { expected_rv: None } => "delete()".to_string(),
            OpKind::Get => "get()".to_string(),
        };
        let outcome = match &self.outcome {
            Outcome::Ok { rv, value } => {
                let rv = rv.map_or(String::new(), |rv| format!(" rv {rv}"));
                let value = value.as_ref().map_or(String::new(), |v| format!(" {v:?}"));
                format!("ok{rv}{value}")
            }
            Outcome::Fail { reason } => format!("{reason:?}"),
            Outcome::Indeterminate => "indeterminate".to_string(),
        };
        let end = self.completed_ns.map_or("..".to_string(), |c| format!("..{c}"));
        format!("#{index} client {} {} {kind} -> {outcome} [{}{end}]", self.client, self.key, self.invoked_ns)
    }
}

/// An object's resourceVersion and value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Versioned {
    pub rv: Rv,
    pub value: String,
}

/// The type of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WatchEventType {
    Added,
    Modified,
    Deleted,
    /// A progress notification: every event up to `rv` was delivered.
    Bookmark,
    /// 410 Gone: the watch expired; the watcher relists (a new [`WatchStart`]) and goes on.
    Error410,
}

/// One event a watcher received. Deleted events carry the object's last value and the
/// deletion revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    pub watcher: u32,
    #[serde(rename = "type")]
    pub event_type: WatchEventType,
    /// Empty for bookmarks and 410s.
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub rv: Rv,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// A watcher (re)starting: it listed at `rv` (seeing `state`, if recorded) and watches from
/// `rv`, so it expects every change after `rv`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchStart {
    pub watcher: u32,
    pub rv: Rv,
    /// The member it watches through, for reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// The list result at `rv`; `None` if the watcher did not list (then its stream cannot be
    /// replayed against the final state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<BTreeMap<String, Versioned>>,
}

/// One line of `watch.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum WatchRecord {
    Start(WatchStart),
    Event(WatchEvent),
}

/// The events received after one (re)start, up to a 410 or the end of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchSegment {
    pub start: WatchStart,
    pub events: Vec<WatchEvent>,
}

/// Everything one watcher received, split at each relist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchLog {
    pub watcher: u32,
    pub segments: Vec<WatchSegment>,
}

impl WatchLog {
    /// A watcher that listed `state` at `rv` and watches from there.
    pub fn new(watcher: u32, rv: Rv, state: Option<BTreeMap<String, Versioned>>) -> Self {
        let start = WatchStart { watcher, rv, member: None, state };
        WatchLog { watcher, segments: vec![WatchSegment { start, events: Vec::new() }] }
    }

    /// Records an event in the current segment.
    pub fn push(&mut self, event_type: WatchEventType, key: &str, rv: Rv, value: Option<&str>) {
        let event = WatchEvent {
            watcher: self.watcher,
            event_type,
            key: key.to_string(),
            rv,
            value: value.map(str::to_string),
        };
        if let Some(segment) = self.segments.last_mut() {
            segment.events.push(event);
        }
    }

    /// Records a 410 and the relist that follows it.
    pub fn relist(&mut self, rv: Rv, state: Option<BTreeMap<String, Versioned>>) {
        self.push(WatchEventType::Error410, "", 0, None);
        let start = WatchStart { watcher: self.watcher, rv, member: None, state };
        self.segments.push(WatchSegment { start, events: Vec::new() });
    }
}

/// A whole run: operations, watch logs by watcher, and the final state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    pub ops: Vec<Op>,
    pub watches: BTreeMap<u32, WatchLog>,
    /// Every key's object at the end (absent keys are absent); `None` if not read.
    pub final_state: Option<BTreeMap<String, Versioned>>,
}

const OPS: &str = "ops.jsonl";
const WATCH: &str = "watch.jsonl";
const FINAL: &str = "final.json";

impl History {
    /// Writes `ops.jsonl`, `watch.jsonl` and (when known) `final.json` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|source| HistoryError::Io { path: dir.to_path_buf(), source })?;
        write_lines(&dir.join(OPS), self.ops.iter())?;
        let records = self.watches.values().flat_map(|log| {
            log.segments.iter().flat_map(|segment| {
                std::iter::once(WatchRecord::Start(segment.start.clone()))
                    .chain(segment.events.iter().cloned().map(WatchRecord::Event))
            })
        });
        write_lines(&dir.join(WATCH), records)?;
        if let Some(state) = &self.final_state {
            let path = dir.join(FINAL);
            let json = serde_json::to_vec_pretty(state).map_err(|source| HistoryError::Json {
                path: path.clone(),
                line: 0,
                source,
            })?;
            std::fs::write(&path, json).map_err(|source| HistoryError::Io { path, source })?;
        }
        Ok(())
    }

    /// Reads a directory [`History::save`] wrote (or a workload appended to line by line).
    /// A missing `watch.jsonl` or `final.json` means no watchers or no final read.
    pub fn load(dir: &Path) -> Result<History> {
        let ops = read_lines(&dir.join(OPS))?.into_iter().map(|(_, op)| op).collect();
        let path = dir.join(WATCH);
        let mut watches: BTreeMap<u32, WatchLog> = BTreeMap::new();
        if path.exists() {
            for (line, record) in read_lines::<WatchRecord>(&path)? {
                match record {
                    WatchRecord::Start(start) => {
                        let segment = WatchSegment { start: start.clone(), events: Vec::new() };
                        watches
                            .entry(start.watcher)
                            .or_insert_with(|| WatchLog { watcher: start.watcher, segments: Vec::new() })
                            .segments
                            .push(segment);
                    }
                    WatchRecord::Event(event) => {
                        let segment = watches.get_mut(&event.watcher).and_then(|log| log.segments.last_mut());
                        let Some(segment) = segment else {
                            let message = format!("event for watcher {} before it started", event.watcher);
                            return Err(HistoryError::Format { path, line, message });
                        };
                        segment.events.push(event);
                    }
                }
            }
        }
        let path = dir.join(FINAL);
        let final_state = if path.exists() {
            let bytes = std::fs::read(&path).map_err(|source| HistoryError::Io { path: path.clone(), source })?;
            Some(serde_json::from_slice(&bytes).map_err(|source| HistoryError::Json { path, line: 0, source })?)
        } else {
            None
        };
        Ok(History { ops, watches, final_state })
    }
}

fn write_lines<T: Serialize>(path: &Path, items: impl Iterator<Item = T>) -> Result<()> {
    let io = |source| HistoryError::Io { path: path.to_path_buf(), source };
    let mut out = BufWriter::new(File::create(path).map_err(io)?);
    for (i, item) in items.enumerate() {
        serde_json::to_writer(&mut out, &item).map_err(|source| HistoryError::Json {
            path: path.to_path_buf(),
            line: i + 1,
            source,
        })?;
        out.write_all(b"\n").map_err(io)?;
    }
    out.flush().map_err(io)
}

/// Parses each non-empty line, with its 1-based line number.
fn read_lines<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<(usize, T)>> {
    let io = |source| HistoryError::Io { path: path.to_path_buf(), source };
    let reader = BufReader::new(File::open(path).map_err(io)?);
    let mut items = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let item = serde_json::from_str(&line).map_err(|source| HistoryError::Json {
            path: path.to_path_buf(),
            line: i + 1,
            source,
        })?;
        items.push((i + 1, item));
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_op_serializes_as_one_flat_json_object() {
        let op = Op {
            client: 3,
            key: "cm-1".into(),
            kind: OpKind::Update { value: "b".into(), expected_rv: 5 },
            invoked_ns: 10,
            completed_ns: Some(20),
            outcome: Outcome::Ok { rv: Some(7), value: Some("b".into()) },
        };
        let json = serde_json::to_value(&op).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"client": 3, "key": "cm-1", "kind": {"type": "update", "value": "b", "expected_rv": 5},
                "invoked_ns": 10, "completed_ns": 20, "outcome": "ok", "rv": 7, "value": "b"})
        );
        assert_eq!(serde_json::from_value::<Op>(json).unwrap(), op);
        let lost = Op { completed_ns: None, outcome: Outcome::Indeterminate, ..op };
        let json = serde_json::to_string(&lost).unwrap();
        assert!(!json.contains("completed_ns"), "{json}");
        assert_eq!(serde_json::from_str::<Op>(&json).unwrap(), lost);
    }

    #[test]
    fn a_history_survives_a_save_and_load_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let op = |key: &str, outcome| Op {
            client: 1,
            key: key.into(),
            kind: OpKind::Delete { expected_rv: None },
            invoked_ns: 1,
            completed_ns: Some(2),
            outcome,
        };
        let mut watch = WatchLog::new(4, 10, Some(BTreeMap::new()));
        watch.push(WatchEventType::Added, "a", 11, Some("x"));
        watch.relist(20, None);
        watch.push(WatchEventType::Bookmark, "", 21, None);
        let history = History {
            ops: vec![op("a", Outcome::Fail { reason: FailReason::NotFound }), op("b", Outcome::Indeterminate)],
            watches: [(4, watch)].into(),
            final_state: Some([("a".to_string(), Versioned { rv: 11, value: "x".into() })].into()),
        };
        history.save(tmp.path()).unwrap();
        assert_eq!(History::load(tmp.path()).unwrap(), history);
    }

    #[test]
    fn an_event_of_a_watcher_that_never_started_is_a_format_error() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(OPS), "").unwrap();
        std::fs::write(tmp.path().join(WATCH), r#"{"record":"event","watcher":1,"type":"Added","key":"a","rv":3}"#)
            .unwrap();
        let err = History::load(tmp.path()).unwrap_err();
        assert!(matches!(err, HistoryError::Format { line: 1, .. }), "{err}");
    }
}

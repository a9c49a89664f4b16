//! Fault injection against real `flotilla` processes, and checkers over what clients saw.
//!
//! Start at [`process::FlotillaCluster`]: it runs members as separate processes on loopback
//! and kills, pauses and restarts them. [`acked::AckedWrites`] records which writes were
//! acknowledged and checks that none is lost. The tests in `chaos/tests/` combine the two.
//!
//! A workload records a [`History`] (operations on objects by key, watch streams, the final
//! state) and [`Report::check`] runs the checkers over it: [`linearizability`] against the
//! register [`model`], [`writes_check`] (no acknowledged write lost, resourceVersions only
//! rise) and [`watch_check`] (every watcher complete, ordered, without phantoms).

pub mod acked;
pub mod api_client;
pub mod history;
pub mod linearizability;
pub mod model;
pub mod process;
pub mod report;
pub mod watch_check;
pub mod workload;
pub mod writes_check;

pub use acked::AckedWrites;
pub use history::{
    FailReason, History, HistoryError, Op, OpKind, Outcome, Rv, Versioned, WatchEvent, WatchEventType, WatchLog,
    WatchRecord, WatchSegment, WatchStart,
};
pub use linearizability::CheckOptions;
pub use process::{flotilla_binary, free_port, FlotillaCluster, FAST_ELECTIONS};
pub use report::{Report, Summary, Verdict};
pub use watch_check::{FindingKind, WatchFinding};
pub use workload::{Workload, WorkloadConfig};
pub use writes_check::WriteFinding;

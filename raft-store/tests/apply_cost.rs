//! CPU cost of the write path on one member, without network or Raft: the log append and
//! the state-machine apply of entries of puts, as `flotilla bench store` makes them (256-byte
//! values over 10,000 keys, many transactions per entry), and of one compaction of the
//! history they leave. Run it in release and compare figures from the same machine and hour:
//!
//! ```sh
//! cargo test --release -p raft-store --test apply_cost -- --ignored --nocapture
//! ```

#![allow(clippy::unwrap_used)]

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use raft_store::state_machine::StateMachine;
use raft_store::{Command, Txn, TypeConfig};

const KEYS: usize = 10_000;
const TXNS_PER_ENTRY: usize = 64;
const WARM_UP_ENTRIES: u64 = 500;
const ENTRIES: u64 = 3_000;

/// User plus system CPU time of this process (every thread, RocksDB's included), in seconds.
fn process_cpu_seconds() -> f64 {
    cpu_seconds("/proc/self/stat")
}

/// The same for the calling thread alone: the apply path without RocksDB's background
/// flushes and compactions, whose timing makes the process figure swing by ~20%.
fn thread_cpu_seconds() -> f64 {
    cpu_seconds("/proc/thread-self/stat")
}

fn cpu_seconds(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// One entry's puts: 256-byte values at keys spread over [`KEYS`], continuing from `next_key`.
fn puts(next_key: &mut usize, value: &[u8]) -> Vec<Txn> {
    (0..TXNS_PER_ENTRY)
        .map(|_| {
            *next_key = (*next_key + 7919) % KEYS;
            Txn::put(format!("/registry/bench/key-{next_key:05}"), value.to_vec())
        })
        .collect()
}

#[tokio::test]
#[ignore = "a measurement, run by hand in release"]
async fn cpu_per_put_on_one_member() {
    let dir = tempfile::tempdir().unwrap();
    let db = raft_store::db::open(dir.path()).unwrap();
    let mut log =
        raft_store::wal::Wal::open(&dir.path().join("raft-log"), raft_store::wal::SEGMENT_BYTES, None).unwrap();
    let mut sm = StateMachine::open(db.clone(), dir.path().into()).unwrap();
    let value = vec![b'v'; 256];
    let mut next_key = 0;
    let mut start = None;
    for index in 1..=WARM_UP_ENTRIES + ENTRIES {
        if index == WARM_UP_ENTRIES + 1 {
            start = Some((process_cpu_seconds(), thread_cpu_seconds(), std::time::Instant::now()));
        }
        let txns = puts(&mut next_key, &value);
        let entry: Entry<TypeConfig> = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Command::Txns(txns)),
        };
        // What the log store writes for the entry (not synced, as the flusher syncs apart).
        log.append(&[(entry.log_id, bincode::serialize(&entry).unwrap())]).unwrap();
        sm.apply([entry]).await.unwrap();
    }
    let (cpu0, thread0, wall0) = start.unwrap();
    let puts = (ENTRIES as usize * TXNS_PER_ENTRY) as f64;
    let cpu = process_cpu_seconds() - cpu0;
    let thread = thread_cpu_seconds() - thread0;
    println!(
        "{puts} puts in entries of {TXNS_PER_ENTRY}: {:.1} us CPU per put ({:.1} on the applying thread), \
         {:.1} us wall per put",
        cpu / puts * 1e6,
        thread / puts * 1e6,
        wall0.elapsed().as_secs_f64() / puts * 1e6
    );
}

/// One compaction of the history that 192,000 puts over 10,000 keys leave, keeping the
/// newest 10,000 revisions, as `flotilla server`'s automatic compaction does: how long its
/// apply holds up writes, and what the background deletion of the history then costs.
#[tokio::test]
#[ignore = "a measurement, run by hand in release"]
async fn cpu_of_one_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let db = raft_store::db::open(dir.path()).unwrap();
    let mut sm = StateMachine::open(db.clone(), dir.path().into()).unwrap();
    let value = vec![b'v'; 256];
    let mut next_key = 0;
    let mut index = 0;
    let mut entry = |payload| {
        index += 1;
        Entry::<TypeConfig> { log_id: LogId::new(CommittedLeaderId::new(1, 1), index), payload }
    };
    for _ in 0..ENTRIES {
        let txns = puts(&mut next_key, &value);
        sm.apply([entry(EntryPayload::Normal(Command::Txns(txns)))]).await.unwrap();
    }
    let current = (ENTRIES as usize * TXNS_PER_ENTRY) as i64;
    let (cpu0, wall0) = (process_cpu_seconds(), std::time::Instant::now());
    sm.apply([entry(EntryPayload::Normal(Command::Compact(current - 10_000)))]).await.unwrap();
    let applied = wall0.elapsed();
    sm.history_compacted().wait_for(|r| *r >= current - 10_000).await.unwrap();
    println!(
        "compaction of {current} revisions over {KEYS} keys to the newest 10,000: apply {:.1} ms; \
         history deleted in the background after {:.0} ms, {:.0} ms CPU in all",
        applied.as_secs_f64() * 1e3,
        wall0.elapsed().as_secs_f64() * 1e3,
        (process_cpu_seconds() - cpu0) * 1e3
    );
}

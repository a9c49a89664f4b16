//! The Raft log's files: segments zero-filled ahead of use and then written in place, so that
//! syncing an append is an overwrite (fdatasync need not journal a new file size or extent;
//! on the 2 vCPU machines here ~0.15 ms instead of ~0.6-1.4 ms for an append to a growing file).
//!
//! A segment is a file `{seq:016x}.wal` of records, each
//! `[payload length u32][crc32 u32][index u64][term u64][leader node u64][payload]`, the CRC over
//! everything after it. A zero length ends a segment's records. Recovery reads the longest run
//! of intact records with consecutive indexes and non-decreasing terms, and zeroes whatever
//! follows it (a torn or unsynced tail), so a later append can never line up with stale bytes.
//! Truncation zeroes the truncated bytes for the same reason.
//!
//! This is plain file I/O under the caller's lock; [`crate::log_store`] adds openraft's traits,
//! the flusher thread and the purge point.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Error, ErrorKind, Result};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use openraft::{CommittedLeaderId, LogId};

use crate::types::NodeId;

/// Segment size: a quarter of etcd's 64 MiB, as every member start zero-fills two (the
/// tests start hundreds); at 256 clients the log grows ~2 MB/s, so a new one every ~8 s.
pub const SEGMENT_BYTES: u64 = 16 << 20;
const HEADER: usize = 32;
static ZEROS: [u8; 1 << 16] = [0; 1 << 16];
/// Temporary-name suffixes of segments being made (removed at open).
const PREPARED: &str = "prepared";
const INLINE: &str = "inline";

/// Where one entry's record lies.
#[derive(Clone, Copy, Debug)]
struct Loc {
    seq: u64,
    offset: u64,
    len: u32,
    log_id: LogId<NodeId>,
}

struct Segment {
    seq: u64,
    file: Arc<File>,
    size: u64,
    /// End of the records written (everything after it reads as zeros).
    end: u64,
    /// Its highest entry index, if any.
    last: Option<u64>,
}

/// A spare segment made ahead of need by a background thread.
#[derive(Default)]
struct Spare {
    wanted: u64,
    ready: Option<(u64, File)>,
}

/// An open log. Appends are written (readable) before `append` returns; the [`Written`] it
/// returns lists what to sync for them to be durable.
pub struct Wal {
    dir: PathBuf,
    segment_bytes: u64,
    segments: Vec<Segment>,
    index: BTreeMap<u64, Loc>,
    spare: Arc<Mutex<Spare>>,
    /// Requests to the preparer thread (`None` once dropped, to stop it).
    prepare: Option<mpsc::Sender<u64>>,
    preparer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Wal {
    /// Waits for the preparer thread: left running, it could still rename a segment into a
    /// directory that a new `Wal` (a member restarted in the same process) already uses.
    fn drop(&mut self) {
        self.prepare = None;
        if let Some(thread) = self.preparer.take() {
            let _ = thread.join();
        }
    }
}

/// The files an append wrote to: syncing them makes it durable (a new segment's name is
/// synced when it is made).
pub type Written = Vec<Arc<File>>;

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016x}.wal"))
}

fn temp_path(dir: &Path, seq: u64, tmp: &str) -> PathBuf {
    dir.join(format!("{seq:016x}.{tmp}"))
}

fn corrupt(msg: String) -> Error {
    Error::new(ErrorKind::InvalidData, msg)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes zeros over `[from, to)`.
fn zero(file: &File, from: u64, to: u64) -> Result<()> {
    let mut at = from;
    while at < to {
        let n = (to - at).min(ZEROS.len() as u64) as usize;
        file.write_all_at(&ZEROS[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// Creates segment `seq` zero-filled and synced, under a temporary name first so that a crash
/// never leaves a half-made segment that looks finished. `tmp` differs between the preparer
/// thread and an append that could not wait for it.
fn make_segment(dir: &Path, seq: u64, bytes: u64, tmp: &str) -> Result<File> {
    let file = make_zeroed(dir, seq, bytes, tmp)?;
    std::fs::rename(temp_path(dir, seq, tmp), segment_path(dir, seq))?;
    sync_dir(dir)?;
    Ok(file)
}

fn make_zeroed(dir: &Path, seq: u64, bytes: u64, tmp: &str) -> Result<File> {
    let path = temp_path(dir, seq, tmp);
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
    zero(&file, 0, bytes)?;
    file.sync_all()?;
    Ok(file)
}

/// Keeps the next segment ready. Ends when the log is dropped.
fn prepare_loop(dir: PathBuf, bytes: u64, spare: Arc<Mutex<Spare>>, requests: mpsc::Receiver<u64>) {
    while let Ok(mut seq) = requests.recv() {
        // Only the newest request matters.
        seq = requests.try_iter().last().unwrap_or(seq);
        let made = make_zeroed(&dir, seq, bytes, PREPARED);
        let Ok(mut spare) = spare.lock() else { return };
        let tmp = temp_path(&dir, seq, PREPARED);
        let result = match made {
            // The log may have moved on (or made this one itself) meanwhile.
            Ok(_) if spare.wanted != seq || spare.ready.is_some() => std::fs::remove_file(&tmp),
            Ok(file) => std::fs::rename(&tmp, segment_path(&dir, seq))
                .and_then(|()| sync_dir(&dir))
                .map(|()| spare.ready = Some((seq, file))),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, seq, "could not prepare a log segment; one is made when needed");
        }
    }
}

/// Encodes one record.
fn record(out: &mut Vec<u8>, log_id: &LogId<NodeId>, payload: &[u8]) -> Result<()> {
    let len = u32::try_from(payload.len()).map_err(|_| Error::new(ErrorKind::InvalidInput, "log entry over 4 GiB"))?;
    let start = out.len();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&log_id.index.to_le_bytes());
    out.extend_from_slice(&log_id.leader_id.term.to_le_bytes());
    out.extend_from_slice(&log_id.leader_id.node_id.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Reads `len` bytes at `offset` (a place [`Wal::locate`] gave).
pub fn read(file: &File, offset: u64, len: usize) -> Result<Vec<u8>> {
    let mut raw = vec![0u8; len];
    file.read_exact_at(&mut raw, offset)?;
    Ok(raw)
}

/// Reads the record at `offset`: `None` where the records end (zeros, a torn or foreign record).
fn read_record(file: &File, offset: u64, size: u64) -> Result<Option<(LogId<NodeId>, Vec<u8>)>> {
    if offset + HEADER as u64 > size {
        return Ok(None);
    }
    let mut header = [0u8; HEADER];
    file.read_exact_at(&mut header, offset)?;
    let word = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().unwrap_or_default());
    let len = u32::from_le_bytes(header[0..4].try_into().unwrap_or_default()) as u64;
    let crc = u32::from_le_bytes(header[4..8].try_into().unwrap_or_default());
    if len == 0 || offset + HEADER as u64 + len > size {
        return Ok(None);
    }
    let mut payload = vec![0u8; len as usize];
    file.read_exact_at(&mut payload, offset + HEADER as u64)?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[8..]);
    hasher.update(&payload);
    if hasher.finalize() != crc {
        return Ok(None);
    }
    let log_id = LogId::new(CommittedLeaderId::new(word(16), word(24)), word(8));
    Ok(Some((log_id, payload)))
}

impl Wal {
    /// Opens the log under `dir` (creating it), keeping the intact records after `purged`.
    pub fn open(dir: &Path, segment_bytes: u64, purged: Option<u64>) -> Result<Wal> {
        std::fs::create_dir_all(dir)?;
        let mut seqs = Vec::new();
        for item in std::fs::read_dir(dir)? {
            let path = item?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
            if let Some(hex) = name.strip_suffix(".wal") {
                let seq = u64::from_str_radix(hex, 16).map_err(|_| corrupt(format!("unexpected file {name}")))?;
                seqs.push(seq);
            } else if name.ends_with(PREPARED) || name.ends_with(INLINE) {
                // A spare segment left half-made by a crash.
                std::fs::remove_file(&path)?;
            }
        }
        seqs.sort_unstable();

        let mut segments: Vec<Segment> = Vec::new();
        let mut index = BTreeMap::new();
        let mut prev: Option<LogId<NodeId>> = None;
        let mut ended = false;
        for seq in seqs {
            let path = segment_path(dir, seq);
            if ended {
                // After the end of the intact records: unsynced, never reported durable.
                std::fs::remove_file(&path)?;
                continue;
            }
            let file = OpenOptions::new().read(true).write(true).open(&path)?;
            let size = file.metadata()?.len();
            let (mut offset, mut last) = (0u64, None);
            while let Some((log_id, payload)) = read_record(&file, offset, size)? {
                let follows = match &prev {
                    None => true,
                    Some(p) => {
                        log_id.leader_id.term >= p.leader_id.term
                            && (log_id.index == p.index + 1
                                || (purged.is_some_and(|x| p.index <= x && log_id.index == x + 1)))
                    }
                };
                if !follows {
                    break;
                }
                let len = (HEADER + payload.len()) as u32;
                if purged.is_none_or(|x| log_id.index > x) {
                    index.insert(log_id.index, Loc { seq, offset, len, log_id });
                }
                prev = Some(log_id);
                last = Some(log_id.index);
                offset += u64::from(len);
            }
            // Bytes past the intact records are a torn or unsynced tail, or records that do not
            // follow: zero them (a later append could line up with them) and drop the
            // segments after. Zeros only: a clean end, and the next segment may go on.
            if has_data(&file, offset, size)? {
                tracing::info!(seq, offset, "zeroing the log's unsynced tail");
                zero(&file, offset, size)?;
                file.sync_data()?;
                ended = true;
            }
            segments.push(Segment { seq, file: Arc::new(file), size, end: offset, last });
        }
        if segments.is_empty() {
            let file = make_segment(dir, 1, segment_bytes, INLINE)?;
            segments.push(Segment { seq: 1, file: Arc::new(file), size: segment_bytes, end: 0, last: None });
        }
        let next = segments.last().map_or(1, |s| s.seq + 1);
        let spare = Arc::new(Mutex::new(Spare { wanted: next, ready: None }));
        let (prepare, requests) = mpsc::channel();
        let (pdir, pspare) = (dir.to_path_buf(), spare.clone());
        let preparer = std::thread::Builder::new()
            .name("raft-log-prepare".into())
            .spawn(move || prepare_loop(pdir, segment_bytes, pspare, requests))?;
        let wal = Wal {
            dir: dir.to_path_buf(),
            segment_bytes,
            segments,
            index,
            spare,
            prepare: Some(prepare),
            preparer: Some(preparer),
        };
        wal.want_spare(next);
        Ok(wal)
    }

    /// Asks the preparer thread for segment `seq`.
    fn want_spare(&self, seq: u64) {
        if let Some(prepare) = &self.prepare {
            let _ = prepare.send(seq);
        }
    }

    /// Syncs every segment's data.
    pub fn sync(&self) -> Result<()> {
        self.segments.iter().try_for_each(|s| s.file.sync_data())
    }

    pub fn first_index(&self) -> Option<u64> {
        self.index.keys().next().copied()
    }

    pub fn last_log_id(&self) -> Option<LogId<NodeId>> {
        self.index.values().next_back().map(|l| l.log_id)
    }

    /// Appends encoded entries, in index order.
    pub fn append(&mut self, entries: &[(LogId<NodeId>, Vec<u8>)]) -> Result<Written> {
        let mut written = Written::new();
        let mut buf = Vec::new();
        let mut pending: Vec<Loc> = Vec::new();
        for (log_id, payload) in entries {
            let need = (HEADER + payload.len()) as u64;
            let current = self.current()?;
            let start = current.end + buf.len() as u64;
            if start + need > current.size && start > 0 {
                self.flush_buf(&mut buf, &mut pending, &mut written)?;
                self.roll(need)?;
            }
            let current = self.current()?;
            let offset = current.end + buf.len() as u64;
            record(&mut buf, log_id, payload)?;
            pending.push(Loc { seq: current.seq, offset, len: need as u32, log_id: *log_id });
        }
        self.flush_buf(&mut buf, &mut pending, &mut written)?;
        Ok(written)
    }

    fn current(&self) -> Result<&Segment> {
        self.segments.last().ok_or_else(|| corrupt("the log has no segment".into()))
    }

    /// Writes the buffered records at the current segment's end.
    fn flush_buf(&mut self, buf: &mut Vec<u8>, pending: &mut Vec<Loc>, written: &mut Written) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let segment = self.segments.last_mut().ok_or_else(|| corrupt("the log has no segment".into()))?;
        segment.file.write_all_at(buf, segment.end)?;
        segment.end += buf.len() as u64;
        for loc in pending.drain(..) {
            segment.last = Some(loc.log_id.index);
            self.index.insert(loc.log_id.index, loc);
        }
        if !written.iter().any(|f| Arc::ptr_eq(f, &segment.file)) {
            written.push(segment.file.clone());
        }
        buf.clear();
        Ok(())
    }

    /// Starts the next segment: the spare if it is ready, else a new one here.
    fn roll(&mut self, need: u64) -> Result<()> {
        let seq = self.current()?.seq + 1;
        let ready = {
            let mut spare = self.spare.lock().map_err(|_| Error::other("log segment preparer panicked"))?;
            spare.wanted = seq + 1;
            spare.ready.take().filter(|(s, _)| *s == seq)
        };
        let size = self.segment_bytes.max(need);
        let file = match ready {
            Some((_, file)) if need <= self.segment_bytes => file,
            _ => {
                metrics::counter!("flotilla_store_log_segments_made_inline_total").increment(1);
                make_segment(&self.dir, seq, size, INLINE)?
            }
        };
        self.want_spare(seq + 1);
        self.segments.push(Segment { seq, file: Arc::new(file), size, end: 0, last: None });
        Ok(())
    }

    /// Where the entries with indexes in `[start, end)` lie, in order, for [`read`] (outside
    /// the caller's lock).
    pub fn locate(&self, start: u64, end: u64) -> Result<Vec<(Arc<File>, u64, usize)>> {
        let mut out = Vec::new();
        for loc in self.index.range(start..end).map(|(_, l)| l) {
            let segment = self
                .segments
                .iter()
                .find(|s| s.seq == loc.seq)
                .ok_or_else(|| corrupt(format!("log segment {} missing", loc.seq)))?;
            out.push((segment.file.clone(), loc.offset + HEADER as u64, loc.len as usize - HEADER));
        }
        Ok(out)
    }

    /// Removes the entries from `index` on, durably.
    pub fn truncate(&mut self, index: u64) -> Result<()> {
        let Some(first) = self.index.range(index..).next().map(|(_, l)| *l) else { return Ok(()) };
        while self.segments.last().is_some_and(|s| s.seq > first.seq) {
            if let Some(s) = self.segments.pop() {
                std::fs::remove_file(segment_path(&self.dir, s.seq))?;
            }
        }
        sync_dir(&self.dir)?;
        let segment = self.segments.last_mut().ok_or_else(|| corrupt("the log has no segment".into()))?;
        zero(&segment.file, first.offset, segment.end)?;
        segment.file.sync_data()?;
        segment.end = first.offset;
        self.index.split_off(&index);
        segment.last = self.index.values().next_back().filter(|l| l.seq == segment.seq).map(|l| l.log_id.index);
        // A spare made for a removed segment's successor has the wrong number now.
        let next = segment.seq + 1;
        let mut spare = self.spare.lock().map_err(|_| Error::other("log segment preparer panicked"))?;
        spare.wanted = next;
        if let Some((seq, _)) = spare.ready.take_if(|(s, _)| *s != next) {
            std::fs::remove_file(segment_path(&self.dir, seq))?;
        }
        drop(spare);
        self.want_spare(next);
        Ok(())
    }

    /// Forgets the entries up to `index` and removes the segments that hold only those.
    /// The caller records the purge point durably first.
    pub fn purge(&mut self, index: u64) -> Result<()> {
        self.index = self.index.split_off(&(index + 1));
        let current = self.current()?.seq;
        let mut removed = false;
        let dir = self.dir.clone();
        let mut kept = Vec::with_capacity(self.segments.len());
        for s in self.segments.drain(..) {
            if s.seq != current && s.last.is_none_or(|last| last <= index) {
                std::fs::remove_file(segment_path(&dir, s.seq))?;
                removed = true;
            } else {
                kept.push(s);
            }
        }
        self.segments = kept;
        if removed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

/// Whether any byte in `[from, to)` is not zero.
fn has_data(file: &File, from: u64, to: u64) -> Result<bool> {
    let mut buf = vec![0u8; 1 << 16];
    let mut at = from;
    while at < to {
        let n = (to - at).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], at)?;
        if buf[..n].iter().any(|b| *b != 0) {
            return Ok(true);
        }
        at += n as u64;
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Small segments, so that a few entries span several.
    const SMALL: u64 = 4096;

    fn id(term: u64, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn entry(term: u64, index: u64) -> (LogId<NodeId>, Vec<u8>) {
        (id(term, index), format!("entry {index} of term {term}: {}", "x".repeat(300)).into_bytes())
    }

    fn append(wal: &mut Wal, term: u64, indexes: std::ops::RangeInclusive<u64>) {
        let entries: Vec<_> = indexes.map(|i| entry(term, i)).collect();
        for file in wal.append(&entries).unwrap() {
            file.sync_data().unwrap();
        }
    }

    /// Every entry the log holds, as (index, term of its payload).
    fn contents(wal: &Wal) -> Vec<(u64, u64)> {
        let (first, last) = (wal.first_index().unwrap_or(1), wal.last_log_id().map_or(0, |l| l.index));
        let places = wal.locate(0, u64::MAX).unwrap();
        let mut out = Vec::new();
        for (i, (file, offset, len)) in (first..=last).zip(places) {
            let text = String::from_utf8(read(&file, offset, len).unwrap()).unwrap();
            let term: u64 = text.split(' ').nth(4).unwrap().trim_end_matches(':').parse().unwrap();
            assert!(text.starts_with(&format!("entry {i} ")), "entry {i} reads back as {text:.20}");
            out.push((i, term));
        }
        out
    }

    fn segment_files(dir: &Path) -> usize {
        std::fs::read_dir(dir).unwrap().filter(|e| e.as_ref().unwrap().path().extension().unwrap() == "wal").count()
    }

    #[test]
    fn entries_span_segments_and_read_back_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), SMALL, None).unwrap();
        append(&mut wal, 1, 1..=20);
        append(&mut wal, 2, 21..=40);
        assert!(segment_files(dir.path()) >= 4, "40 entries of ~350 bytes fill several 4 KiB segments");
        let before = contents(&wal);
        drop(wal);
        let wal = Wal::open(dir.path(), SMALL, None).unwrap();
        assert_eq!(contents(&wal), before);
        assert_eq!(wal.last_log_id(), Some(id(2, 40)));
        assert_eq!(wal.first_index(), Some(1));
    }

    #[test]
    fn a_torn_record_ends_the_log_and_what_followed_it_never_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), 1 << 20, None).unwrap();
        append(&mut wal, 1, 1..=9);
        append(&mut wal, 2, 10..=12);
        let (file, offset, _) = wal.locate(10, 11).unwrap().remove(0);
        drop(wal);
        // Entry 10 torn (one payload byte never reached the disk); 11 and 12 intact after it.
        file.write_all_at(b"?", offset + 5).unwrap();
        let mut wal = Wal::open(dir.path(), 1 << 20, None).unwrap();
        assert_eq!(wal.last_log_id(), Some(id(1, 9)));
        // Entry 10 again, exactly as long as the torn one: the old 11 and 12 (same term, so
        // the term check would not stop them) must not line up behind it.
        append(&mut wal, 2, 10..=10);
        drop(wal);
        let wal = Wal::open(dir.path(), 1 << 20, None).unwrap();
        assert_eq!(wal.last_log_id(), Some(id(2, 10)));
        assert_eq!(contents(&wal).last(), Some(&(10, 2)));
    }

    #[test]
    fn truncated_entries_stay_gone_when_the_same_lengths_are_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), SMALL, None).unwrap();
        append(&mut wal, 1, 1..=5);
        append(&mut wal, 3, 6..=30);
        wal.truncate(6).unwrap();
        assert_eq!(wal.last_log_id(), Some(id(1, 5)));
        // Entries of a lower term than the truncated ones (a leader can send an older term's
        // entries): the term check alone would let the old 7 follow.
        append(&mut wal, 2, 6..=6);
        drop(wal);
        let mut wal = Wal::open(dir.path(), SMALL, None).unwrap();
        assert_eq!(wal.last_log_id(), Some(id(2, 6)));
        let expected: Vec<_> = (1..=5).map(|i| (i, 1)).chain([(6, 2)]).collect();
        assert_eq!(contents(&wal), expected);
        // And the log goes on from there, across segments.
        append(&mut wal, 2, 7..=40);
        drop(wal);
        let wal = Wal::open(dir.path(), SMALL, None).unwrap();
        assert_eq!(wal.last_log_id(), Some(id(2, 40)));
    }

    #[test]
    fn a_record_out_of_sequence_ends_the_log_and_later_segments_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), SMALL, None).unwrap();
        append(&mut wal, 1, 1..=40);
        // Zero a record in an early segment: as if its page never reached the disk while later
        // segments did.
        let (file, offset, len) = wal.locate(15, 16).unwrap().remove(0);
        drop(wal);
        zero(&file, offset - HEADER as u64, offset + len as u64).unwrap();
        let wal = Wal::open(dir.path(), SMALL, None).unwrap();
        assert_eq!(wal.last_log_id(), Some(id(1, 14)));
        assert_eq!(contents(&wal).len(), 14);
    }

    #[test]
    fn purging_drops_whole_segments_and_the_log_resumes_after_a_purge_past_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), SMALL, None).unwrap();
        append(&mut wal, 1, 1..=40);
        wal.purge(25).unwrap();
        assert_eq!(wal.first_index(), Some(26));
        assert!(!segment_path(dir.path(), 1).exists(), "the first segment held only purged entries");
        drop(wal);
        let mut wal = Wal::open(dir.path(), SMALL, Some(25)).unwrap();
        assert_eq!((wal.first_index(), wal.last_log_id()), (Some(26), Some(id(1, 40))));
        // A snapshot from the leader covers more than the log: purge past its end.
        wal.purge(100).unwrap();
        assert_eq!(wal.last_log_id(), None);
        append(&mut wal, 3, 101..=105);
        drop(wal);
        let wal = Wal::open(dir.path(), SMALL, Some(100)).unwrap();
        assert_eq!((wal.first_index(), wal.last_log_id()), (Some(101), Some(id(3, 105))));
    }
}

//! Opens the member's RocksDB: the state machine and Raft's metadata, in column families
//! (the Raft log's entries are in their own files, [`crate::wal`]). Only Raft's metadata
//! goes through RocksDB's write-ahead log: the Raft log is the state machine's WAL.
//! State-machine writes reach the disk when memtables are flushed, every column family at once (atomic flush), so after a
//! crash the stored state machine is a consistent earlier state and openraft applies the
//! entries after it again; [`persist_state_machine`] makes it durable before the log behind
//! it is purged.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, DBCompressionType, Options, WriteBatch, WriteOptions, DB};

use crate::error::{Result, StoreError};

/// Raft metadata (vote, committed, purged) and state-machine metadata.
pub const CF_META: &str = "meta";
/// The newest version of every key (deletions until compaction passes them), by key.
pub const CF_KV: &str = "kv";
/// Every version still inside the MVCC history, by revision: what watches read.
pub const CF_HIST: &str = "hist";

pub const ALL_CFS: [&str; 3] = [CF_META, CF_KV, CF_HIST];
/// Column families that make up the state machine (copied into snapshots).
pub const SM_CFS: [&str; 2] = [CF_KV, CF_HIST];

/// On-disk format this build reads and writes. Bump on any incompatible layout change.
/// 3: the Raft log moved from a column family into segment files.
/// 4: history keyed by revision, each version naming the one before; no events family.
pub const FORMAT_VERSION: u32 = 4;
const FORMAT_FILE: &str = "FLOTILLA_FORMAT";

/// Opens (or creates) the database under `dir`, refusing a directory written by another
/// format version.
pub fn open(dir: &Path) -> Result<Arc<DB>> {
    std::fs::create_dir_all(dir).map_err(|e| StoreError::Storage(format!("create {}: {e}", dir.display())))?;
    check_format(dir)?;
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_max_background_jobs(2);
    // State-machine writes skip the WAL: every flush must then cover all column families,
    // or a crash could leave the applied index of one flush beside the data of another.
    opts.set_atomic_flush(true);
    let cfs = ALL_CFS.iter().map(|name| ColumnFamilyDescriptor::new(*name, cf_options(name)));
    let db = DB::open_cf_descriptors(&opts, dir.join("db"), cfs)?;
    Ok(Arc::new(db))
}

/// Memtable size of `kv`, written at random keys on every put (`hist` is appended to).
const RANDOM_WRITE_MEMTABLE_BYTES: usize = 8 << 20;
/// Its L0 files before a compaction into L1: twice RocksDB's 4, so that as many bytes
/// gather in L0 per compaction as with 16 MiB memtables (each L0 -> L1 compaction of
/// random keys rewrites most of L1).
const RANDOM_WRITE_L0_FILES: i32 = 8;

/// Compression by LSM level, as TiKV sets it: none where data is young and rewritten soon
/// (snappy on every flush and L0 compaction took ~4% of the members' CPU under load), LZ4
/// in the middle, zstd at the bottom where most bytes settle.
const COMPRESSION_PER_LEVEL: [DBCompressionType; 7] = [
    DBCompressionType::None,
    DBCompressionType::None,
    DBCompressionType::Lz4,
    DBCompressionType::Lz4,
    DBCompressionType::Lz4,
    DBCompressionType::Zstd,
    DBCompressionType::Zstd,
];

fn cf_options(name: &str) -> Options {
    let mut opts = Options::default();
    opts.set_compression_per_level(&COMPRESSION_PER_LEVEL);
    if name == CF_KV {
        // Smaller than RocksDB's 64 MiB: each put inserts into this memtable at a random
        // place, and a smaller skiplist takes less apply CPU per put (`tests/apply_cost.rs`:
        // 16 MiB ~20% less than 64, 8 MiB another ~8%); flushes are more frequent but no
        // more bytes in all.
        opts.set_write_buffer_size(RANDOM_WRITE_MEMTABLE_BYTES);
        opts.set_level_zero_file_num_compaction_trigger(RANDOM_WRITE_L0_FILES);
    }
    opts
}

fn check_format(dir: &Path) -> Result<()> {
    let path = dir.join(FORMAT_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let found: u32 = text.trim().parse().map_err(|_| {
                StoreError::IncompatibleDataDir(format!(
                    "data dir {}: unreadable format marker {:?} in {FORMAT_FILE}; refusing to open it",
                    dir.display(),
                    text.trim()
                ))
            })?;
            if found != FORMAT_VERSION {
                return Err(StoreError::IncompatibleDataDir(format!(
                    "data dir {} was written in store format {found}; this flotilla reads format {FORMAT_VERSION}. \
                     Use a flotilla release that matches it, or start with an empty data dir",
                    dir.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if dir.join("db").exists() {
                return Err(StoreError::IncompatibleDataDir(format!(
                    "data dir {} holds a database without a {FORMAT_FILE} marker; refusing to open it",
                    dir.display()
                )));
            }
            std::fs::write(&path, format!("{FORMAT_VERSION}\n"))
                .map_err(|e| StoreError::Storage(format!("write {}: {e}", path.display())))
        }
        Err(e) => Err(StoreError::Storage(format!("read {}: {e}", path.display()))),
    }
}

/// Writes a batch of state-machine records, without the WAL: the Raft log is their
/// write-ahead log (see the module's doc).
pub fn write_state_machine(db: &DB, batch: WriteBatch) -> Result<()> {
    let mut no_wal = WriteOptions::default();
    no_wal.disable_wal(true);
    Ok(db.write_opt(batch, &no_wal)?)
}

/// Flushes every column family's memtable to disk, atomically, so that the state machine as
/// applied so far survives a crash (its writes skip the WAL). RocksDB 7.8's C API flushes
/// several column families at once only when it makes a checkpoint, so this makes one (hard
/// links, beside the database) and removes it.
pub fn persist_state_machine(db: &DB) -> Result<()> {
    // Purging the log and building a snapshot both come here, from different threads, and
    // share the checkpoint's dir.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = db.path().with_extension("flushing");
    let clear = || match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(StoreError::Storage(format!("remove {}: {e}", dir.display())))
        }
        _ => Ok(()),
    };
    clear()?;
    rocksdb::checkpoint::Checkpoint::new(db)?.create_checkpoint(&dir)?;
    clear()
}

/// Looks up a column family that [`open`] always creates.
pub fn cf<'a>(db: &'a DB, name: &str) -> Result<&'a rocksdb::ColumnFamily> {
    db.cf_handle(name).ok_or_else(|| StoreError::Storage(format!("column family {name} missing")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_dir_from_another_format_is_refused_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path()).unwrap());
        std::fs::write(dir.path().join(FORMAT_FILE), "99\n").unwrap();
        let err = open(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::IncompatibleDataDir(_)), "{err:?}");
        assert!(err.to_string().contains("format 99"), "{err}");
    }

    #[test]
    fn a_database_without_marker_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path()).unwrap());
        std::fs::remove_file(dir.path().join(FORMAT_FILE)).unwrap();
        assert!(matches!(open(dir.path()), Err(StoreError::IncompatibleDataDir(_))));
    }

    #[test]
    fn reopening_the_same_format_works() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path()).unwrap());
        open(dir.path()).unwrap();
    }
}

//! WAL append throughput: batches of N entries of 256 bytes, each batch written
//! as one frame, as the consensus thread does once per turn.
//!
//! - `wal_fsync/entries/N`: `append_entries` + `sync`, which writes the frame and
//!   calls `fdatasync` once: the cost of a turn's persistence.
//! - `wal_no_fsync/entries/N`: the same on a filesystem whose fsyncs return at
//!   once (`support/no_sync.rs`): encoding, checksums and the `pwrite` into the
//!   page cache alone. The difference is the fsync.
//!
//! The WAL lives in a temporary directory on the real disk, with the default
//! 64 MiB segments; the cost of starting a new segment (preallocation, zero
//! fill) falls in the timed appends, as it does in a node. To keep disk use to a
//! few segments however long criterion runs, the log is compacted outside the
//! timed region every 64 MiB.
//!
//! `cargo bench -p keel-storage --bench wal`; results in BENCHMARKS.md
//! ("Micro-benchmarks").

#[path = "support/no_sync.rs"]
mod no_sync;
#[path = "../../raft/benches/support/settings.rs"]
mod settings;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use keel_raft::{Entry, EntryKind, GroupId, Index};
use keel_storage::vfs::{StdVfs, Vfs};
use keel_storage::wal::{LogStart, LogStartKind, Wal, WalOptions};
use tempfile::TempDir;

use no_sync::NoSyncVfs;

const GROUP: GroupId = 1;
const TERM: u64 = 1;
/// Entries per batch (one frame, one fsync each).
const BATCHES: [usize; 3] = [1, 16, 256];
const PAYLOAD_BYTES: usize = 256;
/// Appended bytes between two compactions.
const COMPACT_EVERY_BYTES: u64 = 64 << 20;

/// A WAL in a temporary directory, appended to across criterion's samples.
struct Log {
    // Declared before the directory so that it is closed before the files go.
    wal: Wal,
    _dir: TempDir,
    last: Index,
    payload: Bytes,
    bytes_since_compaction: u64,
}

impl Log {
    /// Opens a WAL and writes one entry, so that its first segment exists before
    /// anything is timed.
    fn open(vfs: Arc<dyn Vfs>) -> Log {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (wal, _) =
            Wal::open(vfs, &dir.path().join("wal"), WalOptions::default()).expect("open the WAL");
        let mut log = Log {
            wal,
            _dir: dir,
            last: 0,
            payload: Bytes::from(vec![0x5a; PAYLOAD_BYTES]),
            bytes_since_compaction: 0,
        };
        let first = log.next_batch(1);
        log.append(&first);
        log
    }

    /// The next `n` entries of the log (they share one payload buffer: the WAL
    /// copies it into the frame either way).
    fn next_batch(&mut self, n: usize) -> Vec<Entry> {
        (0..n)
            .map(|_| {
                self.last += 1;
                Entry {
                    term: TERM,
                    index: self.last,
                    kind: EntryKind::Normal,
                    data: self.payload.clone(),
                }
            })
            .collect()
    }

    /// What is timed: buffer the batch, write it as one frame, sync.
    fn append(&mut self, entries: &[Entry]) {
        self.wal.append_entries(GROUP, entries).expect("append");
        self.wal.sync().expect("sync");
        self.bytes_since_compaction += entries.iter().map(|e| e.data.len() as u64).sum::<u64>();
    }

    /// Drops every segment but the active one once enough was written, as a node
    /// does after a snapshot.
    fn compact_if_due(&mut self) {
        if self.bytes_since_compaction < COMPACT_EVERY_BYTES {
            return;
        }
        let start = LogStart {
            index: self.last,
            term: TERM,
            kind: LogStartKind::Compacted,
        };
        self.wal.set_log_start(GROUP, start).expect("log start");
        let last = self.last;
        self.wal.compact(|_| last).expect("compact");
        self.bytes_since_compaction = 0;
    }
}

/// Appends batches of each size into a WAL on `vfs`; only the appends are timed.
fn appends(c: &mut Criterion, name: &str, vfs: fn() -> Arc<dyn Vfs>) {
    let mut group = c.benchmark_group(name);
    for n in BATCHES {
        group.throughput(Throughput::Elements(n as u64));
        // Opened on first use, so that a filtered-out bench creates no segment.
        let mut log: Option<Log> = None;
        group.bench_function(BenchmarkId::new("entries", n), |b| {
            let log = log.get_or_insert_with(|| Log::open(vfs()));
            b.iter_custom(|iters| {
                let mut busy = Duration::ZERO;
                for _ in 0..iters {
                    let batch = log.next_batch(n);
                    let start = Instant::now();
                    log.append(&batch);
                    busy += start.elapsed();
                    log.compact_if_due();
                }
                busy
            });
        });
    }
    group.finish();
}

fn with_fsync(c: &mut Criterion) {
    appends(c, "wal_fsync", || Arc::new(StdVfs::new()));
}

fn without_fsync(c: &mut Criterion) {
    appends(c, "wal_no_fsync", || Arc::new(NoSyncVfs::default()));
}

criterion_group! {
    name = benches;
    config = settings::modest();
    targets = with_fsync, without_fsync
}
criterion_main!(benches);

//! State-machine apply throughput: committed entries applied the way the node
//! applies them (`KvStore::apply` on each batch of committed entries, one redb
//! transaction without fsync each; `KvStore::flush` about once a second).
//!
//! - `apply/plain/N`: batches of N puts of 256-byte values to keys chosen
//!   uniformly among 10,000 (all present: the store is preloaded), without a
//!   client session.
//! - `apply/session/N`: the same writes from one client session with 64 writes
//!   in flight, as the Rust client (and so `keel bench`) sends them by default:
//!   each also updates the session's row.
//! - `flush/10000_entries`: the durable redb commit that follows 10,000 applied
//!   entries (about one second of writes in the end-to-end benchmarks).
//!
//! Building the entries and the periodic flush are outside the timed region of
//! `apply`. `cargo bench -p keel-storage --bench apply`; results in
//! BENCHMARKS.md ("Micro-benchmarks").

#[path = "../../raft/benches/support/settings.rs"]
mod settings;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use keel_raft::{Entry, EntryKind, Index, SplitMix64};
use keel_storage::command::{Command, Envelope, Expect, SessionHeader};
use keel_storage::kv::KvStore;
use keel_storage::vfs::StdVfs;
use tempfile::TempDir;

const KEYS: u64 = 10_000;
const VALUE_BYTES: usize = 256;
/// Entries per `apply` call.
const BATCHES: [usize; 3] = [1, 16, 256];
/// Applied entries between two flushes.
const FLUSH_EVERY: u64 = 10_000;
/// Writes the bench's one session keeps in flight.
const IN_FLIGHT: u64 = 64;

/// A state machine in a temporary directory, holding every key once.
struct StateMachine {
    // Declared before the directory so that it is closed before the file goes.
    kv: KvStore,
    _dir: TempDir,
    /// Index of the last entry built.
    last: Index,
    keys: SplitMix64,
    value: Bytes,
    /// Whether writes carry a session header, and its last sequence number.
    session: Option<u64>,
    applied_since_flush: u64,
}

impl StateMachine {
    fn open(with_session: bool) -> StateMachine {
        let dir = tempfile::tempdir().expect("temporary directory");
        let kv = KvStore::open(Arc::new(StdVfs::new()), &dir.path().join("state.redb"))
            .expect("open the state machine");
        let mut sm = StateMachine {
            kv,
            _dir: dir,
            last: 0,
            keys: SplitMix64::new(7),
            value: Bytes::from(vec![0x5a; VALUE_BYTES]),
            session: None,
            applied_since_flush: 0,
        };
        for first in (0..KEYS).step_by(1000) {
            let preload: Vec<Entry> = (first..first + 1000)
                .map(|k| sm.put_entry(format!("key-{k:06}")))
                .collect();
            sm.kv.apply(&preload).expect("preload");
        }
        sm.kv.flush().expect("flush");
        sm.session = with_session.then_some(0);
        sm
    }

    /// The next entry: a put of `key`, in the session if there is one.
    fn put_entry(&mut self, key: String) -> Entry {
        self.last += 1;
        let session = self.session.as_mut().map(|seq| {
            *seq += 1;
            SessionHeader {
                client_id: 1,
                seq: *seq,
                // Everything older than the writes in flight was answered.
                first_unacked: seq.saturating_sub(IN_FLIGHT - 1).max(1),
                now_ms: 1_700_000_000_000 + self.last,
                // The server's defaults (`session_idle_timeout_ms`,
                // `max_client_sessions`).
                idle_timeout_ms: 3_600_000,
                max_sessions: 100_000,
            }
        });
        let command = Command::Put {
            key: Bytes::from(key),
            value: self.value.clone(),
            expect: Expect::Any,
        };
        Entry {
            term: 1,
            index: self.last,
            kind: EntryKind::Normal,
            data: Envelope { session, command }.encode(),
        }
    }

    /// The next `n` committed entries, each a put to a random key.
    fn next_batch(&mut self, n: usize) -> Vec<Entry> {
        (0..n)
            .map(|_| {
                let key = self.keys.below(KEYS);
                self.put_entry(format!("key-{key:06}"))
            })
            .collect()
    }

    /// Applies `entries` in one transaction; returns how long that took.
    fn apply(&mut self, entries: &[Entry]) -> Duration {
        let start = Instant::now();
        let outcomes = self.kv.apply(entries).expect("apply");
        let took = start.elapsed();
        debug_assert_eq!(outcomes.len(), entries.len());
        self.applied_since_flush += entries.len() as u64;
        took
    }

    /// Makes the state durable; returns how long that took.
    fn flush(&mut self) -> Duration {
        let start = Instant::now();
        self.kv.flush().expect("flush");
        self.applied_since_flush = 0;
        start.elapsed()
    }
}

fn apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply");
    for (name, with_session) in [("plain", false), ("session", true)] {
        for n in BATCHES {
            group.throughput(Throughput::Elements(n as u64));
            // Opened on first use, so that a filtered-out bench builds nothing.
            let mut sm: Option<StateMachine> = None;
            group.bench_function(BenchmarkId::new(name, n), |b| {
                let sm = sm.get_or_insert_with(|| StateMachine::open(with_session));
                b.iter_custom(|iters| {
                    let mut busy = Duration::ZERO;
                    for _ in 0..iters {
                        let batch = sm.next_batch(n);
                        busy += sm.apply(&batch);
                        if sm.applied_since_flush >= FLUSH_EVERY {
                            sm.flush();
                        }
                    }
                    busy
                });
            });
        }
    }
    group.finish();
}

fn flush(c: &mut Criterion) {
    let mut group = c.benchmark_group("flush");
    // Each sample applies 10,000 entries untimed per iteration: keep it short.
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    let mut sm: Option<StateMachine> = None;
    group.bench_function(format!("{FLUSH_EVERY}_entries"), |b| {
        let sm = sm.get_or_insert_with(|| StateMachine::open(false));
        b.iter_custom(|iters| {
            let mut busy = Duration::ZERO;
            for _ in 0..iters {
                // Batches of 16, as group commit hands them out under load.
                while sm.applied_since_flush < FLUSH_EVERY {
                    let batch = sm.next_batch(16);
                    sm.apply(&batch);
                }
                busy += sm.flush();
            }
            busy
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = settings::modest();
    targets = apply, flush
}
criterion_main!(benches);

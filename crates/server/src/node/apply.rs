//! Applying committed entries, answering the writes that became them and the reads
//! that wait for them, and making the state machine durable.
//!
//! The state machine's apply side sits behind a mutex ([`ApplyState`]). The
//! consensus thread applies inline when it can take the lock and nothing is queued
//! (the common case: no thread hand-off on a write's path); while the apply thread
//! holds the lock — above all during a flush, a durable redb commit that can take
//! 100 ms under load — work is queued to it instead, in order. So a slow flush
//! delays answers, never heartbeats or elections.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use keel_raft::{Entry, EntryKind, Index, NodeId, Role, Term};
use keel_storage::command::Envelope;
use keel_storage::kv::KvStore;
use tokio::sync::oneshot;

use super::requests::{ReadResult, WriteResult};
use super::waiters::Waiters;
use crate::error::ServerError;
use crate::events::EventLog;
use crate::metrics::{Metrics, gauge_value};

/// Jobs taken per state-machine transaction at most.
const MAX_JOBS_PER_BATCH: usize = 4096;

/// Work for the apply side, in the order the consensus thread produced it.
#[derive(Debug)]
pub(crate) enum ApplyJob {
    /// A write was proposed at `index` in `term` by `leader` (this node); answer it
    /// when that index applies.
    Register {
        index: Index,
        term: Term,
        leader: NodeId,
        deadline: Instant,
        reply: oneshot::Sender<WriteResult>,
    },
    /// Committed entries to apply, with who led and our role when they were handed out.
    Entries {
        entries: Vec<Entry>,
        leader: NodeId,
        role: Role,
    },
    /// A read confirmed at `index`: answer once applied that far.
    Read {
        index: Index,
        deadline: Instant,
        reply: oneshot::Sender<ReadResult>,
    },
    /// A leader's snapshot replaced the state machine (applied index `index`):
    /// reads waiting for it are answered (`snapshots.rs`).
    SnapshotInstalled { index: Index },
    /// Nothing to do: wakes an idle apply thread because the consensus thread
    /// left it a deadline to watch (see [`Applier`]).
    Watch,
}

/// The state machine's apply side and everything waiting on it.
pub(crate) struct ApplyState {
    pub(crate) kv: Arc<KvStore>,
    pub(crate) waiters: Waiters,
    pub(crate) events: Arc<Mutex<EventLog>>,
    /// Writes waiting, for the consensus thread's overload check.
    pub(crate) writes_in_flight: Arc<AtomicUsize>,
    pub(crate) metrics: Arc<Metrics>,
    /// Whether this is group 1's state machine, whose applied index and
    /// sessions the node-level gauges show (every group's applied index is
    /// in `group_metrics.rs`, published by the consensus thread).
    pub(crate) primary: bool,
    /// The state machine's applied index as of its last flush: WAL compaction
    /// waits for it (`snapshots.rs`).
    pub(crate) durable_applied: Arc<std::sync::atomic::AtomicU64>,
    /// The apply thread sleeps until a job arrives: nothing waits on it and
    /// everything applied is flushed. Whoever applies inline while it sleeps
    /// must wake it, or that apply would never be flushed. (Under the state's
    /// lock, like everything here: set and read with no wake-up lost.)
    pub(crate) asleep: bool,
}

impl ApplyState {
    /// Handles jobs in order, applying all their entries in one state-machine
    /// transaction. Registrations only need to precede the entries that answer
    /// them, and reads are answered after applying, so taking the batch's
    /// registrations and reads first keeps every ordering that matters.
    fn handle(&mut self, jobs: &mut Vec<ApplyJob>) -> Result<(), ServerError> {
        let mut entries: Vec<Entry> = Vec::new();
        // Where each handed-out batch ends in `entries`, with who led and our role.
        let mut batches: Vec<(usize, NodeId, Role)> = Vec::new();
        for job in jobs.drain(..) {
            match job {
                ApplyJob::Register {
                    index,
                    term,
                    leader,
                    deadline,
                    reply,
                } => self.waiters.add_write(index, term, deadline, reply, leader),
                ApplyJob::Read {
                    index,
                    deadline,
                    reply,
                } => self.waiters.add_read(index, deadline, reply),
                ApplyJob::Entries {
                    entries: mut batch,
                    leader,
                    role,
                } => {
                    entries.append(&mut batch);
                    batches.push((entries.len(), leader, role));
                }
                ApplyJob::SnapshotInstalled { index } => {
                    tracing::debug!("state machine replaced by a snapshot at index {index}");
                }
                ApplyJob::Watch => {}
            }
        }
        if !entries.is_empty() {
            let started = Instant::now();
            let outcomes = self.kv.apply(&entries)?;
            self.metrics
                .apply_seconds
                .observe(started.elapsed().as_secs_f64());
            self.metrics.applied_entries.inc_by(entries.len() as u64);
            if self.primary {
                self.metrics
                    .applied_index
                    .set(gauge_value(self.kv.applied_index()));
                self.metrics.sessions(self.kv.session_stats());
            }
            let mut events = self.events.lock().expect("event log lock poisoned");
            let log_entries = events.wants_entries();
            let mut start = 0;
            for (end, leader, role) in batches {
                for (entry, outcome) in entries[start..end].iter().zip(&outcomes[start..end]) {
                    self.waiters.applied(entry, outcome, leader);
                    if log_entries {
                        events.committed(role, &describe_entry(entry));
                    }
                }
                start = end;
            }
            events.flush();
        }
        self.waiters.serve_reads(self.kv.applied_index());
        self.writes_in_flight
            .store(self.waiters.writes(), Ordering::Relaxed);
        Ok(())
    }
}

/// The consensus thread's side: apply inline when possible, else queue.
pub(crate) struct ApplyHandle {
    state: Arc<Mutex<ApplyState>>,
    tx: Sender<ApplyJob>,
    /// Jobs sent to the apply thread and not yet taken by it.
    queued: Arc<AtomicUsize>,
    scratch: Vec<ApplyJob>,
}

impl ApplyHandle {
    /// Hands `job` on. Fails only if the apply side failed (the node must stop).
    pub(crate) fn submit(&mut self, job: ApplyJob) -> Result<(), ServerError> {
        // The consensus thread is the only producer, so with the lock held and the
        // queue empty, nothing submitted earlier is still pending: applying now
        // keeps the order. Heavy work always goes to the apply thread.
        if !job.is_heavy()
            && self.queued.load(Ordering::Acquire) == 0
            && let Ok(mut state) = self.state.try_lock()
            && self.queued.load(Ordering::Acquire) == 0
        {
            let was_idle = state.waiters.is_empty();
            let applied = state.kv.applied_index();
            self.scratch.push(job);
            state.handle(&mut self.scratch)?;
            // An idle apply thread sleeps until its next flush, or until a job
            // if it has nothing to flush: if this left it a deadline to expire,
            // wake it so it watches at tick granularity; if it applied entries
            // while the thread sleeps, wake it so it flushes them.
            let woken = (was_idle && !state.waiters.is_empty())
                || (state.asleep && state.kv.applied_index() != applied);
            if woken {
                state.asleep = false;
                drop(state);
                return self.queue(ApplyJob::Watch);
            }
            return Ok(());
        }
        self.queue(job)
    }

    fn queue(&self, job: ApplyJob) -> Result<(), ServerError> {
        self.queued.fetch_add(1, Ordering::AcqRel);
        self.tx
            .send(job)
            .map_err(|_| ServerError::Fatal("the apply thread stopped unexpectedly".into()))
    }
}

/// The apply thread: takes queued work while the consensus thread cannot apply
/// inline, expires deadlines, and flushes the state machine periodically.
///
/// It wakes every tick only while something waits (a deadline to expire);
/// otherwise it sleeps until its next flush or its next job, and with nothing
/// left to flush, until its next job only (the consensus thread wakes it when
/// it applies inline, see [`ApplyState::asleep`]). A node hosts one per group,
/// and a thousand idle groups waking a hundred times a second each cost more
/// than all their heartbeats; once a second each, still about 1% of a core
/// (BENCHMARKS.md, "Idle groups").
pub(crate) struct Applier {
    state: Arc<Mutex<ApplyState>>,
    jobs: Receiver<ApplyJob>,
    queued: Arc<AtomicUsize>,
    flush_interval: Duration,
    /// How often to expire deadlines when idle.
    tick: Duration,
}

/// Committed entries carrying more bytes than this are never applied inline
/// on the consensus thread. Applying a slot copy's pages (about a megabyte of
/// keys each, many per turn while a slot moves) inline held the consensus
/// thread of a leader past an election timeout: its followers elected another
/// leader and its check-quorum stepped it down, in every group it led, in the
/// middle of a move under load (`keel bench move`). Ordinary writes stay
/// under it: a turn of the write benchmark (64 clients, 256-byte values)
/// commits a few tens of KiB.
const MAX_INLINE_APPLY_BYTES: usize = 256 << 10;

impl ApplyJob {
    /// Whether applying this job may take long enough to stall the consensus
    /// thread (see [`MAX_INLINE_APPLY_BYTES`]).
    fn is_heavy(&self) -> bool {
        match self {
            ApplyJob::Entries { entries, .. } => {
                entries.iter().map(|e| e.data.len()).sum::<usize>() > MAX_INLINE_APPLY_BYTES
            }
            _ => false,
        }
    }
}

/// Bound on work queued for the apply thread (one job per proposed write, per
/// Ready's committed entries, per confirmed read): room for a slow flush at full
/// speed without stalling the consensus thread.
const MAX_QUEUED_APPLY_JOBS: usize = 65_536;

/// Builds both sides around one state.
pub(crate) fn apply_side(
    state: ApplyState,
    flush_interval: Duration,
    tick: Duration,
) -> (ApplyHandle, Applier) {
    let state = Arc::new(Mutex::new(state));
    let (tx, rx) = crossbeam_channel::bounded(MAX_QUEUED_APPLY_JOBS);
    let queued = Arc::new(AtomicUsize::new(0));
    (
        ApplyHandle {
            state: state.clone(),
            tx,
            queued: queued.clone(),
            scratch: Vec::new(),
        },
        Applier {
            state,
            jobs: rx,
            queued,
            flush_interval,
            tick,
        },
    )
}

impl Applier {
    /// Runs until the consensus thread hangs up (then takes what is queued,
    /// flushes and answers the rest), or a state machine error (the node must
    /// stop).
    pub(crate) fn run(self) -> Result<(), ServerError> {
        let result = self.main_loop();
        let mut state = self.state.lock().expect("apply state lock poisoned");
        // Proposed writes may still commit elsewhere: their outcome is unknown.
        state.waiters.fail_all();
        state.writes_in_flight.store(0, Ordering::Relaxed);
        if result.is_ok() {
            state.kv.flush()?;
        }
        result
    }

    fn main_loop(&self) -> Result<(), ServerError> {
        let mut next_flush = Instant::now() + self.flush_interval;
        let mut flushed_at = self
            .state
            .lock()
            .expect("apply state lock poisoned")
            .kv
            .applied_index();
        let mut jobs = Vec::new();
        let mut idle = false;
        let mut asleep = false;
        loop {
            let received = if asleep {
                self.jobs.recv().map_err(|_| RecvTimeoutError::Disconnected)
            } else {
                let wait = if idle {
                    next_flush.saturating_duration_since(Instant::now())
                } else {
                    self.tick
                };
                self.jobs.recv_timeout(wait)
            };
            let hung_up = match received {
                Ok(job) => {
                    jobs.push(job);
                    false
                }
                Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => true,
            };
            let mut state = self.state.lock().expect("apply state lock poisoned");
            if std::mem::take(&mut asleep) {
                state.asleep = false;
                // What this job applies is flushed one interval from now, as
                // if the last flush had just happened.
                next_flush = Instant::now() + self.flush_interval;
            }
            // Take everything queued, under the lock, so that the consensus thread
            // sees a non-zero count until this batch is handled.
            while jobs.len() < MAX_JOBS_PER_BATCH {
                match self.jobs.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            let taken = jobs.len();
            state.handle(&mut jobs)?;
            self.queued.fetch_sub(taken, Ordering::AcqRel);
            let now = Instant::now();
            state.waiters.expire(now);
            idle = state.waiters.is_empty();
            if now >= next_flush {
                next_flush = now + self.flush_interval;
                let applied = state.kv.applied_index();
                if applied != flushed_at {
                    let started = Instant::now();
                    state.kv.flush()?;
                    state.durable_applied.fetch_max(applied, Ordering::AcqRel);
                    state
                        .metrics
                        .state_flush_seconds
                        .observe(started.elapsed().as_secs_f64());
                    flushed_at = applied;
                }
            }
            // Nothing waits and everything applied is durable: nothing to do
            // until a job comes (an idle group's thread then costs nothing).
            if idle && !hung_up && state.kv.applied_index() == flushed_at {
                asleep = true;
                state.asleep = true;
            }
            drop(state);
            if hung_up {
                return Ok(());
            }
        }
    }
}

/// `SET k v`, `DEL k` or `NO-OP`, for the event log. A client session is left
/// out: its id means nothing to an operator reading events (`keel wal dump`
/// shows it).
fn describe_entry(e: &Entry) -> String {
    match e.kind {
        EntryKind::NoOp => "NO-OP".to_string(),
        EntryKind::ConfChange => "CONFIG-CHANGE".to_string(),
        EntryKind::Normal => match Envelope::decode(&e.data) {
            Ok(c) => c.command.to_string(),
            Err(_) => "<undecodable entry>".to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn entries(sizes: &[usize]) -> ApplyJob {
        let entries = sizes
            .iter()
            .zip(1..)
            .map(|(&size, index)| Entry {
                term: 1,
                index,
                kind: EntryKind::Normal,
                data: Bytes::from(vec![0u8; size]),
            })
            .collect();
        ApplyJob::Entries {
            entries,
            leader: 1,
            role: Role::Leader,
        }
    }

    /// Polls `cond` until it holds, or fails after 10 s.
    fn eventually(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "never: {what}");
            std::thread::yield_now();
        }
    }

    #[test]
    fn an_idle_apply_thread_sleeps_and_an_inline_apply_wakes_it_to_flush() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vfs = Arc::new(keel_storage::vfs::StdVfs::new());
        let kv = Arc::new(KvStore::open(vfs, &dir.path().join("state.redb")).expect("kv"));
        let durable = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let state = ApplyState {
            kv,
            waiters: Waiters::default(),
            events: Arc::new(Mutex::new(EventLog::open(1, None).expect("events"))),
            writes_in_flight: Arc::new(AtomicUsize::new(0)),
            metrics: Arc::new(Metrics::new()),
            primary: true,
            durable_applied: durable.clone(),
            asleep: false,
        };
        let tick = Duration::from_millis(10);
        let (mut handle, applier) = apply_side(state, 2 * tick, tick);
        let shared = handle.state.clone();
        let asleep = move || shared.lock().expect("lock").asleep;
        let thread = std::thread::spawn(move || applier.run());
        eventually("nothing to flush: it sleeps until a job", &asleep);
        // The consensus thread applies inline while the thread sleeps: the
        // entry must still be flushed, about one interval later.
        let noop = ApplyJob::Entries {
            entries: vec![Entry {
                term: 1,
                index: 1,
                kind: EntryKind::NoOp,
                data: Bytes::new(),
            }],
            leader: 1,
            role: Role::Leader,
        };
        handle.submit(noop).expect("applied");
        eventually("the inline apply is flushed", || {
            durable.load(Ordering::Acquire) == 1
        });
        eventually("flushed: it sleeps again", &asleep);
        drop(handle);
        thread.join().expect("joined").expect("stopped cleanly");
    }

    #[test]
    fn only_entries_over_the_inline_bound_are_heavy() {
        assert!(!entries(&[100, 200]).is_heavy());
        assert!(!entries(&[MAX_INLINE_APPLY_BYTES]).is_heavy());
        assert!(entries(&[MAX_INLINE_APPLY_BYTES, 1]).is_heavy());
        assert!(entries(&[1 << 20]).is_heavy());
        let read = ApplyJob::SnapshotInstalled { index: 5 };
        assert!(!read.is_heavy());
    }
}

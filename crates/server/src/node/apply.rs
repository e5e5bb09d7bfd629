//! The apply thread: applies committed entries to the state machine off the
//! consensus thread, answers the writes that became them and the reads that wait
//! for them, and makes the state machine durable periodically (a flush may take a
//! while; here it delays applies and answers, never heartbeats or elections).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use keel_raft::{Entry, EntryKind, Index, NodeId, Role, Term};
use keel_storage::command::Command;
use keel_storage::kv::KvStore;
use tokio::sync::oneshot;

use super::requests::{ReadResult, WriteResult};
use super::waiters::Waiters;
use crate::error::ServerError;
use crate::events::EventLog;

/// Jobs taken per state-machine transaction at most.
const MAX_JOBS_PER_BATCH: usize = 4096;

/// Work for the apply thread, in the order the consensus thread produced it.
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
}

pub(crate) struct Applier {
    pub(crate) kv: Arc<KvStore>,
    pub(crate) jobs: Receiver<ApplyJob>,
    pub(crate) events: Arc<std::sync::Mutex<EventLog>>,
    pub(crate) flush_interval: Duration,
    /// Writes waiting here, for the consensus thread's overload check.
    pub(crate) writes_in_flight: Arc<AtomicUsize>,
    /// How often to expire deadlines when idle.
    pub(crate) tick: Duration,
}

impl Applier {
    /// Runs until the consensus thread hangs up (then applies what is queued, flushes
    /// and answers the rest), or a state machine error (the node must stop).
    pub(crate) fn run(self) -> Result<(), ServerError> {
        let mut waiters = Waiters::default();
        let result = self.main_loop(&mut waiters);
        // Proposed writes may still commit elsewhere: their outcome is unknown.
        waiters.fail_all();
        self.writes_in_flight.store(0, Ordering::Relaxed);
        if result.is_ok() {
            self.kv.flush()?;
        }
        result
    }

    fn main_loop(&self, waiters: &mut Waiters) -> Result<(), ServerError> {
        let mut next_flush = Instant::now() + self.flush_interval;
        let mut flushed_at = self.kv.applied_index();
        let mut jobs = Vec::new();
        loop {
            match self.jobs.recv_timeout(self.tick) {
                Ok(job) => jobs.push(job),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
            while jobs.len() < MAX_JOBS_PER_BATCH {
                match self.jobs.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            self.handle(&mut jobs, waiters)?;
            let now = Instant::now();
            waiters.serve_reads(self.kv.applied_index());
            waiters.expire(now);
            self.writes_in_flight
                .store(waiters.writes(), Ordering::Relaxed);
            if now >= next_flush {
                next_flush = now + self.flush_interval;
                let applied = self.kv.applied_index();
                if applied != flushed_at {
                    self.kv.flush()?;
                    flushed_at = applied;
                }
            }
        }
    }

    /// Handles a batch of jobs, applying all their entries in one state-machine
    /// transaction. Registrations only need to precede the entries that answer
    /// them, and reads are answered after applying, so taking the batch's
    /// registrations and reads first keeps every ordering that matters.
    fn handle(&self, jobs: &mut Vec<ApplyJob>, waiters: &mut Waiters) -> Result<(), ServerError> {
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
                } => waiters.add_write(index, term, deadline, reply, leader),
                ApplyJob::Read {
                    index,
                    deadline,
                    reply,
                } => waiters.add_read(index, deadline, reply),
                ApplyJob::Entries {
                    entries: mut batch,
                    leader,
                    role,
                } => {
                    entries.append(&mut batch);
                    batches.push((entries.len(), leader, role));
                }
            }
        }
        if entries.is_empty() {
            return Ok(());
        }
        let outcomes = self.kv.apply(&entries)?;
        let mut events = self.events.lock().expect("event log lock poisoned");
        let log_entries = events.wants_entries();
        let mut start = 0;
        for (end, leader, role) in batches {
            for (entry, outcome) in entries[start..end].iter().zip(&outcomes[start..end]) {
                waiters.applied(entry, outcome, leader);
                if log_entries {
                    events.committed(role, &describe_entry(entry));
                }
            }
            start = end;
        }
        events.flush();
        Ok(())
    }
}

/// `SET k v`, `DEL k` or `NO-OP`, for the event log.
fn describe_entry(e: &Entry) -> String {
    match e.kind {
        EntryKind::NoOp => "NO-OP".to_string(),
        EntryKind::ConfChange => "CONFIG-CHANGE".to_string(),
        EntryKind::Normal => match Command::decode(&e.data) {
            Ok(c) => c.to_string(),
            Err(_) => "<undecodable entry>".to_string(),
        },
    }
}

//! The consensus thread: the one place the core runs.
//!
//! Each turn of the loop collects inputs (peer messages, client requests, ticks),
//! steps the core, then carries out every `Ready` in the order its contract states:
//! send, persist with one fsync for everything collected, send what needed the
//! fsync, apply, answer clients, advance. Requests that arrive during an fsync wait
//! in the channel and are batched into the next turn, which is what makes the WAL
//! commit in groups under load.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, select};
use keel_raft::{EntryKind, Message, ProposeError, Raft, ReadIndexError, Role};
use keel_storage::command::Command;
use keel_storage::kv::KvStore;
use keel_storage::wal::Wal;
use tokio::sync::watch;

use super::pending::Pending;
use super::recover::KV_GROUP;
use super::requests::{NodeError, Request};
use super::status::NodeStatus;
use crate::error::ServerError;
use crate::events::EventLog;
use crate::transport::Transport;

/// Inputs handled per turn before the core's output is processed, so that ticks and
/// fsyncs are not starved by a flood.
const MAX_INPUTS_PER_TURN: usize = 4096;
/// Ticks replayed at most after the thread was paused (e.g. SIGSTOP): enough to
/// time out an election, without spinning through hours of missed ticks.
const MAX_CATCH_UP_TICKS: u32 = 1000;

pub(crate) struct Driver {
    pub(crate) raft: Raft,
    pub(crate) wal: Wal,
    pub(crate) kv: Arc<KvStore>,
    pub(crate) transport: Transport,
    pub(crate) events: EventLog,
    pub(crate) peer_rx: Receiver<Message>,
    pub(crate) req_rx: Receiver<Request>,
    pub(crate) shutdown_rx: Receiver<()>,
    pub(crate) status_tx: watch::Sender<NodeStatus>,
    pub(crate) tick: Duration,
    pub(crate) flush_interval: Duration,
    pub(crate) max_pending: usize,
    /// Term and vote as last made durable.
    pub(crate) durable_term_vote: (u64, u64),
}

impl Driver {
    /// Runs until shutdown (Ok) or a fatal error (the node must stop).
    pub(crate) fn run(mut self) -> Result<(), ServerError> {
        let mut pending = Pending::default();
        let result = self.main_loop(&mut pending);
        if let Err(e) = &result {
            tracing::error!("node stopping: {e}");
            self.events
                .note(&format!("Node {} stopped: {e}", self.raft.id()));
        }
        pending.fail_all();
        // Requests still queued were never proposed: they definitely did not apply.
        while let Ok(r) = self.req_rx.try_recv() {
            match r {
                Request::Write { reply, .. } => drop(reply.send(Err(NodeError::ShuttingDown))),
                Request::ReadBarrier { reply, .. } => {
                    drop(reply.send(Err(NodeError::ShuttingDown)))
                }
            }
        }
        if result.is_ok() {
            if let Err(e) = self.kv.flush() {
                tracing::error!("could not flush the state machine at shutdown: {e}");
            }
            self.events
                .note(&format!("Node {} shut down cleanly.", self.raft.id()));
        }
        self.events.flush();
        result
    }

    fn main_loop(&mut self, pending: &mut Pending) -> Result<(), ServerError> {
        let mut next_tick = Instant::now() + self.tick;
        let mut next_flush = Instant::now() + self.flush_interval;
        let mut flushed_at = self.kv.applied_index();
        let mut role = self.raft.role();
        // Show the recovered state at once, not only after the first turn.
        self.publish_status();
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            select! {
                recv(self.peer_rx) -> m => {
                    if let Ok(m) = m { self.step(m) }
                }
                recv(self.req_rx) -> r => {
                    if let Ok(r) = r { self.handle_request(r, pending) }
                }
                recv(self.shutdown_rx) -> _ => return Ok(()),
                default(wait) => {}
            }
            for _ in 0..MAX_INPUTS_PER_TURN {
                let mut idle = true;
                if let Ok(m) = self.peer_rx.try_recv() {
                    self.step(m);
                    idle = false;
                }
                if let Ok(r) = self.req_rx.try_recv() {
                    self.handle_request(r, pending);
                    idle = false;
                }
                if idle {
                    break;
                }
            }
            let now = Instant::now();
            let mut ticks = 0;
            while now >= next_tick {
                if ticks < MAX_CATCH_UP_TICKS {
                    self.raft.tick();
                    ticks += 1;
                }
                next_tick += self.tick;
            }
            self.process_ready(pending, &mut role)?;
            pending.serve_reads(self.kv.applied_index());
            pending.expire(now);
            if now >= next_flush {
                next_flush = now + self.flush_interval;
                let applied = self.kv.applied_index();
                if applied != flushed_at {
                    self.kv.flush()?;
                    flushed_at = applied;
                }
            }
            self.publish_status();
            self.events.flush();
        }
    }

    fn step(&mut self, m: Message) {
        if let Err(e) = self.raft.step(m) {
            tracing::warn!("dropped a peer message: {e}");
        }
    }

    fn handle_request(&mut self, r: Request, pending: &mut Pending) {
        if pending.len() >= self.max_pending {
            let err = NodeError::Overloaded(format!("{} requests in flight", pending.len()));
            match r {
                Request::Write { reply, .. } => drop(reply.send(Err(err))),
                Request::ReadBarrier { reply, .. } => drop(reply.send(Err(err))),
            }
            return;
        }
        match r {
            Request::Write {
                data,
                deadline,
                reply,
            } => match self.raft.propose(data) {
                Ok((index, term)) => {
                    pending.add_write(index, term, deadline, reply, self.raft.id())
                }
                Err(e) => {
                    let err = match e {
                        ProposeError::NotLeader { leader } => NodeError::NotLeader { leader },
                        ProposeError::Overloaded { .. } => NodeError::Overloaded(e.to_string()),
                        ProposeError::TooLarge { .. } => NodeError::Invalid(e.to_string()),
                    };
                    let _ = reply.send(Err(err));
                }
            },
            Request::ReadBarrier { deadline, reply } => {
                let ctx = pending.add_read(deadline, reply);
                if let Err(e) = self.raft.read_index(ctx) {
                    let err = match e {
                        ReadIndexError::NotLeader { leader } => NodeError::NotLeader { leader },
                        ReadIndexError::Overloaded { .. } => NodeError::Overloaded(e.to_string()),
                    };
                    pending.fail_read(ctx, err);
                }
            }
        }
    }

    /// Carries out every Ready per the contract documented on `keel_raft::Ready`.
    fn process_ready(&mut self, pending: &mut Pending, role: &mut Role) -> Result<(), ServerError> {
        while self.raft.has_ready() {
            let mut rd = self.raft.ready();
            // 1. The leader replicates in parallel with its own fsync.
            self.transport.send_all(&mut rd.messages);
            // 2. Persist. Only entries and term/vote need the fsync; a commit-index
            //    change rides along with the next one.
            let mut must_sync = !rd.entries.is_empty();
            if !rd.entries.is_empty() {
                self.wal.append_entries(KV_GROUP, &rd.entries)?;
            }
            if let Some(hs) = rd.hard_state {
                // Term and vote must be durable before any message depending on them
                // leaves; a commit-index change alone need not be.
                must_sync |= (hs.term, hs.vote) != self.durable_term_vote;
                self.wal.set_hard_state(KV_GROUP, hs)?;
            }
            if must_sync {
                // An fsync failure poisons the WAL; returning stops the node.
                self.wal.sync().map_err(|e| {
                    ServerError::Fatal(format!(
                        "WAL fsync failed, stopping to protect the log: {e}"
                    ))
                })?;
                let hs = self.raft.hard_state();
                self.durable_term_vote = (hs.term, hs.vote);
            }
            // 3. Messages that promise durability.
            self.transport.send_all(&mut rd.persisted_messages);
            if let Some(ss) = rd.soft_state {
                if *role == Role::Leader && ss.role != Role::Leader {
                    pending.leadership_lost(ss.leader);
                }
                *role = ss.role;
            }
            for e in rd.events.drain(..) {
                self.events.core_event(&e);
            }
            // 4. Apply, then answer the writes that became these entries.
            if !rd.committed_entries.is_empty() {
                let outcomes = self.kv.apply(&rd.committed_entries)?;
                // Publish before answering, so a client that saw its write
                // acknowledged never then reads an older status.
                self.publish_status();
                let leader = self.raft.leader();
                let log_entries = self.events.wants_entries();
                for (entry, outcome) in rd.committed_entries.iter().zip(&outcomes) {
                    pending.applied(entry, outcome, leader);
                    if log_entries {
                        self.events.committed(*role, &describe_entry(entry));
                    }
                }
            }
            for rs in rd.read_states.drain(..) {
                pending.confirm_read(rs.ctx, rs.index);
            }
            // 5. Done.
            self.raft.advance(rd);
        }
        Ok(())
    }

    fn publish_status(&self) {
        let s = self.raft.status();
        let applied = self.kv.applied_index();
        self.status_tx.send_if_modified(|cur| {
            let next = NodeStatus {
                id: s.id,
                role: s.role,
                term: s.term,
                leader: s.leader,
                commit: s.commit,
                applied,
                last_index: s.last_index,
                peers: s.peers.clone(),
            };
            if *cur == next {
                false
            } else {
                *cur = next;
                true
            }
        });
    }
}

/// `SET k v`, `DEL k` or `NO-OP`, for the event log.
fn describe_entry(e: &keel_raft::Entry) -> String {
    match e.kind {
        EntryKind::NoOp => "NO-OP".to_string(),
        EntryKind::ConfChange => "CONFIG-CHANGE".to_string(),
        EntryKind::Normal => match Command::decode(&e.data) {
            Ok(c) => c.to_string(),
            Err(_) => "<undecodable entry>".to_string(),
        },
    }
}

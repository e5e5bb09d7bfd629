//! The consensus thread: the one place the core runs, and the WAL's writer.
//!
//! Each turn collects inputs (peer messages, client requests, ticks), steps the
//! core, and carries out every `Ready`: messages go out at once (the leader
//! replicates while its own fsync runs); entries and hard state are appended to the
//! WAL with one fsync for the whole turn; then the messages that promised
//! durability go out; committed entries and confirmed reads are applied and
//! answered inline, or queued to the apply thread while it holds the state machine
//! (`apply.rs`: it owns the state machine's slow flushes).
//! Requests that arrive during an fsync wait in the channel and are proposed
//! together in the next turn, which makes the WAL commit in groups under load.
//!
//! (A separate WAL thread was measured too: overlapping the leader's fsync with
//! the followers' did not pay for the extra hand-offs per Ready on this hardware;
//! see BENCHMARKS.md.)

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, select};
use keel_raft::{Message, MessageBody, NodeId, ProposeError, Raft, ReadIndexError, Role};
use keel_storage::kv::KvStore;
use tokio::sync::watch;

use keel_storage::wal::Wal;

use super::apply::{ApplyHandle, ApplyJob};
use super::reads::UnconfirmedReads;
use super::recover::KV_GROUP;
use super::requests::{NodeError, Request};
use super::status::NodeStatus;
use crate::error::ServerError;
use crate::events::EventLog;
use crate::metrics::{Metrics, gauge_value};
use crate::transport::Transport;

/// Inputs handled per turn before the core's output is processed, so that ticks are
/// not starved by a flood.
const MAX_INPUTS_PER_TURN: usize = 4096;
/// Ticks replayed at most after the thread was paused (e.g. SIGSTOP): enough to
/// time out an election, without spinning through hours of missed ticks.
const MAX_CATCH_UP_TICKS: u32 = 1000;

pub(crate) struct Driver {
    pub(crate) raft: Raft,
    pub(crate) kv: Arc<KvStore>,
    pub(crate) transport: Transport,
    pub(crate) events: Arc<std::sync::Mutex<EventLog>>,
    pub(crate) peer_rx: Receiver<Message>,
    pub(crate) req_rx: Receiver<Request>,
    /// The apply thread, if it stopped on an error, says why here.
    pub(crate) fatal_rx: Receiver<String>,
    pub(crate) shutdown_rx: Receiver<()>,
    pub(crate) wal: Wal,
    /// Term and vote as last made durable: only changes to them (and entries) need
    /// an fsync; a commit-index change rides along with the next one.
    pub(crate) durable_term_vote: (u64, u64),
    pub(crate) apply: ApplyHandle,
    pub(crate) status_tx: watch::Sender<NodeStatus>,
    pub(crate) tick: Duration,
    pub(crate) max_pending: usize,
    pub(crate) writes_in_flight: Arc<AtomicUsize>,
    pub(crate) reads: UnconfirmedReads,
    pub(crate) role: Role,
    pub(crate) metrics: Arc<Metrics>,
    /// When the oldest unanswered heartbeat to each peer went out, for the
    /// round-trip metric.
    pub(crate) heartbeats_out: BTreeMap<NodeId, Instant>,
    /// The leader as last reported by the core, to count leader changes.
    pub(crate) last_leader: NodeId,
    /// Snapshots: taking, sending, installing (`snapshots.rs`).
    pub(crate) snapshots: super::snapshots::Snapshots,
    /// Member book, promotions, operators' changes (`membership.rs`).
    pub(crate) membership: super::membership::Membership,
    /// Where API handlers find the lease (`lease.rs`).
    pub(crate) lease: Arc<super::lease::LeaseCell>,
    /// The clock leases are measured on; the core reads it before every input.
    pub(crate) clock: super::lease::LeaseClock,
    /// Free space, and WAL writes waiting for it (`disk.rs`).
    pub(crate) disk: super::disk::DiskWatch,
}

impl Driver {
    /// Runs until shutdown (Ok) or a fatal error (the node must stop). Dropping the
    /// driver hangs up on the apply thread, which then finishes its queue.
    pub(crate) fn run(mut self) -> Result<(), ServerError> {
        let result = self.main_loop();
        self.reads.fail_all();
        self.fail_deferred_changes();
        // Requests still queued were never proposed: they definitely did not apply.
        while let Ok(r) = self.req_rx.try_recv() {
            match r {
                Request::Write { reply, .. } => drop(reply.send(Err(NodeError::ShuttingDown))),
                Request::ReadBarrier { reply, .. } | Request::WaitApplied { reply, .. } => {
                    drop(reply.send(Err(NodeError::ShuttingDown)))
                }
                Request::TransferLeader { reply, .. } => {
                    drop(reply.send(Err(NodeError::ShuttingDown)))
                }
                Request::ChangeMembers { reply, .. } => {
                    drop(reply.send(Err(NodeError::ShuttingDown)))
                }
            }
        }
        result
    }

    fn main_loop(&mut self) -> Result<(), ServerError> {
        let mut next_tick = Instant::now() + self.tick;
        // Show the recovered state at once, not only after the first turn.
        let status = self.raft.status();
        self.membership_turn(&status)?;
        self.publish_status(status);
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            select! {
                recv(self.peer_rx) -> m => {
                    if let Ok(m) = m { self.step(m) }
                }
                recv(self.req_rx) -> r => {
                    if let Ok(r) = r { self.handle_request(r)? }
                }
                recv(self.fatal_rx) -> e => {
                    return Err(ServerError::Fatal(e.unwrap_or_else(|_| "the apply thread stopped".into())));
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
                    self.handle_request(r)?;
                    idle = false;
                }
                if idle {
                    break;
                }
            }
            let now = Instant::now();
            self.raft.set_clock(self.clock.now());
            let mut ticks = 0;
            while now >= next_tick {
                if ticks < MAX_CATCH_UP_TICKS {
                    self.raft.tick();
                    ticks += 1;
                }
                next_tick += self.tick;
            }
            self.disk_turn()?;
            self.snapshot_turn()?;
            self.process_ready()?;
            // A heartbeat answer may have renewed the lease without a Ready.
            self.lease
                .publish(self.raft.lease(), self.raft.commit_index());
            self.reads.expire(now);
            let status = self.raft.status();
            self.membership_turn(&status)?;
            self.publish_status(status);
        }
    }

    fn step(&mut self, m: Message) {
        if let MessageBody::HeartbeatResponse { .. } = m.body
            && let Some(sent) = self.heartbeats_out.remove(&m.from)
        {
            self.metrics.peer_round_trip(m.from, sent.elapsed());
        }
        // Read the clock for every message: a lease heard in it must be measured
        // from no earlier than its arrival.
        self.raft.set_clock(self.clock.now());
        if let Err(e) = self.raft.step(m) {
            tracing::warn!("dropped a peer message: {e}");
        }
    }

    fn handle_request(&mut self, r: Request) -> Result<(), ServerError> {
        // Control requests are few and must get through even under load.
        let r = match r {
            Request::TransferLeader { to, reply } => {
                self.transfer_leader(to, reply);
                return Ok(());
            }
            Request::ChangeMembers {
                change,
                deadline,
                reply,
            } => return self.change_members(change, deadline, reply),
            r => r,
        };
        let in_flight = self.writes_in_flight.load(Ordering::Relaxed) + self.reads.len();
        if in_flight >= self.max_pending {
            let err = NodeError::Overloaded(format!("{in_flight} requests in flight"));
            match r {
                Request::Write { reply, .. } => drop(reply.send(Err(err))),
                Request::ReadBarrier { reply, .. } | Request::WaitApplied { reply, .. } => {
                    drop(reply.send(Err(err)))
                }
                Request::TransferLeader { reply, .. } => drop(reply.send(Err(err))),
                Request::ChangeMembers { reply, .. } => drop(reply.send(Err(err))),
            }
            return Ok(());
        }
        match r {
            Request::Write {
                data,
                deadline,
                reply,
            } => match self.raft.propose(data) {
                Ok((index, term)) => {
                    self.metrics.proposals.inc();
                    // Counted here, so a burst within one turn is bounded too; the
                    // apply thread recounts as it answers.
                    self.writes_in_flight.fetch_add(1, Ordering::Relaxed);
                    self.hand_to_apply(ApplyJob::Register {
                        index,
                        term,
                        leader: self.raft.id(),
                        deadline,
                        reply,
                    })?;
                }
                Err(e) => {
                    let (err, reason) = match e {
                        ProposeError::NotLeader { leader } => {
                            (NodeError::NotLeader { leader }, "not_leader")
                        }
                        ProposeError::Overloaded { .. } => {
                            (NodeError::Overloaded(e.to_string()), "overloaded")
                        }
                        ProposeError::TooLarge { .. } => {
                            (NodeError::Invalid(e.to_string()), "too_large")
                        }
                        // The target is about to lead: send the client there.
                        ProposeError::TransferInProgress { to } => {
                            (NodeError::NotLeader { leader: to }, "transfer")
                        }
                        ProposeError::DiskFull => (
                            NodeError::DiskFull(self.disk.client_message(self.raft.id())),
                            "disk_full",
                        ),
                    };
                    self.metrics.refused(reason);
                    let _ = reply.send(Err(err));
                }
            },
            Request::ReadBarrier { deadline, reply } => {
                let ctx = self.reads.add(deadline, reply);
                if let Err(e) = self.raft.read_index(ctx) {
                    let err = match e {
                        ReadIndexError::NotLeader { leader } => NodeError::NotLeader { leader },
                        ReadIndexError::Overloaded { .. } => NodeError::Overloaded(e.to_string()),
                    };
                    self.reads.fail(ctx, err);
                }
            }
            Request::WaitApplied {
                index,
                deadline,
                reply,
            } => self.hand_to_apply(ApplyJob::Read {
                index,
                deadline,
                reply,
            })?,
            Request::TransferLeader { to, reply } => self.transfer_leader(to, reply),
            Request::ChangeMembers {
                change,
                deadline,
                reply,
            } => return self.change_members(change, deadline, reply),
        }
        Ok(())
    }

    /// Carries out every Ready per the contract documented on `keel_raft::Ready`
    /// (synchronous persistence, asynchronous applying).
    fn process_ready(&mut self) -> Result<(), ServerError> {
        while self.raft.has_ready() {
            let mut rd = self.raft.ready();
            // 0. Before anything leaves: a lease a transfer ended is withdrawn before
            //    its TimeoutNow goes out, and a commit index is visible to lease
            //    reads before any follower can serve reads at it.
            self.lease
                .publish(self.raft.lease(), self.raft.commit_index());
            // 1. The leader replicates in parallel with its own fsync.
            self.note_heartbeats(&rd.messages);
            // New members' addresses first: messages to them may be in this Ready.
            self.note_conf_entries(&rd.entries);
            self.divert_snapshot_messages(&mut rd.messages);
            self.transport.send_all(&mut rd.messages);
            if let Some(ss) = rd.soft_state {
                if ss.leader != self.last_leader && ss.leader != keel_raft::NO_NODE {
                    self.metrics.leader_changes.inc();
                }
                // Reads waiting on a leader that is gone (ours, or the one a
                // follower asked) will never be confirmed: answer them now.
                if (self.role == Role::Leader && ss.role != Role::Leader)
                    || ss.leader != self.last_leader
                {
                    self.reads.leadership_lost(ss.leader);
                }
                self.last_leader = ss.leader;
                self.role = ss.role;
            }
            if !rd.events.is_empty() {
                let mut events = self.events.lock().expect("event log lock poisoned");
                for e in rd.events.drain(..) {
                    events.core_event(&e);
                }
                events.flush();
            }
            // 2. Persist. Only entries and term/vote need the fsync; a commit-index
            //    change rides along with the next one.
            let persist_started = Instant::now();
            if let Some(meta) = rd.snapshot.take() {
                // Installed and made durable before this Ready's entries.
                self.install_snapshot(meta)?;
            }
            let mut must_sync = !rd.entries.is_empty();
            if !rd.entries.is_empty() {
                self.wal.append_entries(KV_GROUP, &rd.entries)?;
            }
            if let Some(hs) = rd.hard_state {
                must_sync |= (hs.term, hs.vote) != self.durable_term_vote;
                self.wal.set_hard_state(KV_GROUP, hs)?;
            }
            if self.disk.stalled() {
                // Earlier writes wait for space: this Ready's wait behind them
                // (`disk_turn` retries them).
                self.disk.queue(rd.number);
            } else if must_sync && !crate::test_bugs::skip_wal_sync() {
                let sync_started = Instant::now();
                match self.wal.sync() {
                    Ok(()) => {
                        let now = Instant::now();
                        self.metrics
                            .wal_fsync_seconds
                            .observe((now - sync_started).as_secs_f64());
                        self.metrics
                            .wal_append_seconds
                            .observe((now - persist_started).as_secs_f64());
                        let hs = self.raft.hard_state();
                        self.durable_term_vote = (hs.term, hs.vote);
                    }
                    // Nothing was written that recovery could misread, and the
                    // records stay buffered in the WAL (`disk.rs`).
                    Err(e) if e.is_no_space() => {
                        self.metrics.wal_no_space.inc();
                        tracing::warn!("{e}");
                        self.disk.stall(rd.number, &e);
                    }
                    // A failed write or fsync poisons the WAL; returning stops the node.
                    Err(e) => {
                        return Err(ServerError::Fatal(format!(
                            "WAL write failed, stopping to protect the log: {e}"
                        )));
                    }
                }
            }
            // 3. Messages that promise durability — dropped while the writes wait
            //    for space (a lost message is always safe; an early one never is).
            if self.disk.stalled() {
                rd.persisted_messages.clear();
            } else {
                self.transport.send_all(&mut rd.persisted_messages);
            }
            // 4. Applies and confirmed reads, in Ready order (inline, or queued to
            //    the apply thread while it holds the state machine).
            if !rd.committed_entries.is_empty() {
                self.hand_to_apply(ApplyJob::Entries {
                    entries: std::mem::take(&mut rd.committed_entries),
                    leader: self.raft.leader(),
                    role: self.role,
                })?;
            }
            for rs in rd.read_states.drain(..) {
                if let Some(r) = self.reads.confirm(rs.ctx) {
                    self.hand_to_apply(ApplyJob::Read {
                        index: rs.index,
                        deadline: r.deadline,
                        reply: r.reply,
                    })?;
                }
            }
            if self.disk.stalled() {
                // Durable only once a retry succeeds (`on_persisted`).
                self.raft.advance_async(rd);
                self.sync_disk_state();
                continue;
            }
            // 5. Done: the entries are durable and handed to the apply side.
            self.raft.advance(rd);
        }
        Ok(())
    }

    pub(super) fn hand_to_apply(&mut self, job: ApplyJob) -> Result<(), ServerError> {
        self.apply.submit(job).map_err(|e| {
            // If the apply thread stopped, its own report says why.
            match self.fatal_rx.try_recv() {
                Ok(reason) => ServerError::Fatal(reason),
                Err(_) => e,
            }
        })
    }

    /// Notes when the oldest unanswered heartbeat to each peer went out.
    fn note_heartbeats(&mut self, messages: &[Message]) {
        let now = Instant::now();
        for m in messages {
            if let MessageBody::Heartbeat { .. } = m.body {
                let sent = self.heartbeats_out.entry(m.to).or_insert(now);
                // A heartbeat or its answer was lost: start over rather than
                // report the gap as a round trip.
                if now.duration_since(*sent) > Duration::from_secs(1) {
                    *sent = now;
                }
            }
        }
    }

    fn publish_status(&self, s: keel_raft::Status) {
        let applied = self.kv.applied_index();
        let m = &self.metrics;
        m.term.set(gauge_value(s.term));
        m.commit_index.set(gauge_value(s.commit));
        m.is_leader.set(i64::from(s.role == Role::Leader));
        m.queued_requests.set(gauge_value(self.req_rx.len() as u64));
        m.queued_peer_messages
            .set(gauge_value(self.peer_rx.len() as u64));
        m.writes_in_flight.set(gauge_value(
            self.writes_in_flight.load(Ordering::Relaxed) as u64
        ));
        m.reads_unconfirmed
            .set(gauge_value(self.reads.len() as u64));
        self.status_tx.send_if_modified(|cur| {
            let next = NodeStatus {
                id: s.id,
                role: s.role,
                term: s.term,
                leader: s.leader,
                commit: s.commit,
                applied,
                last_index: s.last_index,
                peers: s.peers,
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

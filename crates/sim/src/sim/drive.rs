//! Driving one node: feeding it inputs, and the part of carrying out a `Ready` that
//! both forms of the contract share (`sync_driver` and `async_driver` do the rest).
//!
//! Shared: take the `Ready`, send its `messages` at once (step 1) — an
//! `InstallSnapshot` starts a snapshot transfer instead — record what the core's log
//! now holds (after a leader's snapshot: the committed log up to it), apply
//! committed entries in `Ready` order (step 4), and show the checker the core's
//! role, term and commit index after every call. Between inputs the runtime's
//! snapshot work runs (`snapshots`).
//!
//! The checker observes every write, fsync, apply and every change of role, term or
//! commit index as it happens.

use keel_raft::{Entry, Message, MessageBody, NodeId, ProposeError, Ready};

use super::{Simulation, Stop};
use crate::checker::{Invariant, Violation};
use crate::config::{Bug, Time};
use crate::network::{self, CUT};
use crate::node::{Driver, Input, Process};
use crate::trace::{MsgSummary, TraceEvent};

impl Simulation {
    /// Node `id`'s running process, its core told the node's clock reading: every
    /// call into a core goes through here, so the core's clock is always current.
    pub(super) fn process_mut(&mut self, id: NodeId) -> Option<&mut Process> {
        let now = self.clock(id);
        let p = self.node_mut(id).process.as_mut()?;
        p.core.set_clock(now);
        Some(p)
    }

    /// Node `id`'s clock reading now.
    pub(super) fn clock(&self, id: NodeId) -> u64 {
        self.node(id).clock.read(self.now)
    }

    pub(super) fn on_tick(&mut self, id: NodeId, incarnation: u32) -> Result<(), Stop> {
        let node = self.node(id);
        if node.incarnation != incarnation || !node.is_up() {
            // A tick of a process that has since crashed.
            return Ok(());
        }
        let period = node.clock.tick_period();
        self.schedule(
            period,
            super::Scheduled::Tick {
                node: id,
                incarnation,
            },
        );
        self.record(TraceEvent::Tick(id));
        self.feed(id, Input::Tick)
    }

    pub(super) fn on_deliver(&mut self, m: Message) -> Result<(), Stop> {
        let why = if self.net.is_cut(self.host_of(m.from), self.host_of(m.to)) {
            Some(CUT)
        } else if !self.node(m.to).is_up() {
            Some("recipient down")
        } else {
            None
        };
        if let Some(why) = why {
            self.record(TraceEvent::Lost {
                msg: MsgSummary::of(&m),
                why,
            });
            return Ok(());
        }
        self.record(TraceEvent::Deliver(MsgSummary::of(&m)));
        self.feed(m.to, Input::Message(m))
    }

    /// Hands `input` to replica `id`: at once, or — for a synchronous node with an
    /// fsync in flight (of any of its groups: the server's consensus thread waits
    /// for it) — after it, or — for a paused node — when it resumes.
    pub(super) fn feed(&mut self, id: NodeId, input: Input) -> Result<(), Stop> {
        if self.is_paused(id) {
            let incarnation = self.node(id).incarnation;
            let held = self.hold_if_paused(super::Scheduled::Feed {
                node: id,
                incarnation,
                input,
            });
            debug_assert!(held.is_none(), "a paused node holds its inputs");
            return Ok(());
        }
        let busy = self.sync_in_flight(self.host_of(id));
        let Some(p) = self.process_mut(id) else {
            return Ok(());
        };
        if let Driver::Sync(d) = &mut p.driver
            && busy
        {
            d.inbox.push_back(input);
            return Ok(());
        }
        self.input(id, input)?;
        self.drive(id)
    }

    /// Calls the core with one input.
    pub(super) fn input(&mut self, id: NodeId, input: Input) -> Result<(), Stop> {
        self.touched.push(id);
        if let Input::Compact { meta, trailing } = input {
            return self.compact(id, meta, trailing);
        }
        if matches!(input, Input::Tick) {
            // The runtime's quiescence duties come before the tick: a leader that
            // quiesces sends its mark instead of one more ordinary heartbeat.
            self.detect_silent_leader(id);
            self.maybe_quiesce(id);
        }
        let Some(p) = self.process_mut(id) else {
            return Ok(());
        };
        match input {
            Input::Tick => p.core.tick(),
            Input::Message(m) => {
                if let Err(e) = p.core.step(m) {
                    // The simulator only delivers well-formed messages of this group.
                    return Err(Violation::new(
                        Invariant::CoreInvariant,
                        vec![id],
                        format!("node {id} refused a well-formed message: {e}"),
                    )
                    .into());
                }
            }
            Input::Propose { attempt, data } => {
                let result = match p.core.propose(data) {
                    Ok(at) => Ok(at),
                    Err(ProposeError::NotLeader { leader }) => Err(leader),
                    // Overloaded or too large: this node leads, try it again later.
                    Err(_) => Err(id),
                };
                self.record(TraceEvent::Propose {
                    node: id,
                    proposal: attempt,
                    accepted: result.ok(),
                });
                self.client(id).on_proposed(attempt, result);
            }
            Input::ConfChange(change) => {
                let outcome = match p.core.propose_conf_change(change) {
                    Ok((index, term)) => format!("appended at {index}@{term}"),
                    Err(e) => format!("refused: {e}"),
                };
                self.stats.conf_changes += u64::from(outcome.starts_with("appended"));
                self.record(TraceEvent::Admin {
                    node: id,
                    what: format!("{change:?}"),
                    outcome,
                });
            }
            Input::Transfer(to) => {
                let outcome = match p.core.transfer_leader(to) {
                    Ok(()) => "started".to_string(),
                    Err(e) => format!("refused: {e}"),
                };
                self.stats.transfers += u64::from(outcome == "started");
                self.record(TraceEvent::Admin {
                    node: id,
                    what: format!("transfer leadership to {to}"),
                    outcome,
                });
            }
            Input::SnapshotReport { peer, success } => p.core.report_snapshot(peer, success),
            Input::Read { ctx } => {
                let asked = p.core.read_index(ctx).is_ok();
                let leader = p.core.role() == keel_raft::Role::Leader;
                self.on_read_asked(id, ctx, asked, leader);
            }
            Input::Compact { .. } => unreachable!("handled above"),
        }
        Ok(())
    }

    /// Takes and carries out `Ready`s as far as the node's form of the contract
    /// allows — for a synchronous node, of every group it hosts, as the server's
    /// turn does — then does the runtime's snapshot work.
    pub(super) fn drive(&mut self, id: NodeId) -> Result<(), Stop> {
        match self.node(id).process.as_ref().map(|p| &p.driver) {
            None => Ok(()),
            Some(Driver::Sync(_)) => {
                let host = self.host_of(id);
                self.drive_sync(host)?;
                self.snapshot_turns(host)
            }
            Some(Driver::Async(_)) => {
                self.drive_async(id)?;
                self.snapshot_turn(id)
            }
        }
    }

    /// An fsync completed (if it belongs to the current incarnation): a
    /// synchronous node's (`id` is the node), or an asynchronous replica's
    /// storage thread's.
    pub(super) fn on_sync_done(&mut self, id: NodeId, incarnation: u32) -> Result<(), Stop> {
        if self.node(id).incarnation != incarnation {
            return Ok(());
        }
        match self.node(id).process.as_ref().map(|p| &p.driver) {
            None => Ok(()),
            Some(Driver::Sync(_)) => {
                self.sync_done(id)?;
                self.snapshot_turns(id)
            }
            Some(Driver::Async(_)) => {
                self.async_fsync_done(id)?;
                self.snapshot_turn(id)
            }
        }
    }

    /// The snapshot work of every replica node `host` hosts.
    fn snapshot_turns(&mut self, host: NodeId) -> Result<(), Stop> {
        for id in self.replicas_on(host) {
            self.snapshot_turn(id)?;
        }
        Ok(())
    }

    /// Takes the core's next `Ready`, if it has one, and does what both forms of the
    /// contract do first: record role changes, send `messages` (step 1), and show the
    /// checker and the client the core's log as it now stands.
    pub(super) fn take_ready(&mut self, id: NodeId) -> Result<Option<Ready>, Stop> {
        let Some(p) = self.process_mut(id) else {
            return Ok(None);
        };
        if !p.core.has_ready() {
            return Ok(None);
        }
        let mut rd = p.core.ready();
        let term = p.core.term();
        self.touched.push(id);
        if let Some(ss) = rd.soft_state {
            self.record(TraceEvent::Role {
                node: id,
                role: ss.role,
                term,
                leader: ss.leader,
            });
        }
        for m in std::mem::take(&mut rd.messages) {
            if matches!(m.body, MessageBody::InstallSnapshot { .. }) {
                self.start_transfer(m)?;
            } else {
                self.send(m);
            }
        }
        if let Some(meta) = &rd.snapshot {
            self.on_restored(id, meta)?;
        }
        self.checker(id).on_log(id, &rd.entries)?;
        self.client(id).on_write(id, &rd.entries);
        self.observe(id)?;
        for e in &rd.events {
            if let keel_raft::Event::WaitingForOldLease { term, remaining } = *e {
                self.record(TraceEvent::LeaseWait {
                    node: id,
                    term,
                    remaining,
                });
            }
        }
        // Confirmed reads may be served as soon as the state machine is far enough
        // (they need no fsync).
        let read_states = std::mem::take(&mut rd.read_states);
        self.on_read_states(id, &read_states)?;
        Ok(Some(rd))
    }

    /// Gives storage one `Ready`'s writes (not yet durable).
    pub(super) fn write(
        &mut self,
        id: NodeId,
        entries: &[Entry],
        hard_state: Option<keel_raft::HardState>,
    ) -> Result<(), Stop> {
        let p = self.process_mut(id).expect("driven nodes run");
        if let Err(error) = p.storage.write(entries, hard_state) {
            return Err(Stop::Storage { node: id, error });
        }
        self.record(TraceEvent::Write {
            node: id,
            entries: entries
                .first()
                .zip(entries.last())
                .map(|(a, b)| (a.index, b.index)),
            hard_state: hard_state.map(|hs| (hs.term, hs.vote, hs.commit)),
        });
        self.checker(id).on_write(id, entries, hard_state);
        Ok(())
    }

    /// Fsyncs the storage of replica `id` — the node's WAL, shared by every group
    /// it hosts: everything any of them wrote becomes durable. `readys` is how
    /// many `Ready`s the fsync covers (for the trace).
    pub(super) fn fsync(&mut self, id: NodeId, readys: usize) -> Result<(), Stop> {
        let p = self.process_mut(id).expect("driven nodes run");
        if let Err(error) = p.storage.sync() {
            return Err(Stop::Storage { node: id, error });
        }
        self.stats.fsyncs += 1;
        for r in self.replicas_on(self.host_of(id)) {
            if self.node(r).is_up() {
                self.checker(r).on_sync(r);
            }
        }
        self.record(TraceEvent::Synced { node: id, readys });
        Ok(())
    }

    /// A random fsync latency for node `id`'s disk.
    pub(super) fn fsync_latency(&mut self, id: NodeId) -> Time {
        let max = self
            .node(id)
            .process
            .as_ref()
            .map_or(super::lifecycle::FSYNC_MAX, |p| p.fsync_max);
        self.rng.range(1, max)
    }

    /// Step 4 of the contract: applies committed entries, in order, and tells the
    /// client about those it was waiting for.
    pub(super) fn apply(&mut self, id: NodeId, committed: Vec<Entry>) -> Result<(), Stop> {
        let (Some(first), Some(last)) = (committed.first(), committed.last()) else {
            return Ok(());
        };
        let (first, last) = (first.index, last.index);
        // The server flushes the state machine periodically; flushing after a
        // random eighth of the batches leaves crashes both just before and long
        // after a flush (and keeps redb's fsync copies from dominating the run).
        let flush = self.rng.one_in(8);
        let incarnation = self.node(id).incarnation;
        // The checker first: an entry that is not durable yet must be reported before
        // a flush could make the state machine outlive it.
        for e in &committed {
            self.checker(id).on_apply(id, e)?;
        }
        let p = self.process_mut(id).expect("driven nodes run");
        let applied = p.storage.apply(&committed);
        let flushed = match applied {
            Ok(()) if flush => p.storage.flush(),
            other => other,
        };
        if let Err(error) = flushed {
            return Err(Stop::Storage { node: id, error });
        }
        if flush {
            p.snaps.durable_applied = p.storage.applied_index();
        }
        self.record(TraceEvent::Apply {
            node: id,
            first,
            last,
        });
        let now = self.now;
        for e in &committed {
            if let Some(attempt) = self.client(id).on_apply(id, incarnation, e, now)? {
                self.record(TraceEvent::Ack {
                    node: id,
                    proposal: attempt,
                    index: e.index,
                });
                let at = self.moment();
                self.checker(id).on_ack(at, attempt, e.index);
            }
        }
        self.serve_applied_reads(id)
    }

    /// Shows the checker the core's role, term and commit index.
    pub(super) fn observe(&mut self, id: NodeId) -> Result<(), Stop> {
        let Some(core) = self.node(id).core() else {
            return Ok(());
        };
        let (role, term, commit) = (core.role(), core.term(), core.commit_index());
        self.checker(id).observe(id, role, term, commit)?;
        Ok(())
    }

    /// Hands a message to the network.
    pub(super) fn send(&mut self, m: Message) {
        debug_assert!(
            !matches!(m.body, MessageBody::InstallSnapshot { .. }),
            "snapshots travel as transfers"
        );
        let (from, to) = (self.host_of(m.from), self.host_of(m.to));
        let delays = self.net.route(from, to, &mut self.rng);
        self.stats.messages += 1;
        if self.quiet_at(self.now) {
            self.stats.quiet_messages += 1;
        }
        self.record(TraceEvent::Send {
            msg: MsgSummary::of(&m),
            copies: delays.len() as u8,
        });
        for delay in delays {
            let mut copy = m.clone();
            if self.bug(Bug::CorruptEntries) {
                network::corrupt(&mut copy, &mut self.rng);
            }
            self.schedule(delay, super::Scheduled::Deliver(copy));
        }
    }
}

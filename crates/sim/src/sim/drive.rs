//! Driving one node: feeding it inputs and carrying out each `Ready` exactly as its
//! ordering contract says.
//!
//! 1. send `messages` at once;
//! 2. write `entries` and `hard_state` to storage, and start the fsync — which takes
//!    simulated time, during which new inputs wait in the node's inbox (the core
//!    must not be called between `ready` and `advance`) and a crash may strike;
//! 3. when the fsync completes, send `persisted_messages`;
//! 4. apply `committed_entries`;
//! 5. `advance`, then work through the inputs that queued up meanwhile.
//!
//! The checker observes every write, fsync, apply and every change of role, term or
//! commit index as it happens.

use keel_raft::{Message, MessageBody, NodeId, ProposeError, Ready};

use super::{Scheduled, Simulation, Stop};
use crate::checker::{Invariant, Violation};
use crate::config::{Bug, TICK};
use crate::network::{self, CUT};
use crate::node::{Input, Process};
use crate::trace::{MsgSummary, TraceEvent};

impl Simulation {
    fn process_mut(&mut self, id: NodeId) -> Option<&mut Process> {
        self.node_mut(id).process.as_mut()
    }

    pub(super) fn on_tick(&mut self, id: NodeId, incarnation: u32) -> Result<(), Stop> {
        let node = self.node(id);
        if node.incarnation != incarnation || !node.is_up() {
            // A tick of a process that has since crashed.
            return Ok(());
        }
        let period = node.tick_period;
        self.schedule(
            period,
            Scheduled::Tick {
                node: id,
                incarnation,
            },
        );
        self.record(TraceEvent::Tick(id));
        self.feed(id, Input::Tick)
    }

    pub(super) fn on_deliver(&mut self, m: Message) -> Result<(), Stop> {
        let why = if self.net.is_cut(m.from, m.to) {
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

    /// Hands `input` to node `id`: at once, or after its fsync in flight.
    pub(super) fn feed(&mut self, id: NodeId, input: Input) -> Result<(), Stop> {
        let Some(p) = self.process_mut(id) else {
            return Ok(());
        };
        if p.syncing.is_some() {
            p.inbox.push_back(input);
            return Ok(());
        }
        self.input(id, input)?;
        self.drive(id)
    }

    /// Calls the core with one input.
    fn input(&mut self, id: NodeId, input: Input) -> Result<(), Stop> {
        self.touched.push(id);
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
                self.client.on_proposed(attempt, result);
            }
        }
        Ok(())
    }

    /// Takes and carries out `Ready`s until the core has none, or one needs an fsync.
    pub(super) fn drive(&mut self, id: NodeId) -> Result<(), Stop> {
        loop {
            let Some(p) = self.process_mut(id) else {
                return Ok(());
            };
            if p.syncing.is_some() || !p.core.has_ready() {
                return Ok(());
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
                self.send(m);
            }
            self.write(id, &rd)?;
            if !rd.must_sync() {
                self.finish(id, rd)?;
                continue;
            }
            if self.bug(Bug::AckBeforeSync) {
                for m in std::mem::take(&mut rd.persisted_messages) {
                    self.send(m);
                }
            }
            let latency = self.rng.range(1, TICK / 5);
            let incarnation = self.node(id).incarnation;
            if let Some(p) = self.process_mut(id) {
                p.syncing = Some(rd);
            }
            self.schedule(
                latency,
                Scheduled::SyncDone {
                    node: id,
                    incarnation,
                },
            );
            return Ok(());
        }
    }

    /// Step 2 of the contract, minus the fsync.
    fn write(&mut self, id: NodeId, rd: &Ready) -> Result<(), Stop> {
        if !rd.must_sync() {
            return self.observe(id);
        }
        let p = self.process_mut(id).expect("driven nodes run");
        if let Err(error) = p.storage.write(&rd.entries, rd.hard_state) {
            return Err(Stop::Storage { node: id, error });
        }
        self.record(TraceEvent::Write {
            node: id,
            entries: rd
                .entries
                .first()
                .zip(rd.entries.last())
                .map(|(a, b)| (a.index, b.index)),
            hard_state: rd.hard_state.map(|hs| (hs.term, hs.vote, hs.commit)),
        });
        self.checker.on_write(id, &rd.entries, rd.hard_state)?;
        self.client.on_write(id, &rd.entries);
        self.observe(id)
    }

    pub(super) fn on_sync_done(&mut self, id: NodeId, incarnation: u32) -> Result<(), Stop> {
        if self.node(id).incarnation != incarnation {
            return Ok(());
        }
        let Some(p) = self.process_mut(id) else {
            return Ok(());
        };
        let Some(rd) = p.syncing.take() else {
            return Ok(());
        };
        if let Err(error) = p.storage.sync() {
            return Err(Stop::Storage { node: id, error });
        }
        self.checker.on_sync(id);
        self.record(TraceEvent::Synced(id));
        let voted = rd.persisted_messages.iter().any(|m| {
            matches!(
                m.body,
                MessageBody::RequestVoteResponse {
                    granted: true,
                    pre_vote: false
                }
            )
        });
        self.finish(id, rd)?;
        if voted {
            self.maybe_crash_after_vote(id);
        }
        self.drain(id)
    }

    /// Steps 3 to 5 of the contract, once the `Ready`'s writes are durable.
    fn finish(&mut self, id: NodeId, mut rd: Ready) -> Result<(), Stop> {
        for m in std::mem::take(&mut rd.persisted_messages) {
            self.send(m);
        }
        let committed = std::mem::take(&mut rd.committed_entries);
        if let (Some(first), Some(last)) = (committed.first(), committed.last()) {
            // The server flushes the state machine periodically; flushing after a
            // random eighth of the batches leaves crashes both just before and long
            // after a flush (and keeps redb's fsync copies from dominating the run).
            let flush = self.rng.one_in(8);
            let p = self.process_mut(id).expect("driven nodes run");
            let applied = p.storage.apply(&committed);
            let flushed = match applied {
                Ok(()) if flush => p.storage.flush(),
                other => other,
            };
            if let Err(error) = flushed {
                return Err(Stop::Storage { node: id, error });
            }
            self.record(TraceEvent::Apply {
                node: id,
                first: first.index,
                last: last.index,
            });
            let incarnation = self.node(id).incarnation;
            for e in &committed {
                self.checker.on_apply(id, e)?;
                if let Some(attempt) = self.client.on_apply(id, incarnation, e, self.now)? {
                    self.record(TraceEvent::Ack {
                        node: id,
                        proposal: attempt,
                        index: e.index,
                    });
                }
            }
        }
        let p = self.process_mut(id).expect("driven nodes run");
        p.core.advance(rd);
        self.touched.push(id);
        self.observe(id)
    }

    /// Works through inputs that queued up during an fsync, until the node has none
    /// left or starts another fsync.
    fn drain(&mut self, id: NodeId) -> Result<(), Stop> {
        loop {
            self.drive(id)?;
            let Some(p) = self.process_mut(id) else {
                return Ok(());
            };
            if p.syncing.is_some() {
                return Ok(());
            }
            let Some(input) = p.inbox.pop_front() else {
                return Ok(());
            };
            self.input(id, input)?;
        }
    }

    /// Shows the checker the core's role, term and commit index.
    pub(super) fn observe(&mut self, id: NodeId) -> Result<(), Stop> {
        let Some(core) = self.node(id).core() else {
            return Ok(());
        };
        let (role, term, commit) = (core.role(), core.term(), core.commit_index());
        self.checker.observe(id, role, term, commit)?;
        Ok(())
    }

    /// Hands a message to the network.
    pub(super) fn send(&mut self, m: Message) {
        let delays = self.net.route(m.from, m.to, &mut self.rng);
        self.stats.messages += 1;
        self.record(TraceEvent::Send {
            msg: MsgSummary::of(&m),
            copies: delays.len() as u8,
        });
        for delay in delays {
            let mut copy = m.clone();
            if self.bug(Bug::CorruptEntries) {
                network::corrupt(&mut copy, &mut self.rng);
            }
            self.schedule(delay, Scheduled::Deliver(copy));
        }
    }
}

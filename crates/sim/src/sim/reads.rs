//! The client's reads at the nodes (see `crate::reads` for the modes).
//!
//! About once a tick the client issues a read of a recently written key: a
//! linearizable or a stale read to a random node, or a lease read to a node that
//! believes it leads (any of them, if several do: a client still talking to a
//! deposed leader is what leases must be safe against). A node serves it:
//!
//! - stale: from its state machine at once;
//! - lease: if its core holds a lease (`Raft::lease`) valid at the node's clock,
//!   once its state machine has applied the commit index of that moment — and only
//!   if the lease of the same term still holds then, as the server checks it after
//!   reading; otherwise through ReadIndex;
//! - linearizable: through ReadIndex (`Raft::read_index`): the core answers with
//!   a `ReadState` in a `Ready` (a follower's comes from the leader), and the read
//!   is served once the state machine has applied its index. The injected bug
//!   `follower-read-without-read-index` serves a follower's read at once instead.
//!
//! Every served read goes to the checker with what it returned: the node's
//! applied index and the key's value.

use keel_raft::{NodeId, ReadState, Role};

use super::{Scheduled, Simulation, Stop};
use crate::checker::{Moment, ReadRecord};
use crate::config::{Bug, TICK};
use crate::node::Input;
use crate::reads::{ReadMode, ReadPath, Stage};
use crate::trace::{ReadStep, TraceEvent};

/// The client gives up on a read after this many election timeouts (longer than
/// any pause, so a read a paused node holds is answered when it resumes).
const READ_TIMEOUT_ELECTIONS: u64 = 5;

impl Simulation {
    /// Now, as the read checker orders events.
    pub(super) fn moment(&self) -> Moment {
        Moment {
            step: self.step,
            time: self.now,
        }
    }

    /// The client's read timer: gives up on reads that took too long, and issues
    /// a new one.
    pub(super) fn on_client_read(&mut self) -> Result<(), Stop> {
        let next = self.rng.range(TICK / 5, 2 * TICK);
        self.schedule(next, Scheduled::ClientRead);
        let timeout = READ_TIMEOUT_ELECTIONS * self.election_time();
        if let Some(before) = self.now.checked_sub(timeout) {
            self.stats.reads_unanswered += self.reads.expire(before) as u64;
        }
        if self.client_idle() {
            return Ok(());
        }
        let mode = match self.rng.below(10) {
            0..=3 => ReadMode::Linearizable,
            4..=7 => ReadMode::Lease,
            _ => ReadMode::Stale,
        };
        let group = self.pick_group();
        let node = self.read_target(group, mode);
        let gi = (group - 1) as usize;
        let key = self.clients[gi].recent_key(&mut self.rng);
        let incarnation = self.node(node).incarnation;
        let invoked = (self.moment(), self.checkers[gi].committed_len());
        let id = self.reads.issue(node, incarnation, mode, key, invoked);
        self.stats.reads_issued += 1;
        // Through `handle`, so that a paused node holds it.
        self.handle(Scheduled::ReadArrives(id))
    }

    /// Lease reads go to a replica of `group` that believes it leads; the others
    /// to any of its replicas.
    fn read_target(&mut self, group: keel_raft::GroupId, mode: ReadMode) -> NodeId {
        let ids = self.group_ids(group);
        let leaders: Vec<NodeId> = ids
            .iter()
            .copied()
            .filter(|&id| {
                self.node(id)
                    .core()
                    .is_some_and(|c| c.role() == Role::Leader)
            })
            .collect();
        match self.rng.pick(&leaders) {
            Some(l) if mode == ReadMode::Lease => l,
            _ => self.rng.pick(&ids).expect("a cluster has nodes"),
        }
    }

    /// Read `id` reaches its node.
    pub(super) fn on_read_arrives(&mut self, id: u64) -> Result<(), Stop> {
        let Some(r) = self.reads.get(id) else {
            // Given up on while a paused node held it.
            return Ok(());
        };
        let (node, mode, key) = (r.node, r.mode, r.key.clone());
        let n = self.node(node);
        if n.incarnation != r.incarnation || !n.is_up() {
            // Connection refused.
            self.reads.take(id);
            self.stats.reads_unanswered += 1;
            return Ok(());
        }
        self.read_event(node, id, ReadStep::Issued { mode, key });
        match mode {
            ReadMode::Stale => self.serve(id, ReadPath::Local),
            ReadMode::Lease => self.lease_read(id),
            ReadMode::Linearizable => {
                let follower = self
                    .node(node)
                    .core()
                    .is_some_and(|c| c.role() != Role::Leader);
                if follower && self.bug(Bug::FollowerReadWithoutReadIndex) {
                    self.serve(id, ReadPath::Local)
                } else {
                    self.feed(node, Input::Read { ctx: id })
                }
            }
        }
    }

    /// A lease read: under the node's lease if it holds one now, else through
    /// ReadIndex.
    fn lease_read(&mut self, id: u64) -> Result<(), Stop> {
        let node = self.reads.node_of(id).expect("a pending read");
        let clock = self.clock(node);
        let lease = self
            .process_mut(node)
            .and_then(|p| Some((p.core.lease()?, p.core.commit_index())));
        match lease {
            Some((lease, commit)) if clock < lease.valid_until => {
                self.read_event(
                    node,
                    id,
                    ReadStep::UnderLease {
                        term: lease.term,
                        clock,
                        valid_until: lease.valid_until,
                        commit,
                    },
                );
                let r = self.reads.get_mut(id).expect("a pending read");
                r.path = ReadPath::Lease(lease.term);
                r.stage = Stage::Applying { index: commit };
                self.serve_applied_reads(node)
            }
            _ => {
                self.lease_fallback(node, id);
                Ok(())
            }
        }
    }

    /// Sends a lease read that found no valid lease through ReadIndex — as a new
    /// input of its own, since this may run while a synchronous node's core must
    /// not be called (applying, between `ready` and `advance`).
    fn lease_fallback(&mut self, node: NodeId, id: u64) {
        self.stats.lease_fallbacks += 1;
        self.read_event(node, id, ReadStep::NoLease);
        if let Some(r) = self.reads.get_mut(id) {
            r.stage = Stage::Arriving;
        }
        let incarnation = self.node(node).incarnation;
        self.schedule(
            0,
            Scheduled::Feed {
                node,
                incarnation,
                input: Input::Read { ctx: id },
            },
        );
    }

    /// Node `node`'s core was asked for read `ctx`'s read index, as leader or not;
    /// `asked` is false if it refused.
    pub(super) fn on_read_asked(&mut self, node: NodeId, ctx: u64, asked: bool, leader: bool) {
        if !asked {
            self.reads.take(ctx);
            self.stats.reads_unanswered += 1;
            self.read_event(node, ctx, ReadStep::Refused);
            return;
        }
        if let Some(r) = self.reads.get_mut(ctx) {
            r.stage = Stage::Confirming;
            r.path = if leader {
                ReadPath::LeaderReadIndex
            } else {
                ReadPath::FollowerReadIndex
            };
        }
        self.read_event(node, ctx, ReadStep::Asked);
    }

    /// Node `node`'s core confirmed reads (`Ready::read_states`): each is served
    /// once its index is applied.
    pub(super) fn on_read_states(
        &mut self,
        node: NodeId,
        states: &[ReadState],
    ) -> Result<(), Stop> {
        if states.is_empty() {
            return Ok(());
        }
        for rs in states {
            let Some(r) = self.reads.get_mut(rs.ctx) else {
                // Given up on, or asked by a crashed incarnation.
                continue;
            };
            if r.node != node || r.stage != Stage::Confirming {
                // A duplicated answer.
                continue;
            }
            r.stage = Stage::Applying { index: rs.index };
            self.read_event(node, rs.ctx, ReadStep::Confirmed { index: rs.index });
        }
        self.serve_applied_reads(node)
    }

    /// Serves every read waiting for node `node`'s state machine that it has now
    /// reached. A lease read is served only if its lease still holds (the server
    /// checks after reading); otherwise it falls back to ReadIndex.
    pub(super) fn serve_applied_reads(&mut self, node: NodeId) -> Result<(), Stop> {
        let n = self.node(node);
        let Some(p) = n.process.as_ref() else {
            return Ok(());
        };
        let ready = self
            .reads
            .ready_at(node, n.incarnation, p.storage.applied_index());
        let clock = self.clock(node);
        let lease = p.core.lease().filter(|l| clock < l.valid_until);
        let mut fallbacks = Vec::new();
        for id in ready {
            let path = self.reads.get(id).expect("ready reads are pending").path;
            match path {
                ReadPath::Lease(term) if lease.is_none_or(|l| l.term != term) => {
                    fallbacks.push(id);
                }
                _ => self.serve(id, path)?,
            }
        }
        for id in fallbacks {
            self.lease_fallback(node, id);
        }
        Ok(())
    }

    /// Node answers read `id` from its state machine, and the checker judges the
    /// answer.
    fn serve(&mut self, id: u64, path: ReadPath) -> Result<(), Stop> {
        let r = self.reads.take(id).expect("served reads are pending");
        let p = self
            .node(r.node)
            .process
            .as_ref()
            .expect("reads are served by running nodes");
        let index = p.storage.applied_index();
        let value = p.storage.get(&r.key).map_err(|error| Stop::Storage {
            node: r.node,
            error,
        })?;
        let counter = match path {
            ReadPath::Lease(_) => &mut self.stats.reads_lease,
            ReadPath::LeaderReadIndex => &mut self.stats.reads_leader_index,
            ReadPath::FollowerReadIndex => &mut self.stats.reads_follower_index,
            ReadPath::Local => &mut self.stats.reads_local,
        };
        *counter += 1;
        self.read_event(
            r.node,
            id,
            ReadStep::Served {
                path,
                index,
                found: value.is_some(),
            },
        );
        let record = ReadRecord {
            id,
            node: r.node,
            mode: r.mode,
            path,
            key: r.key,
            invoked: r.invoked,
            committed: r.committed,
            completed: self.moment(),
            index,
            value,
        };
        self.checker(record.node).on_read(&record)?;
        Ok(())
    }

    /// Node `node` crashed: the reads it was serving are lost.
    pub(super) fn reads_on_crash(&mut self, node: NodeId) {
        self.stats.reads_unanswered += self.reads.drop_node(node) as u64;
    }

    fn read_event(&mut self, node: NodeId, read: u64, step: ReadStep) {
        self.record(TraceEvent::Read { node, read, step });
    }
}

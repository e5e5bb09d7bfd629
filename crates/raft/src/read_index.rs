//! ReadIndex (thesis §6.4): a leader serves a linearizable read after confirming,
//! with one heartbeat round to a quorum, that it was still the leader when the read
//! arrived. One round confirms every read that arrived before it was sent.
//!
//! Followers serve linearizable reads too: they ask the leader for a read index
//! (`ReadIndex` message), the leader confirms it like its own reads and answers
//! with the index, and the follower serves the read once it has applied that far.

use std::collections::{BTreeMap, VecDeque};

use crate::error::ReadIndexError;
use crate::message::MessageBody;
use crate::quorum;
use crate::raft::Raft;
use crate::ready::{ReadState, Role};
use crate::types::{Index, NO_NODE, NodeId};

/// Reads waiting on one leader; cleared whenever leadership ends.
const MAX_PENDING_READS: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct PendingRead {
    /// Who asked: this node, or a follower to answer with a message.
    from: NodeId,
    ctx: u64,
    index: Index,
    /// The heartbeat round that confirms this read.
    seq: u64,
}

#[derive(Debug, Default)]
pub(crate) struct ReadOnly {
    /// Reads that arrived before the leader committed an entry of its own term: its
    /// commit index may still lag the true one (thesis §6.4 step 1).
    waiting_for_commit: Vec<(NodeId, u64)>,
    pending: VecDeque<PendingRead>,
    /// Sequence number of the latest heartbeat round.
    seq: u64,
    /// Reads are queued for round `seq + 1`, which has not been sent yet.
    round_needed: bool,
    /// Highest round each voter has answered.
    acks: BTreeMap<NodeId, u64>,
}

impl ReadOnly {
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    pub(crate) fn round_needed(&self) -> bool {
        self.round_needed
    }

    /// Opens a new round whether or not reads wait for it (a heartbeat that
    /// renews the lease).
    pub(crate) fn force_round(&mut self) {
        self.round_needed = false;
        self.seq += 1;
    }

    /// Opens round `seq + 1` if reads wait for it; returns whether to broadcast.
    pub(crate) fn start_round(&mut self) -> bool {
        if self.round_needed {
            self.round_needed = false;
            self.seq += 1;
            true
        } else {
            false
        }
    }

    pub(crate) fn ack(&mut self, from: NodeId, seq: u64) {
        let e = self.acks.entry(from).or_default();
        *e = (*e).max(seq);
    }

    pub(crate) fn clear(&mut self) {
        // Keep `seq` growing across terms; answers to old rounds stay harmless.
        let seq = self.seq;
        *self = ReadOnly::default();
        self.seq = seq;
    }

    /// Reads queued on this leader, confirmed or not.
    pub(crate) fn pending_count(&self) -> usize {
        self.len()
    }

    fn len(&self) -> usize {
        self.waiting_for_commit.len() + self.pending.len()
    }
}

impl Raft {
    /// A read asked of this node: queued on the leader, passed to the leader by
    /// anyone else who knows one.
    pub(crate) fn request_read(&mut self, ctx: u64) -> Result<(), ReadIndexError> {
        // A quiesced leader confirms the read with a heartbeat round, and a quiesced
        // follower waits for the leader's answer with its timer running.
        self.wake_up();
        match self.role {
            Role::Leader => self.queue_read(self.cfg.id, ctx),
            Role::Follower if self.leader != NO_NODE => {
                self.send(self.leader, MessageBody::ReadIndex { ctx }, false);
                Ok(())
            }
            _ => Err(ReadIndexError::NotLeader {
                leader: self.leader,
            }),
        }
    }

    /// Leader: a follower asks for a read index. Dropped when overloaded (the
    /// follower's runtime times the read out).
    pub(crate) fn handle_read_index_request(&mut self, from: NodeId, ctx: u64) {
        if self.role == Role::Leader {
            let _ = self.queue_read(from, ctx);
        }
    }

    /// Follower: the leader confirmed a read we passed on.
    pub(crate) fn handle_read_index_response(&mut self, ctx: u64, index: Index) {
        self.read_states.push(ReadState { ctx, index });
    }

    fn queue_read(&mut self, from: NodeId, ctx: u64) -> Result<(), ReadIndexError> {
        // A read is activity: the group stays awake for a while after it.
        self.idle_ticks = 0;
        let pending = self.read_only.len();
        if pending >= MAX_PENDING_READS {
            return Err(ReadIndexError::Overloaded { pending });
        }
        if self.log.term(self.log.committed) != Some(self.term) && !self.skips_term_start_noop() {
            self.read_only.waiting_for_commit.push((from, ctx));
        } else {
            self.register_read(from, ctx);
        }
        Ok(())
    }

    fn register_read(&mut self, from: NodeId, ctx: u64) {
        let index = self.log.committed;
        if self.voters.len() == 1 && self.voters.contains(&self.cfg.id) {
            // Nobody else can have been elected: the read is confirmed already.
            self.deliver_read(from, ctx, index);
            return;
        }
        let seq = self.read_only.seq + 1;
        self.read_only.pending.push_back(PendingRead {
            from,
            ctx,
            index,
            seq,
        });
        self.read_only.round_needed = true;
    }

    fn deliver_read(&mut self, from: NodeId, ctx: u64, index: Index) {
        if from == self.cfg.id {
            self.read_states.push(ReadState { ctx, index });
        } else {
            self.send(from, MessageBody::ReadIndexResponse { ctx, index }, false);
        }
    }

    /// The leader committed an entry of its term: reads held back can proceed.
    pub(crate) fn on_commit_in_term(&mut self) {
        for (from, ctx) in std::mem::take(&mut self.read_only.waiting_for_commit) {
            self.register_read(from, ctx);
        }
    }

    /// The newest heartbeat round a quorum of voters has answered.
    pub(crate) fn confirmed_read_round(&self) -> u64 {
        let me = self.cfg.id;
        let acks = &self.read_only.acks;
        quorum::committed_index(&self.voters, |id| {
            if id == me {
                u64::MAX
            } else {
                acks.get(&id).copied().unwrap_or(0)
            }
        })
    }

    /// Hands out every read whose round is at most `confirmed`, the newest a
    /// quorum of voters has answered.
    pub(crate) fn release_confirmed_reads(&mut self, confirmed: u64) {
        while let Some(&r) = self.read_only.pending.front() {
            if r.seq > confirmed {
                break;
            }
            self.read_only.pending.pop_front();
            self.deliver_read(r.from, r.ctx, r.index);
        }
    }
}

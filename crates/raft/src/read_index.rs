//! ReadIndex (thesis §6.4): a leader serves a linearizable read after confirming,
//! with one heartbeat round to a quorum, that it was still the leader when the read
//! arrived. One round confirms every read that arrived before it was sent.

use std::collections::{BTreeMap, VecDeque};

use crate::error::ReadIndexError;
use crate::quorum;
use crate::raft::Raft;
use crate::ready::ReadState;
use crate::types::{Index, NodeId};

/// Reads waiting on one leader; cleared whenever leadership ends.
const MAX_PENDING_READS: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct PendingRead {
    ctx: u64,
    index: Index,
    /// The heartbeat round that confirms this read.
    seq: u64,
}

#[derive(Debug, Default)]
pub(crate) struct ReadOnly {
    /// Reads that arrived before the leader committed an entry of its own term: its
    /// commit index may still lag the true one (thesis §6.4 step 1).
    waiting_for_commit: Vec<u64>,
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

    fn len(&self) -> usize {
        self.waiting_for_commit.len() + self.pending.len()
    }
}

impl Raft {
    pub(crate) fn queue_read(&mut self, ctx: u64) -> Result<(), ReadIndexError> {
        let pending = self.read_only.len();
        if pending >= MAX_PENDING_READS {
            return Err(ReadIndexError::Overloaded { pending });
        }
        if self.log.term(self.log.committed) != Some(self.term) {
            self.read_only.waiting_for_commit.push(ctx);
        } else {
            self.register_read(ctx);
        }
        Ok(())
    }

    fn register_read(&mut self, ctx: u64) {
        let index = self.log.committed;
        if self.voters.len() == 1 && self.voters.contains(&self.cfg.id) {
            // Nobody else can have been elected: the read is confirmed already.
            self.read_states.push(ReadState { ctx, index });
            return;
        }
        let seq = self.read_only.seq + 1;
        self.read_only
            .pending
            .push_back(PendingRead { ctx, index, seq });
        self.read_only.round_needed = true;
    }

    /// The leader committed an entry of its term: reads held back can proceed.
    pub(crate) fn on_commit_in_term(&mut self) {
        for ctx in std::mem::take(&mut self.read_only.waiting_for_commit) {
            self.register_read(ctx);
        }
    }

    /// Hands out every read whose round a quorum of voters has answered.
    pub(crate) fn release_confirmed_reads(&mut self) {
        let me = self.cfg.id;
        let acks = &self.read_only.acks;
        let confirmed = quorum::committed_index(&self.voters, |id| {
            if id == me {
                u64::MAX
            } else {
                acks.get(&id).copied().unwrap_or(0)
            }
        });
        while let Some(r) = self.read_only.pending.front() {
            if r.seq > confirmed {
                break;
            }
            self.read_states.push(ReadState {
                ctx: r.ctx,
                index: r.index,
            });
            self.read_only.pending.pop_front();
        }
    }
}

//! Reads waiting on the consensus thread for leadership confirmation (ReadIndex).
//! Once confirmed, a read moves to the apply thread, which answers it when the
//! state machine has applied far enough.

use std::collections::BTreeMap;
use std::time::Instant;

use keel_raft::NodeId;
use tokio::sync::oneshot;

use super::requests::{NodeError, ReadResult};

/// A read waiting for its ReadIndex round.
#[derive(Debug)]
pub(crate) struct UnconfirmedRead {
    pub(crate) deadline: Instant,
    pub(crate) reply: oneshot::Sender<ReadResult>,
}

/// Reads by ReadIndex context.
#[derive(Debug, Default)]
pub(crate) struct UnconfirmedReads {
    waiting: BTreeMap<u64, UnconfirmedRead>,
    next_ctx: u64,
}

impl UnconfirmedReads {
    pub(crate) fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Registers a read and returns the context to pass to `read_index`.
    pub(crate) fn add(&mut self, deadline: Instant, reply: oneshot::Sender<ReadResult>) -> u64 {
        self.next_ctx += 1;
        self.waiting
            .insert(self.next_ctx, UnconfirmedRead { deadline, reply });
        self.next_ctx
    }

    /// Answers the read `ctx` with `err` (the core refused it).
    pub(crate) fn fail(&mut self, ctx: u64, err: NodeError) {
        if let Some(r) = self.waiting.remove(&ctx) {
            let _ = r.reply.send(Err(err));
        }
    }

    /// Leadership for `ctx` was confirmed: hands the read over.
    pub(crate) fn confirm(&mut self, ctx: u64) -> Option<UnconfirmedRead> {
        self.waiting.remove(&ctx)
    }

    /// Leadership was lost: no waiting read will be confirmed.
    pub(crate) fn leadership_lost(&mut self, leader: NodeId) {
        for (_, r) in std::mem::take(&mut self.waiting) {
            let _ = r.reply.send(Err(NodeError::NotLeader { leader }));
        }
    }

    /// Answers every read whose deadline passed.
    pub(crate) fn expire(&mut self, now: Instant) {
        let expired: Vec<u64> = self
            .waiting
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(&ctx, _)| ctx)
            .collect();
        for ctx in expired {
            self.fail(
                ctx,
                NodeError::Timeout("leadership was not confirmed before the deadline".into()),
            );
        }
    }

    /// Answers everything (shutdown); reads change nothing.
    pub(crate) fn fail_all(&mut self) {
        self.fail_all_with(&NodeError::ShuttingDown);
    }

    /// Answers everything with `err` (the group stops being hosted, say).
    pub(crate) fn fail_all_with(&mut self, err: &NodeError) {
        for (_, r) in std::mem::take(&mut self.waiting) {
            let _ = r.reply.send(Err(err.clone()));
        }
    }
}

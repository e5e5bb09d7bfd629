//! Requests waiting inside the consensus thread: writes until their entry applies,
//! reads until leadership is confirmed and the state machine caught up.

use std::collections::BTreeMap;
use std::time::Instant;

use keel_raft::{Entry, Index, NodeId, Term};
use keel_storage::kv::ApplyOutcome;
use tokio::sync::oneshot;

use super::requests::{NodeError, ReadResult, WriteResult};

#[derive(Debug)]
struct PendingWrite {
    term: Term,
    deadline: Instant,
    reply: oneshot::Sender<WriteResult>,
}

#[derive(Debug)]
struct PendingRead {
    deadline: Instant,
    reply: oneshot::Sender<ReadResult>,
}

/// All requests in flight on one node.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// By log index: the entry a write became.
    writes: BTreeMap<Index, PendingWrite>,
    /// By ReadIndex context: reads waiting for leadership confirmation.
    reads_unconfirmed: BTreeMap<u64, PendingRead>,
    /// Confirmed reads waiting for the state machine to reach their index.
    reads_confirmed: Vec<(Index, PendingRead)>,
    next_read_ctx: u64,
}

impl Pending {
    pub(crate) fn len(&self) -> usize {
        self.writes.len() + self.reads_unconfirmed.len() + self.reads_confirmed.len()
    }

    /// Registers a write proposed at `index` in `term`. `leader` is this node (the
    /// leader that proposed it), for the answer to an older write at that index.
    pub(crate) fn add_write(
        &mut self,
        index: Index,
        term: Term,
        deadline: Instant,
        reply: oneshot::Sender<WriteResult>,
        leader: NodeId,
    ) {
        let old = self.writes.insert(
            index,
            PendingWrite {
                term,
                deadline,
                reply,
            },
        );
        if let Some(old) = old {
            // A newer term reused the index: the older entry was truncated from our
            // log before it committed, so that write was definitely not applied.
            let _ = old.reply.send(Err(NodeError::NotLeader { leader }));
        }
    }

    /// Registers a read and returns the context to pass to `read_index`.
    pub(crate) fn add_read(
        &mut self,
        deadline: Instant,
        reply: oneshot::Sender<ReadResult>,
    ) -> u64 {
        self.next_read_ctx += 1;
        self.reads_unconfirmed
            .insert(self.next_read_ctx, PendingRead { deadline, reply });
        self.next_read_ctx
    }

    /// Fails a read that `read_index` refused.
    pub(crate) fn fail_read(&mut self, ctx: u64, err: NodeError) {
        if let Some(r) = self.reads_unconfirmed.remove(&ctx) {
            let _ = r.reply.send(Err(err));
        }
    }

    /// Leadership for the read `ctx` was confirmed at `index`.
    pub(crate) fn confirm_read(&mut self, ctx: u64, index: Index) {
        if let Some(r) = self.reads_unconfirmed.remove(&ctx) {
            self.reads_confirmed.push((index, r));
        }
    }

    /// An entry was applied with `outcome`: answer the write that became it. If
    /// the entry at that index is from another term, the write was overwritten by a
    /// newer leader and definitely not applied.
    pub(crate) fn applied(&mut self, entry: &Entry, outcome: &ApplyOutcome, leader: NodeId) {
        // Writes at lower indexes can only remain if their entries were applied in an
        // earlier batch without them being answered, which cannot happen; but be
        // thorough so no request is ever left hanging.
        while let Some((&index, _)) = self.writes.first_key_value() {
            if index > entry.index {
                break;
            }
            let w = self.writes.pop_first().expect("checked non-empty").1;
            let result = if index == entry.index && w.term == entry.term {
                Ok(*outcome)
            } else {
                Err(NodeError::NotLeader { leader })
            };
            let _ = w.reply.send(result);
        }
    }

    /// Answers every confirmed read whose index the state machine has reached.
    pub(crate) fn serve_reads(&mut self, applied: Index) {
        if self.reads_confirmed.is_empty() {
            return;
        }
        let mut i = 0;
        while i < self.reads_confirmed.len() {
            if self.reads_confirmed[i].0 <= applied {
                let (index, r) = self.reads_confirmed.swap_remove(i);
                let _ = r.reply.send(Ok(index));
            } else {
                i += 1;
            }
        }
    }

    /// Leadership was lost: reads waiting for confirmation will never get it.
    pub(crate) fn leadership_lost(&mut self, leader: NodeId) {
        for (_, r) in std::mem::take(&mut self.reads_unconfirmed) {
            let _ = r.reply.send(Err(NodeError::NotLeader { leader }));
        }
    }

    /// Answers every request whose deadline passed.
    pub(crate) fn expire(&mut self, now: Instant) {
        let expired: Vec<Index> = self
            .writes
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(&i, _)| i)
            .collect();
        for index in expired {
            if let Some(w) = self.writes.remove(&index) {
                let _ = w.reply.send(Err(NodeError::OutcomeUnknown(format!(
                    "the write was proposed at index {index} but did not commit before the deadline"
                ))));
            }
        }
        let expired: Vec<u64> = self
            .reads_unconfirmed
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(&ctx, _)| ctx)
            .collect();
        for ctx in expired {
            self.fail_read(
                ctx,
                NodeError::Timeout("leadership was not confirmed before the deadline".into()),
            );
        }
        let mut kept = Vec::with_capacity(self.reads_confirmed.len());
        for (index, r) in std::mem::take(&mut self.reads_confirmed) {
            if r.deadline <= now {
                let _ = r.reply.send(Err(NodeError::Timeout(
                    "the state machine did not catch up before the deadline".into(),
                )));
            } else {
                kept.push((index, r));
            }
        }
        self.reads_confirmed = kept;
    }

    /// Answers everything because the node is stopping. Proposed writes may still
    /// be committed by the other nodes, so their outcome is unknown; reads changed
    /// nothing.
    pub(crate) fn fail_all(&mut self) {
        for (index, w) in std::mem::take(&mut self.writes) {
            let _ = w.reply.send(Err(NodeError::OutcomeUnknown(format!(
                "the node stopped after proposing the write at index {index}"
            ))));
        }
        for (_, r) in std::mem::take(&mut self.reads_unconfirmed) {
            let _ = r.reply.send(Err(NodeError::ShuttingDown));
        }
        for (_, r) in std::mem::take(&mut self.reads_confirmed) {
            let _ = r.reply.send(Err(NodeError::ShuttingDown));
        }
    }
}

//! Requests waiting on the apply thread: writes until their entry applies, and
//! confirmed reads until the state machine has applied far enough.

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

/// Writes and confirmed reads waiting for the state machine.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    /// By log index: the entry a write became.
    writes: BTreeMap<Index, PendingWrite>,
    /// Confirmed reads waiting for the state machine to reach their index.
    reads_confirmed: Vec<(Index, PendingRead)>,
}

impl Waiters {
    /// Whether nothing waits: no deadline to expire.
    pub(crate) fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.reads_confirmed.is_empty()
    }

    /// Writes waiting.
    pub(crate) fn writes(&self) -> usize {
        self.writes.len()
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
                Ok(outcome.clone())
            } else {
                Err(NodeError::NotLeader { leader })
            };
            let _ = w.reply.send(result);
        }
    }

    /// Registers a read whose leadership confirmation came at `index`.
    pub(crate) fn add_read(
        &mut self,
        index: Index,
        deadline: Instant,
        reply: oneshot::Sender<ReadResult>,
    ) {
        self.reads_confirmed
            .push((index, PendingRead { deadline, reply }));
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
        for (_, r) in std::mem::take(&mut self.reads_confirmed) {
            let _ = r.reply.send(Err(NodeError::ShuttingDown));
        }
    }
}

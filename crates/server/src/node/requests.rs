//! What API handlers ask of the consensus thread, and the answers.

use std::time::Instant;

use bytes::Bytes;
use keel_raft::{Index, NodeId};
use keel_storage::kv::ApplyOutcome;
use keel_storage::kv::slots::SlotUnavailable;
use tokio::sync::oneshot;

/// Why the consensus thread could not serve a request. Every variant says whether
/// a write may have been applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// Not the leader; nothing was applied. `leader` is 0 when unknown.
    #[error("not the leader (leader: {leader})")]
    NotLeader {
        /// The leader, if known.
        leader: NodeId,
    },
    /// Too much queued; nothing was applied.
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// This node's data disk is full (the message says where and what to do);
    /// nothing was applied.
    #[error("{0}")]
    DiskFull(String),
    /// The request is over a limit; nothing was applied.
    #[error("{0}")]
    Invalid(String),
    /// A write was proposed but its fate is not known.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// A read could not be confirmed in time; nothing to undo.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The node is stopping; nothing was applied.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// The cluster's state forbids the request now (the message says why);
    /// nothing was applied.
    #[error("refused: {0}")]
    Refused(String),
    /// The state machine refused the write because this group does not serve a
    /// slot it names (moving, or owned by another group); nothing was applied.
    #[error("{0}")]
    SlotUnavailable(SlotUnavailable),
}

/// A write committed and applied: what the state machine said.
pub type WriteResult = Result<ApplyOutcome, NodeError>;

/// A write the state machine's slot check refused (it applied as a no-op) is an
/// error, not an outcome, so that every front end answers it the same way.
pub(crate) fn slot_refusal_as_error(result: WriteResult) -> WriteResult {
    match result {
        Ok(ApplyOutcome::SlotUnavailable(why)) => Err(NodeError::SlotUnavailable(why)),
        other => other,
    }
}

/// A confirmed read barrier: the state machine has applied at least this index, and
/// a read of local state now is linearizable.
pub type ReadResult = Result<Index, NodeError>;

/// A membership change an operator asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberChange {
    /// Add `id` at `address` as a learner, promoted once caught up if `promote`.
    Add {
        /// The new member.
        id: NodeId,
        /// Its advertised gRPC address.
        address: String,
        /// Promote it automatically once it has caught up.
        promote: bool,
    },
    /// Make learner `id` a voter.
    Promote(NodeId),
    /// Remove voter or learner `id`.
    Remove(NodeId),
}

/// A membership change accepted by the leader: its log index, and where the
/// outcome arrives once that index is applied (`None`: nothing to do, the
/// configuration already had it).
#[derive(Debug)]
pub struct ChangeProposed {
    /// Log index of the change.
    pub index: Index,
    /// Answered when the change is applied (or its fate becomes unknown).
    pub applied: Option<oneshot::Receiver<WriteResult>>,
}

/// A request to the consensus thread.
#[derive(Debug)]
pub enum Request {
    /// Propose an encoded command.
    Write {
        /// `Envelope::encode()` output (a command, perhaps with a client session).
        data: Bytes,
        /// When the client stops waiting.
        deadline: Instant,
        /// Where the result goes.
        reply: oneshot::Sender<WriteResult>,
    },
    /// Confirm leadership (ReadIndex) and wait until applied far enough.
    ReadBarrier {
        /// When the client stops waiting.
        deadline: Instant,
        /// Where the result goes.
        reply: oneshot::Sender<ReadResult>,
    },
    /// Wait until the state machine has applied `index` (a lease read whose
    /// leader has committed more than it applied).
    WaitApplied {
        /// The index to wait for.
        index: Index,
        /// When the client stops waiting.
        deadline: Instant,
        /// Where the result goes.
        reply: oneshot::Sender<ReadResult>,
    },
    /// Change the membership (leader only).
    ChangeMembers {
        /// What to change.
        change: MemberChange,
        /// When the client stops waiting.
        deadline: Instant,
        /// The proposal, or why there is none.
        reply: oneshot::Sender<Result<ChangeProposed, NodeError>>,
    },
    /// Hand leadership to voter `to` (0: the most caught-up active voter).
    TransferLeader {
        /// The target, or 0.
        to: NodeId,
        /// The chosen target once the transfer started.
        reply: oneshot::Sender<Result<NodeId, NodeError>>,
    },
}

impl Request {
    /// Answers the request with `err` without doing anything.
    pub(crate) fn refuse(self, err: NodeError) {
        match self {
            Request::Write { reply, .. } => drop(reply.send(Err(err))),
            Request::ReadBarrier { reply, .. } | Request::WaitApplied { reply, .. } => {
                drop(reply.send(Err(err)))
            }
            Request::TransferLeader { reply, .. } => drop(reply.send(Err(err))),
            Request::ChangeMembers { reply, .. } => drop(reply.send(Err(err))),
        }
    }
}

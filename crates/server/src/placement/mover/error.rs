//! Why one attempt at a slot-move step did not go through.

use keel_raft::GroupId;
use keel_storage::kv::slots::copy::CopyError;

use crate::node::NodeError;

/// Why a step of a move failed. Every step may be tried again: the slot-move
/// commands are idempotent under their epoch, and a failed read changed
/// nothing.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MoveError {
    /// The copy engine refused (the source is not the move's source any more,
    /// the target is not staging it): the map or a slot table moved on, so the
    /// move has to be looked at again.
    #[error("the copy engine refused: {0}")]
    Copy(#[from] CopyError),
    /// A group's state machine refused a slot-move command (the slot is in
    /// another state than the step needs).
    #[error("group {group} refused {step}: {why}")]
    StepRefused {
        /// The group.
        group: GroupId,
        /// The step's name.
        step: &'static str,
        /// The state machine's words.
        why: String,
    },
    /// This node no longer leads the move's target group: its new leader
    /// drives the move.
    #[error("this node no longer leads group {0}")]
    NotLeading(GroupId),
    /// No member of a group answered usefully (unreachable, no leader,
    /// overloaded, outcome unknown).
    #[error("group {group}: {why}")]
    Unavailable {
        /// The group.
        group: GroupId,
        /// The last failure seen.
        why: String,
    },
    /// The placement group did not take a change of the map.
    #[error("the cluster map change failed: {0}")]
    Map(String),
}

impl MoveError {
    /// A failure of this node's own replica of `group`.
    pub(crate) fn local(group: GroupId, e: NodeError) -> MoveError {
        match e {
            NodeError::NotLeader { .. } => MoveError::NotLeading(group),
            other => MoveError::Unavailable {
                group,
                why: other.to_string(),
            },
        }
    }
}

//! Why a placement decision cannot be made.

use crate::error::CommandError;
use crate::ids::{GroupId, NodeId};

/// Why a plan could not be made. Nothing was decided.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The plan's command would be refused for this reason (an unknown or
    /// draining node, a replica count out of range): plans check the same rules
    /// the commands do, in the same code.
    #[error(transparent)]
    Refused(#[from] CommandError),
    /// The node is a group's only member and no other active node can take its
    /// replica: removing it would lose the group's data.
    #[error("node {node} holds group {group}'s only replica and no other active node can take it")]
    Stranded {
        /// The group.
        group: GroupId,
        /// The node.
        node: NodeId,
    },
}

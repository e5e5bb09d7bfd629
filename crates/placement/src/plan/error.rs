//! Why a placement decision cannot be made.

use crate::ids::{GroupId, NodeId};

/// Why a plan could not be made. Nothing was decided.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The node is not registered.
    #[error("node {node} is not registered")]
    UnknownNode {
        /// The node.
        node: NodeId,
    },
    /// The node is being drained, so it takes no replicas.
    #[error("node {node} is being drained and takes no new replicas")]
    NodeDraining {
        /// The node.
        node: NodeId,
    },
    /// A replica count outside 1..=[`crate::MAX_REPLICAS`].
    #[error(
        "replica count {replicas} is out of range (1..={})",
        crate::MAX_REPLICAS
    )]
    InvalidReplicas {
        /// The count given.
        replicas: u8,
    },
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

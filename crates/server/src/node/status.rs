//! A snapshot of the node's consensus state, published by the consensus thread for
//! status pages and routing decisions, without a round trip to it.

use keel_raft::{ConfState, Index, NodeId, PeerStatus, Role, Term};

/// What `keel status`, `/v1/status` and request routing need to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    /// This node.
    pub id: NodeId,
    /// Current role.
    pub role: Role,
    /// Current term.
    pub term: Term,
    /// Known leader, or 0.
    pub leader: NodeId,
    /// Commit index.
    pub commit: Index,
    /// Index applied to the state machine.
    pub applied: Index,
    /// Last log index.
    pub last_index: Index,
    /// On the leader: replication progress of each follower.
    pub peers: Vec<PeerStatus>,
    /// The configuration in force, as this replica knows it.
    pub conf: ConfState,
    /// The log index of the entry that made that configuration (0: the
    /// bootstrap one). Committed once `commit` reaches it.
    pub conf_index: Index,
    /// The replica is quiesced: an idle leader that stopped heartbeating, or a
    /// follower that stopped its election timer (docs/sharding.md).
    pub quiesced: bool,
}

impl NodeStatus {
    pub(crate) fn initial(id: NodeId) -> Self {
        NodeStatus {
            id,
            role: Role::Follower,
            term: 0,
            leader: 0,
            commit: 0,
            applied: 0,
            last_index: 0,
            peers: Vec::new(),
            conf: ConfState::default(),
            conf_index: 0,
            quiesced: false,
        }
    }
}

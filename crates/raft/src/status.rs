//! A read-only summary of a core, for status pages and `keel status`.

use crate::ready::Role;
use crate::types::{GroupId, Index, NodeId, Term};

/// Snapshot of a core's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// The group.
    pub group: GroupId,
    /// Current term.
    pub term: Term,
    /// Vote in the current term, or 0.
    pub vote: NodeId,
    /// Current role.
    pub role: Role,
    /// Known leader, or 0.
    pub leader: NodeId,
    /// Commit index.
    pub commit: Index,
    /// Highest index handed out for applying.
    pub applied: Index,
    /// Last log index.
    pub last_index: Index,
    /// Highest durable log index.
    pub persisted: Index,
    /// Leader only: each follower's replication progress.
    pub peers: Vec<PeerStatus>,
}

/// The leader's view of one follower.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    /// The follower.
    pub id: NodeId,
    /// Highest index known replicated there.
    pub match_index: Index,
    /// Next index to send.
    pub next_index: Index,
    /// "probe" or "replicate".
    pub state: &'static str,
    /// Heard from within the current check-quorum window.
    pub active: bool,
}

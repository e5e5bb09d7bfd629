//! A read-only summary of a core, for status pages and `keel status`.

use crate::ready::Role;
use crate::types::{ConfState, GroupId, Index, NodeId, Term};

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
    /// First index still in the in-memory log (earlier ones are compacted).
    pub first_index: Index,
    /// Index of the newest snapshot known (0 if none).
    pub snapshot_index: Index,
    /// The configuration in force (the latest in the log, thesis §4.1).
    pub conf: ConfState,
    /// Index of an uncommitted membership change, or 0.
    pub pending_conf_index: Index,
    /// Leader only: target of a leadership transfer in progress, or 0.
    pub lead_transferee: NodeId,
    /// Heartbeats (leader) or the election timer (follower) stopped because the
    /// group is idle (`Raft::quiesce`).
    pub quiesced: bool,
    /// Leader only: each member's replication progress (voters and learners); a
    /// runtime promotes a learner once its `match_index` is close to `last_index`.
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
    /// "probe", "replicate" or "snapshot".
    pub state: &'static str,
    /// Heard from within the last one to two election timeouts (check-quorum).
    pub active: bool,
    /// Whether it is a learner.
    pub learner: bool,
}

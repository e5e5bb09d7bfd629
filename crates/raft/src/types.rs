//! Plain data types shared by the core, storage, transport and simulator.

use bytes::Bytes;

/// Identifies a node (a process) in the cluster. `0` means "no node".
pub type NodeId = u64;
/// Identifies a Raft group. Every message and WAL record carries one, so that many
/// groups can share one process, one WAL and one connection per peer.
pub type GroupId = u64;
/// A Raft term (Raft §5.1).
pub type Term = u64;
/// A log index. The first entry has index 1; index 0 means "before the log".
pub type Index = u64;

/// The "no node" id, used for "no vote" and "no known leader".
pub const NO_NODE: NodeId = 0;

/// What an entry carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// An application command (opaque bytes to the core).
    Normal,
    /// The empty entry a new leader appends to commit entries of earlier terms
    /// (Raft §5.4.2, thesis §6.4).
    NoOp,
    /// A membership change. Reserved: the encoding arrives with membership changes;
    /// until then the core never creates one.
    ConfChange,
}

impl EntryKind {
    /// Stable one-byte code used by the WAL and the wire format.
    pub fn to_code(self) -> u8 {
        match self {
            EntryKind::Normal => 0,
            EntryKind::NoOp => 1,
            EntryKind::ConfChange => 2,
        }
    }

    /// Inverse of [`EntryKind::to_code`]; `None` for an unknown code.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(EntryKind::Normal),
            1 => Some(EntryKind::NoOp),
            2 => Some(EntryKind::ConfChange),
            _ => None,
        }
    }
}

/// One log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Term of the leader that created the entry.
    pub term: Term,
    /// Position in the log.
    pub index: Index,
    /// What the entry carries.
    pub kind: EntryKind,
    /// The payload; empty for NO-OP entries. `Bytes` so that the log, the WAL batch
    /// and outgoing messages share one allocation.
    pub data: Bytes,
}

impl Entry {
    /// Approximate memory and wire size, used for flow control and batching limits.
    pub fn size(&self) -> u64 {
        // index + term + kind + length prefix, plus the payload.
        (8 + 8 + 1 + 4 + self.data.len()) as u64
    }
}

/// The state every node must make durable before it answers an RPC that depends on
/// it (Raft Figure 2, "persistent state on all servers"), plus the commit index,
/// which is persisted lazily as an optimisation for restart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    /// Latest term this node has seen.
    pub term: Term,
    /// Candidate this node voted for in `term`, or [`NO_NODE`].
    pub vote: NodeId,
    /// Highest index known committed when this state was written. Never needs to be
    /// durable for safety; it only saves replay work after a restart.
    pub commit: Index,
}

/// The voting configuration of a group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfState {
    /// Members that vote and count toward quorums.
    pub voters: Vec<NodeId>,
    /// Members that receive the log but do not vote (catching up, or `--learner`).
    pub learners: Vec<NodeId>,
}

impl ConfState {
    /// A configuration of the given voters and no learners.
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> Self {
        let mut voters: Vec<NodeId> = voters.into_iter().collect();
        voters.sort_unstable();
        voters.dedup();
        ConfState {
            voters,
            learners: Vec::new(),
        }
    }

    /// Whether `id` is a voter or a learner.
    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }
}

/// Describes the state a snapshot captures: everything up to and including `index`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// Last log index the snapshot covers.
    pub index: Index,
    /// Term of the entry at `index`.
    pub term: Term,
    /// Membership as of `index`.
    pub conf: ConfState,
}

//! Errors returned by the core's API.

use crate::types::{Index, NodeId, Term};

/// A configuration the core cannot run with.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A field is out of range or contradicts another.
    #[error("invalid raft config: {0}")]
    Invalid(String),
}

/// Why a proposal was not appended. In every case the entry is *not* in the log, so
/// the client may safely retry elsewhere.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum ProposeError {
    /// This node is not the leader; `leader` is the last known leader (0 if none).
    #[error("not the leader (leader hint: {leader})")]
    NotLeader {
        /// Last known leader, or 0.
        leader: NodeId,
    },
    /// The uncommitted log on the leader is over its limit: back off and retry.
    #[error("overloaded: {uncommitted_bytes} bytes uncommitted (limit {limit})")]
    Overloaded {
        /// Bytes currently proposed but not committed.
        uncommitted_bytes: u64,
        /// The configured limit.
        limit: u64,
    },
    /// The proposal alone is larger than the uncommitted-bytes limit.
    #[error("proposal of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size of the proposal.
        size: u64,
        /// The configured limit.
        limit: u64,
    },
    /// The leader is handing leadership over to `to` (thesis §3.10) and accepts no
    /// proposals meanwhile: retry shortly, at the new leader.
    #[error("leadership is being transferred to node {to}")]
    TransferInProgress {
        /// The transfer's target.
        to: NodeId,
    },
    /// The runtime said this node's disk is full ([`crate::Raft::set_disk_full`]):
    /// it takes no new entries until space returns.
    #[error("this node's disk is full")]
    DiskFull,
}

/// Why a membership change was refused. Nothing was appended.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum ConfChangeError {
    /// This node is not the leader; `leader` is the last known leader (0 if none).
    #[error("not the leader (leader hint: {leader})")]
    NotLeader {
        /// Last known leader, or 0.
        leader: NodeId,
    },
    /// Another membership change (at `index`) is not committed yet: only one may be
    /// in flight (thesis §4.1).
    #[error("membership change at index {index} is still in progress")]
    InProgress {
        /// Index of the uncommitted change.
        index: Index,
    },
    /// The leader has not committed an entry of its own term yet, so a change from
    /// an earlier term might still be in flight unseen: retry shortly.
    #[error("the leader has not committed an entry in term {term} yet")]
    NotCommittedInTerm {
        /// The leader's term.
        term: Term,
    },
    /// A leadership transfer is in progress.
    #[error("leadership is being transferred to node {to}")]
    TransferInProgress {
        /// The transfer's target.
        to: NodeId,
    },
    /// Node id 0 is reserved.
    #[error("node id 0 is not a valid member")]
    ZeroNode,
    /// The node is already a voter or learner.
    #[error("node {id} is already a member")]
    AlreadyMember {
        /// The node.
        id: NodeId,
    },
    /// The node is not a member.
    #[error("node {id} is not a member")]
    UnknownNode {
        /// The node.
        id: NodeId,
    },
    /// Only learners can be promoted.
    #[error("node {id} is not a learner")]
    NotLearner {
        /// The node.
        id: NodeId,
    },
    /// Removing the only voter would leave a group nobody can lead.
    #[error("node {id} is the last voter")]
    LastVoter {
        /// The node.
        id: NodeId,
    },
    /// The change's context is larger than a change may carry.
    #[error("membership change context of {len} bytes (at most {max})")]
    ContextTooLarge {
        /// The context's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The entry itself was refused (e.g. the uncommitted log is over its limit).
    #[error(transparent)]
    Propose(#[from] ProposeError),
}

/// Why a membership-change payload does not decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum ConfChangeDecodeError {
    /// Not the length of any encoded change.
    #[error("membership change of {len} bytes is malformed")]
    Length {
        /// The payload's length.
        len: usize,
    },
    /// An unknown encoding version.
    #[error("unknown membership change encoding version {version}")]
    Version {
        /// The version byte.
        version: u8,
    },
    /// An unknown operation code.
    #[error("unknown membership change operation {op}")]
    Operation {
        /// The operation byte.
        op: u8,
    },
    /// Node id 0.
    #[error("membership change names node 0")]
    ZeroNode,
}

/// Why a leadership transfer was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum TransferError {
    /// This node is not the leader; `leader` is the last known leader (0 if none).
    #[error("not the leader (leader hint: {leader})")]
    NotLeader {
        /// Last known leader, or 0.
        leader: NodeId,
    },
    /// The target is this node.
    #[error("node {id} already leads")]
    ToSelf {
        /// This node.
        id: NodeId,
    },
    /// The target is not a voter (unknown, or a learner, which cannot lead).
    #[error("node {id} is not a voter")]
    NotVoter {
        /// The target.
        id: NodeId,
    },
}

/// Why [`crate::Raft::compact`] or [`crate::Raft::snapshot_meta`] refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum CompactError {
    /// A snapshot may only cover entries the state machine has applied.
    #[error("index {index} is not applied yet (applied {applied})")]
    NotApplied {
        /// The requested index.
        index: Index,
        /// The applied index.
        applied: Index,
    },
    /// The index is compacted away already (or beyond the log).
    #[error("index {index} is not in the log")]
    Unavailable {
        /// The requested index.
        index: Index,
    },
    /// The snapshot's term is not the term of the entry at its index.
    #[error("snapshot claims term {claimed} at index {index}, the log has {actual:?}")]
    TermMismatch {
        /// The snapshot index.
        index: Index,
        /// Its claimed term.
        claimed: Term,
        /// The log's term there.
        actual: Option<Term>,
    },
}

/// Why a ReadIndex request was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum ReadIndexError {
    /// This node is not the leader; `leader` is the last known leader (0 if none).
    #[error("not the leader (leader hint: {leader})")]
    NotLeader {
        /// Last known leader, or 0.
        leader: NodeId,
    },
    /// Too many reads are waiting for confirmation.
    #[error("overloaded: {pending} reads waiting")]
    Overloaded {
        /// Reads currently queued.
        pending: usize,
    },
}

/// Why [`crate::Raft::quiesce`] was refused; nothing changed. Each variant is one
/// condition of [`crate::Raft::can_quiesce`].
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum QuiesceError {
    /// Only a leader quiesces its group (followers follow its mark).
    #[error("not the leader (leader hint: {leader})")]
    NotLeader {
        /// Last known leader, or 0.
        leader: NodeId,
    },
    /// `quiesce_after_heartbeats` is 0.
    #[error("quiescence is off (quiesce_after_heartbeats = 0)")]
    Disabled,
    /// The group is quiesced already.
    #[error("already quiesced")]
    AlreadyQuiesced,
    /// A proposal, read, membership change or transfer came too recently.
    #[error("idle for {idle_ticks} ticks, {needed} needed")]
    RecentActivity {
        /// Ticks since the last activity (or since leading or waking).
        idle_ticks: u32,
        /// Ticks of idleness required.
        needed: u32,
    },
    /// A leadership transfer is in progress.
    #[error("leadership is being transferred to node {to}")]
    TransferInProgress {
        /// The transfer's target.
        to: NodeId,
    },
    /// A membership change is not committed yet.
    #[error("membership change at index {index} is not committed")]
    ConfChangePending {
        /// Its index.
        index: Index,
    },
    /// The log has entries not committed yet.
    #[error("commit index {commit} is behind the last index {last}")]
    Uncommitted {
        /// The commit index.
        commit: Index,
        /// The last index.
        last: Index,
    },
    /// The leader still has log writes (or sends) to hand out or make durable.
    #[error("the leader's own log is not durable and sent yet")]
    Unpersisted,
    /// Reads wait for a heartbeat round.
    #[error("{count} reads waiting for confirmation")]
    ReadsPending {
        /// Reads queued.
        count: usize,
    },
    /// A snapshot is being sent to a follower.
    #[error("a snapshot is being sent to node {to}")]
    SnapshotInFlight {
        /// The follower.
        to: NodeId,
    },
    /// A voter or learner has not acknowledged the last entry.
    #[error("node {id} has acknowledged up to {match_index}, the log ends at {last}")]
    PeerBehind {
        /// The follower.
        id: NodeId,
        /// What it acknowledged.
        match_index: Index,
        /// The leader's last index.
        last: Index,
    },
}

/// A message the core refuses to process (misrouted or malformed); nothing changed.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum StepError {
    /// The message belongs to another group.
    #[error("message for group {got} delivered to group {expected}")]
    WrongGroup {
        /// This core's group.
        expected: u64,
        /// The message's group.
        got: u64,
    },
    /// The message is addressed to another node.
    #[error("message for node {to} delivered to the wrong node")]
    WrongRecipient {
        /// The addressee.
        to: NodeId,
    },
    /// The sender is missing or is this node itself.
    #[error("message with invalid sender {from}")]
    BadSender {
        /// The claimed sender.
        from: NodeId,
    },
    /// Term 0 is never valid on the wire.
    #[error("message with term 0")]
    ZeroTerm,
}

//! Errors returned by the core's API.

use crate::types::NodeId;

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

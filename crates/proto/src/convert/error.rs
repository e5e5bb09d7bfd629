//! Why a message from the wire was rejected.

use keel_raft::{Index, NodeId, Term};

/// A [`crate::raft::RaftMessage`] (or one of its entries) that does not describe a
/// message a correct peer could have sent.
///
/// The receiver drops such a message (and may drop the stream it came on) without
/// handing anything to the consensus core, so garbage on the peer port changes no
/// state.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// The `body` oneof was not set (or was set to a variant this build does not know).
    #[error("raft message has no body")]
    MissingBody,
    /// `from` was 0, which means "no node".
    #[error("raft message has no sender (from = 0)")]
    NoSender,
    /// `to` was 0, which means "no node".
    #[error("raft message has no recipient (to = 0)")]
    NoRecipient,
    /// `from` and `to` were the same node; a core never messages itself.
    #[error("raft message from node {0} is addressed to itself")]
    SelfAddressed(NodeId),
    /// An entry's kind code is not one `keel_raft::EntryKind` knows.
    #[error("entry {index} has unknown kind code {code}")]
    UnknownEntryKind {
        /// Index of the offending entry.
        index: Index,
        /// The code found on the wire.
        code: u32,
    },
    /// The entries of an AppendEntries do not directly follow `prev_log_index` one by one.
    #[error("entry at position {position} has index {found}, expected {expected}")]
    NonContiguousEntries {
        /// Position of the entry in the message's list.
        position: usize,
        /// The index it should have had.
        expected: Index,
        /// The index it had.
        found: Index,
    },
    /// An entry is newer than the term of the leader that sent it.
    #[error("entry {index} has term {entry_term}, above the message's term {message_term}")]
    EntryTermAboveMessage {
        /// Index of the offending entry.
        index: Index,
        /// Its term.
        entry_term: Term,
        /// The message's term.
        message_term: Term,
    },
    /// An entry's term is lower than the term of the entry before it (or of
    /// `prev_log_term`); terms never decrease along a log.
    #[error("entry {index} has term {entry_term}, below the preceding term {preceding_term}")]
    EntryTermDecreases {
        /// Index of the offending entry.
        index: Index,
        /// Its term.
        entry_term: Term,
        /// Term of the entry (or `prev_log_term`) before it.
        preceding_term: Term,
    },
    /// A lease claimed or reported is longer than any real one.
    #[error("lease of {lease} ns exceeds the limit of {limit} ns")]
    LeaseTooLong {
        /// The value on the wire.
        lease: u64,
        /// The limit.
        limit: u64,
    },
}

//! Errors of snapshot files, transfers and installs.

use std::io;
use std::path::PathBuf;

use keel_raft::{GroupId, Index, Term};

use crate::kv::KvError;

/// What can go wrong with a snapshot. Nothing is changed when one is returned,
/// except where a variant says so.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A filesystem operation failed.
    #[error("snapshot I/O error: {op} {}: {source}", path.display())]
    Io {
        /// What was being done ("write", "sync", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The file's contents are damaged: never loaded or installed.
    #[error("snapshot {} is corrupt at offset {offset}: {reason}", file.display())]
    Corrupt {
        /// The snapshot file.
        file: PathBuf,
        /// Byte offset of the damaged structure.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },

    /// The file ends before its footer: an incomplete write or transfer.
    #[error("snapshot {} is truncated: {reason} (at offset {offset}, file is {len} bytes)", file.display())]
    Truncated {
        /// The snapshot file.
        file: PathBuf,
        /// Where more bytes were needed.
        offset: u64,
        /// The file's length.
        len: u64,
        /// What was being read.
        reason: String,
    },

    /// The file is a valid snapshot, but not the one that was expected.
    #[error(
        "snapshot {} is group {found_group} at index {found_index} term {found_term}, \
         expected group {group} at index {index} term {term}",
        file.display()
    )]
    Mismatch {
        /// The snapshot file.
        file: PathBuf,
        /// Expected group.
        group: GroupId,
        /// Expected index.
        index: Index,
        /// Expected term.
        term: Term,
        /// Group in the file.
        found_group: GroupId,
        /// Index in the file.
        found_index: Index,
        /// Term in the file.
        found_term: Term,
    },

    /// A received chunk does not start where the staging file ends. The sender must
    /// resume from [`super::SnapshotReceiver::offset`].
    #[error("snapshot chunk at offset {offset} refused: the receiver expects offset {expected}")]
    OutOfOrder {
        /// The offset the receiver expects next.
        expected: u64,
        /// The chunk's offset.
        offset: u64,
    },

    /// A received chunk is larger than the transfer limit.
    #[error("snapshot chunk of {len} bytes refused: the limit is {max}")]
    ChunkTooLarge {
        /// The chunk's length.
        len: u64,
        /// The limit.
        max: u64,
    },

    /// A received chunk would make the file longer than announced.
    #[error("snapshot chunk refused: it ends at {end}, past the announced length {total}")]
    PastEnd {
        /// Where the chunk would end.
        end: u64,
        /// The announced total length.
        total: u64,
    },

    /// `finish` was called before every byte arrived.
    #[error("snapshot transfer incomplete: {received} of {total} bytes received")]
    Incomplete {
        /// Bytes in the staging file.
        received: u64,
        /// The announced length.
        total: u64,
    },

    /// The snapshot is not newer than the state machine.
    #[error("snapshot at index {index} is not newer than the applied index {applied}")]
    Stale {
        /// The state machine's applied index.
        applied: u64,
        /// The snapshot's index.
        index: u64,
    },

    /// A value given by the caller is outside the format's limits.
    #[error("snapshot limit exceeded: {0}")]
    Limit(String),

    /// The options are invalid.
    #[error("invalid snapshot options: {0}")]
    InvalidOptions(String),

    /// The state machine failed while reading or installing.
    #[error(transparent)]
    Kv(#[from] KvError),
}

impl SnapshotError {
    /// Wraps an I/O error with the operation and path.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| SnapshotError::Io { op, path, source }
    }

    /// Whether the error says the file itself is bad (as opposed to an I/O failure
    /// or a caller mistake): such a file must never be used.
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            SnapshotError::Corrupt { .. } | SnapshotError::Truncated { .. }
        )
    }
}

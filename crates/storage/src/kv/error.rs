//! Errors of the key-value state machine.

use std::io;
use std::path::PathBuf;

use keel_raft::Index;

use crate::command::CommandError;

/// What can go wrong in the state machine. All of them are fatal for the node: a
/// replica that cannot apply a committed entry must stop rather than diverge.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The storage engine failed (I/O error, corruption detected by redb, ...).
    #[error("state machine storage error: {0}")]
    Engine(#[from] redb::Error),

    /// Opening or creating the database file failed.
    #[error("state machine I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A committed `Normal` entry does not hold a valid command. It cannot be
    /// skipped ("rejected") because every replica must reach the same state.
    #[error("committed entry {index} is not a valid command: {source}")]
    BadCommand {
        /// The entry's index.
        index: Index,
        /// Why it does not decode.
        #[source]
        source: CommandError,
    },

    /// Entries must be applied in log order without holes.
    #[error("cannot apply entry {index}: the state machine has applied up to {applied}")]
    Gap {
        /// Last applied index.
        applied: Index,
        /// The entry offered.
        index: Index,
    },

    /// The database holds something this code did not write.
    #[error("state machine data is corrupt: {0}")]
    Corrupt(String),
}

/// Converts any redb error type into [`KvError::Engine`].
pub(crate) fn engine(e: impl Into<redb::Error>) -> KvError {
    KvError::Engine(e.into())
}

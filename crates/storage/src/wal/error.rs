//! Errors of the write-ahead log.

use std::io;
use std::path::PathBuf;

use keel_raft::{GroupId, Index};

/// What can go wrong with the WAL.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// A filesystem operation failed.
    #[error("WAL I/O error: {op} {}: {source}", path.display())]
    Io {
        /// What the WAL was doing ("sync", "write", ...).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The filesystem has no room for what the WAL needed to create (a new segment,
    /// the `FIRST` file). Nothing was written that recovery could misread, and the
    /// WAL is **not** poisoned: the records that did not fit stay buffered, and a
    /// later [`super::Wal::sync`] writes them once space is freed.
    #[error(
        "disk full: cannot {op} {}: {source}; free space on {} and the WAL retries",
        path.display(),
        dir.display()
    )]
    NoSpace {
        /// What the WAL was doing ("preallocate segment", ...).
        op: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The WAL directory (the filesystem to free space on).
        dir: PathBuf,
        /// The underlying error (`ENOSPC` or `EDQUOT`).
        #[source]
        source: io::Error,
    },

    /// The WAL is damaged before its last valid frame, so starting from it could lose
    /// or invent acknowledged data. The node must not start; an operator has to
    /// restore the node (e.g. wipe it and let it rejoin).
    #[error("WAL corrupt at {}:{offset}: {reason}", file.display())]
    Corrupt {
        /// The segment file.
        file: PathBuf,
        /// Byte offset in that file.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },

    /// An earlier write or fsync failed. After a failed fsync the kernel may have
    /// dropped the dirty pages and marked them clean, so no later fsync can prove
    /// they reached the disk: the only safe reaction is to stop the process and
    /// recover from what is on disk.
    #[error("WAL is unusable after an earlier write or fsync failure; the process must restart")]
    Poisoned,

    /// Another `Wal` (in this or another process) holds the directory.
    #[error("WAL directory {} is locked by another process", dir.display())]
    Locked {
        /// The WAL directory.
        dir: PathBuf,
    },

    /// An append would leave a hole in a group's log.
    #[error("group {group}: entry index {index} does not follow last index {last}")]
    Gap {
        /// The group.
        group: GroupId,
        /// Its last index at that point of the batch.
        last: Index,
        /// The offending entry index.
        index: Index,
    },

    /// An append at or below the group's log start (those indexes are covered by a
    /// snapshot and can no longer change).
    #[error("group {group}: entry index {index} is at or below the log start {start}")]
    BeforeLogStart {
        /// The group.
        group: GroupId,
        /// Its log start.
        start: Index,
        /// The offending entry index.
        index: Index,
    },

    /// A log start that goes back before the current one (or restates its index
    /// with another term).
    #[error("group {group}: log start {index} does not follow the current log start {current}")]
    LogStartBackwards {
        /// The group.
        group: GroupId,
        /// The current log start.
        current: Index,
        /// The refused one.
        index: Index,
    },

    /// An entry's payload exceeds the WAL's fixed limit.
    #[error("group {group}: entry {index} has {bytes} bytes of data, over the {max}-byte limit")]
    EntryTooLarge {
        /// The group.
        group: GroupId,
        /// The entry index.
        index: Index,
        /// Its payload size.
        bytes: u64,
        /// The limit.
        max: u64,
    },

    /// A write for a group whose tombstone was written
    /// ([`super::Wal::remove_group`]): its replica on this node is deleted, and
    /// recovery would call any later record of it corruption unless a new life
    /// was started first ([`super::Wal::recreate_group`]). Nothing was buffered.
    #[error(
        "group {group} was removed from this node; it cannot be written before it is created again"
    )]
    GroupRemoved {
        /// The group.
        group: GroupId,
    },

    /// [`super::Wal::recreate_group`] for a group that was not removed: only a
    /// removed replica may start a new life.
    #[error("group {group} was not removed from this node: it cannot be created again")]
    GroupNotRemoved {
        /// The group.
        group: GroupId,
    },

    /// [`super::WalOptions::validate`] rejected the options.
    #[error("invalid WAL options: {0}")]
    InvalidOptions(String),
}

impl WalError {
    /// Whether this is [`WalError::NoSpace`]: the WAL is still usable and a retry
    /// succeeds once space is freed.
    pub fn is_no_space(&self) -> bool {
        matches!(self, WalError::NoSpace { .. })
    }

    /// Wraps an I/O error with the operation and path.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| WalError::Io { op, path, source }
    }

    /// Like [`WalError::io`], but a full disk becomes [`WalError::NoSpace`] (for
    /// steps after which nothing is left that a retry could not redo).
    pub(crate) fn io_or_no_space(
        op: &'static str,
        path: impl Into<PathBuf>,
        dir: &std::path::Path,
    ) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        let dir = dir.to_path_buf();
        move |source| {
            if crate::vfs::is_no_space(&source) {
                WalError::NoSpace {
                    op,
                    path,
                    dir,
                    source,
                }
            } else {
                WalError::Io { op, path, source }
            }
        }
    }
}

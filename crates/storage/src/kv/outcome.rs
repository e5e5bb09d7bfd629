//! What applying one entry did.

use super::sessions::SessionRejection;

/// The result of applying one entry, in the order of the entries given to
/// [`super::KvStore::apply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The key now holds the new value; its version is `revision`, the entry's index.
    Put {
        /// The log index the write committed at.
        revision: u64,
    },
    /// The delete was applied at `revision`; `existed` says whether there was a key.
    Deleted {
        /// The log index the delete committed at.
        revision: u64,
        /// Whether the key existed.
        existed: bool,
    },
    /// The precondition did not hold; nothing changed.
    Conflict {
        /// The key's version at that point (`None`: absent).
        current_version: Option<u64>,
    },
    /// The write belongs to a client session that may not run it (see
    /// [`SessionRejection`]); nothing changed. A write whose session number was
    /// seen before is not rejected: it gets the outcome of its first execution.
    SessionRejected(SessionRejection),
    /// A NO-OP or membership entry: only the applied index moved.
    NoOp,
    /// The entry was at or below the applied index and was skipped (replay after a
    /// restart); its original outcome is not known any more.
    AlreadyApplied,
}

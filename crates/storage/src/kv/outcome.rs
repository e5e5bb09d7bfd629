//! What applying one entry did.

use super::sessions::SessionRejection;
use super::slots::{SlotCommandError, SlotState, SlotUnavailable};
use crate::command::AddError;
use bytes::Bytes;

/// The result of applying one entry, in the order of the entries given to
/// [`super::KvStore::apply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The key now holds the new value; its version is `revision`: the entry's
    /// index plus the group's revision offset (0 unless a slot moved in).
    Put {
        /// The revision the write committed at.
        revision: u64,
    },
    /// The delete was applied at `revision`; `existed` says whether there was a key.
    Deleted {
        /// The revision the delete committed at.
        revision: u64,
        /// Whether the key existed.
        existed: bool,
    },
    /// The precondition did not hold; nothing changed.
    Conflict {
        /// The key's version at that point (`None`: absent).
        current_version: Option<u64>,
    },
    /// A transaction ran one of its branches at `revision`.
    Txn(TxnOutcome),
    /// A transaction's gets would have returned more than its read limit, so it was
    /// not carried out: nothing changed.
    TxnReadLimit {
        /// The transaction's read limit, in bytes.
        limit: u64,
    },
    /// An add stored `value` in its key at `revision`.
    Added {
        /// The revision the add committed at; the key's new version.
        revision: u64,
        /// The key's value after the add.
        value: i64,
    },
    /// An add was refused (the value is not an integer, or the sum overflows);
    /// nothing changed.
    AddRefused(AddError),
    /// The write belongs to a client session that may not run it (see
    /// [`SessionRejection`]); nothing changed. A write whose session number was
    /// seen before is not rejected: it gets the outcome of its first execution.
    SessionRejected(SessionRejection),
    /// A client command touched a slot this group does not serve (see
    /// [`SlotUnavailable`]); nothing changed.
    SlotUnavailable(SlotUnavailable),
    /// A slot-move command took effect, or was already in effect.
    SlotStep {
        /// The slot's state after it.
        state: SlotState,
        /// Keys a `DropSlot` deleted (0 for the other steps).
        keys_removed: u64,
    },
    /// A slot-move command was refused; nothing changed.
    SlotStepRefused(SlotCommandError),
    /// A NO-OP or membership entry: only the applied index moved.
    NoOp,
    /// The entry was at or below the applied index and was skipped (replay after a
    /// restart); its original outcome is not known any more.
    AlreadyApplied,
}

/// What a transaction did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnOutcome {
    /// The revision it committed at, which every write in it has as its version.
    pub revision: u64,
    /// Whether every comparison held (the `success` branch ran) or not (`failure`).
    pub succeeded: bool,
    /// One result per operation of the branch that ran, in order.
    pub results: Vec<TxnOpResult>,
}

/// The result of one operation of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOpResult {
    /// The key was set; its version is the transaction's revision.
    Put,
    /// The key was deleted, if it existed.
    Delete {
        /// Whether the key existed at that point of the transaction.
        existed: bool,
    },
    /// The key's value and version at that point of the transaction, if it existed.
    Get(Option<(Bytes, u64)>),
}

//! Why a copy step could not go on.

use bytes::Bytes;
use keel_placement::Slot;

use crate::command::Escaped;
use crate::kv::KvError;
use crate::kv::slots::SlotState;

/// Why a copy function refused, or failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The source view does not hold the slot for this move: it must serve it,
    /// or have fenced it for this very epoch (any other state may hold partial
    /// or foreign data).
    #[error("slot {slot} is {found} here, not the source of the move at epoch {epoch}")]
    NotSource {
        /// The slot.
        slot: Slot,
        /// The move's epoch.
        epoch: u64,
        /// The slot's state in the view.
        found: SlotState,
    },
    /// The target view is not staging the slot for this move.
    #[error("slot {slot} is {found} here, not staging for the move at epoch {epoch}")]
    NotStaging {
        /// The slot.
        slot: Slot,
        /// The move's epoch.
        epoch: u64,
        /// The slot's state in the view.
        found: SlotState,
    },
    /// The final round used an answer from a source view that had not fenced
    /// the slot for this epoch (or used none), so it cannot show the copy is
    /// complete as of the fence.
    #[error("no evidence that slot {slot} is fenced for epoch {epoch} (found {found})")]
    NotFenced {
        /// The slot.
        slot: Slot,
        /// The move's epoch.
        epoch: u64,
        /// The state the offending answer showed (absent: no answer at all).
        found: SlotState,
    },
    /// A key asked for or handed in belongs to another slot.
    #[error("key {} is not in slot {slot}", Escaped(key))]
    KeyOutsideSlot {
        /// The slot being copied.
        slot: Slot,
        /// The key.
        key: Bytes,
    },
    /// Keys handed to a page builder did not come in strictly increasing
    /// order over the round, so pages could not be canonical.
    #[error("key {} is not after the round's previous key", Escaped(key))]
    OutOfOrder {
        /// The key.
        key: Bytes,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] KvError),
}

//! What the group serves: the slot table, the apply-time ownership check, the
//! slot-move commands, and the revision offset (`docs/sharding.md`).
//!
//! - **Slot table.** Per hash slot, [`SlotState`]: absent, serving, fenced,
//!   staging, ingested or releasing, with the move's epoch. It is replicated
//!   state (every replica changes it at the same entry), stored whole in its own
//!   table and kept in memory for the check below. A store from before sharding,
//!   and a new store (group 1's), serves every slot, so an existing cluster
//!   behaves exactly as before.
//! - **Ownership check.** A client command whose keys include one of a slot the
//!   table does not show serving is answered [`SlotUnavailable`] at apply time
//!   and changes nothing, on every replica alike, however long ago it was
//!   proposed. Writes of client sessions are checked after the session's
//!   duplicate check, so a retry of a write applied before a fence still gets
//!   its original result; a refusal is not remembered (nothing ran).
//! - **Move commands** ([`crate::command::SlotCommand`]) change one slot's state
//!   by the rules in `step.rs`, or are refused ([`SlotCommandError`]) changing
//!   nothing. A command that is already in effect changes nothing and is not an
//!   error, so retrying one after an unknown outcome is harmless.
//! - **Revision offset.** A write's revision (its keys' version) is its entry's
//!   index plus the group's offset, in the meta table ([`REVISION_OFFSET`], 0
//!   until raised, so existing versions do not change). Ingest pages raise it
//!   above the versions they bring, and `SlotIngested` above the source's
//!   revision at the fence, so every later revision exceeds every version the
//!   group holds or was told of: the offset is the group's revision floor, and
//!   a key's versions never go backwards.

mod changes;
pub mod copy;
mod refusal;
mod state;
mod step;
mod table;

use redb::TableDefinition;

pub use changes::{ChangeIndex, Changes, MAX_TRACKED_BYTES, MAX_TRACKED_KEYS, MAX_TRACKED_SLOTS};
pub(crate) use refusal::check_served;
pub use refusal::{SlotCommandError, SlotUnavailable};
pub use state::SlotState;
pub(crate) use step::execute;
pub(crate) use table::open as open_slot_table;
pub use table::{SLOT_TABLE_BYTES, SlotTable, SlotTableError};

/// The slot table, stored whole under [`SLOT_TABLE_ROW`].
pub(crate) const SLOT_TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("slot_table");
/// The one row of [`SLOT_TABLE`].
pub(crate) const SLOT_TABLE_ROW: &str = "slots";
/// Meta key of the revision offset (absent: 0).
pub(crate) const REVISION_OFFSET: &str = "revision_offset";

/// Most keys one `DropSlot` entry deletes; a slot with more stays releasing and
/// the runtime proposes another. Keeps every entry's apply short.
pub const MAX_DROP_KEYS: usize = 1024;

/// Largest revision `SlotIngested` may raise the group to: far beyond any log
/// (2^62 entries), and low enough that index plus offset never overflows.
pub const MAX_REVISION: u64 = 1 << 62;

#[cfg(test)]
mod changes_tests;
#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod served_tests;
#[cfg(test)]
pub(crate) mod tests;

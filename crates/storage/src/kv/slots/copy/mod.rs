//! The slot copy engine: the storage half of moving a slot
//! (`docs/sharding.md`, *Moving a slot*, steps 2–5).
//!
//! Pure functions over a store's read views, so the executor only moves bytes
//! between them:
//!
//! - **Source (A).** [`fetch_page`] reads a page of the slot's keys with
//!   versions and values (the bulk copy), [`fetch_versions`] a page of its key
//!   list with versions only (a catch-up round), [`fetch_values`] the values of
//!   named keys (what a round found changed). Each answer carries a
//!   [`SourceView`]: the view's applied index, A's revision there and the
//!   slot's state, which is the fence evidence the final delta needs.
//!   [`fetch_changes`] names the keys written since a round's baseline, by
//!   A's change index, when the index can show it (a round then skips the
//!   key list: see `changed.rs`).
//! - **Target (B).** [`plan_delta`] compares a page of A's key list with what B
//!   has staged over the same key range and names the keys to fetch (new or
//!   changed versions) and to delete (gone at A); [`PageBuilder`] turns puts
//!   and deletes into `IngestSlot` commands within the page limits, numbered
//!   as the state machine requires; [`plan_changed`] does what `plan_delta`
//!   does for the keys the change index named; [`FenceWitness`] collects the evidence of
//!   the final round and only then builds `SlotIngested`.
//!
//! **The fence evidence, as built.** The slot table records a fence's epoch,
//! not its index, and needs nothing more: from the fence entry F on, A's state
//! machine refuses every write of the slot until `UnfenceSlot` or `DropSlot`
//! of the same epoch, so every view whose table shows `fenced(e)` has applied F
//! and holds the slot's data exactly as at F. The final round therefore
//! accepts only answers from views showing `fenced(e)`; `SlotIngested` names
//! the earliest such view's applied index (at or after F; the fence index
//! itself when the executor fetched right after it) and the largest revision
//! seen, which is at least A's revision at F.

mod changed;
mod error;
mod evidence;
mod pages;
mod plan;
mod source;

pub use changed::{ChangePage, fetch_changes, plan_changed};
pub use error::CopyError;
pub use evidence::FenceWitness;
pub use pages::PageBuilder;
pub use plan::{RoundDelta, plan_delta};
pub use source::{
    SlotPage, SourceView, ValuePage, VersionPage, fetch_page, fetch_values, fetch_versions,
};

/// Most bytes of keys and values in one fetched page or one ingest page (the
/// `SlotFetch` page of the design). A single item larger than this still goes,
/// alone in its page, so a huge value never stops a copy.
pub const MAX_PAGE_BYTES: usize = 1 << 20;

/// Most keys in one page of a slot's key list ([`fetch_versions`]), and most
/// staged keys [`plan_delta`] reads in one step.
pub const MAX_VERSION_KEYS: usize = 16 * 1024;

/// What an item costs in a page: its bytes plus the varints around them (a key
/// length, a version and a value length, at most 10 bytes each), so a page of
/// tiny items cannot encode to far more than its budget.
pub(crate) fn item_cost(key: &[u8], value: &[u8]) -> usize {
    key.len() + value.len() + 30
}

#[cfg(test)]
mod driver;
#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod tests;

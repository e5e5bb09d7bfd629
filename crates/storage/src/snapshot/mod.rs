//! Snapshots of the key-value state machine: files, transfer and install.
//!
//! - [`SnapshotStore::write`] writes a snapshot (keys, then the client sessions,
//!   the revision offset and the slot table) from a [`crate::kv::KvReadView`]
//!   (a consistent redb read transaction), streaming, while applies continue;
//! - [`SnapshotStore::newest_valid`] finds the newest snapshot that verifies,
//!   reporting damaged ones it skipped; [`SnapshotStore::purge`] keeps the newest N;
//! - [`SnapshotStore::chunks`] and [`SnapshotStore::receive`] move a file between
//!   nodes in resumable chunks;
//! - [`SnapshotStore::install`] replaces the state machine's contents atomically.
//!
//! The byte layout is in `docs/snapshot-format.md`. Memory stays bounded by one
//! chunk (plus redb's caches) in every operation, whatever the snapshot's size.

mod error;
mod format;
mod install;
mod reader;
mod store;
mod transfer;
mod writer;

pub use error::SnapshotError;
pub use format::{
    MAX_CHUNK_PAYLOAD, MAX_CONF_BYTES, MAX_HEADER_BYTES, MAX_KEY_BYTES, MAX_STATE_RECORD_BYTES,
    MAX_VALUE_BYTES, SnapshotHeader,
};
pub use reader::{SnapshotInfo, SnapshotItem, SnapshotReader, SnapshotRecord, validate};
pub use store::{MAX_CHUNK_BYTES, NewestValid, SnapshotFile, SnapshotOptions, SnapshotStore};
pub use transfer::{MAX_SNAPSHOT_BYTES, SnapshotChunk, SnapshotChunks, SnapshotReceiver};

#[cfg(test)]
mod session_tests;
#[cfg(test)]
mod slot_tests;
#[cfg(test)]
mod tests;

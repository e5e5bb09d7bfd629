//! The segmented write-ahead log shared by all Raft groups of a node.
//!
//! Records (entries, hard states, log starts, group tombstones and group-created
//! records, each tagged with its group) are buffered and written in **frames**, one
//! frame per fsync, into preallocated **segment** files.
//! [`Wal::open`] recovers every group's log and hard state, discarding a torn tail
//! and refusing to start on corruption; [`inspect`] walks the log read-only for the
//! CLI. `docs/wal-format.md` describes the byte layout and recovery rules.

mod batch;
mod error;
mod first;
mod format;
mod inspect;
mod log;
mod options;
mod pressure;
mod probe;
mod record;
mod recovery;
mod repair;
mod scan;
mod segment;
mod summary;
mod writer;

pub use error::WalError;
pub use format::MAX_ENTRY_BYTES;
pub use inspect::{InspectedItem, InspectedRecord, Verdict, inspect, inspect_all};
pub use log::{LogStart, LogStartKind, RemovedGroup};
pub use options::{MIN_SEGMENT_BYTES, WalOptions};
pub use pressure::{Pin, Pressure};
pub use record::WalRecord;
pub use recovery::{RecoveredGroup, Recovery, TornTail};
pub use writer::{Compaction, Wal};

#[cfg(test)]
mod tests;

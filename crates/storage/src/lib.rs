//! keel's storage layer.
//!
//! - [`vfs`]: the filesystem abstraction ([`vfs::StdVfs`] for real disks,
//!   [`vfs::MemVfs`] for the deterministic simulator, with crash and fault injection);
//! - [`wal`]: the segmented write-ahead log that holds every Raft group's entries and
//!   hard state (byte layout and recovery rules in `docs/wal-format.md`);
//! - [`command`]: the key-value commands that Raft entries carry;
//! - [`kv`]: the key-value state machine on redb;
//! - [`snapshot`]: snapshot files of the state machine, their transfer and install.

pub mod command;
pub mod kv;
pub mod snapshot;
pub mod vfs;
pub mod wal;

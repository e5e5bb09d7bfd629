//! keel's Raft consensus core.
//!
//! A deterministic state machine with no I/O: no threads, no clock, no files, no
//! sockets, no unseeded randomness. The runtime (or the simulator) feeds it
//! [`Message`]s, ticks and proposals, and takes [`Ready`] values describing what to
//! persist, send and apply. See [`Ready`] for the ordering contract.

mod config;
mod error;
mod message;
mod ready;
mod types;

pub use config::Config;
pub use error::{ConfigError, ProposeError, ReadIndexError};
pub use message::{Message, MessageBody};
pub use ready::{Event, ReadState, Ready, Role, SoftState};
pub use types::{
    ConfState, Entry, EntryKind, GroupId, HardState, Index, NO_NODE, NodeId, SnapshotMeta, Term,
};

//! keel's Raft consensus core.
//!
//! A deterministic state machine with no I/O: no threads, no clock, no files, no
//! sockets, no unseeded randomness. The runtime (or the simulator) feeds it
//! [`Message`]s, ticks and proposals, and takes [`Ready`] values describing what to
//! persist, send and apply. See [`Ready`] for the ordering contract.
//!
//! Implemented: leader election with randomized timeouts, pre-vote and
//! check-quorum; log replication with the consistency check, fast conflict
//! back-off and pipelined sends under a bounded window; commitment by majority of
//! current-term entries only; ReadIndex for linearizable reads. Snapshots,
//! membership changes and leases plug in through the same structures.

mod config;
mod election;
mod error;
mod follower;
mod log;
mod message;
mod progress;
mod quorum;
mod raft;
mod read_index;
mod ready;
mod replication;
mod rng;
mod status;
mod types;

pub use config::Config;
pub use error::{ConfigError, ProposeError, ReadIndexError, StepError};
pub use message::{Message, MessageBody};
pub use raft::{InitialState, Raft};
pub use ready::{Event, ReadState, Ready, Role, SoftState};
pub use rng::SplitMix64;
pub use status::{PeerStatus, Status};
pub use types::{
    ConfState, Entry, EntryKind, GroupId, HardState, Index, NO_NODE, NodeId, SnapshotMeta, Term,
};

#[cfg(test)]
mod tests;

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
//! current-term entries only; ReadIndex for linearizable reads (on the leader, and on
//! followers through the leader); leader leases for reads without a round trip
//! (see the `lease` module docs for why they are safe); snapshots and log
//! compaction (the core keeps only snapshot metadata, the runtime moves the data);
//! single-server membership changes with learners; leadership transfer; a node
//! whose disk is full refusing new entries while still serving reads; quiescence of
//! idle groups (a settled leader's last heartbeat stops its followers' election
//! timers; see the `quiesce` module docs for why that is safe and what the runtime
//! must do in exchange).

mod config;
mod disk;
mod election;
mod error;
mod follower;
mod lease;
mod log;
mod membership;
mod message;
mod progress;
mod quiesce;
mod quorum;
mod raft;
mod read_index;
mod ready;
mod replication;
mod rng;
mod snapshot;
mod status;
mod transfer;
mod types;

pub use config::Config;
pub use error::{
    CompactError, ConfChangeDecodeError, ConfChangeError, ConfigError, ProposeError, QuiesceError,
    ReadIndexError, StepError, TransferError,
};
pub use lease::Lease;
pub use membership::{ConfChange, MAX_CONF_CONTEXT_BYTES};
pub use message::{Message, MessageBody};
pub use raft::{InitialState, InjectedBug, Raft};
pub use ready::{Event, ReadState, Ready, Role, SoftState};
pub use rng::SplitMix64;
pub use status::{PeerStatus, Status};
pub use types::{
    ConfState, Entry, EntryKind, GroupId, HardState, Index, NO_NODE, NodeId, SnapshotMeta, Term,
};

#[cfg(test)]
mod tests;

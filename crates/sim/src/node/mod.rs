//! A simulated node: a disk that survives crashes, and — while it runs — a process
//! holding a real core, the storage it opened, the state of whichever form of the
//! `Ready` contract this incarnation drives the core with, and its snapshot
//! bookkeeping.

mod clock;
mod snapshots;
mod storage_thread;

use std::collections::VecDeque;

use bytes::Bytes;
use keel_raft::{ConfChange, Message, NodeId, Raft, Ready, SnapshotMeta};

use crate::config::Time;
use crate::storage::{Disk, NodeStorage};

pub use clock::NodeClock;
pub use snapshots::{SnapshotRuntime, WalCompaction, Writing};
pub use storage_thread::{Handover, StorageThread, Write};

/// An input for the core.
#[derive(Debug)]
pub enum Input {
    /// A clock tick.
    Tick,
    /// A message from a peer.
    Message(Message),
    /// A client proposal.
    Propose {
        /// The client's attempt id.
        attempt: u64,
        /// The entry payload.
        data: Bytes,
    },
    /// An operator's membership change.
    ConfChange(ConfChange),
    /// An operator's leadership transfer.
    Transfer(NodeId),
    /// A snapshot this node wrote is durable: the core may drop the log it covers,
    /// keeping `trailing` entries before its index.
    Compact {
        /// The snapshot.
        meta: SnapshotMeta,
        /// Entries kept before it.
        trailing: u64,
    },
    /// A client read asks the core for a read index (`Raft::read_index`).
    Read {
        /// The read's id, its ReadIndex context.
        ctx: u64,
    },
    /// A snapshot transfer to `peer` ended (`Raft::report_snapshot`).
    SnapshotReport {
        /// The follower.
        peer: NodeId,
        /// Whether it received the snapshot.
        success: bool,
    },
}

/// The synchronous form of the contract: the core must not be called between
/// `ready` and `advance`, so inputs that arrive during an fsync wait in an inbox, as
/// they would in the server's channel.
#[derive(Debug, Default)]
pub struct SyncDriver {
    /// Inputs that arrived during the fsync in flight.
    pub inbox: VecDeque<Input>,
    /// The `Ready` whose fsync is in flight: its messages are sent and its writes
    /// buffered; its persisted messages, applies and `advance` wait for the fsync.
    pub syncing: Option<Ready>,
}

/// How one incarnation of a node drives its core.
#[derive(Debug)]
pub enum Driver {
    /// `advance` after each `Ready`'s fsync.
    Sync(Box<SyncDriver>),
    /// `advance_async` at once; a storage thread fsyncs and reports back with
    /// `on_persisted`.
    Async(StorageThread),
}

impl Driver {
    /// Short name for traces.
    pub fn name(&self) -> &'static str {
        match self {
            Driver::Sync(_) => "sync",
            Driver::Async(_) => "async",
        }
    }
}

/// One incarnation of a node's process.
pub struct Process {
    /// The consensus core.
    pub core: Raft,
    /// Storage opened at start.
    pub storage: Box<dyn NodeStorage>,
    /// The form of the contract, and its state.
    pub driver: Driver,
    /// Longest fsync of this incarnation's disk (latencies are drawn up to it).
    pub fsync_max: Time,
    /// Snapshots: the background write, the WAL compaction behind them, transfers.
    pub snaps: SnapshotRuntime,
}

impl Process {
    /// Whether an fsync is in flight.
    pub fn is_syncing(&self) -> bool {
        match &self.driver {
            Driver::Sync(d) => d.syncing.is_some(),
            Driver::Async(t) => t.is_syncing(),
        }
    }

    /// `Ready`s handed out whose writes are not durable yet (waiting for an fsync or
    /// covered by the one in flight): what a crash can cost the node.
    pub fn not_durable(&self) -> usize {
        match &self.driver {
            Driver::Sync(d) => usize::from(d.syncing.is_some()),
            Driver::Async(t) => t.pending(),
        }
    }

    /// Whether the node waits for nothing: no fsync in flight, no input queued and
    /// nothing handed to storage left to report.
    pub fn is_idle(&self) -> bool {
        match &self.driver {
            Driver::Sync(d) => d.syncing.is_none() && d.inbox.is_empty(),
            Driver::Async(t) => t.pending() == 0,
        }
    }
}

/// A node of the simulated cluster.
pub struct SimNode {
    /// Its id.
    pub id: NodeId,
    /// Its disk.
    pub disk: Disk,
    /// Its process, while it runs.
    pub process: Option<Process>,
    /// Bumped at each start; events scheduled for an earlier incarnation are stale.
    pub incarnation: u32,
    /// Its clock (leases, and the timing of its ticks), drawn once per run.
    pub clock: NodeClock,
}

impl SimNode {
    /// A node that has never run, on an empty disk, with `clock`.
    pub fn new(id: NodeId, disk: Disk, clock: NodeClock) -> Self {
        SimNode {
            id,
            disk,
            process: None,
            incarnation: 0,
            clock,
        }
    }

    /// Whether its process runs.
    pub fn is_up(&self) -> bool {
        self.process.is_some()
    }

    /// Whether it runs and an fsync is in flight.
    pub fn is_syncing(&self) -> bool {
        self.process.as_ref().is_some_and(Process::is_syncing)
    }

    /// Its core, while it runs.
    pub fn core(&self) -> Option<&Raft> {
        self.process.as_ref().map(|p| &p.core)
    }
}

//! A simulated node: a disk that survives crashes, and — while it runs — a process
//! holding a real core and the storage it opened.

use std::collections::VecDeque;

use bytes::Bytes;
use keel_raft::{Message, NodeId, Raft, Ready};

use crate::config::Time;
use crate::storage::{Disk, NodeStorage};

/// An input waiting for the core. The core must not be called between `ready` and
/// `advance`, so inputs that arrive during an fsync wait here, as they would in the
/// server's channel.
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
}

/// One incarnation of a node's process.
pub struct Process {
    /// The consensus core.
    pub core: Raft,
    /// Storage opened at start.
    pub storage: Box<dyn NodeStorage>,
    /// Inputs that arrived during an fsync.
    pub inbox: VecDeque<Input>,
    /// The `Ready` whose fsync is in flight: its messages are sent and its writes
    /// buffered; its persisted messages, applies and `advance` wait for the fsync.
    pub syncing: Option<Ready>,
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
    /// Time between two of its ticks (the nominal tick plus its clock drift).
    pub tick_period: Time,
}

impl SimNode {
    /// A node that has never run, on an empty disk.
    pub fn new(id: NodeId, disk: Disk) -> Self {
        SimNode {
            id,
            disk,
            process: None,
            incarnation: 0,
            tick_period: crate::config::TICK,
        }
    }

    /// Whether its process runs.
    pub fn is_up(&self) -> bool {
        self.process.is_some()
    }

    /// Whether it runs and an fsync is in flight.
    pub fn is_syncing(&self) -> bool {
        self.process.as_ref().is_some_and(|p| p.syncing.is_some())
    }

    /// Its core, while it runs.
    pub fn core(&self) -> Option<&Raft> {
        self.process.as_ref().map(|p| &p.core)
    }
}

//! What every group on the consensus thread shares: the node's one WAL, its
//! transport, event log, metrics, disk watch and lease clock.
//!
//! The groups hosted by a node (`group.rs`) each own their core and state
//! machine; everything a turn does for several of them at once — one WAL batch
//! and one fsync, one batch of messages per peer — goes through this context.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crossbeam_channel::Receiver;
use keel_raft::{GroupId, Index, Message};
use keel_storage::wal::{Compaction, Wal, WalError};

use super::disk::DiskWatch;
use super::lease::LeaseClock;
use crate::events::EventLog;
use crate::metrics::Metrics;
use crate::transport::Transport;

/// The consensus thread's node-wide resources.
pub(crate) struct NodeCtx {
    pub(crate) transport: Transport,
    pub(crate) events: Arc<Mutex<EventLog>>,
    /// The node's write-ahead log, shared by every group it hosts.
    pub(crate) wal: Wal,
    pub(crate) metrics: Arc<Metrics>,
    /// Free space, and WAL writes waiting for it (`disk.rs`).
    pub(crate) disk: DiskWatch,
    /// An apply thread that stopped on an error says why here.
    pub(crate) fatal_rx: Receiver<String>,
    /// The clock leases are measured on; a core reads it before every input.
    pub(crate) clock: LeaseClock,
    /// Requests in flight allowed per group before new ones are refused.
    pub(crate) max_pending: usize,
    /// Messages of every group with a Ready this round, sent together by
    /// [`NodeCtx::send_staged`]: one batch per peer per round, not one per
    /// group — each batch is a gRPC frame, a wake-up of the peer's receiver
    /// and a pass of its demultiplexer, costs that would otherwise grow with
    /// the number of groups.
    staged: Vec<Message>,
    /// Each group's latest compaction bound: a WAL segment goes only once every
    /// group's entries in it are covered, so one group's compaction must not
    /// assume anything of the others'.
    wal_bounds: BTreeMap<GroupId, Index>,
}

impl NodeCtx {
    /// A context around the node's WAL, transport and the rest.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        transport: Transport,
        events: Arc<Mutex<EventLog>>,
        wal: Wal,
        metrics: Arc<Metrics>,
        disk: DiskWatch,
        fatal_rx: Receiver<String>,
        clock: LeaseClock,
        max_pending: usize,
    ) -> Self {
        NodeCtx {
            transport,
            events,
            wal,
            metrics,
            disk,
            fatal_rx,
            clock,
            max_pending,
            staged: Vec::new(),
            wal_bounds: BTreeMap::new(),
        }
    }

    /// Queues `messages` (taking them) for this round's [`NodeCtx::send_staged`].
    pub(crate) fn stage(&mut self, messages: &mut Vec<Message>) {
        if self.staged.is_empty() {
            std::mem::swap(&mut self.staged, messages);
        } else {
            self.staged.append(messages);
        }
    }

    /// Sends everything staged since the last call, one batch per peer.
    pub(crate) fn send_staged(&mut self) {
        self.transport.send_all(&mut self.staged);
    }

    /// Writes `line` to the event log at once.
    pub(crate) fn note(&self, line: &str) {
        let mut events = self.events.lock().expect("event log lock poisoned");
        events.note(line);
        events.flush();
    }

    /// How much the WAL holds, and which groups keep its oldest segment, with
    /// every group's latest compaction bound.
    pub(crate) fn wal_pressure(&self) -> keel_storage::wal::Pressure {
        let bounds = &self.wal_bounds;
        self.wal
            .pressure(|g| bounds.get(&g).copied().unwrap_or_default())
    }

    /// Deletes the WAL segments that every group's snapshots cover, after
    /// raising `group`'s bound to `up_to`. Other groups keep the bounds they
    /// set last (0 until their first compaction: their entries pin segments).
    pub(crate) fn compact_wal(
        &mut self,
        group: GroupId,
        up_to: Index,
    ) -> Result<Compaction, WalError> {
        let bound = self.wal_bounds.entry(group).or_default();
        *bound = (*bound).max(up_to);
        let bounds = &self.wal_bounds;
        self.wal
            .compact(|g| bounds.get(&g).copied().unwrap_or_default())
    }
}

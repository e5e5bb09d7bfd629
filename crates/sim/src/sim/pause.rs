//! Paused processes: a node stopped like with SIGSTOP, resumed like with SIGCONT.
//!
//! While paused, a node takes no steps at all: no ticks, no deliveries, no fsync
//! or snapshot completions, no transfers received or reported, no client requests
//! or reads served. Everything that arrives for it meanwhile is held, in order,
//! as a socket buffer or a channel would hold it, and handed to it when it resumes.
//! Its clock runs on (it is the machine's), which is what makes a pause longer
//! than a lease interesting: the node resumes believing whatever it believed, and
//! only its clock tells it that time has passed.
//!
//! A crash of a paused node (a power failure) ends the pause: what was held is
//! released first, and then finds the process gone, as it would. A pause
//! stops the whole process: every group the node hosts.

use std::collections::BTreeMap;

use keel_raft::NodeId;

use super::{Scheduled, Simulation};
use crate::trace::TraceEvent;

/// What one paused node holds.
#[derive(Debug)]
struct Paused {
    /// The fault that paused it: only that fault's end resumes it.
    fault: u64,
    /// Events for it that came due while it was paused, in order.
    held: Vec<Scheduled>,
}

/// The paused nodes.
#[derive(Debug, Default)]
pub(super) struct Pauses {
    by_node: BTreeMap<NodeId, Paused>,
}

impl Pauses {
    /// Nodes that are paused.
    pub(super) fn nodes(&self) -> Vec<NodeId> {
        self.by_node.keys().copied().collect()
    }
}

impl Simulation {
    /// Whether replica `id`'s node is paused.
    pub(super) fn is_paused(&self, id: NodeId) -> bool {
        self.pauses.by_node.contains_key(&self.host_of(id))
    }

    /// Pauses node `id` (fault `fault`), unless it is down or paused already.
    pub(super) fn pause(&mut self, id: NodeId, fault: u64) {
        if !self.node(id).is_up() || self.is_paused(id) {
            return;
        }
        self.stats.pauses += 1;
        self.pauses.by_node.insert(
            id,
            Paused {
                fault,
                held: Vec::new(),
            },
        );
    }

    /// Resumes node `id` if fault `fault` paused it (any pause if `None`): what
    /// was held for it becomes due now, in the order it arrived.
    pub(super) fn resume(&mut self, id: NodeId, fault: Option<u64>) {
        let Some(p) = self.pauses.by_node.get(&id) else {
            return;
        };
        if fault.is_some_and(|f| f != p.fault) {
            return;
        }
        let p = self.pauses.by_node.remove(&id).expect("checked above");
        self.record(TraceEvent::Resumed {
            node: id,
            held: p.held.len(),
        });
        for event in p.held {
            self.schedule(0, event);
        }
    }

    /// Holds `event` if it is for a paused node; otherwise hands it back.
    pub(super) fn hold_if_paused(&mut self, event: Scheduled) -> Option<Scheduled> {
        let Some(node) = self.recipient(&event) else {
            return Some(event);
        };
        let host = self.host_of(node);
        match self.pauses.by_node.get_mut(&host) {
            Some(p) => {
                p.held.push(event);
                None
            }
            None => Some(event),
        }
    }

    /// The node an event is carried out by, if it is one node's to carry out.
    /// Faults, the client's and the operator's timers, and planned crashes (a
    /// power failure strikes a paused process too) belong to no node.
    fn recipient(&self, event: &Scheduled) -> Option<NodeId> {
        match event {
            Scheduled::Tick { node, .. }
            | Scheduled::SyncDone { node, .. }
            | Scheduled::SnapshotWritten { node, .. }
            | Scheduled::TransferDone { node, .. }
            | Scheduled::Feed { node, .. } => Some(*node),
            Scheduled::Deliver(m) => Some(m.to),
            Scheduled::TransferArrives(id) => self.transfer_recipient(*id),
            Scheduled::ReadArrives(id) => self.reads.node_of(*id),
            Scheduled::PlannedCrash { .. }
            | Scheduled::Client
            | Scheduled::ClientRead
            | Scheduled::FaultTimer
            | Scheduled::Admin
            | Scheduled::FaultEnd(_) => None,
        }
    }
}

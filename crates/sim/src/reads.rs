//! The client's reads: what it asked of which node, and where each read stands.
//!
//! A read is issued at a moment (its *invocation*) to one node in one mode:
//!
//! - **linearizable**: through ReadIndex — on the leader, or on a follower that
//!   asks the leader for a read index — and served once the node has applied the
//!   index it got;
//! - **lease**: served at once by a node whose core holds a lease valid at the
//!   node's clock (once it has applied its commit index, and if the lease still
//!   holds then, as the server checks it *after* reading); otherwise through
//!   ReadIndex like a linearizable read;
//! - **stale**: served at once from the node's local state, whatever it is.
//!
//! A read is answered only by the process incarnation it reached: a crash loses
//! it, as does a core that drops it (a leader stepping down, a lost message); the
//! client gives up on reads that take too long, as a server's timeout would.
//! What a served read returned goes to the read checker
//! ([`crate::checker::ReadRecord`]).

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use keel_raft::{Index, NodeId, Term};

use crate::checker::Moment;

/// How a read asks to be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReadMode {
    /// Through ReadIndex.
    Linearizable,
    /// Under the leader's lease, or else through ReadIndex.
    Lease,
    /// From local state, not checked for staleness.
    Stale,
}

impl ReadMode {
    /// Lower-case name, as the server's API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ReadMode::Linearizable => "linearizable",
            ReadMode::Lease => "lease",
            ReadMode::Stale => "stale",
        }
    }
}

impl fmt::Display for ReadMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a read was (or is being) served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReadPath {
    /// Under the leader lease of the given term.
    Lease(Term),
    /// Through the node's own ReadIndex, as leader.
    LeaderReadIndex,
    /// Through the leader's read index, asked by this node as a follower.
    FollowerReadIndex,
    /// From local state at once (stale mode, or the injected follower-read bug).
    Local,
}

impl fmt::Display for ReadPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadPath::Lease(term) => write!(f, "under its lease of term {term}"),
            ReadPath::LeaderReadIndex => f.write_str("through its ReadIndex as leader"),
            ReadPath::FollowerReadIndex => f.write_str("through the leader's read index"),
            ReadPath::Local => f.write_str("from local state at once"),
        }
    }
}

/// Where a pending read stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// On its way to the node (held there while it is paused).
    Arriving,
    /// The node's core was asked for a read index; no answer yet.
    Confirming,
    /// Served once the node has applied `index`.
    Applying {
        /// Index the node's state machine must reach.
        index: Index,
    },
}

/// A read not answered yet.
#[derive(Clone, Debug)]
pub struct PendingRead {
    /// The node asked.
    pub node: NodeId,
    /// The node's process incarnation when it was asked.
    pub incarnation: u32,
    /// The mode the client asked for.
    pub mode: ReadMode,
    /// The key read.
    pub key: Bytes,
    /// When the client issued it.
    pub invoked: Moment,
    /// The committed index any node knew of then (what it must reflect).
    pub committed: Index,
    /// Where it stands.
    pub stage: Stage,
    /// How it is being served (decided once it reached the node).
    pub path: ReadPath,
}

/// The client's reads in flight.
#[derive(Debug, Default)]
pub struct Reads {
    next: u64,
    pending: BTreeMap<u64, PendingRead>,
}

impl Reads {
    /// Records a new read; returns its id (also its ReadIndex context: unique in
    /// the run, so an answer meant for a crashed incarnation matches nothing).
    pub fn issue(
        &mut self,
        node: NodeId,
        incarnation: u32,
        mode: ReadMode,
        key: Bytes,
        (invoked, committed): (Moment, Index),
    ) -> u64 {
        self.next += 1;
        let path = match mode {
            ReadMode::Stale => ReadPath::Local,
            _ => ReadPath::LeaderReadIndex,
        };
        self.pending.insert(
            self.next,
            PendingRead {
                node,
                incarnation,
                mode,
                key,
                invoked,
                committed,
                stage: Stage::Arriving,
                path,
            },
        );
        self.next
    }

    /// The pending read `id`.
    pub fn get(&self, id: u64) -> Option<&PendingRead> {
        self.pending.get(&id)
    }

    /// The pending read `id`, to move it along.
    pub fn get_mut(&mut self, id: u64) -> Option<&mut PendingRead> {
        self.pending.get_mut(&id)
    }

    /// The node read `id` was sent to, while it is pending.
    pub fn node_of(&self, id: u64) -> Option<NodeId> {
        self.pending.get(&id).map(|r| r.node)
    }

    /// Removes read `id` (answered, or given up on).
    pub fn take(&mut self, id: u64) -> Option<PendingRead> {
        self.pending.remove(&id)
    }

    /// Pending reads at `node` (incarnation `incarnation`) that may be served once
    /// its state machine has applied `applied`.
    pub fn ready_at(&self, node: NodeId, incarnation: u32, applied: Index) -> Vec<u64> {
        self.pending
            .iter()
            .filter(|(_, r)| r.node == node && r.incarnation == incarnation)
            .filter(|(_, r)| matches!(r.stage, Stage::Applying { index } if index <= applied))
            .map(|(&id, _)| id)
            .collect()
    }

    /// Drops every read pending at `node` (it crashed); returns how many.
    pub fn drop_node(&mut self, node: NodeId) -> usize {
        let before = self.pending.len();
        self.pending.retain(|_, r| r.node != node);
        before - self.pending.len()
    }

    /// Gives up on every read invoked before `time` (the client timed out);
    /// returns how many.
    pub fn expire(&mut self, time: crate::config::Time) -> usize {
        let before = self.pending.len();
        self.pending.retain(|_, r| r.invoked.time >= time);
        before - self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(time: u64) -> (Moment, Index) {
        (Moment { step: time, time }, 0)
    }

    #[test]
    fn reads_wait_for_their_index_on_their_incarnation() {
        let mut reads = Reads::default();
        let a = reads.issue(1, 3, ReadMode::Linearizable, Bytes::new(), at(5));
        let b = reads.issue(1, 3, ReadMode::Lease, Bytes::new(), at(6));
        assert_ne!(a, b);
        assert_eq!(reads.node_of(a), Some(1));
        reads.get_mut(a).expect("pending").stage = Stage::Applying { index: 10 };
        assert!(reads.ready_at(1, 3, 9).is_empty());
        assert_eq!(reads.ready_at(1, 3, 10), vec![a]);
        assert!(reads.ready_at(1, 4, 10).is_empty(), "another incarnation");
        assert_eq!(reads.drop_node(1), 2);
        assert_eq!(reads.node_of(a), None);
    }

    #[test]
    fn old_reads_expire() {
        let mut reads = Reads::default();
        let old = reads.issue(1, 1, ReadMode::Stale, Bytes::new(), at(5));
        let young = reads.issue(1, 1, ReadMode::Stale, Bytes::new(), at(50));
        assert_eq!(reads.expire(10), 1);
        assert!(reads.get(old).is_none() && reads.get(young).is_some());
    }
}

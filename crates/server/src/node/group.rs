//! One Raft group hosted by this node, as the consensus thread holds it: its core
//! and everything kept per group — the state machine and its apply queue,
//! snapshots, membership, reads waiting for confirmation, the published lease and
//! status. The node's WAL, transport and event log are shared (`ctx.rs`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use keel_raft::{GroupId, Message, MessageBody, NodeId, Raft, Role};
use keel_storage::kv::KvStore;
use tokio::sync::watch;

use super::KV_GROUP;
use super::apply::{ApplyHandle, ApplyJob};
use super::ctx::NodeCtx;
use super::lease::LeaseCell;
use super::membership::Membership;
use super::reads::UnconfirmedReads;
use super::snapshots::Snapshots;
use super::status::NodeStatus;
use crate::error::ServerError;
use crate::events::EventLog;
use crate::metrics::gauge_value;

/// A hosted group's state on the consensus thread.
pub(crate) struct Group {
    pub(crate) raft: Raft,
    pub(crate) kv: Arc<KvStore>,
    /// Committed entries and answers go here (`apply.rs`), per group.
    pub(crate) apply: ApplyHandle,
    /// Term and vote as last made durable: only changes to them (and entries) need
    /// an fsync; a commit-index change rides along with the next one.
    pub(crate) durable_term_vote: (u64, u64),
    pub(crate) status_tx: watch::Sender<NodeStatus>,
    pub(crate) writes_in_flight: Arc<AtomicUsize>,
    pub(crate) reads: UnconfirmedReads,
    pub(crate) role: Role,
    /// When the oldest unanswered heartbeat to each peer went out, for the
    /// round-trip metric.
    pub(crate) heartbeats_out: BTreeMap<NodeId, Instant>,
    /// The leader as last reported by the core, to count leader changes.
    pub(crate) last_leader: NodeId,
    /// Snapshots: taking, sending, installing (`snapshots.rs`).
    pub(crate) snapshots: Snapshots,
    /// Member book, promotions, operators' changes (`membership.rs`).
    pub(crate) membership: Membership,
    /// Where API handlers find the lease (`lease.rs`).
    pub(crate) lease: Arc<LeaseCell>,
    /// The group's events: the node's event log, labelled for any group but
    /// the key-value group (`[placement group] …`).
    pub(crate) events: Arc<Mutex<EventLog>>,
}

/// Writes `line` to a group's event log at once. (A function of the field, not
/// of the group, so it can be called while other fields are borrowed.)
pub(crate) fn group_note(events: &Mutex<EventLog>, line: &str) {
    let mut events = events.lock().expect("event log lock poisoned");
    events.note(line);
    events.flush();
}

impl Group {
    /// The group's id.
    pub(crate) fn id(&self) -> GroupId {
        self.raft.group()
    }

    /// Whether this group's state is what the node reports as its own (status
    /// gauges, the member book that decides the transport's peers): group 1's,
    /// until the cluster map takes that role (docs/sharding.md, step 6).
    pub(crate) fn is_primary(&self) -> bool {
        self.id() == KV_GROUP
    }

    /// Steps a peer message into the core.
    pub(crate) fn step(&mut self, ctx: &NodeCtx, m: Message) {
        if let MessageBody::HeartbeatResponse { .. } = m.body
            && let Some(sent) = self.heartbeats_out.remove(&m.from)
        {
            ctx.metrics.peer_round_trip(m.from, sent.elapsed());
        }
        // Read the clock for every message: a lease heard in it must be measured
        // from no earlier than its arrival.
        self.raft.set_clock(ctx.clock.now());
        if let Err(e) = self.raft.step(m) {
            tracing::warn!("dropped a peer message: {e}");
        }
    }

    /// Hands `job` to this group's apply side.
    pub(crate) fn hand_to_apply(
        &mut self,
        ctx: &NodeCtx,
        job: ApplyJob,
    ) -> Result<(), ServerError> {
        self.apply.submit(job).map_err(|e| {
            // If the apply thread stopped, its own report says why.
            match ctx.fatal_rx.try_recv() {
                Ok(reason) => ServerError::Fatal(reason),
                Err(_) => e,
            }
        })
    }

    /// Publishes the group's status for the API, and — for the primary group —
    /// the node's consensus gauges.
    pub(crate) fn publish_status(&self, ctx: &NodeCtx, s: keel_raft::Status) {
        let applied = self.kv.applied_index();
        if self.is_primary() {
            let m = &ctx.metrics;
            m.term.set(gauge_value(s.term));
            m.commit_index.set(gauge_value(s.commit));
            m.is_leader.set(i64::from(s.role == Role::Leader));
            m.writes_in_flight.set(gauge_value(
                self.writes_in_flight.load(Ordering::Relaxed) as u64
            ));
            m.reads_unconfirmed
                .set(gauge_value(self.reads.len() as u64));
        }
        self.status_tx.send_if_modified(|cur| {
            let next = NodeStatus {
                id: s.id,
                role: s.role,
                term: s.term,
                leader: s.leader,
                commit: s.commit,
                applied,
                last_index: s.last_index,
                peers: s.peers,
                conf: s.conf,
                conf_index: self.membership.conf_index,
                quiesced: self.raft.is_quiesced(),
            };
            if *cur == next {
                false
            } else {
                *cur = next;
                true
            }
        });
    }
}

/// The groups a node hosts, by id. Adding a group is adding an entry here (and
/// to the receiver's set, [`crate::transport::HostedGroups`], so its messages
/// are let in).
#[derive(Default)]
pub(crate) struct GroupTable {
    groups: BTreeMap<GroupId, Group>,
}

impl GroupTable {
    /// Hosts `group` from now on.
    pub(crate) fn insert(&mut self, group: Group) {
        self.groups.insert(group.id(), group);
    }

    pub(crate) fn get_mut(&mut self, id: GroupId) -> Option<&mut Group> {
        self.groups.get_mut(&id)
    }

    /// Stops hosting `id`: takes its entry out of the table and returns it.
    pub(crate) fn remove(&mut self, id: GroupId) -> Option<Group> {
        self.groups.remove(&id)
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Group> {
        self.groups.values_mut()
    }
}

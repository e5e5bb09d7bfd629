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
use super::quiet::{self, GroupIdle, PeerNodes, QuietStep, ReplicaView, quiet_step};
use super::reads::UnconfirmedReads;
use super::snapshots::Snapshots;
use super::status::NodeStatus;
use crate::error::ServerError;
use crate::events::EventLog;
use crate::group_metrics::GroupGauges;
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
    /// The group's own consensus gauges (`group_metrics.rs`).
    pub(crate) gauges: GroupGauges,
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

    /// Whether the per-turn passes would find nothing to do in this group
    /// until something wakes it (`quiet::may_park`), after this turn's status
    /// and lease were published.
    pub(crate) fn may_park(&self, ctx: &NodeCtx, peers: &impl PeerNodes) -> bool {
        let r = &self.raft;
        if !r.is_quiesced() {
            return false;
        }
        let hs = r.hard_state();
        let applied = self.kv.applied_index();
        let idle = GroupIdle {
            primary: self.is_primary(),
            core_settled: !r.has_ready()
                && !ctx.disk.stalled()
                && self.durable_term_vote == (hs.term, hs.vote),
            has_learners: r.learners().next().is_some(),
            runtime_idle: self.reads.len() == 0
                && !self.membership.has_deferred()
                && self.snapshots.is_idle(applied)
                && applied >= r.commit_index(),
        };
        quiet::may_park(ReplicaView::of(r), idle, peers)
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
        let g = &self.gauges;
        g.term.set(gauge_value(s.term));
        g.commit_index.set(gauge_value(s.commit));
        g.applied_index.set(gauge_value(applied));
        g.is_leader.set(i64::from(s.role == Role::Leader));
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

/// What the table needs of a hosted group: its core. (A trait so that the
/// table's rules can be tested on bare cores.)
pub(crate) trait Replica {
    fn raft(&self) -> &Raft;
    fn raft_mut(&mut self) -> &mut Raft;
}

impl Replica for Group {
    fn raft(&self) -> &Raft {
        &self.raft
    }

    fn raft_mut(&mut self) -> &mut Raft {
        &mut self.raft
    }
}

/// The groups a node hosts, by id. Adding a group is adding an entry here (and
/// to the receiver's set, [`crate::transport::HostedGroups`], so its messages
/// are let in).
///
/// A group with nothing to do — quiesced, nothing in flight, everything
/// published (`quiet::may_park`) — is *parked*: kept in a second map that the
/// consensus thread's per-turn passes (ticks, Readys, status, snapshots) do
/// not visit, so a node's idle cost does not grow with its quiet groups
/// (BENCHMARKS.md, "Idle groups"). A quiesced core ignores ticks, so a parked
/// one misses nothing by not being ticked. Whatever needs a parked group finds
/// it by id ([`GroupTable::get_mut`]), which puts it back among the awake ones
/// first: a peer message, a request, a snapshot under WAL pressure; and a
/// follower whose leader's node falls silent is woken by
/// [`GroupTable::wake_followers_of_silent`].
pub(crate) struct GroupTable<G = Group> {
    /// Groups the per-turn passes visit.
    awake: BTreeMap<GroupId, G>,
    /// Groups with nothing to do until something names them.
    parked: BTreeMap<GroupId, G>,
}

impl<G> Default for GroupTable<G> {
    fn default() -> Self {
        GroupTable {
            awake: BTreeMap::new(),
            parked: BTreeMap::new(),
        }
    }
}

impl<G: Replica> GroupTable<G> {
    /// Hosts `group` from now on (awake).
    pub(crate) fn insert(&mut self, group: G) {
        let id = group.raft().group();
        self.parked.remove(&id);
        self.awake.insert(id, group);
    }

    /// The group `id`, woken (moved back among the awake groups) if parked.
    pub(crate) fn get_mut(&mut self, id: GroupId) -> Option<&mut G> {
        if let Some(g) = self.parked.remove(&id) {
            self.awake.insert(id, g);
        }
        self.awake.get_mut(&id)
    }

    /// Whether `id` is hosted and parked.
    pub(crate) fn is_parked(&self, id: GroupId) -> bool {
        self.parked.contains_key(&id)
    }

    /// Stops hosting `id`: takes its entry out of the table and returns it.
    pub(crate) fn remove(&mut self, id: GroupId) -> Option<G> {
        self.awake.remove(&id).or_else(|| self.parked.remove(&id))
    }

    /// The awake groups: what the per-turn passes visit.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut G> {
        self.awake.values_mut()
    }

    /// Every hosted group, parked ones included (shutdown, and writes that
    /// wait for disk space: rare events that concern all of them).
    pub(crate) fn all_mut(&mut self) -> impl Iterator<Item = &mut G> {
        self.awake.values_mut().chain(self.parked.values_mut())
    }

    /// Wakes every parked group (the disk filled up or has space again: every
    /// core hears of it, and a leader may hand over leadership).
    pub(crate) fn wake_all(&mut self) {
        self.awake.append(&mut self.parked);
    }

    /// How many groups are parked.
    pub(crate) fn parked_count(&self) -> usize {
        self.parked.len()
    }

    /// Parks every awake group for which `may_park` says so.
    pub(crate) fn park_where(&mut self, mut may_park: impl FnMut(&G) -> bool) {
        let ids: Vec<GroupId> = self
            .awake
            .iter()
            .filter(|(_, g)| may_park(g))
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            if let Some(g) = self.awake.remove(&id) {
                self.parked.insert(id, g);
            }
        }
    }

    /// Wakes the parked followers whose leader's node `peers` call silent
    /// (`quiet_step`), so that they campaign after their election timeout like
    /// any follower; returns how many were woken per leader. A parked leader
    /// stays parked: a silent follower is no reason to wake it.
    pub(crate) fn wake_followers_of_silent(
        &mut self,
        peers: &impl PeerNodes,
    ) -> BTreeMap<NodeId, u64> {
        let to_wake: Vec<(GroupId, NodeId)> = self
            .parked
            .iter()
            .filter_map(|(&id, g)| {
                let view = ReplicaView::of(g.raft());
                (quiet_step(view, std::iter::empty, peers) == QuietStep::Wake)
                    .then_some((id, view.leader))
            })
            .collect();
        let mut woken: BTreeMap<NodeId, u64> = BTreeMap::new();
        for (id, leader) in to_wake {
            if let Some(g) = self.get_mut(id) {
                g.raft_mut().wake();
                *woken.entry(leader).or_default() += 1;
            }
        }
        woken
    }
}

#[cfg(test)]
mod tests {
    use keel_raft::{ConfState, Config, InitialState};

    use super::*;

    /// A bare core in the table, counting the ticks the pass gave it.
    struct Core {
        raft: Raft,
        ticks: u32,
    }

    impl Replica for Core {
        fn raft(&self) -> &Raft {
            &self.raft
        }
        fn raft_mut(&mut self) -> &mut Raft {
            &mut self.raft
        }
    }

    /// Peers whose nodes are silent; every peer runs liveness.
    struct Peers(Vec<NodeId>);

    impl PeerNodes for Peers {
        fn is_silent(&self, peer: NodeId) -> bool {
            self.0.contains(&peer)
        }
        fn runs_liveness(&self, _: NodeId) -> bool {
            true
        }
    }

    const ELECTION_TICKS: u32 = 10;

    fn heartbeat(group: GroupId, leader: NodeId, quiesce: bool) -> Message {
        Message {
            group,
            from: leader,
            to: 1,
            term: 1,
            body: MessageBody::Heartbeat {
                commit: 0,
                read_seq: 1,
                lease: 0,
                quiesce,
            },
        }
    }

    fn settle(raft: &mut Raft) {
        while raft.has_ready() {
            let rd = raft.ready();
            raft.advance(rd);
        }
    }

    /// Node 1's replica of `group` (voters 1, 2, 3), following `leader` in
    /// term 1, quiesced by its mark if `quiesced`.
    fn follower(group: GroupId, leader: NodeId, quiesced: bool) -> Core {
        let cfg = Config {
            id: 1,
            group,
            election_ticks: ELECTION_TICKS,
            heartbeat_ticks: 1,
            ..Config::default()
        };
        let init = InitialState {
            conf: ConfState {
                voters: vec![1, 2, 3],
                learners: Vec::new(),
            },
            ..InitialState::default()
        };
        let mut raft = Raft::new(cfg, init, group).expect("valid config");
        raft.step(heartbeat(group, leader, false)).expect("valid");
        settle(&mut raft);
        if quiesced {
            raft.step(heartbeat(group, leader, true)).expect("valid");
            settle(&mut raft);
        }
        assert_eq!((raft.leader(), raft.is_quiesced()), (leader, quiesced));
        Core { raft, ticks: 0 }
    }

    /// What the consensus thread does to the awake groups each tick.
    fn tick(table: &mut GroupTable<Core>, ticks: u32) {
        for _ in 0..ticks {
            for c in table.iter_mut() {
                c.raft.tick();
                c.ticks += 1;
                settle(&mut c.raft);
            }
        }
    }

    /// Parks the quiesced groups, as `Group::may_park` would with nothing else
    /// going on.
    fn park_quiesced(table: &mut GroupTable<Core>) {
        table.park_where(|c| c.raft.is_quiesced());
    }

    #[test]
    fn a_parked_group_is_not_ticked_and_an_awake_one_is() {
        let mut table = GroupTable::default();
        table.insert(follower(10, 2, true));
        table.insert(follower(11, 2, false));
        park_quiesced(&mut table);
        assert!(table.is_parked(10) && !table.is_parked(11));
        assert_eq!(table.parked_count(), 1);
        tick(&mut table, 3 * ELECTION_TICKS);
        let awake = table.get_mut(11).expect("hosted");
        assert_eq!(awake.ticks, 3 * ELECTION_TICKS);
        assert_ne!(awake.raft.role(), Role::Follower, "it timed out");
        let parked = table.remove(10).expect("a parked group is still hosted");
        assert_eq!(parked.ticks, 0);
        assert_eq!(parked.raft.role(), Role::Follower);
        assert!(parked.raft.is_quiesced());
    }

    #[test]
    fn a_message_to_a_parked_group_wakes_it_and_its_election_timer_runs_again() {
        let mut table = GroupTable::default();
        table.insert(follower(10, 2, true));
        park_quiesced(&mut table);
        // Whoever has something for the group finds it by id: a pre-vote from
        // node 3, say (refused, as 1 follows a live leader, but it wakes it).
        let g = table.get_mut(10).expect("hosted");
        g.raft
            .step(Message {
                group: 10,
                from: 3,
                to: 1,
                term: 2,
                body: MessageBody::RequestVote {
                    last_log_index: 0,
                    last_log_term: 0,
                    pre_vote: true,
                    transfer: false,
                },
            })
            .expect("valid");
        assert!(!g.raft.is_quiesced());
        assert!(!table.is_parked(10), "found by id: awake again");
        park_quiesced(&mut table);
        assert!(!table.is_parked(10), "no longer quiesced: not parked");
        tick(&mut table, 2 * ELECTION_TICKS);
        let g = table.get_mut(10).expect("hosted");
        assert_eq!(g.ticks, 2 * ELECTION_TICKS);
        assert_eq!(
            g.raft.role(),
            Role::PreCandidate,
            "its leader said nothing since: it campaigns"
        );
    }

    #[test]
    fn a_parked_follower_is_woken_when_its_leaders_node_falls_silent() {
        let mut table = GroupTable::default();
        table.insert(follower(10, 2, true));
        table.insert(follower(12, 3, true));
        park_quiesced(&mut table);
        assert!(
            table.wake_followers_of_silent(&Peers(vec![])).is_empty(),
            "nobody is silent"
        );
        let woken = table.wake_followers_of_silent(&Peers(vec![2]));
        assert_eq!(woken, BTreeMap::from([(2, 1)]));
        assert!(!table.is_parked(10), "node 2 led it");
        assert!(table.is_parked(12), "node 3 is alive");
        tick(&mut table, 2 * ELECTION_TICKS);
        assert_eq!(
            table.get_mut(10).expect("hosted").raft.role(),
            Role::PreCandidate,
            "a woken follower campaigns after its election timeout"
        );
        assert_eq!(table.remove(12).expect("hosted").ticks, 0);
    }

    #[test]
    fn every_group_is_reached_through_all_mut_and_wake_all() {
        let mut table = GroupTable::default();
        table.insert(follower(10, 2, true));
        table.insert(follower(11, 2, false));
        park_quiesced(&mut table);
        assert_eq!(table.all_mut().count(), 2);
        assert_eq!(table.iter_mut().count(), 1);
        table.wake_all();
        assert_eq!(table.parked_count(), 0);
        assert_eq!(table.iter_mut().count(), 2);
    }
}

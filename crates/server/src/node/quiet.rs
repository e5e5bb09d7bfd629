//! When the runtime quiesces a replica and when it wakes one (docs/sharding.md,
//! "Heartbeats: coalesced, and quiet groups quiesce"; the core's rules are in
//! keel-raft's `quiesce.rs`).
//!
//! After each turn's ticks the consensus thread asks, for every hosted group:
//!
//! - a leader the core says may quiesce (idle for `quiesce_after_heartbeats`
//!   heartbeat intervals and fully settled) is quiesced, but only when every
//!   other member's node runs node-level liveness. An older node does not, and
//!   a follower there would wait forever for a dead leader: it never learns to
//!   wake itself.
//! - a quiesced follower whose leader's node fell silent for an election
//!   timeout is woken, so it campaigns after its own timeout like any follower
//!   (pre-vote still guards against a node that was merely cut off).
//!
//! Every group may quiesce, group 1 and the placement group included: a
//! quiesced leader holds no lease, so a lease read finds none, falls back to
//! ReadIndex, and that read wakes the group; a write wakes it too.
//!
//! A quiesced replica with nothing else to do is then *parked* ([`may_park`],
//! `group.rs`): the consensus thread's per-turn passes skip it, so 1,000 quiet
//! groups cost a node nothing per tick. What still needs a parked replica
//! reaches it by id and wakes it first: a peer message or request (the core
//! then wakes itself as it would unparked), and, for a follower, its leader's
//! node falling silent — the driver looks at the parked replicas again each
//! time liveness calls another peer silent ([`NodeLiveness::silenced`]) and
//! wakes the followers [`quiet_step`] says to wake, the same tick an unparked
//! one would be.

use keel_raft::{NodeId, Raft, Role};

use super::liveness::NodeLiveness;

/// What the runtime does with one replica this turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum QuietStep {
    /// Quiesce the leader (`Raft::quiesce`).
    Quiesce,
    /// Wake the quiesced follower (`Raft::wake`).
    Wake,
    /// Leave it as it is.
    Keep,
}

/// One replica, as the decision needs to see it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReplicaView {
    /// This node.
    pub(crate) id: NodeId,
    pub(crate) role: Role,
    /// The leader this replica follows (0: none known).
    pub(crate) leader: NodeId,
    pub(crate) quiesced: bool,
    /// The core's `can_quiesce` (only ever true on a leader).
    pub(crate) can_quiesce: bool,
}

impl ReplicaView {
    /// The replica `r`, as the decisions see it.
    pub(crate) fn of(r: &Raft) -> Self {
        ReplicaView {
            id: r.id(),
            role: r.role(),
            leader: r.leader(),
            quiesced: r.is_quiesced(),
            can_quiesce: r.role() == Role::Leader && r.can_quiesce(),
        }
    }
}

/// `view`, kept from quiescing while its group takes part in a slot move
/// (`moving`, asked only of a leader that could quiesce): between a paced
/// copy's pages the group looks idle, and a quiesced leader sends no
/// heartbeats, so a follower that missed the quiesce mark, or that liveness
/// woke because the leader's busy node looked silent, would campaign in the
/// middle of the move (seen in `keel bench move`: the copy restarted under a
/// new leader).
pub(crate) fn awake_while_moving(
    mut view: ReplicaView,
    moving: impl FnOnce() -> bool,
) -> ReplicaView {
    if view.can_quiesce && moving() {
        view.can_quiesce = false;
    }
    view
}

/// What the decision needs to know about peer nodes.
pub(crate) trait PeerNodes {
    /// Nothing came from `peer` for an election timeout.
    fn is_silent(&self, peer: NodeId) -> bool;
    /// `peer` wakes its replicas when a leader's node falls silent.
    fn runs_liveness(&self, peer: NodeId) -> bool;
}

impl PeerNodes for NodeLiveness {
    fn is_silent(&self, peer: NodeId) -> bool {
        NodeLiveness::is_silent(self, peer)
    }

    fn runs_liveness(&self, peer: NodeId) -> bool {
        NodeLiveness::runs_liveness(self, peer)
    }
}

/// Decides for one replica; `members` are its group's voters and learners
/// (asked for only when the leader may quiesce).
pub(crate) fn quiet_step<M: IntoIterator<Item = NodeId>>(
    r: ReplicaView,
    members: impl FnOnce() -> M,
    peers: &impl PeerNodes,
) -> QuietStep {
    if r.quiesced {
        let follows_another = r.role != Role::Leader && r.leader != r.id;
        // No leader known counts as a silent one: nothing would wake us.
        if follows_another && peers.is_silent(r.leader) {
            return QuietStep::Wake;
        }
        return QuietStep::Keep;
    }
    if r.role == Role::Leader
        && r.can_quiesce
        && members()
            .into_iter()
            .filter(|&m| m != r.id)
            .all(|m| peers.runs_liveness(m))
    {
        return QuietStep::Quiesce;
    }
    QuietStep::Keep
}

/// Everything besides the core that decides whether a group may be parked.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GroupIdle {
    /// The node's own group (group 1): it keeps its per-turn duties for the
    /// node (status gauges, noticing this node's removal), and is never parked.
    pub(crate) primary: bool,
    /// The core has no Ready to hand out, and every write it handed out is
    /// durable (its term and vote included).
    pub(crate) core_settled: bool,
    /// The configuration has learners: a leader promotes a caught-up one on
    /// a timer, so it must keep being visited.
    pub(crate) has_learners: bool,
    /// No read waits for confirmation, no membership change is deferred, no
    /// snapshot is being written, sent or compacted or is due, and the state
    /// machine has applied everything committed (so the published status is
    /// final).
    pub(crate) runtime_idle: bool,
}

/// Whether a replica may be parked: the per-turn passes would find nothing to
/// do in it until something wakes it. Only a quiesced replica (a quiesced core
/// ignores ticks) whose quiet step is to stay as it is: a follower whose leader
/// is silent is woken instead, and one that knows no leader is never parked
/// (only a known leader's node falling silent would wake it).
pub(crate) fn may_park(r: ReplicaView, g: GroupIdle, peers: &impl PeerNodes) -> bool {
    r.quiesced
        && (r.role == Role::Leader || r.leader != keel_raft::NO_NODE)
        && !g.primary
        && g.core_settled
        && g.runtime_idle
        && !(r.role == Role::Leader && g.has_learners)
        && quiet_step(r, std::iter::empty, peers) == QuietStep::Keep
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Peers 2 and 3 run liveness; `silent` are silent; 4 is an older node.
    struct Peers {
        silent: BTreeSet<NodeId>,
    }

    impl PeerNodes for Peers {
        fn is_silent(&self, peer: NodeId) -> bool {
            self.silent.contains(&peer)
        }
        fn runs_liveness(&self, peer: NodeId) -> bool {
            peer == 2 || peer == 3
        }
    }

    fn peers(silent: &[NodeId]) -> Peers {
        Peers {
            silent: silent.iter().copied().collect(),
        }
    }

    fn leader(can_quiesce: bool, quiesced: bool) -> ReplicaView {
        ReplicaView {
            id: 1,
            role: Role::Leader,
            leader: 1,
            quiesced,
            can_quiesce,
        }
    }

    fn follower_of(leader: NodeId, quiesced: bool) -> ReplicaView {
        ReplicaView {
            id: 1,
            role: Role::Follower,
            leader,
            quiesced,
            can_quiesce: false,
        }
    }

    #[test]
    fn an_idle_leader_quiesces_when_every_member_runs_liveness() {
        let p = peers(&[]);
        assert_eq!(
            quiet_step(leader(true, false), || [1, 2, 3], &p),
            QuietStep::Quiesce
        );
        assert_eq!(
            quiet_step(leader(false, false), || [1, 2, 3], &p),
            QuietStep::Keep,
            "the core says not yet"
        );
        assert_eq!(
            quiet_step(leader(true, true), || [1, 2, 3], &p),
            QuietStep::Keep,
            "already quiet"
        );
    }

    #[test]
    fn a_leader_with_a_member_on_an_older_node_never_quiesces() {
        assert_eq!(
            quiet_step(leader(true, false), || [1, 2, 4], &peers(&[])),
            QuietStep::Keep
        );
    }

    #[test]
    fn a_quiesced_follower_wakes_only_when_its_leaders_node_is_silent() {
        assert_eq!(
            quiet_step(follower_of(2, true), || [], &peers(&[3])),
            QuietStep::Keep,
            "another node's silence is not its leader's"
        );
        assert_eq!(
            quiet_step(follower_of(2, true), || [], &peers(&[2])),
            QuietStep::Wake
        );
        assert_eq!(
            quiet_step(follower_of(2, false), || [], &peers(&[2])),
            QuietStep::Keep,
            "an awake follower times out by itself"
        );
    }

    #[test]
    fn a_quiesced_leader_is_not_woken_by_silent_peers() {
        assert_eq!(
            quiet_step(leader(false, true), || [1, 2, 3], &peers(&[2, 3])),
            QuietStep::Keep,
            "a proposal or read wakes it; check-quorum resumes then"
        );
    }

    fn idle() -> GroupIdle {
        GroupIdle {
            primary: false,
            core_settled: true,
            has_learners: false,
            runtime_idle: true,
        }
    }

    #[test]
    fn a_quiesced_settled_replica_with_nothing_to_do_may_be_parked() {
        let p = peers(&[]);
        assert!(may_park(leader(false, true), idle(), &p));
        assert!(may_park(follower_of(2, true), idle(), &p));
    }

    #[test]
    fn only_a_quiesced_replica_is_parked() {
        let p = peers(&[]);
        assert!(
            !may_park(leader(true, false), idle(), &p),
            "an awake leader heartbeats on its ticks"
        );
        assert!(
            !may_park(follower_of(2, false), idle(), &p),
            "an awake follower's election timer runs on its ticks"
        );
    }

    #[test]
    fn a_replica_with_work_left_is_not_parked() {
        let p = peers(&[]);
        for g in [
            GroupIdle {
                primary: true,
                ..idle()
            },
            GroupIdle {
                core_settled: false,
                ..idle()
            },
            GroupIdle {
                runtime_idle: false,
                ..idle()
            },
        ] {
            assert!(!may_park(leader(false, true), g, &p), "{g:?}");
            assert!(!may_park(follower_of(2, true), g, &p), "{g:?}");
        }
    }

    #[test]
    fn a_leader_with_learners_is_not_parked_but_their_followers_are() {
        let p = peers(&[]);
        let learners = GroupIdle {
            has_learners: true,
            ..idle()
        };
        assert!(
            !may_park(leader(false, true), learners, &p),
            "it promotes a caught-up learner on a timer"
        );
        assert!(may_park(follower_of(2, true), learners, &p));
    }

    #[test]
    fn a_follower_of_a_silent_or_unknown_leader_is_woken_not_parked() {
        assert!(!may_park(follower_of(2, true), idle(), &peers(&[2])));
        assert!(!may_park(follower_of(0, true), idle(), &peers(&[])));
        assert!(may_park(follower_of(2, true), idle(), &peers(&[3])));
    }

    #[test]
    fn members_are_not_asked_for_unless_the_leader_may_quiesce() {
        let asked = std::cell::Cell::new(false);
        let members = || {
            asked.set(true);
            [1, 2, 3]
        };
        quiet_step(leader(false, false), members, &peers(&[]));
        assert!(!asked.get());
    }

    #[test]
    fn a_leader_in_a_slot_move_does_not_quiesce_and_others_are_not_asked() {
        let leader = ReplicaView {
            id: 1,
            role: Role::Leader,
            leader: 1,
            quiesced: false,
            can_quiesce: true,
        };
        assert!(!awake_while_moving(leader, || true).can_quiesce);
        assert!(awake_while_moving(leader, || false).can_quiesce);
        let busy = ReplicaView {
            can_quiesce: false,
            ..leader
        };
        let asked = std::cell::Cell::new(false);
        awake_while_moving(busy, || {
            asked.set(true);
            true
        });
        assert!(
            !asked.get(),
            "the slot table is read only for a leader that could quiesce"
        );
    }
}

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

use keel_raft::{NodeId, Role};

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
}

//! Node-level liveness (docs/sharding.md, "Heartbeats: coalesced, and quiet
//! groups quiesce"): once idle groups stop heartbeating, a follower can no
//! longer tell a quiet leader from a dead one by its group's messages, so
//! failure detection moves to the node. Every node sends each peer node one
//! small batch per heartbeat interval, however many groups they share, and
//! counts a peer from which nothing arrived for an election timeout as silent.
//!
//! Measured in the consensus thread's ticks, like the cores' own timeouts: the
//! receiver only counts batches (`transport/sightings.rs`), and this watch
//! compares the counts from one turn to the next.

use std::collections::BTreeMap;

use keel_raft::NodeId;

use crate::transport::Sighting;

/// One peer node as the watch last saw it.
#[derive(Clone, Copy, Debug)]
struct PeerWatch {
    /// The receiver's batch count at the last turn.
    batches: u64,
    /// Ticks since that count last moved.
    quiet_ticks: u32,
    /// Whether the peer said it runs node-level liveness.
    liveness: bool,
}

/// The consensus thread's view of which peer nodes are alive.
#[derive(Debug)]
pub(crate) struct NodeLiveness {
    /// A liveness batch goes to every peer this often.
    heartbeat_ticks: u32,
    /// A peer heard nothing from for this long is silent.
    election_ticks: u32,
    /// Ticks since the last liveness batch went out.
    since_heartbeat: u32,
    peers: BTreeMap<NodeId, PeerWatch>,
    /// Counts the times a peer became silent: fell quiet for an election
    /// timeout, or stopped being watched (see [`NodeLiveness::silenced`]).
    silenced: u64,
}

impl NodeLiveness {
    /// A watch sending every `heartbeat_ticks` ticks and calling a peer silent
    /// after `election_ticks` ticks without a batch from it.
    pub(crate) fn new(heartbeat_ticks: u32, election_ticks: u32) -> Self {
        NodeLiveness {
            heartbeat_ticks: heartbeat_ticks.max(1),
            election_ticks: election_ticks.max(1),
            since_heartbeat: 0,
            peers: BTreeMap::new(),
            silenced: 0,
        }
    }

    /// Advances by `ticks` ticks: watches the nodes of `peers` (forgetting any
    /// other) against what the receiver has `seen` so far, and says whether
    /// this node's own liveness batch is due.
    pub(crate) fn tick(
        &mut self,
        ticks: u32,
        peers: impl IntoIterator<Item = NodeId>,
        seen: &BTreeMap<NodeId, Sighting>,
    ) -> bool {
        let mut watched = BTreeMap::new();
        for id in peers {
            let sighting = seen.get(&id).copied().unwrap_or_default();
            let w = match self.peers.get(&id) {
                // A new peer gets a full election timeout from now.
                None => PeerWatch {
                    batches: sighting.batches,
                    quiet_ticks: 0,
                    liveness: sighting.liveness,
                },
                Some(old) if old.batches != sighting.batches => PeerWatch {
                    batches: sighting.batches,
                    quiet_ticks: 0,
                    liveness: sighting.liveness,
                },
                Some(old) => PeerWatch {
                    quiet_ticks: old.quiet_ticks.saturating_add(ticks),
                    ..*old
                },
            };
            let was_silent = self
                .peers
                .get(&id)
                .is_none_or(|old| old.quiet_ticks >= self.election_ticks);
            if !was_silent && w.quiet_ticks >= self.election_ticks {
                self.silenced += 1;
            }
            watched.insert(id, w);
        }
        // A peer no longer watched counts as silent from now on.
        let forgotten = self
            .peers
            .keys()
            .filter(|id| !watched.contains_key(id))
            .count();
        self.silenced += forgotten as u64;
        self.peers = watched;
        if ticks == 0 {
            return false;
        }
        self.since_heartbeat = self.since_heartbeat.saturating_add(ticks);
        if self.since_heartbeat >= self.heartbeat_ticks {
            self.since_heartbeat = 0;
            return true;
        }
        false
    }

    /// Whether nothing came from `peer` for an election timeout. A node this
    /// watch does not follow counts as silent: nothing says it is alive.
    pub(crate) fn is_silent(&self, peer: NodeId) -> bool {
        self.peers
            .get(&peer)
            .is_none_or(|w| w.quiet_ticks >= self.election_ticks)
    }

    /// Whether `peer` runs node-level liveness, so that a group may go quiet
    /// toward it: it will wake its replica if this node falls silent.
    pub(crate) fn runs_liveness(&self, peer: NodeId) -> bool {
        self.peers.get(&peer).is_some_and(|w| w.liveness)
    }

    /// A count that moves whenever some peer that was not silent became so
    /// (see [`NodeLiveness::is_silent`]): while it stays the same, every peer
    /// that was not silent still is not, so replicas parked because their
    /// leader's node was alive need no second look (`quiet.rs`).
    pub(crate) fn silenced(&self) -> u64 {
        self.silenced
    }

    /// How many watched peers are silent now.
    pub(crate) fn silent_count(&self) -> usize {
        self.peers
            .values()
            .filter(|w| w.quiet_ticks >= self.election_ticks)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(entries: &[(NodeId, u64)]) -> BTreeMap<NodeId, Sighting> {
        entries
            .iter()
            .map(|&(id, batches)| {
                (
                    id,
                    Sighting {
                        batches,
                        liveness: true,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn a_peer_is_silent_after_an_election_timeout_without_a_batch() {
        let mut l = NodeLiveness::new(5, 30);
        l.tick(1, [2, 3], &seen(&[(2, 1), (3, 1)]));
        for n in 2..=30 {
            // Node 2 keeps talking; node 3 said nothing since the first tick.
            l.tick(1, [2, 3], &seen(&[(2, n), (3, 1)]));
        }
        assert!(!l.is_silent(2));
        assert!(
            !l.is_silent(3),
            "29 quiet ticks are not an election timeout"
        );
        l.tick(1, [2, 3], &seen(&[(2, 31), (3, 1)]));
        assert!(l.is_silent(3));
        assert!(!l.is_silent(2));
        assert_eq!(l.silent_count(), 1);
        // One batch and it is alive again.
        l.tick(1, [2, 3], &seen(&[(2, 32), (3, 2)]));
        assert!(!l.is_silent(3));
    }

    #[test]
    fn several_ticks_in_one_turn_count_in_full() {
        let mut l = NodeLiveness::new(5, 30);
        l.tick(1, [2], &seen(&[(2, 1)]));
        l.tick(30, [2], &seen(&[(2, 1)]));
        assert!(l.is_silent(2));
    }

    #[test]
    fn a_new_peer_gets_a_full_timeout_and_an_unwatched_one_is_silent() {
        let mut l = NodeLiveness::new(5, 30);
        assert!(l.is_silent(4), "nothing says node 4 is alive");
        l.tick(1, [4], &BTreeMap::new());
        l.tick(29, [4], &BTreeMap::new());
        assert!(!l.is_silent(4), "watched from now, never heard from");
        l.tick(1, [4], &BTreeMap::new());
        assert!(l.is_silent(4));
        l.tick(1, [2], &BTreeMap::new());
        assert!(l.is_silent(4), "no longer a peer: forgotten");
    }

    #[test]
    fn liveness_is_due_once_per_heartbeat_interval() {
        let mut l = NodeLiveness::new(5, 30);
        let due: Vec<bool> = (0..10).map(|_| l.tick(1, [2], &seen(&[]))).collect();
        assert_eq!(due.iter().filter(|&&d| d).count(), 2, "{due:?}");
        assert!(due[4] && due[9]);
        assert!(
            !l.tick(0, [2], &seen(&[])),
            "a turn without a tick sends none"
        );
        assert!(l.tick(7, [2], &seen(&[])), "a late turn sends at once");
    }

    #[test]
    fn the_silenced_count_moves_only_when_a_peer_falls_silent_or_is_forgotten() {
        let mut l = NodeLiveness::new(5, 30);
        l.tick(1, [2, 3], &seen(&[(2, 1), (3, 1)]));
        assert_eq!(l.silenced(), 0, "new peers are not silent");
        for n in 2..=30 {
            l.tick(1, [2, 3], &seen(&[(2, n), (3, 1)]));
        }
        assert_eq!(l.silenced(), 0, "29 quiet ticks");
        l.tick(1, [2, 3], &seen(&[(2, 31), (3, 1)]));
        assert!(l.is_silent(3));
        assert_eq!(l.silenced(), 1, "node 3 fell silent");
        l.tick(5, [2, 3], &seen(&[(2, 32), (3, 1)]));
        assert_eq!(l.silenced(), 1, "still silent: no news");
        l.tick(1, [2, 3], &seen(&[(2, 33), (3, 2)]));
        assert_eq!(l.silenced(), 1, "coming back is no news either");
        l.tick(1, [3], &seen(&[(2, 34), (3, 3)]));
        assert!(l.is_silent(2));
        assert_eq!(l.silenced(), 2, "node 2 is no longer watched");
        l.tick(30, [3], &seen(&[(3, 3)]));
        assert_eq!(l.silenced(), 3, "node 3 fell silent again");
    }

    #[test]
    fn only_a_peer_that_said_so_runs_liveness() {
        let mut l = NodeLiveness::new(5, 30);
        let mut old = seen(&[(3, 1)]);
        old.get_mut(&3).expect("node 3").liveness = false;
        old.extend(seen(&[(2, 1)]));
        l.tick(1, [2, 3], &old);
        assert!(l.runs_liveness(2));
        assert!(!l.runs_liveness(3), "an older node never said so");
        assert!(!l.runs_liveness(4), "not watched");
    }
}

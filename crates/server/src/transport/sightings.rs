//! What the receiver saw of each peer node: how many batches it admitted from
//! it, and whether the peer runs node-level liveness (docs/sharding.md,
//! "Heartbeats: coalesced, and quiet groups quiesce").
//!
//! The receiver only counts; it reads no clock. The consensus thread compares
//! the counts from one tick to the next (`node/liveness.rs`), so silence is
//! measured in the runtime's ticks like every other timeout.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use keel_raft::NodeId;

/// What was seen of one peer node so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sighting {
    /// Batches admitted from it (any batch shows the node is alive).
    pub batches: u64,
    /// Whether its latest batch said it runs node-level liveness. An older
    /// node never says so, and groups are never quiesced toward it.
    pub liveness: bool,
}

/// Sightings of every peer node, shared by the receiver (which records) and
/// the consensus thread (which reads). Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct PeerSightings {
    seen: Arc<Mutex<BTreeMap<NodeId, Sighting>>>,
}

impl PeerSightings {
    /// Records an admitted batch from `peer`.
    pub fn record(&self, peer: NodeId, liveness: bool) {
        let mut seen = self.seen.lock().expect("peer sightings lock poisoned");
        let s = seen.entry(peer).or_default();
        s.batches = s.batches.wrapping_add(1);
        s.liveness = liveness;
    }

    /// Every peer seen so far.
    pub fn snapshot(&self) -> BTreeMap<NodeId, Sighting> {
        self.seen
            .lock()
            .expect("peer sightings lock poisoned")
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_counted_and_the_latest_liveness_flag_kept() {
        let s = PeerSightings::default();
        let shared = s.clone();
        s.record(2, true);
        s.record(2, false);
        s.record(3, true);
        let seen = shared.snapshot();
        assert_eq!(
            seen[&2],
            Sighting {
                batches: 2,
                liveness: false
            }
        );
        assert_eq!(
            seen[&3],
            Sighting {
                batches: 1,
                liveness: true
            }
        );
        assert!(!seen.contains_key(&4));
    }
}

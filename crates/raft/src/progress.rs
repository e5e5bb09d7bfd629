//! The leader's view of each follower's replication (thesis §3.5, and the
//! probe/replicate flow control of etcd-style implementations).

use std::collections::VecDeque;

use crate::types::Index;

/// How the leader currently sends to a follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProgressState {
    /// Where the follower's log matches is unknown: send one AppendEntries at a time
    /// and wait for its answer (or a heartbeat reply) before sending the next.
    Probe,
    /// The follower is known to match up to `match_index`: stream entries
    /// optimistically, bounded by the in-flight window.
    Replicate,
    /// The follower needs entries the leader compacted away: a snapshot is being
    /// sent by the runtime; nothing else is sent until it reports the outcome or
    /// the follower acknowledges the snapshot's index (Raft §7).
    Snapshot,
}

impl ProgressState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ProgressState::Probe => "probe",
            ProgressState::Replicate => "replicate",
            ProgressState::Snapshot => "snapshot",
        }
    }
}

/// A bounded window of AppendEntries sent but not yet acknowledged.
#[derive(Clone, Debug)]
pub(crate) struct Inflights {
    /// (last index in the message, bytes of entries in it), oldest first.
    window: VecDeque<(Index, u64)>,
    bytes: u64,
    max_count: usize,
    max_bytes: u64,
}

impl Inflights {
    pub(crate) fn new(max_count: usize, max_bytes: u64) -> Self {
        Inflights {
            window: VecDeque::new(),
            bytes: 0,
            max_count,
            max_bytes,
        }
    }

    pub(crate) fn add(&mut self, last_index: Index, bytes: u64) {
        debug_assert!(self.window.back().is_none_or(|&(i, _)| i < last_index));
        self.window.push_back((last_index, bytes));
        self.bytes += bytes;
    }

    /// Releases every message whose entries are all acknowledged up to `index`.
    pub(crate) fn free_to(&mut self, index: Index) {
        while let Some(&(last, bytes)) = self.window.front() {
            if last > index {
                break;
            }
            self.window.pop_front();
            self.bytes -= bytes;
        }
    }

    pub(crate) fn reset(&mut self) {
        self.window.clear();
        self.bytes = 0;
    }

    pub(crate) fn full(&self) -> bool {
        self.window.len() >= self.max_count || self.bytes >= self.max_bytes
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.window.len()
    }
}

/// Replication state of one peer, kept by the leader.
#[derive(Clone, Debug)]
pub(crate) struct Progress {
    /// Highest index known to be replicated on the peer (Raft Figure 2 `matchIndex`).
    pub(crate) match_index: Index,
    /// Next index to send (Raft Figure 2 `nextIndex`); always `> match_index`.
    pub(crate) next_index: Index,
    pub(crate) state: ProgressState,
    /// In `Probe`: a probe is outstanding, wait for an answer before sending again.
    pub(crate) probe_sent: bool,
    pub(crate) inflights: Inflights,
    /// Heard from since the last check-quorum round.
    pub(crate) recent_active: bool,
    /// `match_index` when the previous heartbeat answer arrived: no progress between
    /// two answers means the in-flight messages were lost.
    pub(crate) match_at_heartbeat: Index,
    /// Highest commit index sent in an AppendEntries, so a peer that was paused when
    /// the commit advanced still learns it without waiting for a heartbeat.
    pub(crate) sent_commit: Index,
    /// `recent_active` as of the end of the previous check-quorum round.
    pub(crate) was_active: bool,
    /// In `Snapshot`: index of the snapshot being sent.
    pub(crate) pending_snapshot: Index,
}

impl Progress {
    pub(crate) fn new(next_index: Index, max_inflight: usize, max_inflight_bytes: u64) -> Self {
        Progress {
            match_index: 0,
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            inflights: Inflights::new(max_inflight, max_inflight_bytes),
            recent_active: false,
            match_at_heartbeat: 0,
            sent_commit: 0,
            was_active: false,
            pending_snapshot: 0,
        }
    }

    /// Heard from within the last one to two election timeouts.
    pub(crate) fn is_active(&self) -> bool {
        self.recent_active || self.was_active
    }

    /// A snapshot ending at `index` is being sent: hold everything else back.
    pub(crate) fn become_snapshot(&mut self, index: Index) {
        self.state = ProgressState::Snapshot;
        self.probe_sent = false;
        self.inflights.reset();
        self.pending_snapshot = index;
    }

    /// The runtime reports the snapshot transfer's outcome. On success the follower
    /// holds everything up to the snapshot: probe right after it. On failure, probe
    /// from what it is known to hold, once the next heartbeat answer shows it is
    /// reachable (`probe_sent` makes the probe wait for one).
    pub(crate) fn snapshot_done(&mut self, success: bool) {
        let pending = self.pending_snapshot;
        self.become_probe();
        self.pending_snapshot = 0;
        if success {
            self.next_index = self.next_index.max(pending + 1);
        } else {
            self.probe_sent = true;
        }
    }

    /// Whether the leader should hold back further AppendEntries to this peer.
    pub(crate) fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.full(),
            ProgressState::Snapshot => true,
        }
    }

    pub(crate) fn become_probe(&mut self) {
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.inflights.reset();
        self.next_index = self.match_index + 1;
    }

    pub(crate) fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.probe_sent = false;
        self.inflights.reset();
        self.next_index = self.match_index + 1;
    }

    /// Records an acknowledgement up to `index`; returns whether it was news.
    pub(crate) fn maybe_update(&mut self, index: Index) -> bool {
        let updated = index > self.match_index;
        if updated {
            self.match_index = index;
            self.probe_sent = false;
        }
        self.next_index = self.next_index.max(index + 1);
        updated
    }

    /// A rejection of the AppendEntries whose `prev_log_index` was `rejected`; the
    /// follower suggests retrying after `next_probe`. Returns false if the rejection
    /// is stale (answers an older message) and must be ignored.
    pub(crate) fn maybe_decrease_to(&mut self, rejected: Index, next_probe: Index) -> bool {
        match self.state {
            // Rejections answer AppendEntries sent before the snapshot: stale.
            ProgressState::Snapshot => false,
            ProgressState::Replicate => {
                // In replicate mode everything up to `match_index` is known good; a
                // rejection at or below it is a reordered answer to an old message.
                if rejected <= self.match_index {
                    return false;
                }
                self.become_probe();
                self.next_index = (next_probe + 1).max(self.match_index + 1);
                true
            }
            ProgressState::Probe => {
                // Only the answer to the outstanding probe counts.
                if self.next_index == 0 || rejected != self.next_index - 1 {
                    return false;
                }
                if rejected <= self.match_index {
                    // The follower lacks an entry it acknowledged: its disk lost
                    // the tail of its log (a torn write it truncated at start, a
                    // restored backup). That is outside the crash model, but it
                    // must not stall replication to it for as long as this leader
                    // lasts. What it still holds is a prefix of what it
                    // acknowledged, so it matches up to `next_probe` (at most its
                    // last index): lowering `match_index` only delays commitment,
                    // never hastens it. A stale rejection of an older probe lands
                    // here too and costs one more round trip.
                    self.match_index = next_probe.min(rejected - 1);
                    self.match_at_heartbeat = self.match_index;
                    self.next_index = self.match_index + 1;
                    self.probe_sent = false;
                    return true;
                }
                self.next_index = (next_probe + 1).min(rejected).max(self.match_index + 1);
                self.probe_sent = false;
                true
            }
        }
    }

    /// Notes that an AppendEntries with entries up to `last` (and `bytes` of them) was
    /// sent, advancing the optimistic cursor in replicate mode.
    pub(crate) fn sent_entries(&mut self, last: Option<Index>, bytes: u64) {
        match self.state {
            ProgressState::Replicate => {
                if let Some(last) = last {
                    self.next_index = last + 1;
                    self.inflights.add(last, bytes);
                }
            }
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Snapshot => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inflights_bound_count_and_bytes() {
        let mut w = Inflights::new(3, 100);
        w.add(1, 10);
        w.add(2, 10);
        assert!(!w.full());
        w.add(3, 10);
        assert!(w.full(), "count bound");
        w.free_to(2);
        assert_eq!(w.len(), 1);
        assert!(!w.full());
        w.add(10, 95);
        assert!(w.full(), "byte bound");
        w.free_to(100);
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn replicate_ignores_stale_rejection() {
        let mut p = Progress::new(11, 8, 1 << 20);
        p.maybe_update(5);
        p.become_replicate();
        p.sent_entries(Some(10), 50);
        assert!(!p.maybe_decrease_to(4, 3), "rejection below match is stale");
        assert_eq!(p.state, ProgressState::Replicate);
        assert!(p.maybe_decrease_to(8, 6));
        assert_eq!(p.state, ProgressState::Probe);
        assert_eq!(p.next_index, 7);
    }

    #[test]
    fn probe_only_accepts_answer_to_outstanding_probe() {
        let mut p = Progress::new(11, 8, 1 << 20);
        p.sent_entries(None, 0);
        assert!(p.is_paused());
        assert!(!p.maybe_decrease_to(7, 3), "answers an older probe");
        assert!(p.maybe_decrease_to(10, 3));
        assert_eq!(p.next_index, 4);
        assert!(!p.is_paused());
    }

    #[test]
    fn probe_rejected_at_match_forgets_what_the_follower_lost() {
        let mut p = Progress::new(11, 8, 1 << 20);
        p.maybe_update(6);
        p.next_index = 7;
        p.sent_entries(None, 0);
        assert!(!p.maybe_decrease_to(5, 0), "answers an older probe");
        assert!(p.is_paused());
        // The follower acknowledged 6 but no longer has it: its log ends at 4.
        assert!(p.maybe_decrease_to(6, 4));
        assert_eq!((p.match_index, p.next_index), (4, 5));
        assert!(!p.is_paused(), "the next probe goes out at once");
        assert!(p.maybe_update(10), "the follower takes the entries again");
    }

    #[test]
    fn next_never_drops_to_or_below_match() {
        let mut p = Progress::new(11, 8, 1 << 20);
        p.maybe_update(6);
        p.next_index = 11;
        assert!(p.maybe_decrease_to(10, 0));
        assert_eq!(p.next_index, 7);
    }
}

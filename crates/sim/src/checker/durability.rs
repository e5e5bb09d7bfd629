//! Durability: after a crash, storage gives back at least what was fsynced; and
//! nothing counts as durable on a node before it is.
//!
//! The first part checks the storage layer rather than Raft: the consensus
//! invariants assume that a synced vote, term or entry survives a power failure. A
//! write made after the last fsync may legitimately survive or not — including one
//! that replaced a synced suffix of the log — so the synced log only has to survive
//! up to the lowest index any later write touched (the *floor*).
//!
//! The second part checks the core against the same floor: an entry it hands out for
//! applying, or counts as persisted, must be durable at that moment. Under the
//! synchronous contract this holds by construction; under the asynchronous one the
//! core's log runs ahead of storage, and only `on_persisted` may close the gap.
//!
//! The log tracked here is the one *storage* was given, which under the asynchronous
//! contract lags the core's own log (the checker's main shadow): writes wait for the
//! storage thread.
//!
//! Snapshots: compaction changes nothing here (the log it drops is covered by a
//! durable snapshot, which recovery returns instead). Installing a leader's snapshot
//! replaces the whole stored log with the committed prefix it covers, durable at
//! the next fsync. And a node restarting with a snapshot its stored log does not
//! continue (a crash between installing the state machine and recording the new
//! log start, or a received snapshot beyond its log) starts its log after the
//! snapshot, as an install would have: what it drops is either covered by the
//! snapshot or conflicts with a committed entry, so it could never commit.

use keel_raft::{Entry, HardState, Index, NodeId, Term};

use super::logs::{LogShadow, prefix_hash};
use super::{Invariant, Violation};

/// What one node has made durable, as far as the checker knows.
#[derive(Clone, Debug, Default)]
pub struct DurableState {
    /// Hard state written most recently (synced or not).
    written_hs: HardState,
    /// Hard state as of the last completed fsync.
    synced_hs: HardState,
    /// The log as storage was given it, synced or not.
    stored: LogShadow,
    /// `stored` is durable up to here: everything up to the last fsync, cut back by
    /// any later unsynced write that replaced entries.
    floor: Index,
}

impl DurableState {
    /// Starts from a recovered state (all of it durable).
    pub fn recovered(hs: HardState, shadow: &LogShadow) -> Self {
        DurableState {
            written_hs: hs,
            synced_hs: hs,
            stored: shadow.clone(),
            floor: shadow.last_index(),
        }
    }

    /// The term as of the last completed fsync.
    pub fn synced_term(&self) -> Term {
        self.synced_hs.term
    }

    /// Storage was given `entries` and/or `hs`, not yet synced.
    pub fn on_write(&mut self, entries: &[Entry], hs: Option<HardState>) {
        if let Some(first) = entries.first()
            && first.index <= self.floor
        {
            self.floor = first.index - 1;
        }
        self.stored.write(entries);
        if let Some(hs) = hs {
            self.written_hs = hs;
        }
    }

    /// Storage was given a leader's snapshot to install, whose committed prefix is
    /// `base`: the log is replaced from index 1 on, durable at the next fsync.
    pub fn on_install(&mut self, base: &LogShadow) {
        self.stored = base.clone();
        self.floor = 0;
    }

    /// Everything storage was given so far is now durable.
    pub fn on_sync(&mut self) {
        self.synced_hs = self.written_hs;
        self.floor = self.stored.last_index();
    }

    /// Whether the log up to `index` is durable and has prefix hash `hash` there.
    pub fn holds_prefix(&self, index: Index, hash: Option<u64>) -> bool {
        index <= self.floor && hash.is_some() && self.stored.hash_at(index) == hash
    }

    /// Whether `e` is durable at its index.
    pub fn holds(&self, e: &Entry) -> bool {
        let before = self.stored.hash_at(e.index - 1).unwrap_or(0);
        self.holds_prefix(e.index, Some(prefix_hash(before, e)))
    }

    /// Checks what `node`'s storage recovered after a crash: `recovered` is its log
    /// from index 1 (the committed prefix up to the snapshot at `snapshot`, if any,
    /// then the entries after it).
    pub fn check_recovery(
        &self,
        node: NodeId,
        hs: &HardState,
        recovered: &LogShadow,
        snapshot: Index,
    ) -> Result<(), Violation> {
        let synced = self.synced_hs;
        let vote_lost = hs.term == synced.term && synced.vote != 0 && hs.vote != synced.vote;
        if hs.term < synced.term || vote_lost {
            return Err(Violation::new(
                Invariant::Durability,
                vec![node],
                format!(
                    "node {node} fsynced term {} / vote {} but recovered term {} / vote {}",
                    synced.term, synced.vote, hs.term, hs.vote
                ),
            ));
        }
        if snapshot > 0 && self.stored.hash_at(snapshot) != recovered.hash_at(snapshot) {
            // The stored log does not continue the snapshot: it starts over after it.
            return Ok(());
        }
        let recovered_last = recovered.last_index();
        if recovered_last < self.floor
            || recovered.hash_at(self.floor) != self.stored.hash_at(self.floor)
        {
            return Err(Violation::new(
                Invariant::Durability,
                vec![node],
                format!(
                    "node {node} fsynced its log up to index {}, but recovered a log that {}",
                    self.floor,
                    if recovered_last < self.floor {
                        format!("ends at {recovered_last}")
                    } else {
                        "differs before that index".to_string()
                    }
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use keel_raft::EntryKind;

    fn log(terms: &[Term]) -> Vec<Entry> {
        terms
            .iter()
            .enumerate()
            .map(|(i, &t)| Entry {
                term: t,
                index: i as Index + 1,
                kind: EntryKind::Normal,
                data: Bytes::new(),
            })
            .collect()
    }

    /// A recovered log without a snapshot.
    fn shadow(terms: &[Term]) -> LogShadow {
        let mut s = LogShadow::default();
        s.write(&log(terms));
        s
    }

    #[test]
    fn synced_state_must_survive_unsynced_may_not() {
        let mut d = DurableState::default();
        let hs = HardState {
            term: 2,
            vote: 1,
            commit: 0,
        };
        d.on_write(&log(&[1, 1]), Some(hs));
        d.on_sync();
        // Unsynced: entry 3, and a newer term.
        d.on_write(&log(&[1, 1, 2])[2..], Some(HardState { term: 3, ..hs }));

        d.check_recovery(1, &hs, &shadow(&[1, 1]), 0)
            .expect("synced part survived");
        d.check_recovery(1, &hs, &shadow(&[1, 1, 2]), 0)
            .expect("more survived");
        let lost_entry = d
            .check_recovery(1, &hs, &shadow(&[1]), 0)
            .expect_err("entry 2 lost");
        assert_eq!(lost_entry.invariant, Invariant::Durability);
        let lost_vote = HardState { vote: 0, ..hs };
        assert!(
            d.check_recovery(1, &lost_vote, &shadow(&[1, 1]), 0)
                .is_err()
        );
    }

    #[test]
    fn an_unsynced_overwrite_lowers_the_floor() {
        let mut d = DurableState::default();
        d.on_write(&log(&[1, 1, 1]), None);
        d.on_sync();
        // A new leader's entry replaces index 2 (unsynced); after a crash the log may
        // be the old one, or end at 1, or hold the new entry 2.
        d.on_write(&log(&[1, 2])[1..], None);
        d.check_recovery(1, &HardState::default(), &shadow(&[1]), 0)
            .expect("the overwrite may have half-happened");
        assert!(
            d.check_recovery(1, &HardState::default(), &shadow(&[]), 0)
                .is_err()
        );
    }

    #[test]
    fn a_snapshot_stands_for_the_log_it_covers_or_replaces() {
        let mut d = DurableState::default();
        d.on_write(&log(&[1, 1, 1, 2]), None);
        d.on_sync();
        // Compacted behind a snapshot at 3: the recovered log is the same.
        d.check_recovery(1, &HardState::default(), &shadow(&[1, 1, 1, 2]), 3)
            .expect("entries after the snapshot survived");
        assert!(
            d.check_recovery(1, &HardState::default(), &shadow(&[1, 1, 1]), 3)
                .is_err(),
            "entry 4 continues the snapshot and was fsynced"
        );
        // A snapshot at 2 of another history (entry 2 of term 3 committed): the
        // stored log conflicts with it and starts over after it.
        d.check_recovery(1, &HardState::default(), &shadow(&[1, 3]), 2)
            .expect("replaced by the snapshot");
        // An install is durable only at the next fsync.
        d.on_install(&shadow(&[1, 3, 3]));
        d.check_recovery(1, &HardState::default(), &shadow(&[1, 1]), 0)
            .expect("not synced: the old log may come back");
        d.on_sync();
        assert!(d.holds_prefix(3, shadow(&[1, 3, 3]).hash_at(3)));
        assert!(
            !d.holds_prefix(3, shadow(&[1, 1, 1]).hash_at(3)),
            "the installed prefix replaced the old log"
        );
    }

    #[test]
    fn only_synced_entries_count_as_held() {
        let mut d = DurableState::default();
        let entries = log(&[1, 1, 2]);
        d.on_write(&entries[..2], None);
        assert!(!d.holds(&entries[0]), "written, not synced");
        d.on_sync();
        d.on_write(&entries[2..], None);
        assert!(d.holds(&entries[1]));
        assert!(!d.holds(&entries[2]), "written after the fsync");
        let other = log(&[1, 3]);
        assert!(!d.holds(&other[1]), "another entry at a synced index");
        // Replacing entry 2 (unsynced) means entry 2 is no longer surely durable.
        d.on_write(&other[1..], None);
        assert!(!d.holds(&entries[1]));
        assert!(d.holds(&entries[0]));
        assert!(d.holds_prefix(0, Some(0)), "the empty prefix always is");
    }
}

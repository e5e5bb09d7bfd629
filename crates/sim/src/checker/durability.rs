//! Durability: after a crash, storage gives back at least what was fsynced.
//!
//! This checks the storage layer rather than Raft: the consensus invariants assume
//! that a synced vote, term or entry survives a power failure. A write made after the
//! last fsync may legitimately survive or not — including one that replaced a synced
//! suffix of the log — so the synced log only has to survive up to the lowest index
//! any later write touched.

use keel_raft::{Entry, HardState, Index, NodeId, Term};

use super::logs::{LogShadow, prefix_hash};
use super::{Invariant, Violation};

/// What one node has made durable, as far as the checker knows.
#[derive(Clone, Copy, Debug, Default)]
pub struct DurableState {
    /// Hard state written most recently (synced or not).
    written_hs: HardState,
    /// Hard state as of the last completed fsync.
    synced_hs: HardState,
    /// The log is durable up to here (with `floor_hash`): everything up to the last
    /// fsync, cut back by any later unsynced write that replaced entries.
    floor: Index,
    floor_hash: u64,
}

impl DurableState {
    /// Starts from a recovered state (all of it durable).
    pub fn recovered(hs: HardState, shadow: &LogShadow) -> Self {
        let floor = shadow.last_index();
        DurableState {
            written_hs: hs,
            synced_hs: hs,
            floor,
            floor_hash: shadow.hash_at(floor).unwrap_or(0),
        }
    }

    /// The term as of the last completed fsync.
    pub fn synced_term(&self) -> Term {
        self.synced_hs.term
    }

    /// Entries starting at `first_index` and/or `hs` were written, not yet synced.
    pub fn on_write(
        &mut self,
        first_index: Option<Index>,
        hs: Option<HardState>,
        shadow: &LogShadow,
    ) {
        if let Some(first) = first_index
            && first <= self.floor
        {
            self.floor = first - 1;
            self.floor_hash = shadow.hash_at(self.floor).unwrap_or(0);
        }
        if let Some(hs) = hs {
            self.written_hs = hs;
        }
    }

    /// Everything written so far is now durable.
    pub fn on_sync(&mut self, shadow: &LogShadow) {
        self.synced_hs = self.written_hs;
        self.floor = shadow.last_index();
        self.floor_hash = shadow.hash_at(self.floor).unwrap_or(0);
    }

    /// Checks what `node`'s storage recovered after a crash.
    pub fn check_recovery(
        &self,
        node: NodeId,
        hs: &HardState,
        entries: &[Entry],
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
        let recovered_last = entries.last().map_or(0, |e| e.index);
        let mut h = 0;
        for e in entries.iter().take(self.floor as usize) {
            h = prefix_hash(h, e);
        }
        if recovered_last < self.floor || h != self.floor_hash {
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
    use crate::checker::logs::LogRegistry;
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

    #[test]
    fn synced_state_must_survive_unsynced_may_not() {
        let mut reg = LogRegistry::default();
        let mut shadow = LogShadow::default();
        let mut d = DurableState::default();
        let hs = HardState {
            term: 2,
            vote: 1,
            commit: 0,
        };
        reg.write(1, &mut shadow, &log(&[1, 1])).expect("write");
        d.on_write(Some(1), Some(hs), &shadow);
        d.on_sync(&shadow);
        // Unsynced: entry 3, and a newer term.
        reg.write(1, &mut shadow, &log(&[1, 1, 2])[2..])
            .expect("write");
        d.on_write(Some(3), Some(HardState { term: 3, ..hs }), &shadow);

        d.check_recovery(1, &hs, &log(&[1, 1]))
            .expect("synced part survived");
        d.check_recovery(1, &hs, &log(&[1, 1, 2]))
            .expect("more survived");
        let lost_entry = d
            .check_recovery(1, &hs, &log(&[1]))
            .expect_err("entry 2 lost");
        assert_eq!(lost_entry.invariant, Invariant::Durability);
        let lost_vote = HardState { vote: 0, ..hs };
        assert!(d.check_recovery(1, &lost_vote, &log(&[1, 1])).is_err());
    }

    #[test]
    fn an_unsynced_overwrite_lowers_the_floor() {
        let mut reg = LogRegistry::default();
        let mut shadow = LogShadow::default();
        let mut d = DurableState::default();
        reg.write(1, &mut shadow, &log(&[1, 1, 1])).expect("write");
        d.on_sync(&shadow);
        // A new leader's entry replaces index 2 (unsynced); after a crash the log may
        // be the old one, or end at 1, or hold the new entry 2.
        reg.write(1, &mut shadow, &log(&[1, 2])[1..])
            .expect("write");
        d.on_write(Some(2), None, &shadow);
        d.check_recovery(1, &HardState::default(), &log(&[1]))
            .expect("the overwrite may have half-happened");
        assert!(d.check_recovery(1, &HardState::default(), &[]).is_err());
    }
}

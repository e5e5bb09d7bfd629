//! Log matching (Raft §5.3): if two logs hold an entry with the same index and term,
//! they are identical up to and including it.
//!
//! Each node's log is shadowed as a vector of *prefix hashes*: the hash at index `i`
//! covers every entry `1..=i`. Log matching then reduces to one comparison per new
//! entry against a global registry `(index, term) -> prefix hash`, filled by the first
//! node that ever held that entry. The registry never forgets, so the property is
//! checked across nodes, across time and across restarts, at O(log n) per entry
//! appended — never by rescanning logs.
//!
//! A node whose log starts after a snapshot (at a restart, or when it takes a
//! leader's snapshot) is shadowed as the committed log up to the snapshot: a
//! snapshot is exactly that prefix, applied (which the checker verifies), so every
//! prefix hash keeps its meaning and compaction needs no special case here.

use std::collections::BTreeMap;

use keel_raft::{Entry, Index, NodeId, Term};

use super::{Invariant, Violation};
use crate::hash;

/// Hash of one entry's contents, chained onto `prev` (the prefix hash before it).
pub fn prefix_hash(prev: u64, e: &Entry) -> u64 {
    let h = hash::mix(prev, e.index);
    let h = hash::mix(h, e.term);
    let h = hash::mix(h, u64::from(e.kind.to_code()));
    hash::mix_bytes(h, &e.data)
}

/// One node's log as the checker sees it: the term and prefix hash of every entry.
#[derive(Clone, Debug, Default)]
pub struct LogShadow {
    terms: Vec<Term>,
    hashes: Vec<u64>,
}

impl LogShadow {
    /// A log of the given terms and prefix hashes (index `i` at position `i - 1`).
    pub fn from_parts(terms: &[Term], hashes: &[u64]) -> Self {
        debug_assert_eq!(terms.len(), hashes.len());
        LogShadow {
            terms: terms.to_vec(),
            hashes: hashes.to_vec(),
        }
    }

    /// Index of the last entry (0 if empty).
    pub fn last_index(&self) -> Index {
        self.hashes.len() as Index
    }

    /// Term of the entry at `index`, if present.
    pub fn term(&self, index: Index) -> Option<Term> {
        let i = usize::try_from(index).ok()?.checked_sub(1)?;
        self.terms.get(i).copied()
    }

    /// Prefix hash at `index` (0 for index 0, `None` beyond the end).
    pub fn hash_at(&self, index: Index) -> Option<u64> {
        if index == 0 {
            return Some(0);
        }
        let i = usize::try_from(index - 1).ok()?;
        self.hashes.get(i).copied()
    }

    /// The prefix hashes, index `i` at position `i - 1` (for leader snapshots).
    pub fn hashes(&self) -> &[u64] {
        &self.hashes
    }

    /// Writes `entries` with the Raft storage rule (the first one replaces the entry
    /// at its index and everything after). Returns the new `(index, term, hash)`s.
    /// The caller guarantees contiguity (the WAL rejects gaps; so must the model).
    pub(super) fn write(&mut self, entries: &[Entry]) -> Vec<(Index, Term, u64)> {
        let Some(first) = entries.first() else {
            return Vec::new();
        };
        let keep = usize::try_from(first.index.saturating_sub(1))
            .expect("index fits in memory")
            .min(self.hashes.len());
        self.terms.truncate(keep);
        self.hashes.truncate(keep);
        let mut prev = self.hashes.last().copied().unwrap_or(0);
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let h = prefix_hash(prev, e);
            self.terms.push(e.term);
            self.hashes.push(h);
            out.push((e.index, e.term, h));
            prev = h;
        }
        out
    }
}

/// The global `(index, term) -> (prefix hash, first holder)` registry.
#[derive(Debug, Default)]
pub struct LogRegistry {
    seen: BTreeMap<(Index, Term), (u64, NodeId)>,
}

impl LogRegistry {
    /// Applies a write of `entries` by `node` to its shadow and checks every new
    /// entry against everything any node ever held.
    pub fn write(
        &mut self,
        node: NodeId,
        shadow: &mut LogShadow,
        entries: &[Entry],
    ) -> Result<(), Violation> {
        if let Some(first) = entries.first()
            && first.index > shadow.last_index() + 1
        {
            return Err(Violation::new(
                Invariant::LogMatching,
                vec![node],
                format!(
                    "node {node} wrote entry {} after its last index {}: the log has a gap",
                    first.index,
                    shadow.last_index()
                ),
            ));
        }
        self.check_all(node, shadow.write(entries))
    }

    /// Checks entries `node` now holds, as [`LogShadow::write`] returned them.
    pub fn check_all(
        &mut self,
        node: NodeId,
        written: Vec<(Index, Term, u64)>,
    ) -> Result<(), Violation> {
        for (index, term, h) in written {
            self.check(node, index, term, h)?;
        }
        Ok(())
    }

    fn check(&mut self, node: NodeId, index: Index, term: Term, h: u64) -> Result<(), Violation> {
        match self.seen.get(&(index, term)) {
            None => {
                self.seen.insert((index, term), (h, node));
                Ok(())
            }
            Some(&(known, _)) if known == h => Ok(()),
            Some(&(_, first)) => Err(Violation::new(
                Invariant::LogMatching,
                vec![node, first],
                format!(
                    "node {node} holds entry {index}@{term}, but its log up to there differs \
                     from the one node {first} held with the same entry"
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use keel_raft::EntryKind;

    fn ent(index: Index, term: Term, data: &str) -> Entry {
        Entry {
            term,
            index,
            kind: EntryKind::Normal,
            data: Bytes::copy_from_slice(data.as_bytes()),
        }
    }

    #[test]
    fn identical_prefixes_agree_and_overwrites_truncate() {
        let mut reg = LogRegistry::default();
        let (mut a, mut b) = (LogShadow::default(), LogShadow::default());
        let log = [ent(1, 1, "x"), ent(2, 1, "y"), ent(3, 2, "z")];
        reg.write(1, &mut a, &log).expect("first writer");
        reg.write(2, &mut b, &log[..2]).expect("same prefix");
        reg.write(2, &mut b, &log[2..])
            .expect("same entry, split write");
        assert_eq!(a.hash_at(3), b.hash_at(3));

        // A new leader's entry replaces index 3 and beyond.
        reg.write(2, &mut b, &[ent(3, 3, "w")]).expect("new term");
        assert_eq!(b.term(3), Some(3));
        assert_eq!(b.last_index(), 3);
        assert_ne!(a.hash_at(3), b.hash_at(3));
    }

    #[test]
    fn same_index_and_term_with_other_content_is_a_violation() {
        let mut reg = LogRegistry::default();
        let (mut a, mut b) = (LogShadow::default(), LogShadow::default());
        reg.write(1, &mut a, &[ent(1, 1, "x"), ent(2, 1, "y")])
            .expect("first writer");
        // Node 2's entry 2@1 is the same, but the entry before it differs.
        let err = reg
            .write(2, &mut b, &[ent(1, 1, "forged"), ent(2, 1, "y")])
            .expect_err("entry 1@1 differs");
        assert_eq!(err.invariant, Invariant::LogMatching);
        assert_eq!(err.nodes, vec![2, 1]);
    }

    #[test]
    fn a_gap_is_reported() {
        let mut reg = LogRegistry::default();
        let mut a = LogShadow::default();
        let err = reg
            .write(1, &mut a, &[ent(2, 1, "x")])
            .expect_err("index 1 missing");
        assert!(err.detail.contains("gap"), "{}", err.detail);
    }
}

//! The in-memory Raft log of one core.
//!
//! Holds every entry after the compaction point (`offset`), plus three cursors the
//! runtime contract needs: how far entries are durable (`persisted`), which entries
//! still have to be handed out for persisting (`unstable`), and which committed
//! entries have been handed out for applying (`applied`).

use std::collections::VecDeque;

use crate::types::{Entry, Index, Term};

#[derive(Debug, Clone)]
pub(crate) struct RaftLog {
    /// Index of the last entry before `entries` (a snapshot's index, or 0).
    offset: Index,
    /// Term of the entry at `offset`.
    offset_term: Term,
    /// `entries[i].index == offset + 1 + i`.
    entries: VecDeque<Entry>,
    /// Highest index known to be committed.
    pub(crate) committed: Index,
    /// Highest index handed out in `Ready::committed_entries`.
    pub(crate) applied: Index,
    /// Entries at or below this index are durable on this node.
    pub(crate) persisted: Index,
    /// First index not yet handed out in `Ready::entries`.
    unstable: Index,
    /// Lowest index written since the last [`RaftLog::take_written_from`], so the
    /// core can update what depends on the log's contents (the configuration).
    written_from: Option<Index>,
}

impl RaftLog {
    /// A log recovered from storage: `entries` follow `offset` and are all durable.
    pub(crate) fn new(
        offset: Index,
        offset_term: Term,
        entries: Vec<Entry>,
        committed: Index,
        applied: Index,
    ) -> Self {
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(
                e.index,
                offset + 1 + i as u64,
                "recovered log is not contiguous"
            );
        }
        let last = offset + entries.len() as u64;
        assert!(
            applied <= last,
            "applied index {applied} beyond the log (last {last})"
        );
        RaftLog {
            offset,
            offset_term,
            entries: entries.into(),
            committed: committed.min(last).max(applied),
            applied,
            persisted: last,
            unstable: last + 1,
            written_from: None,
        }
    }

    /// Index of the last compacted entry (the log holds `offset + 1 ..`).
    pub(crate) fn offset(&self) -> Index {
        self.offset
    }

    /// Drops the entries up to and including `index`, which must be durable and
    /// applied (only what a snapshot covers may go).
    pub(crate) fn compact_to(&mut self, index: Index) {
        if index <= self.offset {
            return;
        }
        assert!(
            index <= self.applied && index <= self.persisted,
            "compaction to {index} beyond applied {} / persisted {}",
            self.applied,
            self.persisted
        );
        let term = self.term(index).expect("index is in the log");
        self.entries.drain(..(index - self.offset) as usize);
        self.offset = index;
        self.offset_term = term;
    }

    /// Replaces the whole log by a snapshot ending at `index` (term `term`): every
    /// entry is dropped, and everything up to `index` counts as committed and
    /// applied. Nothing of the new log counts as durable until the runtime says
    /// the snapshot is (`persisted` drops to 0, which `applicable` respects).
    pub(crate) fn restore(&mut self, index: Index, term: Term) {
        debug_assert!(
            index > self.committed,
            "restoring a snapshot already covered"
        );
        self.entries.clear();
        self.offset = index;
        self.offset_term = term;
        self.committed = index;
        self.applied = index;
        self.persisted = 0;
        self.unstable = index + 1;
        self.written_from = Some(0);
    }

    /// Lowest index written since the last call (0 after a restore), if any.
    pub(crate) fn take_written_from(&mut self) -> Option<Index> {
        self.written_from.take()
    }

    fn note_written(&mut self, from: Index) {
        self.written_from = Some(self.written_from.map_or(from, |w| w.min(from)));
    }

    pub(crate) fn first_index(&self) -> Index {
        self.offset + 1
    }

    pub(crate) fn last_index(&self) -> Index {
        self.offset + self.entries.len() as u64
    }

    pub(crate) fn last_term(&self) -> Term {
        self.entries.back().map_or(self.offset_term, |e| e.term)
    }

    /// Term of the entry at `index`, or `None` if it is compacted away or not there.
    pub(crate) fn term(&self, index: Index) -> Option<Term> {
        if index == self.offset {
            return Some(self.offset_term);
        }
        if index < self.offset || index > self.last_index() {
            return None;
        }
        Some(self.entries[(index - self.offset - 1) as usize].term)
    }

    fn entry(&self, index: Index) -> &Entry {
        &self.entries[(index - self.offset - 1) as usize]
    }

    /// Whether the entry at `index` has term `term` (the AppendEntries consistency
    /// check, Raft §5.3).
    pub(crate) fn matches(&self, index: Index, term: Term) -> bool {
        self.term(index) == Some(term)
    }

    /// Raft §5.4.1: a candidate's log is at least as up to date as ours if its last
    /// term is higher, or equal with an index at least as high.
    pub(crate) fn is_up_to_date(&self, last_index: Index, last_term: Term) -> bool {
        last_term > self.last_term()
            || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// Appends entries created by this node as leader.
    pub(crate) fn append(&mut self, entries: impl IntoIterator<Item = Entry>) {
        for e in entries {
            assert_eq!(e.index, self.last_index() + 1, "leader append out of order");
            self.note_written(e.index);
            self.entries.push_back(e);
        }
    }

    /// Follower side of AppendEntries: if the log has `prev_index` with `prev_term`,
    /// stores `entries` (truncating a conflicting suffix, Raft §5.3 step 3) and
    /// returns the index of the last entry the leader sent; `None` if the check fails.
    pub(crate) fn try_append(
        &mut self,
        prev_index: Index,
        prev_term: Term,
        entries: &[Entry],
    ) -> Option<Index> {
        if !self.matches(prev_index, prev_term) {
            return None;
        }
        let last_new = prev_index + entries.len() as u64;
        // Skip entries we already hold with the same term; the first mismatch (or the
        // first index past our end) is where the leader's entries start to count.
        let first_new = entries
            .iter()
            .position(|e| !self.matches(e.index, e.term))
            .map(|pos| &entries[pos..]);
        if let Some(new) = first_new {
            let from = new[0].index;
            assert!(
                from > self.committed,
                "leader tried to overwrite committed entry {from} (commit {})",
                self.committed
            );
            self.truncate_from(from);
            self.note_written(from);
            self.entries.extend(new.iter().cloned());
        }
        Some(last_new)
    }

    /// Drops every entry at or after `index`.
    fn truncate_from(&mut self, index: Index) {
        if index > self.last_index() {
            return;
        }
        debug_assert!(index > self.offset);
        self.entries.truncate((index - self.offset - 1) as usize);
        self.unstable = self.unstable.min(index);
        self.persisted = self.persisted.min(index - 1);
    }

    /// Raises the commit index (never lowers it).
    pub(crate) fn commit_to(&mut self, index: Index) -> bool {
        if index <= self.committed {
            return false;
        }
        assert!(
            index <= self.last_index(),
            "commit index {index} beyond last index {}",
            self.last_index()
        );
        self.committed = index;
        true
    }

    /// Entries from `from` on, at most `max_bytes` of them (at least one).
    pub(crate) fn entries_from(&self, from: Index, max_bytes: u64) -> Vec<Entry> {
        if from > self.last_index() {
            return Vec::new();
        }
        assert!(from > self.offset, "entries {from} already compacted");
        let mut out = Vec::new();
        let mut bytes = 0;
        for e in self.entries.range((from - self.offset - 1) as usize..) {
            bytes += e.size();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(e.clone());
        }
        out
    }

    pub(crate) fn has_unstable(&self) -> bool {
        self.unstable <= self.last_index()
    }

    /// Hands out entries not yet given to the runtime for persisting.
    pub(crate) fn take_unstable(&mut self) -> Vec<Entry> {
        let out = self.entries_from(self.unstable, u64::MAX);
        self.unstable = self.last_index() + 1;
        out
    }

    /// First index not yet handed out for persisting (entries at or after it are
    /// not durable, whatever storage holds at those indexes).
    pub(crate) fn unstable_from(&self) -> Index {
        self.unstable
    }

    /// Storage holds this log durably through `index`.
    pub(crate) fn persisted_to(&mut self, index: Index) {
        debug_assert!(index <= self.last_index());
        if index > self.persisted {
            self.persisted = index;
        }
    }

    /// Highest index that may be applied now: committed and durable here.
    fn applicable(&self) -> Index {
        self.committed.min(self.persisted)
    }

    pub(crate) fn has_applicable(&self) -> bool {
        self.applicable() > self.applied
    }

    /// Hands out committed entries for applying, up to `max_bytes` (at least one).
    pub(crate) fn take_applicable(&mut self, max_bytes: u64) -> Vec<Entry> {
        let hi = self.applicable();
        if hi <= self.applied {
            return Vec::new();
        }
        let mut out = self.entries_from(self.applied + 1, max_bytes);
        out.truncate((hi - self.applied) as usize);
        if let Some(last) = out.last() {
            self.applied = last.index;
        }
        out
    }

    /// Largest index at or below `index` whose term is at most `term`, with its term.
    /// Used by both sides of the fast back-off after a rejected AppendEntries.
    pub(crate) fn find_conflict_by_term(&self, index: Index, term: Term) -> (Index, Term) {
        let mut i = index.min(self.last_index());
        while i > self.offset {
            let t = self.entry(i).term;
            if t <= term {
                return (i, t);
            }
            i -= 1;
        }
        (self.offset, self.offset_term)
    }

    /// Bytes of entries after `index` (used for the uncommitted-size limit).
    pub(crate) fn bytes_after(&self, index: Index) -> u64 {
        self.bytes_between(index, self.last_index())
    }

    /// Bytes of the entries in `(lo, hi]`.
    pub(crate) fn bytes_between(&self, lo: Index, hi: Index) -> u64 {
        let hi = hi.min(self.last_index());
        if lo >= hi {
            return 0;
        }
        let start = lo.saturating_sub(self.offset) as usize;
        let end = (hi - self.offset) as usize;
        self.entries.range(start..end).map(Entry::size).sum()
    }

    /// Checks the log's internal invariants; panics with a description if broken.
    pub(crate) fn validate(&self) {
        for (i, e) in self.entries.iter().enumerate() {
            assert_eq!(e.index, self.offset + 1 + i as u64, "log not contiguous");
            if i > 0 {
                assert!(
                    e.term >= self.entries[i - 1].term,
                    "terms decrease in the log at index {}",
                    e.index
                );
            } else {
                assert!(e.term >= self.offset_term, "term below the snapshot term");
            }
        }
        assert!(self.applied <= self.committed, "applied beyond committed");
        assert!(
            self.committed <= self.last_index(),
            "committed beyond the log"
        );
        assert!(
            self.persisted <= self.last_index(),
            "persisted beyond the log"
        );
        assert!(
            self.unstable <= self.last_index() + 1,
            "unstable cursor beyond the log"
        );
        assert!(
            self.applied <= self.persisted.max(self.offset),
            "applied undurable entries"
        );
        assert!(
            self.offset <= self.committed,
            "compacted uncommitted entries"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::EntryKind;
    use bytes::Bytes;

    fn ent(index: Index, term: Term) -> Entry {
        Entry {
            term,
            index,
            kind: EntryKind::Normal,
            data: Bytes::from(format!("{index}@{term}")),
        }
    }

    fn log_of(terms: &[Term]) -> RaftLog {
        let entries = terms
            .iter()
            .enumerate()
            .map(|(i, &t)| ent(i as u64 + 1, t))
            .collect();
        RaftLog::new(0, 0, entries, 0, 0)
    }

    #[test]
    fn up_to_date_compares_last_term_then_index() {
        // Raft §5.4.1.
        let log = log_of(&[1, 1, 2]);
        assert!(log.is_up_to_date(3, 2));
        assert!(log.is_up_to_date(4, 2));
        assert!(!log.is_up_to_date(2, 2));
        assert!(
            log.is_up_to_date(1, 3),
            "higher last term wins even if shorter"
        );
        assert!(
            !log.is_up_to_date(10, 1),
            "lower last term loses even if longer"
        );
    }

    #[test]
    fn try_append_rejects_on_mismatch() {
        // Raft §5.3: reply false if the log has no entry at prevLogIndex whose term
        // matches prevLogTerm.
        let mut log = log_of(&[1, 1, 2]);
        assert_eq!(log.try_append(3, 1, &[ent(4, 3)]), None);
        assert_eq!(log.try_append(5, 2, &[ent(6, 3)]), None);
        assert_eq!(log.last_index(), 3);
    }

    #[test]
    fn try_append_truncates_conflicting_suffix() {
        // Raft §5.3 step 3: an existing entry that conflicts with a new one (same
        // index, different term) is deleted along with all that follow it.
        let mut log = log_of(&[1, 1, 2, 2]);
        log.committed = 2;
        assert_eq!(log.try_append(2, 1, &[ent(3, 3)]), Some(3));
        assert_eq!(log.last_index(), 3);
        assert_eq!(log.term(3), Some(3));
        assert_eq!(log.persisted, 2, "replaced entries are no longer durable");
        assert!(log.has_unstable());
    }

    #[test]
    fn try_append_ignores_known_entries_and_keeps_longer_log() {
        // A delayed, duplicated AppendEntries must not truncate entries that came
        // after it (Raft §5.3 step 3 only deletes on conflict).
        let mut log = log_of(&[1, 1, 1, 1]);
        assert_eq!(log.try_append(1, 1, &[ent(2, 1)]), Some(2));
        assert_eq!(log.last_index(), 4);
        assert!(!log.has_unstable());
    }

    #[test]
    #[should_panic(expected = "overwrite committed")]
    fn try_append_never_truncates_committed() {
        let mut log = log_of(&[1, 1, 1]);
        log.committed = 3;
        let _ = log.try_append(1, 1, &[ent(2, 2)]);
    }

    #[test]
    fn applicable_entries_are_committed_and_durable() {
        let mut log = log_of(&[1, 1, 1]);
        log.append([ent(4, 1)]);
        log.commit_to(4);
        // Entry 4 is committed but not yet durable here.
        let got: Vec<Index> = log
            .take_applicable(u64::MAX)
            .iter()
            .map(|e| e.index)
            .collect();
        assert_eq!(got, vec![1, 2, 3]);
        assert!(!log.has_applicable());
        let _ = log.take_unstable();
        log.persisted_to(4);
        assert_eq!(log.take_applicable(u64::MAX).len(), 1);
    }

    #[test]
    fn take_applicable_respects_byte_budget_but_returns_one() {
        let mut log = log_of(&[1, 1, 1]);
        log.commit_to(3);
        assert_eq!(log.take_applicable(1).len(), 1);
        assert_eq!(log.applied, 1);
    }

    #[test]
    fn find_conflict_by_term_walks_back() {
        let log = log_of(&[1, 1, 2, 2, 5, 5]);
        assert_eq!(log.find_conflict_by_term(6, 4), (4, 2));
        assert_eq!(log.find_conflict_by_term(6, 5), (6, 5));
        assert_eq!(log.find_conflict_by_term(3, 1), (2, 1));
        assert_eq!(log.find_conflict_by_term(100, 0), (0, 0));
    }
}

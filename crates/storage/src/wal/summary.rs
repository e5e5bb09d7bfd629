//! What the writer knows of each kept segment without reading it again: which
//! groups' entries it holds (for compaction) and how big it is (for compaction
//! pressure).

use std::collections::BTreeMap;

use keel_raft::{GroupId, Index};

/// One segment's summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SegmentSummary {
    /// Highest entry index of each group written into the segment: an upper
    /// bound, which only ever keeps a segment longer.
    pub(crate) max: BTreeMap<GroupId, Index>,
    /// Entry records in it, overwritten ones included (they take room all the same).
    pub(crate) entries: u64,
    /// The file's size: segments are preallocated, so this is what it takes on disk.
    pub(crate) bytes: u64,
}

/// The summaries of the kept segments, by sequence number, and what the buffered
/// batch will add to the segment it lands in.
#[derive(Debug, Default)]
pub(crate) struct Segments {
    kept: BTreeMap<u64, SegmentSummary>,
    /// Highest entry index per group in the buffered batch.
    pending_max: BTreeMap<GroupId, Index>,
    /// Entries in the buffered batch.
    pending_entries: u64,
}

impl Segments {
    /// Records a segment of `bytes` bytes (created, or found on open).
    pub(crate) fn add(&mut self, seq: u64, bytes: u64) {
        self.kept.entry(seq).or_default().bytes = bytes;
    }

    /// Counts one entry of `group` found in segment `seq` by recovery.
    pub(crate) fn note_entry(&mut self, seq: u64, group: GroupId, index: Index) {
        let summary = self.kept.entry(seq).or_default();
        summary.entries += 1;
        let max = summary.max.entry(group).or_default();
        *max = (*max).max(index);
    }

    /// Counts entries of `group` buffered for the next sync.
    pub(crate) fn note_pending(&mut self, group: GroupId, indexes: impl Iterator<Item = Index>) {
        let max = self.pending_max.entry(group).or_default();
        for index in indexes {
            *max = (*max).max(index);
            self.pending_entries += 1;
        }
    }

    /// Charges the buffered batch to segment `seq`, where one of its frames was
    /// written. A batch split over frames in two segments charges both with all its
    /// maxima (an over-estimate, which only keeps a segment longer) and the first
    /// with its entry count (so the total stays right).
    pub(crate) fn charge_pending(&mut self, seq: u64) {
        let summary = self.kept.entry(seq).or_default();
        for (&g, &max) in &self.pending_max {
            let m = summary.max.entry(g).or_default();
            *m = (*m).max(max);
        }
        summary.entries += std::mem::take(&mut self.pending_entries);
    }

    /// The buffered batch was written in full.
    pub(crate) fn clear_pending(&mut self) {
        self.pending_max.clear();
        self.pending_entries = 0;
    }

    /// Forgets the segments below `first` (deleted by compaction).
    pub(crate) fn drop_below(&mut self, first: u64) {
        self.kept = self.kept.split_off(&first);
    }

    /// Walks from segment `from` up to (not including) `active` and returns the
    /// first segment that is not covered: one holding entries of some group for
    /// which `covered(group, highest index)` is false. A segment without entries
    /// is covered. Returns `active` when everything before it is covered.
    pub(crate) fn first_uncovered(
        &self,
        from: u64,
        active: u64,
        covered: impl Fn(GroupId, Index) -> bool,
    ) -> u64 {
        let mut seq = from;
        while seq < active {
            let all = self
                .kept
                .get(&seq)
                .is_none_or(|s| s.max.iter().all(|(&g, &max)| covered(g, max)));
            if !all {
                break;
            }
            seq += 1;
        }
        seq
    }

    /// The summary of segment `seq`, if it holds anything.
    pub(crate) fn get(&self, seq: u64) -> Option<&SegmentSummary> {
        self.kept.get(&seq)
    }

    /// Number of kept segments, their bytes and their entries.
    pub(crate) fn totals(&self) -> (u64, u64, u64) {
        self.kept.values().fold((0, 0, 0), |(n, b, e), s| {
            (n + 1, b + s.bytes, e + s.entries)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_over_two_segments_counts_its_entries_once() {
        let mut s = Segments::default();
        s.add(1, 100);
        s.add(2, 200);
        s.note_pending(7, [5, 6, 7].into_iter());
        s.charge_pending(1);
        s.charge_pending(2);
        s.clear_pending();
        assert_eq!(s.get(1).map(|x| x.max[&7]), Some(7));
        assert_eq!(s.get(2).map(|x| x.max[&7]), Some(7));
        assert_eq!(s.totals(), (2, 300, 3));
        s.drop_below(2);
        assert_eq!(s.totals(), (1, 200, 0));
    }

    #[test]
    fn the_walk_stops_at_the_first_segment_with_an_uncovered_entry() {
        let mut s = Segments::default();
        for seq in 1..=4 {
            s.add(seq, 10);
        }
        s.note_entry(1, 1, 10);
        s.note_entry(2, 2, 5);
        s.note_entry(3, 1, 30);
        // Segment 2 holds only group 2; group 1 is covered up to 20.
        let covered = |g: GroupId, max: Index| g == 2 || max <= 20;
        assert_eq!(s.first_uncovered(1, 4, covered), 3);
        assert_eq!(s.first_uncovered(1, 4, |_, _| true), 4);
        assert_eq!(s.first_uncovered(1, 4, |_, _| false), 1);
    }
}

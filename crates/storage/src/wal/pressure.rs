//! Compaction pressure: how much the WAL holds, and which groups keep its oldest
//! segment, so that the runtime knows which group to snapshot first.
//!
//! A segment is deleted only when every group's entries in it are covered, so one
//! quiet group that never snapshots pins every segment after its oldest uncovered
//! entry, however busy and well-snapshotted the others are. The runtime asks
//! [`super::Wal::pressure`] after compacting; when [`Pressure::over`] its budget, it
//! snapshots [`Pressure::pinning_group`] first.

use keel_raft::{GroupId, Index};

/// What [`super::Wal::pressure`] reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pressure {
    /// Segment files kept, the active one included.
    pub segments: u64,
    /// Their total size in bytes (segments are preallocated, so this is their
    /// room on disk, not only what was written).
    pub bytes: u64,
    /// Entry records in them, of every group, overwritten and covered ones included:
    /// the entries' worth of log the WAL holds.
    pub entries: u64,
    /// The oldest segment [`super::Wal::compact`] would keep, given the same
    /// `up_to`, unless that is the active segment (which is never deleted); `None`
    /// then, and nothing is pinned.
    pub oldest: Option<u64>,
    /// The groups whose entries keep `oldest`: the ones that need a snapshot
    /// first, before the ones only the trailing window holds, then by group id.
    pub pinned_by: Vec<Pin>,
}

/// A group keeping a segment from being deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pin {
    /// The group.
    pub group: GroupId,
    /// Its highest entry index in the segment: the segment is free of this group
    /// once both its log start and the caller's `up_to` reach this index.
    pub index: Index,
    /// The group's durable log start index (0 if none). Below `index`, only a
    /// snapshot (then [`super::Wal::set_log_start`]) frees the segment; at or past
    /// it, the caller's trailing window (`up_to`) is what keeps it.
    pub log_start: Index,
}

impl Pin {
    /// Whether a snapshot of the group is needed to free the segment.
    pub fn needs_snapshot(&self) -> bool {
        self.log_start < self.index
    }
}

impl Pressure {
    /// Whether the WAL holds more than `max_entries` entries or more than
    /// `max_bytes` bytes of segments (pass `u64::MAX` to ignore one), e.g.
    /// `2 × snapshot_entries` as `docs/sharding.md` suggests.
    pub fn over(&self, max_entries: u64, max_bytes: u64) -> bool {
        self.entries > max_entries || self.bytes > max_bytes
    }

    /// The group to snapshot first: the first of [`Pressure::pinned_by`] that needs
    /// a snapshot. `None` if no group needs one to free the oldest segment.
    pub fn pinning_group(&self) -> Option<GroupId> {
        self.pinned_by
            .iter()
            .find(|p| p.needs_snapshot())
            .map(|p| p.group)
    }

    /// Orders pins as [`Pressure::pinned_by`] documents.
    pub(crate) fn sort_pins(pins: &mut [Pin]) {
        pins.sort_by_key(|p| (!p.needs_snapshot(), p.group));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_group_that_needs_a_snapshot_comes_first() {
        let mut pins = vec![
            Pin {
                group: 1,
                index: 50,
                log_start: 60,
            },
            Pin {
                group: 3,
                index: 40,
                log_start: 10,
            },
            Pin {
                group: 2,
                index: 40,
                log_start: 0,
            },
        ];
        Pressure::sort_pins(&mut pins);
        let order: Vec<GroupId> = pins.iter().map(|p| p.group).collect();
        assert_eq!(order, vec![2, 3, 1]);
        let p = Pressure {
            entries: 100,
            bytes: 4096,
            pinned_by: pins,
            ..Pressure::default()
        };
        assert_eq!(p.pinning_group(), Some(2));
        assert!(p.over(99, u64::MAX));
        assert!(!p.over(100, 4096));
        assert!(p.over(u64::MAX, 4095));
    }
}

//! What [`super::Wal::open`] hands back, and how it is rebuilt from the records.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use keel_raft::{Entry, GroupId, HardState, Index};

use super::log::{
    LogStart, LogTrack, RemovedGroup, StartEffect, check_not_removed, on_created, on_removed,
};
use super::record::{ScanRecord, WalRecord};

/// Everything the WAL held when it was opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Every group that has at least one record and no tombstone, by id.
    pub groups: BTreeMap<GroupId, RecoveredGroup>,
    /// Groups whose replica on this node was deleted ([`super::Wal::remove_group`])
    /// and not created again, with the replica's last term and vote: none of
    /// their records is returned. Compaction restates tombstones, so a group
    /// removed long ago is still here.
    pub removed: BTreeMap<GroupId, RemovedGroup>,
    /// Set when a torn write after the last valid frame was discarded. The caller
    /// should log it as a warning: it is expected after a crash, but an operator
    /// may want to know.
    pub torn_tail: Option<TornTail>,
}

/// One group's durable state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveredGroup {
    /// The last hard state written (the default if none was).
    pub hard_state: HardState,
    /// The log, contiguous, with every overwrite applied: from index 1, or from
    /// right after `log_start`. Entries at or below the log start are gone.
    pub entries: Vec<Entry>,
    /// Where the log starts after compaction or a snapshot install (`None`: at 1).
    pub log_start: Option<LogStart>,
    /// The rules' bookkeeping.
    track: LogTrack,
}

impl RecoveredGroup {
    /// Index of the last entry, or the log start's index if there is no entry after
    /// it, or 0.
    pub fn last_index(&self) -> Index {
        self.track.last
    }

    /// Index of the first entry the log holds (`last_index() + 1` if none).
    pub fn first_index(&self) -> Index {
        self.entries
            .first()
            .map_or(self.track.last + 1, |e| e.index)
    }

    /// Adds `entry` by the WAL's rule; `Err` is a corruption reason.
    pub(crate) fn push(&mut self, entry: Entry) -> Result<(), String> {
        self.track.on_entry(entry.index)?;
        // The log stays contiguous, so index i sits at position i - first.
        match self.entries.first().map(|e| e.index) {
            Some(first) if entry.index >= first => {
                let keep = usize::try_from(entry.index - first).expect("bounded by log length");
                self.entries.truncate(keep);
            }
            _ => self.entries.clear(),
        }
        self.entries.push(entry);
        Ok(())
    }

    /// Applies a log-start record; `Err` is a corruption reason.
    pub(crate) fn start(&mut self, ls: LogStart) -> Result<(), String> {
        match self.track.on_start(ls)? {
            StartEffect::None => {}
            StartEffect::DropAll => self.entries.clear(),
            StartEffect::DropUpTo(index) => self.entries.retain(|e| e.index > index),
        }
        self.log_start = self.track.start;
        Ok(())
    }

    /// `Err` if the log does not start at 1 or right after its log start.
    pub(crate) fn check_anchored(&self) -> Result<(), String> {
        self.track.check_anchored()
    }
}

/// A discarded torn write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file where the discarded bytes start.
    pub file: PathBuf,
    /// Their byte offset in that file.
    pub offset: u64,
    /// How many bytes were discarded (zeroed, or removed with an incomplete segment).
    pub discarded_bytes: u64,
    /// What was found there.
    pub reason: String,
}

impl fmt::Display for TornTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "discarded a torn write of {} bytes at {}:{} ({}); it was never acknowledged",
            self.discarded_bytes,
            self.file.display(),
            self.offset,
            self.reason
        )
    }
}

impl Recovery {
    /// Folds one record into the state; `Err` is a corruption reason.
    pub(crate) fn apply(&mut self, record: ScanRecord) -> Result<(), String> {
        match record {
            ScanRecord::GroupRemoved { group, last } => {
                // Everything the group wrote before is void: its replica is gone.
                if on_removed(&mut self.removed, group, last)? {
                    self.groups.remove(&group);
                }
                Ok(())
            }
            ScanRecord::GroupCreated { group } => {
                let live = self.groups.contains_key(&group);
                let last = on_created(&mut self.removed, group, live)?.unwrap_or_default();
                // The new life starts from the old one's term and vote, with no log.
                self.groups.entry(group).or_default().hard_state = HardState {
                    term: last.term,
                    vote: last.vote,
                    commit: 0,
                };
                Ok(())
            }
            ScanRecord::LogStart { group, start } => {
                check_not_removed(&self.removed, group)?;
                self.groups
                    .entry(group)
                    .or_default()
                    .start(start)
                    .map_err(|reason| format!("group {group}: {reason}"))
            }
            ScanRecord::Wal(WalRecord::Entry { group, entry }) => {
                check_not_removed(&self.removed, group)?;
                self.groups
                    .entry(group)
                    .or_default()
                    .push(entry)
                    .map_err(|reason| format!("group {group}: {reason}"))
            }
            ScanRecord::Wal(WalRecord::HardState { group, hard_state }) => {
                check_not_removed(&self.removed, group)?;
                self.groups.entry(group).or_default().hard_state = hard_state;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use keel_raft::EntryKind;

    use super::*;

    fn e(term: u64, index: u64) -> Entry {
        Entry {
            term,
            index,
            kind: EntryKind::NoOp,
            data: Bytes::new(),
        }
    }

    #[test]
    fn overwrite_truncates_the_suffix() {
        let mut g = RecoveredGroup::default();
        for i in 1..=5 {
            g.push(e(1, i)).expect("append");
        }
        g.push(e(2, 3)).expect("overwrite");
        assert_eq!(g.last_index(), 3);
        assert_eq!(g.entries[2], e(2, 3));
        assert_eq!(g.entries[1], e(1, 2));
        assert!(g.push(e(2, 5)).is_err());
    }
}

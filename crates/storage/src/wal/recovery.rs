//! What [`super::Wal::open`] hands back, and how it is rebuilt from the records.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use keel_raft::{Entry, GroupId, HardState, Index};

use super::log::check_next;
use super::record::WalRecord;

/// Everything the WAL held when it was opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Every group that has at least one record, by id.
    pub groups: BTreeMap<GroupId, RecoveredGroup>,
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
    /// The log, contiguous from index 1, with every overwrite applied.
    pub entries: Vec<Entry>,
}

impl RecoveredGroup {
    /// Index of the last entry, 0 if none.
    pub fn last_index(&self) -> Index {
        self.entries.last().map_or(0, |e| e.index)
    }

    /// Adds `entry` by the WAL's rule; `Err` is a corruption reason.
    pub(crate) fn push(&mut self, entry: Entry) -> Result<(), String> {
        check_next(self.last_index(), entry.index)?;
        // The log starts at 1 and stays contiguous, so index i sits at position i - 1.
        let keep = usize::try_from(entry.index - 1).expect("index bounded by log length");
        self.entries.truncate(keep);
        self.entries.push(entry);
        Ok(())
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
    pub(crate) fn apply(&mut self, record: WalRecord) -> Result<(), String> {
        match record {
            WalRecord::Entry { group, entry } => self
                .groups
                .entry(group)
                .or_default()
                .push(entry)
                .map_err(|reason| format!("group {group}: {reason}")),
            WalRecord::HardState { group, hard_state } => {
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

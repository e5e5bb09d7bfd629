//! The rules by which records build a group's log, shared by the writer (to refuse a
//! bad append up front), recovery and inspection (to detect a log that breaks them).

use std::collections::BTreeMap;

use keel_raft::{GroupId, Index, NodeId, Term};

/// Where a group's log starts: everything at or below `index` is covered by a
/// snapshot and gone from the log; the entry at `index` had term `term` (Raft's
/// "last included index and term").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LogStart {
    /// Last index covered by the snapshot.
    pub index: Index,
    /// Term of the entry at `index`.
    pub term: Term,
    /// What happens to entries after `index`.
    pub kind: LogStartKind,
}

/// Whether entries after a [`LogStart`] survive it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LogStartKind {
    /// Log compaction after a local snapshot: entries at or below the index are
    /// dropped, those after it stay (Raft §7: the log holds `(index, term)`).
    Compacted,
    /// A snapshot from the leader was installed: the whole log is discarded and
    /// continues at `index + 1` (Raft §7: the log did not hold `(index, term)`, or
    /// the runtime chose to start over).
    Installed,
}

/// Checks that an entry with `index` may follow a log whose last index is `last`:
/// `index ≤ last` overwrites from `index` on (Raft log truncation), `last + 1`
/// appends, anything further leaves a gap. Index 0 is "before the log" and never an
/// entry.
pub(crate) fn check_next(last: Index, index: Index) -> Result<(), String> {
    if index == 0 {
        return Err("entry with index 0".to_string());
    }
    if index > last.saturating_add(1) {
        return Err(format!(
            "entry index {index} leaves a gap after last index {last}"
        ));
    }
    Ok(())
}

/// What a group tombstone remembers of the replica it ends: the last term and
/// vote. A replica created again for the same group starts from them, never from
/// term 0, so that it cannot vote twice in a term it already voted in (two leaders
/// of one term could follow).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RemovedGroup {
    /// The replica's term when it was deleted.
    pub term: Term,
    /// Whom it had voted for in that term (`NO_NODE`: nobody).
    pub vote: NodeId,
}

/// The groups whose replica was deleted and not created again, while records
/// are replayed.
pub(crate) type Removed = BTreeMap<GroupId, RemovedGroup>;

// The rules for a group's lives while records are replayed, shared by recovery
// and inspection so that they call the same logs corrupt: ordinary records never
// follow a group's tombstone; a tombstone may only be restated unchanged (as
// compaction does); a *created* record starts a new life after a tombstone, or
// begins a group with no earlier record (its tombstone went with a compacted
// segment while the new life was already running).

/// Checks that an ordinary record of `group` (entry, hard state, log start) may
/// appear after the tombstones in `removed`.
pub(crate) fn check_not_removed(removed: &Removed, group: GroupId) -> Result<(), String> {
    if removed.contains_key(&group) {
        return Err(format!(
            "group {group}: record after the group's tombstone (only a group-created \
             record may start a new life)"
        ));
    }
    Ok(())
}

/// A tombstone of `group`; `Ok(true)` if it ends a life, `Ok(false)` if it
/// restates the tombstone already in effect.
pub(crate) fn on_removed(
    removed: &mut Removed,
    group: GroupId,
    last: RemovedGroup,
) -> Result<bool, String> {
    match removed.get(&group) {
        Some(&cur) if cur == last => Ok(false),
        Some(cur) => Err(format!(
            "group {group}: a second tombstone (term {}, vote {}) contradicts the one in \
             effect (term {}, vote {})",
            last.term, last.vote, cur.term, cur.vote
        )),
        None => {
            removed.insert(group, last);
            Ok(true)
        }
    }
}

/// A group-created record of `group`, which has earlier records of a life not
/// ended if `live`. Returns the tombstone whose term and vote the new life starts
/// from, if one was in effect.
pub(crate) fn on_created(
    removed: &mut Removed,
    group: GroupId,
    live: bool,
) -> Result<Option<RemovedGroup>, String> {
    if let Some(last) = removed.remove(&group) {
        return Ok(Some(last));
    }
    if live {
        return Err(format!(
            "group {group}: group-created record while the group's replica is live (no \
             tombstone ended it)"
        ));
    }
    Ok(None)
}

/// The shape of one group's log while records are replayed: enough to apply the
/// rules without holding the entries (inspection keeps only this).
///
/// After compaction the oldest segments are gone, so a group's first surviving
/// entry may have any index. The log is then *unanchored* until a log-start record
/// covers everything before that entry; recovery requires every log to end up
/// anchored (starting at 1, or right after its log start), which is how a segment
/// lost by accident is still detected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LogTrack {
    pub(crate) start: Option<LogStart>,
    /// First entry index present (0: no entries).
    pub(crate) first: Index,
    /// Last index: of the last entry, or the log start if there is no entry.
    pub(crate) last: Index,
    anchored: bool,
}

/// What a log-start record did to the entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StartEffect {
    /// Nothing (a restatement of the current start, or an older start that covers
    /// none of the entries).
    None,
    /// Drop entries at or below the index.
    DropUpTo(Index),
    /// Drop every entry.
    DropAll,
}

impl LogTrack {
    fn start_index(&self) -> Index {
        self.start.map_or(0, |s| s.index)
    }

    /// Applies an entry at `index`; the caller then truncates its entries from
    /// `index` on and appends.
    pub(crate) fn on_entry(&mut self, index: Index) -> Result<(), String> {
        let start = self.start_index();
        if index == 0 {
            return Err("entry with index 0".into());
        }
        if index <= start {
            return Err(format!(
                "entry index {index} is at or below the log start {start}"
            ));
        }
        if self.first == 0 && !self.anchored {
            // The first entry seen: the log may start anywhere (compaction).
            self.first = index;
        } else {
            check_next(self.last, index)?;
            if self.first == 0 || index < self.first {
                self.first = index;
            }
        }
        if index == start + 1 {
            self.anchored = true;
        }
        self.last = index;
        Ok(())
    }

    /// Applies a log-start record.
    pub(crate) fn on_start(&mut self, ls: LogStart) -> Result<StartEffect, String> {
        if let Some(cur) = self.start {
            if ls.index < cur.index {
                return Err(format!(
                    "log start {} goes back before the earlier log start {}",
                    ls.index, cur.index
                ));
            }
            if ls.index == cur.index {
                if ls.term != cur.term {
                    return Err(format!(
                        "log start {} with term {}, earlier said term {}",
                        ls.index, ls.term, cur.term
                    ));
                }
                return Ok(StartEffect::None);
            }
        }
        self.start = Some(ls);
        let effect = match ls.kind {
            LogStartKind::Installed => {
                self.first = 0;
                self.last = ls.index;
                self.anchored = true;
                StartEffect::DropAll
            }
            // No entry seen: this does not prove that nothing follows the start. It
            // may be a restatement written by compaction *after* entries that lived in
            // segments since deleted; the log anchors at the next entry if that is
            // `index + 1`, or at a later start.
            LogStartKind::Compacted if self.first == 0 => {
                self.last = self.last.max(ls.index);
                StartEffect::DropAll
            }
            LogStartKind::Compacted if ls.index + 1 >= self.first => {
                self.anchored = true;
                if ls.index >= self.last {
                    self.first = 0;
                    self.last = ls.index;
                    StartEffect::DropAll
                } else {
                    self.first = ls.index + 1;
                    StartEffect::DropUpTo(ls.index)
                }
            }
            // Older than the oldest surviving entry: a later start must cover the gap.
            LogStartKind::Compacted => StartEffect::None,
        };
        Ok(effect)
    }

    /// `Err` if the log never got anchored (see the type docs).
    pub(crate) fn check_anchored(&self) -> Result<(), String> {
        if self.first > 1 && !self.anchored {
            return Err(format!(
                "the log starts at index {} but nothing covers the indexes before it \
                 (no log start record; a segment is missing?)",
                self.first
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compacted(index: Index) -> LogStart {
        LogStart {
            index,
            term: 1,
            kind: LogStartKind::Compacted,
        }
    }

    #[test]
    fn overwrite_append_and_gap() {
        assert!(check_next(0, 1).is_ok());
        assert!(check_next(5, 6).is_ok());
        assert!(check_next(5, 5).is_ok());
        assert!(check_next(5, 1).is_ok());
        assert!(check_next(5, 7).is_err());
        assert!(check_next(0, 2).is_err());
        assert!(check_next(5, 0).is_err());
    }

    #[test]
    fn a_log_from_one_is_anchored_and_gaps_are_refused() {
        let mut t = LogTrack::default();
        for i in 1..=5 {
            t.on_entry(i).expect("append");
        }
        assert!(t.on_entry(7).is_err());
        t.on_entry(3).expect("overwrite");
        assert_eq!((t.first, t.last), (1, 3));
        t.check_anchored().expect("anchored");
    }

    #[test]
    fn an_unanchored_log_needs_a_covering_start() {
        let mut t = LogTrack::default();
        for i in 480..=520 {
            t.on_entry(i).expect("append");
        }
        assert!(t.check_anchored().is_err());
        // An older start does not cover 301..479.
        assert_eq!(t.on_start(compacted(300)), Ok(StartEffect::None));
        assert!(t.check_anchored().is_err());
        assert_eq!(t.on_start(compacted(500)), Ok(StartEffect::DropUpTo(500)));
        assert_eq!((t.first, t.last), (501, 520));
        t.check_anchored().expect("anchored");
        assert_eq!(
            t.on_start(compacted(500)),
            Ok(StartEffect::None),
            "restated"
        );
        assert!(t.on_start(compacted(400)).is_err(), "backwards");
        assert!(t.on_entry(500).is_err(), "below the start");
        t.on_entry(521).expect("append");
    }

    #[test]
    fn a_restated_start_before_any_entry_does_not_anchor_the_log() {
        let mut t = LogTrack::default();
        assert_eq!(t.on_start(compacted(20)), Ok(StartEffect::DropAll));
        // Entries 21..33 were in deleted segments; 34 follows.
        t.on_entry(34).expect("unanchored start");
        assert!(t.check_anchored().is_err());
        t.on_start(compacted(38)).expect("covering start");
        t.check_anchored().expect("anchored");
        // Right after its start, a log is anchored by its first entry.
        let mut t = LogTrack::default();
        t.on_start(compacted(20)).expect("start");
        t.on_entry(21).expect("next");
        t.check_anchored().expect("anchored");
    }

    #[test]
    fn installed_discards_everything() {
        let mut t = LogTrack::default();
        for i in 1..=10 {
            t.on_entry(i).expect("append");
        }
        let ls = LogStart {
            index: 7,
            term: 2,
            kind: LogStartKind::Installed,
        };
        assert_eq!(t.on_start(ls), Ok(StartEffect::DropAll));
        assert_eq!((t.first, t.last), (0, 7));
        assert!(t.on_entry(9).is_err());
        t.on_entry(8).expect("continues after the snapshot");
        let mut other = ls;
        other.term = 3;
        assert!(t.on_start(other).is_err(), "same index, other term");
    }
}

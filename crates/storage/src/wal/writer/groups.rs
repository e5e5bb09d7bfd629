//! Removing a group's replica from the WAL, and what compaction may delete with
//! many groups: coverage and compaction pressure.

use keel_raft::{GroupId, HardState, Index};

use super::super::error::WalError;
use super::super::log::RemovedGroup;
use super::super::pressure::{Pin, Pressure};
use super::super::record::{self, GROUP_CREATED_RECORD_LEN, GROUP_REMOVED_RECORD_LEN};
use super::Wal;

impl Wal {
    /// Buffers `group`'s tombstone for the next [`Wal::sync`]: this node's replica
    /// of the group is deleted. The tombstone keeps the replica's last term and
    /// vote (from its last hard state), which a replica created again later
    /// starts from ([`Wal::recreate_group`]). After the sync, recovery returns none
    /// of the group's records and lists it in [`super::super::Recovery::removed`];
    /// compaction no longer waits for its entries to be covered, restates neither
    /// its hard state nor its log start, and restates the tombstone instead.
    ///
    /// From this call on, writes for the group are refused with
    /// [`WalError::GroupRemoved`] until it is created again: recovery calls any
    /// other record after a tombstone corruption. Removing a removed group changes
    /// nothing. Sync before deleting the group's other files (state machine,
    /// snapshots), so that a crash in between finds the group removed and the
    /// deletion can be finished.
    pub fn remove_group(&mut self, group: GroupId) -> Result<(), WalError> {
        self.check_usable()?;
        if self.removed.contains_key(&group) {
            return Ok(());
        }
        let hs = self.hard_states.remove(&group).unwrap_or_default();
        let last = RemovedGroup {
            term: hs.term,
            vote: hs.vote,
        };
        self.removed.insert(group, last);
        self.batch.push(GROUP_REMOVED_RECORD_LEN, |buf| {
            record::encode_group_removed(buf, group, last);
        });
        self.last_index.remove(&group);
        self.log_start.remove(&group);
        Ok(())
    }

    /// Buffers the start of a new life of the removed `group` on this node (the
    /// cluster added the node back to a group it had left), and returns the hard
    /// state it starts from: the old replica's last term and vote, commit 0, with
    /// an empty log. Writes for the group are accepted again from this call on.
    /// The new replica must start its consensus core from exactly this state:
    /// starting from term 0 could let it vote twice in a term it voted in before
    /// it was removed.
    ///
    /// Refused with [`WalError::GroupNotRemoved`] unless the group was removed:
    /// a live replica is never replaced this way.
    pub fn recreate_group(&mut self, group: GroupId) -> Result<HardState, WalError> {
        self.check_usable()?;
        let Some(last) = self.removed.remove(&group) else {
            return Err(WalError::GroupNotRemoved { group });
        };
        self.batch.push(GROUP_CREATED_RECORD_LEN, |buf| {
            record::encode_group_created(buf, group);
        });
        let hs = HardState {
            term: last.term,
            vote: last.vote,
            commit: 0,
        };
        self.hard_states.insert(group, hs);
        Ok(hs)
    }

    /// Whether `group` was removed and not created again: its tombstone was
    /// recovered from the log, or written or buffered by this `Wal`. Compaction
    /// restates tombstones, so this holds however long ago it was removed.
    pub fn is_removed(&self, group: GroupId) -> bool {
        self.removed.contains_key(&group)
    }

    /// How much the WAL holds and which groups keep its oldest segment, judged as
    /// [`Wal::compact`] would with the same `up_to`. Call it after compacting: the
    /// oldest segment reported is then the one the next compaction must free.
    /// Reads nothing from disk.
    pub fn pressure(&self, up_to: impl Fn(GroupId) -> Index) -> Pressure {
        let (segments, bytes, entries) = self.segments.totals();
        let mut pressure = Pressure {
            segments,
            bytes,
            entries,
            ..Pressure::default()
        };
        let Some(active) = self.active.as_ref().map(|a| a.seq) else {
            return pressure;
        };
        let oldest = self
            .segments
            .first_uncovered(self.first_seq, active, |g, max| {
                self.covered(g, max, &up_to)
            });
        if oldest == active {
            return pressure;
        }
        pressure.oldest = Some(oldest);
        if let Some(summary) = self.segments.get(oldest) {
            pressure.pinned_by = summary
                .max
                .iter()
                .filter(|&(&g, &max)| !self.covered(g, max, &up_to))
                .map(|(&group, &index)| Pin {
                    group,
                    index,
                    log_start: self.log_start(group).map_or(0, |s| s.index),
                })
                .collect();
        }
        Pressure::sort_pins(&mut pressure.pinned_by);
        pressure
    }

    /// Whether `group`'s entries up to `max` in a segment may be deleted: the group
    /// was removed, or both its log start and the caller's `up_to` reach `max`
    /// (entries no snapshot covers are never deleted).
    pub(super) fn covered(
        &self,
        group: GroupId,
        max: Index,
        up_to: impl Fn(GroupId) -> Index,
    ) -> bool {
        if self.removed.contains_key(&group) {
            return true;
        }
        let start = self.log_start(group).map_or(0, |s| s.index);
        max <= up_to(group).min(start)
    }
}

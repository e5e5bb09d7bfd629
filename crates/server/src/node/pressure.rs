//! Keeping quiet groups from pinning the WAL: one WAL serves every group, and a
//! segment is deleted only when every group's entries in it are covered by
//! that group's snapshots. A quiet group (the placement group writes a handful
//! of entries in its whole life) never reaches its snapshot threshold, so its
//! first entries would keep every later segment of the busy key-value group.
//!
//! Once a second, the driver asks the WAL which groups keep its oldest segment
//! (`Wal::pressure`); every group but the key-value group that needs a snapshot
//! to free it is snapshotted at once, after which its WAL log starts at that
//! snapshot (`Group::snapshot_for_pressure`). Only a segment the WAL no longer
//! writes can be pinned, so this costs a quiet group one small snapshot per
//! segment it wrote in. The key-value group is never asked: it snapshots on
//! its own schedule, as before other groups existed, and its trailing window
//! and previous snapshot stay in the log.

use std::time::{Duration, Instant};

use super::KV_GROUP;
use super::driver::Driver;

/// How often the WAL is looked at.
pub(super) const PRESSURE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

impl Driver {
    /// Once every [`PRESSURE_CHECK_INTERVAL`] (and at the first turn): asks
    /// every group but the key-value group that keeps the WAL's oldest segment
    /// for a snapshot.
    pub(super) fn relieve_wal_pressure(&mut self, now: Instant) {
        if !self.relieve_pressure || now < self.next_pressure_check {
            return;
        }
        self.next_pressure_check = now + PRESSURE_CHECK_INTERVAL;
        let pressure = self.ctx.wal_pressure();
        // The key-value group's own schedule frees its part of the segment.
        let pinning = pressure
            .pinned_by
            .iter()
            .filter(|p| p.needs_snapshot() && p.group != KV_GROUP);
        for pin in pinning {
            if let Some(g) = self.groups.get_mut(pin.group) {
                g.snapshot_for_pressure();
            }
        }
    }
}

//! Relieving WAL pressure: one WAL serves every group, and a segment is
//! deleted only when every group's entries in it are covered by that group's
//! snapshots. A quiet group (the placement group writes a handful of entries
//! in its whole life) never reaches its snapshot threshold, so its first
//! entries would keep every later segment of the busy key-value group.
//!
//! Once a second, the driver asks the WAL how much it holds
//! (`Wal::pressure`); over twice the snapshot threshold, the group pinning its
//! oldest segment is asked for a snapshot, after which its WAL log starts at
//! that snapshot (`Group::snapshot_for_pressure`). The key-value group is
//! never asked: it snapshots on its own schedule, as before other groups
//! existed, and its trailing window and previous snapshot stay in the log.

use std::time::{Duration, Instant};

use super::KV_GROUP;
use super::driver::Driver;

/// How often the WAL's pressure is looked at.
pub(super) const PRESSURE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

impl Driver {
    /// Once every [`PRESSURE_CHECK_INTERVAL`]: asks the group pinning the
    /// WAL's oldest segment for a snapshot, if the WAL holds more than
    /// `pressure_entries` entries.
    pub(super) fn relieve_wal_pressure(&mut self, now: Instant) {
        if self.pressure_entries == 0 || now < self.next_pressure_check {
            return;
        }
        self.next_pressure_check = now + PRESSURE_CHECK_INTERVAL;
        let pressure = self.ctx.wal_pressure();
        if !pressure.over(self.pressure_entries, u64::MAX) {
            return;
        }
        // Every other group that needs a snapshot to free the oldest segment
        // (the key-value group's own schedule frees its part).
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

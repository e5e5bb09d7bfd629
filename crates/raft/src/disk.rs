//! A node whose disk is full (keel's rule; the Raft papers assume storage never
//! refuses a write).
//!
//! The runtime says when its storage cannot take new writes
//! ([`Raft::set_disk_full`]); the core then stops asking for any, but keeps doing
//! everything that needs no new log entries:
//!
//! - **Leader:** proposals and membership changes are refused with
//!   [`ProposeError::DiskFull`]. Nothing else changes: heartbeats, ReadIndex and the
//!   lease go on, so reads are served. (The leader could still commit through its
//!   followers — it counts its own log only once durable, thesis §10.2.1 — but it
//!   could not apply what it cannot persist, so it would never answer the write.)
//!   The runtime hands leadership to a voter with room, if there is one.
//! - **Follower:** an AppendEntries or InstallSnapshot that would change its log is
//!   dropped unanswered. Nothing it has not made durable is ever acknowledged; the
//!   leader keeps the follower behind and resends once it answers again.
//!   Heartbeats are answered (the leader keeps its quorum, the follower its
//!   leader), and votes granted (a vote is a few bytes in space already reserved).
//! - **Elections:** the node does not start one, on timeout or on a leader's
//!   `TimeoutNow`: a leader that cannot write its log would serve nobody.

use crate::error::ProposeError;
use crate::raft::Raft;
use crate::types::Entry;

impl Raft {
    /// Tells the core whether local storage can take new writes (see the module
    /// docs). Deterministic: only the runtime decides when the disk is full.
    pub fn set_disk_full(&mut self, full: bool) {
        self.assert_not_in_ready();
        self.disk_full = full;
    }

    /// Whether the runtime last said the disk is full.
    pub fn disk_full(&self) -> bool {
        self.disk_full
    }

    /// Refuses a new entry while the disk is full.
    pub(crate) fn check_disk(&self) -> Result<(), ProposeError> {
        if self.disk_full {
            Err(ProposeError::DiskFull)
        } else {
            Ok(())
        }
    }

    /// Whether an append of `entries` must be dropped: the disk is full and they
    /// are not all in the log already (anything new, or a conflict to truncate,
    /// would need a write).
    pub(crate) fn refuses_append(&self, entries: &[Entry]) -> bool {
        self.disk_full
            && !entries
                .iter()
                .all(|e| self.log.term(e.index) == Some(e.term))
    }
}

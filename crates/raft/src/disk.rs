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
//! - **Follower:** takes no new entry that carries client data: an AppendEntries
//!   is cut before the first one (and dropped unanswered if nothing is left), an
//!   InstallSnapshot dropped. NO-OPs and membership changes are still taken — a
//!   new leader cannot serve reads before its NO-OP commits (thesis §6.4). Nothing
//!   it has not made durable is ever acknowledged (the runtime holds back
//!   acknowledgements while its writes wait for space); the leader keeps the
//!   follower behind and resends once it answers again. Heartbeats are answered
//!   (the leader keeps its quorum, the follower its leader), and votes granted (a
//!   vote is a few bytes in space already reserved).
//! - **Elections:** the node does not start one, on timeout or on a leader's
//!   `TimeoutNow`: a leader that cannot write its log would serve nobody.

use crate::error::ProposeError;
use crate::raft::Raft;
use crate::types::{Entry, EntryKind};

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

    /// The part of `entries` a follower takes: all of them, unless the disk is full;
    /// then the prefix before the first entry carrying client data that is not in
    /// the log already. NO-OPs and membership changes are a few bytes: a new
    /// leader must commit its NO-OP before it can serve reads (thesis §6.4), and an
    /// operator may need a membership change to replace a full node.
    pub(crate) fn acceptable<'a>(&self, entries: &'a [Entry]) -> &'a [Entry] {
        if !self.disk_full {
            return entries;
        }
        let end = entries
            .iter()
            .position(|e| e.kind == EntryKind::Normal && self.log.term(e.index) != Some(e.term))
            .unwrap_or(entries.len());
        &entries[..end]
    }
}

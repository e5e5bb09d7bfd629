//! Snapshots and log compaction (Raft §7, thesis §5).
//!
//! The core never sees snapshot *data*: the runtime writes the state machine to a
//! snapshot file, streams files between nodes and installs them. The core keeps
//! the metadata (index, term, configuration), decides when a follower needs a
//! snapshot, and replaces its log when it takes one:
//!
//! - [`Raft::snapshot_meta`] describes the state at an applied index, for the
//!   runtime to store alongside its snapshot file;
//! - [`Raft::compact`] tells the core that a durable snapshot exists, so the log
//!   up to a point the runtime chooses can be dropped from memory;
//! - a leader whose follower needs compacted entries sends
//!   [`MessageBody::InstallSnapshot`] and waits for [`Raft::report_snapshot`] (or
//!   the follower's acknowledgement);
//! - a follower that steps in `InstallSnapshot` hands the metadata back in
//!   [`crate::Ready::snapshot`], whose contract says how to install it.

use crate::error::CompactError;
use crate::membership::ConfHistory;
use crate::message::MessageBody;
use crate::progress::ProgressState;
use crate::raft::Raft;
use crate::ready::{Event, Role};
use crate::types::{Index, NodeId, SnapshotMeta};

impl Raft {
    /// The metadata of a snapshot of the state machine as of `index` (term of the
    /// entry there, configuration in force there). `index` must be applied and
    /// still in the log.
    pub fn snapshot_meta(&self, index: Index) -> Result<SnapshotMeta, CompactError> {
        if index > self.log.applied {
            return Err(CompactError::NotApplied {
                index,
                applied: self.log.applied,
            });
        }
        if index == self.snapshot.index && index > 0 {
            return Ok(self.snapshot.clone());
        }
        let (Some(term), Some(conf)) = (self.log.term(index), self.conf.at(index)) else {
            return Err(CompactError::Unavailable { index });
        };
        Ok(SnapshotMeta { index, term, conf })
    }

    /// The runtime made a snapshot described by `meta` durable (as its newest): the
    /// core records it — it is what followers that need compacted entries are sent
    /// — and drops the log before `keep_from`, keeping the entries from `keep_from`
    /// on so that followers lagging slightly behind the snapshot still get entries.
    /// `keep_from` is capped at `meta.index + 1` (entries after the snapshot stay)
    /// and at what is durable. A snapshot older than the recorded one is ignored.
    pub fn compact(&mut self, meta: SnapshotMeta, keep_from: Index) -> Result<(), CompactError> {
        self.assert_not_in_ready();
        if meta.index > self.log.applied {
            return Err(CompactError::NotApplied {
                index: meta.index,
                applied: self.log.applied,
            });
        }
        if meta.index < self.snapshot.index {
            return Ok(());
        }
        let actual = if meta.index == self.snapshot.index {
            Some(self.snapshot.term)
        } else {
            self.log.term(meta.index)
        };
        if actual != Some(meta.term) {
            return Err(CompactError::TermMismatch {
                index: meta.index,
                claimed: meta.term,
                actual,
            });
        }
        let upto = keep_from
            .saturating_sub(1)
            .min(meta.index)
            .min(self.log.persisted);
        self.snapshot = meta;
        if upto > self.log.offset() {
            self.log.compact_to(upto);
            self.conf.compact_to(upto);
        }
        Ok(())
    }

    /// The newest snapshot the core knows of (index 0 if none).
    pub fn snapshot(&self) -> &SnapshotMeta {
        &self.snapshot
    }

    /// Index of the first entry still in the log.
    pub fn first_index(&self) -> Index {
        self.log.first_index()
    }

    /// Leader only: the runtime finished sending a snapshot to `peer`. On success
    /// the leader probes right after the snapshot; on failure it probes again from
    /// what the peer is known to hold once a heartbeat answer shows it reachable,
    /// which sends a new snapshot if it still needs one.
    pub fn report_snapshot(&mut self, peer: NodeId, success: bool) {
        self.assert_not_in_ready();
        if self.role != Role::Leader {
            return;
        }
        let Some(pr) = self.progress.get_mut(&peer) else {
            return;
        };
        if pr.state != ProgressState::Snapshot {
            return;
        }
        pr.snapshot_done(success);
        if success {
            self.send_append(peer, true);
        }
    }

    /// Leader: `to` needs entries before the log's start. Sends the snapshot's
    /// metadata and holds everything else back until the outcome is known.
    pub(crate) fn send_snapshot(&mut self, to: NodeId) -> bool {
        let meta = self.snapshot.clone();
        let Some(pr) = self.progress.get_mut(&to) else {
            return false;
        };
        debug_assert!(meta.index >= self.log.offset(), "snapshot behind the log");
        pr.become_snapshot(meta.index);
        self.events.push(Event::SnapshotSent {
            to,
            index: meta.index,
        });
        self.send(to, MessageBody::InstallSnapshot { meta }, false);
        true
    }

    /// Follower: a leader of the current term sent a snapshot, whose data the
    /// runtime has received and verified (staged, not applied).
    pub(crate) fn handle_install_snapshot(&mut self, leader: NodeId, meta: SnapshotMeta) {
        let committed = self.log.committed;
        let ignores_term = self.injected(crate::InjectedBug::SnapshotIgnoresTerm);
        if meta.index <= committed {
            // Everything it covers is settled here already (§7: "if the follower
            // already has the entries, it keeps them").
            self.ack_append(leader, committed);
            return;
        }
        let holds = if ignores_term {
            meta.index <= self.log.last_index()
        } else {
            self.log.matches(meta.index, meta.term)
        };
        if holds {
            // Our log agrees with the leader's through the snapshot's index (log
            // matching, §5.3), and that prefix is committed: keep the entries after.
            self.log.commit_to(meta.index);
            self.ack_append(leader, meta.index);
            return;
        }
        if self.disk_full {
            // Taking it needs writes (`disk.rs`): no answer; the leader retries.
            return;
        }
        // §7: discard the entire log and take the snapshot.
        self.log.restore(meta.index, meta.term);
        let _ = self.log.take_written_from();
        self.conf = ConfHistory::new(meta.conf.clone(), meta.index);
        self.conf_reported = meta.index;
        self.snapshot = meta.clone();
        self.events.push(Event::SnapshotRestored {
            index: meta.index,
            term: meta.term,
        });
        self.pending_snapshot = Some(meta.clone());
        self.sync_conf();
        self.ack_append(leader, meta.index);
    }
}

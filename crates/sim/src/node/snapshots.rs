//! One incarnation's snapshot bookkeeping, as the server's runtime keeps it: the
//! background write in progress, the snapshots known durable, the WAL compaction
//! waiting behind them, and the peers a transfer is running to. All of it is lost
//! at a crash; a restart starts again from the newest durable snapshot.
//!
//! The WAL is compacted one snapshot behind, as in the server: when a snapshot is
//! durable, the log is cut to start after the *previous* one (so that the older
//! snapshot plus the log would still rebuild the state if the newest were found
//! damaged), and only once the state machine is durable at or beyond that point.

use std::collections::BTreeSet;

use keel_raft::{Index, NodeId, SnapshotMeta, Term};

use crate::storage::{KEEP_SNAPSHOTS, StateView};

/// A snapshot being written in the background.
#[derive(Debug)]
pub struct Writing {
    /// What it covers.
    pub meta: SnapshotMeta,
    /// The state machine as of `meta.index`.
    pub view: StateView,
    /// Log entries the core keeps before `meta.index` once it is durable.
    pub trailing: u64,
}

/// A WAL compaction planned behind a durable snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalCompaction {
    /// The log will start after this entry (a durable snapshot's index and term).
    pub start: (Index, Term),
    /// Segments holding only entries up to here may be deleted.
    pub up_to: Index,
}

/// Snapshot state of one process.
#[derive(Debug, Default)]
pub struct SnapshotRuntime {
    /// Durable snapshots known, oldest first (the newest [`KEEP_SNAPSHOTS`]).
    known: Vec<(Index, Term)>,
    /// The background write in progress.
    pub writing: Option<Writing>,
    /// A WAL compaction waiting for the state machine to be durable far enough.
    pub pending_wal: Option<WalCompaction>,
    /// The state machine's applied index as of its last flush (or install).
    pub durable_applied: Index,
    /// Peers a transfer is running to (one at a time each).
    pub sending: BTreeSet<NodeId>,
    /// The next snapshot is taken once the state machine has applied this far.
    pub next_at: Index,
}

impl SnapshotRuntime {
    /// The state at start-up: the newest durable snapshot, and a state machine
    /// durable at `applied`.
    pub fn new(snapshot: Option<&SnapshotMeta>, applied: Index) -> Self {
        SnapshotRuntime {
            known: snapshot.map(|s| (s.index, s.term)).into_iter().collect(),
            durable_applied: applied,
            ..SnapshotRuntime::default()
        }
    }

    /// Index of the newest durable snapshot (0 if none).
    pub fn newest(&self) -> Index {
        self.known.last().map_or(0, |k| k.0)
    }

    fn remember(&mut self, meta: &SnapshotMeta) {
        self.known.push((meta.index, meta.term));
        self.known.sort_unstable();
        self.known.dedup();
        let excess = self.known.len().saturating_sub(KEEP_SNAPSHOTS);
        self.known.drain(..excess);
    }

    /// A snapshot this node wrote is durable and the core compacted up to
    /// `meta.index - trailing`: plans the WAL compaction behind the previous one.
    pub fn on_written(&mut self, meta: &SnapshotMeta, trailing: u64) {
        let prev = self.known.last().copied();
        self.remember(meta);
        if let Some((index, term)) = prev
            && index < meta.index
        {
            self.pending_wal = Some(WalCompaction {
                start: (index, term),
                up_to: meta.index.saturating_sub(trailing).min(index),
            });
        }
    }

    /// A leader's snapshot was installed (durably, with the state machine): the
    /// log starts after it now, so planned compactions are moot.
    pub fn on_installed(&mut self, meta: &SnapshotMeta) {
        self.pending_wal = None;
        self.remember(meta);
        self.durable_applied = self.durable_applied.max(meta.index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(index: Index, term: Term) -> SnapshotMeta {
        SnapshotMeta {
            index,
            term,
            ..SnapshotMeta::default()
        }
    }

    #[test]
    fn the_wal_is_compacted_one_snapshot_behind() {
        let mut s = SnapshotRuntime::new(None, 0);
        s.on_written(&meta(10, 1), 3);
        assert_eq!(s.pending_wal, None, "no earlier snapshot to cut behind");
        s.on_written(&meta(20, 2), 3);
        assert_eq!(
            s.pending_wal,
            Some(WalCompaction {
                start: (10, 1),
                up_to: 10
            })
        );
        s.on_written(&meta(30, 2), 25);
        assert_eq!(
            s.pending_wal.map(|c| c.up_to),
            Some(5),
            "trailing entries stay"
        );
        assert_eq!((s.newest(), s.known.len()), (30, 2));
        s.on_installed(&meta(50, 3));
        assert_eq!(
            (s.pending_wal, s.newest(), s.durable_applied),
            (None, 50, 50)
        );
    }
}

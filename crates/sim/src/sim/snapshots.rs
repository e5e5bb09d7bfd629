//! Snapshots and log compaction in the nodes' runtimes, as the server does them
//! (`crates/server/src/node/snapshots.rs`):
//!
//! - **Taking** — once a node's state machine has applied a random number of
//!   entries past its last snapshot (around a mean drawn per run; one run in eight
//!   takes none), it takes a view of the state machine and writes a snapshot from it
//!   in the background, which takes simulated time while everything else goes on. A
//!   crash may strike meanwhile (and is planned there now and then).
//! - **Compacting** — when the write is durable, the core drops its log up to the
//!   snapshot minus a trailing window drawn per snapshot (sometimes 0); the WAL is
//!   cut one snapshot behind, once the state machine is durable that far.
//! - **Installing** — a core that takes a leader's snapshot (`Ready::snapshot`) has
//!   its runtime install it into the state machine and start the log after it,
//!   before the `Ready`'s entries and durable with its fsync (both forms of the
//!   contract: see `sync_driver` and `async_driver`).
//!
//! Transfers between nodes are in `transfer`; starting from the newest snapshot
//! after a crash is in `crate::storage::reconcile`.

use keel_raft::{NodeId, SnapshotMeta};

use super::{Scheduled, Simulation, Stop};
use crate::checker::{Invariant, Violation};
use crate::config::{Bug, TICK, Time};
use crate::node::{Input, Writing};
use crate::rng::SimRng;
use crate::storage::StorageError;
use crate::trace::{SnapshotStep, TraceEvent};

/// Mean entries between two snapshots of a node, one drawn per run.
const MEAN_GAPS: [u64; 5] = [4, 8, 16, 32, 64];

/// When nodes take snapshots in a run.
#[derive(Clone, Copy, Debug)]
pub(super) struct Policy {
    /// Mean entries applied between two snapshots of a node; `None`: none at all.
    every: Option<u64>,
}

impl Policy {
    /// One run in eight takes no snapshots, so that long logs that are never
    /// compacted stay covered; the others snapshot every few to every few dozen
    /// entries.
    pub(super) fn random(rng: &mut SimRng) -> Self {
        let off = rng.one_in(8);
        let every = rng.pick(&MEAN_GAPS).expect("non-empty");
        Policy {
            every: (!off).then_some(every),
        }
    }
}

impl Simulation {
    /// Entries from a snapshot to the next one: anywhere up to twice the run's mean.
    pub(super) fn snapshot_gap(&mut self) -> u64 {
        let every = self.snapshot_policy.every.unwrap_or(0);
        self.rng.range(1, 2 * every)
    }

    /// Log entries the core keeps before a snapshot (for followers slightly behind
    /// it): none, a few, about a gap's worth, or more than a gap.
    fn snapshot_trailing(&mut self, every: u64) -> u64 {
        match self.rng.below(4) {
            0 => 0,
            1 => self.rng.range(1, 3),
            2 => self.rng.range(every / 2, 2 * every),
            _ => 4 * every,
        }
    }

    pub(super) fn snapshot_event(
        &mut self,
        node: NodeId,
        peer: NodeId,
        meta: &SnapshotMeta,
        step: SnapshotStep,
    ) {
        self.record(TraceEvent::Snapshot {
            node,
            peer,
            index: meta.index,
            term: meta.term,
            step,
        });
    }

    /// What the runtime does between inputs: compact the WAL when a compaction is
    /// due, and start a snapshot when one is.
    pub(super) fn snapshot_turn(&mut self, id: NodeId) -> Result<(), Stop> {
        self.maybe_compact_wal(id)?;
        self.maybe_begin_snapshot(id)
    }

    /// Starts writing a snapshot if the node applied enough since its last one, at
    /// a point where its state machine and its core agree on what is applied (not
    /// while a `Ready`'s applies or a leader's snapshot are still to be carried out).
    fn maybe_begin_snapshot(&mut self, id: NodeId) -> Result<(), Stop> {
        let Some(every) = self.snapshot_policy.every else {
            return Ok(());
        };
        let Some(p) = self.node(id).process.as_ref() else {
            return Ok(());
        };
        let applied = p.storage.applied_index();
        if p.snaps.writing.is_some()
            || applied != p.core.applied_index()
            || applied < p.snaps.next_at
            || applied <= p.snaps.newest()
        {
            return Ok(());
        }
        let Ok(meta) = p.core.snapshot_meta(applied) else {
            return Ok(());
        };
        let storage = |error| Stop::Storage { node: id, error };
        let view = p.storage.view().map_err(storage)?;
        self.checker(id).on_snapshot(id, &meta)?;
        let trailing = self.snapshot_trailing(every);
        let latency: Time = self.rng.range(TICK / 10, 2 * TICK);
        let incarnation = self.node(id).incarnation;
        let early = self.bug(Bug::CompactBeforeSnapshot);
        let p = self.process_mut(id).expect("checked above");
        if early {
            // The bug: the log goes before the snapshot covering it is durable.
            let up_to = meta.index.saturating_sub(trailing);
            p.storage
                .compact_log((meta.index, meta.term), up_to)
                .map_err(storage)?;
        }
        self.snapshot_event(id, 0, &meta, SnapshotStep::Writing { trailing });
        let p = self.process_mut(id).expect("checked above");
        p.snaps.writing = Some(Writing {
            meta,
            view,
            trailing,
        });
        self.schedule(
            latency,
            Scheduled::SnapshotWritten {
                node: id,
                incarnation,
            },
        );
        self.maybe_crash_during_snapshot_write(id, latency);
        Ok(())
    }

    /// A background snapshot write completes: the file is durable, and the core
    /// may compact (as soon as it may be called).
    pub(super) fn on_snapshot_written(&mut self, id: NodeId, incarnation: u32) -> Result<(), Stop> {
        if self.node(id).incarnation != incarnation {
            return Ok(());
        }
        let Some(p) = self.process_mut(id) else {
            return Ok(());
        };
        let Some(w) = p.snaps.writing.take() else {
            return Ok(());
        };
        if let Err(error) = p.storage.write_snapshot(w.view, &w.meta) {
            return Err(Stop::Storage { node: id, error });
        }
        self.stats.snapshots_taken += 1;
        self.snapshot_event(id, 0, &w.meta, SnapshotStep::Written);
        self.feed(
            id,
            Input::Compact {
                meta: w.meta,
                trailing: w.trailing,
            },
        )
    }

    /// [`Input::Compact`]: the core drops its log up to the snapshot (minus the
    /// trailing entries) and the WAL compaction behind the previous snapshot is
    /// planned.
    pub(super) fn compact(
        &mut self,
        id: NodeId,
        meta: SnapshotMeta,
        trailing: u64,
    ) -> Result<(), Stop> {
        let keep_from = (meta.index + 1).saturating_sub(trailing).max(1);
        let next = meta.index + self.snapshot_gap();
        let Some(p) = self.process_mut(id) else {
            return Ok(());
        };
        if let Err(e) = p.core.compact(meta.clone(), keep_from) {
            return Err(Violation::new(
                Invariant::CoreInvariant,
                vec![id],
                format!(
                    "node {id}'s core refused the snapshot at {}@{} it described itself: {e}",
                    meta.index, meta.term
                ),
            )
            .into());
        }
        p.snaps.on_written(&meta, trailing);
        p.snaps.next_at = next;
        let first = p.core.first_index();
        self.snapshot_event(id, 0, &meta, SnapshotStep::Compacted { first });
        Ok(())
    }

    /// Cuts the WAL behind the previous snapshot once the state machine is durable
    /// that far, between fsyncs (the WAL's writer is the one that compacts).
    fn maybe_compact_wal(&mut self, id: NodeId) -> Result<(), Stop> {
        let Some(p) = self.process_mut(id) else {
            return Ok(());
        };
        let Some(c) = p.snaps.pending_wal else {
            return Ok(());
        };
        if p.is_syncing() || p.snaps.durable_applied < c.start.0 {
            return Ok(());
        }
        p.snaps.pending_wal = None;
        if let Err(error) = p.storage.compact_log(c.start, c.up_to) {
            return Err(Stop::Storage { node: id, error });
        }
        self.stats.wal_compactions += 1;
        let (index, term) = c.start;
        self.record(TraceEvent::Snapshot {
            node: id,
            peer: 0,
            index,
            term,
            step: SnapshotStep::WalCompacted { up_to: c.up_to },
        });
        Ok(())
    }

    /// The core took a leader's snapshot (`Ready::snapshot`): its log now starts
    /// after it, and the proposals waiting at the indexes it covers are never
    /// answered.
    pub(super) fn on_restored(&mut self, id: NodeId, meta: &SnapshotMeta) -> Result<(), Stop> {
        self.checker(id).on_restore(id, meta)?;
        self.client(id).on_snapshot(id, meta.index);
        let leader = self.node(id).core().map_or(0, |c| c.leader());
        self.snapshot_event(id, leader, meta, SnapshotStep::Restored);
        Ok(())
    }

    /// Step 2 of a `Ready` with a snapshot, before its entries: the received
    /// snapshot replaces the state machine (atomically and durably) and the log is
    /// recorded to start after it (durable with this `Ready`'s fsync).
    pub(super) fn install(&mut self, id: NodeId, meta: &SnapshotMeta) -> Result<(), Stop> {
        let next = meta.index + self.snapshot_gap();
        let p = self.process_mut(id).expect("driven nodes run");
        let installed = p
            .storage
            .install_state(meta)
            .and_then(|()| p.storage.start_log_after(meta))
            .and_then(|()| match p.storage.applied_index() {
                i if i == meta.index => p.storage.digest(),
                i => Err(StorageError::StateMachine(format!(
                    "installed snapshot {} but the state machine is at {i}",
                    meta.index
                ))),
            });
        let digest = installed.map_err(|error| Stop::Storage { node: id, error })?;
        p.snaps.on_installed(meta);
        p.snaps.next_at = next;
        self.checker(id).on_install(id, meta, digest)?;
        self.stats.snapshots_installed += 1;
        self.snapshot_event(id, 0, meta, SnapshotStep::Installed);
        Ok(())
    }
}

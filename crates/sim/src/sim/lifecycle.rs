//! Starting a node's process from its disk, and crashing it.

use keel_raft::{ConfState, InitialState, NO_NODE, NodeId, Raft};

use super::{Scheduled, Simulation, Stop};
use crate::checker::{Invariant, Violation};
use crate::config::{Bug, Persistence, TICK, Time};
use crate::node::{Driver, Process, SnapshotRuntime, StorageThread, SyncDriver};
use crate::storage::StorageError;
use crate::trace::TraceEvent;

/// Disk operations a dying process may still complete during its last fsync or
/// flush: enough to cover a WAL segment rollover (create, preallocate, header,
/// fsync, directory fsync) plus the frame write and its fsync, or a redb commit.
const MAX_OPS_BEFORE_DEATH: u64 = 8;

/// Longest fsync of a usual disk, and of a slow one (a quarter of the incarnations):
/// a slow disk keeps several `Ready`s in flight on an asynchronous node, and a long
/// inbox on a synchronous one.
pub(super) const FSYNC_MAX: Time = TICK / 5;
const SLOW_FSYNC_MAX: Time = TICK;

impl Simulation {
    /// Starts node `id`'s process: opens (recovers) its storage — from its newest
    /// durable snapshot and the log after it — checks what came back, and builds a
    /// core from it, as the server does at startup.
    pub(super) fn start(&mut self, id: NodeId) -> Result<(), Stop> {
        let (storage, recovered) = match self.node(id).disk.open() {
            Ok(opened) => opened,
            // The runtime cut its log where no durable snapshot covers it.
            Err(StorageError::Unrecoverable(why)) => {
                return Err(Violation::new(
                    Invariant::Durability,
                    vec![id],
                    format!("node {id} cannot restart from its disk: {why}"),
                )
                .into());
            }
            // The disk only ever went through clean power failures: storage must be
            // able to recover from any of them.
            Err(error) => return Err(Stop::Storage { node: id, error }),
        };
        let digest = storage
            .digest()
            .map_err(|error| Stop::Storage { node: id, error })?;
        self.checker.on_recover(
            id,
            &recovered.hard_state,
            recovered.snapshot.as_ref(),
            &recovered.entries,
            (recovered.applied, digest),
        )?;
        if recovered.torn_tail {
            self.stats.torn_tails += 1;
        }
        if recovered.loaded_snapshot {
            self.stats.snapshots_loaded += 1;
        }
        let restarted = self.node(id).incarnation > 0;
        let mut hard_state = recovered.hard_state;
        if restarted && self.bug(Bug::ForgetVote) {
            hard_state.vote = NO_NODE;
        }
        let snapshot = recovered.snapshot.as_ref().map_or(0, |s| s.index);
        let last_index = recovered.entries.last().map_or(snapshot, |e| e.index);
        let mut snaps = SnapshotRuntime::new(recovered.snapshot.as_ref(), recovered.applied);
        snaps.next_at = snapshot + self.snapshot_gap();
        let init = InitialState {
            hard_state,
            conf: ConfState::with_voters(self.ids()),
            snapshot: recovered.snapshot,
            entries: recovered.entries,
            applied: recovered.applied,
        };
        let cfg = keel_raft::Config {
            id,
            ..self.raft.clone()
        };
        let mut core = Raft::new(cfg, init, self.rng.fork_seed()).map_err(|e| {
            Violation::new(
                Invariant::Durability,
                vec![id],
                format!("node {id}'s recovered state is inconsistent; the core refuses it: {e}"),
            )
        })?;
        if self.bug(Bug::ConcurrentConfChanges) {
            core.inject_bug(Some(keel_raft::InjectedBug::ConcurrentConfChanges));
        }
        if self.bug(Bug::SnapshotIgnoresTerm) {
            core.inject_bug(Some(keel_raft::InjectedBug::SnapshotIgnoresTerm));
        }
        if self.bug(Bug::LeaseWithoutDriftMargin) {
            core.inject_bug(Some(keel_raft::InjectedBug::LeaseWithoutDriftMargin));
        }
        // The first clock reading: a restarted core assumes a lease from it.
        core.set_clock(self.clock(id));
        let first_tick = self.rng.range(1, self.node(id).clock.tick_period());
        // Drawn whatever the mode, so that forcing one changes only this choice.
        let coin = self.rng.one_in(2);
        let asynchronous = match self.cfg.persistence {
            Persistence::Sync => false,
            Persistence::Async => true,
            Persistence::Mixed => coin,
        };
        let driver = if asynchronous {
            self.stats.async_starts += 1;
            Driver::Async(StorageThread::default())
        } else {
            Driver::Sync(Box::<SyncDriver>::default())
        };
        let fsync_max = if self.rng.one_in(4) {
            SLOW_FSYNC_MAX
        } else {
            FSYNC_MAX
        };
        self.stats.starts += 1;
        let node = self.node_mut(id);
        node.incarnation += 1;
        let driver_name = driver.name();
        node.process = Some(Process {
            core,
            storage,
            driver,
            fsync_max,
            snaps,
        });
        let incarnation = node.incarnation;
        self.record(TraceEvent::Restart {
            node: id,
            driver: driver_name,
            term: hard_state.term,
            vote: hard_state.vote,
            snapshot,
            last_index,
            applied: recovered.applied,
        });
        self.schedule(
            first_tick,
            Scheduled::Tick {
                node: id,
                incarnation,
            },
        );
        self.touched.push(id);
        self.observe(id)?;
        self.drive(id)
    }

    /// Cuts node `id`'s power: the process and everything only it knew are gone, and
    /// the disk keeps only what was synced, plus a random (possibly torn) part of the
    /// rest.
    pub(super) fn crash(&mut self, id: NodeId) {
        // A power failure ends a pause: what the node held is released, to find
        // the process gone.
        self.resume(id, None);
        let mid_sync = self.node(id).is_syncing();
        let not_durable = self
            .node(id)
            .process
            .as_ref()
            .map_or(0, Process::not_durable);
        // Most crashes during an fsync strike while its data is being written: let
        // the process get one disk operation in (the frame is written, its fsync never
        // happens, so the crash may tear it), or sometimes any number up to the end
        // of a segment rollover. Otherwise the batch dies in the process's memory.
        let die_mid_write = mid_sync && !self.rng.one_in(4);
        let ops = if self.rng.one_in(4) {
            self.rng.range(0, MAX_OPS_BEFORE_DEATH)
        } else {
            1
        };
        // Otherwise, a background snapshot write in progress is interrupted half the
        // time (leaving a partial file, or a finished one whose rename may not be
        // durable), and failing that, the crash sometimes strikes in the middle of a
        // state machine flush (a redb durable commit: page writes, fsync, header,
        // fsync).
        let writing = self
            .node(id)
            .process
            .as_ref()
            .is_some_and(|p| p.snaps.writing.is_some());
        let die_mid_snapshot = !die_mid_write && writing && self.rng.one_in(2);
        let die_mid_flush = !die_mid_write && !die_mid_snapshot && self.rng.one_in(4);
        let flush_ops = self.rng.range(0, MAX_OPS_BEFORE_DEATH);
        let crash_seed = self.rng.fork_seed();
        let node = self.node_mut(id);
        let Some(mut process) = node.process.take() else {
            return;
        };
        // In each case the process gets some disk operations in, then every call
        // fails: the error it gets is the death we arranged, so it is ignored.
        if die_mid_write {
            node.disk.die_after(ops);
            let _ = process.storage.sync();
        } else if let Some(w) = process.snaps.writing.take().filter(|_| die_mid_snapshot) {
            node.disk.die_after(flush_ops);
            let _ = process.storage.write_snapshot(w.view, &w.meta);
        } else if die_mid_flush {
            node.disk.die_after(flush_ops);
            let _ = process.storage.flush();
        }
        drop(process);
        node.disk.crash(crash_seed);
        self.stats.crashes += 1;
        if mid_sync {
            self.stats.crashes_mid_sync += 1;
        }
        if not_durable > 1 {
            self.stats.crashes_many_in_flight += 1;
        }
        self.client.on_crash(id);
        self.reads_on_crash(id);
        self.checker.on_crash(id);
        self.record(TraceEvent::Crash { node: id, mid_sync });
    }
}

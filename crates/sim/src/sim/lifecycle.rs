//! Starting a node's process from its disk, and crashing it.

use keel_raft::{ConfState, InitialState, NO_NODE, NodeId, Raft};

use super::{Scheduled, Simulation, Stop};
use crate::checker::{Invariant, Violation};
use crate::config::{Bug, Persistence, TICK, Time};
use crate::node::{Driver, Process, SnapshotRuntime, StorageThread, SyncDriver};
use crate::storage::{NodeStorage, Recovered, StorageError};
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
    /// Starts node `host`'s process: opens (recovers) its storage — one WAL for
    /// every group it hosts, and each group's newest durable snapshot and the log
    /// after it — and starts each group's replica from it.
    pub(super) fn start(&mut self, host: NodeId) -> Result<(), Stop> {
        let groups: Vec<keel_raft::GroupId> = self.groups().collect();
        let opened = match self.node(host).disk.open(&groups) {
            Ok(opened) => opened,
            // The runtime cut its log where no durable snapshot covers it.
            Err(StorageError::Unrecoverable(why)) => {
                return Err(Violation::new(
                    Invariant::Durability,
                    vec![host],
                    format!("node {host} cannot restart from its disk: {why}"),
                )
                .into());
            }
            // The disk only ever went through clean power failures: storage must be
            // able to recover from any of them.
            Err(error) => return Err(Stop::Storage { node: host, error }),
        };
        for (id, (storage, recovered)) in self.replicas_on(host).into_iter().zip(opened) {
            self.start_replica(id, storage, recovered)?;
        }
        Ok(())
    }

    /// Starts replica `id` from what its storage recovered: checks it, and builds
    /// a core from it, as the server does at startup.
    fn start_replica(
        &mut self,
        id: NodeId,
        storage: Box<dyn NodeStorage>,
        recovered: Recovered,
    ) -> Result<(), Stop> {
        let digest = storage
            .digest()
            .map_err(|error| Stop::Storage { node: id, error })?;
        self.checker(id).on_recover(
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
            conf: ConfState::with_voters(self.group_ids(self.group_of(id))),
            snapshot: recovered.snapshot,
            entries: recovered.entries,
            applied: recovered.applied,
        };
        let cfg = keel_raft::Config {
            id,
            group: self.group_of(id),
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
        // A node hosting several groups drives them all in one turn, synchronously
        // (the server's form; `SimConfig::validate`).
        let asynchronous = self.cfg.groups == 1
            && match self.cfg.persistence {
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

    /// Cuts node `host`'s power: the process — every group's replica — and
    /// everything only it knew are gone, and the disk keeps only what was synced,
    /// plus a random (possibly torn) part of the rest.
    pub(super) fn crash(&mut self, host: NodeId) {
        // A power failure ends a pause: what the node held is released, to find
        // the process gone.
        self.resume(host, None);
        let replicas = self.replicas_on(host);
        let mid_sync = replicas.iter().any(|&r| self.node(r).is_syncing());
        let not_durable: usize = replicas
            .iter()
            .filter_map(|&r| self.node(r).process.as_ref())
            .map(Process::not_durable)
            .sum();
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
        let writer = replicas.iter().copied().find(|&r| {
            self.node(r)
                .process
                .as_ref()
                .is_some_and(|p| p.snaps.writing.is_some())
        });
        let writing = writer.is_some();
        let die_mid_snapshot = !die_mid_write && writing && self.rng.one_in(2);
        let die_mid_flush = !die_mid_write && !die_mid_snapshot && self.rng.one_in(4);
        let flush_ops = self.rng.range(0, MAX_OPS_BEFORE_DEATH);
        let crash_seed = self.rng.fork_seed();
        if !self.node(host).is_up() {
            return;
        }
        let mut processes: Vec<(NodeId, Process)> = replicas
            .iter()
            .filter_map(|&r| Some((r, self.node_mut(r).process.take()?)))
            .collect();
        let disk = self.node(host).disk.clone();
        // In each case the process gets some disk operations in, then every call
        // fails: the error it gets is the death we arranged, so it is ignored. The
        // WAL is the node's: any group's storage syncs it.
        if die_mid_write {
            disk.die_after(ops);
            let _ = processes[0].1.storage.sync();
        } else if let Some((_, p)) = processes
            .iter_mut()
            .find(|(r, _)| Some(*r) == writer)
            .filter(|_| die_mid_snapshot)
        {
            let w = p.snaps.writing.take().expect("the writer is writing");
            disk.die_after(flush_ops);
            let _ = p.storage.write_snapshot(w.view, &w.meta);
        } else if die_mid_flush {
            disk.die_after(flush_ops);
            let _ = processes[0].1.storage.flush();
        }
        drop(processes);
        disk.crash(crash_seed);
        self.stats.crashes += 1;
        if mid_sync {
            self.stats.crashes_mid_sync += 1;
        }
        if not_durable > 1 {
            self.stats.crashes_many_in_flight += 1;
        }
        for r in replicas {
            self.client(r).on_crash(r);
            self.reads_on_crash(r);
            self.checker(r).on_crash(r);
        }
        self.record(TraceEvent::Crash {
            node: host,
            mid_sync,
        });
    }
}

//! The fault phase: injecting and ending faults.

use std::collections::BTreeMap;

use keel_raft::NodeId;

use super::{Phase, Scheduled, Simulation, Stop};
use crate::config::{TICK, Time};
use crate::faults::{self, ClusterView, FaultKind};
use crate::trace::TraceEvent;

/// What a planned crash waits for a node to be busy with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Busy {
    /// An fsync (a group commit) in flight.
    Fsync,
    /// A background snapshot write.
    SnapshotWrite,
}

/// Faults in progress.
#[derive(Debug, Default)]
pub(super) struct ChaosState {
    next_id: u64,
    active: BTreeMap<u64, FaultKind>,
}

impl Simulation {
    /// The faults this run favours: the usual mix, or — to show the lease bug in
    /// a few seeds — isolated leaders only.
    pub(super) fn fault_mix(&self) -> faults::Mix {
        if self.bug(crate::config::Bug::LeaseWithoutDriftMargin) {
            faults::Mix::IsolatedLeaders
        } else {
            faults::Mix::Usual
        }
    }

    /// At most this many faults at once (see [`faults::Mix::max_active`]).
    fn max_active_faults(&self) -> usize {
        self.fault_mix().max_active(self.cfg.nodes)
    }

    /// The nodes as faults see them: hosts (a fault strikes every group a node
    /// hosts), and as the leader the node leading group 1.
    fn view(&self) -> ClusterView {
        let hosts = self.hosts();
        ClusterView {
            up: hosts
                .iter()
                .copied()
                .filter(|&h| self.node(h).is_up())
                .collect(),
            leader: self.current_leader(1).map(|l| self.host_of(l)),
            syncing: hosts
                .iter()
                .copied()
                .filter(|&h| {
                    self.replicas_on(h)
                        .iter()
                        .any(|&r| self.node(r).is_syncing())
                })
                .collect(),
            nodes: hosts,
            paused: self.pauses.nodes(),
        }
    }

    pub(super) fn on_fault_timer(&mut self) -> Result<(), Stop> {
        if self.phase != Phase::Chaos {
            return Ok(());
        }
        let gap = faults::gap(self.election_time(), &mut self.rng);
        self.schedule(gap, Scheduled::FaultTimer);
        if self.chaos.active.len() >= self.max_active_faults() {
            return Ok(());
        }
        let view = self.view();
        let mix = self.fault_mix();
        let Some((fault, duration)) = faults::plan(&view, self.election_time(), mix, &mut self.rng)
        else {
            return Ok(());
        };
        self.inject(fault, duration);
        Ok(())
    }

    /// A node just made a granted vote durable and sent it. Sometimes crash it right
    /// there and restart it a moment later, while the election it voted in is still
    /// running: the moment a lost vote would let it vote twice in one term.
    pub(super) fn maybe_crash_after_vote(&mut self, node: NodeId) {
        let node = self.host_of(node);
        if self.phase != Phase::Chaos
            || !self.cfg.faults
            || self.chaos.active.len() >= self.max_active_faults()
            || !self.rng.one_in(3)
        {
            return;
        }
        let downtime = self.rng.range(TICK / 10, 2 * TICK);
        self.inject(FaultKind::Crash(node), downtime);
    }

    /// An asynchronous node's storage thread just started an fsync covering several
    /// `Ready`s, which takes `latency`. One time in ten, plan a crash at a random
    /// moment before it completes: the moment the most handed-out work is not durable
    /// yet (the timed faults rarely land there). Rarer would leave such crashes rare;
    /// more often would make asynchronous nodes crash far more than synchronous ones.
    pub(super) fn maybe_crash_during_group_commit(&mut self, node: NodeId, latency: Time) {
        self.maybe_crash_while(node, Busy::Fsync, latency, 10);
    }

    /// Node `node` just started writing a snapshot, which takes `latency`. One time
    /// in eight, plan a crash before the write completes: the moment a snapshot is
    /// not durable yet, which the rules for cutting the log are about.
    pub(super) fn maybe_crash_during_snapshot_write(&mut self, node: NodeId, latency: Time) {
        self.maybe_crash_while(node, Busy::SnapshotWrite, latency, 32);
    }

    /// One time in `one_in`, plans a crash of `node` at a random moment within
    /// `latency`, if it is still `during` then.
    fn maybe_crash_while(&mut self, node: NodeId, during: Busy, latency: Time, one_in: u64) {
        if self.phase != Phase::Chaos || !self.cfg.faults || !self.rng.one_in(one_in) {
            return;
        }
        let node = self.host_of(node);
        let at = self.rng.range(0, latency - 1);
        let incarnation = self.node(node).incarnation;
        self.schedule(
            at,
            Scheduled::PlannedCrash {
                node,
                incarnation,
                during,
            },
        );
    }

    /// A planned crash is due: strike if the node is still busy in the same
    /// incarnation and the fault budget allows.
    pub(super) fn on_planned_crash(&mut self, node: NodeId, incarnation: u32, during: Busy) {
        let busy = self.replicas_on(node).iter().any(|&r| {
            let n = self.node(r);
            match during {
                Busy::Fsync => n.is_syncing(),
                Busy::SnapshotWrite => n
                    .process
                    .as_ref()
                    .is_some_and(|p| p.snaps.writing.is_some()),
            }
        });
        let n = self.node(node);
        if self.phase != Phase::Chaos
            || n.incarnation != incarnation
            || !busy
            || self.chaos.active.len() >= self.max_active_faults()
        {
            return;
        }
        let downtime = self.rng.range(TICK / 10, 2 * TICK);
        self.inject(FaultKind::Crash(node), downtime);
    }

    fn inject(&mut self, fault: FaultKind, duration: Time) {
        self.chaos.next_id += 1;
        let id = self.chaos.next_id;
        self.stats.faults += 1;
        self.record(TraceEvent::FaultOn(fault.describe()));
        match &fault {
            FaultKind::Partition { links, .. } => self.net.cut(links),
            FaultKind::Crash(node) => self.crash(*node),
            FaultKind::Pause(node) => self.pause(*node, id),
            FaultKind::Storm { drop_ppm, dup_ppm } => {
                self.net.start_storm(id, *drop_ppm, *dup_ppm);
            }
        }
        self.chaos.active.insert(id, fault);
        self.schedule(duration, Scheduled::FaultEnd(id));
    }

    pub(super) fn on_fault_end(&mut self, id: u64) -> Result<(), Stop> {
        let Some(fault) = self.chaos.active.remove(&id) else {
            // Already ended by the healing at the start of the liveness phase.
            return Ok(());
        };
        self.record(TraceEvent::FaultOff(fault.describe()));
        match fault {
            FaultKind::Partition { links, .. } => self.net.uncut(&links),
            FaultKind::Crash(node) => self.restart(node)?,
            FaultKind::Pause(node) => self.resume(node, Some(id)),
            FaultKind::Storm { .. } => self.net.end_storm(id),
        }
        Ok(())
    }

    fn restart(&mut self, node: NodeId) -> Result<(), Stop> {
        if self.node(node).is_up() {
            return Ok(());
        }
        self.start(node)
    }

    /// Ends every fault, restarts every node that is down, and calms the network.
    pub(super) fn heal_everything(&mut self) -> Result<(), Stop> {
        let active: Vec<u64> = self.chaos.active.keys().copied().collect();
        for id in active {
            self.on_fault_end(id)?;
        }
        self.net.heal_all();
        for host in self.hosts() {
            self.restart(host)?;
        }
        Ok(())
    }
}

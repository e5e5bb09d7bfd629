//! The synchronous form of the `Ready` contract:
//!
//! 1. send `messages` at once;
//! 2. install a leader's `snapshot` if there is one (state machine replaced, log
//!    starting after it), write `entries` and `hard_state` to storage, and start
//!    the fsync — which takes simulated time, during which new inputs wait in the
//!    node's inbox (the core must not be called between `ready` and `advance`) and
//!    a crash may strike;
//! 3. when the fsync completes, send `persisted_messages`;
//! 4. apply `committed_entries`;
//! 5. `advance`, then work through the inputs that queued up meanwhile.
//!
//! A node hosting several groups does this as the server's consensus thread
//! does: a turn takes every group's `Ready`, their writes go into the node's one
//! WAL together and one fsync covers them all; while it runs, inputs for every
//! group wait.

use keel_raft::{NodeId, Ready};

use super::{Scheduled, Simulation, Stop};
use crate::config::Bug;
use crate::node::{Driver, SyncDriver};

impl Simulation {
    fn sync_driver(&mut self, id: NodeId) -> Option<&mut SyncDriver> {
        match &mut self.process_mut(id)?.driver {
            Driver::Sync(d) => Some(d),
            Driver::Async(_) => None,
        }
    }

    /// Whether node `host` has an fsync of the synchronous form in flight (for
    /// any of the groups it hosts).
    pub(super) fn sync_in_flight(&self, host: NodeId) -> bool {
        self.replicas_on(host).into_iter().any(|id| {
            self.node(id)
                .process
                .as_ref()
                .is_some_and(|p| matches!(&p.driver, Driver::Sync(d) if d.syncing.is_some()))
        })
    }

    /// One turn of node `host`: takes and carries out every hosted group's
    /// `Ready`s until each has none or one needs an fsync; the writes of all
    /// those that do go to the node's WAL together, and one fsync covers them.
    pub(super) fn drive_sync(&mut self, host: NodeId) -> Result<(), Stop> {
        if self.sync_in_flight(host) {
            return Ok(());
        }
        let mut writers = Vec::new();
        for id in self.replicas_on(host) {
            if self.drive_replica(id)? {
                writers.push(id);
            }
        }
        let Some(&first) = writers.first() else {
            return Ok(());
        };
        let latency = self.fsync_latency(first);
        let incarnation = self.node(host).incarnation;
        self.schedule(
            latency,
            Scheduled::SyncDone {
                node: host,
                incarnation,
            },
        );
        Ok(())
    }

    /// Carries out replica `id`'s `Ready`s until it has none (false) or one needs
    /// an fsync (true): that one's writes are given to storage and it waits.
    fn drive_replica(&mut self, id: NodeId) -> Result<bool, Stop> {
        loop {
            if self.sync_driver(id).is_none() {
                return Ok(false);
            }
            let Some(mut rd) = self.take_ready(id)? else {
                return Ok(false);
            };
            if !rd.must_sync() {
                self.finish(id, rd)?;
                continue;
            }
            if let Some(meta) = rd.snapshot.take() {
                self.install(id, &meta)?;
            }
            self.write(id, &rd.entries, rd.hard_state)?;
            if self.bug(Bug::AckBeforeSync) {
                for m in std::mem::take(&mut rd.persisted_messages) {
                    self.send(m);
                }
            }
            if let Some(d) = self.sync_driver(id) {
                d.syncing = Some(rd);
            }
            return Ok(true);
        }
    }

    /// Node `host`'s fsync completed: every `Ready` it covers, of whichever
    /// group, is durable.
    pub(super) fn sync_done(&mut self, host: NodeId) -> Result<(), Stop> {
        let mut round = Vec::new();
        for id in self.replicas_on(host) {
            if let Some(rd) = self.sync_driver(id).and_then(|d| d.syncing.take()) {
                round.push((id, rd));
            }
        }
        let Some(&(first, _)) = round.first() else {
            return Ok(());
        };
        self.fsync(first, round.len())?;
        if round.len() > 1 {
            self.stats.shared_fsyncs += 1;
        }
        let mut voted = false;
        for (id, rd) in round {
            voted |= super::grants_vote(&rd.persisted_messages);
            self.finish(id, rd)?;
        }
        if voted {
            self.maybe_crash_after_vote(host);
        }
        self.drain(host)
    }

    /// Steps 3 to 5 of the contract, once the `Ready`'s writes are durable.
    fn finish(&mut self, id: NodeId, mut rd: Ready) -> Result<(), Stop> {
        for m in std::mem::take(&mut rd.persisted_messages) {
            self.send(m);
        }
        let committed = std::mem::take(&mut rd.committed_entries);
        self.apply(id, committed)?;
        let p = self.process_mut(id).expect("driven nodes run");
        p.core.advance(rd);
        self.touched.push(id);
        self.observe(id)
    }

    /// Works through inputs that queued up during an fsync, until none is left
    /// or the node starts another fsync. A node hosting one group takes them one
    /// at a time, each turn driving the core as far as it goes. A node hosting
    /// several takes every waiting input of every group into the cores first and
    /// then turns once, as the server's consensus thread drains its queue before
    /// it writes: so one fsync covers the writes they caused in every group.
    fn drain(&mut self, host: NodeId) -> Result<(), Stop> {
        loop {
            if self.cfg.groups > 1 {
                for id in self.replicas_on(host) {
                    while let Some(input) = self.sync_driver(id).and_then(|d| d.inbox.pop_front()) {
                        self.input(id, input)?;
                    }
                }
            }
            self.drive_sync(host)?;
            if self.sync_in_flight(host) {
                return Ok(());
            }
            let next = self.replicas_on(host).into_iter().find_map(|id| {
                let input = self.sync_driver(id)?.inbox.pop_front()?;
                Some((id, input))
            });
            let Some((id, input)) = next else {
                return Ok(());
            };
            self.input(id, input)?;
        }
    }
}

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

    /// Takes and carries out `Ready`s until the core has none, or one needs an fsync.
    pub(super) fn drive_sync(&mut self, id: NodeId) -> Result<(), Stop> {
        loop {
            if self.sync_driver(id).is_none_or(|d| d.syncing.is_some()) {
                return Ok(());
            }
            let Some(mut rd) = self.take_ready(id)? else {
                return Ok(());
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
            let latency = self.fsync_latency(id);
            let incarnation = self.node(id).incarnation;
            if let Some(d) = self.sync_driver(id) {
                d.syncing = Some(rd);
            }
            self.schedule(
                latency,
                Scheduled::SyncDone {
                    node: id,
                    incarnation,
                },
            );
            return Ok(());
        }
    }

    /// The fsync of the `Ready` in flight completed.
    pub(super) fn sync_done(&mut self, id: NodeId) -> Result<(), Stop> {
        let Some(rd) = self.sync_driver(id).and_then(|d| d.syncing.take()) else {
            return Ok(());
        };
        self.fsync(id, 1)?;
        let voted = super::grants_vote(&rd.persisted_messages);
        self.finish(id, rd)?;
        if voted {
            self.maybe_crash_after_vote(id);
        }
        self.drain(id)
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

    /// Works through inputs that queued up during an fsync, until the node has none
    /// left or starts another fsync.
    fn drain(&mut self, id: NodeId) -> Result<(), Stop> {
        loop {
            self.drive_sync(id)?;
            let Some(d) = self.sync_driver(id) else {
                return Ok(());
            };
            if d.syncing.is_some() {
                return Ok(());
            }
            let Some(input) = d.inbox.pop_front() else {
                return Ok(());
            };
            self.input(id, input)?;
        }
    }
}

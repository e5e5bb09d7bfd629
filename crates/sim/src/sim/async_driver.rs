//! The asynchronous form of the `Ready` contract, as the server's runtime will
//! drive it with a WAL thread:
//!
//! 1. send `messages` at once;
//! 2. hand `entries`, `hard_state` and `persisted_messages` to the storage thread
//!    (its channel), apply `committed_entries` — they are durable locally already, so
//!    they are applied when handed out, in `Ready` order — and `advance_async`; the
//!    core keeps taking inputs and producing `Ready`s while writes are in flight;
//! 3. the storage thread, when free, takes every queued write, gives it to storage as
//!    one batch (installing a leader's snapshot first where a `Ready` has one) and
//!    fsyncs once (group commit), which takes simulated time during which a crash
//!    may strike;
//! 4. when the fsync completes, for each covered `Ready` in order: send its
//!    `persisted_messages`, then `on_persisted` with its number.

use keel_raft::NodeId;

use super::{Scheduled, Simulation, Stop};
use crate::config::Bug;
use crate::node::{Driver, Handover, StorageThread};
use crate::trace::TraceEvent;

impl Simulation {
    fn storage_thread(&mut self, id: NodeId) -> Option<&mut StorageThread> {
        match &mut self.process_mut(id)?.driver {
            Driver::Async(t) => Some(t),
            Driver::Sync(_) => None,
        }
    }

    /// Takes and hands over every `Ready` the core has, then lets the storage thread
    /// start an fsync if it is free.
    pub(super) fn drive_async(&mut self, id: NodeId) -> Result<(), Stop> {
        while let Some(mut rd) = self.take_ready(id)? {
            let mut handover = Handover::take_from(&mut rd);
            if self.bug(Bug::AckBeforeSync) {
                for m in std::mem::take(&mut handover.persisted_messages) {
                    self.send(m);
                }
            }
            let committed = std::mem::take(&mut rd.committed_entries);
            self.apply(id, committed)?;
            let persist_early = self.bug(Bug::PersistBeforeSync);
            let p = self.process_mut(id).expect("driven nodes run");
            p.core.advance_async(rd);
            if persist_early {
                // The bug: tell the core at hand-over that the Ready is durable.
                p.core.on_persisted(handover.number);
                self.touched.push(id);
            }
            if !handover.is_empty()
                && let Some(t) = self.storage_thread(id)
                && let Some(now) = t.hand_over(handover)
            {
                self.report(id, now);
            }
            self.observe(id)?;
        }
        self.start_fsync(id)
    }

    /// If the storage thread is free and has work queued, gives storage all of it
    /// and starts one fsync.
    fn start_fsync(&mut self, id: NodeId) -> Result<(), Stop> {
        let Some((writes, covered)) = self.storage_thread(id).and_then(|t| t.start_fsync()) else {
            return Ok(());
        };
        for w in writes {
            if let Some(meta) = &w.snapshot {
                self.install(id, meta)?;
            }
            self.write(id, &w.entries, w.hard_state)?;
        }
        let latency = self.fsync_latency(id);
        let incarnation = self.node(id).incarnation;
        self.schedule(
            latency,
            Scheduled::SyncDone {
                node: id,
                incarnation,
            },
        );
        if covered > 1 {
            self.stats.group_commits += 1;
            self.maybe_crash_during_group_commit(id, latency);
        }
        // A crash check may need the storage thread's view right away.
        self.touched.push(id);
        Ok(())
    }

    /// The storage thread's fsync completed: report what it covered, in order, then
    /// carry on with whatever the core has now (and the next fsync).
    pub(super) fn async_fsync_done(&mut self, id: NodeId) -> Result<(), Stop> {
        let Some(done) = self
            .storage_thread(id)
            .filter(|t| t.is_syncing())
            .map(StorageThread::complete_fsync)
        else {
            return Ok(());
        };
        self.fsync(id, done.len())?;
        let mut voted = false;
        for h in done {
            voted |= super::grants_vote(&h.persisted_messages);
            self.report(id, h);
        }
        self.observe(id)?;
        if voted {
            self.maybe_crash_after_vote(id);
        }
        self.drive_async(id)
    }

    /// Reports one durable handover: its persisted messages go out, then the core
    /// hears that it (and every earlier one) is durable.
    fn report(&mut self, id: NodeId, h: Handover) {
        for m in h.persisted_messages {
            self.send(m);
        }
        let Some(p) = self.process_mut(id) else {
            return;
        };
        p.core.on_persisted(h.number);
        self.touched.push(id);
        if let Some((index, term)) = h.last {
            self.record(TraceEvent::Persisted {
                node: id,
                index,
                term,
            });
        }
    }
}

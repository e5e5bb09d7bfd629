//! One group's part of carrying out a `Ready` (the contract documented on
//! `keel_raft::Ready`, synchronous persistence, asynchronous applying): what
//! comes before the turn's one fsync (`persist.rs`) and what comes after it.
//! The driver runs the first half for every group with a `Ready`, writes and
//! syncs once, then runs the second half for each.

use std::time::{Duration, Instant};

use keel_raft::{Message, MessageBody, Ready, Role};

use super::apply::ApplyJob;
use super::ctx::NodeCtx;
use super::group::Group;
use crate::error::ServerError;

impl Group {
    /// Steps 0 and 1, and a leader's snapshot: publish the lease, stage
    /// `messages` (the driver sends them before the fsync: the leader
    /// replicates while its own fsync runs), note role changes and core
    /// events, and install a received snapshot — made durable before this
    /// Ready's entries are written.
    pub(crate) fn before_persist(
        &mut self,
        ctx: &mut NodeCtx,
        rd: &mut Ready,
    ) -> Result<(), ServerError> {
        // 0. Before anything leaves: a lease a transfer ended is withdrawn before
        //    its TimeoutNow goes out, and a commit index is visible to lease
        //    reads before any follower can serve reads at it.
        self.lease
            .publish(self.raft.lease(), self.raft.commit_index());
        // 1. The leader replicates in parallel with its own fsync.
        self.note_heartbeats(&rd.messages);
        // New members' addresses first: messages to them may be in this Ready.
        self.note_conf_entries(ctx, &rd.entries);
        self.divert_snapshot_messages(ctx, &mut rd.messages);
        ctx.stage(&mut rd.messages);
        if let Some(ss) = rd.soft_state {
            if ss.leader != self.last_leader && ss.leader != keel_raft::NO_NODE {
                ctx.metrics.leader_changes.inc();
                self.gauges.leader_changes.inc();
            }
            // Reads waiting on a leader that is gone (ours, or the one a
            // follower asked) will never be confirmed: answer them now.
            if (self.role == Role::Leader && ss.role != Role::Leader)
                || ss.leader != self.last_leader
            {
                self.reads.leadership_lost(ss.leader);
            }
            self.last_leader = ss.leader;
            self.role = ss.role;
        }
        if !rd.events.is_empty() {
            let mut events = self.events.lock().expect("event log lock poisoned");
            for e in rd.events.drain(..) {
                events.core_event(&e);
            }
            events.flush();
        }
        if let Some(meta) = rd.snapshot.take() {
            // Installed and made durable before this Ready's entries.
            self.install_snapshot(ctx, meta)?;
        }
        Ok(())
    }

    /// Steps 3 to 5, once the round's writes are durable — or, when `stalled`,
    /// buffered behind a full disk: then the messages that promise durability
    /// are dropped (a lost message is always safe; an early one never is), and
    /// the core hears of durability later (`on_persisted`, `disk.rs`).
    pub(crate) fn after_persist(
        &mut self,
        ctx: &mut NodeCtx,
        mut rd: Ready,
        stalled: bool,
    ) -> Result<(), ServerError> {
        // 3. Messages that promise durability (staged: the driver sends every
        //    group's after the round).
        if stalled {
            rd.persisted_messages.clear();
        } else {
            ctx.stage(&mut rd.persisted_messages);
        }
        // 4. Applies and confirmed reads, in Ready order (inline, or queued to
        //    the apply thread while it holds the state machine).
        if !rd.committed_entries.is_empty() {
            let job = ApplyJob::Entries {
                entries: std::mem::take(&mut rd.committed_entries),
                leader: self.raft.leader(),
                role: self.role,
            };
            self.hand_to_apply(ctx, job)?;
        }
        for rs in rd.read_states.drain(..) {
            if let Some(r) = self.reads.confirm(rs.ctx) {
                let job = ApplyJob::Read {
                    index: rs.index,
                    deadline: r.deadline,
                    reply: r.reply,
                };
                self.hand_to_apply(ctx, job)?;
            }
        }
        // 5. Done: the entries are durable (or will be reported so) and handed to
        //    the apply side.
        if stalled {
            self.raft.advance_async(rd);
        } else {
            self.raft.advance(rd);
        }
        Ok(())
    }

    /// Notes when the oldest unanswered heartbeat to each peer went out.
    fn note_heartbeats(&mut self, messages: &[Message]) {
        let now = Instant::now();
        for m in messages {
            if let MessageBody::Heartbeat { .. } = m.body {
                let sent = self.heartbeats_out.entry(m.to).or_insert(now);
                // A heartbeat or its answer was lost: start over rather than
                // report the gap as a round trip.
                if now.duration_since(*sent) > Duration::from_secs(1) {
                    *sent = now;
                }
            }
        }
    }
}

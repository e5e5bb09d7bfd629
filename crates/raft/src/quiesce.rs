//! Quiescence: an idle group goes quiet (docs/sharding.md, "Heartbeats: coalesced,
//! and quiet groups quiesce").
//!
//! A node hosting a thousand groups cannot afford a thousand leaders each sending
//! heartbeats every interval when almost all groups are idle. So:
//!
//! - A leader whose group has been idle for `quiesce_after_heartbeats` heartbeat
//!   intervals — no proposal, read, membership change or transfer — and is fully
//!   settled (every voter and learner has acknowledged the last entry, it is
//!   committed and durable here, no membership change, transfer, read or snapshot
//!   in flight) reports [`Raft::can_quiesce`]. The runtime may then call
//!   [`Raft::quiesce`]: the leader sends one last heartbeat marked `quiesce` and
//!   stops heartbeats and check-quorum, and ends its lease.
//! - A follower that gets the mark from the leader it already follows, in its
//!   current term, stops its election timer. A mark from an older term, or one that
//!   arrives before the follower knew the sender led (a fresh term, a candidate),
//!   does not quiesce it: it keeps its timer, and at worst campaigns and wakes the
//!   group — the safe side.
//! - Anything that needs the group wakes it: a proposal, membership change or
//!   transfer on the leader, a read request anywhere, and any message except the
//!   mark itself, the leader's heartbeats sent before the mark (reordered behind
//!   it: they carry its round number or an older one) and, on the leader, the
//!   acknowledgements of the mark. A woken leader resumes heartbeats at once, in a
//!   new round (which wakes its followers); a woken follower restarts its election
//!   timer with a fresh random timeout.
//! - Failure detection moves out of the core: a quiesced follower never times out
//!   by itself, so the runtime must call [`Raft::wake`] when it decides, at node
//!   level, that the leader's node is silent (one liveness heartbeat per peer node
//!   rather than per group). The woken follower asks its leader to wake
//!   (`WakeLeader`: a leader that was only slow heartbeats again, settling it)
//!   and campaigns after its timeout like any follower if none comes. The core
//!   never quiesces on its own, so a runtime without node-level failure
//!   detection simply never calls `quiesce`.
//!
//! # Why this is safe
//!
//! Quiescence touches only timers, heartbeats, check-quorum and the lease; it
//! changes no rule about terms, votes, log contents or commitment.
//!
//! - **Election safety** (one leader per term) rests on each voter granting one
//!   durable vote per term to a candidate with a quorum; none of that depends on
//!   timers. A stopped timer only means a node *starts* fewer elections; a woken one
//!   runs exactly the ordinary election, pre-vote included. A quiesced leader that
//!   was deposed while cut off learns it from the first message of the newer term,
//!   like any leader.
//! - **Log matching and leader completeness** rest on the AppendEntries consistency
//!   check and the vote's up-to-date check, both unchanged. The mark carries no
//!   entries; its commit index is capped at the follower's acknowledged match index
//!   like every heartbeat's, so it only commits what the follower holds.
//! - **Lease safety.** A leader's lease is a promise that no other leader commits
//!   anything until the lease ends, backed by a quorum that received the confirmed
//!   round and remembers it on its own clock (`lease.rs`). Quiescing ends the lease:
//!   the leader first remembers it as a voter does (so a vote it grants later still
//!   hands it on, as when a leader steps down), then drops it; the mark claims no
//!   lease and starts no lease round, so its acknowledgements cannot renew one. A
//!   quiesced leader therefore serves no lease read: a read finds no lease, falls
//!   back to ReadIndex, which wakes the leader, and the lease returns only with the
//!   next round a quorum confirms after waking. On followers, the lease memory
//!   handed to candidates is measured on the clock, not in ticks, and nothing
//!   extends it while the timer stands still (the mark claims 0). What the stopped
//!   timer does keep alive is the tick-based "I hear from a live leader" rule
//!   (`Raft::in_leader_lease`), which only refuses votes: a liveness rule, not a
//!   safety one — and the vote request that it refuses wakes the follower, which
//!   then votes normally once an election timeout passes without its leader.
//! - **Liveness** needs the runtime's part: a quiesced follower of a crashed leader
//!   waits for [`Raft::wake`]. A lost mark leaves a follower awake with nobody
//!   heartbeating; it times out, campaigns, and its pre-vote wakes the leader, whose
//!   heartbeats settle it again.

use crate::error::QuiesceError;
use crate::message::MessageBody;
use crate::progress::ProgressState;
use crate::raft::Raft;
use crate::ready::Role;
use crate::types::{NO_NODE, NodeId};

impl Raft {
    /// Whether [`Raft::quiesce`] would succeed now: only on a leader whose group
    /// has been idle for `quiesce_after_heartbeats` heartbeat intervals and is
    /// fully settled (see the `quiesce` module docs).
    pub fn can_quiesce(&self) -> bool {
        self.quiesce_blocker().is_ok()
    }

    /// Leader: sends every follower a last heartbeat marked `quiesce` and goes
    /// quiet — no heartbeats, no check-quorum, no lease — until something wakes it.
    /// Refused (with nothing changed) unless [`Raft::can_quiesce`].
    pub fn quiesce(&mut self) -> Result<(), QuiesceError> {
        self.assert_not_in_ready();
        self.quiesce_blocker()?;
        self.lease_on_quiesce();
        // The mark claims no lease: a quiesced leader holds none.
        self.send_heartbeats(self.read_only.seq(), 0, true);
        self.quiesced = true;
        self.heartbeat_elapsed = 0;
        self.election_elapsed = 0;
        Ok(())
    }

    /// Ends quiescence, if quiesced: a leader resumes heartbeats (sending one round
    /// at once, which wakes its followers) and check-quorum; a follower restarts its
    /// election timer with a fresh random timeout, so it campaigns if its leader
    /// stays silent. The runtime calls it when node-level failure detection says
    /// the leader's node is silent; the core calls it on any proposal, read or
    /// message that needs the group.
    ///
    /// A quiesced follower woken this way also asks its leader to wake
    /// ([`MessageBody::WakeLeader`]): the runtime's silence may only have been
    /// a slow node, and a leader that hears it heartbeats again before the
    /// follower's election timeout ends, so no election follows. A leader
    /// that is really gone never answers, and the follower campaigns.
    pub fn wake(&mut self) {
        self.assert_not_in_ready();
        let asks_leader = self.quiesced && self.role == Role::Follower && self.leader != NO_NODE;
        self.wake_up();
        if asks_leader {
            self.send(self.leader, MessageBody::WakeLeader, false);
        }
    }

    /// Whether this core is quiesced (its heartbeats or election timer stopped).
    pub fn is_quiesced(&self) -> bool {
        self.quiesced
    }

    pub(crate) fn wake_up(&mut self) {
        if !std::mem::replace(&mut self.quiesced, false) {
            return;
        }
        if self.role == Role::Leader {
            self.idle_ticks = 0;
            self.election_elapsed = 0;
            self.heartbeat_elapsed = 0;
            // Nobody answered anything while we were quiet: give every peer a full
            // check-quorum round to answer, as a new leader does.
            for p in self.progress.values_mut() {
                p.recent_active = true;
            }
            // A new round: followers tell its heartbeats from those sent before
            // the mark (which must not wake them), and with leases on, a quorum's
            // answers bring the lease back.
            self.read_only.force_round();
            self.broadcast_heartbeat();
        } else {
            self.reset_election_timeout();
        }
    }

    /// Whether `m`, a message in `self.term` or later not processed yet, is a
    /// quiesce mark this node accepts: from the leader it already follows, in its
    /// current term.
    pub(crate) fn is_accepted_quiesce_mark(
        &self,
        from: NodeId,
        term: crate::types::Term,
        body: &MessageBody,
    ) -> bool {
        matches!(body, MessageBody::Heartbeat { quiesce: true, .. })
            && term == self.term
            && self.role == Role::Follower
            && self.leader == from
            && from != NO_NODE
    }

    /// Whether `body` is a heartbeat our leader sent, in our term, before the mark
    /// we accepted (the network reordered them): old news that must not wake us,
    /// or every mark overtaken by its predecessor would start an election. A
    /// leader that woke sends a new round, which does wake us.
    pub(crate) fn is_pre_mark_heartbeat(
        &self,
        from: NodeId,
        term: crate::types::Term,
        body: &MessageBody,
    ) -> bool {
        self.role == Role::Follower
            && term == self.term
            && from == self.leader
            && matches!(
                *body,
                MessageBody::Heartbeat { quiesce: false, read_seq, .. }
                    if read_seq <= self.quiesce_mark_seq
            )
    }

    /// Whether `body` (in our term) is a quiesced leader's echo of its own quiet
    /// heartbeat: acknowledgements that carry no request and must not wake it.
    pub(crate) fn is_quiet_echo(&self, term: crate::types::Term, body: &MessageBody) -> bool {
        self.role == Role::Leader
            && term == self.term
            && matches!(
                body,
                MessageBody::HeartbeatResponse { .. }
                    | MessageBody::AppendEntriesResponse { reject: false, .. }
            )
    }

    /// Why the leader may not quiesce now, if it may not.
    fn quiesce_blocker(&self) -> Result<(), QuiesceError> {
        if self.role != Role::Leader {
            return Err(QuiesceError::NotLeader {
                leader: self.leader,
            });
        }
        let needed = self.cfg.quiesce_after_ticks().unwrap_or(0);
        if needed == 0 {
            return Err(QuiesceError::Disabled);
        }
        if self.quiesced {
            return Err(QuiesceError::AlreadyQuiesced);
        }
        if self.idle_ticks < needed {
            return Err(QuiesceError::RecentActivity {
                idle_ticks: self.idle_ticks,
                needed,
            });
        }
        if self.lead_transferee != NO_NODE {
            return Err(QuiesceError::TransferInProgress {
                to: self.lead_transferee,
            });
        }
        let pending_conf = self.pending_conf_index();
        if pending_conf != 0 {
            return Err(QuiesceError::ConfChangePending {
                index: pending_conf,
            });
        }
        let last = self.log.last_index();
        if self.log.committed != last {
            return Err(QuiesceError::Uncommitted {
                commit: self.log.committed,
                last,
            });
        }
        if self.log.persisted != last || self.pending_snapshot.is_some() || self.append_pending {
            return Err(QuiesceError::Unpersisted);
        }
        let reads = self.read_only.pending_count();
        if reads > 0 || self.read_only.round_needed() {
            return Err(QuiesceError::ReadsPending { count: reads });
        }
        for (&id, p) in &self.progress {
            if p.state == ProgressState::Snapshot {
                return Err(QuiesceError::SnapshotInFlight { to: id });
            }
            if p.match_index != last {
                return Err(QuiesceError::PeerBehind {
                    id,
                    match_index: p.match_index,
                    last,
                });
            }
        }
        Ok(())
    }
}

//! Messages exchanged between the cores of one group.
//!
//! The core never sends anything itself: it puts messages in [`crate::Ready`] and the
//! runtime delivers them, in any order, possibly more than once, possibly never. Every
//! handler tolerates loss, duplication and reordering.

use crate::types::{Entry, GroupId, Index, NodeId, SnapshotMeta, Term};

/// A message from one core to another core of the same group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Raft group the message belongs to.
    pub group: GroupId,
    /// Sender.
    pub from: NodeId,
    /// Recipient.
    pub to: NodeId,
    /// Sender's term. For a pre-vote request it is the term the sender *would*
    /// campaign in; for a granted pre-vote response it echoes the request's term.
    pub term: Term,
    /// The RPC.
    pub body: MessageBody,
}

/// The RPCs of Raft (Figure 2) plus the extensions keel uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageBody {
    /// RequestVote (Raft §5.2), or a pre-vote probe (thesis §9.6) when `pre_vote`.
    RequestVote {
        /// Index of the candidate's last log entry (§5.4.1 up-to-date check).
        last_log_index: Index,
        /// Term of the candidate's last log entry.
        last_log_term: Term,
        /// A pre-vote: asks "would you vote for me?" without changing anyone's term.
        pre_vote: bool,
        /// Sent on a leader's request (leadership transfer): voters skip the
        /// "I heard from a leader recently" check.
        transfer: bool,
    },
    /// Reply to [`MessageBody::RequestVote`].
    RequestVoteResponse {
        /// Whether the vote (or pre-vote) was granted.
        granted: bool,
        /// Echoes the request's `pre_vote`.
        pre_vote: bool,
        /// On a granted vote: how much longer (clock units) the longest lease of a
        /// leader this voter followed may still run. The new leader waits it out.
        lease_remaining: u64,
        /// Term of the leader that lease belongs to (0 if none).
        lease_term: Term,
    },
    /// AppendEntries (Raft §5.3).
    AppendEntries {
        /// Index of the entry immediately preceding `entries`.
        prev_log_index: Index,
        /// Term of that entry.
        prev_log_term: Term,
        /// Entries to store (may be empty for a probe).
        entries: Vec<Entry>,
        /// Leader's commit index, capped by the receiver to the last entry it has
        /// verified to match.
        leader_commit: Index,
    },
    /// Reply to [`MessageBody::AppendEntries`].
    AppendEntriesResponse {
        /// On success: the follower's log matches the leader's up to `index`.
        /// On rejection: the `prev_log_index` that was rejected (lets the leader
        /// discard stale rejections).
        index: Index,
        /// Whether the consistency check failed.
        reject: bool,
        /// On rejection: the largest index in the follower's log, at or below the
        /// rejected position, whose term is at most the leader's `prev_log_term`
        /// (fast back-off, thesis §5.3 "conflict term/index").
        hint_index: Index,
        /// Term of the follower's entry at `hint_index` (0 if none).
        hint_term: Term,
    },
    /// Leader heartbeat: keeps followers from campaigning, carries the commit index,
    /// and confirms leadership for ReadIndex rounds (thesis §6.4).
    Heartbeat {
        /// `min(leader commit, follower's match index)`: safe to apply.
        commit: Index,
        /// ReadIndex and lease round this heartbeat confirms.
        read_seq: u64,
        /// The lease the leader claims from this round (clock units, 0 if none): a
        /// voter that acknowledges it must assume the leader serves reads for that
        /// long after receiving it.
        lease: u64,
        /// The leader's last heartbeat before it goes quiet (see the `quiesce`
        /// module): its follower stops the group's election timer. Always sent
        /// with `lease` 0; false on every ordinary heartbeat.
        quiesce: bool,
    },
    /// Reply to [`MessageBody::Heartbeat`].
    HeartbeatResponse {
        /// Echoes the heartbeat's `read_seq`.
        read_seq: u64,
    },
    /// InstallSnapshot (Raft §7): the follower needs entries the leader compacted
    /// away. Only the snapshot's metadata travels here; the runtime streams the
    /// data itself (from the leader's snapshot at `meta.index`) outside the core and
    /// steps this message into the follower's core once the data is received and
    /// verified (staged, not yet applied). The follower answers with an
    /// [`MessageBody::AppendEntriesResponse`].
    InstallSnapshot {
        /// What the snapshot covers.
        meta: SnapshotMeta,
    },
    /// Leadership transfer (thesis §3.10): the leader tells a caught-up voter to
    /// campaign at once.
    TimeoutNow,
    /// A follower asks the leader for a read index (thesis §6.4, follower reads).
    ReadIndex {
        /// The follower's tag for the read.
        ctx: u64,
    },
    /// The leader's answer once a quorum confirmed its leadership: the follower may
    /// serve the read once it has applied `index`.
    ReadIndexResponse {
        /// Echoes the request's tag.
        ctx: u64,
        /// The leader's commit index when the request arrived.
        index: Index,
    },
    /// A quiesced follower that the runtime woke (its leader's node looked
    /// silent) asks its leader to wake: a leader that was only slow resumes
    /// heartbeats before the follower's election timeout, so no election
    /// follows. It carries nothing; any message that is not an echo of the
    /// quiet wakes a quiesced leader (`quiesce.rs`).
    WakeLeader,
}

impl MessageBody {
    /// Short name of the RPC, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            MessageBody::RequestVote { pre_vote: true, .. } => "PreVote",
            MessageBody::RequestVote { .. } => "RequestVote",
            MessageBody::RequestVoteResponse { pre_vote: true, .. } => "PreVoteResponse",
            MessageBody::RequestVoteResponse { .. } => "RequestVoteResponse",
            MessageBody::AppendEntries { .. } => "AppendEntries",
            MessageBody::AppendEntriesResponse { .. } => "AppendEntriesResponse",
            MessageBody::Heartbeat { .. } => "Heartbeat",
            MessageBody::HeartbeatResponse { .. } => "HeartbeatResponse",
            MessageBody::InstallSnapshot { .. } => "InstallSnapshot",
            MessageBody::TimeoutNow => "TimeoutNow",
            MessageBody::ReadIndex { .. } => "ReadIndex",
            MessageBody::ReadIndexResponse { .. } => "ReadIndexResponse",
            MessageBody::WakeLeader => "WakeLeader",
        }
    }

    /// Whether this message can only come from the leader of `term`.
    pub fn is_from_leader(&self) -> bool {
        matches!(
            self,
            MessageBody::AppendEntries { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::InstallSnapshot { .. }
                | MessageBody::TimeoutNow
                | MessageBody::ReadIndexResponse { .. }
        )
    }
}

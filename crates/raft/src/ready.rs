//! The output of the core: what the runtime must persist, send and apply.

use crate::membership::ConfChange;
use crate::message::Message;
use crate::types::{Entry, HardState, Index, NodeId, SnapshotMeta, Term};

/// The role a core currently plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Running a pre-vote round; the term has not been raised yet.
    PreCandidate,
    /// Running an election in its own term.
    Candidate,
    /// Leads the group for the current term.
    Leader,
}

impl Role {
    /// Lower-case name, as shown by `keel status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        }
    }
}

/// Volatile state the runtime may want to show or react to; never persisted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftState {
    /// Known leader of the current term, or 0.
    pub leader: NodeId,
    /// This node's role.
    pub role: Role,
}

/// A confirmed ReadIndex request: once the state machine has applied `index`, a read
/// tagged `ctx` may be served locally and is linearizable (thesis §6.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadState {
    /// The caller's tag from [`crate::Raft::read_index`].
    pub ctx: u64,
    /// Commit index at the time the read arrived.
    pub index: Index,
}

/// Something an operator may want to know happened; the runtime turns these into the
/// plain-sentence event log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Became (or stayed) follower in `term`; `leader` is 0 while unknown.
    BecameFollower {
        /// The term.
        term: Term,
        /// Known leader, or 0.
        leader: NodeId,
    },
    /// Started a pre-vote round for `term` (the term it would campaign in).
    BecamePreCandidate {
        /// Proposed term.
        term: Term,
    },
    /// Started an election in `term`.
    BecameCandidate {
        /// The new term.
        term: Term,
    },
    /// Won the election for `term`.
    BecameLeader {
        /// The term.
        term: Term,
    },
    /// Granted a (pre-)vote.
    VoteGranted {
        /// Who asked.
        candidate: NodeId,
        /// Term of the request.
        term: Term,
        /// Whether it was a pre-vote.
        pre_vote: bool,
    },
    /// Refused a (pre-)vote.
    VoteDenied {
        /// Who asked.
        candidate: NodeId,
        /// Term of the request.
        term: Term,
        /// Whether it was a pre-vote.
        pre_vote: bool,
        /// Why, in a few words ("its log is behind", "already voted for 2", ...).
        reason: &'static str,
    },
    /// A new leader holds back commits until the leases it inherited from the
    /// voters that elected it have run out.
    WaitingForOldLease {
        /// The term it leads.
        term: Term,
        /// How long it waits, in clock units.
        remaining: u64,
    },
    /// The leader sends a heartbeat round that renews its lease (a debug-level
    /// event: one per heartbeat).
    LeaseRenewing {
        /// The term it leads.
        term: Term,
    },
    /// A leader lost contact with a quorum for an election timeout and stepped down
    /// (check-quorum): it could not renew its lease.
    LostQuorum {
        /// The term it led.
        term: Term,
    },
    /// A message that cannot come from a correct peer was dropped (nothing changed).
    DroppedMalformed {
        /// The sender.
        from: NodeId,
        /// What was wrong.
        what: &'static str,
    },
    /// Learned of a newer term from another node and stepped down to follower.
    SteppedDown {
        /// The newer term.
        term: Term,
        /// Who told us.
        from: NodeId,
    },
    /// A membership change entered this node's log and its configuration (it is
    /// in force from now on, committed or not; a log truncation may undo it).
    ConfChangeAppended {
        /// Index of the entry.
        index: Index,
        /// The change.
        change: ConfChange,
    },
    /// A member was added (the change is committed).
    MemberAdded {
        /// The new member.
        id: NodeId,
        /// Whether it joined as a learner.
        learner: bool,
        /// Index of the change.
        index: Index,
    },
    /// A learner became a voter (the change is committed).
    MemberPromoted {
        /// The member.
        id: NodeId,
        /// Index of the change.
        index: Index,
    },
    /// A member was removed (the change is committed).
    MemberRemoved {
        /// The former member.
        id: NodeId,
        /// Index of the change.
        index: Index,
    },
    /// This leader was removed from the configuration and stepped down once the
    /// removal committed (thesis §4.2.2).
    SteppedDownRemoved {
        /// The term it led.
        term: Term,
    },
    /// Asked the runtime to send a snapshot to a follower that needs compacted
    /// entries (an [`crate::MessageBody::InstallSnapshot`] is in `messages`).
    SnapshotSent {
        /// The follower.
        to: NodeId,
        /// The snapshot's index.
        index: Index,
    },
    /// Took a leader's snapshot: the log now starts after it (see
    /// [`Ready::snapshot`]).
    SnapshotRestored {
        /// The snapshot's index.
        index: Index,
        /// Its term.
        term: Term,
    },
    /// Started handing leadership to `to` (thesis §3.10).
    TransferStarted {
        /// The target.
        to: NodeId,
    },
    /// A leadership transfer ended without the target taking over.
    TransferAborted {
        /// The target.
        to: NodeId,
        /// Why, in a few words.
        reason: &'static str,
    },
}

/// Everything the runtime must do, in the order this contract states.
///
/// # Ordering contract
///
/// For each `Ready` taken with [`crate::Raft::ready`], the runtime must:
///
/// 1. send `messages` — these may go out at once, *before* persisting (the leader
///    replicates in parallel with its own fsync, thesis §10.2.1);
/// 2. append `entries` to stable storage — an entry whose index is at or below the
///    last stored index replaces the stored entry at that index and every entry
///    after it — and store `hard_state` if present; then make both durable (fsync).
///    An fsync error must stop the node: the core must never hear that data is
///    durable when it is not;
/// 3. only once this Ready's and every earlier Ready's writes are durable, send
///    `persisted_messages` (votes and append acknowledgements promise durability,
///    Raft Figure 2);
/// 4. apply `committed_entries` to the state machine, in order (they are always
///    already durable locally), and serve `read_states` once applied far enough;
/// 5. tell the core.
///
/// Step 5 comes in two forms. **Synchronous:** carry out steps 1-4, then call
/// [`crate::Raft::advance`]; no other core method may be called between `ready`
/// and `advance`. **Asynchronous:** after step 1, hand steps 2-4 to other threads
/// (in order: storage writes in Ready order, applies in Ready order) and call
/// [`crate::Raft::advance_async`] at once; the core may then be stepped, ticked
/// and asked for more Readys while the writes are in flight. When storage has made
/// a Ready (and so every earlier one) durable, send its `persisted_messages` and
/// call [`crate::Raft::on_persisted`] with its `number`.
///
/// Either way the leader counts its own log toward a commit quorum only once the
/// core knows it is durable, a candidate counts its own vote only once its new
/// term and vote are durable, and committed entries are handed out for applying
/// only up to what is durable locally.
///
/// # Snapshots
///
/// When `snapshot` is `Some(meta)`, the core took a leader's snapshot (a
/// [`crate::MessageBody::InstallSnapshot`] stepped in after the runtime received
/// and verified the data): its log now starts after `meta.index`, its commit index
/// is `meta.index`, and its configuration is `meta.conf`. In step 2, *before*
/// writing this Ready's `entries` and `hard_state`, the runtime must:
///
/// - install the staged snapshot data as the state machine's contents, with
///   applied index `meta.index` (replacing everything it held);
/// - make the log start after `meta.index`: discard every stored entry (they are
///   all replaced; `entries`, if any, continue at `meta.index + 1`) and record
///   `meta` as the log's starting point, so that a restart passes it as
///   [`crate::InitialState::snapshot`];
///
/// and make all of it durable with the same fsync (or before it). Only then may it
/// send `persisted_messages` (they acknowledge the snapshot) and report the Ready
/// persisted. `committed_entries` of this Ready are empty; later ones continue at
/// `meta.index + 1`. A crash before the fsync must leave the old state (the
/// snapshot not installed) or the new one, never a mix: install the state machine
/// atomically (new file, fsync, rename).
///
/// A leader never produces `snapshot`; it asks for snapshots to be *sent* with
/// `InstallSnapshot` messages in `messages`, and the runtime reports each
/// transfer's outcome with [`crate::Raft::report_snapshot`].
#[derive(Debug, Default)]
#[must_use = "a Ready must be processed and passed to advance"]
pub struct Ready {
    /// Sequence number of this Ready (1, 2, ...), for [`crate::Raft::on_persisted`].
    pub number: u64,
    /// Changed role or leader, if any.
    pub soft_state: Option<SoftState>,
    /// Term/vote/commit to persist, if changed.
    pub hard_state: Option<HardState>,
    /// A leader's snapshot to install before anything else in this Ready (see
    /// "Snapshots" above).
    pub snapshot: Option<SnapshotMeta>,
    /// Entries to append to stable storage.
    pub entries: Vec<Entry>,
    /// Messages that may be sent immediately.
    pub messages: Vec<Message>,
    /// Messages that may be sent only after `entries` and `hard_state` are durable.
    pub persisted_messages: Vec<Message>,
    /// Committed entries to apply, in log order.
    pub committed_entries: Vec<Entry>,
    /// Confirmed ReadIndex requests.
    pub read_states: Vec<ReadState>,
    /// Things that happened since the last `Ready`.
    pub events: Vec<Event>,
}

impl Ready {
    /// Whether the runtime must fsync before sending `persisted_messages`.
    pub fn must_sync(&self) -> bool {
        self.hard_state.is_some() || !self.entries.is_empty() || self.snapshot.is_some()
    }
}

//! The output of the core: what the runtime must persist, send and apply.

use crate::message::Message;
use crate::types::{Entry, HardState, Index, NodeId, Term};

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
    /// A leader lost contact with a quorum for an election timeout and stepped down
    /// (check-quorum).
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
#[derive(Debug, Default)]
#[must_use = "a Ready must be processed and passed to advance"]
pub struct Ready {
    /// Sequence number of this Ready (1, 2, ...), for [`crate::Raft::on_persisted`].
    pub number: u64,
    /// Changed role or leader, if any.
    pub soft_state: Option<SoftState>,
    /// Term/vote/commit to persist, if changed.
    pub hard_state: Option<HardState>,
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
        self.hard_state.is_some() || !self.entries.is_empty()
    }
}

//! The core itself: state, public API, and the term rules every message goes through.
//!
//! Role-specific behaviour lives next door: `election.rs` (pre-vote, votes,
//! becoming leader), `replication.rs` (the leader's side of log replication and
//! commitment), `follower.rs` (the receiving side of AppendEntries and heartbeats)
//! and `read_index.rs` (confirming leadership for linearizable reads).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::config::Config;
use crate::error::{ConfigError, ProposeError, ReadIndexError, StepError};
use crate::lease::LeaseState;
use crate::log::RaftLog;
use crate::membership::ConfHistory;
use crate::message::{Message, MessageBody};
use crate::progress::Progress;
use crate::read_index::ReadOnly;
use crate::ready::{Event, ReadState, Ready, Role, SoftState};
use crate::rng::SplitMix64;
use crate::status::{PeerStatus, Status};
use crate::types::{
    ConfState, Entry, EntryKind, GroupId, HardState, Index, NO_NODE, NodeId, SnapshotMeta, Term,
};

/// What a core starts from: the state recovered from storage (all empty for a brand
/// new node).
#[derive(Clone, Debug, Default)]
pub struct InitialState {
    /// Last persisted term, vote and commit index.
    pub hard_state: HardState,
    /// The bootstrap membership: used when there is no snapshot. Membership-change
    /// entries in `entries` apply on top of it (or of the snapshot's).
    pub conf: ConfState,
    /// The snapshot the log starts after, if any; its `conf` is the membership as
    /// of its index (and takes precedence over `conf`).
    pub snapshot: Option<SnapshotMeta>,
    /// Durable log entries following the snapshot, contiguous.
    pub entries: Vec<Entry>,
    /// Index the state machine has already applied (entries up to it are not handed
    /// out again).
    pub applied: Index,
}

/// One Raft core. See the crate docs and [`Ready`] for how to drive it.
#[derive(Debug)]
pub struct Raft {
    pub(crate) cfg: Config,
    pub(crate) term: Term,
    pub(crate) vote: NodeId,
    pub(crate) role: Role,
    pub(crate) leader: NodeId,
    pub(crate) log: RaftLog,
    /// Voters and learners of the configuration in force (`conf.current()`).
    pub(crate) voters: BTreeSet<NodeId>,
    pub(crate) learners: BTreeSet<NodeId>,
    /// Every configuration the log implies (thesis §4.1: the latest one rules).
    pub(crate) conf: ConfHistory,
    /// Membership changes are reported as committed up to here.
    pub(crate) conf_reported: Index,
    /// The newest snapshot known (taken locally or from a leader); index 0 if none.
    pub(crate) snapshot: SnapshotMeta,
    /// A leader's snapshot taken and not yet handed out in a Ready.
    pub(crate) pending_snapshot: Option<SnapshotMeta>,
    /// Leader only: the target of a leadership transfer in progress, or 0.
    pub(crate) lead_transferee: NodeId,
    /// Ticks since the transfer started.
    pub(crate) transfer_elapsed: u32,
    /// A bug switched on by the simulator's "checks can fail" tests.
    pub(crate) injected_bug: Option<InjectedBug>,
    /// Leader only: replication state of every other member.
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    /// Candidate and pre-candidate only: answers received so far.
    pub(crate) votes: BTreeMap<NodeId, bool>,
    /// Ticks since the last election timeout reset (followers, candidates) or since
    /// the last check-quorum round (leaders).
    pub(crate) election_elapsed: u32,
    pub(crate) heartbeat_elapsed: u32,
    pub(crate) randomized_election_timeout: u32,
    pub(crate) rng: SplitMix64,
    pub(crate) read_only: ReadOnly,
    pub(crate) lease: LeaseState,
    /// The leader has new entries to send.
    pub(crate) append_pending: bool,
    /// Leader only: bytes of entries appended in this term and not yet committed.
    pub(crate) uncommitted_bytes: u64,
    /// The runtime's storage takes no new writes (`disk.rs`).
    pub(crate) disk_full: bool,
    /// Heartbeats (leader) or the election timer (follower) are stopped
    /// (`quiesce.rs`).
    pub(crate) quiesced: bool,
    /// Leader only: ticks since the last proposal, read, membership change or
    /// transfer (or since it became leader or woke).
    pub(crate) idle_ticks: u32,
    /// Quiesced follower: the heartbeat round of the mark it accepted. Its
    /// leader's heartbeats of that round or earlier were sent before the mark.
    pub(crate) quiesce_mark_seq: u64,

    // Outputs collected until the next `ready()`.
    pub(crate) msgs: Vec<Message>,
    pub(crate) msgs_after_persist: Vec<Message>,
    pub(crate) events: Vec<Event>,
    pub(crate) read_states: Vec<ReadState>,

    // What the last `Ready` reported, to send only changes.
    prev_hard_state: HardState,
    prev_soft_state: SoftState,
    /// Set between `ready()` and `advance()`.
    in_progress: Option<InProgress>,
    /// Number of the last Ready taken.
    ready_number: u64,
    /// Readys handed to storage whose writes are not known durable yet, oldest
    /// first (only those that write something).
    pending_writes: std::collections::VecDeque<InProgress>,
    /// Term and vote as storage has made them durable.
    pub(crate) durable_term_vote: (Term, NodeId),
}

/// Storage work of a Ready taken with `ready()`.
#[derive(Debug, Clone, Copy)]
struct InProgress {
    number: u64,
    /// Indexes of the first and last entry it writes.
    entries: Option<(Index, Index)>,
    /// The term and vote it makes durable, if it changes them.
    term_vote: Option<(Term, NodeId)>,
    /// The snapshot it installs, if any: it replaces the whole log, so it counts
    /// as a write of entries `1..=index`.
    snapshot: Option<Index>,
}

/// Bugs the simulator can switch on in a core to show that its checks catch them
/// (see `keel-sim`'s "checks can fail" tests). Never set outside such tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectedBug {
    /// The leader accepts a membership change while another is uncommitted.
    ConcurrentConfChanges,
    /// A follower taking a snapshot checks only that it has an entry at the
    /// snapshot's index, not that its term matches, and keeps its own log.
    SnapshotIgnoresTerm,
    /// The leader trusts its lease for the whole `lease_duration`, with no margin
    /// for clocks that run at different rates.
    LeaseWithoutDriftMargin,
    /// A new leader appends no NO-OP at the start of its term and serves
    /// ReadIndex reads at the commit index it inherited, without waiting to commit
    /// an entry of its own term (only with the `test-bugs` feature).
    #[cfg(feature = "test-bugs")]
    NoNoopAtTermStart,
}

impl Raft {
    /// Creates a core from recovered state. `seed` drives the election-timeout
    /// randomness: give each node its own (the server mixes OS randomness with the
    /// node id; the simulator derives it from the run's seed).
    pub fn new(cfg: Config, init: InitialState, seed: u64) -> Result<Raft, ConfigError> {
        cfg.validate()?;
        let (offset, offset_term, conf) = match &init.snapshot {
            Some(s) => (s.index, s.term, s.conf.clone()),
            None => (0, 0, init.conf.clone()),
        };
        if conf
            .voters
            .iter()
            .chain(&conf.learners)
            .any(|&id| id == NO_NODE)
        {
            return Err(ConfigError::Invalid(
                "node id 0 in the configuration".into(),
            ));
        }
        if let Some(first) = init.entries.first()
            && first.index != offset + 1
        {
            return Err(ConfigError::Invalid(format!(
                "log starts at {} but the snapshot ends at {offset}",
                first.index
            )));
        }
        let last = offset + init.entries.len() as u64;
        if init.applied > last || init.applied < offset {
            return Err(ConfigError::Invalid(format!(
                "applied index {} outside the log [{offset}, {last}]",
                init.applied
            )));
        }
        let hs = init.hard_state;
        let mut conf_history = ConfHistory::new(conf.clone(), offset);
        conf_history.append(&init.entries);
        let current = conf_history.current().clone();
        let log = RaftLog::new(offset, offset_term, init.entries, hs.commit, init.applied);
        let conf_reported = log.committed;
        let mut raft = Raft {
            term: hs.term,
            vote: hs.vote,
            role: Role::Follower,
            leader: NO_NODE,
            log,
            voters: current.voters.iter().copied().collect(),
            learners: current.learners.iter().copied().collect(),
            conf: conf_history,
            conf_reported,
            snapshot: init.snapshot.clone().unwrap_or_default(),
            pending_snapshot: None,
            lead_transferee: NO_NODE,
            transfer_elapsed: 0,
            injected_bug: None,
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_election_timeout: cfg.election_ticks,
            rng: SplitMix64::new(seed ^ cfg.id.rotate_left(32) ^ cfg.group),
            read_only: ReadOnly::default(),
            lease: LeaseState::default(),
            append_pending: false,
            uncommitted_bytes: 0,
            disk_full: false,
            quiesced: false,
            idle_ticks: 0,
            quiesce_mark_seq: 0,
            msgs: Vec::new(),
            msgs_after_persist: Vec::new(),
            events: Vec::new(),
            read_states: Vec::new(),
            prev_hard_state: HardState::default(),
            prev_soft_state: SoftState {
                leader: NO_NODE,
                role: Role::Follower,
            },
            in_progress: None,
            ready_number: 0,
            pending_writes: std::collections::VecDeque::new(),
            durable_term_vote: (hs.term, hs.vote),
            cfg,
        };
        raft.prev_hard_state = raft.hard_state();
        raft.reset_election_timeout();
        Ok(raft)
    }

    // ---- Inputs -------------------------------------------------------------------

    /// Advances logical time by one tick: drives election timeouts, heartbeats and
    /// check-quorum — none of which runs while quiesced (`quiesce.rs`).
    pub fn tick(&mut self) {
        self.assert_not_in_ready();
        if self.quiesced {
            return;
        }
        match self.role {
            Role::Leader => self.tick_leader(),
            _ => self.tick_election(),
        }
    }

    /// Feeds one message from a peer.
    pub fn step(&mut self, m: Message) -> Result<(), StepError> {
        self.assert_not_in_ready();
        if m.group != self.cfg.group {
            return Err(StepError::WrongGroup {
                expected: self.cfg.group,
                got: m.group,
            });
        }
        if m.to != self.cfg.id {
            return Err(StepError::WrongRecipient { to: m.to });
        }
        if m.from == self.cfg.id || m.from == NO_NODE {
            return Err(StepError::BadSender { from: m.from });
        }
        if m.term == 0 {
            return Err(StepError::ZeroTerm);
        }
        // Judged before the term rules change anything: a mark only counts from
        // the leader we already follow in our term (`quiesce.rs`).
        let mark = self.is_accepted_quiesce_mark(m.from, m.term, &m.body);
        let wakes = self.quiesced
            && !mark
            && !self.is_quiet_echo(m.term, &m.body)
            && !self.is_pre_mark_heartbeat(m.from, m.term, &m.body);
        if m.term > self.term && !self.accept_higher_term(&m) {
            if wakes {
                self.wake_up();
            }
            return Ok(());
        }
        // A step down above has ended quiescence already; otherwise wake now, so
        // that the message is handled by an awake node.
        if wakes {
            self.wake_up();
        }
        if m.term < self.term {
            self.on_lower_term(&m);
            return Ok(());
        }
        let round = match m.body {
            MessageBody::Heartbeat { read_seq, .. } => read_seq,
            _ => 0,
        };
        self.dispatch(m);
        if mark {
            self.quiesced = true;
            self.quiesce_mark_seq = round;
        }
        Ok(())
    }

    /// Proposes a command. On the leader it is appended at once and its
    /// `(index, term)` returned: the command is committed iff the entry applied at
    /// `index` has `term`. Fails without side effects elsewhere.
    pub fn propose(&mut self, data: Bytes) -> Result<(Index, Term), ProposeError> {
        self.assert_not_in_ready();
        if self.role == Role::Leader {
            // A proposal needs the group: wake it even if refused below.
            self.wake_up();
            self.check_disk()?;
        }
        if self.role == Role::Leader && self.lead_transferee != NO_NODE {
            return Err(ProposeError::TransferInProgress {
                to: self.lead_transferee,
            });
        }
        self.append_as_leader(EntryKind::Normal, data)
    }

    /// Asks for a linearizable read (thesis §6.4). Once leadership is confirmed by a
    /// quorum, a [`ReadState`] with `ctx` and the read's index appears in a `Ready`.
    /// On a follower (or learner) that knows the leader, the request goes to the
    /// leader and the answer comes back the same way. Requests are dropped when the
    /// leader steps down or a message is lost: the runtime times them out (and may
    /// fail them early when `Ready::soft_state` shows a change of leader).
    pub fn read_index(&mut self, ctx: u64) -> Result<(), ReadIndexError> {
        self.assert_not_in_ready();
        self.request_read(ctx)
    }

    /// Starts an election now, skipping the timeout and pre-vote (used by tests;
    /// leadership transfer uses [`Raft::transfer_leader`]). A no-op for leaders and
    /// non-voters.
    pub fn campaign(&mut self) {
        self.assert_not_in_ready();
        self.wake_up();
        if self.role != Role::Leader && self.can_campaign() {
            self.start_election(false, false);
        }
    }

    /// Switches on a bug on purpose, for the simulator's "checks can fail" tests.
    pub fn inject_bug(&mut self, bug: Option<InjectedBug>) {
        self.injected_bug = bug;
    }

    pub(crate) fn injected(&self, bug: InjectedBug) -> bool {
        self.injected_bug == Some(bug)
    }

    /// Whether this leader skips the NO-OP at the start of its term (and with it
    /// the wait for an entry of its term before serving reads): always false
    /// without the `test-bugs` feature.
    pub(crate) fn skips_term_start_noop(&self) -> bool {
        #[cfg(feature = "test-bugs")]
        {
            self.injected(InjectedBug::NoNoopAtTermStart)
        }
        #[cfg(not(feature = "test-bugs"))]
        {
            false
        }
    }

    // ---- Outputs ------------------------------------------------------------------

    /// Whether [`Raft::ready`] has anything to report.
    pub fn has_ready(&self) -> bool {
        self.in_progress.is_none()
            && (self.log.has_unstable()
                || self.pending_snapshot.is_some()
                || self.log.has_applicable()
                || !self.msgs.is_empty()
                || !self.msgs_after_persist.is_empty()
                || !self.events.is_empty()
                || !self.read_states.is_empty()
                || self.append_pending
                || self.read_only.round_needed()
                || self.hard_state() != self.prev_hard_state
                || self.soft_state() != self.prev_soft_state)
    }

    /// Collects everything to persist, send and apply. See [`Ready`] for the contract;
    /// call [`Raft::advance`] once it is carried out.
    pub fn ready(&mut self) -> Ready {
        self.assert_not_in_ready();
        self.on_conf_committed();
        if self.role == Role::Leader {
            self.flush_leader_sends();
        }
        let snapshot = self.pending_snapshot.take();
        let hs = self.hard_state();
        let ss = self.soft_state();
        let entries = self.log.take_unstable();
        let committed_entries = self.log.take_applicable(self.cfg.max_apply_bytes);
        self.ready_number += 1;
        let term_vote = (hs.term, hs.vote);
        self.in_progress = Some(InProgress {
            number: self.ready_number,
            // A snapshot replaces the whole log: a write from index 1.
            entries: match &snapshot {
                Some(s) => Some((1, entries.last().map_or(s.index, |e| e.index))),
                None => entries
                    .first()
                    .zip(entries.last())
                    .map(|(f, l)| (f.index, l.index)),
            },
            snapshot: snapshot.as_ref().map(|s| s.index),
            term_vote: (term_vote != (self.prev_hard_state.term, self.prev_hard_state.vote))
                .then_some(term_vote),
        });
        let rd = Ready {
            number: self.ready_number,
            soft_state: (ss != self.prev_soft_state).then_some(ss),
            hard_state: (hs != self.prev_hard_state).then_some(hs),
            snapshot,
            entries,
            messages: std::mem::take(&mut self.msgs),
            persisted_messages: std::mem::take(&mut self.msgs_after_persist),
            committed_entries,
            read_states: std::mem::take(&mut self.read_states),
            events: std::mem::take(&mut self.events),
        };
        self.prev_hard_state = hs;
        self.prev_soft_state = ss;
        rd
    }

    /// Acknowledges that a [`Ready`] was carried out synchronously: its entries and
    /// hard state are durable and its committed entries applied. Equivalent to
    /// [`Raft::advance_async`] followed by [`Raft::on_persisted`] with its number.
    pub fn advance(&mut self, rd: Ready) {
        let number = rd.number;
        self.advance_async(rd);
        self.on_persisted(number);
    }

    /// Acknowledges that a [`Ready`] was handed to storage, which will make it
    /// durable later (asynchronous persistence, see [`Ready`]). The core may be
    /// stepped again at once; it counts none of the Ready's writes as durable until
    /// [`Raft::on_persisted`] says so.
    pub fn advance_async(&mut self, rd: Ready) {
        let ip = self
            .in_progress
            .take()
            .expect("advance called without a matching ready");
        debug_assert_eq!(ip.number, rd.number, "advance with another Ready");
        drop(rd);
        if ip.entries.is_some() || ip.term_vote.is_some() || ip.snapshot.is_some() {
            self.pending_writes.push_back(ip);
        }
    }

    /// Storage has made every Ready up to number `number` durable (storage writes
    /// in order). On the leader this may commit: the leader counts its own log
    /// toward a quorum only from here (thesis §10.2.1); a candidate counts its own
    /// vote only from here.
    pub fn on_persisted(&mut self, number: u64) {
        self.assert_not_in_ready();
        let mut last_written = None;
        while let Some(w) = self.pending_writes.front() {
            if w.number > number {
                break;
            }
            let w = self.pending_writes.pop_front().expect("checked non-empty");
            if let Some(index) = w.snapshot
                && index == self.log.offset()
                && self.log.persisted < index
            {
                // The snapshot the log now starts from is durable: so is
                // everything it covers.
                self.log.persisted_to(index);
            }
            if let Some((_, last)) = w.entries {
                // Each write replaces everything after its first entry, so the
                // durable log ends where the latest durable write ends.
                last_written = Some(last);
            }
            if let Some(tv) = w.term_vote {
                self.durable_term_vote = tv;
            }
        }
        if let Some(last) = last_written {
            // Of the current log, durable is what no later, still pending write
            // (nor an in-memory truncation not handed out yet) has replaced.
            let replaced_from = self
                .pending_writes
                .iter()
                .filter_map(|w| w.entries.map(|(first, _)| first))
                .chain(std::iter::once(self.log.unstable_from()))
                .min()
                .unwrap_or(Index::MAX);
            let durable = last
                .min(replaced_from.saturating_sub(1))
                .min(self.log.last_index());
            let before = self.log.persisted;
            self.log.persisted_to(durable);
            if self.role == Role::Leader && self.log.persisted > before {
                self.maybe_commit();
            }
        }
        self.count_durable_self_vote();
    }

    // ---- Queries ------------------------------------------------------------------

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.cfg.id
    }
    /// The group this core replicates.
    pub fn group(&self) -> GroupId {
        self.cfg.group
    }
    /// Current term.
    pub fn term(&self) -> Term {
        self.term
    }
    /// Current role.
    pub fn role(&self) -> Role {
        self.role
    }
    /// Known leader of the current term, or 0.
    pub fn leader(&self) -> NodeId {
        self.leader
    }
    /// Highest index known committed.
    pub fn commit_index(&self) -> Index {
        self.log.committed
    }
    /// Highest index handed out for applying.
    pub fn applied_index(&self) -> Index {
        self.log.applied
    }
    /// Index of the last entry in the log.
    pub fn last_index(&self) -> Index {
        self.log.last_index()
    }
    /// Term of the entry at `index`, if held.
    pub fn log_term(&self, index: Index) -> Option<Term> {
        self.log.term(index)
    }
    /// Entries from `from` on, up to `max_bytes` (at least one): for inspection and
    /// the simulator's checks.
    pub fn log_entries(&self, from: Index, max_bytes: u64) -> Vec<Entry> {
        self.log
            .entries_from(from.max(self.log.first_index()), max_bytes)
    }
    /// Current voters.
    pub fn voters(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().copied()
    }
    /// Current learners.
    pub fn learners(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.learners.iter().copied()
    }
    /// The durable part of the state.
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.committed,
        }
    }
    /// Role and leader.
    pub fn soft_state(&self) -> SoftState {
        SoftState {
            leader: self.leader,
            role: self.role,
        }
    }

    /// A summary for status pages and `keel status`.
    pub fn status(&self) -> Status {
        Status {
            id: self.cfg.id,
            group: self.cfg.group,
            term: self.term,
            vote: self.vote,
            role: self.role,
            leader: self.leader,
            commit: self.log.committed,
            applied: self.log.applied,
            last_index: self.log.last_index(),
            persisted: self.log.persisted,
            first_index: self.log.first_index(),
            snapshot_index: self.snapshot.index,
            conf: self.conf_state(),
            pending_conf_index: self.pending_conf_index(),
            lead_transferee: self.lead_transferee,
            quiesced: self.quiesced,
            peers: self
                .progress
                .iter()
                .map(|(&id, p)| PeerStatus {
                    id,
                    match_index: p.match_index,
                    next_index: p.next_index,
                    state: p.state.as_str(),
                    active: p.is_active(),
                    learner: self.learners.contains(&id),
                })
                .collect(),
        }
    }

    /// Checks internal invariants, panicking with a description if one is broken.
    /// The simulator calls it after every step.
    pub fn validate(&self) {
        self.log.validate();
        match self.role {
            Role::Leader => {
                assert_eq!(self.leader, self.cfg.id, "leader does not know it leads");
                assert_eq!(self.vote, self.cfg.id, "leader did not vote for itself");
                let members: BTreeSet<NodeId> = self
                    .voters
                    .iter()
                    .chain(&self.learners)
                    .copied()
                    .filter(|&id| id != self.cfg.id)
                    .collect();
                assert!(
                    self.progress.keys().copied().eq(members.iter().copied()),
                    "leader tracks {:?} but the configuration has {members:?}",
                    self.progress.keys().collect::<Vec<_>>()
                );
                assert!(
                    self.lead_transferee == NO_NODE || self.voters.contains(&self.lead_transferee),
                    "transfer to a non-voter"
                );
                if self.quiesced {
                    // Anything that could break these wakes the leader first.
                    assert_eq!(self.lead_transferee, NO_NODE, "quiesced while transferring");
                    assert_eq!(
                        self.log.committed,
                        self.log.last_index(),
                        "quiesced with uncommitted entries"
                    );
                }
                for (id, p) in &self.progress {
                    assert!(p.match_index < p.next_index, "peer {id}: match >= next");
                    assert!(
                        p.match_index <= self.log.last_index(),
                        "peer {id}: match beyond the leader's log"
                    );
                }
            }
            Role::Candidate => {
                assert_eq!(self.vote, self.cfg.id, "candidate did not vote for itself");
                assert_eq!(self.leader, NO_NODE);
                assert!(!self.quiesced, "quiesced candidate");
            }
            Role::PreCandidate | Role::Follower => {
                assert!(
                    !self.quiesced || (self.role == Role::Follower && self.leader != NO_NODE),
                    "quiesced without a leader to follow"
                );
                assert!(self.progress.is_empty(), "non-leader keeps progress");
                assert_eq!(self.lead_transferee, NO_NODE, "non-leader transfers");
            }
        }
        let conf = self.conf.current();
        assert!(
            self.voters.iter().copied().eq(conf.voters.iter().copied())
                && self
                    .learners
                    .iter()
                    .copied()
                    .eq(conf.learners.iter().copied()),
            "voter/learner sets differ from the configuration in the log"
        );
        assert!(
            self.conf.last_change_index() <= self.log.last_index(),
            "configuration from an entry beyond the log"
        );
        assert!(
            self.snapshot.index >= self.log.offset(),
            "log compacted beyond the snapshot"
        );
    }

    // ---- Shared helpers -------------------------------------------------------------

    /// Rules for a message from a higher term (Raft §5.1: adopt it and step down),
    /// with the pre-vote and "leader still alive" exceptions. Returns false if the
    /// message must be dropped.
    fn accept_higher_term(&mut self, m: &Message) -> bool {
        if let MessageBody::RequestVote {
            pre_vote, transfer, ..
        } = m.body
        {
            // Thesis §4.2.3 / §9.6: while we hear from a live leader, a vote request
            // from a node that lost contact (or was removed) must not disrupt us.
            if !transfer && self.in_leader_lease() {
                self.events.push(Event::VoteDenied {
                    candidate: m.from,
                    term: m.term,
                    pre_vote,
                    reason: "a live leader is known",
                });
                return false;
            }
            if pre_vote {
                // A pre-vote never changes our term.
                return true;
            }
        }
        if let MessageBody::RequestVoteResponse {
            pre_vote: true,
            granted: true,
            ..
        } = m.body
        {
            // A granted pre-vote echoes the term we would campaign in.
            return true;
        }
        let leader = if m.body.is_from_leader() {
            m.from
        } else {
            NO_NODE
        };
        if self.role != Role::Follower {
            self.events.push(Event::SteppedDown {
                term: m.term,
                from: m.from,
            });
        }
        self.become_follower(m.term, leader);
        true
    }

    /// Rules for a message from an older term.
    fn on_lower_term(&mut self, m: &Message) {
        match m.body {
            // A stale leader (e.g. one healed from a partition) learns our term from
            // the reply and steps down. Without this, with pre-vote on, a partitioned
            // node that raised its term could never rejoin.
            MessageBody::AppendEntries { .. } | MessageBody::Heartbeat { .. }
                if self.cfg.check_quorum || self.cfg.pre_vote =>
            {
                self.send(
                    m.from,
                    MessageBody::AppendEntriesResponse {
                        index: 0,
                        reject: true,
                        hint_index: 0,
                        hint_term: 0,
                    },
                    false,
                );
            }
            MessageBody::RequestVote { pre_vote: true, .. } => {
                // Tell the pre-candidate about our newer term so it stops trying.
                self.send(
                    m.from,
                    MessageBody::RequestVoteResponse {
                        granted: false,
                        pre_vote: true,
                        lease_remaining: 0,
                        lease_term: 0,
                    },
                    false,
                );
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, m: Message) {
        match m.body {
            MessageBody::RequestVote {
                last_log_index,
                last_log_term,
                pre_vote,
                ..
            } => self.handle_vote_request(m.from, m.term, last_log_index, last_log_term, pre_vote),
            MessageBody::RequestVoteResponse {
                granted,
                pre_vote,
                lease_remaining,
                lease_term,
            } => {
                if granted && !pre_vote && self.role == Role::Candidate {
                    self.lease_on_vote(lease_remaining, lease_term);
                }
                self.handle_vote_response(m.from, granted, pre_vote)
            }
            MessageBody::AppendEntries {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
            } => {
                if self.accept_leader(m.from) {
                    self.handle_append(
                        m.from,
                        prev_log_index,
                        prev_log_term,
                        &entries,
                        leader_commit,
                    );
                }
            }
            MessageBody::Heartbeat {
                commit,
                read_seq,
                lease,
                quiesce: _,
            } => {
                if self.accept_leader(m.from) {
                    self.note_leader_lease(m.term, lease);
                    self.handle_heartbeat(m.from, commit, read_seq);
                }
            }
            MessageBody::AppendEntriesResponse {
                index,
                reject,
                hint_index,
                hint_term,
            } => {
                if self.role == Role::Leader {
                    self.handle_append_response(m.from, index, reject, hint_index, hint_term);
                }
            }
            MessageBody::HeartbeatResponse { read_seq } => {
                if self.role == Role::Leader {
                    self.handle_heartbeat_response(m.from, read_seq);
                }
            }
            MessageBody::InstallSnapshot { meta } => {
                if self.accept_leader(m.from) {
                    self.handle_install_snapshot(m.from, meta);
                }
            }
            MessageBody::TimeoutNow => {
                if self.accept_leader(m.from) {
                    self.handle_timeout_now();
                }
            }
            MessageBody::ReadIndex { ctx } => self.handle_read_index_request(m.from, ctx),
            MessageBody::ReadIndexResponse { ctx, index } => {
                if self.accept_leader(m.from) {
                    self.handle_read_index_response(ctx, index);
                }
            }
            // Stepping it woke a quiesced leader (above), which heartbeats in
            // a new round; an awake leader heartbeats anyway, and anyone else
            // has nothing to do with it.
            MessageBody::WakeLeader => {}
        }
    }

    /// A message that only the leader of the current term sends arrived: follow it.
    fn accept_leader(&mut self, from: NodeId) -> bool {
        match self.role {
            Role::Leader => {
                // Two leaders in one term would break election safety (Raft §5.2);
                // it cannot happen unless a vote was lost from storage.
                debug_assert!(
                    false,
                    "node {} leads term {} but so does {from}",
                    self.cfg.id, self.term
                );
                false
            }
            Role::Candidate | Role::PreCandidate => {
                self.become_follower(self.term, from);
                true
            }
            Role::Follower => {
                if self.leader != from {
                    self.leader = from;
                    self.events.push(Event::BecameFollower {
                        term: self.term,
                        leader: from,
                    });
                }
                self.election_elapsed = 0;
                true
            }
        }
    }

    /// Whether we heard from a leader within the minimum election timeout.
    pub(crate) fn in_leader_lease(&self) -> bool {
        self.cfg.check_quorum
            && self.leader != NO_NODE
            && self.election_elapsed < self.cfg.election_ticks
    }

    pub(crate) fn is_voter(&self) -> bool {
        self.voters.contains(&self.cfg.id)
    }

    /// Queues a message; `after_persist` ones wait until the Ready is durable.
    pub(crate) fn send(&mut self, to: NodeId, body: MessageBody, after_persist: bool) {
        self.send_with_term(to, self.term, body, after_persist);
    }

    pub(crate) fn send_with_term(
        &mut self,
        to: NodeId,
        term: Term,
        body: MessageBody,
        after_persist: bool,
    ) {
        let m = Message {
            group: self.cfg.group,
            from: self.cfg.id,
            to,
            term,
            body,
        };
        if after_persist {
            self.msgs_after_persist.push(m);
        } else {
            self.msgs.push(m);
        }
    }

    pub(crate) fn reset_election_timeout(&mut self) {
        self.election_elapsed = 0;
        let base = self.cfg.election_ticks;
        self.randomized_election_timeout = base + self.rng.below(u64::from(base)) as u32;
    }

    /// Becomes follower in `term` (clearing the vote when the term is new).
    pub(crate) fn become_follower(&mut self, term: Term, leader: NodeId) {
        self.lease_on_role_change();
        self.quiesced = false;
        if term > self.term {
            self.term = term;
            self.vote = NO_NODE;
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.progress.clear();
        self.votes.clear();
        self.read_only.clear();
        self.append_pending = false;
        self.heartbeat_elapsed = 0;
        self.lead_transferee = NO_NODE;
        self.transfer_elapsed = 0;
        self.reset_election_timeout();
        self.events.push(Event::BecameFollower {
            term: self.term,
            leader,
        });
    }

    pub(crate) fn assert_not_in_ready(&self) {
        assert!(
            self.in_progress.is_none(),
            "core called between ready() and advance()"
        );
    }
}

//! Leader leases: reads served by the leader without a network round trip.
//!
//! Every heartbeat round the leader sends is numbered (the same numbers ReadIndex
//! uses) and stamped with the runtime's clock *when it is sent*. Once a quorum of
//! voters has answered round `r`, no other leader can commit anything until
//! `lease_duration` after `r` was sent, because:
//!
//! - each of those voters received `r` after it was sent, remembers the lease for
//!   `lease_duration` after receiving it, and hands what remains of it to any
//!   candidate it votes for later;
//! - a candidate needs a quorum of votes, so at least one of them carries that
//!   lease, and a new leader commits nothing (so nobody can observe its writes)
//!   until every lease it was handed has run out (event "New Leader waiting for Old
//!   Leader Lease to timeout.").
//!
//! Clocks only measure intervals on one node, and may run at slightly different
//! rates: the leader trusts its lease until `lease_duration - max_clock_drift` after
//! sending `r`. The runtime checks that bound against its clock *after* reading the
//! state machine, so a process paused between the check and the reply still read
//! at a moment the lease covered.
//!
//! A node that restarts has forgotten the leases it acknowledged, so it assumes
//! one runs for `lease_duration` from its first clock reading.
//!
//! A leadership transfer ends the lease first: once a `TimeoutNow` is out, the
//! leader serves no lease read for the rest of its term, and the target (which
//! campaigns with the leader's blessing) ignores the leases of that term.

use std::collections::VecDeque;

use crate::raft::{InjectedBug, Raft};
use crate::ready::{Event, Role};
use crate::types::{NO_NODE, Term};

/// Heartbeat rounds kept while waiting for a quorum; older ones are dropped (a
/// newer round confirms a longer lease anyway).
const MAX_UNCONFIRMED_ROUNDS: usize = 64;

/// A lease the runtime may serve reads under: until its clock reads
/// `valid_until`, no other leader can have committed anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The term of the leadership the lease belongs to.
    pub term: Term,
    /// Clock reading (see [`Raft::set_clock`]) up to which reads may be served.
    pub valid_until: u64,
}

#[derive(Debug, Default)]
pub(crate) struct LeaseState {
    /// Latest clock reading given by the runtime.
    pub(crate) now: u64,
    /// Leader: rounds sent and not yet confirmed by a quorum, as (seq, sent at).
    rounds: VecDeque<(u64, u64)>,
    /// Leader: when the newest quorum-confirmed round of this term was sent.
    confirmed_sent_at: Option<u64>,
    /// Leader: a `TimeoutNow` went out this term; no lease until the next one.
    revoked: bool,
    /// New leader: commits wait until the clock reads this (leases handed over by
    /// the voters that elected it).
    pub(crate) inherited_until: u64,
    /// The longest lease of a leader this node followed (or held itself), as
    /// (that leader's term, expiry on this node's clock).
    followed: (Term, u64),
    /// Candidate: the term of the leader that asked for this election (transfer),
    /// whose leases do not count.
    transfer_from: Option<Term>,
    /// The runtime has given a first clock reading.
    clock_started: bool,
}

impl LeaseState {
    fn remember(&mut self, term: Term, until: u64) {
        if until >= self.followed.1 {
            self.followed = (term, until);
        }
    }
}

impl Raft {
    /// Tells the core the runtime's monotonic clock reading (any unit, the one
    /// [`crate::Config::lease_duration`] uses). Call it before stepping, ticking or
    /// taking a `Ready`; readings that go backwards are ignored.
    pub fn set_clock(&mut self, now: u64) {
        self.lease.now = self.lease.now.max(now);
        if !std::mem::replace(&mut self.lease.clock_started, true) && self.cfg.lease_duration > 0 {
            // A restarted node has forgotten which leases it acknowledged just before
            // it went down: assume one of its last known term runs from now, so a
            // candidate it votes for still waits for it.
            let term = self.term;
            self.lease.remember(term, now + self.cfg.lease_duration);
        }
    }

    /// The lease this leader may serve reads under, if it holds one: it leads,
    /// has committed an entry of its term (so its state includes every earlier
    /// acknowledged write and it waited out the leases it inherited), is not
    /// handing leadership over, and a quorum confirmed a heartbeat round. The
    /// runtime must still check `valid_until` against its clock.
    pub fn lease(&self) -> Option<Lease> {
        if self.cfg.lease_duration == 0
            || self.role != Role::Leader
            || self.lead_transferee != NO_NODE
            || self.lease.revoked
            || self.log.term(self.log.committed) != Some(self.term)
        {
            return None;
        }
        let sent_at = self.lease.confirmed_sent_at?;
        let margin = if self.injected(InjectedBug::LeaseWithoutDriftMargin) {
            0
        } else {
            self.cfg.max_clock_drift
        };
        Some(Lease {
            term: self.term,
            valid_until: sent_at + self.cfg.lease_duration - margin,
        })
    }

    /// Clock reading until which this leader's commits wait for leases it
    /// inherited (0 if none).
    pub fn inherited_lease_until(&self) -> u64 {
        self.lease.inherited_until
    }

    /// The lease the next heartbeat claims (0 when leases are off or revoked).
    pub(crate) fn lease_claim(&self) -> u64 {
        if self.lease.revoked {
            0
        } else {
            self.cfg.lease_duration
        }
    }

    /// Leader: heartbeat round `seq` is being sent now.
    pub(crate) fn lease_round_sent(&mut self, seq: u64) {
        if self.cfg.lease_duration == 0 || self.lease.revoked {
            return;
        }
        if self.lease.rounds.back().is_some_and(|&(s, _)| s >= seq) {
            return;
        }
        if self.lease.rounds.len() == MAX_UNCONFIRMED_ROUNDS {
            self.lease.rounds.pop_front();
        }
        self.lease.rounds.push_back((seq, self.lease.now));
        self.confirm_lease(self.confirmed_read_round());
    }

    /// Leader: extends the lease to round `confirmed`, the newest a quorum has
    /// answered.
    pub(crate) fn confirm_lease(&mut self, confirmed: u64) {
        while let Some(&(seq, sent_at)) = self.lease.rounds.front() {
            if seq > confirmed {
                break;
            }
            self.lease.confirmed_sent_at = Some(sent_at);
            self.lease.rounds.pop_front();
        }
    }

    /// Leader: a `TimeoutNow` is going out; no lease reads for the rest of the term.
    pub(crate) fn revoke_lease(&mut self) {
        self.lease.revoked = true;
        self.lease.rounds.clear();
        self.lease.confirmed_sent_at = None;
    }

    /// Follower: a heartbeat of the leader of `term` claiming `lease` arrived.
    pub(crate) fn note_leader_lease(&mut self, term: Term, lease: u64) {
        if lease > 0 {
            let until = self.lease.now.saturating_add(lease);
            self.lease.remember(term, until);
        }
    }

    /// What a granted vote reports: the remaining lease and its leader's term.
    pub(crate) fn lease_report(&self) -> (u64, Term) {
        let (term, until) = self.lease.followed;
        match until.checked_sub(self.lease.now) {
            Some(remaining) if remaining > 0 => (remaining, term),
            _ => (0, 0),
        }
    }

    /// Any role change: a leader stepping down remembers its own lease (it hands
    /// it on like any voter's), and per-term leader state is dropped.
    pub(crate) fn lease_on_role_change(&mut self) {
        if self.role == Role::Leader
            && let Some(sent_at) = self.lease.confirmed_sent_at
        {
            let term = self.term;
            self.lease.remember(term, sent_at + self.cfg.lease_duration);
        }
        self.lease.rounds.clear();
        self.lease.confirmed_sent_at = None;
        self.lease.revoked = false;
    }

    /// Leader going quiet: it ends its lease (a quiesced leader serves no lease
    /// read, and the acknowledgements of its last rounds must not bring one back),
    /// but first remembers it as a voter would, so that a vote it grants later
    /// still makes the candidate wait it out (see `quiesce.rs`).
    pub(crate) fn lease_on_quiesce(&mut self) {
        if let Some(sent_at) = self.lease.confirmed_sent_at {
            let term = self.term;
            self.lease.remember(term, sent_at + self.cfg.lease_duration);
        }
        self.lease.rounds.clear();
        self.lease.confirmed_sent_at = None;
    }

    /// Candidate starting a real election; `transfer` if the leader of the
    /// previous term asked for it.
    pub(crate) fn lease_on_campaign(&mut self, transfer: bool) {
        self.lease.transfer_from = transfer.then(|| self.term - 1);
        self.lease.inherited_until = 0;
        let (term, until) = self.lease.followed;
        self.inherit_lease(term, until);
    }

    /// Candidate: a voter granted its vote and reported a lease.
    pub(crate) fn lease_on_vote(&mut self, remaining: u64, term: Term) {
        if remaining > 0 {
            let until = self.lease.now.saturating_add(remaining);
            self.inherit_lease(term, until);
        }
    }

    fn inherit_lease(&mut self, term: Term, until: u64) {
        if self.lease.transfer_from == Some(term) {
            // That leader ended its lease before asking us to take over.
            return;
        }
        self.lease.inherited_until = self.lease.inherited_until.max(until);
    }

    /// Whether a new leader must still hold back commits.
    pub(crate) fn waiting_out_old_lease(&self) -> bool {
        self.lease.now < self.lease.inherited_until
    }

    /// New leader: report the wait, if there is one.
    pub(crate) fn lease_on_elected(&mut self) {
        if self.waiting_out_old_lease() {
            self.events.push(Event::WaitingForOldLease {
                term: self.term,
                remaining: self.lease.inherited_until - self.lease.now,
            });
        }
    }
}

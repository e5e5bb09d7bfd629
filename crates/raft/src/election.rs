//! Elections: timeouts, pre-vote, RequestVote handling and becoming leader
//! (Raft §5.2, §5.4.1; thesis §9.6 for pre-vote).

use bytes::Bytes;

use crate::message::MessageBody;
use crate::progress::Progress;
use crate::quorum::{self, VoteResult};
use crate::raft::Raft;
use crate::ready::{Event, Role};
use crate::types::{EntryKind, NO_NODE, NodeId, Term};

impl Raft {
    /// Follower/candidate tick: start an election once the randomized timeout
    /// passes without hearing from a leader (Raft §5.2).
    pub(crate) fn tick_election(&mut self) {
        self.election_elapsed += 1;
        if self.election_elapsed >= self.randomized_election_timeout
            && self.can_campaign()
            && !self.disk_full
        {
            self.start_election(self.cfg.pre_vote, false);
        }
    }

    /// Begins a pre-vote round, or a real election in a new term. `transfer` marks
    /// an election the leader asked for (thesis §3.10): its vote requests pass the
    /// voters' "live leader" check.
    pub(crate) fn start_election(&mut self, pre_vote: bool, transfer: bool) {
        let term = if pre_vote {
            self.become_pre_candidate();
            self.term + 1
        } else {
            self.become_candidate();
            self.lease_on_campaign(transfer);
            self.term
        };
        if pre_vote {
            // A pre-vote binds nothing, so our own counts at once.
            self.votes.insert(self.cfg.id, true);
            if quorum::vote_result(&self.voters, &self.votes) == VoteResult::Won {
                // A single-voter group wins at once.
                self.on_election_won(true);
                return;
            }
        }
        let peers: Vec<NodeId> = self
            .voters
            .iter()
            .copied()
            .filter(|&id| id != self.cfg.id)
            .collect();
        let (last_log_index, last_log_term) = (self.log.last_index(), self.log.last_term());
        for to in peers {
            // A real vote request must not leave before our new term and self-vote
            // are durable: otherwise a crash could let us vote twice in one term.
            self.send_with_term(
                to,
                term,
                MessageBody::RequestVote {
                    last_log_index,
                    last_log_term,
                    pre_vote,
                    transfer,
                },
                !pre_vote,
            );
        }
    }

    fn become_pre_candidate(&mut self) {
        self.quiesced = false;
        self.role = Role::PreCandidate;
        self.leader = NO_NODE;
        self.votes.clear();
        self.reset_election_timeout();
        self.events.push(Event::BecamePreCandidate {
            term: self.term + 1,
        });
    }

    fn become_candidate(&mut self) {
        self.quiesced = false;
        self.term += 1;
        self.vote = self.cfg.id;
        self.role = Role::Candidate;
        self.leader = NO_NODE;
        self.votes.clear();
        self.reset_election_timeout();
        self.events.push(Event::BecameCandidate { term: self.term });
    }

    /// Decides a RequestVote (or pre-vote). For a real vote `term == self.term` here
    /// (the term rules ran first); a pre-vote may carry a higher term.
    pub(crate) fn handle_vote_request(
        &mut self,
        candidate: NodeId,
        term: Term,
        last_log_index: u64,
        last_log_term: Term,
        pre_vote: bool,
    ) {
        // Raft §5.2: at most one vote per term, first come first served. A pre-vote
        // for a later term binds nothing, so it is only judged on the log.
        let can_vote = self.vote == candidate
            || (self.vote == NO_NODE && self.leader == NO_NODE)
            || (pre_vote && term > self.term);
        // Raft §5.4.1: only for a candidate whose log is at least as up to date.
        let up_to_date = self.log.is_up_to_date(last_log_index, last_log_term);
        if can_vote && up_to_date {
            if !pre_vote {
                self.vote = candidate;
                self.election_elapsed = 0;
            }
            // Hand over what remains of the leases we acknowledged: the candidate
            // must wait them out before committing (see lease.rs).
            let (lease_remaining, lease_term) = if pre_vote {
                (0, 0)
            } else {
                self.lease_report()
            };
            self.send_with_term(
                candidate,
                term,
                MessageBody::RequestVoteResponse {
                    granted: true,
                    pre_vote,
                    lease_remaining,
                    lease_term,
                },
                !pre_vote,
            );
            self.events.push(Event::VoteGranted {
                candidate,
                term,
                pre_vote,
            });
        } else {
            let reason = if !up_to_date {
                "its log is behind ours"
            } else if self.vote != NO_NODE {
                "already voted in this term"
            } else {
                "a leader is known"
            };
            self.send(
                candidate,
                MessageBody::RequestVoteResponse {
                    granted: false,
                    pre_vote,
                    lease_remaining: 0,
                    lease_term: 0,
                },
                false,
            );
            self.events.push(Event::VoteDenied {
                candidate,
                term,
                pre_vote,
                reason,
            });
        }
    }

    pub(crate) fn handle_vote_response(&mut self, from: NodeId, granted: bool, pre_vote: bool) {
        let expected = match self.role {
            Role::PreCandidate => pre_vote,
            Role::Candidate => !pre_vote,
            _ => false,
        };
        if !expected || !self.voters.contains(&from) {
            return;
        }
        self.votes.insert(from, granted);
        self.tally(pre_vote);
    }

    fn tally(&mut self, pre_vote: bool) {
        match quorum::vote_result(&self.voters, &self.votes) {
            VoteResult::Won => self.on_election_won(pre_vote),
            VoteResult::Lost => self.become_follower(self.term, NO_NODE),
            VoteResult::Pending => {}
        }
    }

    /// A candidate's own vote counts only once its new term and vote are durable:
    /// a node that won on a vote it could still forget (a crash before the fsync)
    /// could campaign for the same term again, win again, and lead one term twice.
    /// Other voters' votes are durable before they are sent, by the Ready contract.
    pub(crate) fn count_durable_self_vote(&mut self) {
        if self.role == Role::Candidate
            && !self.votes.contains_key(&self.cfg.id)
            && self.durable_term_vote == (self.term, self.cfg.id)
        {
            self.votes.insert(self.cfg.id, true);
            self.tally(false);
        }
    }

    fn on_election_won(&mut self, pre_vote: bool) {
        if pre_vote {
            self.start_election(false, false);
        } else {
            self.become_leader();
        }
    }

    /// Raft §5.2/§5.3: initialise every follower's progress just past our log, and
    /// append a NO-OP so entries from earlier terms get committed (§5.4.2).
    fn become_leader(&mut self) {
        debug_assert_eq!(self.role, Role::Candidate);
        self.lease_on_role_change();
        self.role = Role::Leader;
        self.quiesced = false;
        self.idle_ticks = 0;
        self.leader = self.cfg.id;
        self.votes.clear();
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.read_only.clear();
        let next = self.log.last_index() + 1;
        let members: Vec<NodeId> = self
            .voters
            .iter()
            .chain(self.learners.iter())
            .copied()
            .filter(|&id| id != self.cfg.id)
            .collect();
        self.progress.clear();
        for id in members {
            let mut p = Progress::new(
                next,
                self.cfg.max_inflight_msgs,
                self.cfg.max_inflight_bytes,
            );
            // Give every peer one election timeout to answer before check-quorum
            // counts it as lost.
            p.recent_active = true;
            self.progress.insert(id, p);
        }
        self.uncommitted_bytes = self.log.bytes_after(self.log.committed);
        self.events.push(Event::BecameLeader { term: self.term });
        self.lease_on_elected();
        if !self.skips_term_start_noop() {
            self.append_as_leader(EntryKind::NoOp, Bytes::new())
                .expect("a fresh leader accepts its NO-OP");
        }
    }
}

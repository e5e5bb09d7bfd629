//! The client model: who proposes what where, and when a client is told "ok".
//!
//! A proposal is acknowledged exactly when the server would answer "ok": the node
//! that accepted it (in the same process incarnation — a restarted process has lost
//! the waiting request) applies the entry at the proposal's index *with the
//! proposal's term*. An entry of another term at that index means the proposal was
//! overwritten and failed; since the core never re-proposes, its value then exists
//! nowhere.
//!
//! During the liveness phase the client issues *requests*, each retried (with the
//! same key and value, which is safe only after a definite failure) until one attempt
//! is acknowledged.
//!
//! A node that takes a leader's snapshot never applies the entries it covers, so
//! proposals waiting there are never answered (the server's waiters time out): their
//! outcome is unknown to the client, but decided — the index is committed, with
//! this proposal or another entry — so, unlike after a crash, a retry is safe.

use std::collections::BTreeMap;

use bytes::Bytes;
use keel_raft::{Entry, Index, NodeId, Term};

use crate::checker::{Invariant, Violation};
use crate::config::Time;
use crate::workload;

/// Where a proposal stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Queued at a node that is busy with an fsync.
    Queued,
    /// Accepted at `(index, term)`; waiting to be applied there.
    Waiting,
    /// The client was told "ok".
    Acked,
    /// Definitely not committed: refused, or overwritten by another term's entry.
    Failed,
    /// The accepting node crashed first: the entry may or may not commit.
    Unknown,
    /// The accepting node took a snapshot covering the entry's index before
    /// applying it: never answered, but the index is decided.
    Covered,
}

/// One proposal.
#[derive(Clone, Debug)]
pub struct Proposal {
    /// Unique id; determines the key and value.
    pub id: u64,
    /// The key written.
    pub key: Bytes,
    /// The value written.
    pub value: Bytes,
    /// The node it was sent to.
    pub node: NodeId,
    /// That node's process incarnation.
    pub incarnation: u32,
    /// Where it was appended, if accepted.
    pub at: Option<(Index, Term)>,
    /// Where it stands.
    pub status: Status,
    /// The liveness request it serves, if any.
    pub request: Option<usize>,
    /// When the client sent it.
    pub issued: Time,
}

/// A liveness-phase write: retried until acknowledged.
#[derive(Clone, Debug)]
pub struct Request {
    /// When it was issued.
    pub issued: Time,
    /// Entries that had to be replicated before it could commit, when it was
    /// issued: the liveness bound allows a tick for each.
    pub backlog: u64,
    /// The id whose key and value every attempt writes.
    pub id: u64,
    /// When it was acknowledged.
    pub acked: Option<Time>,
    /// The attempt in progress (queued or waiting), if any.
    pub attempt: Option<u64>,
    /// Attempts made.
    pub attempts: u32,
}

/// The client side of one run.
#[derive(Debug)]
pub struct Client {
    seed: u64,
    next_id: u64,
    /// Who the client believes leads (0: no idea).
    pub hint: NodeId,
    proposals: BTreeMap<u64, Proposal>,
    /// Accepted, unresolved proposals by `(node, index)`.
    waiting: BTreeMap<(NodeId, Index), u64>,
    /// Liveness requests.
    pub requests: Vec<Request>,
    /// The id whose key the latest acknowledged write wrote (0: none yet).
    last_acked: u64,
}

impl Client {
    /// A client for the run with `seed` (values embed it).
    pub fn new(seed: u64) -> Self {
        Client {
            seed,
            next_id: 1,
            hint: 0,
            proposals: BTreeMap::new(),
            waiting: BTreeMap::new(),
            requests: Vec::new(),
            last_acked: 0,
        }
    }

    /// A new proposal to `node`, sent at `now`, optionally as an attempt of
    /// liveness request `request`. Returns its id and the entry payload to propose.
    pub fn propose(
        &mut self,
        node: NodeId,
        incarnation: u32,
        request: Option<usize>,
        now: Time,
    ) -> (u64, Bytes) {
        let attempt_id = self.next_id;
        self.next_id += 1;
        // Retries of a request write the request's own key and value.
        let id = request.map_or(attempt_id, |r| self.requests[r].id);
        let (key, value) = (workload::key_of(id), workload::value_of(id, self.seed));
        let data = workload::encode_put(&key, &value);
        if let Some(r) = request {
            let req = &mut self.requests[r];
            req.attempt = Some(attempt_id);
            req.attempts += 1;
        }
        self.proposals.insert(
            attempt_id,
            Proposal {
                id,
                key,
                value,
                node,
                incarnation,
                at: None,
                status: Status::Queued,
                request,
                issued: now,
            },
        );
        (attempt_id, data)
    }

    /// Whether the node the client believes leads has kept a proposal waiting
    /// since before `since`: a client whose request times out tries another node
    /// (a leader cut off from its followers accepts proposals it cannot commit).
    pub fn hint_is_stuck(&self, since: Time) -> bool {
        let hint = self.hint;
        self.waiting
            .range((hint, 0)..=(hint, Index::MAX))
            .next()
            .is_some_and(|(_, a)| self.proposals[a].issued < since)
    }

    /// Where a read looks: half the time the key of the latest acknowledged write
    /// (which every linearizable read invoked from now on must find), otherwise that
    /// of one of the last few proposals (often a write just being committed).
    pub fn recent_key(&self, rng: &mut crate::rng::SimRng) -> Bytes {
        if rng.one_in(2) && self.last_acked != 0 {
            return workload::key_of(self.last_acked);
        }
        let last = self.next_id.saturating_sub(1).max(1);
        let back = rng.below(last.min(8));
        workload::key_of(last - back)
    }

    /// Issues a liveness request (its first attempt is made by the caller) while
    /// `backlog` entries wait to be replicated before it.
    pub fn new_request(&mut self, now: Time, backlog: u64) -> usize {
        let id = self.next_id;
        self.next_id += 1;
        self.requests.push(Request {
            issued: now,
            backlog,
            id,
            acked: None,
            attempt: None,
            attempts: 0,
        });
        self.requests.len() - 1
    }

    /// The node answered the proposal.
    pub fn on_proposed(&mut self, attempt: u64, result: Result<(Index, Term), NodeId>) {
        let Some(p) = self.proposals.get_mut(&attempt) else {
            return;
        };
        match result {
            Ok(at) => {
                p.at = Some(at);
                p.status = Status::Waiting;
                self.waiting.insert((p.node, at.0), attempt);
                self.hint = p.node;
            }
            Err(leader) => {
                p.status = Status::Failed;
                self.hint = leader;
                self.finish_attempt(attempt, None);
            }
        }
    }

    /// `node` (incarnation `incarnation`) applied `e`. Returns the acknowledged
    /// attempt, if this acknowledges one.
    pub fn on_apply(
        &mut self,
        node: NodeId,
        incarnation: u32,
        e: &Entry,
        now: Time,
    ) -> Result<Option<u64>, Violation> {
        let Some(attempt) = self.waiting.remove(&(node, e.index)) else {
            return Ok(None);
        };
        let p = self
            .proposals
            .get_mut(&attempt)
            .expect("waiting proposals are recorded");
        if p.incarnation != incarnation {
            // Unreachable: a crash resolves its node's waiting proposals.
            return Ok(None);
        }
        let (_, term) = p.at.expect("waiting proposals were accepted");
        if e.term != term {
            p.status = Status::Failed;
            self.finish_attempt(attempt, None);
            return Ok(None);
        }
        if workload::decode_put(&e.data) != Some((p.key.clone(), p.value.clone())) {
            return Err(Violation::new(
                Invariant::StateMachineSafety,
                vec![node],
                format!(
                    "node {node} applied entry {}@{term}, where it had accepted proposal #{attempt}, \
                     but the entry holds something else",
                    e.index
                ),
            ));
        }
        p.status = Status::Acked;
        self.last_acked = p.id;
        self.finish_attempt(attempt, Some(now));
        Ok(Some(attempt))
    }

    /// `node` wrote `entries` to its log, replacing everything from the first one
    /// on: a waiting proposal there whose entry is gone or has another term failed
    /// (no need to wait until the node's log grows back to its index).
    pub fn on_write(&mut self, node: NodeId, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        let overwritten: Vec<(Index, u64)> = self
            .waiting
            .range((node, first.index)..=(node, Index::MAX))
            .map(|(&(_, index), &attempt)| (index, attempt))
            .collect();
        for (index, attempt) in overwritten {
            let term = self.proposals[&attempt].at.map(|(_, t)| t);
            let new_term = entries
                .get(usize::try_from(index - first.index).expect("index fits in memory"))
                .map(|e| e.term);
            if new_term != term {
                self.waiting.remove(&(node, index));
                if let Some(p) = self.proposals.get_mut(&attempt) {
                    p.status = Status::Failed;
                }
                self.finish_attempt(attempt, None);
            }
        }
    }

    /// `node` took a leader's snapshot covering everything up to `index`: the
    /// proposals waiting there are never answered.
    pub fn on_snapshot(&mut self, node: NodeId, index: Index) {
        let covered: Vec<(Index, u64)> = self
            .waiting
            .range((node, 0)..=(node, index))
            .map(|(&(_, i), &attempt)| (i, attempt))
            .collect();
        for (i, attempt) in covered {
            self.waiting.remove(&(node, i));
            if let Some(p) = self.proposals.get_mut(&attempt) {
                p.status = Status::Covered;
            }
            self.finish_attempt(attempt, None);
        }
    }

    /// `node` crashed: its waiting and queued proposals become unknown.
    pub fn on_crash(&mut self, node: NodeId) {
        self.waiting.retain(|&(n, _), _| n != node);
        let lost: Vec<u64> = self
            .proposals
            .iter()
            .filter(|(_, p)| p.node == node && matches!(p.status, Status::Queued | Status::Waiting))
            .map(|(&id, _)| id)
            .collect();
        for attempt in lost {
            if let Some(p) = self.proposals.get_mut(&attempt) {
                p.status = Status::Unknown;
            }
            self.finish_attempt(attempt, None);
        }
    }

    fn finish_attempt(&mut self, attempt: u64, acked_at: Option<Time>) {
        let Some(r) = self.proposals.get(&attempt).and_then(|p| p.request) else {
            return;
        };
        let req = &mut self.requests[r];
        if req.attempt == Some(attempt) {
            req.attempt = None;
        }
        if acked_at.is_some() && req.acked.is_none() {
            req.acked = acked_at;
        }
    }

    /// Whether a liveness request may be retried with its own value: only if no
    /// attempt's fate is unknown (an unknown attempt may still commit, and a second
    /// copy would break the one-value-per-entry bookkeeping).
    pub fn may_retry(&self, r: usize) -> bool {
        let req = &self.requests[r];
        req.acked.is_none()
            && req.attempt.is_none()
            && !self
                .proposals
                .values()
                .any(|p| p.request == Some(r) && p.status == Status::Unknown)
    }

    /// Every acknowledged write, as `(attempt, key, value)`.
    pub fn acknowledged(&self) -> impl Iterator<Item = (u64, &Bytes, &Bytes)> {
        self.proposals
            .iter()
            .filter(|(_, p)| p.status == Status::Acked)
            .map(|(&a, p)| (a, &p.key, &p.value))
    }

    /// Counts of proposals by status: (made, acked, failed, unknown).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let by = |s: Status| self.proposals.values().filter(|p| p.status == s).count();
        (
            self.proposals.len(),
            by(Status::Acked),
            by(Status::Failed),
            by(Status::Unknown),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_raft::EntryKind;

    fn entry(index: Index, term: Term, data: Bytes) -> Entry {
        Entry {
            term,
            index,
            kind: EntryKind::Normal,
            data,
        }
    }

    #[test]
    fn ack_needs_same_node_index_and_term() {
        let mut c = Client::new(1);
        let (a, data) = c.propose(2, 0, None, 0);
        c.on_proposed(a, Ok((5, 3)));
        assert_eq!(c.hint, 2);
        // Another node applying index 5 does not answer this client.
        let got = c.on_apply(1, 0, &entry(5, 3, data.clone()), 0).expect("ok");
        assert_eq!(got, None);
        let got = c.on_apply(2, 0, &entry(5, 3, data), 10).expect("ok");
        assert_eq!(got, Some(a));
        assert_eq!(c.acknowledged().count(), 1);

        // Overwritten by another term: failed, not acknowledged.
        let (b, data) = c.propose(2, 0, None, 0);
        c.on_proposed(b, Ok((6, 3)));
        assert_eq!(c.on_apply(2, 0, &entry(6, 4, data), 20).expect("ok"), None);
        assert_eq!(c.counts(), (2, 1, 1, 0));
    }

    #[test]
    fn an_overwritten_proposal_fails_at_once() {
        let mut c = Client::new(1);
        let (a, data) = c.propose(1, 0, None, 0);
        c.on_proposed(a, Ok((3, 1)));
        // Rewriting index 2 with the same term at 3 keeps it waiting...
        c.on_write(1, &[entry(2, 1, Bytes::new()), entry(3, 1, data.clone())]);
        assert_eq!(c.counts(), (1, 0, 0, 0));
        // ...a new leader's shorter log does not.
        c.on_write(1, &[entry(2, 2, Bytes::new())]);
        assert_eq!(c.counts(), (1, 0, 1, 0));
    }

    #[test]
    fn wrong_payload_at_the_accepted_position_is_a_violation() {
        let mut c = Client::new(1);
        let (a, _) = c.propose(1, 0, None, 0);
        c.on_proposed(a, Ok((1, 1)));
        let err = c
            .on_apply(1, 0, &entry(1, 1, Bytes::from_static(b"other")), 0)
            .expect_err("payload differs");
        assert_eq!(err.invariant, Invariant::StateMachineSafety);
    }

    #[test]
    fn proposals_covered_by_a_snapshot_are_decided_but_never_answered() {
        let mut c = Client::new(1);
        let r = c.new_request(0, 0);
        let (a, _) = c.propose(1, 0, Some(r), 0);
        c.on_proposed(a, Ok((4, 2)));
        let (b, _) = c.propose(1, 0, None, 0);
        c.on_proposed(b, Ok((6, 2)));
        c.on_snapshot(1, 5);
        assert!(
            c.may_retry(r),
            "index 4 is decided: a retry cannot duplicate it"
        );
        assert_eq!(c.counts(), (2, 0, 0, 0));
        assert_eq!(c.proposals[&a].status, Status::Covered);
        assert_eq!(
            c.proposals[&b].status,
            Status::Waiting,
            "beyond the snapshot"
        );
    }

    #[test]
    fn requests_retry_after_failure_but_not_after_a_crash() {
        let mut c = Client::new(1);
        let r = c.new_request(0, 0);
        let (a, _) = c.propose(1, 0, Some(r), 0);
        assert!(!c.may_retry(r), "attempt in flight");
        c.on_proposed(a, Err(3));
        assert_eq!(c.hint, 3);
        assert!(c.may_retry(r), "refused: safe to retry");
        let (b, data) = c.propose(3, 0, Some(r), 0);
        assert_eq!(data, {
            let (k, v) = (
                workload::key_of(c.requests[r].id),
                workload::value_of(c.requests[r].id, 1),
            );
            workload::encode_put(&k, &v)
        });
        c.on_proposed(b, Ok((2, 1)));
        c.on_crash(3);
        assert!(
            !c.may_retry(r),
            "fate unknown: a retry could duplicate the value"
        );
        assert_eq!(c.requests[r].attempts, 2);
    }
}

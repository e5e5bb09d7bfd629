//! The globally committed log, monotonic commit, election safety and leader
//! completeness.
//!
//! - **Committed prefix**: every commit index any node ever reports names a prefix of
//!   one global committed log; that log only ever grows (it is kept as prefix hashes,
//!   so one comparison checks a whole prefix).
//! - **Monotonic commit**: a running node's commit index never decreases.
//! - **Election safety** (Raft §5.2): at most one leader per term, over the whole run.
//! - **Leader completeness** (Raft §5.4): an entry committed in term `T` is in the log
//!   of every leader of every term after `T`. A node that learns commit index `c`
//!   while in term `T` learned it from a leader of a term `≤ T` (or remembered it from
//!   one), so `1..=c` was committed in a term `≤ T`; checking leaders of terms `> T`
//!   is therefore sound. (A restarted node can hold a leader's snapshot of a later
//!   term than its durable one: the caller passes the later of its term and its
//!   last entry's.) Each leader's log is snapshotted when it is first seen
//!   leading, because that log — not a later one — is what the property is about.
//! - **Snapshots cover committed entries**: a snapshot at `(index, term)` — taken,
//!   sent, installed or loaded at a restart — must end at an entry of the committed
//!   log ([`CommitHistory::committed_prefix`]); the node's log then starts with that
//!   committed prefix.

use std::collections::BTreeMap;

use keel_raft::{Index, NodeId, Term};

use super::logs::LogShadow;
use super::{Invariant, Violation};

/// A leader as first observed.
#[derive(Debug)]
struct LeaderRecord {
    node: NodeId,
    /// Its log's prefix hashes when it was first seen leading.
    log: Vec<u64>,
}

/// Global commitment and leadership history.
#[derive(Debug, Default)]
pub struct CommitHistory {
    /// Prefix hashes of the committed log.
    committed: Vec<u64>,
    /// Terms of the committed log's entries.
    committed_terms: Vec<Term>,
    /// For each term, the highest commit index some node reported while in it.
    by_term: BTreeMap<Term, Index>,
    leaders: BTreeMap<Term, LeaderRecord>,
}

impl CommitHistory {
    /// Length of the global committed log.
    pub fn committed_len(&self) -> Index {
        self.committed.len() as Index
    }

    /// Number of terms that had a leader.
    pub fn leader_terms(&self) -> usize {
        self.leaders.len()
    }

    /// The leader of `term`, if one was observed.
    pub fn leader_of(&self, term: Term) -> Option<NodeId> {
        self.leaders.get(&term).map(|l| l.node)
    }

    /// `node`, whose log is `shadow`, reports commit index `commit` in `term`.
    /// `previous` is its last reported commit index while running (`None` right
    /// after a start).
    pub fn observe_commit(
        &mut self,
        node: NodeId,
        term: Term,
        commit: Index,
        previous: Option<Index>,
        shadow: &LogShadow,
    ) -> Result<(), Violation> {
        if let Some(prev) = previous
            && commit < prev
        {
            return Err(Violation::new(
                Invariant::MonotonicCommit,
                vec![node],
                format!("node {node}'s commit index went back from {prev} to {commit}"),
            ));
        }
        if commit == 0 || previous == Some(commit) {
            return Ok(());
        }
        let Some(h) = shadow.hash_at(commit) else {
            return Err(Violation::new(
                Invariant::CommittedPrefix,
                vec![node],
                format!(
                    "node {node} reports commit index {commit} beyond its log (last index {})",
                    shadow.last_index()
                ),
            ));
        };
        self.extend_committed(node, commit, h, shadow)?;
        let known = self.by_term.entry(term).or_insert(0);
        if commit > *known {
            *known = commit;
            self.check_later_leaders(node, term, commit)?;
        }
        Ok(())
    }

    /// Checks that `1..=commit` of `shadow` (hash `h` at `commit`) agrees with the
    /// committed log, and extends the committed log with it.
    fn extend_committed(
        &mut self,
        node: NodeId,
        commit: Index,
        h: u64,
        shadow: &LogShadow,
    ) -> Result<(), Violation> {
        let len = self.committed_len();
        let (at, ours, theirs) = if commit <= len {
            (commit, h, self.committed[(commit - 1) as usize])
        } else {
            let theirs = if len == 0 {
                0
            } else {
                self.committed[(len - 1) as usize]
            };
            (len, shadow.hash_at(len).unwrap_or(0), theirs)
        };
        if ours != theirs {
            return Err(Violation::new(
                Invariant::CommittedPrefix,
                vec![node],
                format!(
                    "node {node} commits up to {commit}, but its log up to {at} differs from \
                     the log already committed there: a committed entry changed"
                ),
            ));
        }
        for i in len + 1..=commit {
            let (Some(h), Some(t)) = (shadow.hash_at(i), shadow.term(i)) else {
                unreachable!("commit index {commit} is within the shadow log");
            };
            self.committed.push(h);
            self.committed_terms.push(t);
        }
        Ok(())
    }

    /// Checks that a snapshot at `index` with `term` that `node` holds ends at an
    /// entry of the committed log.
    pub fn check_snapshot(&self, node: NodeId, index: Index, term: Term) -> Result<(), Violation> {
        let committed = usize::try_from(index)
            .ok()
            .and_then(|i| i.checked_sub(1))
            .and_then(|p| self.committed_terms.get(p).copied());
        if index == 0 || committed == Some(term) {
            return Ok(());
        }
        Err(Violation::new(
            Invariant::StateMachineSafety,
            vec![node],
            format!(
                "node {node} holds a snapshot ending at {index}@{term}, but the committed \
                 entry there is {}",
                committed.map_or("not known yet".to_string(), |t| format!("{index}@{t}"))
            ),
        ))
    }

    /// The committed log up to a snapshot at `index` with `term` that `node` holds:
    /// what its log starts with. A violation if no committed entry is there.
    pub fn committed_prefix(
        &self,
        node: NodeId,
        index: Index,
        term: Term,
    ) -> Result<LogShadow, Violation> {
        self.check_snapshot(node, index, term)?;
        let len = index as usize;
        Ok(LogShadow::from_parts(
            &self.committed_terms[..len],
            &self.committed[..len],
        ))
    }

    /// Every leader of a term after `term` must hold `1..=commit`.
    fn check_later_leaders(
        &self,
        node: NodeId,
        term: Term,
        commit: Index,
    ) -> Result<(), Violation> {
        let want = self.committed[(commit - 1) as usize];
        for (&t, leader) in self.leaders.range(term + 1..) {
            if leader.log.get((commit - 1) as usize) != Some(&want) {
                return Err(Violation::new(
                    Invariant::LeaderCompleteness,
                    vec![node, leader.node],
                    format!(
                        "node {node} learned in term {term} that 1..={commit} is committed, but \
                         node {}, leader of the later term {t}, did not have it when elected",
                        leader.node
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `node`, whose log is `shadow`, is leader of `term`.
    pub fn observe_leader(
        &mut self,
        node: NodeId,
        term: Term,
        shadow: &LogShadow,
    ) -> Result<(), Violation> {
        if let Some(known) = self.leaders.get(&term) {
            if known.node == node {
                return Ok(());
            }
            return Err(Violation::new(
                Invariant::ElectionSafety,
                vec![node, known.node],
                format!(
                    "nodes {} and {node} both became leader of term {term}",
                    known.node
                ),
            ));
        }
        // Everything known committed in an earlier term must be in this log.
        let must_hold = self
            .by_term
            .range(..term)
            .map(|(_, &c)| c)
            .max()
            .unwrap_or(0);
        if must_hold > 0
            && shadow.hash_at(must_hold) != Some(self.committed[(must_hold - 1) as usize])
        {
            return Err(Violation::new(
                Invariant::LeaderCompleteness,
                vec![node],
                format!(
                    "node {node} became leader of term {term} without the committed entries \
                     1..={must_hold} (its last index is {})",
                    shadow.last_index()
                ),
            ));
        }
        self.leaders.insert(
            term,
            LeaderRecord {
                node,
                log: shadow.hashes().to_vec(),
            },
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::logs::LogRegistry;
    use bytes::Bytes;
    use keel_raft::{Entry, EntryKind};

    fn shadow_of(node: NodeId, reg: &mut LogRegistry, terms: &[Term]) -> LogShadow {
        let entries: Vec<Entry> = terms
            .iter()
            .enumerate()
            .map(|(i, &t)| Entry {
                term: t,
                index: i as Index + 1,
                kind: EntryKind::Normal,
                data: Bytes::new(),
            })
            .collect();
        let mut s = LogShadow::default();
        reg.write(node, &mut s, &entries)
            .expect("consistent test logs");
        s
    }

    #[test]
    fn commit_must_not_go_back_or_change() {
        let mut reg = LogRegistry::default();
        let mut h = CommitHistory::default();
        let a = shadow_of(1, &mut reg, &[1, 1, 1]);
        h.observe_commit(1, 1, 2, None, &a).expect("first commit");
        h.observe_commit(1, 1, 3, Some(2), &a).expect("advance");
        let err = h
            .observe_commit(1, 1, 2, Some(3), &a)
            .expect_err("went back");
        assert_eq!(err.invariant, Invariant::MonotonicCommit);

        let b = shadow_of(2, &mut reg, &[1, 2, 2]);
        let err = h
            .observe_commit(2, 2, 2, None, &b)
            .expect_err("entry 2 differs");
        assert_eq!(err.invariant, Invariant::CommittedPrefix);
    }

    #[test]
    fn a_snapshot_must_end_at_a_committed_entry() {
        let mut reg = LogRegistry::default();
        let mut h = CommitHistory::default();
        let a = shadow_of(1, &mut reg, &[1, 1, 2]);
        h.observe_commit(1, 2, 3, None, &a).expect("commit");
        let prefix = h.committed_prefix(2, 2, 1).expect("2@1 is committed");
        assert_eq!((prefix.last_index(), prefix.hash_at(2)), (2, a.hash_at(2)));
        assert_eq!(h.committed_prefix(2, 0, 0).expect("empty").last_index(), 0);
        for (index, term) in [(3, 1), (4, 2)] {
            let err = h
                .committed_prefix(2, index, term)
                .expect_err("not a committed entry");
            assert_eq!(err.invariant, Invariant::StateMachineSafety);
        }
    }

    #[test]
    fn two_leaders_in_one_term_violate_election_safety() {
        let mut reg = LogRegistry::default();
        let mut h = CommitHistory::default();
        let a = shadow_of(1, &mut reg, &[1]);
        h.observe_leader(1, 2, &a).expect("first leader");
        h.observe_leader(1, 2, &a).expect("same leader again");
        let err = h.observe_leader(2, 2, &a).expect_err("second leader");
        assert_eq!(err.invariant, Invariant::ElectionSafety);
        assert_eq!(h.leader_of(2), Some(1));
    }

    #[test]
    fn leader_without_committed_entries_is_caught_both_ways() {
        let mut reg = LogRegistry::default();
        let full = shadow_of(1, &mut reg, &[1, 1, 1]);
        let short = shadow_of(2, &mut reg, &[1]);

        // Committed first, then a later leader lacks it.
        let mut h = CommitHistory::default();
        h.observe_commit(1, 1, 3, None, &full).expect("commit");
        let err = h
            .observe_leader(2, 2, &short)
            .expect_err("leader lacks 2..3");
        assert_eq!(err.invariant, Invariant::LeaderCompleteness);

        // Leader first, then someone learns of a commit from an earlier term.
        let mut h = CommitHistory::default();
        h.observe_leader(2, 2, &short)
            .expect("nothing committed yet");
        let err = h
            .observe_commit(1, 1, 3, None, &full)
            .expect_err("term-2 leader lacks what term 1 committed");
        assert_eq!(err.invariant, Invariant::LeaderCompleteness);

        // The same commit learned in term 2 or later says nothing about term 2's leader.
        let mut h = CommitHistory::default();
        h.observe_leader(2, 2, &short)
            .expect("nothing committed yet");
        h.observe_commit(1, 2, 3, None, &full)
            .expect("committed in term 2 at the earliest");
    }
}

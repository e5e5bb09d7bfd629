//! State machine safety (Raft §5.4.3): no two nodes ever apply different entries at
//! the same index — nor does one node, before and after a restart. Each node also
//! applies in order, without gaps or repeats within one run of its process.
//!
//! A node may also skip ahead: it takes a leader's snapshot, or loads its own at a
//! restart. So the checker keeps a *reference state machine* that applies every
//! index once, as first applied anywhere, and the digest of its contents at each
//! index: a state machine that was written from a snapshot (or recovered after a
//! crash) must hold exactly the reference contents at its applied index.

use keel_raft::{Entry, Index, NodeId, Term};

use super::{Invariant, Violation};
use crate::hash::{self, StateDigest};
use crate::storage::model::KvModel;

/// What was first applied at an index, and by whom.
#[derive(Clone, Copy, Debug)]
struct Applied {
    term: Term,
    hash: u64,
    node: NodeId,
}

/// Every index ever applied anywhere.
#[derive(Debug, Default)]
pub struct ApplyHistory {
    /// Index `i` at position `i - 1`.
    applied: Vec<Applied>,
    /// The reference state machine, at the last index applied anywhere.
    reference: KvModel,
    /// Its digest after each index (index `i` at position `i - 1`).
    digests: Vec<StateDigest>,
}

fn entry_hash(e: &Entry) -> u64 {
    let h = hash::mix(e.term, u64::from(e.kind.to_code()));
    hash::mix_bytes(h, &e.data)
}

impl ApplyHistory {
    /// `node`, whose last applied index is `*last`, applies `e`.
    pub fn apply(&mut self, node: NodeId, last: &mut Index, e: &Entry) -> Result<(), Violation> {
        if e.index != *last + 1 {
            return Err(Violation::new(
                Invariant::StateMachineSafety,
                vec![node],
                format!(
                    "node {node} applied index {} right after index {}: out of order",
                    e.index, *last
                ),
            ));
        }
        *last = e.index;
        let h = entry_hash(e);
        let pos = (e.index - 1) as usize;
        match self.applied.get(pos) {
            None => {
                debug_assert_eq!(pos, self.applied.len(), "indices are applied in order");
                self.reference.apply(e).map_err(|err| {
                    Violation::new(
                        Invariant::StateMachineSafety,
                        vec![node],
                        format!("node {node} applied entry {}@{}: {err}", e.index, e.term),
                    )
                })?;
                self.digests.push(self.reference.digest);
                self.applied.push(Applied {
                    term: e.term,
                    hash: h,
                    node,
                });
                Ok(())
            }
            Some(first) if first.hash == h => Ok(()),
            Some(first) => Err(Violation::new(
                Invariant::StateMachineSafety,
                vec![node, first.node],
                format!(
                    "node {node} applied entry {}@{} at index {}, but node {} had applied a \
                     different entry ({}@{}) there",
                    e.index, e.term, e.index, first.node, e.index, first.term
                ),
            )),
        }
    }
}

impl ApplyHistory {
    /// Checks that `node`'s state machine, which has applied up to `index` (`what`
    /// it just did: installed a snapshot, restarted...), holds the reference contents
    /// there.
    pub fn check_state(
        &self,
        node: NodeId,
        index: Index,
        digest: StateDigest,
        what: &str,
    ) -> Result<(), Violation> {
        let expected = match index {
            0 => Some(StateDigest::default()),
            i => usize::try_from(i - 1)
                .ok()
                .and_then(|p| self.digests.get(p).copied()),
        };
        if expected == Some(digest) {
            return Ok(());
        }
        Err(Violation::new(
            Invariant::StateMachineSafety,
            vec![node],
            match expected {
                Some(_) => format!(
                    "node {node} {what}: its state machine at index {index} differs from the \
                     result of applying the committed entries up to there"
                ),
                None => format!(
                    "node {node} {what}: its state machine is at index {index}, which no node \
                     ever applied"
                ),
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use keel_raft::EntryKind;

    /// A put whose key and value are `data`.
    fn ent(index: Index, term: Term, data: &'static str) -> Entry {
        let data = Bytes::from_static(data.as_bytes());
        Entry {
            term,
            index,
            kind: EntryKind::Normal,
            data: crate::workload::encode_put(&data, &data),
        }
    }

    #[test]
    fn same_entries_in_order_pass_different_entries_fail() {
        let mut h = ApplyHistory::default();
        let (mut a, mut b) = (0, 0);
        h.apply(1, &mut a, &ent(1, 1, "x")).expect("first");
        h.apply(2, &mut b, &ent(1, 1, "x")).expect("same entry");
        h.apply(1, &mut a, &ent(2, 1, "y")).expect("next");
        let err = h.apply(2, &mut b, &ent(2, 2, "z")).expect_err("differs");
        assert_eq!(err.invariant, Invariant::StateMachineSafety);
        assert_eq!(h.applied.len(), 2);

        // A restarted node re-applies from its state machine's applied index.
        let mut restarted = 1;
        h.apply(1, &mut restarted, &ent(2, 1, "y"))
            .expect("re-applying the same entry after a restart");
    }

    #[test]
    fn state_machines_are_checked_against_the_reference() {
        let mut h = ApplyHistory::default();
        let mut a = 0;
        h.apply(1, &mut a, &ent(1, 1, "x")).expect("first");
        h.apply(1, &mut a, &ent(2, 1, "y")).expect("next");
        let mut same = KvModel::default();
        same.apply(&ent(1, 1, "x")).expect("apply");
        h.check_state(2, 1, same.digest, "installed a snapshot")
            .expect("the state at index 1");
        h.check_state(2, 0, StateDigest::default(), "restarted")
            .expect("empty at index 0");
        let err = h
            .check_state(2, 2, same.digest, "installed a snapshot")
            .expect_err("index 2 is missing");
        assert_eq!(err.invariant, Invariant::StateMachineSafety);
        assert!(h.check_state(2, 3, same.digest, "restarted").is_err());
    }

    #[test]
    fn gaps_and_repeats_fail() {
        let mut h = ApplyHistory::default();
        let mut a = 0;
        assert!(h.apply(1, &mut a, &ent(2, 1, "x")).is_err(), "gap");
        let mut a = 0;
        h.apply(1, &mut a, &ent(1, 1, "x")).expect("first");
        assert!(h.apply(1, &mut a, &ent(1, 1, "x")).is_err(), "repeat");
    }
}

//! State machine safety (Raft §5.4.3): no two nodes ever apply different entries at
//! the same index — nor does one node, before and after a restart. Each node also
//! applies in order, without gaps or repeats within one run of its process.

use keel_raft::{Entry, Index, NodeId, Term};

use super::{Invariant, Violation};
use crate::hash;

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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use keel_raft::EntryKind;

    fn ent(index: Index, term: Term, data: &'static str) -> Entry {
        Entry {
            term,
            index,
            kind: EntryKind::Normal,
            data: Bytes::from_static(data.as_bytes()),
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
    fn gaps_and_repeats_fail() {
        let mut h = ApplyHistory::default();
        let mut a = 0;
        assert!(h.apply(1, &mut a, &ent(2, 1, "x")).is_err(), "gap");
        let mut a = 0;
        h.apply(1, &mut a, &ent(1, 1, "x")).expect("first");
        assert!(h.apply(1, &mut a, &ent(1, 1, "x")).is_err(), "repeat");
    }
}

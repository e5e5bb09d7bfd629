//! Property test: whole moves with random writes interleaved at every read of
//! A, under random page sizes and round counts, with rounds that list the
//! slot or ask A's change index (which is lost now and then): B ends up
//! holding A at its fence either way.

use proptest::prelude::*;

use super::driver::Mover;
use super::tests::{Contents, fill, outside, pair, slot_contents};
use crate::command::{Command, Expect};
use crate::kv::ApplyOutcome;
use crate::kv::slots::tests::{Replica, key_in, put, slot};
use crate::kv::slots::{SlotState, SlotUnavailable};

const S: u16 = 300;
const OTHER: u16 = 301;
const EPOCH: u64 = 9;
/// Keys of the moved slot the writes pick from.
const NAMES: usize = 12;

#[derive(Clone, Debug)]
enum Op {
    Put(usize, u8),
    Delete(usize),
    /// A write to another slot.
    Other(usize, u8),
    /// A's change index is lost (a restart, a snapshot install, another
    /// replica answering): the next round must list the slot.
    Forget,
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..NAMES, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        1 => (0..NAMES).prop_map(Op::Delete),
        1 => (0..3usize, any::<u8>()).prop_map(|(k, v)| Op::Other(k, v)),
        1 => Just(Op::Forget),
    ]
}

/// Replays the ops on A, one per read of A, checking each outcome.
struct Writes {
    ops: std::vec::IntoIter<Op>,
    at_fence: Option<Contents>,
    top_version: u64,
    late: usize,
    outside: Contents,
}

impl Writes {
    fn next(&mut self, a: &mut Replica) {
        let s = slot(S);
        let fenced = a.kv.slot_state(s) == SlotState::Fenced { epoch: EPOCH };
        if fenced && self.at_fence.is_none() {
            self.at_fence = Some(slot_contents(a, s));
        }
        let Some(op) = self.ops.next() else { return };
        let name = |k: usize| key_in(s, &format!("k{k}"));
        let (command, in_slot) = match op {
            Op::Put(k, v) => (put(&name(k), &format!("{k}/{v}")), true),
            Op::Delete(k) => {
                let key = name(k);
                let delete = Command::Delete {
                    key,
                    expect: Expect::Any,
                };
                (delete, true)
            }
            Op::Other(k, v) => (
                put(&key_in(slot(OTHER), &format!("o{k}")), &v.to_string()),
                false,
            ),
            Op::Forget => {
                a.kv.lock_changes().reset(a.kv.applied_index());
                return;
            }
        };
        let outcome = a.run(command.clone());
        match outcome {
            ApplyOutcome::SlotUnavailable(SlotUnavailable::Moving { .. }) => {
                assert!(in_slot && fenced, "{command:?} refused");
                self.late += 1;
            }
            ApplyOutcome::Put { revision } | ApplyOutcome::Deleted { revision, .. } => {
                assert!(!(in_slot && fenced), "a fenced slot took {command:?}");
                if in_slot {
                    self.top_version = self.top_version.max(revision);
                } else if let Command::Put { key, value, .. } = command {
                    self.outside.insert(key, (value, revision));
                }
            }
            other => panic!("unexpected outcome {other:?}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn a_move_with_random_writes_ends_with_b_holding_a_at_its_fence(
        initial in 0..NAMES,
        ops in prop::collection::vec(arb_op(), 0..60),
        page_bytes in 40usize..400,
        version_keys in 1usize..6,
        small in 0usize..3,
        max_rounds in 1u64..4,
        by_changes in any::<bool>(),
    ) {
        let s = slot(S);
        let (mut a, mut b) = pair(s, slot(OTHER));
        let first = (0..initial).map(|k| put(&key_in(s, &format!("k{k}")), "first"));
        fill(&mut a, first.collect());
        let mut writes = Writes {
            ops: ops.into_iter(),
            at_fence: None,
            top_version: a.next - 1,
            late: 0,
            outside: outside(&a, s),
        };
        let b_outside = outside(&b, s);
        {
            let mut chaos = |a: &mut Replica| writes.next(a);
            let mut mover = Mover {
                slot: s,
                epoch: EPOCH,
                page_bytes,
                version_keys,
                small,
                max_rounds,
                chaos: &mut chaos,
                by_changes,
                baseline: None,
            };
            mover.run(&mut a, &mut b, EPOCH + 1);
        }
        let at_fence = writes.at_fence.clone().expect("the final round read A");
        prop_assert_eq!(slot_contents(&b, s), at_fence);
        prop_assert_eq!(a.kv.slot_state(s), SlotState::Absent);
        prop_assert!(slot_contents(&a, s).is_empty());
        prop_assert_eq!(outside(&a, s), writes.outside);
        prop_assert_eq!(outside(&b, s), b_outside);
        match b.run(put(&key_in(s, "k0"), "at b")) {
            ApplyOutcome::Put { revision } => prop_assert!(revision > writes.top_version),
            other => prop_assert!(false, "B refused: {:?}", other),
        }
    }
}

//! The apply-time ownership check, and why a slot-move command was refused.
//!
//! Both are outcomes, not failures: every replica reaches the same verdict from
//! the same slot table, and a refused entry changes nothing.

use bytes::Bytes;
use keel_placement::{Slot, slot_for_key};

use super::state::SlotState;
use super::table::SlotTable;
use crate::command::{Command, Escaped, Txn};

/// A client command touched a slot this group does not serve; nothing of it was
/// applied. The API maps [`SlotUnavailable::Moving`] to `SLOT_MOVING` and
/// [`SlotUnavailable::WrongGroup`] to `WRONG_GROUP` (`docs/sharding.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SlotUnavailable {
    /// The slot is being moved through this group (fenced, staging or
    /// ingested): retry; the write was definitely not applied.
    #[error("slot {slot} is moving between groups (here it is {state}); nothing was applied")]
    Moving {
        /// The first slot of the command that is not served.
        slot: Slot,
        /// Its state here.
        state: SlotState,
    },
    /// This group does not hold the slot (absent, or releasing it): ask the
    /// owner the map names; the write was definitely not applied.
    #[error("slot {slot} is not served by this group (here it is {state}); nothing was applied")]
    WrongGroup {
        /// The first slot of the command that is not served.
        slot: Slot,
        /// Its state here.
        state: SlotState,
    },
}

/// The first key of `command` (in the order it names them) whose slot `slots`
/// does not serve, as a refusal; `None` if all are served or the command is not
/// a client command. A transaction's every key counts, compared or read too:
/// reading a slot another group serves would decide its writes on stale data.
pub(crate) fn check_served(slots: &SlotTable, command: &Command) -> Option<SlotUnavailable> {
    let refuse = |key: &Bytes| refusal(slot_for_key(key), slots);
    match command {
        Command::Put { key, .. } | Command::Delete { key, .. } | Command::Add { key, .. } => {
            refuse(key)
        }
        Command::Txn(txn) => txn_keys(txn).find_map(refuse),
        Command::Slot(_) => None,
    }
}

fn txn_keys(txn: &Txn) -> impl Iterator<Item = &Bytes> {
    let compared = txn.compares.iter().map(|c| &c.key);
    let ops = txn.success.iter().chain(&txn.failure).map(|op| op.key());
    compared.chain(ops)
}

fn refusal(slot: Slot, slots: &SlotTable) -> Option<SlotUnavailable> {
    match slots.get(slot) {
        SlotState::Serving => None,
        state if state.is_moving() => Some(SlotUnavailable::Moving { slot, state }),
        state => Some(SlotUnavailable::WrongGroup { slot, state }),
    }
}

/// Why a slot-move command changed nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SlotCommandError {
    /// The slot is not in a state the step may start from (another move's
    /// epoch, or the wrong phase). `needs` says what it may start from.
    #[error("{step} of slot {slot} at epoch {epoch}: the slot is {found}, the step needs {needs}")]
    WrongState {
        /// The step's name (`FENCE-SLOT`, ...).
        step: &'static str,
        /// The slot.
        slot: Slot,
        /// The command's epoch.
        epoch: u64,
        /// The slot's state here.
        found: SlotState,
        /// What the step may start from, in words.
        needs: &'static str,
    },
    /// An ingest page holds a key of another slot.
    #[error(
        "an ingest page for slot {slot} holds key {} of slot {key_slot}",
        Escaped(key)
    )]
    KeyOutsideSlot {
        /// The page's slot.
        slot: Slot,
        /// The key.
        key: Bytes,
        /// The slot the key belongs to.
        key_slot: Slot,
    },
    /// `SlotIngested` carried a revision, or an ingest page a version, over
    /// [`super::MAX_REVISION`], which would leave later revisions no room to grow.
    #[error("revision {0} is over the limit {max}", max = super::MAX_REVISION)]
    RevisionTooLarge(u64),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Compare, CompareOp, CompareTarget, Expect, TxnOp};

    fn key_in(slot: Slot) -> Bytes {
        (0u32..)
            .map(|i| Bytes::from(format!("k{i}")))
            .find(|k| slot_for_key(k) == slot)
            .expect("some key hashes to every slot")
    }

    #[test]
    fn only_served_slots_pass_and_the_first_unserved_key_is_named() {
        let (a, b) = (Slot::new(1).expect("slot"), Slot::new(2).expect("slot"));
        let mut slots = SlotTable::all_serving();
        slots.set(a, SlotState::Fenced { epoch: 4 });
        slots.set(b, SlotState::Releasing { epoch: 4 });
        let put = |key: Bytes| Command::Put {
            key,
            value: Bytes::new(),
            expect: Expect::Any,
        };
        let served = key_in(Slot::new(3).expect("slot"));
        assert_eq!(check_served(&slots, &put(served.clone())), None);
        assert_eq!(
            check_served(&slots, &put(key_in(a))),
            Some(SlotUnavailable::Moving {
                slot: a,
                state: SlotState::Fenced { epoch: 4 }
            })
        );
        let del = Command::Delete {
            key: key_in(b),
            expect: Expect::Any,
        };
        assert_eq!(
            check_served(&slots, &del),
            Some(SlotUnavailable::WrongGroup {
                slot: b,
                state: SlotState::Releasing { epoch: 4 }
            })
        );
        // A transaction is refused for a key it only reads, in its failure branch.
        let txn = Command::Txn(Txn {
            compares: vec![Compare {
                key: served.clone(),
                target: CompareTarget::Version(CompareOp::Equal, 0),
            }],
            success: vec![TxnOp::Put {
                key: served,
                value: Bytes::new(),
            }],
            failure: vec![TxnOp::Get { key: key_in(b) }],
            read_limit: 0,
        });
        assert!(matches!(
            check_served(&slots, &txn),
            Some(SlotUnavailable::WrongGroup { slot, .. }) if slot == b
        ));
        slots.set(b, SlotState::Serving);
        assert_eq!(check_served(&slots, &txn), None);
        assert_eq!(
            check_served(&SlotTable::empty(), &put(key_in(b))),
            Some(SlotUnavailable::WrongGroup {
                slot: b,
                state: SlotState::Absent
            })
        );
    }
}

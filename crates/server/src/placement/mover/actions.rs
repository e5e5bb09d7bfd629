//! What a group's leader does about its slots, given the cluster map and its
//! own slot table: copy a slot that moves here, and finish what a committed or
//! aborted move left behind (`docs/sharding.md`, *Moving a slot*, steps 7–8
//! and *Abort*). Pure, so every rule has a test.
//!
//! The map is only read as evidence of what placement decided, never of what
//! a group holds: that is the group's own slot table. A move of slot *s* at
//! epoch *e* has ended once a map of version ≥ *e* (which includes its begin)
//! no longer lists it; it then committed if the slot's owner is the target,
//! and was aborted if the owner is still the source. A group's state at *e*
//! can only be left by the steps below, so a state at an ended epoch is always
//! a leftover of that very move.

use keel_placement::{ClusterMap, Slot};
use keel_raft::GroupId;
use keel_storage::kv::SlotState;

/// One thing to do about one slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SlotAction {
    /// This group is the target of the move of `slot` at `epoch` from `from`:
    /// copy it here and hand it over (the drive, `drive.rs`).
    Drive {
        /// The slot.
        slot: Slot,
        /// The move's epoch.
        epoch: u64,
        /// The source group.
        from: GroupId,
    },
    /// The move committed and this group holds the copy: serve it (`OwnSlot`).
    Own {
        /// The slot.
        slot: Slot,
        /// The move's epoch.
        epoch: u64,
    },
    /// The move was aborted and this group fenced the slot: serve it again
    /// (`UnfenceSlot`).
    Unfence {
        /// The slot.
        slot: Slot,
        /// The move's epoch.
        epoch: u64,
    },
    /// This group's data of the slot is no one's to serve (the source after a
    /// commit, the target after an abort): delete it (`DropSlot`, repeated
    /// until the slot is absent).
    Drop {
        /// The slot.
        slot: Slot,
        /// The move's epoch.
        epoch: u64,
    },
}

/// What the leader of `group` should do, in slot order, given `map` and the
/// slots the group holds in a move's state (`held`; any others are skipped).
pub(crate) fn slot_actions(
    map: &ClusterMap,
    group: GroupId,
    held: impl IntoIterator<Item = (Slot, SlotState)>,
) -> Vec<SlotAction> {
    let mut actions: Vec<SlotAction> = map
        .moves()
        .iter()
        .filter(|(_, mv)| mv.to == group)
        .map(|(&slot, mv)| SlotAction::Drive {
            slot,
            epoch: mv.epoch,
            from: mv.from,
        })
        .collect();
    for (slot, state) in held {
        let Some(epoch) = state.epoch() else {
            continue;
        };
        if let Some(action) = leftover(map, group, slot, state, epoch) {
            actions.push(action);
        }
    }
    actions.sort_by_key(|a| match *a {
        SlotAction::Drive { slot, .. }
        | SlotAction::Own { slot, .. }
        | SlotAction::Unfence { slot, .. }
        | SlotAction::Drop { slot, .. } => slot,
    });
    actions
}

/// What to do about `slot`, held in `state` at `epoch`, unless its move is
/// still in flight, the map is too old to say, or a move to this group is in
/// flight (the drive clears whatever the group holds first).
fn leftover(
    map: &ClusterMap,
    group: GroupId,
    slot: Slot,
    state: SlotState,
    epoch: u64,
) -> Option<SlotAction> {
    if map.version() < epoch {
        return None;
    }
    if let Some(mv) = map.moves().get(&slot)
        && (mv.epoch == epoch || mv.to == group)
    {
        return None;
    }
    let owns = map.owner(slot) == Some(group);
    let action = match state {
        SlotState::Fenced { .. } if owns => SlotAction::Unfence { slot, epoch },
        SlotState::Ingested { .. } if owns => SlotAction::Own { slot, epoch },
        SlotState::Fenced { .. }
        | SlotState::Staging { .. }
        | SlotState::Ingested { .. }
        | SlotState::Releasing { .. } => SlotAction::Drop { slot, epoch },
        SlotState::Absent | SlotState::Serving => return None,
    };
    Some(action)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use keel_placement::Command;

    use keel_storage::kv::SlotTable;

    use super::*;
    use crate::placement::test_maps::{slot, two_groups};

    /// Begins moving `s` to `to`; the move's epoch.
    fn begin(map: &mut ClusterMap, s: u16, to: GroupId) -> u64 {
        map.apply(&Command::BeginSlotMove { slot: slot(s), to })
            .expect("begin");
        map.version()
    }

    fn table(states: &[(u16, SlotState)]) -> SlotTable {
        let mut t = SlotTable::empty();
        for &(s, state) in states {
            t.set(slot(s), state);
        }
        t
    }

    #[test]
    fn the_target_drives_a_move_in_flight_and_the_source_waits() {
        let mut map = two_groups();
        let e = begin(&mut map, 7, 2);
        let drive = SlotAction::Drive {
            slot: slot(7),
            epoch: e,
            from: 1,
        };
        // Whatever the target holds, the drive deals with it.
        for held in [
            SlotState::Absent,
            SlotState::Staging { epoch: e },
            SlotState::Staging { epoch: e - 1 },
            SlotState::Releasing { epoch: 1 },
        ] {
            assert_eq!(
                slot_actions(&map, 2, table(&[(7, held)]).iter()),
                vec![drive]
            );
        }
        // The source serving or fenced for this move does nothing.
        let mut source = SlotTable::all_serving();
        assert_eq!(slot_actions(&map, 1, source.iter()), vec![]);
        source.set(slot(7), SlotState::Fenced { epoch: e });
        assert_eq!(slot_actions(&map, 1, source.iter()), vec![]);
    }

    #[test]
    fn after_a_commit_the_target_owns_and_the_source_drops() {
        let mut map = two_groups();
        let e = begin(&mut map, 7, 2);
        map.apply(&Command::CommitSlotMove {
            slot: slot(7),
            epoch: e,
        })
        .expect("commit");
        let b = table(&[(7, SlotState::Ingested { epoch: e })]);
        assert_eq!(
            slot_actions(&map, 2, b.iter()),
            vec![SlotAction::Own {
                slot: slot(7),
                epoch: e
            }]
        );
        let mut a = SlotTable::all_serving();
        a.set(slot(7), SlotState::Fenced { epoch: e });
        assert_eq!(
            slot_actions(&map, 1, a.iter()),
            vec![SlotAction::Drop {
                slot: slot(7),
                epoch: e
            }]
        );
        a.set(slot(7), SlotState::Releasing { epoch: e });
        assert_eq!(
            slot_actions(&map, 1, a.iter()),
            vec![SlotAction::Drop {
                slot: slot(7),
                epoch: e
            }]
        );
        // Done: nothing left to do on either side.
        a.set(slot(7), SlotState::Absent);
        assert_eq!(slot_actions(&map, 1, a.iter()), vec![]);
        let b = table(&[(7, SlotState::Serving)]);
        assert_eq!(slot_actions(&map, 2, b.iter()), vec![]);
    }

    #[test]
    fn after_an_abort_the_source_unfences_and_the_target_drops() {
        let mut map = two_groups();
        let e = begin(&mut map, 7, 2);
        map.apply(&Command::AbortSlotMove {
            slot: slot(7),
            epoch: e,
        })
        .expect("abort");
        let mut a = SlotTable::all_serving();
        a.set(slot(7), SlotState::Fenced { epoch: e });
        assert_eq!(
            slot_actions(&map, 1, a.iter()),
            vec![SlotAction::Unfence {
                slot: slot(7),
                epoch: e
            }]
        );
        for held in [
            SlotState::Staging { epoch: e },
            SlotState::Ingested { epoch: e },
            SlotState::Releasing { epoch: e },
        ] {
            assert_eq!(
                slot_actions(&map, 2, table(&[(7, held)]).iter()),
                vec![SlotAction::Drop {
                    slot: slot(7),
                    epoch: e
                }],
                "{held}"
            );
        }
    }

    #[test]
    fn a_map_older_than_the_move_decides_nothing() {
        // The source fenced at epoch e, but this node's map predates the begin:
        // "no move in flight, I own it" must not read as an abort.
        let map = two_groups();
        let e = map.version() + 1;
        let mut a = SlotTable::all_serving();
        a.set(slot(7), SlotState::Fenced { epoch: e });
        assert_eq!(slot_actions(&map, 1, a.iter()), vec![]);
        let b = table(&[(7, SlotState::Ingested { epoch: e })]);
        assert_eq!(slot_actions(&map, 2, b.iter()), vec![]);
    }

    #[test]
    fn a_new_move_of_the_slot_leaves_the_old_leftovers_to_their_rules() {
        // Slot 7: a move to group 2 aborted, then a new one to group 3 began.
        let mut map = two_groups();
        map.apply(&Command::CreateGroup {
            members: BTreeSet::from([1, 2, 3]),
            target_replicas: 3,
        })
        .expect("create");
        let e = begin(&mut map, 7, 2);
        map.apply(&Command::AbortSlotMove {
            slot: slot(7),
            epoch: e,
        })
        .expect("abort");
        let e2 = begin(&mut map, 7, 3);
        let mut a = SlotTable::all_serving();
        a.set(slot(7), SlotState::Fenced { epoch: e });
        assert_eq!(
            slot_actions(&map, 1, a.iter()),
            vec![SlotAction::Unfence {
                slot: slot(7),
                epoch: e
            }]
        );
        let b = table(&[(7, SlotState::Staging { epoch: e })]);
        assert_eq!(
            slot_actions(&map, 2, b.iter()),
            vec![SlotAction::Drop {
                slot: slot(7),
                epoch: e
            }]
        );
        // Group 3 drives its own move, whatever it holds.
        let c = table(&[(7, SlotState::Releasing { epoch: e })]);
        assert_eq!(
            slot_actions(&map, 3, c.iter()),
            vec![SlotAction::Drive {
                slot: slot(7),
                epoch: e2,
                from: 1
            }]
        );
    }
}

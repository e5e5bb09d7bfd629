//! One test per rule of the placement commands.

mod common;

use common::{
    addr, begin, cluster, create, move_slot, ok, refused, set, slot, unchanged, with_nodes,
};
use keel_placement::{
    ClusterMap, Command, CommandError, MAX_MOVES, MAX_NODES, MAX_REPLICAS, NodeState,
    PLACEMENT_GROUP, Slot,
};

// ---- nodes ----

#[test]
fn registering_a_node_adds_it_active_and_bumps_the_version() {
    let mut map = ClusterMap::new();
    let applied = ok(
        &mut map,
        Command::RegisterNode {
            node: 7,
            address: addr(7),
        },
    );
    assert!(applied.changed);
    assert_eq!(applied.version, 1);
    assert_eq!(map.nodes()[&7].state, NodeState::Active);
    assert_eq!(map.nodes()[&7].address, addr(7));
}

#[test]
fn registering_again_at_the_same_address_changes_nothing() {
    let mut map = with_nodes(2);
    unchanged(
        &mut map,
        Command::RegisterNode {
            node: 2,
            address: addr(2),
        },
    );
}

#[test]
fn registering_again_at_a_new_address_moves_the_node() {
    let mut map = with_nodes(2);
    ok(
        &mut map,
        Command::RegisterNode {
            node: 2,
            address: "10.9.9.9:7001".into(),
        },
    );
    assert_eq!(map.nodes()[&2].address, "10.9.9.9:7001");
}

#[test]
fn node_zero_and_bad_addresses_are_refused() {
    let mut map = with_nodes(1);
    let register = |node, address: &str| Command::RegisterNode {
        node,
        address: address.into(),
    };
    assert_eq!(
        refused(&mut map, register(0, "a:1")),
        CommandError::InvalidNodeId
    );
    for bad in ["", "a b:1", "a:1\n", &"x".repeat(257)] {
        assert!(matches!(
            refused(&mut map, register(2, bad)),
            CommandError::InvalidAddress { .. }
        ));
    }
    assert!(map.apply(&register(2, &"x".repeat(256))).is_ok());
}

#[test]
fn an_address_belongs_to_one_node() {
    let mut map = with_nodes(2);
    let err = refused(
        &mut map,
        Command::RegisterNode {
            node: 3,
            address: addr(1),
        },
    );
    assert_eq!(
        err,
        CommandError::AddressInUse {
            address: addr(1),
            node: 1
        }
    );
}

#[test]
fn the_node_count_is_limited() {
    let mut map = with_nodes(MAX_NODES as u64);
    let err = refused(
        &mut map,
        Command::RegisterNode {
            node: 5000,
            address: "elsewhere:1".into(),
        },
    );
    assert_eq!(err, CommandError::TooManyNodes { limit: MAX_NODES });
    // A known node may still move.
    ok(
        &mut map,
        Command::RegisterNode {
            node: 1,
            address: "elsewhere:1".into(),
        },
    );
}

#[test]
fn draining_marks_a_node_once_and_needs_a_known_node() {
    let mut map = with_nodes(2);
    ok(&mut map, Command::DrainNode { node: 2 });
    assert_eq!(map.nodes()[&2].state, NodeState::Draining);
    unchanged(&mut map, Command::DrainNode { node: 2 });
    assert_eq!(
        refused(&mut map, Command::DrainNode { node: 9 }),
        CommandError::UnknownNode { node: 9 }
    );
}

#[test]
fn a_node_holding_replicas_cannot_be_removed() {
    let mut map = cluster(4);
    assert_eq!(
        refused(&mut map, Command::RemoveNode { node: 2 }),
        CommandError::NodeHoldsReplicas {
            node: 2,
            groups: vec![1]
        }
    );
    ok(&mut map, Command::RemoveNode { node: 4 });
    assert!(!map.nodes().contains_key(&4));
    // Gone already: nothing to do.
    unchanged(&mut map, Command::RemoveNode { node: 4 });
}

// ---- groups ----

#[test]
fn the_first_group_owns_every_slot_and_later_ones_none() {
    let mut map = with_nodes(6);
    assert_eq!(map.owner(slot(0)), None);
    let first = create(&mut map, &[1, 2, 3], 3);
    assert_eq!(first, 1);
    assert!(Slot::all().all(|s| map.owner(s) == Some(1)));
    let second = create(&mut map, &[4, 5, 6], 3);
    assert_eq!(second, 2);
    assert_eq!(map.slot_counts()[&2], 0);
    assert_eq!(map.slot_counts()[&1], 4096);
}

#[test]
fn group_creation_checks_members_and_target() {
    let mut map = with_nodes(4);
    ok(&mut map, Command::DrainNode { node: 4 });
    let create = |members: &[u64], target| Command::CreateGroup {
        members: set(members),
        target_replicas: target,
    };
    assert_eq!(refused(&mut map, create(&[], 3)), CommandError::EmptyGroup);
    assert_eq!(
        refused(&mut map, create(&[1], 0)),
        CommandError::InvalidTarget { target: 0 }
    );
    assert_eq!(
        refused(&mut map, create(&[1], MAX_REPLICAS as u8 + 1)),
        CommandError::InvalidTarget { target: 8 }
    );
    assert_eq!(
        refused(&mut map, create(&[1, 2, 3], 2)),
        CommandError::TooManyMembers {
            members: 3,
            limit: 2
        }
    );
    assert_eq!(
        refused(&mut map, create(&[1, 9], 3)),
        CommandError::UnknownNode { node: 9 }
    );
    assert_eq!(
        refused(&mut map, create(&[1, 4], 3)),
        CommandError::NodeDraining { node: 4 }
    );
}

#[test]
fn group_ids_are_never_reused() {
    let mut map = cluster(4);
    let g = create(&mut map, &[4], 3);
    ok(&mut map, Command::RemoveGroup { group: g });
    assert_eq!(create(&mut map, &[4], 3), g + 1);
    assert_eq!(map.next_group_id(), g + 2);
    assert!(map.groups().keys().all(|&id| id != PLACEMENT_GROUP));
}

#[test]
fn a_group_that_owns_slots_or_is_a_move_target_cannot_be_removed() {
    let mut map = cluster(4);
    let g = create(&mut map, &[4], 1);
    assert_eq!(
        refused(&mut map, Command::RemoveGroup { group: 1 }),
        CommandError::GroupOwnsSlots {
            group: 1,
            slots: 4096
        }
    );
    begin(&mut map, slot(5), g);
    assert_eq!(
        refused(&mut map, Command::RemoveGroup { group: g }),
        CommandError::GroupInMove {
            group: g,
            slot: slot(5)
        }
    );
    unchanged(&mut map, Command::RemoveGroup { group: 99 });
}

#[test]
fn the_target_replica_count_can_change_within_range() {
    let mut map = cluster(3);
    ok(
        &mut map,
        Command::SetTargetReplicas {
            group: 1,
            target_replicas: 5,
        },
    );
    assert_eq!(map.groups()[&1].target_replicas, 5);
    assert!(!map.groups()[&1].is_full());
    unchanged(
        &mut map,
        Command::SetTargetReplicas {
            group: 1,
            target_replicas: 5,
        },
    );
    assert_eq!(
        refused(
            &mut map,
            Command::SetTargetReplicas {
                group: 1,
                target_replicas: 0
            }
        ),
        CommandError::InvalidTarget { target: 0 }
    );
    assert_eq!(
        refused(
            &mut map,
            Command::SetTargetReplicas {
                group: 2,
                target_replicas: 3
            }
        ),
        CommandError::UnknownGroup { group: 2 }
    );
}

#[test]
fn members_are_added_once_to_known_groups_on_active_nodes() {
    let mut map = cluster(5);
    ok(&mut map, Command::AddGroupMember { group: 1, node: 4 });
    assert_eq!(map.groups()[&1].members, set(&[1, 2, 3, 4]));
    unchanged(&mut map, Command::AddGroupMember { group: 1, node: 4 });
    ok(&mut map, Command::DrainNode { node: 5 });
    assert_eq!(
        refused(&mut map, Command::AddGroupMember { group: 1, node: 5 }),
        CommandError::NodeDraining { node: 5 }
    );
    assert_eq!(
        refused(&mut map, Command::AddGroupMember { group: 1, node: 8 }),
        CommandError::UnknownNode { node: 8 }
    );
    assert_eq!(
        refused(&mut map, Command::AddGroupMember { group: 3, node: 4 }),
        CommandError::UnknownGroup { group: 3 }
    );
}

#[test]
fn a_group_has_at_most_seven_members() {
    let mut map = with_nodes(8);
    create(&mut map, &[1, 2, 3], 3);
    for node in 4..=7 {
        ok(&mut map, Command::AddGroupMember { group: 1, node });
    }
    assert_eq!(
        refused(&mut map, Command::AddGroupMember { group: 1, node: 8 }),
        CommandError::TooManyMembers {
            members: 8,
            limit: MAX_REPLICAS
        }
    );
}

#[test]
fn the_last_member_stays() {
    let mut map = cluster(3);
    ok(&mut map, Command::RemoveGroupMember { group: 1, node: 1 });
    ok(&mut map, Command::RemoveGroupMember { group: 1, node: 2 });
    unchanged(&mut map, Command::RemoveGroupMember { group: 1, node: 2 });
    assert_eq!(
        refused(&mut map, Command::RemoveGroupMember { group: 1, node: 3 }),
        CommandError::LastMember { group: 1, node: 3 }
    );
}

// ---- slot moves ----

#[test]
fn a_move_keeps_the_owner_until_it_commits() {
    let mut map = cluster(6);
    let g = create(&mut map, &[4, 5, 6], 3);
    let epoch = begin(&mut map, slot(9), g);
    let m = map.moves()[&slot(9)];
    assert_eq!((m.from, m.to, m.epoch), (1, g, epoch));
    assert_eq!(map.owner(slot(9)), Some(1));
    ok(
        &mut map,
        Command::CommitSlotMove {
            slot: slot(9),
            epoch,
        },
    );
    assert_eq!(map.owner(slot(9)), Some(g));
    assert!(map.moves().is_empty());
}

#[test]
fn an_aborted_move_leaves_the_owner() {
    let mut map = cluster(4);
    let g = create(&mut map, &[4], 1);
    let epoch = begin(&mut map, slot(1), g);
    ok(
        &mut map,
        Command::AbortSlotMove {
            slot: slot(1),
            epoch,
        },
    );
    assert_eq!(map.owner(slot(1)), Some(1));
    assert!(map.moves().is_empty());
}

#[test]
fn one_move_per_slot() {
    let mut map = cluster(5);
    let a = create(&mut map, &[4], 1);
    let b = create(&mut map, &[5], 1);
    let epoch = begin(&mut map, slot(3), a);
    // The same move again: already true.
    unchanged(
        &mut map,
        Command::BeginSlotMove {
            slot: slot(3),
            to: a,
        },
    );
    assert_eq!(
        refused(
            &mut map,
            Command::BeginSlotMove {
                slot: slot(3),
                to: b
            }
        ),
        CommandError::SlotAlreadyMoving {
            slot: slot(3),
            to: a,
            epoch
        }
    );
}

#[test]
fn a_move_needs_a_known_target_that_is_not_the_owner() {
    let mut map = ClusterMap::new();
    let begin = |to| Command::BeginSlotMove { slot: slot(0), to };
    assert_eq!(
        refused(&mut map, begin(1)),
        CommandError::UnknownGroup { group: 1 }
    );
    let mut map = cluster(3);
    assert_eq!(
        refused(&mut map, begin(1)),
        CommandError::AlreadyOwner {
            slot: slot(0),
            group: 1
        }
    );
    assert_eq!(
        refused(&mut map, begin(2)),
        CommandError::UnknownGroup { group: 2 }
    );
}

#[test]
fn moves_in_flight_are_limited() {
    let mut map = cluster(4);
    let g = create(&mut map, &[4], 1);
    for n in 0..MAX_MOVES as u16 {
        begin(&mut map, slot(n), g);
    }
    assert_eq!(
        refused(
            &mut map,
            Command::BeginSlotMove {
                slot: slot(4000),
                to: g
            }
        ),
        CommandError::TooManyMoves { limit: MAX_MOVES }
    );
}

#[test]
fn a_stale_epoch_neither_commits_nor_aborts_a_later_move() {
    let mut map = cluster(5);
    let a = create(&mut map, &[4], 1);
    let old = begin(&mut map, slot(2), a);
    ok(
        &mut map,
        Command::AbortSlotMove {
            slot: slot(2),
            epoch: old,
        },
    );
    let new = begin(&mut map, slot(2), a);
    // The first mover, unaware of the abort, tries to commit its move.
    assert_eq!(
        refused(
            &mut map,
            Command::CommitSlotMove {
                slot: slot(2),
                epoch: old
            }
        ),
        CommandError::MoveNotFound {
            slot: slot(2),
            epoch: old,
            current: Some(new)
        }
    );
    assert!(matches!(
        refused(
            &mut map,
            Command::AbortSlotMove {
                slot: slot(2),
                epoch: old
            }
        ),
        CommandError::MoveNotFound { .. }
    ));
}

#[test]
fn a_committed_move_cannot_be_aborted_or_committed_again() {
    let mut map = cluster(4);
    let g = create(&mut map, &[4], 1);
    let epoch = begin(&mut map, slot(8), g);
    ok(
        &mut map,
        Command::CommitSlotMove {
            slot: slot(8),
            epoch,
        },
    );
    // An abort answered "unchanged" here would let the source resume serving
    // a slot the target owns: it must be an error.
    let gone = CommandError::MoveNotFound {
        slot: slot(8),
        epoch,
        current: None,
    };
    assert_eq!(
        refused(
            &mut map,
            Command::AbortSlotMove {
                slot: slot(8),
                epoch
            }
        ),
        gone
    );
    assert_eq!(
        refused(
            &mut map,
            Command::CommitSlotMove {
                slot: slot(8),
                epoch
            }
        ),
        gone
    );
    assert_eq!(map.owner(slot(8)), Some(g));
}

#[test]
fn a_slot_can_move_back() {
    let mut map = cluster(4);
    let g = create(&mut map, &[4], 1);
    move_slot(&mut map, slot(100), g);
    move_slot(&mut map, slot(100), 1);
    assert_eq!(map.owner(slot(100)), Some(1));
    assert_eq!(map.slot_counts()[&g], 0);
}

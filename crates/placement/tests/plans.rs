//! Placement decisions: joining, removing a node, rebalancing.

mod common;

use common::{cluster, create, move_slot, ok, set, slot, with_nodes};
use keel_placement::plan::{self, PlanError, PlannedMove};
use keel_placement::{ClusterMap, Command, CommandError};

/// Registers `node` and applies its join plan.
fn join(map: &mut ClusterMap, node: u64) -> Command {
    ok(
        map,
        Command::RegisterNode {
            node,
            address: common::addr(node),
        },
    );
    let command = plan::join(map, node, 3)
        .expect("a plan")
        .expect("a new node gets a replica");
    ok(map, command.clone());
    command
}

// ---- joining ----

#[test]
fn the_first_node_of_a_new_cluster_forms_the_first_group() {
    let map = with_nodes(3);
    assert_eq!(
        plan::join(&map, 1, 3),
        Ok(Some(Command::CreateGroup {
            members: set(&[1, 2, 3]),
            target_replicas: 3
        }))
    );
}

#[test]
fn a_joining_node_fills_the_group_with_the_fewest_replicas() {
    let mut map = with_nodes(6);
    create(&mut map, &[1, 2], 3);
    create(&mut map, &[3], 3);
    create(&mut map, &[4], 3);
    // Groups 2 and 3 both have one member: the lower id wins.
    assert_eq!(
        plan::join(&map, 5, 3),
        Ok(Some(Command::AddGroupMember { group: 2, node: 5 }))
    );
}

#[test]
fn a_joining_node_forms_a_new_group_once_every_group_is_full() {
    let mut map = cluster(3);
    // Nodes 1-3 each hold one replica; the newcomer takes the two lowest ids.
    assert_eq!(
        join(&mut map, 4),
        Command::CreateGroup {
            members: set(&[1, 2, 4]),
            target_replicas: 3
        }
    );
    // Now 3 and 4 hold the fewest.
    assert_eq!(
        join(&mut map, 5),
        Command::CreateGroup {
            members: set(&[3, 4, 5]),
            target_replicas: 3
        }
    );
}

#[test]
fn joining_twice_places_a_node_once() {
    let mut map = cluster(3);
    join(&mut map, 4);
    assert_eq!(plan::join(&map, 4, 3), Ok(None));
}

#[test]
fn joins_keep_every_group_full_and_no_node_overloaded() {
    let mut map = cluster(3);
    for node in 4..=40 {
        join(&mut map, node);
        assert!(map.groups().values().all(|g| g.is_full()));
        // Each join adds a group of three, so the average nears three replicas
        // per node; picking the least loaded keeps every node at or below it,
        // and the newest holds one (a replica balancer is future work).
        let counts = map.replica_counts();
        assert_eq!(counts[&node], 1);
        assert!(counts.values().all(|&c| (1..=3).contains(&c)), "{counts:?}");
    }
}

#[test]
fn a_join_needs_an_active_registered_node_and_a_sane_replica_count() {
    let mut map = cluster(4);
    assert_eq!(
        plan::join(&map, 9, 3),
        Err(PlanError::Refused(CommandError::UnknownNode { node: 9 }))
    );
    assert_eq!(
        plan::join(&map, 4, 0),
        Err(PlanError::Refused(CommandError::InvalidTarget {
            target: 0
        }))
    );
    assert_eq!(
        plan::join(&map, 4, 8),
        Err(PlanError::Refused(CommandError::InvalidTarget {
            target: 8
        }))
    );
    ok(&mut map, Command::DrainNode { node: 4 });
    assert_eq!(
        plan::join(&map, 4, 3),
        Err(PlanError::Refused(CommandError::NodeDraining { node: 4 }))
    );
}

#[test]
fn a_small_cluster_forms_a_smaller_group_that_later_joins_fill() {
    let mut map = with_nodes(2);
    assert_eq!(
        plan::join(&map, 1, 3),
        Ok(Some(Command::CreateGroup {
            members: set(&[1, 2]),
            target_replicas: 3
        }))
    );
    create(&mut map, &[1, 2], 3);
    assert_eq!(
        join(&mut map, 3),
        Command::AddGroupMember { group: 1, node: 3 }
    );
}

// ---- removing a node ----

#[test]
fn removal_replaces_each_replica_before_removing_it() {
    let mut map = cluster(6);
    create(&mut map, &[1, 4, 5], 3);
    let removal = plan::node_removal(&map, 1).expect("a plan");
    // Node 6 holds nothing, so it takes group 1's replica. For group 2, nodes
    // 2, 3 and 6 (counting the replica just planned) hold one each: 2 wins.
    assert_eq!(
        removal.commands,
        vec![
            Command::DrainNode { node: 1 },
            Command::AddGroupMember { group: 1, node: 6 },
            Command::RemoveGroupMember { group: 1, node: 1 },
            Command::AddGroupMember { group: 2, node: 2 },
            Command::RemoveGroupMember { group: 2, node: 1 },
            Command::RemoveNode { node: 1 },
        ]
    );
    assert!(removal.not_replaced.is_empty());
    for command in removal.commands {
        ok(&mut map, command);
    }
    assert!(!map.nodes().contains_key(&1));
    assert!(map.groups().values().all(|g| g.members.len() == 3));
}

#[test]
fn removal_from_a_group_at_the_member_limit_removes_before_it_adds() {
    let mut map = with_nodes(8);
    create(&mut map, &[1, 2, 3, 4, 5, 6, 7], 7);
    let removal = plan::node_removal(&map, 1).expect("a plan");
    assert_eq!(
        removal.commands[1..3],
        [
            Command::RemoveGroupMember { group: 1, node: 1 },
            Command::AddGroupMember { group: 1, node: 8 },
        ]
    );
    for command in removal.commands {
        ok(&mut map, command);
    }
    assert_eq!(map.groups()[&1].members, set(&[2, 3, 4, 5, 6, 7, 8]));
}

#[test]
fn removal_without_a_spare_node_shrinks_the_group_and_says_so() {
    let mut map = cluster(3);
    let removal = plan::node_removal(&map, 3).expect("a plan");
    assert_eq!(removal.not_replaced, vec![1]);
    for command in removal.commands {
        ok(&mut map, command);
    }
    assert_eq!(map.groups()[&1].members, set(&[1, 2]));
}

#[test]
fn removal_never_strands_a_group() {
    let mut map = with_nodes(1);
    create(&mut map, &[1], 1);
    assert_eq!(
        plan::node_removal(&map, 1),
        Err(PlanError::Stranded { group: 1, node: 1 })
    );
    assert_eq!(
        plan::node_removal(&map, 2),
        Err(PlanError::Refused(CommandError::UnknownNode { node: 2 }))
    );
}

#[test]
fn removal_planned_again_after_a_replacement_was_added_only_removes() {
    let mut map = cluster(6);
    create(&mut map, &[1, 4, 5], 3);
    let first = plan::node_removal(&map, 1).expect("a plan");
    // Cut short after group 1's replacement (drain, add 6).
    for command in first.commands[..2].iter().cloned() {
        ok(&mut map, command);
    }
    let again = plan::node_removal(&map, 1).expect("a plan");
    assert_eq!(
        again.commands,
        vec![
            Command::RemoveGroupMember { group: 1, node: 1 },
            Command::AddGroupMember { group: 2, node: 2 },
            Command::RemoveGroupMember { group: 2, node: 1 },
            Command::RemoveNode { node: 1 },
        ]
    );
    for command in again.commands {
        ok(&mut map, command);
    }
    assert!(map.groups().values().all(|g| g.members.len() == 3));
}

#[test]
fn removal_of_a_draining_node_does_not_drain_it_again() {
    let mut map = cluster(4);
    ok(&mut map, Command::DrainNode { node: 4 });
    let removal = plan::node_removal(&map, 4).expect("a plan");
    assert_eq!(removal.commands, vec![Command::RemoveNode { node: 4 }]);
}

// ---- rebalancing ----

fn apply_moves(map: &mut ClusterMap, moves: &[PlannedMove]) {
    for m in moves {
        assert_eq!(map.owner(m.slot), Some(m.from));
        move_slot(map, m.slot, m.to);
    }
}

#[test]
fn a_new_group_gets_the_upper_half() {
    let mut map = cluster(6);
    let g = create(&mut map, &[4, 5, 6], 3);
    let moves = plan::rebalance(&map, usize::MAX);
    assert_eq!(moves.len(), 2048);
    assert!(
        moves
            .iter()
            .zip(2048..)
            .all(|(m, n)| m.slot == slot(n) && m.from == 1 && m.to == g)
    );
    assert_eq!(
        moves[0].begin(),
        Command::BeginSlotMove {
            slot: slot(2048),
            to: g
        }
    );
    apply_moves(&mut map, &moves);
    assert!(plan::rebalance(&map, usize::MAX).is_empty());
}

#[test]
fn a_third_group_takes_from_both_and_the_largest_keep_the_extra_slot() {
    let mut map = cluster(9);
    let b = create(&mut map, &[4, 5, 6], 3);
    let halves = plan::rebalance(&map, usize::MAX);
    apply_moves(&mut map, &halves);
    let c = create(&mut map, &[7, 8, 9], 3);
    let moves = plan::rebalance(&map, usize::MAX);
    // 4096 = 3 * 1365 + 1: group 1 (2048, lowest id among the largest) keeps
    // 1366 and gives 682; group b gives 683.
    assert_eq!(moves.len(), 682 + 683);
    apply_moves(&mut map, &moves);
    let counts = map.slot_counts();
    assert_eq!((counts[&1], counts[&b], counts[&c]), (1366, 1365, 1365));
}

#[test]
fn groups_short_of_replicas_neither_give_nor_take() {
    let mut map = cluster(6);
    let short = create(&mut map, &[4], 3);
    assert!(plan::rebalance(&map, usize::MAX).is_empty());
    let full = create(&mut map, &[5, 6], 2);
    move_slot(&mut map, slot(0), short);
    let moves = plan::rebalance(&map, usize::MAX);
    assert!(moves.iter().all(|m| m.from == 1 && m.to == full));
    assert_eq!(moves.len(), 2047);
}

#[test]
fn a_plan_is_cut_at_the_limit_and_continues_next_time() {
    let mut map = cluster(6);
    create(&mut map, &[4, 5, 6], 3);
    let mut rounds = 0;
    loop {
        let moves = plan::rebalance(&map, 500);
        if moves.is_empty() {
            break;
        }
        assert!(moves.len() <= 500);
        apply_moves(&mut map, &moves);
        rounds += 1;
    }
    assert_eq!(rounds, 5, "2048 moves in rounds of 500");
}

#[test]
fn moves_in_flight_count_for_their_target_and_are_not_planned_again() {
    let mut map = cluster(6);
    let g = create(&mut map, &[4, 5, 6], 3);
    for n in 0..10 {
        ok(
            &mut map,
            Command::BeginSlotMove {
                slot: slot(n),
                to: g,
            },
        );
    }
    let moves = plan::rebalance(&map, usize::MAX);
    assert_eq!(moves.len(), 2038);
    assert!(moves.iter().all(|m| m.slot.get() >= 10));
}

#[test]
fn no_groups_no_plan() {
    assert!(plan::rebalance(&with_nodes(3), usize::MAX).is_empty());
    // A single full group owns everything: balanced already.
    assert!(plan::rebalance(&cluster(3), usize::MAX).is_empty());
}

// ---- joining through placement (`Command::JoinNode`) ----

fn join_node(node: u64) -> Command {
    Command::JoinNode {
        node,
        address: common::addr(node),
        new_group_replicas: 3,
    }
}

#[test]
fn a_join_node_command_registers_and_places_in_one_version() {
    let mut map = cluster(3);
    let before = map.version();
    let applied = ok(&mut map, join_node(4));
    assert_eq!(applied.version, before + 1);
    assert_eq!(applied.created_group, Some(2));
    assert_eq!(map.groups()[&2].members, set(&[1, 2, 4]));
    assert!(map.nodes().contains_key(&4));
    // Retried after an unknown outcome: nothing more happens.
    common::unchanged(&mut map, join_node(4));
    // The next joiner is placed on the map as the first join left it.
    let applied = ok(&mut map, join_node(5));
    assert_eq!(applied.created_group, Some(3));
    assert_eq!(map.groups()[&3].members, set(&[3, 4, 5]));
}

#[test]
fn a_join_node_command_fills_a_short_group_but_never_group_1() {
    let mut map = with_nodes(2);
    create(&mut map, &[1, 2], 3);
    // Group 1 is short, but its members are its Raft configuration's: the
    // joiner forms a new group instead.
    let applied = ok(&mut map, join_node(3));
    assert_eq!(applied.created_group, Some(2));
    assert_eq!(map.groups()[&1].members, set(&[1, 2]));
    // A short group other than group 1 is filled.
    create(&mut map, &[1], 3);
    ok(&mut map, join_node(4));
    assert_eq!(map.groups()[&3].members, set(&[1, 4]));
}

#[test]
fn a_refused_join_node_command_changes_nothing() {
    let mut map = cluster(3);
    let before = map.clone();
    // A bad replica count is refused after the registration was tried: the
    // registration does not stay behind.
    let refused = common::refused(
        &mut map,
        Command::JoinNode {
            node: 4,
            address: common::addr(4),
            new_group_replicas: 0,
        },
    );
    assert_eq!(refused, CommandError::InvalidTarget { target: 0 });
    assert_eq!(map, before);
    // So is an address another node uses.
    let refused = common::refused(
        &mut map,
        Command::JoinNode {
            node: 4,
            address: common::addr(1),
            new_group_replicas: 3,
        },
    );
    assert!(matches!(
        refused,
        CommandError::AddressInUse { node: 1, .. }
    ));
    assert_eq!(map, before);
    // A draining node gets nothing new.
    ok(&mut map, join_node(4));
    ok(&mut map, Command::DrainNode { node: 4 });
    assert_eq!(
        common::refused(&mut map, join_node(4)),
        CommandError::NodeDraining { node: 4 }
    );
}

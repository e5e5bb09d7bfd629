//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeSet;

use keel_placement::{Applied, ClusterMap, Command, CommandError, GroupId, NodeId, Slot};

/// The address node `id` registers at.
pub fn addr(id: NodeId) -> String {
    format!("10.0.0.{id}:7001")
}

/// Applies `command`, which must succeed and leave a valid map.
pub fn ok(map: &mut ClusterMap, command: Command) -> Applied {
    let before = map.version();
    let applied = map
        .apply(&command)
        .unwrap_or_else(|e| panic!("{command:?} was refused: {e}"));
    map.validate().expect("the map keeps its rules");
    let expected = before + u64::from(applied.changed);
    assert_eq!(
        applied.version, expected,
        "the version grows by one per change"
    );
    assert_eq!(map.version(), expected);
    applied
}

/// Applies `command`, which must succeed without changing anything.
pub fn unchanged(map: &mut ClusterMap, command: Command) {
    let before = map.clone();
    let applied = ok(map, command);
    assert!(!applied.changed);
    assert_eq!(*map, before);
}

/// Applies `command`, which must be refused, leaving the map exactly as it was.
pub fn refused(map: &mut ClusterMap, command: Command) -> CommandError {
    let before = map.clone();
    let err = map
        .apply(&command)
        .expect_err("the command should have been refused");
    assert_eq!(*map, before, "a refused command changed the map");
    err
}

/// A map with nodes `1..=nodes` registered.
pub fn with_nodes(nodes: NodeId) -> ClusterMap {
    let mut map = ClusterMap::new();
    for id in 1..=nodes {
        ok(
            &mut map,
            Command::RegisterNode {
                node: id,
                address: addr(id),
            },
        );
    }
    map
}

/// Creates a group of `members` with target `target`, returning its id.
pub fn create(map: &mut ClusterMap, members: &[NodeId], target: u8) -> GroupId {
    ok(
        map,
        Command::CreateGroup {
            members: members.iter().copied().collect(),
            target_replicas: target,
        },
    )
    .created_group
    .expect("a created group has an id")
}

/// A map with nodes `1..=nodes` and group 1 on nodes 1..=3 (target 3).
pub fn cluster(nodes: NodeId) -> ClusterMap {
    let mut map = with_nodes(nodes);
    create(&mut map, &[1, 2, 3], 3);
    map
}

/// Begins moving `slot` to `to`, returning the move's epoch.
pub fn begin(map: &mut ClusterMap, slot: Slot, to: GroupId) -> u64 {
    ok(map, Command::BeginSlotMove { slot, to }).version
}

/// Moves `slot` to `to` through begin and commit.
pub fn move_slot(map: &mut ClusterMap, slot: Slot, to: GroupId) {
    let epoch = begin(map, slot, to);
    ok(map, Command::CommitSlotMove { slot, epoch });
}

/// The slot numbered `n`.
pub fn slot(n: u16) -> Slot {
    Slot::new(n).expect("a slot number below 4096")
}

/// A set of node ids.
pub fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
    ids.iter().copied().collect()
}

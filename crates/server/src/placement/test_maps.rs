//! Cluster maps for unit tests.

use std::collections::BTreeSet;

use keel_placement::{ClusterMap, Command, GroupId, NodeId, Slot};

/// Slot `n`, which must be in range.
pub(crate) fn slot(n: u16) -> Slot {
    Slot::new(n).expect("in range")
}

/// Nodes 1..=`nodes` registered (node N at 127.0.0.1:700N), then one group
/// per entry of `groups` with those members, in order (group 1 first, which
/// owns every slot).
pub(crate) fn map_of(nodes: NodeId, groups: &[&[NodeId]]) -> ClusterMap {
    let mut map = ClusterMap::new();
    for n in 1..=nodes {
        let register = Command::RegisterNode {
            node: n,
            address: format!("127.0.0.1:{}", 7000 + n),
        };
        map.apply(&register).expect("register");
    }
    for members in groups {
        let create = Command::CreateGroup {
            members: BTreeSet::from_iter(members.iter().copied()),
            target_replicas: u8::try_from(members.len()).expect("at most 7 members"),
        };
        map.apply(&create).expect("create");
    }
    map
}

/// Nodes 1..=3 registered, and groups 1 and 2 on all three; group 1 owns
/// every slot.
pub(crate) fn two_groups() -> ClusterMap {
    map_of(3, &[&[1, 2, 3], &[1, 2, 3]])
}

/// Hands `slot` to `to` in the map alone (begin, then commit the move).
pub(crate) fn hand_over(map: &mut ClusterMap, slot: Slot, to: GroupId) {
    map.apply(&Command::BeginSlotMove { slot, to })
        .expect("begin");
    let epoch = map.version();
    map.apply(&Command::CommitSlotMove { slot, epoch })
        .expect("commit");
}

//! Cluster maps for unit tests.

use std::collections::BTreeSet;

use keel_placement::{ClusterMap, Command, Slot};

/// Slot `n`, which must be in range.
pub(crate) fn slot(n: u16) -> Slot {
    Slot::new(n).expect("in range")
}

/// Nodes 1..=3 registered, and groups 1 and 2 on all three; group 1 owns
/// every slot.
pub(crate) fn two_groups() -> ClusterMap {
    let mut map = ClusterMap::new();
    for n in 1..=3 {
        let register = Command::RegisterNode {
            node: n,
            address: format!("127.0.0.1:{}", 7000 + n),
        };
        map.apply(&register).expect("register");
    }
    for _ in 0..2 {
        let create = Command::CreateGroup {
            members: BTreeSet::from([1, 2, 3]),
            target_replicas: 3,
        };
        map.apply(&create).expect("create");
    }
    map
}

//! Data groups and slot moves as the map records them.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::ids::{GroupId, NodeId};

/// A data group: a Raft group serving some of the slots.
///
/// `members` is the membership placement *wants*; the group's own Raft
/// configuration follows it one change at a time (`docs/sharding.md`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// The nodes that hold a replica.
    pub members: BTreeSet<NodeId>,
    /// How many replicas the group should have. Joining nodes fill groups below
    /// it; only groups at it receive slots when rebalancing.
    pub target_replicas: u8,
    /// The members the group was created with: its Raft configuration before
    /// the first entry of its log. Every replica starts from it, also one added
    /// later (which then learns the configuration changes from the log or a
    /// snapshot), so no two replicas ever start from different configurations.
    /// Never changes. Empty in maps written before it existed; group 1 of those
    /// was bootstrapped from the nodes' own member lists.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub initial: BTreeSet<NodeId>,
}

impl Group {
    /// Whether the group has its target replica count (or more, during a
    /// replacement).
    pub fn is_full(&self) -> bool {
        self.members.len() >= usize::from(self.target_replicas)
    }
}

/// A slot on its way from one group to another. Until the move commits, `from`
/// owns the slot; `epoch` (the map version at which the move began) names this
/// move and no other, so a late message about an earlier, aborted move of the
/// same slot can never commit this one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotMove {
    /// The owner, which serves the slot until the hand-off.
    pub from: GroupId,
    /// The group the slot is moving to.
    pub to: GroupId,
    /// The map version at which the move began.
    pub epoch: u64,
}

//! Where a joining node's first replica goes.

use std::collections::BTreeSet;

use super::{PlanError, least_loaded};
use crate::command::{Command, check_target};
use crate::ids::{GroupId, NodeId};
use crate::map::ClusterMap;

/// The command that gives `node` (registered, active) its first replica, or
/// `None` if it holds one already (so a join retried after a crash places the
/// node once).
///
/// 1. If a group has fewer members than its target, the node joins the one
///    with the fewest members (lowest id on a tie): a group short of replicas
///    is one failure closer to losing its quorum.
/// 2. Otherwise every group is full, and the node forms a new group of
///    `new_group_replicas` with the active nodes holding the fewest replicas
///    (lowest ids on a tie). The new group is fault-tolerant from the start
///    rather than waiting for more nodes to join, and it owns no slots until a
///    rebalance moves some to it. With fewer active nodes than that, the group
///    starts smaller and later joiners fill it by rule 1.
pub fn join(
    map: &ClusterMap,
    node: NodeId,
    new_group_replicas: u8,
) -> Result<Option<Command>, PlanError> {
    join_filling(map, node, new_group_replicas, |_| true)
}

/// [`join`], where rule 1 considers only the groups `fillable` accepts: the
/// runtime's join ([`Command::JoinNode`]) never fills group 1, whose members
/// are its own Raft configuration's (`keel member add`), not the map's.
pub(crate) fn join_filling(
    map: &ClusterMap,
    node: NodeId,
    new_group_replicas: u8,
    fillable: impl Fn(GroupId) -> bool,
) -> Result<Option<Command>, PlanError> {
    map.check_can_host(node)?;
    check_target(new_group_replicas)?;
    if !map.groups_of(node).is_empty() {
        return Ok(None);
    }
    let short = map
        .groups()
        .iter()
        .filter(|&(&id, g)| !g.is_full() && fillable(id))
        .min_by_key(|&(&id, g)| (g.members.len(), id));
    if let Some((&group, _)) = short {
        return Ok(Some(Command::AddGroupMember { group, node }));
    }
    let counts = map.replica_counts();
    let mut members = BTreeSet::from([node]);
    while members.len() < usize::from(new_group_replicas) {
        match least_loaded(map, &counts, |id| members.contains(&id)) {
            Some(next) => members.insert(next),
            None => break,
        };
    }
    Ok(Some(Command::CreateGroup {
        members,
        target_replicas: new_group_replicas,
    }))
}

//! Taking a node out: its replicas move first.

use super::{PlanError, least_loaded};
use crate::command::Command;
use crate::error::CommandError;
use crate::ids::{GroupId, MAX_REPLICAS, NodeId};
use crate::map::{ClusterMap, NodeState};

/// The commands that remove a node without losing a replica where another
/// node can take it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemovalPlan {
    /// In order: drain the node (so that nothing new lands on it); for each of
    /// its groups, add a replacement then remove it (the other way round in a
    /// group at [`MAX_REPLICAS`], which has no room for an eighth member);
    /// finally forget the node. The runtime waits for each new replica to catch
    /// up before removing the old one.
    pub commands: Vec<Command>,
    /// Groups that lose the node's replica without a replacement (no active
    /// node outside the group is left): they end below their target.
    pub not_replaced: Vec<GroupId>,
}

/// Plans the removal of `node`. Each replacement is the active node holding
/// the fewest replicas, counting those this plan adds (lowest id on a tie), so
/// a node's replicas spread over the others instead of piling onto one. A
/// group holding more members than its target gets no replacement: so a plan
/// made again after one was cut short between a group's "add" and "remove"
/// carries on instead of adding a second replacement.
pub fn node_removal(map: &ClusterMap, node: NodeId) -> Result<RemovalPlan, PlanError> {
    let info = map
        .nodes()
        .get(&node)
        .ok_or(CommandError::UnknownNode { node })?;
    let mut commands = Vec::new();
    if info.state == NodeState::Active {
        commands.push(Command::DrainNode { node });
    }
    let mut counts = map.replica_counts();
    let mut not_replaced = Vec::new();
    for (&group, g) in map
        .groups()
        .iter()
        .filter(|(_, g)| g.members.contains(&node))
    {
        let remove = Command::RemoveGroupMember { group, node };
        // A group above its target without the node (a removal cut short
        // after its replacement was added, then planned again) needs none.
        if g.members.len() > usize::from(g.target_replicas) {
            commands.push(remove);
            continue;
        }
        let replacement = least_loaded(map, &counts, |id| id == node || g.members.contains(&id));
        match replacement {
            Some(new) => {
                *counts.entry(new).or_default() += 1;
                let add = Command::AddGroupMember { group, node: new };
                if g.members.len() >= MAX_REPLICAS {
                    commands.extend([remove, add]);
                } else {
                    commands.extend([add, remove]);
                }
            }
            None if g.members.len() == 1 => return Err(PlanError::Stranded { group, node }),
            None => {
                not_replaced.push(group);
                commands.push(remove);
            }
        }
    }
    commands.push(Command::RemoveNode { node });
    Ok(RemovalPlan {
        commands,
        not_replaced,
    })
}

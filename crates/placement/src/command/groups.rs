//! Creating and removing data groups, and changing their members.

use std::collections::BTreeSet;

use super::apply::Effect;
use crate::error::CommandError;
use crate::ids::{GroupId, MAX_GROUPS, MAX_REPLICAS, NodeId, PLACEMENT_GROUP};
use crate::map::{ClusterMap, Group, NodeState};
use crate::slot::SLOT_COUNT;

impl ClusterMap {
    pub(super) fn create_group(
        &mut self,
        members: &BTreeSet<NodeId>,
        target_replicas: u8,
    ) -> Result<Effect, CommandError> {
        check_target(target_replicas)?;
        if members.is_empty() {
            return Err(CommandError::EmptyGroup);
        }
        if members.len() > usize::from(target_replicas) {
            return Err(CommandError::TooManyMembers {
                members: members.len(),
                limit: usize::from(target_replicas),
            });
        }
        for &node in members {
            self.check_can_host(node)?;
        }
        if self.groups.len() >= MAX_GROUPS {
            return Err(CommandError::TooManyGroups { limit: MAX_GROUPS });
        }
        let id = self.next_group;
        if id == PLACEMENT_GROUP {
            return Err(CommandError::GroupIdsExhausted);
        }
        self.groups.insert(
            id,
            Group {
                members: members.clone(),
                target_replicas,
                initial: members.clone(),
            },
        );
        // Ids are never reused: a stale message or WAL record naming a removed
        // group must never reach a new one.
        self.next_group = id + 1;
        if self.owners.is_empty() {
            self.owners = vec![id; usize::from(SLOT_COUNT)];
        }
        Ok(Effect::Created(id))
    }

    pub(super) fn remove_group(&mut self, group: GroupId) -> Result<Effect, CommandError> {
        if !self.groups.contains_key(&group) {
            return Ok(Effect::Unchanged);
        }
        let slots = self.owners.iter().filter(|&&g| g == group).count();
        if slots > 0 {
            return Err(CommandError::GroupOwnsSlots { group, slots });
        }
        // A group owning no slot can only be a move's target.
        if let Some((&slot, _)) = self.moves.iter().find(|(_, m)| m.to == group) {
            return Err(CommandError::GroupInMove { group, slot });
        }
        self.groups.remove(&group);
        Ok(Effect::Changed)
    }

    pub(super) fn set_target_replicas(
        &mut self,
        group: GroupId,
        target_replicas: u8,
    ) -> Result<Effect, CommandError> {
        check_target(target_replicas)?;
        let info = self
            .groups
            .get_mut(&group)
            .ok_or(CommandError::UnknownGroup { group })?;
        if info.target_replicas == target_replicas {
            return Ok(Effect::Unchanged);
        }
        info.target_replicas = target_replicas;
        Ok(Effect::Changed)
    }

    pub(super) fn add_group_member(
        &mut self,
        group: GroupId,
        node: NodeId,
    ) -> Result<Effect, CommandError> {
        let members = &self
            .groups
            .get(&group)
            .ok_or(CommandError::UnknownGroup { group })?
            .members;
        if members.contains(&node) {
            return Ok(Effect::Unchanged);
        }
        if members.len() >= MAX_REPLICAS {
            return Err(CommandError::TooManyMembers {
                members: members.len() + 1,
                limit: MAX_REPLICAS,
            });
        }
        self.check_can_host(node)?;
        if let Some(info) = self.groups.get_mut(&group) {
            info.members.insert(node);
        }
        Ok(Effect::Changed)
    }

    pub(super) fn remove_group_member(
        &mut self,
        group: GroupId,
        node: NodeId,
    ) -> Result<Effect, CommandError> {
        let info = self
            .groups
            .get_mut(&group)
            .ok_or(CommandError::UnknownGroup { group })?;
        if !info.members.contains(&node) {
            return Ok(Effect::Unchanged);
        }
        if info.members.len() == 1 {
            return Err(CommandError::LastMember { group, node });
        }
        info.members.remove(&node);
        Ok(Effect::Changed)
    }

    /// A new replica may go to `node` only if it is registered and active.
    pub(crate) fn check_can_host(&self, node: NodeId) -> Result<(), CommandError> {
        match self.nodes.get(&node) {
            None => Err(CommandError::UnknownNode { node }),
            Some(n) if n.state == NodeState::Draining => Err(CommandError::NodeDraining { node }),
            Some(_) => Ok(()),
        }
    }
}

/// A target replica count must be within 1..=[`MAX_REPLICAS`].
pub(crate) fn check_target(target_replicas: u8) -> Result<(), CommandError> {
    if target_replicas == 0 || usize::from(target_replicas) > MAX_REPLICAS {
        return Err(CommandError::InvalidTarget {
            target: target_replicas,
        });
    }
    Ok(())
}

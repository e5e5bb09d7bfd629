//! Applying a command: dispatch, and the version bump.

use super::Command;
use crate::error::CommandError;
use crate::ids::GroupId;
use crate::map::ClusterMap;

/// What applying a command did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    /// Whether the map changed, and so its version grew by one.
    pub changed: bool,
    /// The map's version after the command.
    pub version: u64,
    /// The id [`Command::CreateGroup`] gave the new group.
    pub created_group: Option<GroupId>,
}

/// What a command's handler did. Handlers check everything before they change
/// anything, so an error always leaves the map as it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Effect {
    /// The command was already true.
    Unchanged,
    /// The map changed.
    Changed,
    /// A group was created.
    Created(GroupId),
}

impl ClusterMap {
    /// Applies `command`: changes the map and bumps its version, or changes
    /// nothing (a refusal, or a command that was already true). Deterministic:
    /// every replica of the placement group gets the same answer and the same
    /// map from the same log.
    pub fn apply(&mut self, command: &Command) -> Result<Applied, CommandError> {
        let effect = self.apply_effect(command)?;
        let changed = effect != Effect::Unchanged;
        if changed {
            self.version += 1;
        }
        Ok(Applied {
            changed,
            version: self.version,
            created_group: match effect {
                Effect::Created(group) => Some(group),
                Effect::Unchanged | Effect::Changed => None,
            },
        })
    }

    /// Dispatches `command` to its handler, without the version bump (one
    /// command, one bump, even when a handler applies another command).
    pub(super) fn apply_effect(&mut self, command: &Command) -> Result<Effect, CommandError> {
        Ok(match command {
            Command::RegisterNode { node, address } => self.register_node(*node, address)?,
            Command::JoinNode {
                node,
                address,
                new_group_replicas,
            } => self.join_node(*node, address, *new_group_replicas)?,
            Command::DrainNode { node } => self.drain_node(*node)?,
            Command::RemoveNode { node } => self.remove_node(*node)?,
            Command::CreateGroup {
                members,
                target_replicas,
            } => self.create_group(members, *target_replicas)?,
            Command::RemoveGroup { group } => self.remove_group(*group)?,
            Command::SetTargetReplicas {
                group,
                target_replicas,
            } => self.set_target_replicas(*group, *target_replicas)?,
            Command::AddGroupMember { group, node } => self.add_group_member(*group, *node)?,
            Command::RemoveGroupMember { group, node } => {
                self.remove_group_member(*group, *node)?
            }
            Command::BeginSlotMove { slot, to } => self.begin_slot_move(*slot, *to)?,
            Command::CommitSlotMove { slot, epoch } => self.commit_slot_move(*slot, *epoch)?,
            Command::AbortSlotMove { slot, epoch } => self.abort_slot_move(*slot, *epoch)?,
        })
    }
}

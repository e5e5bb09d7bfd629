//! Registering, draining and removing nodes.

use super::apply::Effect;
use crate::error::CommandError;
use crate::ids::{FIRST_DATA_GROUP, MAX_NODES, NodeId};
use crate::map::{ClusterMap, Node, NodeState, check_address};
use crate::plan::{self, PlanError};

impl ClusterMap {
    pub(super) fn register_node(
        &mut self,
        node: NodeId,
        address: &str,
    ) -> Result<Effect, CommandError> {
        if node == 0 {
            return Err(CommandError::InvalidNodeId);
        }
        check_address(address).map_err(|reason| CommandError::InvalidAddress {
            address: address.to_owned(),
            reason,
        })?;
        if let Some((&other, _)) = self
            .nodes
            .iter()
            .find(|&(&id, n)| id != node && n.address == address)
        {
            return Err(CommandError::AddressInUse {
                address: address.to_owned(),
                node: other,
            });
        }
        let registered = self.nodes.len();
        match self.nodes.get_mut(&node) {
            Some(known) if known.address == address => Ok(Effect::Unchanged),
            // A machine that moved: same node, same data, new address.
            Some(known) => {
                known.address = address.to_owned();
                Ok(Effect::Changed)
            }
            None if registered >= MAX_NODES => Err(CommandError::TooManyNodes { limit: MAX_NODES }),
            None => {
                self.nodes.insert(
                    node,
                    Node {
                        address: address.to_owned(),
                        state: NodeState::Active,
                    },
                );
                Ok(Effect::Changed)
            }
        }
    }

    /// Registers `node`, then applies its join plan, on a copy: a refusal of
    /// either step leaves the map as it was.
    pub(super) fn join_node(
        &mut self,
        node: NodeId,
        address: &str,
        new_group_replicas: u8,
    ) -> Result<Effect, CommandError> {
        let mut next = self.clone();
        let registered = next.register_node(node, address)?;
        let plan = plan::join_filling(&next, node, new_group_replicas, |g| g != FIRST_DATA_GROUP)
            .map_err(|e| match e {
            PlanError::Refused(e) => e,
            // Only a removal plan strands a group; named as the nearest
            // command refusal all the same.
            PlanError::Stranded { group, node } => CommandError::LastMember { group, node },
        })?;
        let placed = match plan {
            Some(command) => next.apply_effect(&command)?,
            None => Effect::Unchanged,
        };
        *self = next;
        Ok(match (registered, placed) {
            (_, Effect::Created(group)) => Effect::Created(group),
            (Effect::Unchanged, Effect::Unchanged) => Effect::Unchanged,
            _ => Effect::Changed,
        })
    }

    pub(super) fn drain_node(&mut self, node: NodeId) -> Result<Effect, CommandError> {
        let known = self
            .nodes
            .get_mut(&node)
            .ok_or(CommandError::UnknownNode { node })?;
        if known.state == NodeState::Draining {
            return Ok(Effect::Unchanged);
        }
        known.state = NodeState::Draining;
        Ok(Effect::Changed)
    }

    pub(super) fn remove_node(&mut self, node: NodeId) -> Result<Effect, CommandError> {
        if !self.nodes.contains_key(&node) {
            return Ok(Effect::Unchanged);
        }
        let groups = self.groups_of(node);
        if !groups.is_empty() {
            return Err(CommandError::NodeHoldsReplicas { node, groups });
        }
        self.nodes.remove(&node);
        Ok(Effect::Changed)
    }
}

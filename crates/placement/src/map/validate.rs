//! The map's rules, checked as a whole: after decoding, and by tests after
//! every command.

use std::collections::BTreeMap;

use super::{ClusterMap, check_address};
use crate::error::InvariantError;
use crate::ids::{FIRST_DATA_GROUP, MAX_GROUPS, MAX_MOVES, MAX_NODES, MAX_REPLICAS};
use crate::slot::{SLOT_COUNT, Slot};

impl ClusterMap {
    /// Checks every rule listed on [`ClusterMap`]; the first one broken is the
    /// error. Commands keep all of them, so this fails only on a map that was
    /// built some other way (a damaged or forged encoding).
    pub fn validate(&self) -> Result<(), InvariantError> {
        self.validate_limits()?;
        self.validate_nodes()?;
        self.validate_groups()?;
        self.validate_owners()?;
        self.validate_moves()
    }

    fn validate_limits(&self) -> Result<(), InvariantError> {
        let over = |what, limit| Err(InvariantError::OverLimit { what, limit });
        if self.nodes.len() > MAX_NODES {
            return over("nodes", MAX_NODES);
        }
        if self.groups.len() > MAX_GROUPS {
            return over("groups", MAX_GROUPS);
        }
        if self.moves.len() > MAX_MOVES {
            return over("slot moves", MAX_MOVES);
        }
        Ok(())
    }

    fn validate_nodes(&self) -> Result<(), InvariantError> {
        let mut by_address = BTreeMap::new();
        for (&node, info) in &self.nodes {
            let bad = |reason| Err(InvariantError::BadNode { node, reason });
            if node == 0 {
                return bad("node id 0 is reserved");
            }
            if let Err(reason) = check_address(&info.address) {
                return bad(reason);
            }
            if by_address.insert(info.address.as_str(), node).is_some() {
                return bad("its address is another node's too");
            }
        }
        Ok(())
    }

    fn validate_groups(&self) -> Result<(), InvariantError> {
        for (&group, info) in &self.groups {
            let bad = |reason| Err(InvariantError::BadGroup { group, reason });
            if group < FIRST_DATA_GROUP || group >= self.next_group {
                return bad("its id was never allocated");
            }
            if info.members.is_empty() {
                return bad("it has no members");
            }
            if info.members.len() > MAX_REPLICAS {
                return bad("it has more members than the replica limit");
            }
            if info.target_replicas == 0 || usize::from(info.target_replicas) > MAX_REPLICAS {
                return bad("its target replica count is out of range");
            }
            if info.members.iter().any(|m| !self.nodes.contains_key(m)) {
                return bad("a member is not a registered node");
            }
            // Initial members may have left the cluster since; only the count
            // is bounded, as when the group was created.
            if info.initial.len() > MAX_REPLICAS {
                return bad("it was created with more members than the replica limit");
            }
        }
        Ok(())
    }

    fn validate_owners(&self) -> Result<(), InvariantError> {
        let expected = if self.groups.is_empty() {
            0
        } else {
            usize::from(SLOT_COUNT)
        };
        if self.owners.len() != expected {
            return Err(InvariantError::SlotTableMismatch);
        }
        for slot in Slot::all() {
            if let Some(group) = self.owner(slot)
                && !self.groups.contains_key(&group)
            {
                return Err(InvariantError::OwnerUnknown { slot, group });
            }
        }
        Ok(())
    }

    fn validate_moves(&self) -> Result<(), InvariantError> {
        for (&slot, m) in &self.moves {
            let bad = |reason| Err(InvariantError::BadMove { slot, reason });
            if self.owner(slot) != Some(m.from) {
                return bad("its source does not own the slot");
            }
            if !self.groups.contains_key(&m.to) {
                return bad("its target group does not exist");
            }
            if m.to == m.from {
                return bad("it moves the slot to its own owner");
            }
            if m.epoch == 0 || m.epoch > self.version {
                return bad("its epoch is not a version the map has had");
            }
        }
        Ok(())
    }
}

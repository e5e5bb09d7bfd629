//! The map a new cluster starts with, derived from its initial members.
//!
//! Every member of a new cluster computes this from the same `--initial-cluster`
//! list, so no replica of the placement group has to be told it: the nodes are
//! registered in id order, then group 1 is created with all of them as members
//! and as many target replicas as there are members. The version is the number of
//! commands that changed the map, as if they had been applied from a log.

use std::collections::{BTreeMap, BTreeSet};

use super::PlacementMachine;
use crate::command::Command;
use crate::error::CommandError;
use crate::ids::{MAX_REPLICAS, NodeId};
use crate::map::ClusterMap;

/// Why a new cluster's map could not be derived from its initial members.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BootstrapError {
    /// A cluster needs at least one initial member.
    #[error("the initial cluster has no members")]
    NoMembers,
    /// Group 1 would have more replicas than a group may have; start with at most
    /// that many members and let the others join.
    #[error(
        "the initial cluster has {members} members; a new cluster starts with at most {limit} \
         (the others join it)"
    )]
    TooManyMembers {
        /// The members given.
        members: usize,
        /// [`MAX_REPLICAS`].
        limit: usize,
    },
    /// One of the initial members was refused (a bad or duplicate address).
    #[error("initial member {node}: {error}")]
    Refused {
        /// The member.
        node: NodeId,
        /// Why the map refused it.
        error: CommandError,
    },
}

impl PlacementMachine {
    /// The machine of a new cluster whose initial members are `members` (node id
    /// → advertised address), at applied index 0.
    pub fn bootstrap(
        members: &BTreeMap<NodeId, String>,
    ) -> Result<PlacementMachine, BootstrapError> {
        if members.is_empty() {
            return Err(BootstrapError::NoMembers);
        }
        if members.len() > MAX_REPLICAS {
            return Err(BootstrapError::TooManyMembers {
                members: members.len(),
                limit: MAX_REPLICAS,
            });
        }
        let mut map = ClusterMap::new();
        for (&node, address) in members {
            let register = Command::RegisterNode {
                node,
                address: address.clone(),
            };
            map.apply(&register)
                .map_err(|error| BootstrapError::Refused { node, error })?;
        }
        let ids: BTreeSet<NodeId> = members.keys().copied().collect();
        let target = u8::try_from(ids.len()).expect("at most MAX_REPLICAS members");
        let create = Command::CreateGroup {
            members: ids,
            target_replicas: target,
        };
        map.apply(&create)
            .expect("registered, active nodes within the replica limit form a group");
        Ok(PlacementMachine::from_parts(map, 0))
    }
}

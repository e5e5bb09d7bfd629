//! The cluster map: nodes, data groups, slot owners and slot moves, versioned.

mod codec;
mod group;
mod node;
mod validate;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::{FIRST_DATA_GROUP, GroupId, NodeId};
use crate::slot::Slot;

pub(crate) use codec::{MapRecord, check_format};
pub use group::{Group, SlotMove};
pub(crate) use node::check_address;
pub use node::{Node, NodeState};

/// The placement group's state: who is in the cluster and who serves what.
///
/// Changed only by [`ClusterMap::apply`], which bumps [`ClusterMap::version`]
/// by one for every command that changes something, so two maps with the same
/// version are the same map, and a newer version is a later map. Nodes and
/// clients cache a copy and compare versions to know whose is fresher.
///
/// Rules that always hold (checked by [`ClusterMap::validate`], and by
/// [`ClusterMap::decode`] before a map is accepted):
///
/// - while no data group exists no slot is owned; once one does, every slot is
///   owned by exactly one existing group (the first group created gets them all);
/// - a slot has at most one move in flight; its source is the slot's owner, its
///   target another existing group;
/// - every group has 1..=[`crate::MAX_REPLICAS`] members, all registered nodes;
/// - group ids are below the next id to allocate and never reused;
/// - node addresses are well-formed and distinct;
/// - the counts of nodes, groups and moves are within their limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "codec::MapRecord", into = "codec::MapRecord")]
pub struct ClusterMap {
    pub(crate) version: u64,
    /// The id the next group created gets.
    pub(crate) next_group: GroupId,
    pub(crate) nodes: BTreeMap<NodeId, Node>,
    pub(crate) groups: BTreeMap<GroupId, Group>,
    /// Owner of each slot, indexed by slot number: empty while there is no
    /// group, then exactly `SLOT_COUNT` long.
    pub(crate) owners: Vec<GroupId>,
    pub(crate) moves: BTreeMap<Slot, SlotMove>,
}

impl Default for ClusterMap {
    fn default() -> Self {
        ClusterMap::new()
    }
}

impl ClusterMap {
    /// The map of a cluster being formed: version 0, nothing registered.
    pub fn new() -> ClusterMap {
        ClusterMap {
            version: 0,
            next_group: FIRST_DATA_GROUP,
            nodes: BTreeMap::new(),
            groups: BTreeMap::new(),
            owners: Vec::new(),
            moves: BTreeMap::new(),
        }
    }

    /// The version: how many commands have changed the map.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Registered nodes, by id.
    pub fn nodes(&self) -> &BTreeMap<NodeId, Node> {
        &self.nodes
    }

    /// Data groups, by id.
    pub fn groups(&self) -> &BTreeMap<GroupId, Group> {
        &self.groups
    }

    /// Slot moves in flight, by slot.
    pub fn moves(&self) -> &BTreeMap<Slot, SlotMove> {
        &self.moves
    }

    /// The id the next group created will get.
    pub fn next_group_id(&self) -> GroupId {
        self.next_group
    }

    /// The group that owns `slot` (`None` while no group exists).
    pub fn owner(&self, slot: Slot) -> Option<GroupId> {
        self.owners.get(slot.index()).copied()
    }

    /// The slots `group` owns, ascending.
    pub fn slots_of(&self, group: GroupId) -> impl Iterator<Item = Slot> + '_ {
        Slot::all().filter(move |&s| self.owner(s) == Some(group))
    }

    /// How many slots each group owns (every group, those with none included).
    pub fn slot_counts(&self) -> BTreeMap<GroupId, usize> {
        let mut counts: BTreeMap<GroupId, usize> = self.groups.keys().map(|&g| (g, 0)).collect();
        for owner in &self.owners {
            *counts.entry(*owner).or_default() += 1;
        }
        counts
    }

    /// The groups `node` is a member of, ascending.
    pub fn groups_of(&self, node: NodeId) -> Vec<GroupId> {
        self.groups
            .iter()
            .filter(|(_, g)| g.members.contains(&node))
            .map(|(&id, _)| id)
            .collect()
    }

    /// How many replicas each registered node holds (those with none included).
    pub fn replica_counts(&self) -> BTreeMap<NodeId, usize> {
        let mut counts: BTreeMap<NodeId, usize> = self.nodes.keys().map(|&n| (n, 0)).collect();
        for group in self.groups.values() {
            for member in &group.members {
                *counts.entry(*member).or_default() += 1;
            }
        }
        counts
    }
}

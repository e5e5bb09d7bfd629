//! Routing: which group serves a key, and what a group answers for a key that
//! is not its own.

use std::collections::BTreeSet;

use crate::error::RouteError;
use crate::ids::GroupId;
use crate::map::ClusterMap;
use crate::slot::{Slot, slot_for_key};

/// Where a key is served, according to one version of the map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// The key's slot.
    pub slot: Slot,
    /// The group that owns the slot.
    pub group: GroupId,
    /// The version of the map that said so.
    pub version: u64,
}

impl ClusterMap {
    /// The group serving `key`.
    pub fn route(&self, key: &[u8]) -> Result<Route, RouteError> {
        let slot = slot_for_key(key);
        let group = self.owner(slot).ok_or(RouteError::NoGroups {
            version: self.version,
        })?;
        Ok(Route {
            slot,
            group,
            version: self.version,
        })
    }

    /// The one group serving all of `keys` (`None` for no keys), or
    /// [`RouteError::CrossGroup`]: what a transaction is checked with before
    /// it is sent anywhere.
    pub fn route_together<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k [u8]>,
    ) -> Result<Option<GroupId>, RouteError> {
        let mut groups = BTreeSet::new();
        for key in keys {
            groups.insert(self.route(key)?.group);
        }
        match groups.len() {
            0 | 1 => Ok(groups.pop_first()),
            _ => Err(RouteError::CrossGroup {
                groups: groups.into_iter().collect(),
                version: self.version,
            }),
        }
    }

    /// Checks that `group` owns `key`'s slot in this map; the error is what the
    /// group answers a client whose map is older (`docs/sharding.md`,
    /// "Routing"). A group's own fence and ownership records, not this check
    /// alone, decide whether it may serve the slot during a move.
    pub fn check_owner(&self, group: GroupId, key: &[u8]) -> Result<Slot, RouteError> {
        let route = self.route(key)?;
        if route.group != group {
            return Err(RouteError::WrongGroup {
                slot: route.slot,
                owner: route.group,
                version: self.version,
            });
        }
        Ok(route.slot)
    }

    /// The groups that own at least one slot, ascending: those a scan of a key
    /// prefix must ask, since hashing scatters any prefix over every slot.
    pub fn serving_groups(&self) -> BTreeSet<GroupId> {
        self.owners.iter().copied().collect()
    }
}

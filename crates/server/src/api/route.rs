//! Which hosted group serves a request (docs/sharding.md, *Routing*): the
//! owner of the key's slot in the node's cached cluster map. The map is a
//! hint, never trusted for safety — the group's own state machine refuses a
//! slot it does not serve — so a stale map costs a client a retry, never a
//! wrong answer.
//!
//! Without a map (a cluster from before the placement group, or a node that
//! has not heard one yet) every key goes to group 1, as before sharding.

use keel_placement::{ClusterMap, GroupId, Slot, slot_for_key};
use keel_proto::error::ErrorDetail;
use keel_proto::v1::ClientSession;

use super::{ApiContext, sessions};
use crate::node::{KV_GROUP, NodeHandle};

/// Where a slot's requests go by `map`: its owner, or group 1 without a map
/// (or before the map has any group).
pub(crate) fn owner_of(map: Option<&ClusterMap>, slot: Slot) -> GroupId {
    map.and_then(|m| m.owner(slot)).unwrap_or(KV_GROUP)
}

/// The one group that owns every slot of `slots` by `map`, or the two first
/// found to differ.
pub(crate) fn single_owner(
    map: Option<&ClusterMap>,
    slots: impl IntoIterator<Item = Slot>,
) -> Result<GroupId, (GroupId, GroupId)> {
    let mut owner = None;
    for slot in slots {
        let g = owner_of(map, slot);
        match owner {
            None => owner = Some(g),
            Some(first) if first != g => return Err((first, g)),
            Some(_) => {}
        }
    }
    Ok(owner.unwrap_or(KV_GROUP))
}

/// Where routing sends one key: its slot, the slot's owner by this node's
/// map, and that map's version (0 without a map).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeyRoute {
    /// The owner of `slot`.
    pub(crate) group: GroupId,
    /// The key's slot.
    pub(crate) slot: Slot,
    /// The version of the map that named the owner.
    pub(crate) map_version: u64,
}

/// The handle a request runs on: group 1's, borrowed from the context (the
/// common case, no copy), or another hosted group's.
pub(crate) enum Routed<'a> {
    Primary(&'a NodeHandle),
    Other(NodeHandle),
}

impl std::ops::Deref for Routed<'_> {
    type Target = NodeHandle;

    fn deref(&self) -> &NodeHandle {
        match self {
            Routed::Primary(h) => h,
            Routed::Other(h) => h,
        }
    }
}

impl ApiContext {
    /// The handle of the group that serves `key`, if this node hosts it; else
    /// `WRONG_GROUP` with the slot and this node's map version, so the client
    /// refreshes its map and goes to a member of the owner.
    pub(crate) fn group_for_key(&self, key: &[u8]) -> Result<Routed<'_>, ErrorDetail> {
        let route = self.route_key(key);
        self.hosted_group(route.group, route.slot, route.map_version)
    }

    /// Like [`Self::group_for_key`], for a write that may carry a client
    /// session: a session of another group than the one routing picked is
    /// refused with `WRONG_GROUP` before anything is proposed
    /// ([`sessions::check_group`]).
    pub(crate) fn group_for_session_write(
        &self,
        key: &[u8],
        session: Option<&ClientSession>,
    ) -> Result<Routed<'_>, ErrorDetail> {
        let route = self.route_key(key);
        sessions::check_group(session, &route)?;
        self.hosted_group(route.group, route.slot, route.map_version)
    }

    /// Where `key` goes by this node's cached map.
    pub(crate) fn route_key(&self, key: &[u8]) -> KeyRoute {
        let slot = slot_for_key(key);
        let (group, map_version) = self.maps.with(|m| {
            let owner = owner_of(m.map(|m| &*m.map), slot);
            (owner, m.map_or(0, |m| m.version()))
        });
        KeyRoute {
            group,
            slot,
            map_version,
        }
    }

    /// The handle of the one group that serves every key of `keys`; a request
    /// spanning groups is refused with `CROSS_GROUP` (keel does not run
    /// transactions across groups).
    pub(crate) fn group_for_keys<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Routed<'_>, ErrorDetail> {
        let slots: Vec<Slot> = keys.into_iter().map(slot_for_key).collect();
        let (owner, version) = self.maps.with(|m| {
            let owner = single_owner(m.map(|m| &*m.map), slots.iter().copied());
            (owner, m.map_or(0, |m| m.version()))
        });
        match owner {
            Ok(group) => {
                let slot = slots.first().copied().unwrap_or_else(|| slot_for_key(b""));
                self.hosted_group(group, slot, version)
            }
            Err((a, b)) => Err(ErrorDetail::cross_group(format!(
                "the request's keys belong to groups {a} and {b} (cluster map version \
                 {version}); keel runs a transaction within one group only — give its keys \
                 a common hash tag ({{tag}}) to keep them together"
            ))),
        }
    }

    /// This node's replica of `group`, if it hosts one that serves. Every
    /// node has a replica of group 1, but on a node that joined through
    /// placement it is in no configuration and has no leader to serve with:
    /// group 1's requests go to its members instead.
    pub(crate) fn hosted(&self, group: GroupId) -> Option<Routed<'_>> {
        if group == KV_GROUP {
            return self
                .serves_kv_group()
                .then_some(Routed::Primary(&self.node));
        }
        self.groups.get(group).map(Routed::Other)
    }

    /// Whether this node serves `group` itself (see [`ApiContext::hosted`]).
    pub(crate) fn serves_group(&self, group: GroupId) -> bool {
        if group == KV_GROUP {
            return self.serves_kv_group();
        }
        self.groups.contains(group)
    }

    /// Whether this node serves group 1 from its own replica: unless it
    /// joined through placement and group 1's configuration does not list it.
    /// (A node joining group 1 serves from its replica while it catches up,
    /// as a follower does.)
    pub(crate) fn serves_kv_group(&self) -> bool {
        !self.outside_group_1 || self.members.is_member(self.id)
    }

    fn hosted_group(
        &self,
        group: GroupId,
        slot: Slot,
        map_version: u64,
    ) -> Result<Routed<'_>, ErrorDetail> {
        self.hosted(group).ok_or_else(|| {
            ErrorDetail::wrong_group(
                slot.get(),
                map_version,
                format!(
                    "slot {} belongs to group {group} (cluster map version {map_version}), \
                     which node {} does not host",
                    slot.get(),
                    self.id
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::test_maps::{hand_over, slot, two_groups};

    /// Groups 1 and 2 on nodes 1..=3, with slot 7 moved to group 2.
    fn map_with_a_moved_slot() -> ClusterMap {
        let mut map = two_groups();
        hand_over(&mut map, slot(7), 2);
        map
    }

    #[test]
    fn keys_go_to_their_slots_owner_and_to_group_1_without_a_map() {
        let map = map_with_a_moved_slot();
        assert_eq!(owner_of(Some(&map), slot(7)), 2);
        assert_eq!(owner_of(Some(&map), slot(8)), 1);
        assert_eq!(owner_of(None, slot(7)), 1);
        assert_eq!(owner_of(Some(&ClusterMap::new()), slot(7)), 1);
    }

    #[test]
    fn keys_of_one_owner_pass_and_keys_of_two_are_named() {
        let map = map_with_a_moved_slot();
        assert_eq!(single_owner(Some(&map), [slot(8), slot(9)]), Ok(1));
        assert_eq!(single_owner(Some(&map), [slot(7)]), Ok(2));
        assert_eq!(single_owner(Some(&map), [slot(8), slot(7)]), Err((1, 2)));
        assert_eq!(single_owner(None, [slot(8), slot(7)]), Ok(1));
        assert_eq!(single_owner(Some(&map), []), Ok(1));
    }
}

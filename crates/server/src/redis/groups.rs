//! Which group a command's keys belong to (docs/redis.md, "Groups"): the
//! owner of each key's slot in the node's cached cluster map, the same rule
//! as gRPC and HTTP routing (`api/route.rs`); group 1 without a map. One
//! snapshot of the map serves a whole run of pipelined commands.
//!
//! Commands that must stay atomic (MSET, MSETNX, DEL) take keys of one group
//! only: keys of several are refused with `CROSSSLOT`, as Redis Cluster does,
//! before anything is proposed. MGET and EXISTS are split per group instead
//! (`split_reads.rs`).

use std::sync::Arc;

use keel_placement::{ClusterMap, GroupId, slot_for_key};
use keel_proto::error::ErrorDetail;

use super::answer::error_reply;
use super::resp::Reply;
use crate::api::owner_of;

/// The owners of keys by one snapshot of the map.
#[derive(Clone, Debug, Default)]
pub(crate) struct KeyGroups {
    map: Option<Arc<ClusterMap>>,
}

impl KeyGroups {
    /// Owners by `map` (`None`: group 1 owns every key).
    pub(crate) fn new(map: Option<Arc<ClusterMap>>) -> KeyGroups {
        KeyGroups { map }
    }

    /// Owners by the node's cached map now.
    pub(crate) fn now(ctx: &crate::api::ApiContext) -> KeyGroups {
        KeyGroups::new(ctx.maps.current().map(|c| c.map))
    }

    /// The group that owns `key`.
    pub(crate) fn owner(&self, key: &[u8]) -> GroupId {
        owner_of(self.map.as_deref(), slot_for_key(key))
    }

    /// The one group owning every key of `keys` (group 1 for none), or the
    /// `CROSSSLOT` reply naming two that differ.
    pub(crate) fn single<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<GroupId, Reply> {
        let mut found: Option<GroupId> = None;
        for key in keys {
            let g = self.owner(key);
            match found {
                None => found = Some(g),
                Some(first) if first != g => return Err(cross_slot(first, g)),
                Some(_) => {}
            }
        }
        Ok(found.unwrap_or(crate::node::KV_GROUP))
    }
}

/// The refusal of a command whose keys belong to groups `a` and `b`.
pub(crate) fn cross_slot(a: GroupId, b: GroupId) -> Reply {
    error_reply(&ErrorDetail::cross_group(format!(
        "Keys in request don't hash to the same group (groups {a} and {b}); keel writes \
         them atomically within one group only: give the keys a common hash tag ({{tag}})"
    )))
}

#[cfg(test)]
pub(crate) mod tests {
    use keel_placement::Slot;

    use super::*;
    use crate::placement::test_maps::{hand_over, two_groups};

    /// A key of `slot`, from a numbered family.
    pub(crate) fn key_in(slot: Slot, base: &str) -> String {
        (0..)
            .map(|i| format!("{base}{i}"))
            .find(|k| slot_for_key(k.as_bytes()) == slot)
            .expect("some key hashes to the slot")
    }

    /// Groups 1 and 2 on nodes 1..=3; the slot of `moved` belongs to group 2.
    pub(crate) fn groups_with(moved: &str) -> KeyGroups {
        let mut map = two_groups();
        hand_over(&mut map, slot_for_key(moved.as_bytes()), 2);
        KeyGroups::new(Some(Arc::new(map)))
    }

    #[test]
    fn keys_belong_to_their_slots_owner_and_to_group_1_without_a_map() {
        let groups = groups_with("moved");
        let other = key_in(
            Slot::new(slot_for_key(b"moved").get() ^ 1).expect("slot"),
            "o",
        );
        assert_eq!(groups.owner(b"moved"), 2);
        assert_eq!(groups.owner(other.as_bytes()), 1);
        assert_eq!(KeyGroups::default().owner(b"moved"), 1);
        // A hash tag keeps keys together.
        assert_eq!(groups.owner(b"{moved}:a"), 2);
    }

    #[test]
    fn keys_of_two_groups_are_crossslot() {
        let groups = groups_with("moved");
        assert_eq!(groups.single([&b"moved"[..], b"{moved}x"]), Ok(2));
        assert_eq!(groups.single([]), Ok(1));
        let other = key_in(
            Slot::new(slot_for_key(b"moved").get() ^ 1).expect("slot"),
            "o",
        );
        let Err(Reply::Error(e)) = groups.single([&b"moved"[..], other.as_bytes()]) else {
            panic!("refused");
        };
        assert!(e.starts_with("CROSSSLOT "), "{e}");
        assert!(e.contains("groups 2 and 1"), "{e}");
    }
}

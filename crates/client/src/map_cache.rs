//! The client's copy of the cluster map, for routing: which group's session
//! numbers a write, and which group's leader (or members) a key operation goes
//! to (docs/sharding.md, *Routing*, *Clients*).
//!
//! It is filled lazily: a client that never meets a slot answer never asks
//! for a map and sends every key to group 1's leader, numbering every write in
//! group 1's session, as before sharding (and as a node without a map routes).
//! The first `WRONG_GROUP` or `SLOT_MOVING`, or a NOT_LEADER naming another
//! group than the client sent the key for, fetches it with `Cluster.Map`; later
//! ones fetch again when they name a newer map version than the cached one,
//! or, naming none newer, at most once per [`REFRESH_INTERVAL`]. Nothing runs
//! in the background: the fetch is made by the operation that finds it due.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use std::collections::HashMap;

use keel_placement::{ClusterMap, FIRST_DATA_GROUP, GroupId, Slot, slot_for_key};
use tokio::time::Instant;

use crate::address::Address;
use crate::call::Route;
use crate::client::Client;

/// Least time between two fetches not called for by a newer map version.
pub(crate) const REFRESH_INTERVAL: Duration = Duration::from_secs(2);

/// Most time one fetch may take out of a write's deadline.
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);

/// The cached map, shared by a client's clones.
#[derive(Debug, Default)]
pub(crate) struct MapCache {
    state: Mutex<CacheState>,
}

#[derive(Debug, Default)]
struct CacheState {
    map: Option<Arc<ClusterMap>>,
    /// Each group's members' addresses by `map` (those that parse), for
    /// routing to a group whose leader is not known yet.
    members: HashMap<GroupId, Arc<[Address]>>,
    /// When the last fetch started.
    fetched_at: Option<Instant>,
}

impl MapCache {
    fn lock(&self) -> MutexGuard<'_, CacheState> {
        // Every update is one assignment: a poisoned lock is still consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The group whose session numbers writes of `slot`: its owner in the
    /// cached map; group 1 without a map (or before it has groups).
    pub(crate) fn group_of(&self, slot: Slot) -> GroupId {
        self.lock()
            .map
            .as_ref()
            .and_then(|m| m.owner(slot))
            .unwrap_or(FIRST_DATA_GROUP)
    }

    /// Where a key operation of `group` goes: to that group's leader, else its
    /// members by the map; group 1's leader (the old way) without a map.
    pub(crate) fn route_to(&self, group: GroupId) -> Route {
        let state = self.lock();
        if state.map.is_none() {
            return Route::Leader;
        }
        Route::Group {
            group,
            members: state.members.get(&group).cloned().unwrap_or_default(),
        }
    }

    /// Whether an answer naming map version `seen` (0: none) calls for a fetch
    /// at `now`; if so, the fetch is counted as started.
    pub(crate) fn begin_fetch(&self, seen: u64, now: Instant) -> bool {
        let mut state = self.lock();
        let cached = state.map.as_ref().map_or(0, |m| m.version());
        let due = match state.fetched_at {
            None => true,
            Some(at) => seen > cached || now.saturating_duration_since(at) >= REFRESH_INTERVAL,
        };
        if due {
            state.fetched_at = Some(now);
        }
        due
    }

    /// Keeps `map` if it is newer than the cached one.
    pub(crate) fn offer(&self, map: ClusterMap) {
        let mut state = self.lock();
        if state
            .map
            .as_ref()
            .is_none_or(|m| m.version() < map.version())
        {
            state.members = member_addresses(&map);
            state.map = Some(Arc::new(map));
        }
    }
}

/// Each group's members' addresses in `map`; a member whose address does not
/// parse is left out (the leader hints still find it).
fn member_addresses(map: &ClusterMap) -> HashMap<GroupId, Arc<[Address]>> {
    map.groups()
        .iter()
        .map(|(&id, group)| {
            let addresses: Vec<Address> = group
                .members
                .iter()
                .filter_map(|n| map.nodes().get(n))
                .filter_map(|node| Address::parse(&node.address).ok())
                .collect();
            (id, Arc::from(addresses))
        })
        .collect()
}

impl Client {
    /// Where a key operation on `key` goes (refreshing the map first when a
    /// member showed it stale, see the module docs).
    pub(crate) async fn route_for_key(&self, key: &[u8]) -> Route {
        self.refresh_if_stale().await;
        self.maps.route_to(self.maps.group_of(slot_for_key(key)))
    }

    /// Refreshes the map if a member showed it stale since the last look (at
    /// most once per [`REFRESH_INTERVAL`], within this handle's deadline).
    pub(crate) async fn refresh_if_stale(&self) {
        if self.caller.take_map_stale() {
            self.refresh_map(0, Instant::now() + self.deadline).await;
        }
    }

    /// Fetches the cluster map if an answer naming map version `seen` calls
    /// for it ([`MapCache::begin_fetch`]), within `deadline_at` and at most
    /// [`FETCH_TIMEOUT`]. A failed fetch keeps the cached map.
    pub(crate) async fn refresh_map(&self, seen: u64, deadline_at: Instant) {
        let now = Instant::now();
        let budget = deadline_at
            .saturating_duration_since(now)
            .min(FETCH_TIMEOUT);
        if budget.is_zero() || !self.maps.begin_fetch(seen, now) {
            return;
        }
        match self.with_deadline(budget).cluster_map().await {
            Ok(map) => self.maps.offer(map),
            Err(e) => tracing::debug!(error = %e, "keel client could not fetch the cluster map"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use keel_placement::Command;

    use super::*;

    fn slot(n: u16) -> Slot {
        Slot::new(n).expect("in range")
    }

    /// Groups 1 and 2 on three nodes; slot 7 handed to group 2.
    fn moved_map() -> ClusterMap {
        let mut map = ClusterMap::new();
        for node in 1..=3 {
            let address = format!("127.0.0.1:{}", 7000 + node);
            map.apply(&Command::RegisterNode { node, address })
                .expect("register");
        }
        for _ in 0..2 {
            let create = Command::CreateGroup {
                members: BTreeSet::from([1, 2, 3]),
                target_replicas: 3,
            };
            map.apply(&create).expect("create");
        }
        map.apply(&Command::BeginSlotMove {
            slot: slot(7),
            to: 2,
        })
        .expect("begin");
        let epoch = map.version();
        map.apply(&Command::CommitSlotMove {
            slot: slot(7),
            epoch,
        })
        .expect("commit");
        map
    }

    #[test]
    fn without_a_map_every_write_is_group_1s_and_with_one_the_owners() {
        let cache = MapCache::default();
        assert_eq!(cache.group_of(slot(7)), 1);
        cache.offer(moved_map());
        assert_eq!(cache.group_of(slot(7)), 2);
        assert_eq!(cache.group_of(slot(8)), 1);
        // An older copy never replaces a newer one.
        cache.offer(ClusterMap::new());
        assert_eq!(cache.group_of(slot(7)), 2);
    }

    #[test]
    fn fetches_are_lazy_and_bounded() {
        let cache = MapCache::default();
        let t0 = Instant::now();
        // The first slot answer fetches; more answers naming nothing newer
        // wait for the interval.
        assert!(cache.begin_fetch(0, t0));
        assert!(!cache.begin_fetch(0, t0 + Duration::from_millis(10)));
        let map = moved_map();
        let v = map.version();
        cache.offer(map);
        assert!(!cache.begin_fetch(v, t0 + Duration::from_millis(20)));
        // A newer version than cached fetches at once.
        assert!(cache.begin_fetch(v + 1, t0 + Duration::from_millis(30)));
        assert!(!cache.begin_fetch(v, t0 + Duration::from_millis(40)));
        assert!(cache.begin_fetch(0, t0 + Duration::from_millis(30) + REFRESH_INTERVAL));
    }
}

//! The node's copy of the cluster map: the newest it has seen, whoever it came
//! from. Placement members fill it from their own replica of the placement
//! group (`member.rs`), other nodes from a placement member's `WatchMap`
//! stream (`follow.rs`). The API answers `Cluster.Map` from it and streams it
//! to `WatchMap` callers. A copy is a hint for routing, never trusted for
//! safety (docs/sharding.md, *Routing*).

use std::sync::Arc;

use bytes::Bytes;
use keel_placement::{ClusterMap, DecodeError};
use tokio::sync::watch;

/// A map as the cache holds it: decoded, and the bytes it was stored as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedMap {
    /// The map.
    pub map: Arc<ClusterMap>,
    /// [`ClusterMap::encode`]'s bytes (JSON), as sent to other nodes.
    pub encoded: Bytes,
}

impl CachedMap {
    /// Decodes (and so validates) `encoded`.
    pub fn decode(encoded: Bytes) -> Result<CachedMap, DecodeError> {
        let map = ClusterMap::decode(&encoded)?;
        Ok(CachedMap {
            map: Arc::new(map),
            encoded,
        })
    }

    /// The map's version.
    pub fn version(&self) -> u64 {
        self.map.version()
    }
}

/// The newest map this node has seen. Cheap to clone; clones share it.
#[derive(Clone, Debug)]
pub struct MapCache {
    tx: Arc<watch::Sender<Option<CachedMap>>>,
}

impl Default for MapCache {
    fn default() -> Self {
        MapCache {
            tx: Arc::new(watch::channel(None).0),
        }
    }
}

impl MapCache {
    /// The map, if the node has seen one.
    pub fn current(&self) -> Option<CachedMap> {
        self.tx.borrow().clone()
    }

    /// Runs `f` on the cached map without copying it (the cell stays locked
    /// for reading meanwhile: keep `f` short).
    pub fn with<R>(&self, f: impl FnOnce(Option<&CachedMap>) -> R) -> R {
        f(self.tx.borrow().as_ref())
    }

    /// The cached map's version (0: none yet; every map has version ≥ 1 once
    /// a group exists).
    pub fn version(&self) -> u64 {
        self.tx.borrow().as_ref().map_or(0, CachedMap::version)
    }

    /// Keeps `map` if it is newer than the cached one; says whether it was.
    /// An older or equal version is ignored: maps only move forward, and two
    /// maps of one version are the same map.
    pub fn offer(&self, map: CachedMap) -> bool {
        self.tx.send_if_modified(|cur| {
            let newer = cur.as_ref().is_none_or(|c| map.version() > c.version());
            if newer {
                *cur = Some(map);
            }
            newer
        })
    }

    /// Decodes `encoded` and offers it; a map that does not decode is refused
    /// and changes nothing.
    pub fn offer_encoded(&self, encoded: Bytes) -> Result<bool, DecodeError> {
        Ok(self.offer(CachedMap::decode(encoded)?))
    }

    /// A receiver that sees every newer map.
    pub fn subscribe(&self) -> watch::Receiver<Option<CachedMap>> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use keel_placement::{Command, PlacementMachine};

    use super::*;

    fn map_at(extra_nodes: u64) -> CachedMap {
        let members: BTreeMap<u64, String> = (1..=3).map(|i| (i, format!("n{i}:1"))).collect();
        let mut map = PlacementMachine::bootstrap(&members)
            .expect("bootstrap")
            .map()
            .clone();
        for n in 0..extra_nodes {
            map.apply(&Command::RegisterNode {
                node: 10 + n,
                address: format!("x{n}:1"),
            })
            .expect("registers");
        }
        CachedMap::decode(Bytes::from(map.encode())).expect("decodes")
    }

    #[test]
    fn only_newer_maps_are_kept_and_announced() {
        let cache = MapCache::default();
        let mut rx = cache.subscribe();
        assert_eq!((cache.current(), cache.version()), (None, 0));
        assert!(cache.offer(map_at(1)));
        assert!(rx.has_changed().expect("open"));
        rx.mark_unchanged();
        let v = cache.version();
        assert!(!cache.offer(map_at(0)), "an older map is ignored");
        assert!(!cache.offer(map_at(1)), "the same version is ignored");
        assert!(!rx.has_changed().expect("open"));
        assert_eq!(cache.version(), v);
        assert!(cache.offer(map_at(2)));
        assert_eq!(cache.version(), v + 1);
    }

    #[test]
    fn undecodable_bytes_change_nothing() {
        let cache = MapCache::default();
        assert!(
            cache
                .offer_encoded(Bytes::from_static(b"{not a map"))
                .is_err()
        );
        assert_eq!(cache.current(), None);
    }
}

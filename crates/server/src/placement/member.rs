//! What a placement member runs beside its replica of the placement group:
//! the map cache fed from the replica's applied state, and the creation of a
//! new cluster's map by the group's first leader.

use std::time::Duration;

use bytes::Bytes;
use keel_placement::ClusterMap;
use keel_raft::Role;
use tokio::sync::watch;

use super::cache::{CachedMap, MapCache};
use super::cas::{Created, MAP_KEY, create_map};
use super::node_store::NodeMapStore;
use crate::node::NodeHandle;

/// Longest wait between two attempts to create the map after a failure.
const MAX_RETRY: Duration = Duration::from_secs(2);

/// Keeps `cache` up to date with the map this replica has applied, until
/// `stop` turns true or the node stops. Every applied entry changes the
/// group's published status, so waiting for status changes sees every write.
/// The local state is read without a barrier: the cache is a hint, and it only
/// ever moves forward.
pub(crate) async fn feed_cache(node: NodeHandle, cache: MapCache, mut stop: watch::Receiver<bool>) {
    let mut status = node.watch_status();
    loop {
        match node.kv().get(MAP_KEY) {
            Ok(Some((bytes, _))) => {
                if let Err(e) = cache.offer_encoded(bytes) {
                    tracing::error!("the placement group's cluster map is unreadable: {e}");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("cannot read the cluster map: {e}"),
        }
        tokio::select! {
            changed = status.changed() => if changed.is_err() { return },
            _ = stop.changed() => return,
        }
    }
}

/// Creates a new cluster's map (`initial`, derived identically on every
/// placement member) once this replica leads the placement group and finds
/// no map: a "create if absent" write, so of several leaders over time exactly
/// one write takes. Returns once the cache holds a map (this node's or
/// another's), or when `stop` turns true.
pub(crate) async fn create_initial_map(
    node: NodeHandle,
    initial: ClusterMap,
    cache: MapCache,
    timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let store = NodeMapStore::new(node.clone(), timeout);
    let mut status = node.watch_status();
    let mut maps = cache.subscribe();
    let mut retry = Duration::from_millis(50);
    loop {
        if cache.current().is_some() {
            return;
        }
        if status.borrow_and_update().role == Role::Leader {
            match create_map(&store, &initial).await {
                Ok(Created::Stored { version }) => {
                    tracing::info!(
                        "created the cluster map (version {}) in the placement group at {version}",
                        initial.version()
                    );
                    // Cached at once, not only when the entry's apply is seen.
                    let _ = cache.offer(CachedMap {
                        map: initial.clone().into(),
                        encoded: Bytes::from(initial.encode()),
                    });
                    return;
                }
                Ok(Created::Existing) => {}
                Err(e) => {
                    tracing::debug!("creating the cluster map failed, will retry: {e}");
                    tokio::select! {
                        _ = tokio::time::sleep(retry) => {}
                        _ = stop.changed() => return,
                    }
                    retry = (retry * 2).min(MAX_RETRY);
                    continue;
                }
            }
        }
        tokio::select! {
            changed = status.changed() => if changed.is_err() { return },
            _ = maps.changed() => {}
            _ = stop.changed() => return,
        }
    }
}

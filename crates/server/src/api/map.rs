//! The cluster map as the API serves it: `Cluster.Map`, `Cluster.WatchMap`
//! and `GET /v1/cluster/map`, all from the node's cache
//! ([`crate::placement::MapCache`]).

use keel_proto::error::ErrorDetail;
use keel_proto::v1::MapResponse;
use tokio::sync::mpsc;
use tonic::Status;

use super::ApiContext;
use crate::placement::CachedMap;

/// Maps queued per `WatchMap` stream; a slow reader skips to the newest map
/// rather than queueing every version.
const WATCH_QUEUE: usize = 4;

/// The answer for `map`.
fn response(map: &CachedMap) -> MapResponse {
    MapResponse {
        version: map.version(),
        map_json: String::from_utf8_lossy(&map.encoded).into_owned(),
    }
}

/// The error while the node has no map: retryable, nothing to undo.
fn no_map(ctx: &ApiContext) -> ErrorDetail {
    let mut e = ErrorDetail::no_leader();
    e.message = format!(
        "node {} has no cluster map yet (the placement group has not created it, or this \
         node has not heard from a placement member)",
        ctx.id
    );
    e
}

impl ApiContext {
    /// The node's cached map.
    pub(crate) fn cluster_map(&self) -> Result<MapResponse, ErrorDetail> {
        self.maps
            .current()
            .map(|m| response(&m))
            .ok_or_else(|| no_map(self))
    }

    /// A stream of the cached map (if newer than `after_version`) and every
    /// newer one. It ends when the caller hangs up.
    pub(crate) fn watch_map(
        &self,
        after_version: u64,
    ) -> mpsc::Receiver<Result<MapResponse, Status>> {
        let (tx, rx) = mpsc::channel(WATCH_QUEUE);
        let mut maps = self.maps.subscribe();
        tokio::spawn(async move {
            let mut sent = after_version;
            loop {
                let current = maps.borrow_and_update().clone();
                if let Some(m) = current
                    && m.version() > sent
                {
                    sent = m.version();
                    if tx.send(Ok(response(&m))).await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    changed = maps.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                }
            }
        });
        rx
    }
}

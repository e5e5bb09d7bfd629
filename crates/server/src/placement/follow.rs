//! How a node that is not a placement member learns the map: a `WatchMap`
//! stream from a placement member, which sends the map it has and then every
//! newer one. When the stream ends or cannot be opened, the next member is
//! tried, with a growing pause once every member failed in a row (reset by a
//! stream that delivered a map).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use keel_proto::v1::WatchMapRequest;
use keel_raft::NodeId;
use tokio::sync::watch;

use super::cache::MapCache;
use crate::api::ApiContext;

/// First pause after every placement member failed.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between rounds of attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Follows the map from `members` (the placement group's members) into
/// `cache`, until `stop` turns true.
pub(crate) async fn follow(
    ctx: Arc<ApiContext>,
    members: Vec<NodeId>,
    cache: MapCache,
    mut stop: watch::Receiver<bool>,
) {
    if members.is_empty() {
        return;
    }
    let mut backoff = FIRST_BACKOFF;
    let mut next = 0;
    loop {
        let mut delivered = false;
        // One round: each member once, starting where the last round ended.
        for _ in 0..members.len() {
            let member = members[next % members.len()];
            next += 1;
            let address = ctx.address_of(member);
            if address.is_empty() {
                continue;
            }
            tokio::select! {
                got = watch_one(&ctx, &address, &cache) => delivered |= got,
                _ = stop.changed() => return,
            }
        }
        if delivered {
            backoff = FIRST_BACKOFF;
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Reads one member's `WatchMap` stream into `cache` until it ends; says
/// whether it delivered at least one map.
async fn watch_one(ctx: &ApiContext, address: &str, cache: &MapCache) -> bool {
    let mut client = match ctx.cluster_client(address) {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!("cannot reach placement member {address}: {}", e.message);
            return false;
        }
    };
    let request = WatchMapRequest {
        after_version: cache.version(),
    };
    let mut stream = match client.watch_map(request).await {
        Ok(r) => r.into_inner(),
        Err(e) => {
            tracing::debug!("placement member {address} sent no map: {}", e.message());
            return false;
        }
    };
    let mut delivered = false;
    loop {
        match stream.message().await {
            Ok(Some(m)) => match cache.offer_encoded(Bytes::from(m.map_json.into_bytes())) {
                Ok(_) => delivered = true,
                Err(e) => {
                    tracing::warn!("placement member {address} sent an unreadable map: {e}");
                    return delivered;
                }
            },
            Ok(None) => return delivered,
            Err(e) => {
                tracing::debug!("map stream from {address} ended: {}", e.message());
                return delivered;
            }
        }
    }
}

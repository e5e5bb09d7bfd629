//! The cluster map: which nodes and groups there are and which group owns each
//! hash slot, as a node has cached it.

use keel_placement::ClusterMap;
use keel_proto::v1::{self, MapResponse};

use crate::address::Address;
use crate::call::{Op, Route};
use crate::client::Client;
use crate::error::Error;

impl Client {
    /// The cluster map as a node of the cluster has cached it (any endpoint
    /// answers from its own copy, which may be a moment behind the placement
    /// group; compare [`ClusterMap::version`]s to tell which of two is newer).
    /// A node that has no map yet is retried, as is an unreachable one, until
    /// the deadline.
    pub async fn cluster_map(&self) -> Result<ClusterMap, Error> {
        let resp = self
            .cluster_call(
                Op::Read,
                Route::Leader,
                v1::MapRequest {},
                |mut c, r| async move { c.map(r).await },
            )
            .await?;
        decode(resp)
    }

    /// The cluster map as the node at `endpoint` (`host:port`) has cached it.
    pub async fn cluster_map_at(&self, endpoint: &str) -> Result<ClusterMap, Error> {
        let address =
            Address::parse(endpoint).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let resp = self
            .cluster_call(
                Op::Read,
                Route::Fixed(address),
                v1::MapRequest {},
                |mut c, r| async move { c.map(r).await },
            )
            .await?;
        decode(resp)
    }
}

/// The map a node sent, checked as every copy is (`ClusterMap::decode`).
fn decode(resp: MapResponse) -> Result<ClusterMap, Error> {
    checked_map(&resp.map_json, resp.version)
}

/// `map_json` decoded, refused unless it is a valid map of `version`.
pub(crate) fn checked_map(map_json: &str, version: u64) -> Result<ClusterMap, Error> {
    let map = ClusterMap::decode(map_json.as_bytes())
        .map_err(|e| Error::Internal(format!("the node sent an unreadable cluster map: {e}")))?;
    if map.version() != version {
        return Err(Error::Internal(format!(
            "the node sent map version {} labelled {version}",
            map.version()
        )));
    }
    Ok(map)
}

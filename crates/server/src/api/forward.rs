//! Forwarding of HTTP requests from a follower to the leader over gRPC, so that a
//! plain `curl` works against any node. One hop only: the leader never forwards.
//! With TLS the connections are the peers' (mutual TLS under the cluster CA), and
//! with a bearer token each forwarded request carries this node's copy.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use keel_client::{AuthChannel, BearerToken};
use keel_proto::error::{ErrorDetail, error_detail};
use keel_proto::v1::cluster_client::ClusterClient;
use keel_proto::v1::kv_client::KvClient;

use crate::transport::PeerConnector;

/// Cached gRPC connections to leaders (and, for the cluster status, to every
/// member), by address.
#[derive(Debug)]
pub(crate) struct Forwarder {
    channels: Mutex<HashMap<String, AuthChannel>>,
    max_message: usize,
    connector: PeerConnector,
    token: Option<BearerToken>,
}

/// Bound on cached connections (members come and go).
const MAX_CACHED: usize = 16;

impl Forwarder {
    pub(crate) fn new(
        max_value_bytes: usize,
        connector: PeerConnector,
        token: Option<BearerToken>,
    ) -> Self {
        Forwarder {
            channels: Mutex::new(HashMap::new()),
            max_message: max_value_bytes + (64 << 10),
            connector,
            token,
        }
    }

    /// A connection to the leader at `addr` (connecting lazily).
    fn channel(&self, addr: &str) -> Result<AuthChannel, ErrorDetail> {
        let mut channels = self.channels.lock().expect("forwarder lock poisoned");
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let endpoint = self
            .connector
            .endpoint(addr)
            .map_err(|e| ErrorDetail::internal(format!("bad leader address {addr}: {e}")))?
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true);
        let channel = AuthChannel::new(endpoint.connect_lazy(), self.token.as_ref());
        if channels.len() >= MAX_CACHED {
            channels.clear();
        }
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    /// A key-value client for the leader at `addr`.
    pub(crate) fn client(&self, addr: &str) -> Result<KvClient<AuthChannel>, ErrorDetail> {
        Ok(KvClient::new(self.channel(addr)?)
            .max_decoding_message_size(self.max_message)
            .max_encoding_message_size(self.max_message))
    }

    /// A cluster client for the leader at `addr`.
    pub(crate) fn cluster(&self, addr: &str) -> Result<ClusterClient<AuthChannel>, ErrorDetail> {
        Ok(ClusterClient::new(self.channel(addr)?))
    }
}

/// The detail of a failed forwarded call. A transport failure before an answer
/// leaves a write's outcome unknown; `is_write` says which applies.
pub(crate) fn forwarded_error(status: &tonic::Status, is_write: bool) -> ErrorDetail {
    if let Some(d) = error_detail(status) {
        return d;
    }
    if is_write {
        ErrorDetail::outcome_unknown(format!(
            "forwarding to the leader failed: {}",
            status.message()
        ))
    } else {
        ErrorDetail::no_leader()
    }
}

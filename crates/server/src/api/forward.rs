//! Forwarding of HTTP requests from a follower to the leader over gRPC, so that a
//! plain `curl` works against any node. One hop only: the leader never forwards.
//! With TLS the connections are the peers' (mutual TLS under the cluster CA), and
//! with a bearer token each forwarded request carries this node's copy.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use keel_client::{AuthChannel, BearerToken};
use keel_proto::error::{ErrorDetail, error_detail};

use super::{ApiContext, DetailExt};
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

impl ApiContext {
    /// Makes `call` on the leader at `addr` and unwraps its answer; a failure
    /// becomes the detail [`forwarded_error`] gives (`is_write` as there).
    pub(super) async fn forward_kv<T, Fut>(
        &self,
        addr: &str,
        is_write: bool,
        call: impl FnOnce(KvClient<AuthChannel>) -> Fut,
    ) -> Result<T, ErrorDetail>
    where
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        call_leader(self.forwarder.client(addr), is_write, call).await
    }
}

/// Makes `call` on `client`, a connection to the leader, and unwraps its answer;
/// a failure becomes the detail [`forwarded_error`] gives.
pub(super) async fn call_leader<C, T, Fut>(
    client: Result<C, ErrorDetail>,
    is_write: bool,
    call: impl FnOnce(C) -> Fut,
) -> Result<T, ErrorDetail>
where
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    call(client?)
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| forwarded_error(&s, is_write))
}

/// The detail of a failed forwarded call. A transport failure before an answer
/// leaves a write's outcome unknown; `is_write` says which applies. A leader that
/// could not even be connected to (it is down: the connection was refused) never
/// saw the request, so nothing was applied: that is "no leader", which a client
/// may simply retry.
pub(crate) fn forwarded_error(status: &tonic::Status, is_write: bool) -> ErrorDetail {
    if let Some(d) = error_detail(status) {
        return d;
    }
    if never_connected(status) {
        return ErrorDetail::no_leader().with_message(format!(
            "the leader cannot be reached (nothing was sent): {}",
            status.message()
        ));
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

/// Whether the call provably never left this node. Two failures prove it: a
/// refused TCP connection (the leader is down), and hyper's "canceled" (the
/// request sat in the queue of a connection that closed before taking it, or
/// the connection was not ready: hyper raises it only before writing anything,
/// which happens when the leader died and its pooled connection broke). Once a
/// request was taken by a live connection it may have been sent, whatever
/// happens next.
fn never_connected(status: &tonic::Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::ConnectionRefused;
        }
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_canceled)
        {
            return true;
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use keel_proto::error::Kind;

    use super::*;

    #[test]
    fn a_refused_connection_is_no_leader_anything_else_is_unknown() {
        let refused = tonic::Status::from_error(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert_eq!(forwarded_error(&refused, true).kind(), Kind::NoLeader);
        let reset = tonic::Status::from_error(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert_eq!(forwarded_error(&reset, true).kind(), Kind::OutcomeUnknown);
        assert_eq!(forwarded_error(&reset, false).kind(), Kind::NoLeader);
        let detail = ErrorDetail::conflict(3).into_status();
        assert_eq!(forwarded_error(&detail, true).kind(), Kind::Conflict);
    }

    /// A real hyper "canceled": a request handed to an HTTP/2 connection whose
    /// task is gone (as when the leader died and its pooled connection closed)
    /// was never sent, so a forwarded write that meets it is "no leader", which
    /// a client retries, not "outcome unknown".
    #[tokio::test]
    async fn a_request_a_closed_connection_never_took_is_no_leader() {
        let (ours, _theirs) = tokio::io::duplex(1024);
        let (mut send, connection) = hyper::client::conn::http2::handshake::<_, _, String>(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(ours),
        )
        .await
        .expect("handshake");
        drop(connection);
        let canceled = send
            .send_request(hyper::Request::new(String::new()))
            .await
            .expect_err("no connection task to take it");
        assert!(canceled.is_canceled(), "{canceled:?}");
        let status = tonic::Status::from_error(Box::new(canceled));
        assert_eq!(forwarded_error(&status, true).kind(), Kind::NoLeader);
    }
}

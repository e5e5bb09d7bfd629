//! The client handle.

use std::sync::Arc;
use std::time::Duration;

use crate::channel::AuthChannel;
use keel_proto::v1::cluster_client::ClusterClient;
use keel_proto::v1::kv_client::KvClient;

use crate::address::Address;
use crate::call::{Caller, Op};
use crate::config::ClientConfig;
use crate::error::Error;
use crate::kv_conn::KvConn;
use crate::map_cache::MapCache;
use crate::pool::Conn;
use crate::session::Session;

/// A connection to a keel cluster.
///
/// Cheap to clone (clones share connections, what they learned about the leader,
/// and the client session), `Send + Sync`, and usable from many tasks at once.
/// Connections are opened lazily, on first use.
///
/// Each client made by [`Client::new`] has its own client session (unless
/// [`ClientConfig::sessions`] is off), which makes its writes exactly-once:
/// one client id, with a sequence of numbers per Raft group it writes to.
/// Clones share the session and the cached cluster map that picks each
/// write's group.
///
/// Every call follows the retry rules described in the crate documentation and
/// returns within the configured deadline.
#[derive(Clone)]
pub struct Client {
    pub(crate) caller: Arc<Caller>,
    pub(crate) deadline: Duration,
    pub(crate) max_message_bytes: usize,
    /// The session writes carry; `None` when sessions are off.
    pub(crate) session: Option<Arc<Session>>,
    /// The cluster map as last fetched, which picks a session write's group.
    pub(crate) maps: Arc<MapCache>,
}

impl Client {
    /// A client for the cluster at `cfg.endpoints`. Validates the configuration; does
    /// not connect.
    pub fn new(cfg: ClientConfig) -> Result<Self, Error> {
        cfg.validate()?;
        let endpoints = cfg
            .endpoints
            .iter()
            .map(|e| Address::parse(e))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Client {
            caller: Arc::new(Caller::new(&cfg, endpoints)),
            deadline: cfg.deadline,
            max_message_bytes: cfg.max_message_bytes,
            session: cfg.sessions.then(Arc::default),
            maps: Arc::default(),
        })
    }

    /// A handle to the same client whose calls have a different deadline (sharing
    /// connections and leader knowledge with this one).
    pub fn with_deadline(&self, deadline: Duration) -> Self {
        Client {
            deadline,
            ..self.clone()
        }
    }

    /// The deadline of this handle's calls.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// The key-value methods over `conn`, batched when possible.
    pub(crate) fn kv(&self, conn: Conn) -> KvConn {
        let unary = KvClient::new(conn.channel)
            .max_decoding_message_size(self.max_message_bytes)
            .max_encoding_message_size(self.max_message_bytes);
        KvConn::new(unary, conn.mux)
    }

    /// Calls a `keel.v1.Kv` method on the leader of `key`'s group under the
    /// retry rules of `op`;
    /// `method` makes one attempt, e.g. `|mut kv, r| async move { kv.txn(r).await }`.
    /// Cheap per attempt: messages hold shared `Bytes`.
    pub(crate) async fn kv_call<M, R, F, Fut>(
        &self,
        op: Op,
        key: &[u8],
        message: M,
        method: F,
    ) -> Result<R, Error>
    where
        M: Clone,
        F: Fn(KvConn, tonic::Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let route = self.route_for_key(key).await;
        let response = self
            .caller
            .call(self.deadline, op, route, |conn, budget| {
                method(self.kv(conn), request(message.clone(), budget))
            })
            .await?;
        Ok(response.into_inner())
    }

    pub(crate) fn cluster(&self, channel: AuthChannel) -> ClusterClient<AuthChannel> {
        ClusterClient::new(channel)
            .max_decoding_message_size(self.max_message_bytes)
            .max_encoding_message_size(self.max_message_bytes)
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

/// A request carrying the attempt's remaining time as its gRPC timeout, so that the
/// server can give up on work nobody waits for.
pub(crate) fn request<T>(message: T, budget: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(budget);
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_validates_and_client_is_shareable() {
        fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
        assert_send_sync::<Client>();

        assert!(matches!(
            Client::new(ClientConfig::with_endpoints(Vec::<String>::new())),
            Err(Error::Config(_))
        ));
        let client = Client::new(ClientConfig::with_endpoints(["127.0.0.1:1"])).expect("valid");
        let short = client.with_deadline(Duration::from_millis(5));
        assert_eq!(short.deadline(), Duration::from_millis(5));
        assert!(Arc::ptr_eq(&client.caller, &short.caller));
    }
}

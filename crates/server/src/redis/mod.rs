//! The Redis protocol (RESP2, and RESP3 after `HELLO 3`), served on
//! `--redis ADDR` by every node with keel's guarantees: redis-cli, redis-benchmark
//! and Redis client libraries work against any member.
//!
//! - Every key goes to the group that owns its slot in the node's cached map
//!   (group 1 without one); a group this node does not host is reached by
//!   forwarding to one of its members, and atomic commands (MSET, MSETNX, DEL)
//!   whose keys belong to several groups are refused with `CROSSSLOT`.
//! - Writes go through the same path as gRPC writes: proposed by the leader,
//!   acknowledged once committed on a majority and applied. A follower forwards
//!   them to the leader (a Redis client cannot follow a redirect), and a request
//!   that meets no leader waits for one until the request timeout.
//! - Reads use the connection's read mode (`READMODE`, keel's own command), the
//!   node's default unless set: linearizable unless configured otherwise.
//! - Pipelined requests run in order; consecutive writes are proposed together
//!   (one WAL fsync) and consecutive plain SETs share one transaction; consecutive
//!   reads share one barrier.
//! - INCR and friends are adds executed by the state machine (`Command::Add`), so
//!   concurrent increments are exact.
//!
//! Files, one concern each: `parse.rs` (incremental request parser), `resp.rs`
//! (replies and their encoding), `table.rs` (the commands and their arity),
//! `command.rs` (arguments to typed commands), `pipeline.rs` (running a batch in
//! order), `reads.rs`, `writes.rs`, `forward.rs` (writes via the leader),
//! `answer.rs` (outcomes and errors as replies), `local.rs` and `info.rs`
//! (connection and server commands), `scan.rs` (SCAN patterns and cursors),
//! `retry.rs` (waiting out an election), `limits.rs`, `conn.rs` (one connection),
//! `groups.rs` (which group owns a command's keys: commands are routed by slot
//! like gRPC and HTTP requests) and `split_reads.rs` (reads of keys in groups
//! this node does not host, or in several groups), and this file (accepting
//! connections, plain or TLS). `docs/redis.md` is the user's guide.
//!
//! With `--tls-cert` the port speaks TLS only (the HTTP port's settings: client
//! certificates with `--client-ca`); with `--auth-token-file` a connection must
//! `AUTH <token>` (or `HELLO 3 AUTH <user> <token>`) before anything but AUTH,
//! HELLO and QUIT (`docs/security.md`).

mod answer;
mod command;
mod conn;
mod forward;
mod groups;
mod info;
mod limits;
mod local;
mod parse;
mod pipeline;
mod reads;
mod resp;
mod retry;
mod scan;
mod scan_groups;
mod split_reads;
mod table;
mod writes;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::api::ApiContext;
use crate::auth::TokenCheck;
use crate::metrics::Metrics;
use crate::tls::accept::{self, TlsIncoming};
use limits::{MAX_CONNECTIONS, RedisLimits};
use scan::Cursors;

/// What every connection of the node shares.
pub(crate) struct Shared {
    /// The API operations, the node, its limits and metrics.
    pub(crate) ctx: Arc<ApiContext>,
    /// Bounds per connection.
    pub(crate) limits: RedisLimits,
    /// The port clients reach, for INFO.
    pub(crate) port: u16,
    /// The bearer token connections must AUTH with, if any.
    pub(crate) token: Option<Arc<TokenCheck>>,
    cursors: Mutex<Cursors>,
    connections: AtomicUsize,
    next_client: AtomicU64,
}

impl Shared {
    fn new(ctx: Arc<ApiContext>, port: u16, token: Option<Arc<TokenCheck>>) -> Self {
        Shared {
            limits: RedisLimits::from_api(&ctx.limits),
            ctx,
            port,
            token,
            cursors: Mutex::new(Cursors::default()),
            connections: AtomicUsize::new(0),
            next_client: AtomicU64::new(1),
        }
    }

    /// The SCAN cursors. Held only to look up or issue one; a panic meanwhile
    /// cannot leave the table inconsistent, so poison is ignored.
    pub(crate) fn lock_cursors(&self) -> MutexGuard<'_, Cursors> {
        self.cursors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Connections open now.
    pub(crate) fn connection_count(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// A new connection id.
    pub(crate) fn next_client_id(&self) -> u64 {
        self.next_client.fetch_add(1, Ordering::Relaxed)
    }
}

/// Counts a connection while it is open.
struct Counted(Arc<Shared>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
        self.0.ctx.metrics.redis_connections.dec();
    }
}

/// Where connections come from: the TCP listener, or the TLS handshakes on it.
enum Incoming {
    Plain(TcpListener),
    Tls(TlsIncoming),
}

/// One accepted connection.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Incoming {
    async fn accept(&mut self) -> std::io::Result<(Stream, SocketAddr)> {
        match self {
            Incoming::Plain(l) => {
                let (s, peer) = l.accept().await?;
                if let Err(e) = s.set_nodelay(true) {
                    tracing::debug!("cannot set TCP_NODELAY on a Redis connection: {e}");
                }
                Ok((Stream::Plain(s), peer))
            }
            Incoming::Tls(t) => match t.next().await {
                Some((s, peer)) => Ok((Stream::Tls(Box::new(s)), peer)),
                // The accept task ends only with this listener; never here.
                None => std::future::pending().await,
            },
        }
    }
}

impl Stream {
    /// Tells the client it is one too many, and closes.
    async fn refuse(self) {
        const FULL: &[u8] = b"-ERR max number of clients reached\r\n";
        let _ = match self {
            Stream::Plain(mut s) => s.write_all(FULL).await,
            Stream::Tls(mut s) => s.write_all(FULL).await,
        };
    }

    async fn serve(self, shared: Arc<Shared>, peer: SocketAddr, stop: watch::Receiver<bool>) {
        match self {
            Stream::Plain(s) => conn::serve(shared, s.into_split(), peer, stop).await,
            Stream::Tls(s) => conn::serve(shared, tokio::io::split(*s), peer, stop).await,
        }
    }
}

/// How the Redis port is secured: TLS (the client ports' settings) and the
/// bearer token, each optional.
#[derive(Default)]
pub(crate) struct Security {
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    pub(crate) token: Option<Arc<TokenCheck>>,
}

/// Serves the Redis protocol on `listener` until `stop` turns true.
pub(crate) async fn serve(
    listener: TcpListener,
    ctx: Arc<ApiContext>,
    security: Security,
    mut stop: watch::Receiver<bool>,
) {
    let port = listener.local_addr().map_or(0, |a| a.port());
    let metrics: Arc<Metrics> = ctx.metrics.clone();
    let shared = Arc::new(Shared::new(ctx, port, security.token));
    let mut incoming = match security.tls {
        None => Incoming::Plain(listener),
        Some(tls) => match accept::start(listener, tls, "redis", metrics) {
            Ok(t) => Incoming::Tls(t),
            Err(e) => {
                tracing::error!("cannot serve the Redis protocol over TLS: {e}");
                return;
            }
        },
    };
    let mut connections = JoinSet::new();
    let for_connections = stop.clone();
    loop {
        tokio::select! {
            accepted = incoming.accept() => match accepted {
                Ok((stream, peer)) => {
                    if shared.connections.fetch_add(1, Ordering::Relaxed) >= MAX_CONNECTIONS {
                        shared.connections.fetch_sub(1, Ordering::Relaxed);
                        // Told at once and closed, as Redis does at maxclients.
                        connections.spawn(stream.refuse());
                        continue;
                    }
                    shared.ctx.metrics.redis_connections.inc();
                    let counted = Counted(shared.clone());
                    let stop = for_connections.clone();
                    connections.spawn(async move {
                        stream.serve(counted.0.clone(), peer, stop).await;
                        drop(counted);
                    });
                }
                Err(e) => {
                    // Out of file descriptors, most likely: pause rather than spin.
                    tracing::warn!("accepting a Redis connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = stopped(&mut stop) => break,
        }
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

/// Resolves once `stop` turns true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns must not live across an await (it is not Send).
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

#[cfg(test)]
pub(crate) mod tests {
    //! Helpers for the module's unit tests.

    use super::*;
    use crate::api::ApiLimits;

    /// Small limits: values up to 1000 bytes, scans of 100 keys.
    pub(crate) fn limits() -> RedisLimits {
        RedisLimits::from_api(&api_limits())
    }

    fn api_limits() -> ApiLimits {
        ApiLimits {
            max_value_bytes: 1000,
            max_scan_limit: 100,
            request_timeout: Duration::from_secs(1),
            default_read_mode: crate::config::DefaultReadMode::Linearizable,
            session_idle_timeout_ms: 60_000,
            max_client_sessions: 10,
            fault_lose_write_reply_every: 0,
        }
    }
}

//! Assembles a node: identity, storage, transport, the consensus thread, and the
//! gRPC, HTTP and Redis servers; runs until shutdown or a fatal error.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use keel_proto::raft::raft_server::RaftServer;
use keel_proto::v1::cluster_server::ClusterServer;
use keel_proto::v1::kv_server::KvServer;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

use crate::api::{self, ApiContext, ApiIdentity, ApiLimits, ClusterService, KvService};
use crate::backup::Backups;
use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::events::EventLog;
use crate::identity::{self, lock_data_dir};
use crate::join;
use crate::members::MemberInfo;
use crate::metrics::Metrics;
use crate::node::{self, NodeParts};
use crate::peers::PeerIncarnations;
use crate::timeline::{self, Timeline};
use crate::transport::{
    LocalIdentity, MAX_PEER_MESSAGE_BYTES, RaftService, SnapshotInbox, Transport, TransportStats,
};

/// Runs a node until `shutdown` resolves (returns Ok) or the node fails (Err).
pub async fn run(
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    cfg.validate()?;
    let _lock = lock_data_dir(&cfg.data_dir)?;
    // Bind before anything else (joining included), so a port in use fails fast
    // and clearly.
    let grpc_listener = bind(&cfg.listen.to_string()).await?;
    let http_listener = match cfg.http {
        Some(addr) => Some(bind(&addr.to_string()).await?),
        None => None,
    };
    let redis_listener = match cfg.redis {
        Some(addr) => Some(bind(&addr.to_string()).await?),
        None => None,
    };
    // From the first event on, so the dashboard shows recovery too.
    let timeline = Arc::new(Timeline::new());
    let mut events =
        EventLog::open(cfg.id, cfg.event_log.as_deref())?.with_timeline(timeline.clone());
    let mut joined_members = BTreeMap::new();
    let identity = match &cfg.join {
        Some(seed) if !identity::is_initialised(&cfg.data_dir) => {
            let joined = join::join(&cfg).await?;
            let identity = identity::create_joined(
                &cfg.data_dir,
                cfg.id,
                joined.cluster_id,
                &joined.bootstrap,
            )?;
            events.note(&format!(
                "Node {} joined cluster {:016x} through {seed} as a learner{}; members: {}.",
                cfg.id,
                identity.cluster_id,
                if cfg.learner { " (kept a learner)" } else { "" },
                fmt_ids(joined.members.keys())
            ));
            joined_members = joined.members;
            identity
        }
        _ => {
            let (identity, created) = identity::load_or_create(
                &cfg.data_dir,
                cfg.id,
                &cfg.initial_cluster,
                &cfg.cluster_token,
            )?;
            if created {
                events.note(&format!(
                    "Node {} initialised a new data directory for cluster {:016x} with members {}.",
                    cfg.id,
                    identity.cluster_id,
                    fmt_ids(identity.members.keys())
                ));
            }
            identity
        }
    };
    let incarnations = Arc::new(PeerIncarnations::open(&cfg.data_dir)?);

    let recovered = node::recover(&cfg, &identity, &mut events)?;
    let book = recovered.book.clone();
    // A node that just joined knows the current members before its log does:
    // it must be able to answer a leader its log does not mention yet.
    let mut peers: BTreeMap<_, _> = book
        .members()
        .into_iter()
        .filter(|m| !m.address.is_empty())
        .map(|m| (m.id, m.address))
        .collect();
    for (id, address) in joined_members {
        if !book.knows(id) {
            book.record(
                id,
                MemberInfo {
                    address: address.clone(),
                    promote: false,
                },
            );
        }
        peers.entry(id).or_insert(address);
    }
    let snapshot_store = recovered.snapshots.store.clone();
    let metrics = Arc::new(Metrics::new());
    let snapshot_metrics = metrics.clone();
    let stats = Arc::new(TransportStats::default());
    let local = LocalIdentity {
        node_id: cfg.id,
        cluster_id: identity.cluster_id,
        incarnation: identity.incarnation,
    };
    let transport = Transport::start(local, &peers, cfg.max_peer_queue, stats.clone());
    // Sized for the largest cluster this node is likely to see (it may grow).
    let (peer_tx, peer_rx) = crossbeam_channel::bounded(cfg.max_peer_queue * peers.len().max(5));
    let node::RunningNode {
        handle,
        stop: stop_node,
        join,
    } = node::start(NodeParts {
        recovered,
        transport,
        events,
        peer_rx,
        tick: Duration::from_millis(cfg.tick_ms),
        flush_interval: Duration::from_millis(cfg.state_flush_interval_ms),
        max_pending: cfg.max_pending_requests,
        metrics: metrics.clone(),
        snapshot_entries: cfg.snapshot_entries,
        snapshot_trailing_entries: cfg.snapshot_trailing_entries,
        incarnations: incarnations.clone(),
        promote_lag_entries: cfg.promote_lag_entries,
        clock: node::LeaseClock::new(),
        data_dir: cfg.data_dir.clone(),
        min_free_disk_bytes: cfg.min_free_disk_bytes,
    })?;

    let limits = ApiLimits {
        max_value_bytes: cfg.max_value_bytes,
        max_scan_limit: cfg.max_scan_limit,
        request_timeout: Duration::from_millis(cfg.request_timeout_ms),
        default_read_mode: cfg.default_read_mode,
        session_idle_timeout_ms: cfg.session_idle_timeout_ms,
        max_client_sessions: cfg.max_client_sessions,
        fault_lose_write_reply_every: cfg.fault_lose_write_reply_every,
    };
    let who = ApiIdentity {
        id: cfg.id,
        cluster_id: identity.cluster_id,
        address: cfg.advertise.clone(),
        http_address: cfg.http.map(|a| a.to_string()),
    };
    let backups = Backups::open(&cfg.data_dir)?;
    let ctx = ApiContext::new(
        handle,
        who,
        book.clone(),
        limits,
        metrics,
        backups,
        timeline.clone(),
    );
    let raft_svc = RaftService::new(
        cfg.id,
        identity.cluster_id,
        book.clone(),
        incarnations,
        peer_tx.clone(),
        stats,
    )
    .with_snapshots(SnapshotInbox::new(
        cfg.id,
        snapshot_store,
        peer_tx,
        snapshot_metrics,
    ));
    let max_client_message = cfg.max_value_bytes + (64 << 10);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sampler = tokio::spawn(timeline::sample_throughput(
        timeline,
        ctx.node.clone(),
        stop_rx.clone(),
    ));
    let grpc = {
        let mut stop = stop_rx.clone();
        let router = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(
                RaftServer::new(raft_svc).max_decoding_message_size(MAX_PEER_MESSAGE_BYTES),
            )
            .add_service(
                KvServer::new(KvService::new(ctx.clone()))
                    .max_decoding_message_size(max_client_message)
                    .max_encoding_message_size(max_client_message),
            )
            .add_service(ClusterServer::new(ClusterService::new(ctx.clone())));
        tokio::spawn(async move {
            // Serving from our own listener bypasses the builder's nodelay setting:
            // set it on every accepted socket, or small responses wait ~40 ms for a
            // delayed ACK (Nagle).
            let incoming = TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
            router
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        })
    };
    let http = http_listener.map(|listener| {
        let mut stop = stop_rx.clone();
        let app = api::router(ctx.clone());
        tokio::spawn(async move {
            use axum::serve::ListenerExt as _;
            let listener = listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!("cannot set TCP_NODELAY on an HTTP connection: {e}");
                }
            });
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        })
    });
    let redis = redis_listener
        .map(|listener| tokio::spawn(crate::redis::serve(listener, ctx.clone(), stop_rx.clone())));
    tracing::info!(
        id = cfg.id,
        grpc = %cfg.listen,
        http = ?cfg.http,
        redis = ?cfg.redis,
        cluster = format!("{:016x}", identity.cluster_id),
        "node started"
    );

    // Run until asked to stop, or until the consensus thread stops on its own
    // (which only a fatal error makes it do).
    let mut node_done = tokio::task::spawn_blocking(move || join.join());
    let outcome = tokio::select! {
        _ = shutdown => {
            hand_off_leadership(&ctx, Duration::from_millis(2 * cfg.election_timeout_ms)).await;
            if cfg.leave_on_shutdown {
                leave_cluster(&ctx, Duration::from_millis(cfg.request_timeout_ms)).await;
            }
            let _ = stop_node.send(());
            (&mut node_done).await
        }
        r = &mut node_done => r,
    };
    let _ = stop_tx.send(true);
    // Every request the node accepted has been answered by now. A graceful server
    // shutdown would still wait for every connection to close, and peers' streams
    // never do: give responses in flight a moment to be written, then close.
    drain(grpc, SERVER_DRAIN).await;
    if let Some(h) = http {
        drain(h, SERVER_DRAIN).await;
    }
    if let Some(h) = redis {
        drain(h, SERVER_DRAIN).await;
    }
    let _ = sampler.await;
    match outcome {
        Ok(Ok(result)) => result,
        Ok(Err(_)) | Err(_) => Err(ServerError::Fatal("the consensus thread panicked".into())),
    }
}

/// How long the servers may take to finish writing responses at shutdown.
const SERVER_DRAIN: Duration = Duration::from_secs(1);

/// Waits up to `limit` for a server task to end, then aborts it.
async fn drain<T>(mut task: tokio::task::JoinHandle<T>, limit: Duration) {
    if tokio::time::timeout(limit, &mut task).await.is_err() {
        task.abort();
        let _ = task.await;
    }
}

/// A leader that stops gracefully first hands leadership to the most caught-up
/// voter, so the cluster does not wait out an election timeout (thesis §3.10).
async fn hand_off_leadership(ctx: &ApiContext, timeout: Duration) {
    let status = ctx.node.status();
    if status.role != keel_raft::Role::Leader || ctx.members.conf().voters.len() < 2 {
        return;
    }
    match ctx.node.transfer_leader(0, timeout).await {
        Ok(leader) => tracing::info!("handed leadership to node {leader} before shutting down"),
        Err(e) => tracing::warn!("could not hand leadership over before shutting down: {e}"),
    }
}

/// `--leave-on-shutdown`: asks the (new) leader to remove this node, so the
/// cluster's quorum no longer counts it.
async fn leave_cluster(ctx: &ApiContext, timeout: Duration) {
    let others: Vec<String> = ctx
        .members
        .members()
        .into_iter()
        .filter(|m| m.id != ctx.id && !m.address.is_empty())
        .map(|m| m.address)
        .collect();
    let line = join::leave(ctx.id, others, timeout).await;
    tracing::info!("{line}");
}

fn fmt_ids<'a>(ids: impl Iterator<Item = &'a u64>) -> String {
    ids.map(u64::to_string).collect::<Vec<_>>().join(", ")
}

async fn bind(addr: &str) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: addr.to_string(),
            source,
        })
}

//! Assembles a node: identity, storage, transport, the consensus thread, and the
//! gRPC, HTTP and Redis servers; runs until shutdown or a fatal error.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use keel_client::BearerToken;
use keel_proto::raft::raft_server::RaftServer;
use keel_proto::v1::cluster_server::ClusterServer;
use keel_proto::v1::kv_server::KvServer;
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;

use crate::api::{
    self, ApiContext, ApiIdentity, ApiLimits, ClusterService, KvService, PlacementAccess,
};
use crate::auth::{GrpcAuth, TokenCheck};
use crate::backup::Backups;
use crate::config::{JoinAs, ServerConfig};
use crate::error::ServerError;
use crate::events::EventLog;
use crate::identity::{self, lock_data_dir};
use crate::join::{self, Credentials};
use crate::listeners;
use crate::members::MemberInfo;
use crate::metrics::Metrics;
use crate::node::{self, NodeParts};
use crate::peers::PeerIncarnations;
use crate::placement::{
    MapCache, conf_sync, follow, group1_mirror, member, mover, reconcile, register,
};
use crate::timeline::{self, Timeline};
use crate::tls::NodeTls;
use crate::transport::{
    GroupDemux, HostedGroups, LocalIdentity, MAX_PEER_MESSAGE_BYTES, PeerConnector, RaftService,
    SnapshotInboxes, Transport,
};
use keel_placement::PlacementMachine;

/// Runs a node until `shutdown` resolves (returns Ok) or the node fails (Err).
pub async fn run(
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    cfg.validate()?;
    let (tls, creds) = load_security(&cfg)?;
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
            let joined = join::join(&cfg, &creds).await?;
            let identity = identity::create_joined(
                &cfg.data_dir,
                cfg.id,
                joined.cluster_id,
                &joined.bootstrap,
                cfg.join_as != JoinAs::Member,
            )?;
            let line = match cfg.join_as {
                JoinAs::Member => format!(
                    "Node {} joined cluster {:016x} through {seed} as a learner{}; members: {}.",
                    cfg.id,
                    identity.cluster_id,
                    if cfg.learner { " (kept a learner)" } else { "" },
                    fmt_ids(joined.members.keys())
                ),
                JoinAs::Placed => format!(
                    "Node {} joined cluster {:016x} through {seed}; placement gave it group(s) {} \
                     with nodes {}.",
                    cfg.id,
                    identity.cluster_id,
                    fmt_ids(joined.groups.iter()),
                    fmt_ids(joined.members.keys())
                ),
                JoinAs::Spare => format!(
                    "Node {} joined cluster {:016x} through {seed} as a spare: registered with \
                     placement, with no replicas until an operator gives it some.",
                    cfg.id, identity.cluster_id
                ),
            };
            events.note(&line);
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
    let book = recovered.kv_group.book.clone();
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
    let metrics = Arc::new(Metrics::new());
    let stats = metrics.transport.clone();
    let local = LocalIdentity {
        node_id: cfg.id,
        cluster_id: identity.cluster_id,
        incarnation: identity.incarnation,
    };
    let transport = Transport::start(
        local,
        &peers,
        cfg.max_peer_queue,
        stats.clone(),
        creds.peers.clone(),
    );
    // Sized for the largest cluster this node is likely to see (it may grow).
    let (peer_tx, peer_rx) = crossbeam_channel::bounded(cfg.max_peer_queue * peers.len().max(5));
    // The node adds the groups it hosts; the receiver lets in only theirs.
    let hosted = HostedGroups::new([], metrics.peer_messages_unknown_group.clone());
    let inboxes = SnapshotInboxes::default();
    let node::RunningNode {
        handle,
        placement,
        directory,
        hosts,
        stop: stop_node,
        join,
    } = node::start(NodeParts {
        recovered,
        transport,
        events,
        peer_rx,
        hosted: hosted.clone(),
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
        cfg: cfg.clone(),
        inboxes: inboxes.clone(),
        peer_tx: peer_tx.clone(),
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
        peers: creds.peers.clone(),
        token: creds.token.clone(),
        outside_group_1: identity.outside_group_1,
    };
    let token_check = creds
        .token
        .clone()
        .map(|t| TokenCheck::new(t, metrics.clone()));
    let backups = Backups::open(&cfg.data_dir)?;
    let maps = MapCache::default();
    let ctx = ApiContext::new(
        handle,
        who,
        book.clone(),
        limits,
        metrics,
        backups,
        timeline.clone(),
        maps.clone(),
        PlacementAccess {
            node: placement.clone(),
            members: identity.placement.clone().unwrap_or_default(),
        },
        directory.clone(),
    );
    let mut raft_svc = RaftService::new(
        cfg.id,
        identity.cluster_id,
        book.clone(),
        incarnations,
        GroupDemux::new(hosted, peer_tx.clone()),
        stats,
    )
    .with_snapshot_inboxes(inboxes)
    .with_groups(directory.clone())
    .with_map(maps.clone());
    if let Some(tls) = &tls {
        raft_svc = raft_svc.with_node_certs(tls.nodes.clone(), ctx.metrics.clone());
    }
    let max_client_message = cfg.max_value_bytes + (64 << 10);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sampler = tokio::spawn(timeline::sample_throughput(
        timeline,
        ctx.node.clone(),
        stop_rx.clone(),
    ));
    start_map_tasks(
        &cfg,
        &identity,
        placement,
        &ctx,
        maps.clone(),
        stop_rx.clone(),
    );
    if identity.placement.is_some() {
        // Asks other members whether a removal committed (`conf_sync.rs`):
        // short deadlines, a member that does not answer counts for nothing.
        let peer_client =
            join::client(vec![cfg.advertise.clone()], Duration::from_secs(2), &creds)?;
        tokio::spawn(conf_sync::conf_sync(
            cfg.id,
            peer_client,
            maps.clone(),
            directory.clone(),
            hosts.clone(),
            stop_rx.clone(),
        ));
        tokio::spawn(reconcile::reconcile(
            cfg.id,
            maps,
            directory.clone(),
            hosts,
            stop_rx.clone(),
        ));
        let mover = mover::Mover {
            ctx: ctx.clone(),
            reach: mover::Reach::new(cfg.id, directory, creds.peers.clone(), local),
            copy_rate: Some(cfg.slot_copy_bytes_per_sec).filter(|&r| r > 0),
        };
        tokio::spawn(mover::run(Arc::new(mover), stop_rx.clone()));
        tokio::spawn(register::register_self(ctx.clone(), stop_rx.clone()));
        tokio::spawn(group1_mirror::mirror_group1(ctx.clone(), stop_rx.clone()));
    }
    // Client services check the bearer token (if any) before their handlers run;
    // the peer service is authenticated by mutual TLS instead.
    let auth = GrpcAuth(token_check.clone());
    let router = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(RaftServer::new(raft_svc).max_decoding_message_size(MAX_PEER_MESSAGE_BYTES))
        .add_service(InterceptedService::new(
            KvServer::new(KvService::new(ctx.clone()))
                .max_decoding_message_size(max_client_message)
                .max_encoding_message_size(max_client_message),
            auth.clone(),
        ))
        .add_service(InterceptedService::new(
            ClusterServer::new(ClusterService::new(ctx.clone())),
            auth,
        ));
    let grpc = listeners::spawn_grpc(
        router,
        grpc_listener,
        tls.as_ref(),
        ctx.metrics.clone(),
        stop_rx.clone(),
    )
    .map_err(|source| ServerError::Bind {
        addr: cfg.listen.to_string(),
        source,
    })?;
    let http = match (http_listener, cfg.http) {
        (Some(listener), Some(addr)) => Some(
            listeners::spawn_http(
                api::router(ctx.clone(), token_check.clone()),
                listener,
                tls.as_ref(),
                ctx.metrics.clone(),
                stop_rx.clone(),
            )
            .map_err(|source| ServerError::Bind {
                addr: addr.to_string(),
                source,
            })?,
        ),
        _ => None,
    };
    let redis = redis_listener.map(|listener| {
        let security = crate::redis::Security {
            tls: tls.as_ref().map(|t| t.client_ports.clone()),
            token: token_check.clone(),
        };
        tokio::spawn(crate::redis::serve(
            listener,
            ctx.clone(),
            security,
            stop_rx.clone(),
        ))
    });
    tracing::info!(
        id = cfg.id,
        grpc = %cfg.listen,
        http = ?cfg.http,
        redis = ?cfg.redis,
        cluster = format!("{:016x}", identity.cluster_id),
        tls = tls.is_some(),
        client_certificates = cfg.client_ca.is_some(),
        token = creds.token.is_some(),
        "node started"
    );

    // Run until asked to stop, or until the consensus thread stops on its own
    // (which only a fatal error makes it do).
    let mut node_done = tokio::task::spawn_blocking(move || join.join());
    let outcome = tokio::select! {
        _ = shutdown => {
            let hand_off = Duration::from_millis(2 * cfg.election_timeout_ms);
            // Every group this node leads at once: group 1, the placement
            // group, and the data groups.
            tokio::join!(
                hand_off_leadership(&ctx, hand_off),
                hand_off_other_groups(&ctx, hand_off),
            );
            if cfg.leave_on_shutdown {
                leave_cluster(&ctx, Duration::from_millis(cfg.request_timeout_ms), &creds).await;
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

/// Starts what keeps the node's cached map current: on a placement member, the
/// feed from its replica and (in a new cluster) the creation of the initial map
/// by the group's first leader; elsewhere, following a placement member.
fn start_map_tasks(
    cfg: &ServerConfig,
    identity: &identity::Identity,
    placement: Option<node::NodeHandle>,
    ctx: &Arc<ApiContext>,
    maps: MapCache,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let Some(members) = identity.placement.clone() else {
        // A data directory from before the placement group: group 1 only.
        return;
    };
    let Some(node) = placement else {
        tokio::spawn(follow::follow(ctx.clone(), members, maps, stop));
        return;
    };
    tokio::spawn(member::feed_cache(node.clone(), maps.clone(), stop.clone()));
    match PlacementMachine::bootstrap(&identity.members) {
        Ok(machine) => {
            tokio::spawn(member::create_initial_map(
                node,
                machine.map().clone(),
                maps,
                Duration::from_millis(cfg.request_timeout_ms),
                stop,
            ));
        }
        // More than seven initial members: group 1 could not hold them all,
        // so no initial map is derived (docs/sharding.md); the placement group
        // runs without one until an operator creates it.
        Err(e) => tracing::warn!("no initial cluster map: {e}"),
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

/// The same for another group this node hosts (the placement group, so that
/// the map stays writable; a data group, so that its slots do) — without
/// waiting out an election timeout.
async fn hand_off_group(node: &node::NodeHandle, timeout: Duration) {
    let status = node.status();
    let group = node.group();
    if status.role != keel_raft::Role::Leader || status.peers.is_empty() {
        return;
    }
    match node.transfer_leader(0, timeout).await {
        Ok(leader) => tracing::info!(group, "handed the group's leadership to node {leader}"),
        Err(e) => tracing::warn!(group, "could not hand the group's leadership over: {e}"),
    }
}

/// [`hand_off_group`] for every group this node hosts but group 1 (the
/// placement group and the data groups: all in the directory), at once.
async fn hand_off_other_groups(ctx: &ApiContext, timeout: Duration) {
    let others: Vec<node::NodeHandle> = ctx
        .groups
        .all()
        .into_iter()
        .filter(|h| h.group() != node::KV_GROUP)
        .collect();
    futures::future::join_all(others.iter().map(|h| hand_off_group(h, timeout))).await;
}

/// `--leave-on-shutdown`: asks the (new) leader to remove this node, so the
/// cluster's quorum no longer counts it.
async fn leave_cluster(ctx: &ApiContext, timeout: Duration, creds: &Credentials) {
    if !ctx.members.is_member(ctx.id) {
        tracing::info!(
            "node {} is not a member of group 1 (it joined through placement): nothing to leave",
            ctx.id
        );
        return;
    }
    let others: Vec<String> = ctx
        .members
        .members()
        .into_iter()
        .filter(|m| m.id != ctx.id && !m.address.is_empty())
        .map(|m| m.address)
        .collect();
    let line = join::leave(ctx.id, others, timeout, creds).await;
    tracing::info!("{line}");
}

/// Loads the TLS material and the bearer token, so that a bad file stops the
/// node before it binds or joins anything.
fn load_security(cfg: &ServerConfig) -> Result<(Option<NodeTls>, Credentials), ServerError> {
    let tls = match cfg.tls_files() {
        Some(files) => {
            let host = cfg
                .advertise
                .rsplit_once(':')
                .map_or(cfg.advertise.as_str(), |(host, _)| host);
            Some(NodeTls::load(&files, host)?)
        }
        None => None,
    };
    let token = match &cfg.auth_token_file {
        Some(path) => Some(
            BearerToken::from_file(path)
                .map_err(|e| ServerError::Config(format!("--auth-token-file: {e}")))?,
        ),
        None => None,
    };
    if token.is_some() && tls.is_none() {
        tracing::warn!(
            "--auth-token-file without TLS: the bearer token crosses the network in clear \
             text (set --tls-cert, --tls-key and --peer-ca)"
        );
    }
    let peers = match &tls {
        Some(tls) => PeerConnector::with_tls(tls.peer_client.clone()),
        None => PeerConnector::plain(),
    };
    Ok((tls, Credentials { peers, token }))
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

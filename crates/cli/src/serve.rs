//! `keel serve`: run one node.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use keel_server::{DefaultReadMode, ServerConfig, parse_initial_cluster};

use crate::logging::{self, LogFormat};

/// Read mode for requests that do not choose one.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum ReadModeArg {
    /// Linearizable reads (ReadIndex on the leader).
    Linearizable,
    /// Local, possibly stale reads.
    Stale,
}

#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// This node's id (a positive integer, unique in the cluster).
    #[arg(long, env = "KEEL_ID")]
    id: u64,
    /// Directory for the log, the state machine and the node's identity.
    #[arg(long, env = "KEEL_DATA_DIR")]
    data_dir: PathBuf,
    /// gRPC address to bind (clients and peers).
    #[arg(long, env = "KEEL_LISTEN", default_value = "127.0.0.1:7001")]
    listen: SocketAddr,
    /// Address others use to reach this node (defaults to --listen).
    #[arg(long, env = "KEEL_ADVERTISE")]
    advertise: Option<String>,
    /// HTTP/JSON API address (disabled if not given).
    #[arg(long, env = "KEEL_HTTP")]
    http: Option<SocketAddr>,
    /// Members of a new cluster: `1=HOST:PORT,2=HOST:PORT,3=HOST:PORT`. Required on
    /// first start; on restart it may be omitted and must otherwise match.
    #[arg(long, env = "KEEL_INITIAL_CLUSTER", default_value = "")]
    initial_cluster: String,
    /// Join a running cluster through any member's gRPC address (`HOST:PORT`),
    /// instead of bootstrapping one. Only used when the data directory is empty:
    /// the node is added as a learner, receives a snapshot and the log, and is
    /// promoted to voter once caught up. Excludes --initial-cluster.
    #[arg(long, env = "KEEL_JOIN")]
    join: Option<String>,
    /// With --join: stay a learner (receive the log, never vote).
    #[arg(long, env = "KEEL_LEARNER")]
    learner: bool,
    /// On SIGTERM or SIGINT, leave the cluster (remove this node from the
    /// configuration) before stopping; a leader hands leadership over first.
    #[arg(long, env = "KEEL_LEAVE_ON_SHUTDOWN")]
    leave_on_shutdown: bool,
    /// The leader promotes a learner to voter once it is within this many entries
    /// of the leader's log.
    #[arg(long, env = "KEEL_PROMOTE_LAG_ENTRIES", default_value_t = 1_000)]
    promote_lag_entries: u64,
    /// Distinguishes clusters built from the same addresses.
    #[arg(long, env = "KEEL_CLUSTER_TOKEN", default_value = "keel")]
    cluster_token: String,
    /// Write node events as plain sentences to this file.
    #[arg(long, env = "KEEL_EVENT_LOG")]
    event_log: Option<PathBuf>,
    /// Minimum election timeout (milliseconds); actual timeouts are drawn from [t, 2t).
    #[arg(long, env = "KEEL_ELECTION_TIMEOUT_MS", default_value_t = 300)]
    election_timeout_ms: u64,
    /// Leader heartbeat interval (milliseconds).
    #[arg(long, env = "KEEL_HEARTBEAT_INTERVAL_MS", default_value_t = 50)]
    heartbeat_interval_ms: u64,
    /// Length of a consensus tick (milliseconds).
    #[arg(long, env = "KEEL_TICK_MS", default_value_t = 10)]
    tick_ms: u64,
    /// Largest value accepted (bytes).
    #[arg(long, env = "KEEL_MAX_VALUE_BYTES", default_value_t = 1 << 20)]
    max_value_bytes: usize,
    /// How long a request may wait inside the node (milliseconds).
    #[arg(long, env = "KEEL_REQUEST_TIMEOUT_MS", default_value_t = 5000)]
    request_timeout_ms: u64,
    /// Read mode for requests that do not choose one.
    #[arg(
        long,
        env = "KEEL_DEFAULT_READ_MODE",
        value_enum,
        default_value = "linearizable"
    )]
    default_read_mode: ReadModeArg,
    /// WAL segment size (bytes).
    #[arg(long, env = "KEEL_WAL_SEGMENT_BYTES", default_value_t = 64 << 20)]
    wal_segment_bytes: u64,
    /// Take a snapshot of the state machine (in the background) after this many
    /// entries were applied since the last one, then compact the log; 0 never does.
    #[arg(long, env = "KEEL_SNAPSHOT_ENTRIES", default_value_t = 10_000)]
    snapshot_entries: u64,
    /// Entries kept behind a new snapshot for followers that lag a little (they get
    /// entries instead of a whole snapshot).
    #[arg(long, env = "KEEL_SNAPSHOT_TRAILING_ENTRIES", default_value_t = 1_000)]
    snapshot_trailing_entries: u64,
    /// Threads for network I/O (gRPC, HTTP); consensus and apply have their own.
    /// Default: one per core. Fewer wake-ups cost less when several nodes share a
    /// machine's cores (see BENCHMARKS.md).
    #[arg(long, env = "KEEL_IO_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    io_threads: Option<u16>,
    /// Log format.
    #[arg(long, env = "KEEL_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Log level (error, warn, info, debug, trace) or a tracing filter.
    #[arg(long, env = "KEEL_LOG_LEVEL", default_value = "info")]
    log_level: String,
}

impl ServeArgs {
    fn into_config(self) -> anyhow::Result<ServerConfig> {
        let mut cfg = ServerConfig::new(self.id, self.data_dir, self.listen);
        if let Some(a) = self.advertise {
            cfg.advertise = a;
        }
        cfg.http = self.http;
        cfg.initial_cluster = parse_initial_cluster(&self.initial_cluster)?;
        cfg.cluster_token = self.cluster_token;
        cfg.event_log = self.event_log;
        cfg.election_timeout_ms = self.election_timeout_ms;
        cfg.heartbeat_interval_ms = self.heartbeat_interval_ms;
        cfg.tick_ms = self.tick_ms;
        cfg.max_value_bytes = self.max_value_bytes;
        cfg.request_timeout_ms = self.request_timeout_ms;
        cfg.default_read_mode = match self.default_read_mode {
            ReadModeArg::Linearizable => DefaultReadMode::Linearizable,
            ReadModeArg::Stale => DefaultReadMode::Stale,
        };
        cfg.wal_segment_bytes = self.wal_segment_bytes;
        cfg.snapshot_entries = self.snapshot_entries;
        cfg.snapshot_trailing_entries = self.snapshot_trailing_entries;
        cfg.join = self.join;
        cfg.learner = self.learner;
        cfg.leave_on_shutdown = self.leave_on_shutdown;
        cfg.promote_lag_entries = self.promote_lag_entries;
        if cfg.learner && cfg.join.is_none() {
            anyhow::bail!("--learner only applies with --join");
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    logging::init(args.log_format, &args.log_level);
    let io_threads = args.io_threads;
    let cfg = args.into_config()?;
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = io_threads {
        builder.worker_threads(usize::from(n));
    }
    let rt = builder
        .enable_all()
        .thread_name("keel-io")
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(keel_server::run(cfg, shutdown_signal()))?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot watch SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutdown requested");
}

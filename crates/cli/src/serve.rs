//! `keel serve`: run one node.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{ArgMatches, Args, ValueEnum};
use keel_server::config::setting;
use keel_server::{DefaultReadMode, JoinAs, ServerConfig, parse_initial_cluster};

use crate::config_file;
use crate::logging::{self, LogFormat};

/// What a node started with --join becomes.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum JoinAsArg {
    /// A member of group 1.
    Member,
    /// Placed in a data group by the placement service.
    Placed,
    /// Registered with the placement service, with no replicas yet.
    Spare,
}

/// Read mode for requests that do not choose one.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum ReadModeArg {
    /// Linearizable reads (ReadIndex: on the leader, or on a follower through the
    /// leader).
    Linearizable,
    /// Linearizable reads under the leader's lease (no round trip; falls back to
    /// ReadIndex without a lease). Safe while clocks drift less than
    /// --max-clock-drift-ms over an election timeout.
    Lease,
    /// Local, possibly stale reads.
    Stale,
}

/// `keel serve`'s flags. Each is also a `KEEL_*` environment variable and (unless
/// hidden: test faults) a key of the `--config` file (the field name);
/// `config_file` resolves the three
/// (flag > environment > file > default), and `keel config default` prints this
/// table as a commented file, so a new flag needs nothing more than its entry here
/// (and an entry in [`FILE_EXAMPLES`] if it has no default).
#[derive(Args, Clone, Debug, PartialEq)]
pub(crate) struct ServeArgs {
    /// Read settings from this TOML file (`keel config default` prints one);
    /// flags and KEEL_* environment variables override it.
    #[arg(long, env = "KEEL_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// This node's id (a positive integer, unique in the cluster). Required.
    #[arg(long, env = "KEEL_ID")]
    pub(crate) id: Option<u64>,
    /// Directory for the log, the state machine and the node's identity. Required.
    #[arg(long, env = "KEEL_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// gRPC address to bind (clients and peers).
    #[arg(long, env = "KEEL_LISTEN", default_value = "127.0.0.1:7001")]
    pub(crate) listen: SocketAddr,
    /// Address others use to reach this node (defaults to --listen).
    #[arg(long, env = "KEEL_ADVERTISE")]
    pub(crate) advertise: Option<String>,
    /// HTTP/JSON API address (disabled if not given).
    #[arg(long, env = "KEEL_HTTP")]
    pub(crate) http: Option<SocketAddr>,
    /// Redis protocol (RESP2/RESP3) address, for redis-cli and Redis client
    /// libraries (disabled if not given). Every node serves it with keel's
    /// guarantees: followers forward writes to the leader, reads are
    /// linearizable unless the connection asks otherwise (READMODE). See
    /// docs/redis.md.
    #[arg(long, env = "KEEL_REDIS")]
    pub(crate) redis: Option<SocketAddr>,
    /// Members of a new cluster: `1=HOST:PORT,2=HOST:PORT,3=HOST:PORT`. Required on
    /// first start; on restart it may be omitted and must otherwise match.
    #[arg(long, env = "KEEL_INITIAL_CLUSTER", default_value = "")]
    pub(crate) initial_cluster: String,
    /// Join a running cluster through any member's gRPC address (`HOST:PORT`),
    /// instead of bootstrapping one. Only used when the data directory is empty:
    /// the node is added as a learner, receives a snapshot and the log, and is
    /// promoted to voter once caught up. Excludes --initial-cluster.
    #[arg(long, env = "KEEL_JOIN")]
    pub(crate) join: Option<String>,
    /// With --join: stay a learner (receive the log, never vote).
    #[arg(long, env = "KEEL_LEARNER")]
    pub(crate) learner: bool,
    /// With --join: `member` joins group 1 (the cluster's Raft membership, as
    /// in a cluster of one group); `placed` registers with the placement
    /// service, which puts the node in the data group short of replicas or
    /// forms a new group with it; `spare` only registers, for an operator to
    /// give it replicas (`keel shard group ...`). docs/sharding.md.
    #[arg(long, env = "KEEL_JOIN_AS", value_enum, default_value = "member")]
    pub(crate) join_as: JoinAsArg,
    /// With --join-as placed: the replica target of a group formed for this
    /// node (1 to 7).
    #[arg(long, env = "KEEL_NEW_GROUP_REPLICAS", default_value_t = 3)]
    pub(crate) new_group_replicas: u8,
    /// Bytes a second a slot move this node drives copies before the slot's
    /// hand-off (0: no limit): copying competes with clients for CPU and disk.
    #[arg(long, env = "KEEL_SLOT_COPY_BYTES_PER_SEC", default_value_t = keel_server::config::DEFAULT_SLOT_COPY_BYTES_PER_SEC)]
    pub(crate) slot_copy_bytes_per_sec: u64,
    /// On SIGTERM or SIGINT, leave the cluster (remove this node from the
    /// configuration) before stopping; a leader hands leadership over first.
    #[arg(long, env = "KEEL_LEAVE_ON_SHUTDOWN")]
    pub(crate) leave_on_shutdown: bool,
    /// The leader promotes a learner to voter once it is within this many entries
    /// of the leader's log.
    #[arg(long, env = "KEEL_PROMOTE_LAG_ENTRIES", default_value_t = 1_000)]
    pub(crate) promote_lag_entries: u64,
    /// Distinguishes clusters built from the same addresses.
    #[arg(long, env = "KEEL_CLUSTER_TOKEN", default_value = "keel")]
    pub(crate) cluster_token: String,
    /// Write node events as plain sentences to this file.
    #[arg(long, env = "KEEL_EVENT_LOG")]
    pub(crate) event_log: Option<PathBuf>,
    /// Minimum election timeout (milliseconds); actual timeouts are drawn from [t, 2t).
    #[arg(long, env = "KEEL_ELECTION_TIMEOUT_MS", default_value_t = 300)]
    pub(crate) election_timeout_ms: u64,
    /// How far clocks may drift apart over one election timeout (milliseconds): a
    /// leader's lease lasts an election timeout minus this after a heartbeat round
    /// a quorum acknowledged.
    #[arg(long, env = "KEEL_MAX_CLOCK_DRIFT_MS", default_value_t = 30)]
    pub(crate) max_clock_drift_ms: u64,
    /// Leader heartbeat interval (milliseconds).
    #[arg(long, env = "KEEL_HEARTBEAT_INTERVAL_MS", default_value_t = 50)]
    pub(crate) heartbeat_interval_ms: u64,
    /// A leader whose group was idle and fully replicated for this many
    /// heartbeat intervals quiesces it: no more heartbeats for that group until
    /// a write or read wakes it, or its leader's node falls silent (nodes still
    /// send each other one liveness heartbeat per interval). Saves CPU and
    /// network with many idle groups; 0 turns it off.
    #[arg(long, env = "KEEL_QUIESCE_AFTER_HEARTBEATS", default_value_t = 3)]
    pub(crate) quiesce_after_heartbeats: u32,
    /// Length of a consensus tick (milliseconds).
    #[arg(long, env = "KEEL_TICK_MS", default_value_t = 10)]
    pub(crate) tick_ms: u64,
    /// Largest value accepted (bytes).
    #[arg(long, env = "KEEL_MAX_VALUE_BYTES", default_value_t = 1 << 20)]
    pub(crate) max_value_bytes: usize,
    /// How long a request may wait inside the node (milliseconds).
    #[arg(long, env = "KEEL_REQUEST_TIMEOUT_MS", default_value_t = 5000)]
    pub(crate) request_timeout_ms: u64,
    /// Read mode for requests that do not choose one.
    #[arg(
        long,
        env = "KEEL_DEFAULT_READ_MODE",
        value_enum,
        default_value = "linearizable"
    )]
    pub(crate) default_read_mode: ReadModeArg,
    /// WAL segment size (bytes).
    #[arg(long, env = "KEEL_WAL_SEGMENT_BYTES", default_value_t = 64 << 20)]
    pub(crate) wal_segment_bytes: u64,
    /// Refuse writes (DISK_FULL) while the data directory's filesystem has less
    /// free space than this (bytes), and take them again once it has; reads go on.
    /// Should cover a WAL segment and the state machine's growth; 0 turns the
    /// check off.
    #[arg(long, env = "KEEL_MIN_FREE_DISK_BYTES", default_value_t = 128 << 20)]
    pub(crate) min_free_disk_bytes: u64,
    /// Take a snapshot of the state machine (in the background) after this many
    /// entries were applied since the last one, then compact the log; 0 never does.
    #[arg(long, env = "KEEL_SNAPSHOT_ENTRIES", default_value_t = 10_000)]
    pub(crate) snapshot_entries: u64,
    /// Entries kept behind a new snapshot for followers that lag a little (they get
    /// entries instead of a whole snapshot).
    #[arg(long, env = "KEEL_SNAPSHOT_TRAILING_ENTRIES", default_value_t = 1_000)]
    pub(crate) snapshot_trailing_entries: u64,
    /// Make the state machine durable (a redb commit with fsync) this often
    /// (milliseconds); the WAL covers what was applied since. Longer intervals
    /// stall answers less often (each flush pauses applying) but keep more WAL and
    /// replay more of it at start-up.
    #[arg(long, env = "KEEL_STATE_FLUSH_INTERVAL_MS", default_value_t = 1_000)]
    pub(crate) state_flush_interval_ms: u64,
    /// Forget a client session (exactly-once writes) after it was unused for this
    /// long (milliseconds of log time); a retry of one of its writes is then
    /// refused instead of applied again. At least one minute.
    #[arg(
        long,
        env = "KEEL_SESSION_IDLE_TIMEOUT_MS",
        default_value_t = 3_600_000
    )]
    pub(crate) session_idle_timeout_ms: u64,
    /// Most client sessions kept; a new one beyond it evicts the least recently
    /// used session that has been idle for at least a minute.
    #[arg(long, env = "KEEL_MAX_CLIENT_SESSIONS", default_value_t = 100_000)]
    pub(crate) max_client_sessions: u64,
    /// Test fault: answer every Nth write this node proposes with OUTCOME_UNKNOWN
    /// after applying it, as if the reply were lost (0: never). Not a file setting.
    #[arg(
        long,
        env = "KEEL_FAULT_LOSE_WRITE_REPLY_EVERY",
        default_value_t = 0,
        hide = true
    )]
    pub(crate) fault_lose_write_reply_every: u64,
    /// Threads for network I/O (gRPC, HTTP); consensus and apply have their own.
    /// Default: one per core. Fewer wake-ups cost less when several nodes share a
    /// machine's cores (see BENCHMARKS.md).
    #[arg(long, env = "KEEL_IO_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) io_threads: Option<u16>,
    /// This node's TLS certificate (PEM), signed by the cluster CA for every name
    /// clients and peers use to reach it (`keel certs` makes one). With it, the
    /// gRPC, HTTP and RESP ports speak TLS only; needs --tls-key and --peer-ca.
    #[arg(long, env = "KEEL_TLS_CERT")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "KEEL_TLS_KEY")]
    pub(crate) tls_key: Option<PathBuf>,
    /// The cluster CA (PEM): nodes accept peer traffic only from connections that
    /// present a node certificate it signed, and trust only it when connecting to
    /// peers.
    #[arg(long, env = "KEEL_PEER_CA")]
    pub(crate) peer_ca: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM) on every client port
    /// (may be the same file as --peer-ca). Without it, clients need none.
    #[arg(long, env = "KEEL_CLIENT_CA")]
    pub(crate) client_ca: Option<PathBuf>,
    /// The certificate this node presents when it connects to peers, if not
    /// --tls-cert (a node certificate of the cluster CA).
    #[arg(long, env = "KEEL_PEER_CERT")]
    pub(crate) peer_cert: Option<PathBuf>,
    /// The private key of --peer-cert.
    #[arg(long, env = "KEEL_PEER_KEY")]
    pub(crate) peer_key: Option<PathBuf>,
    /// Require this bearer token (the file's first line) on every client request:
    /// gRPC metadata or HTTP header `authorization: Bearer <token>`, or Redis
    /// AUTH. /healthz, /metrics and the dashboard page stay open.
    #[arg(long, env = "KEEL_AUTH_TOKEN_FILE")]
    pub(crate) auth_token_file: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "KEEL_LOG_FORMAT", value_enum, default_value = "text")]
    pub(crate) log_format: LogFormat,
    /// Log level (error, warn, info, debug, trace) or a tracing filter.
    #[arg(long, env = "KEEL_LOG_LEVEL", default_value = "info")]
    pub(crate) log_level: String,
}

impl ServeArgs {
    /// The node's configuration, validated (`ServerConfig::validate`).
    pub(crate) fn into_config(self) -> anyhow::Result<ServerConfig> {
        let id = self
            .id
            .context("no node id: set --id, KEEL_ID or `id` in the config file")?;
        let data_dir = self.data_dir.context(
            "no data directory: set --data-dir, KEEL_DATA_DIR or `data_dir` in the config file",
        )?;
        let mut cfg = ServerConfig::new(id, data_dir, self.listen);
        if let Some(a) = self.advertise {
            cfg.advertise = a;
        }
        cfg.http = self.http;
        cfg.redis = self.redis;
        cfg.initial_cluster = parse_initial_cluster(&self.initial_cluster)?;
        cfg.cluster_token = self.cluster_token;
        cfg.event_log = self.event_log;
        cfg.election_timeout_ms = self.election_timeout_ms;
        cfg.heartbeat_interval_ms = self.heartbeat_interval_ms;
        cfg.max_clock_drift_ms = self.max_clock_drift_ms;
        cfg.tick_ms = self.tick_ms;
        cfg.quiesce_after_heartbeats = self.quiesce_after_heartbeats;
        cfg.max_value_bytes = self.max_value_bytes;
        cfg.request_timeout_ms = self.request_timeout_ms;
        cfg.default_read_mode = match self.default_read_mode {
            ReadModeArg::Linearizable => DefaultReadMode::Linearizable,
            ReadModeArg::Lease => DefaultReadMode::Lease,
            ReadModeArg::Stale => DefaultReadMode::Stale,
        };
        cfg.wal_segment_bytes = self.wal_segment_bytes;
        cfg.min_free_disk_bytes = self.min_free_disk_bytes;
        cfg.snapshot_entries = self.snapshot_entries;
        cfg.snapshot_trailing_entries = self.snapshot_trailing_entries;
        cfg.join = self.join;
        cfg.learner = self.learner;
        cfg.join_as = match self.join_as {
            JoinAsArg::Member => JoinAs::Member,
            JoinAsArg::Placed => JoinAs::Placed,
            JoinAsArg::Spare => JoinAs::Spare,
        };
        cfg.new_group_replicas = self.new_group_replicas;
        cfg.slot_copy_bytes_per_sec = self.slot_copy_bytes_per_sec;
        cfg.leave_on_shutdown = self.leave_on_shutdown;
        cfg.promote_lag_entries = self.promote_lag_entries;
        cfg.session_idle_timeout_ms = self.session_idle_timeout_ms;
        cfg.state_flush_interval_ms = self.state_flush_interval_ms;
        cfg.max_client_sessions = self.max_client_sessions;
        cfg.fault_lose_write_reply_every = self.fault_lose_write_reply_every;
        cfg.tls_cert = self.tls_cert;
        cfg.tls_key = self.tls_key;
        cfg.peer_ca = self.peer_ca;
        cfg.client_ca = self.client_ca;
        cfg.peer_cert = self.peer_cert;
        cfg.peer_key = self.peer_key;
        cfg.auth_token_file = self.auth_token_file;
        if cfg.learner && cfg.join.is_none() {
            anyhow::bail!(
                "{} only applies with {}, which is not set",
                setting("learner"),
                setting("join")
            );
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Example values for the settings without a default, shown commented out in
/// `keel config default` (a unit test checks that each such flag has one).
pub(crate) const FILE_EXAMPLES: &[(&str, &str)] = &[
    ("id", "1"),
    ("data_dir", "\"/var/lib/keel\""),
    ("advertise", "\"10.0.0.1:7001\""),
    ("http", "\"0.0.0.0:8001\""),
    ("redis", "\"0.0.0.0:6379\""),
    (
        "initial_cluster",
        "{ 1 = \"10.0.0.1:7001\", 2 = \"10.0.0.2:7001\", 3 = \"10.0.0.3:7001\" }",
    ),
    ("join", "\"10.0.0.1:7001\""),
    ("event_log", "\"/var/log/keel/events.log\""),
    ("io_threads", "4"),
    ("tls_cert", "\"/etc/keel/node-1.pem\""),
    ("tls_key", "\"/etc/keel/node-1-key.pem\""),
    ("peer_ca", "\"/etc/keel/ca.pem\""),
    ("client_ca", "\"/etc/keel/ca.pem\""),
    ("peer_cert", "\"/etc/keel/node-1.pem\""),
    ("peer_key", "\"/etc/keel/node-1-key.pem\""),
    ("auth_token_file", "\"/etc/keel/token\""),
];

/// The process environment, as `resolve` looks it up.
pub(crate) fn process_env(name: &str) -> Option<std::ffi::OsString> {
    std::env::var_os(name)
}

/// Runs a node. `matches` are `keel serve`'s, which tell flags given on the
/// command line from defaults.
pub(crate) fn run(matches: &ArgMatches) -> anyhow::Result<ExitCode> {
    let resolved = config_file::resolve(matches, &process_env)?;
    let args = &resolved.args;
    logging::init(args.log_format, &args.log_level);
    match keel_server::test_bugs::check_env() {
        Ok(Some(bug)) => tracing::warn!(
            "test bug {bug} is switched on: this node is deliberately broken (chaos sanity runs only)"
        ),
        Ok(None) => {}
        Err(e) => anyhow::bail!(e),
    }
    let io_threads = args.io_threads;
    let cfg = resolved.config()?;
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

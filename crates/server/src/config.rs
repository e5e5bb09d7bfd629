//! Configuration of one keel node: every field documented, units in names,
//! validated before anything starts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use keel_raft::NodeId;

use crate::error::ServerError;

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 4096;

/// The default of [`ServerConfig::slot_copy_bytes_per_sec`] (BENCHMARKS.md,
/// "Moving a slot": a 100k-key slot of 256-byte values still moves within 5 s).
pub const DEFAULT_SLOT_COPY_BYTES_PER_SEC: u64 = 10 << 20;

/// What a node started with `--join` becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum JoinAs {
    /// A member of group 1 (added as a learner, promoted once caught up), as
    /// in a cluster of one group.
    #[default]
    Member,
    /// Registered with the placement service, which gives the node its first
    /// replica (docs/sharding.md, *Joining through placement*): a place in a
    /// data group short of replicas, or a new group once every group is full.
    Placed,
    /// Registered with the placement service with no replicas: an operator
    /// gives it some (`keel shard group create/add-member`).
    Spare,
}

/// How reads are served when the request does not say.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DefaultReadMode {
    /// Linearizable (ReadIndex on the leader, or on a follower through it).
    #[default]
    Linearizable,
    /// Linearizable under the leader's lease when it holds one (no round trip),
    /// ReadIndex otherwise.
    Lease,
    /// This node's applied state, possibly stale.
    Stale,
}

/// Everything a node needs to run.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// This node's id (non-zero, unique in the cluster).
    pub id: NodeId,
    /// Directory for the WAL, the state machine and the node's identity.
    pub data_dir: PathBuf,
    /// Address the gRPC server binds (clients and peers).
    pub listen: SocketAddr,
    /// Address other nodes and clients use to reach `listen` (defaults to it).
    pub advertise: String,
    /// Address of the HTTP/JSON API, if enabled.
    pub http: Option<SocketAddr>,
    /// Address of the Redis protocol (RESP) server, if enabled (`docs/redis.md`).
    pub redis: Option<SocketAddr>,
    /// Static bootstrap membership: id → advertised gRPC address. Required on first
    /// start; on restart it must match what the data directory recorded, or be empty.
    pub initial_cluster: BTreeMap<NodeId, String>,
    /// Mixed with the membership into the cluster id, so two clusters built from the
    /// same addresses still refuse each other's messages.
    pub cluster_token: String,
    /// Length of one logical tick of the consensus core.
    pub tick_ms: u64,
    /// Minimum election timeout; each follower draws from `[t, 2t)`.
    pub election_timeout_ms: u64,
    /// Interval between leader heartbeats.
    pub heartbeat_interval_ms: u64,
    /// A leader whose group was idle and settled for this many heartbeat
    /// intervals quiesces it: no heartbeats until a write, read or failure wakes
    /// it (docs/sharding.md, "Heartbeats: coalesced, and quiet groups
    /// quiesce"). 0 turns quiescence off. Node-level liveness heartbeats go out
    /// either way.
    pub quiesce_after_heartbeats: u32,
    /// Bound on how far two nodes' clocks drift apart over one election timeout:
    /// the leader lease lasts `election_timeout_ms - max_clock_drift_ms` after a
    /// heartbeat round a quorum acknowledged.
    pub max_clock_drift_ms: u64,
    /// Largest value accepted, in bytes.
    pub max_value_bytes: usize,
    /// How long a write or read may wait inside the node before the client is told
    /// the outcome is unknown (writes) or the request failed (reads).
    pub request_timeout_ms: u64,
    /// Reads that do not name a mode use this one.
    pub default_read_mode: DefaultReadMode,
    /// Plain-sentence event log, one event a line.
    pub event_log: Option<PathBuf>,
    /// WAL segment size (each segment is preallocated to it).
    pub wal_segment_bytes: u64,
    /// Writes are refused (DISK_FULL) while the data directory's filesystem has
    /// less free space than this, and taken again once it has; reads go on. It
    /// should cover a WAL segment and what the state machine grows by meanwhile.
    /// 0 turns the check off: a full disk is then noticed only when the WAL cannot
    /// grow, and the state machine may stop the node first.
    pub min_free_disk_bytes: u64,
    /// How often the state machine is made durable (the WAL covers the gap).
    pub state_flush_interval_ms: u64,
    /// Bound on client requests queued for the consensus thread.
    pub max_pending_requests: usize,
    /// Bound on message batches queued to one peer before new ones are dropped
    /// (their bytes are bounded by the core's in-flight window per follower), and,
    /// times the member count, on messages queued for the consensus thread.
    pub max_peer_queue: usize,
    /// Largest number of keys a scan returns.
    pub max_scan_limit: u32,
    /// A snapshot of the state machine is written (in the background) once this
    /// many entries were applied since the last one; 0 never takes one.
    pub snapshot_entries: u64,
    /// Entries kept in memory (and at least as many in the WAL) behind a new
    /// snapshot, so that slightly lagging followers get entries instead of a
    /// whole snapshot.
    pub snapshot_trailing_entries: u64,
    /// On first start with an empty data directory: the gRPC address of any member
    /// of a running cluster to join, instead of bootstrapping one.
    pub join: Option<String>,
    /// When joining: stay a learner (never promoted automatically).
    pub learner: bool,
    /// When joining: a member of group 1, or placed by the placement service.
    pub join_as: JoinAs,
    /// When joining as placed: the replica target of a group formed for this
    /// node (1 to 7).
    pub new_group_replicas: u8,
    /// How many bytes a second a slot move copies before its fence, when this
    /// node drives it (0: no limit). Copying competes with the groups'
    /// clients for CPU and disk; the limit spreads it out.
    pub slot_copy_bytes_per_sec: u64,
    /// On a graceful stop (SIGTERM), remove this node from the cluster first.
    pub leave_on_shutdown: bool,
    /// The leader promotes a learner to voter once the learner holds all but at
    /// most this many of the leader's log entries.
    pub promote_lag_entries: u64,
    /// A client session unused for longer than this (in log time) is forgotten;
    /// a retry of one of its writes is then refused (SESSION_EXPIRED) rather than
    /// applied again. Stamped into each session write by the leader, so replicas
    /// agree even if nodes are configured differently (`docs/sessions.md`).
    pub session_idle_timeout_ms: u64,
    /// Most client sessions the state machine keeps; a new one beyond it evicts
    /// the least recently used (if idle for at least a minute). Stamped like
    /// `session_idle_timeout_ms`.
    pub max_client_sessions: u64,
    /// Test fault: answer every Nth write this node proposed with
    /// OUTCOME_UNKNOWN after it was applied, as if the reply were lost (0: never).
    /// Lets tests force a client to retry a write that did happen.
    pub fault_lose_write_reply_every: u64,
    /// `--tls-cert`: this node's certificate (PEM), presented on every listener
    /// and to peers. With it, every port speaks TLS (`docs/security.md`).
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key`: the certificate's private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// `--peer-ca`: the cluster CA; peers must present a node certificate it
    /// signed, and this node trusts only it when connecting to peers.
    pub peer_ca: Option<PathBuf>,
    /// `--client-ca`: when set, clients must present a certificate it signed.
    pub client_ca: Option<PathBuf>,
    /// `--peer-cert`: the certificate presented when connecting to peers, if not
    /// `tls_cert`.
    pub peer_cert: Option<PathBuf>,
    /// `--peer-key`: its private key.
    pub peer_key: Option<PathBuf>,
    /// `--auth-token-file`: when set, every client request must carry this bearer
    /// token (the file's first line).
    pub auth_token_file: Option<PathBuf>,
}

/// Shortest `session_idle_timeout_ms`: sessions must outlive the clients'
/// retries of a write by a wide margin (the client gives up after 30 s).
pub const MIN_SESSION_IDLE_TIMEOUT_MS: u64 = keel_storage::kv::EVICTION_GRACE_MS;
/// Largest `max_client_sessions` (the state machine keeps ~100 bytes of index per
/// session in memory).
pub const MAX_CLIENT_SESSIONS: u64 = 10_000_000;

impl ServerConfig {
    /// A configuration with defaults for everything but identity and addresses.
    pub fn new(id: NodeId, data_dir: PathBuf, listen: SocketAddr) -> Self {
        ServerConfig {
            id,
            data_dir,
            listen,
            advertise: listen.to_string(),
            http: None,
            redis: None,
            initial_cluster: BTreeMap::new(),
            cluster_token: "keel".to_string(),
            tick_ms: 10,
            election_timeout_ms: 300,
            heartbeat_interval_ms: 50,
            quiesce_after_heartbeats: 3,
            max_clock_drift_ms: 30,
            max_value_bytes: 1 << 20,
            request_timeout_ms: 5_000,
            default_read_mode: DefaultReadMode::Linearizable,
            event_log: None,
            wal_segment_bytes: 64 << 20,
            min_free_disk_bytes: 128 << 20,
            state_flush_interval_ms: 1_000,
            max_pending_requests: 65_536,
            max_peer_queue: 1_024,
            max_scan_limit: 10_000,
            snapshot_entries: 10_000,
            snapshot_trailing_entries: 1_000,
            join: None,
            learner: false,
            join_as: JoinAs::Member,
            new_group_replicas: 3,
            slot_copy_bytes_per_sec: DEFAULT_SLOT_COPY_BYTES_PER_SEC,
            leave_on_shutdown: false,
            promote_lag_entries: 1_000,
            session_idle_timeout_ms: 3_600_000,
            max_client_sessions: 100_000,
            fault_lose_write_reply_every: 0,
            tls_cert: None,
            tls_key: None,
            peer_ca: None,
            client_ca: None,
            peer_cert: None,
            peer_key: None,
            auth_token_file: None,
        }
    }

    /// Checks fields against each other; the node refuses to start on an error.
    ///
    /// Each message names a setting as `keel config default` lists it: the
    /// config-file key, then its flag and environment variable, e.g.
    /// `tick_ms (--tick-ms, KEEL_TICK_MS)`, and says what value it got. (The CLI
    /// adds where a mentioned value came from.) Fields only a library user can
    /// set are named by their field name alone.
    pub fn validate(&self) -> Result<(), ServerError> {
        let bad = |msg: String| Err(ServerError::Config(msg));
        if self.id == 0 {
            return bad(format!(
                "{} must be a positive integer, got 0",
                setting("id")
            ));
        }
        if self.tick_ms == 0 || self.tick_ms > 1_000 {
            return bad(format!(
                "{} must be in 1..=1000, got {}",
                setting("tick_ms"),
                self.tick_ms
            ));
        }
        if self.heartbeat_interval_ms < self.tick_ms {
            return bad(format!(
                "{} must be at least tick_ms ({}), got {}",
                setting("heartbeat_interval_ms"),
                self.tick_ms,
                self.heartbeat_interval_ms
            ));
        }
        if self.election_timeout_ms < 3 * self.heartbeat_interval_ms {
            return bad(format!(
                "{} must be at least 3 × heartbeat_interval_ms ({} × 3 = {}), got {}",
                setting("election_timeout_ms"),
                self.heartbeat_interval_ms,
                3 * self.heartbeat_interval_ms,
                self.election_timeout_ms
            ));
        }
        // The core counts the idle stretch in ticks, in a u32.
        let (_, heartbeat_ticks) = self.ticks();
        if u64::from(self.quiesce_after_heartbeats) * u64::from(heartbeat_ticks)
            > u64::from(u32::MAX)
        {
            return bad(format!(
                "{} is too large ({} heartbeats of {} ticks overflow the tick count); \
                 use 0 to turn quiescence off",
                setting("quiesce_after_heartbeats"),
                self.quiesce_after_heartbeats,
                heartbeat_ticks
            ));
        }
        if !(1..=7).contains(&self.new_group_replicas) {
            return bad(format!(
                "{} must be in 1..=7, got {}",
                setting("new_group_replicas"),
                self.new_group_replicas
            ));
        }
        if self.join_as != JoinAs::Member && self.learner {
            return bad(format!(
                "{} applies to a member of group 1; a node joining through placement \
                 gets the replicas placement gives it",
                setting("learner")
            ));
        }
        if self.max_clock_drift_ms >= self.election_timeout_ms {
            return bad(format!(
                "{} must be less than election_timeout_ms ({}), got {}: the lease would be \
                 empty",
                setting("max_clock_drift_ms"),
                self.election_timeout_ms,
                self.max_clock_drift_ms
            ));
        }
        if self.max_value_bytes == 0 || self.max_value_bytes > 64 << 20 {
            return bad(format!(
                "{} must be in 1..=67108864 (64 MiB), got {}",
                setting("max_value_bytes"),
                self.max_value_bytes
            ));
        }
        if self.request_timeout_ms == 0 {
            return bad(format!(
                "{} must be positive, got 0",
                setting("request_timeout_ms")
            ));
        }
        if self.wal_segment_bytes < 1 << 20 {
            return bad(format!(
                "{} must be at least 1048576 (1 MiB), got {}",
                setting("wal_segment_bytes"),
                self.wal_segment_bytes
            ));
        }
        if !self.initial_cluster.is_empty() {
            if self.initial_cluster.contains_key(&0) {
                return bad(format!(
                    "{}: node ids must be positive, got 0",
                    setting("initial_cluster")
                ));
            }
            match self.initial_cluster.get(&self.id) {
                None => {
                    return bad(format!(
                        "{} does not list this node (id {}): it lists {}",
                        setting("initial_cluster"),
                        self.id,
                        self.initial_cluster
                            .keys()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                Some(addr) if *addr != self.advertise => {
                    return bad(format!(
                        "{} lists node {} at {addr}, but it advertises {} (set {} or fix \
                         listen)",
                        setting("initial_cluster"),
                        self.id,
                        self.advertise,
                        setting("advertise")
                    ));
                }
                Some(_) => {}
            }
        }
        if let Some(join) = &self.join {
            if !self.initial_cluster.is_empty() {
                return bad(format!(
                    "{} and {} exclude each other: a node either bootstraps a cluster or \
                     joins one",
                    setting("join"),
                    setting("initial_cluster")
                ));
            }
            crate::members::validate_address(join)
                .map_err(|e| ServerError::Config(format!("{} {join:?}: {e}", setting("join"))))?;
        }
        crate::members::validate_address(&self.advertise).map_err(|e| {
            ServerError::Config(format!(
                "{} {:?}: {e}",
                setting("advertise"),
                self.advertise
            ))
        })?;
        let listeners = [
            ("listen", Some(self.listen)),
            ("http", self.http),
            ("redis", self.redis),
        ];
        for (i, (name, addr)) in listeners.iter().enumerate() {
            let Some(addr) = addr else { continue };
            if let Some((other, _)) = listeners[..i].iter().find(|(_, a)| *a == Some(*addr)) {
                return bad(format!(
                    "{} and {} are both {addr}: each service needs its own address",
                    setting(name),
                    setting(other)
                ));
            }
        }
        for (field, value) in [
            ("max_pending_requests", self.max_pending_requests),
            ("max_peer_queue", self.max_peer_queue),
            ("max_scan_limit", self.max_scan_limit as usize),
        ] {
            if value == 0 {
                return bad(format!("{field} must be positive, got 0"));
            }
        }
        if self.snapshot_entries != 0 && !(10..=1_000_000_000).contains(&self.snapshot_entries) {
            return bad(format!(
                "{} must be 0 (never) or in 10..=1000000000, got {}",
                setting("snapshot_entries"),
                self.snapshot_entries
            ));
        }
        if !(10..=600_000).contains(&self.state_flush_interval_ms) {
            return bad(format!(
                "{} must be in 10..=600000 (10 ms to 10 minutes), got {}",
                setting("state_flush_interval_ms"),
                self.state_flush_interval_ms
            ));
        }
        if !(MIN_SESSION_IDLE_TIMEOUT_MS..=7 * 86_400_000).contains(&self.session_idle_timeout_ms) {
            return bad(format!(
                "{} must be in {MIN_SESSION_IDLE_TIMEOUT_MS}..=604800000 (one minute to a \
                 week), got {}",
                setting("session_idle_timeout_ms"),
                self.session_idle_timeout_ms
            ));
        }
        if !(1..=MAX_CLIENT_SESSIONS).contains(&self.max_client_sessions) {
            return bad(format!(
                "{} must be in 1..={MAX_CLIENT_SESSIONS}, got {}",
                setting("max_client_sessions"),
                self.max_client_sessions
            ));
        }
        self.validate_tls()?;
        if self.snapshot_trailing_entries > 100_000_000 {
            return bad(format!(
                "{} must be at most 100000000, got {}",
                setting("snapshot_trailing_entries"),
                self.snapshot_trailing_entries
            ));
        }
        Ok(())
    }

    /// The TLS flags go together: a certificate needs its key, and TLS on the
    /// gRPC port (which peers share) needs the cluster CA to talk to peers.
    fn validate_tls(&self) -> Result<(), ServerError> {
        let bad = |msg: String| Err(ServerError::Config(msg));
        for (a, a_set, b, b_set) in [
            (
                "tls_cert",
                self.tls_cert.is_some(),
                "tls_key",
                self.tls_key.is_some(),
            ),
            (
                "peer_cert",
                self.peer_cert.is_some(),
                "peer_key",
                self.peer_key.is_some(),
            ),
        ] {
            if a_set != b_set {
                return bad(format!(
                    "{} and {} go together: set both or neither",
                    setting(a),
                    setting(b)
                ));
            }
        }
        let tls = self.tls_cert.is_some();
        if tls && self.peer_ca.is_none() {
            return bad(format!(
                "{} needs {}: peers reach each other on the gRPC port, which then speaks \
                 TLS, and must present node certificates signed by the cluster CA",
                setting("tls_cert"),
                setting("peer_ca")
            ));
        }
        for (key, set) in [
            ("peer_ca", self.peer_ca.is_some()),
            ("client_ca", self.client_ca.is_some()),
            ("peer_cert", self.peer_cert.is_some()),
        ] {
            if set && !tls {
                return bad(format!(
                    "{} needs {} and {} (the node's own certificate)",
                    setting(key),
                    setting("tls_cert"),
                    setting("tls_key")
                ));
            }
        }
        Ok(())
    }

    /// The TLS files, when TLS is configured (after [`Self::validate`]).
    pub fn tls_files(&self) -> Option<crate::tls::TlsFiles> {
        Some(crate::tls::TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            peer_ca: self.peer_ca.clone()?,
            client_ca: self.client_ca.clone(),
            peer_identity: self.peer_cert.clone().zip(self.peer_key.clone()),
        })
    }

    /// Ticks per election timeout and per heartbeat, for the consensus core.
    /// Leader lease length and drift margin in nanoseconds (the core's clock
    /// unit): the lease is the minimum election timeout as the core counts it.
    pub(crate) fn lease_nanos(&self) -> (u64, u64) {
        let (election_ticks, _) = self.ticks();
        let lease = u64::from(election_ticks) * self.tick_ms * 1_000_000;
        (lease, (self.max_clock_drift_ms * 1_000_000).min(lease - 1))
    }

    pub(crate) fn ticks(&self) -> (u32, u32) {
        let election = (self.election_timeout_ms / self.tick_ms).max(2) as u32;
        let heartbeat = (self.heartbeat_interval_ms / self.tick_ms).max(1) as u32;
        (election, heartbeat.min(election - 1))
    }
}

/// Parses `1=host:port,2=host:port` into a membership map.
pub fn parse_initial_cluster(s: &str) -> Result<BTreeMap<NodeId, String>, ServerError> {
    let bad = |what: String| ServerError::Config(format!("{}: {what}", setting("initial_cluster")));
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| bad(format!("entry {part:?} is not ID=HOST:PORT")))?;
        let id: NodeId = id
            .trim()
            .parse()
            .map_err(|_| bad(format!("{id:?} is not a node id")))?;
        let addr = addr.trim();
        if addr
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .is_none()
        {
            return Err(bad(format!("{addr:?} is not HOST:PORT")));
        }
        if out.insert(id, addr.to_string()).is_some() {
            return Err(bad(format!("node {id} is listed twice")));
        }
    }
    Ok(out)
}

/// A `keel serve` setting as a user finds it: the config-file key (the field's
/// name), then the flag and the environment variable — the way `keel config
/// default` lists them, e.g. `tick_ms (--tick-ms, KEEL_TICK_MS)`.
pub fn setting(key: &str) -> String {
    format!(
        "{key} (--{}, KEEL_{})",
        key.replace('_', "-"),
        key.to_ascii_uppercase()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ServerConfig {
        let mut c = ServerConfig::new(1, "/tmp/x".into(), "127.0.0.1:7001".parse().expect("addr"));
        c.initial_cluster =
            parse_initial_cluster("1=127.0.0.1:7001,2=127.0.0.1:7002").expect("valid");
        c
    }

    #[test]
    fn defaults_validate() {
        cfg().validate().expect("valid");
        assert_eq!(cfg().ticks(), (30, 5));
    }

    #[test]
    fn parse_rejects_bad_entries() {
        assert!(parse_initial_cluster("1=a:1,1=b:2").is_err());
        assert!(parse_initial_cluster("x=a:1").is_err());
        assert!(parse_initial_cluster("1=nohost").is_err());
        assert!(parse_initial_cluster("1").is_err());
        assert_eq!(
            parse_initial_cluster(" 1=a:1 , 2=b:2 ")
                .expect("valid")
                .len(),
            2
        );
    }

    #[test]
    fn setting_names_the_key_the_flag_and_the_variable() {
        assert_eq!(
            setting("election_timeout_ms"),
            "election_timeout_ms (--election-timeout-ms, KEEL_ELECTION_TIMEOUT_MS)"
        );
    }

    fn refusal(c: &ServerConfig) -> String {
        c.validate().expect_err("must be refused").to_string()
    }

    #[test]
    fn every_message_names_the_setting_and_the_bad_value() {
        type Case = (fn(&mut ServerConfig), &'static str);
        let cases: &[Case] = &[
            (
                |c| c.id = 0,
                "id (--id, KEEL_ID) must be a positive integer, got 0",
            ),
            (
                |c| c.new_group_replicas = 8,
                "new_group_replicas (--new-group-replicas, KEEL_NEW_GROUP_REPLICAS) must be \
                 in 1..=7, got 8",
            ),
            (
                |c| {
                    c.join_as = JoinAs::Placed;
                    c.learner = true;
                },
                "learner (--learner, KEEL_LEARNER) applies to a member of group 1; a node \
                 joining through placement gets the replicas placement gives it",
            ),
            (
                |c| c.tick_ms = 0,
                "tick_ms (--tick-ms, KEEL_TICK_MS) must be in 1..=1000, got 0",
            ),
            (
                |c| c.heartbeat_interval_ms = 5,
                "heartbeat_interval_ms (--heartbeat-interval-ms, KEEL_HEARTBEAT_INTERVAL_MS) \
                 must be at least tick_ms (10), got 5",
            ),
            (
                |c| c.election_timeout_ms = 60,
                "election_timeout_ms (--election-timeout-ms, KEEL_ELECTION_TIMEOUT_MS) must be \
                 at least 3 × heartbeat_interval_ms (50 × 3 = 150), got 60",
            ),
            (
                |c| c.max_clock_drift_ms = 300,
                "max_clock_drift_ms (--max-clock-drift-ms, KEEL_MAX_CLOCK_DRIFT_MS) must be \
                 less than election_timeout_ms (300), got 300",
            ),
            (
                |c| c.max_value_bytes = 0,
                "max_value_bytes (--max-value-bytes, KEEL_MAX_VALUE_BYTES) must be in \
                 1..=67108864 (64 MiB), got 0",
            ),
            (
                |c| c.request_timeout_ms = 0,
                "request_timeout_ms (--request-timeout-ms, KEEL_REQUEST_TIMEOUT_MS) must be \
                 positive, got 0",
            ),
            (
                |c| c.wal_segment_bytes = 4096,
                "wal_segment_bytes (--wal-segment-bytes, KEEL_WAL_SEGMENT_BYTES) must be at \
                 least 1048576 (1 MiB), got 4096",
            ),
            (
                |c| c.id = 3,
                "initial_cluster (--initial-cluster, KEEL_INITIAL_CLUSTER) does not list this \
                 node (id 3): it lists 1, 2",
            ),
            (
                |c| c.advertise = "127.0.0.1:9999".into(),
                "lists node 1 at 127.0.0.1:7001, but it advertises 127.0.0.1:9999 (set \
                 advertise (--advertise, KEEL_ADVERTISE)",
            ),
            (
                |c| c.join = Some("127.0.0.1:7002".into()),
                "join (--join, KEEL_JOIN) and initial_cluster (--initial-cluster, \
                 KEEL_INITIAL_CLUSTER) exclude each other",
            ),
            (
                |c| c.max_pending_requests = 0,
                "max_pending_requests must be positive, got 0",
            ),
            (
                |c| c.max_scan_limit = 0,
                "max_scan_limit must be positive, got 0",
            ),
            (
                |c| c.snapshot_entries = 5,
                "snapshot_entries (--snapshot-entries, KEEL_SNAPSHOT_ENTRIES) must be 0 \
                 (never) or in 10..=1000000000, got 5",
            ),
            (
                |c| c.state_flush_interval_ms = 0,
                "state_flush_interval_ms (--state-flush-interval-ms, \
                 KEEL_STATE_FLUSH_INTERVAL_MS) must be in 10..=600000 (10 ms to 10 minutes), got 0",
            ),
            (
                |c| c.session_idle_timeout_ms = 1_000,
                "session_idle_timeout_ms (--session-idle-timeout-ms, \
                 KEEL_SESSION_IDLE_TIMEOUT_MS) must be in",
            ),
            (
                |c| c.max_client_sessions = 0,
                "max_client_sessions (--max-client-sessions, KEEL_MAX_CLIENT_SESSIONS) must be \
                 in 1..=10000000, got 0",
            ),
            (
                |c| c.snapshot_trailing_entries = u64::MAX,
                "snapshot_trailing_entries (--snapshot-trailing-entries, \
                 KEEL_SNAPSHOT_TRAILING_ENTRIES) must be at most 100000000, got 18446744073709551615",
            ),
        ];
        for (change, want) in cases {
            let mut c = cfg();
            change(&mut c);
            let msg = refusal(&c);
            assert!(msg.contains(want), "{want:?} not in {msg:?}");
        }
    }

    #[test]
    fn each_service_needs_its_own_address() {
        let mut c = cfg();
        c.redis = Some(c.listen);
        assert!(refusal(&c).contains(
            "redis (--redis, KEEL_REDIS) and listen (--listen, KEEL_LISTEN) are both \
             127.0.0.1:7001"
        ));
        c.redis = Some("127.0.0.1:6379".parse().expect("addr"));
        c.validate().expect("distinct addresses are valid");
    }

    #[test]
    fn joining_is_valid_and_a_bad_join_address_is_named() {
        let mut c = cfg();
        c.initial_cluster.clear();
        c.join = Some("127.0.0.1:7002".into());
        c.validate().expect("joining is valid");
        c.join = Some("no-port".into());
        let msg = refusal(&c);
        assert!(
            msg.contains("join (--join, KEEL_JOIN) \"no-port\""),
            "{msg}"
        );
    }

    #[test]
    fn initial_cluster_parse_errors_name_the_setting() {
        for (text, want) in [
            ("1=a:1,1=b:2", "node 1 is listed twice"),
            ("x=a:1", "\"x\" is not a node id"),
            ("1=nohost", "\"nohost\" is not HOST:PORT"),
            ("1", "entry \"1\" is not ID=HOST:PORT"),
        ] {
            let msg = parse_initial_cluster(text).expect_err(text).to_string();
            assert!(
                msg.contains(&format!(
                    "initial_cluster (--initial-cluster, KEEL_INITIAL_CLUSTER): {want}"
                )),
                "{msg}"
            );
        }
    }

    #[test]
    fn tls_flags_go_together() {
        let refused = |f: &dyn Fn(&mut ServerConfig), wants: &str| {
            let mut c = cfg();
            f(&mut c);
            let e = c.validate().expect_err("must be refused").to_string();
            assert!(e.contains(wants), "{e} should mention {wants}");
        };
        refused(&|c| c.tls_cert = Some("n.pem".into()), "--tls-key");
        refused(&|c| c.tls_key = Some("k.pem".into()), "--tls-cert");
        refused(
            &|c| {
                c.tls_cert = Some("n.pem".into());
                c.tls_key = Some("k.pem".into());
            },
            "--peer-ca",
        );
        refused(
            &|c| c.peer_ca = Some("ca.pem".into()),
            "peer_ca (--peer-ca, KEEL_PEER_CA) needs tls_cert (--tls-cert, KEEL_TLS_CERT)",
        );
        refused(
            &|c| c.client_ca = Some("ca.pem".into()),
            "client_ca (--client-ca, KEEL_CLIENT_CA) needs",
        );
        refused(&|c| c.peer_cert = Some("p.pem".into()), "--peer-key");
        let mut c = cfg();
        assert!(c.tls_files().is_none());
        c.tls_cert = Some("n.pem".into());
        c.tls_key = Some("k.pem".into());
        c.peer_ca = Some("ca.pem".into());
        c.validate().expect("complete TLS settings");
        let files = c.tls_files().expect("TLS configured");
        assert_eq!(files.peer_identity, None);
        c.auth_token_file = Some("token".into());
        c.validate()
            .expect("a token file is checked when the node starts");
    }
}

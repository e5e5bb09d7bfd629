//! Prometheus metrics of one node, served at `/metrics` on the HTTP port.
//!
//! Everything is an atomic updated where the event happens (the consensus thread,
//! the apply side, the API handlers); a scrape only reads. Names carry units
//! (`_seconds`, `_bytes`); counters get the `_total` suffix from the encoder.

use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// A client operation, for the request latency metric.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum ClientOp {
    /// Read one key.
    Get,
    /// Write one key.
    Put,
    /// Delete one key.
    Delete,
    /// Read a prefix.
    Scan,
    /// A transaction.
    Txn,
    /// An atomic add to one key.
    Add,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    op: ClientOp,
    /// `ok`, or the error kind in lower case (`not_leader`, `conflict`, ...).
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: u64,
}

/// Why the consensus thread refused a proposal.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    reason: &'static str,
}

/// Which listener a connection came to (`grpc`, `http`, `redis`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: &'static str,
}

/// A refused request: where, and why (`missing_token`, `wrong_token`,
/// `not_a_node_certificate`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthLabels {
    listener: &'static str,
    reason: &'static str,
}

/// All metrics of a node.
pub struct Metrics {
    registry: Registry,
    /// Each hosted group's consensus gauges (`group_metrics.rs`); the
    /// node-level ones below are group 1's.
    pub groups: crate::group_metrics::GroupFamilies,
    /// The peer transport's counters (`keel_peer_*`), shared with it.
    pub transport: std::sync::Arc<crate::transport::TransportStats>,
    /// Client writes proposed to the core.
    pub proposals: Counter,
    refused: Family<RefusalLabels, Counter>,
    /// Times this node saw a new leader of any group it hosts (itself included;
    /// by group: `group_metrics.rs`).
    pub leader_changes: Counter,
    /// Group 1's current term.
    pub term: Gauge,
    /// Group 1's highest index known committed.
    pub commit_index: Gauge,
    /// Group 1's highest index applied to the state machine.
    pub applied_index: Gauge,
    /// 1 while this node leads group 1, else 0.
    pub is_leader: Gauge,
    /// Entries applied to the state machine.
    pub applied_entries: Counter,
    /// Duration of each WAL fsync.
    pub wal_fsync_seconds: Histogram,
    /// Duration of each WAL append (write and fsync of one Ready).
    pub wal_append_seconds: Histogram,
    /// Duration of applying one batch of committed entries.
    pub apply_seconds: Histogram,
    /// Duration of each durable state machine flush.
    pub state_flush_seconds: Histogram,
    /// Snapshot bytes sent to followers.
    pub snapshot_sent_bytes: Counter,
    /// Snapshot bytes received from a leader.
    pub snapshot_received_bytes: Counter,
    peer_rtt: Family<PeerLabels, Histogram>,
    requests: Family<RequestLabels, Histogram>,
    /// Client requests waiting for the consensus thread.
    pub queued_requests: Gauge,
    /// Peer messages waiting for the consensus thread.
    pub queued_peer_messages: Gauge,
    /// Writes proposed and not yet answered.
    pub writes_in_flight: Gauge,
    /// Linearizable reads waiting for their heartbeat round.
    pub reads_unconfirmed: Gauge,
    /// Hosted groups whose replica here is quiesced (a leader that stopped
    /// heartbeating, or a follower that stopped its election timer).
    pub quiesced_groups: Gauge,
    /// Peer nodes nothing was heard from for an election timeout.
    pub silent_peers: Gauge,
    /// Quiesced replicas woken because their leader's node fell silent.
    pub quiesced_woken: Counter,
    /// Reads served under the leader lease.
    pub lease_reads: Counter,
    /// Lease-mode reads that found no valid lease here (served by ReadIndex or
    /// sent to the leader).
    pub lease_read_fallbacks: Counter,
    client_sessions: Gauge,
    session_duplicates: Counter,
    session_rejections: Counter,
    tls_handshake_failures: Family<ListenerLabels, Counter>,
    auth_failures: Family<AuthLabels, Counter>,
    /// 1 while this node refuses writes because its data disk is full, else 0.
    pub disk_full: Gauge,
    /// Free bytes on the data directory's filesystem, as last measured.
    pub disk_available_bytes: Gauge,
    /// Times the WAL could not grow because the disk was full.
    pub wal_no_space: Counter,
    /// Peer messages (and snapshot offers) for a group this node does not host,
    /// dropped.
    pub peer_messages_unknown_group: Counter,
    /// Open Redis protocol connections.
    pub redis_connections: Gauge,
    /// Redis commands answered (errors included).
    pub redis_commands: Counter,
    /// Redis connections closed because of a malformed request.
    pub redis_protocol_errors: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics { .. }")
    }
}

/// 50 µs .. ~1.6 s: fsyncs, applies and local round trips.
fn short_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// 100 µs .. ~13 s: client requests, which include retries and forwarding.
fn request_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.0, 18))
}

impl Metrics {
    /// A fresh set, registered under the `keel_` prefix.
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("keel");
        let m = Metrics {
            proposals: Counter::default(),
            refused: Family::default(),
            leader_changes: Counter::default(),
            term: Gauge::default(),
            commit_index: Gauge::default(),
            applied_index: Gauge::default(),
            is_leader: Gauge::default(),
            applied_entries: Counter::default(),
            wal_fsync_seconds: short_buckets(),
            wal_append_seconds: short_buckets(),
            apply_seconds: short_buckets(),
            state_flush_seconds: short_buckets(),
            snapshot_sent_bytes: Counter::default(),
            snapshot_received_bytes: Counter::default(),
            peer_rtt: Family::new_with_constructor(short_buckets),
            requests: Family::new_with_constructor(request_buckets),
            queued_requests: Gauge::default(),
            queued_peer_messages: Gauge::default(),
            writes_in_flight: Gauge::default(),
            reads_unconfirmed: Gauge::default(),
            quiesced_groups: Gauge::default(),
            silent_peers: Gauge::default(),
            quiesced_woken: Counter::default(),
            lease_reads: Counter::default(),
            lease_read_fallbacks: Counter::default(),
            client_sessions: Gauge::default(),
            session_duplicates: Counter::default(),
            session_rejections: Counter::default(),
            tls_handshake_failures: Family::default(),
            auth_failures: Family::default(),
            disk_full: Gauge::default(),
            disk_available_bytes: Gauge::default(),
            wal_no_space: Counter::default(),
            peer_messages_unknown_group: Counter::default(),
            redis_connections: Gauge::default(),
            redis_commands: Counter::default(),
            redis_protocol_errors: Counter::default(),
            registry: Registry::default(),
            groups: Default::default(),
            transport: Default::default(),
        };
        r.register("proposals", "Client writes proposed", m.proposals.clone());
        r.register(
            "proposals_refused",
            "Client writes the core refused, by reason",
            m.refused.clone(),
        );
        r.register(
            "leader_changes",
            "Times this node saw a new leader",
            m.leader_changes.clone(),
        );
        r.register("term", "Current term", m.term.clone());
        r.register(
            "commit_index",
            "Highest committed index",
            m.commit_index.clone(),
        );
        r.register(
            "applied_index",
            "Highest applied index",
            m.applied_index.clone(),
        );
        r.register("is_leader", "1 while this node leads", m.is_leader.clone());
        r.register(
            "applied_entries",
            "Entries applied to the state machine",
            m.applied_entries.clone(),
        );
        r.register_with_unit(
            "wal_fsync",
            "Duration of each WAL fsync",
            Unit::Seconds,
            m.wal_fsync_seconds.clone(),
        );
        r.register_with_unit(
            "wal_append",
            "Duration of each WAL append: write and fsync of one batch",
            Unit::Seconds,
            m.wal_append_seconds.clone(),
        );
        r.register_with_unit(
            "apply",
            "Duration of applying one batch of committed entries",
            Unit::Seconds,
            m.apply_seconds.clone(),
        );
        r.register_with_unit(
            "state_flush",
            "Duration of each durable state machine flush",
            Unit::Seconds,
            m.state_flush_seconds.clone(),
        );
        r.register_with_unit(
            "snapshot_sent",
            "Snapshot bytes sent to followers",
            Unit::Bytes,
            m.snapshot_sent_bytes.clone(),
        );
        r.register_with_unit(
            "snapshot_received",
            "Snapshot bytes received from a leader",
            Unit::Bytes,
            m.snapshot_received_bytes.clone(),
        );
        r.register_with_unit(
            "peer_round_trip",
            "Heartbeat round trip to each peer",
            Unit::Seconds,
            m.peer_rtt.clone(),
        );
        r.register_with_unit(
            "client_request",
            "Client request latency by operation and outcome",
            Unit::Seconds,
            m.requests.clone(),
        );
        r.register(
            "queued_requests",
            "Client requests waiting for the consensus thread",
            m.queued_requests.clone(),
        );
        r.register(
            "queued_peer_messages",
            "Peer messages waiting for the consensus thread",
            m.queued_peer_messages.clone(),
        );
        r.register(
            "writes_in_flight",
            "Writes proposed and not yet answered",
            m.writes_in_flight.clone(),
        );
        r.register(
            "reads_unconfirmed",
            "Linearizable reads waiting for their heartbeat round",
            m.reads_unconfirmed.clone(),
        );
        r.register(
            "quiesced_groups",
            "Hosted groups whose replica here is quiesced",
            m.quiesced_groups.clone(),
        );
        r.register(
            "silent_peers",
            "Peer nodes nothing was heard from for an election timeout",
            m.silent_peers.clone(),
        );
        r.register(
            "quiesced_woken",
            "Quiesced replicas woken because their leader's node fell silent",
            m.quiesced_woken.clone(),
        );
        r.register(
            "lease_reads",
            "Reads served under the leader lease",
            m.lease_reads.clone(),
        );
        r.register(
            "lease_read_fallbacks",
            "Lease-mode reads that found no valid lease on this node",
            m.lease_read_fallbacks.clone(),
        );
        r.register(
            "disk_full",
            "1 while this node refuses writes because its data disk is full",
            m.disk_full.clone(),
        );
        r.register_with_unit(
            "disk_available",
            "Free space on the data directory's filesystem, as last measured",
            Unit::Bytes,
            m.disk_available_bytes.clone(),
        );
        r.register(
            "peer_messages_unknown_group",
            "Peer messages and snapshot offers dropped because this node does not host \
             their Raft group",
            m.peer_messages_unknown_group.clone(),
        );
        r.register(
            "wal_no_space",
            "Times the WAL could not grow because the disk was full",
            m.wal_no_space.clone(),
        );
        r.register(
            "client_sessions",
            "Client sessions the state machine keeps",
            m.client_sessions.clone(),
        );
        r.register(
            "session_duplicates",
            "Repeated session writes answered with their first outcome instead of applied again",
            m.session_duplicates.clone(),
        );
        r.register(
            "session_rejections",
            "Session writes refused (session expired, result forgotten, too many sessions)",
            m.session_rejections.clone(),
        );
        r.register(
            "tls_handshake_failures",
            "TLS handshakes refused or failed, by listener",
            m.tls_handshake_failures.clone(),
        );
        r.register(
            "auth_failures",
            "Requests refused for their credentials (bearer token, peer certificate), by \
             listener and reason",
            m.auth_failures.clone(),
        );
        r.register(
            "redis_connections",
            "Open Redis protocol connections",
            m.redis_connections.clone(),
        );
        r.register(
            "redis_commands",
            "Redis commands answered, errors included",
            m.redis_commands.clone(),
        );
        r.register(
            "redis_protocol_errors",
            "Redis connections closed because of a malformed request",
            m.redis_protocol_errors.clone(),
        );
        m.groups.register(&mut r);
        register_transport(&mut r, &m.transport);
        Metrics { registry: r, ..m }
    }

    /// Records the state machine's session counters (cumulative since it opened).
    pub fn sessions(&self, stats: keel_storage::kv::SessionStats) {
        use std::sync::atomic::Ordering::Relaxed;
        self.client_sessions.set(gauge_value(stats.sessions));
        self.session_duplicates
            .inner()
            .store(stats.duplicates, Relaxed);
        self.session_rejections
            .inner()
            .store(stats.rejected, Relaxed);
    }

    /// Counts a TLS handshake that failed on `listener`.
    pub fn tls_handshake_failed(&self, listener: &'static str) {
        self.tls_handshake_failures
            .get_or_create(&ListenerLabels { listener })
            .inc();
    }

    /// Counts a request refused for its credentials.
    pub fn auth_failed(&self, listener: &'static str, reason: &'static str) {
        self.auth_failures
            .get_or_create(&AuthLabels { listener, reason })
            .inc();
    }

    /// Counts a proposal the core refused.
    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&RefusalLabels { reason }).inc();
    }

    /// Records a heartbeat round trip to `peer`.
    pub fn peer_round_trip(&self, peer: u64, rtt: Duration) {
        self.peer_rtt
            .get_or_create(&PeerLabels { peer })
            .observe(rtt.as_secs_f64());
    }

    /// Records a finished client request; `outcome` is `None` for success, else
    /// the error kind's name.
    pub fn client_request(&self, op: ClientOp, started: Instant, outcome: Option<&str>) {
        let outcome = outcome.map_or_else(|| "ok".to_string(), str::to_ascii_lowercase);
        self.requests
            .get_or_create(&RequestLabels { op, outcome })
            .observe(started.elapsed().as_secs_f64());
    }

    /// The text exposition format (OpenMetrics), for `/metrics`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The transport's counters, under `peer_*` names.
fn register_transport(r: &mut Registry, t: &crate::transport::TransportStats) {
    let counters = [
        (
            "peer_messages_sent",
            "Raft messages handed to peer streams",
            &t.sent,
        ),
        (
            "peer_batches_sent",
            "Batches of Raft messages handed to peer streams (one per peer per round, \
             whatever the number of groups)",
            &t.batches_sent,
        ),
        (
            "peer_messages_dropped",
            "Raft messages dropped: a peer's queue was full or the peer unreachable",
            &t.dropped,
        ),
        (
            "peer_messages_received",
            "Raft messages received from peers and passed on",
            &t.received,
        ),
        (
            "peer_messages_rejected",
            "Peer messages or batches refused (foreign cluster, wiped peer, malformed)",
            &t.rejected,
        ),
        (
            "peer_streams_refused_as_non_member",
            "Streams of this node a peer refused because it is not a member",
            &t.refused_as_non_member,
        ),
    ];
    for (name, help, counter) in counters {
        r.register(name, help, counter.clone());
    }
}

/// An index or count as a gauge value, saturating.
pub(crate) fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_exposed_with_units() {
        let m = Metrics::new();
        m.proposals.inc();
        m.term.set(7);
        m.wal_fsync_seconds.observe(0.000_2);
        m.peer_round_trip(2, Duration::from_micros(300));
        m.client_request(ClientOp::Put, Instant::now(), None);
        m.client_request(ClientOp::Get, Instant::now(), Some("NOT_LEADER"));
        m.refused("overloaded");
        let text = m.encode();
        for needle in [
            "keel_proposals_total 1",
            "keel_term 7",
            "keel_wal_fsync_seconds_count 1",
            "keel_peer_round_trip_seconds_count{peer=\"2\"} 1",
            "keel_client_request_seconds_count{op=\"Put\",outcome=\"ok\"} 1",
            "keel_client_request_seconds_count{op=\"Get\",outcome=\"not_leader\"} 1",
            "keel_proposals_refused_total{reason=\"overloaded\"} 1",
            "keel_snapshot_sent_bytes_total 0",
            "keel_peer_batches_sent_total 0",
            "keel_peer_messages_dropped_total 0",
            "# EOF",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
    }
}

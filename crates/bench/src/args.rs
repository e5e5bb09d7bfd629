//! The `keel bench` command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use crate::parse;
use crate::scenario_files::ScenarioFiles;
use crate::target::ReadConsistency;

/// A cluster for the bench to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ClusterArg {
    /// A keel cluster of `--nodes` processes on loopback, in a temporary directory.
    Local,
}

/// Another system to run the same workload against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AgainstArg {
    /// An etcd cluster of `--nodes` members on loopback, started by the bench
    /// (Debian's `etcd-server` package).
    Etcd,
}

/// `keel bench`: a closed-loop load generator.
///
/// N clients each issue their next operation as soon as the previous completes.
/// After a warm-up, it measures throughput and latency percentiles for reads and
/// writes separately, and, for clusters it started, each node's CPU time and peak
/// memory. With `--against etcd` the same workload runs against etcd too, one
/// system after the other, and the table ends with keel/etcd ratios.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// gRPC endpoints of a running keel cluster, comma-separated.
    #[arg(long, value_delimiter = ',', conflicts_with = "cluster")]
    pub endpoints: Vec<String>,
    /// Start a cluster for the run and stop it afterwards.
    #[arg(long, value_enum)]
    pub cluster: Option<ClusterArg>,
    /// Also run the workload against another system (started by the bench).
    #[arg(long, value_enum)]
    pub against: Option<AgainstArg>,
    /// Nodes of every cluster the bench starts.
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Run once per client count, e.g. `1,16,64,256` (overrides --clients).
    #[arg(long, value_parser = parse::client_list)]
    pub sweep_clients: Option<parse::ClientCounts>,
    /// Connections the clients share, round-robin (keel: independent client
    /// handles; etcd: HTTP/2 connections to the leader).
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Size of the key space: keys `key-000000` .. `key-{K-1}`, chosen uniformly.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Size of every written value (bytes).
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Fraction of operations that are reads (0.0: writes only; 1.0: reads only).
    #[arg(long, default_value = "0", value_parser = parse::fraction)]
    pub read_fraction: f64,
    /// How reads are served.
    #[arg(long, value_enum, default_value = "linearizable")]
    pub read_mode: ReadConsistency,
    /// Length of each measurement (e.g. 10s, 1m).
    #[arg(long, default_value = "10s", value_parser = parse::duration)]
    pub duration: Duration,
    /// End each measurement after this many operations instead of --duration.
    #[arg(long)]
    pub ops: Option<u64>,
    /// Load before each measurement, excluded from the figures.
    #[arg(long, default_value = "2s", value_parser = parse::duration)]
    pub warmup: Duration,
    /// Write every key once before measuring (default: when there are reads).
    #[arg(long, conflicts_with = "no_preload")]
    pub preload: bool,
    /// Do not write the keys before measuring.
    #[arg(long)]
    pub no_preload: bool,
    /// Seed of the clients' key and operation choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where results, data and the keel binary are, and extra `keel serve`
    /// flags (shared with the scenario subcommands).
    #[command(flatten)]
    pub files: ScenarioFiles,
    /// Also draw throughput and p99 latency against the client count, one line
    /// per system, as an SVG file (most useful with `--sweep-clients`).
    #[arg(long)]
    pub chart: Option<PathBuf>,
    /// Give the started keel nodes `--event-log` files (off by default: the event
    /// log writes a line per committed entry, which a production node need not do).
    #[arg(long)]
    pub keel_event_logs: bool,
    /// Make keel's client send one gRPC call per operation instead of batching
    /// the operations in flight on a connection into one stream (etcd's client
    /// cannot batch; this shows keel without it).
    #[arg(long)]
    pub keel_unbatched: bool,
    /// The etcd binary for `--against etcd` (default: `etcd` on PATH, else
    /// /usr/bin/etcd).
    #[arg(long)]
    pub etcd_bin: Option<PathBuf>,
    /// Do not show the progress line.
    #[arg(long)]
    pub quiet: bool,
    /// A scenario to run instead of the closed-loop load.
    #[command(subcommand)]
    pub scenario: Option<Scenario>,
}

/// Scenarios other than the closed-loop load.
#[derive(Subcommand, Debug, Clone)]
pub enum Scenario {
    /// Snapshot catch-up, memory during a transfer, restart time, and writes/s
    /// while a snapshot is taken and sent (`keel bench snapshot --help`).
    Snapshot(crate::snapshot::SnapshotArgs),
    /// Moving a slot under load: how long the move takes and what it costs the
    /// clients' latency (`keel bench move --help`).
    Move(crate::slot_move::MoveArgs),
}

//! The `keel bench snapshot` command line.

use std::time::Duration;

use clap::Args;

use crate::parse;
use crate::scenario_files::ScenarioFiles;

/// `keel bench snapshot`: snapshot catch-up, memory, restart time and write
/// throughput while a snapshot is taken and sent, on a 3-node loopback cluster of
/// real `keel serve` processes.
///
/// 1. Catch-up: with one follower down, preloads `--keys` keys; once the leader
///    has a snapshot covering them, restarts the follower and times its catch-up
///    (snapshot transfer, install, log tail), sampling both processes' memory.
/// 2. Restart: kills a caught-up follower and times it back to serving.
/// 3. Writes during a snapshot: restarts the cluster with
///    `--load-snapshot-entries`, kills a follower, runs a steady write load, and
///    compares writes/s before the leader's next snapshot with writes/s while it
///    is taken and sent to the restarted follower.
/// 4. Restart again (the log is now compacted behind the first snapshot) and,
///    with `--join`, a new node joining and catching up.
#[derive(Args, Debug, Clone)]
pub struct SnapshotArgs {
    /// Keys to preload: `key-000000` .. `key-{K-1}`.
    #[arg(long, default_value_t = 1_000_000)]
    pub keys: u64,
    /// Size of every value (bytes).
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// `--snapshot-entries` of the nodes while preloading (default: `--keys`, so
    /// that the preload ends with one snapshot covering every key).
    #[arg(long)]
    pub snapshot_entries: Option<u64>,
    /// `--snapshot-entries` of the nodes during the write-load phase: the baseline
    /// window lasts until the leader has applied this many entries.
    #[arg(long, default_value_t = 150_000)]
    pub load_snapshot_entries: u64,
    /// Concurrent clients of the steady write load.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Load before the baseline window starts, excluded from it.
    #[arg(long, default_value = "3s", value_parser = parse::duration)]
    pub warmup: Duration,
    /// Load kept up after the follower caught up (reported as the "after" window).
    #[arg(long, default_value = "5s", value_parser = parse::duration)]
    pub after: Duration,
    /// Memory and progress sampling interval.
    #[arg(long, default_value = "20ms", value_parser = parse::duration)]
    pub sample_every: Duration,
    /// Give up on any one step (a catch-up, a restart, a snapshot) after this long.
    #[arg(long, default_value = "10m", value_parser = parse::duration)]
    pub step_timeout: Duration,
    /// Skip the write-load phase (3) and what follows it.
    #[arg(long)]
    pub no_write_load: bool,
    /// Finally add a fourth node with `keel serve --join` and time its catch-up.
    #[arg(long)]
    pub join: bool,
    /// Results, data directory, binary and extra node flags.
    #[command(flatten)]
    pub files: ScenarioFiles,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::args::{BenchArgs, Scenario};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    #[test]
    fn parses_as_a_bench_subcommand() {
        let words = [
            "bench",
            "snapshot",
            "--keys",
            "250000",
            "--join",
            "--keel-arg=--io-threads=1",
            "--sample-every",
            "50ms",
        ];
        let cli = Cli::try_parse_from(words).expect("valid command line");
        let Some(Scenario::Snapshot(a)) = cli.bench.scenario else {
            panic!("not the snapshot scenario");
        };
        assert_eq!(a.keys, 250_000);
        assert_eq!(a.snapshot_entries, None);
        assert_eq!(a.value_size, 256);
        assert!(a.join && !a.no_write_load);
        assert_eq!(a.files.keel_arg, ["--io-threads=1"]);
        assert_eq!(a.sample_every, std::time::Duration::from_millis(50));
        let plain = Cli::try_parse_from(["bench", "--clients", "4"]).expect("valid");
        assert!(plain.bench.scenario.is_none());
    }
}

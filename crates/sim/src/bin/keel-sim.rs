//! `keel-sim`: run or replay deterministic simulations from the command line.
//!
//! ```text
//! keel-sim --seed 123 --nodes 5 --verbose     # replay one seed with a full trace
//! keel-sim --seeds 100000 --nodes 3           # a campaign of many seeds
//! keel-sim --seeds 200 --nodes 3 --groups 4   # four groups per node, one WAL each
//! ```

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use keel_sim::{
    Bug, DEFAULT_CLOCK_DRIFT_PPM, DEFAULT_STEPS, Persistence, SimConfig, Stats, StorageKind,
};

/// Deterministic simulation of keel clusters: real Raft cores and storage on a
/// seeded faulty network and disk.
#[derive(Debug, Parser)]
#[command(name = "keel-sim", version)]
struct Args {
    /// Seed of the (first) run.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Number of consecutive seeds to run, starting at --seed.
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// Cluster size (1 to 7).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Raft groups every node hosts (1 to 8), sharing its WAL: each turn writes
    /// every group's Ready with one fsync. Needs the real storage and the
    /// synchronous contract (`mixed` runs it synchronously).
    #[arg(long, default_value_t = 1)]
    groups: usize,
    /// Scheduler steps in the fault phase.
    #[arg(long, default_value_t = DEFAULT_STEPS)]
    steps: u64,
    /// Storage under each node: `real` (keel-storage on a simulated disk) or
    /// `model` (an idealised model, to tell storage bugs from consensus bugs).
    #[arg(long, default_value = "real")]
    storage: StorageKind,
    /// Form of the Ready contract the nodes use: `sync` (advance after each fsync),
    /// `async` (a storage thread fsyncs while the core keeps going), or `mixed`
    /// (drawn per node and incarnation from the seed).
    #[arg(long, default_value = "mixed")]
    persistence: Persistence,
    /// Inject a known bug to see the checker catch it: forget-vote,
    /// ack-before-sync, corrupt-entries, persist-before-sync, concurrent-conf-changes,
    /// snapshot-ignores-term, compact-before-snapshot, lease-without-drift-margin or
    /// follower-read-without-read-index.
    #[arg(long)]
    inject_bug: Option<Bug>,
    /// Bound on each node's clock drift in parts per million (at most 250000):
    /// clocks run at rates in [1 - d, 1 + d]; the lease margin covers it.
    #[arg(long, default_value_t = DEFAULT_CLOCK_DRIFT_PPM)]
    clock_drift_ppm: u32,
    /// Run without faults (a calm, reordering network; no crashes).
    #[arg(long)]
    no_faults: bool,
    /// Leaders quiesce idle groups; node-level failure detection wakes followers.
    #[arg(long)]
    quiesce: bool,
    /// The client goes idle for the latter part of every 100 ticks (with
    /// --quiesce: the idle stretches in which groups go quiet).
    #[arg(long)]
    idle_stretches: bool,
    /// Print every event (ticks excepted) as it happens.
    #[arg(long)]
    verbose: bool,
    /// Keep going after a failing seed and report all failures at the end.
    #[arg(long)]
    keep_going: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut totals = Totals::default();
    for seed in args.seed..args.seed.saturating_add(args.seeds) {
        let cfg = SimConfig {
            groups: args.groups,
            steps: args.steps,
            storage: args.storage,
            persistence: args.persistence,
            bug: args.inject_bug,
            clock_drift_ppm: args.clock_drift_ppm,
            faults: !args.no_faults,
            quiesce: args.quiesce,
            idle_stretches: args.idle_stretches,
            verbose: args.verbose,
            ..SimConfig::new(seed, args.nodes)
        };
        if let Err(e) = cfg.validate() {
            eprintln!("keel-sim: {e}");
            return ExitCode::from(2);
        }
        match keel_sim::run(cfg) {
            Ok(summary) => {
                if args.seeds == 1 || args.verbose {
                    println!("{summary}");
                }
                totals.add(&summary.stats);
            }
            Err(failure) => {
                eprintln!("{failure}");
                failures.push(failure.replay_command());
                if !args.keep_going {
                    break;
                }
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    if args.seeds > 1 {
        println!(
            "{} seed(s) from {} on {} nodes with {} group(s) ({} persistence) in {elapsed:.1}s \
             ({:.1} seeds/s), {} failed",
            args.seeds,
            args.seed,
            args.nodes,
            args.groups,
            args.persistence,
            args.seeds as f64 / elapsed.max(1e-9),
            failures.len()
        );
        println!("passing runs: {totals}");
    }
    if failures.is_empty() {
        return ExitCode::SUCCESS;
    }
    if args.seeds > 1 {
        for cmd in &failures {
            eprintln!("replay: {cmd}");
        }
    }
    ExitCode::FAILURE
}

/// Aggregate counters of a campaign's passing runs: how much each fault happened,
/// and the worst liveness times seen (what the bounds must cover).
#[derive(Debug, Default)]
struct Totals {
    runs: u64,
    sum: Stats,
}

impl Totals {
    fn add(&mut self, s: &Stats) {
        self.runs += 1;
        self.sum.accumulate(s);
    }
}

impl std::fmt::Display for Totals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.sum;
        write!(
            f,
            "{} runs, {} steps, {} faults ({}), {} of {} process starts asynchronous, {} group \
             commits, {} fsyncs ({} for several groups), {} writes acknowledged; {}; {}; worst \
             liveness: leader {} ticks after \
             healing, request acknowledged after {} ticks",
            self.runs,
            s.steps,
            s.faults,
            s.crashes(),
            s.async_starts,
            s.starts,
            s.group_commits,
            s.fsyncs,
            s.shared_fsyncs,
            s.acked,
            s.snapshots(),
            s.reads(),
            s.ticks_to_leader,
            s.max_request_ticks
        )?;
        if s.quiesces > 0 || s.quiet_ticks > 0 {
            write!(
                f,
                "; {} quiesces, {} liveness wakes, {} messages in {} quiet ticks",
                s.quiesces, s.liveness_wakes, s.quiet_messages, s.quiet_ticks
            )?;
        }
        Ok(())
    }
}

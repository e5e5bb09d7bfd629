//! `keel bench`: a closed-loop load generator for keel, side by side with etcd.
//!
//! N clients (tokio tasks) each issue their next operation as soon as the previous
//! one completes, over a key space of K keys with V-byte values and a read fraction
//! R. After a warm-up, each run measures throughput and latency percentiles
//! (HdrHistogram), separately for reads and writes, errors by kind, and, for
//! clusters the bench started, each node's CPU time and peak memory.
//!
//! The target is a running keel cluster (`--endpoints`) or one the bench starts on
//! loopback (`--cluster local`); `--against etcd` runs the same workload against an
//! etcd cluster the bench starts as well, and reports keel/etcd ratios.
//! `--sweep-clients 1,16,64,256` repeats the run per client count.
//!
//! Module map: [`args`] and [`plan`] read the command line; [`session`] runs the
//! plan over [`systems`] (clusters) through [`target`]s (client connections), each
//! run by the [`driver`] with [`workload`] choosing operations and [`stats`]
//! recording them; [`report`] prints the table and writes JSON. Scenarios with
//! their own cluster and phases: [`snapshot`] (`keel bench snapshot`) and
//! [`slot_move`] (`keel bench move`).

pub mod args;
pub mod driver;
pub mod parse;
pub mod plan;
pub mod preload;
pub mod progress;
pub mod report;
pub mod results;
pub mod rng;
pub mod scenario_files;
pub mod session;
pub mod slot_move;
pub mod snapshot;
pub mod stats;
pub mod systems;
pub mod target;
pub mod usage;
pub mod workload;

use std::process::ExitCode;

use anyhow::Context as _;

pub use args::BenchArgs;

/// Runs `keel bench`: measures, prints the table on stdout, and writes JSON if asked.
pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    match args.scenario {
        Some(args::Scenario::Snapshot(scenario)) => return snapshot::run(scenario),
        Some(args::Scenario::Move(scenario)) => return slot_move::run(scenario),
        None => {}
    }
    let plan = args.plan(keel_testkit::etcd_cluster::find_etcd)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("keel-bench")
        .build()
        .context("cannot start the async runtime")?;
    let results = rt.block_on(session::execute(&plan))?;
    print!("\n{}", report::render(&results));
    if let Some(path) = &plan.json {
        report::json::JsonReport::new(&plan, &results).write(path)?;
        eprintln!("Results written to {}.", path.display());
    }
    if let Some(path) = &plan.chart {
        let w = &plan.workload;
        let mut title = format!(
            "{}-byte values, {} keys, read fraction {}",
            w.value_size, w.keys, w.read_fraction
        );
        if w.read_fraction > 0.0 {
            title.push_str(&format!(", {:?} reads", plan.reads));
        }
        report::chart::write(&results, &title, path)?;
        eprintln!("Chart written to {}.", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

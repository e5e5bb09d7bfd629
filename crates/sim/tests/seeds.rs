//! The seed sweep: many seeded runs of 3- and 5-node clusters (and a few 1-node
//! sanity runs), each with faults, per-step safety checks and a liveness phase.
//!
//! `KEEL_SIM_SEEDS=N` runs N seeds per cluster size instead of the default, and
//! `KEEL_SIM_SEED_BASE=B` starts at seed B, so that long campaigns can cover fresh
//! ranges: `KEEL_SIM_SEEDS=100000 cargo test -p keel-sim --release --test seeds`.

use std::time::Instant;

use keel_sim::{Persistence, SimConfig, run};

/// Seeds per cluster size in a plain `cargo test` (500 in all across 3 and 5 nodes).
const DEFAULT_SEEDS: u64 = 250;

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// Runs `count` seeds from `base` on `nodes` nodes with the given form of the
/// `Ready` contract; fails with every failing seed's report (the first in full) and
/// its one-line replay command.
fn sweep(nodes: usize, persistence: Persistence, base: u64, count: u64) {
    let started = Instant::now();
    let mut failures = Vec::new();
    for seed in base..base + count {
        let cfg = SimConfig {
            persistence,
            ..SimConfig::new(seed, nodes)
        };
        if let Err(failure) = run(cfg) {
            if failures.is_empty() {
                eprintln!("{failure}");
            }
            failures.push(failure.replay_command());
        }
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{count} seeds on {nodes} nodes from {base}: {} failed, {secs:.1}s ({:.0} seeds/s)",
        failures.len(),
        count as f64 / secs.max(1e-9)
    );
    assert!(
        failures.is_empty(),
        "{} of {count} seeds failed on {nodes} nodes; replay with:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn three_node_clusters_stay_safe_and_live() {
    let count = env_u64("KEEL_SIM_SEEDS", DEFAULT_SEEDS);
    sweep(
        3,
        Persistence::Mixed,
        env_u64("KEEL_SIM_SEED_BASE", 0),
        count,
    );
}

#[test]
fn five_node_clusters_stay_safe_and_live() {
    let count = env_u64("KEEL_SIM_SEEDS", DEFAULT_SEEDS);
    // A different range than the 3-node sweep, so the two sizes never share a seed.
    sweep(
        5,
        Persistence::Mixed,
        env_u64("KEEL_SIM_SEED_BASE", 0) + 1_000_000,
        count,
    );
}

#[test]
fn single_node_clusters_survive_crashes() {
    let count = env_u64("KEEL_SIM_SEEDS", DEFAULT_SEEDS) / 10;
    sweep(
        1,
        Persistence::Mixed,
        env_u64("KEEL_SIM_SEED_BASE", 0) + 2_000_000,
        count.max(1),
    );
}

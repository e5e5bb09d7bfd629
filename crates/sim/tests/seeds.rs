//! The seed sweep: many seeded runs of 3- and 5-node clusters (and a few 1-node
//! sanity runs), each with faults, per-step safety checks and a liveness phase.
//!
//! `KEEL_SIM_SEEDS=N` runs N seeds per cluster size instead of the default, and
//! `KEEL_SIM_SEED_BASE=B` starts at seed B, so that long campaigns can cover fresh
//! ranges: `KEEL_SIM_SEEDS=100000 cargo test -p keel-sim --release --test seeds`.
//!
//! A sweep of passing runs means little if the runs never reach what they are meant
//! to exercise: the multi-node sweeps also check that their runs, together, took
//! snapshots, compacted logs, sent snapshots (losing some) and installed them, and
//! served reads by every path while nodes were paused.

use std::time::Instant;

mod common;

use keel_sim::{Persistence, SimConfig, Stats};

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
/// its one-line replay command. Returns the passing runs' counters, summed.
fn sweep(nodes: usize, persistence: Persistence, base: u64, count: u64) -> Stats {
    let started = Instant::now();
    let total = common::sweep(base..base + count, &format!("on {nodes} nodes"), |seed| {
        SimConfig {
            persistence,
            ..SimConfig::new(seed, nodes)
        }
    });
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{count} seeds on {nodes} nodes from {base}: {secs:.1}s ({:.0} seeds/s)",
        count as f64 / secs.max(1e-9)
    );
    total
}

/// Checks that `count` runs of a multi-node sweep did their snapshot work: per run
/// on average, at least ten snapshots taken, five WAL compactions, one snapshot
/// sent and installed, and (over the batch) some transfers lost and some state
/// machines loaded from a snapshot at a restart. The campaigns see about four times
/// as much; a batch too small to average over is not checked.
fn assert_snapshots_exercised(count: u64, s: &Stats) {
    if count < 50 {
        return;
    }
    let per_run = |n: u64| n as f64 / count as f64;
    eprintln!(
        "snapshots per run: {:.1} taken, {:.1} WAL compactions, {:.2} sent, {:.2} failed, \
         {:.2} installed, {:.2} loaded at restart",
        per_run(s.snapshots_taken),
        per_run(s.wal_compactions),
        per_run(s.snapshots_sent),
        per_run(s.snapshots_failed),
        per_run(s.snapshots_installed),
        per_run(s.snapshots_loaded)
    );
    assert!(s.snapshots_taken >= 10 * count, "{s:?}");
    assert!(s.wal_compactions >= 5 * count, "{s:?}");
    assert!(s.snapshots_sent >= count, "{s:?}");
    assert!(s.snapshots_installed >= count, "{s:?}");
    assert!(s.snapshots_failed >= count / 10, "{s:?}");
    assert!(s.snapshots_loaded >= count / 5, "{s:?}");
}

/// Checks that `count` runs of a multi-node sweep served reads by every path —
/// per run on average at least ten under a lease, ten through the leader's
/// ReadIndex, five through a follower's and ten stale ones, and one lease read that
/// had to fall back — and paused a node every other run. The campaigns see three
/// to five times as much.
fn assert_reads_exercised(count: u64, s: &Stats) {
    if count < 50 {
        return;
    }
    let per_run = |n: u64| n as f64 / count as f64;
    eprintln!(
        "reads per run: {:.1} under a lease, {:.1} through the leader's ReadIndex, {:.1} \
         through a follower's, {:.1} stale, {:.1} lease fallbacks; {:.2} pauses",
        per_run(s.reads_lease),
        per_run(s.reads_leader_index),
        per_run(s.reads_follower_index),
        per_run(s.reads_local),
        per_run(s.lease_fallbacks),
        per_run(s.pauses)
    );
    assert!(s.reads_lease >= 10 * count, "{s:?}");
    assert!(s.reads_leader_index >= 10 * count, "{s:?}");
    assert!(s.reads_follower_index >= 5 * count, "{s:?}");
    assert!(s.reads_local >= 10 * count, "{s:?}");
    assert!(s.lease_fallbacks >= count, "{s:?}");
    assert!(s.pauses >= count / 2, "{s:?}");
}

#[test]
fn three_node_clusters_stay_safe_and_live() {
    let count = env_u64("KEEL_SIM_SEEDS", DEFAULT_SEEDS);
    let stats = sweep(
        3,
        Persistence::Mixed,
        env_u64("KEEL_SIM_SEED_BASE", 0),
        count,
    );
    assert_snapshots_exercised(count, &stats);
    assert_reads_exercised(count, &stats);
}

#[test]
fn five_node_clusters_stay_safe_and_live() {
    let count = env_u64("KEEL_SIM_SEEDS", DEFAULT_SEEDS);
    // A different range than the 3-node sweep, so the two sizes never share a seed.
    let stats = sweep(
        5,
        Persistence::Mixed,
        env_u64("KEEL_SIM_SEED_BASE", 0) + 1_000_000,
        count,
    );
    assert_snapshots_exercised(count, &stats);
    assert_reads_exercised(count, &stats);
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

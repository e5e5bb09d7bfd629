//! What the simulator's test binaries share.

use keel_sim::{SimConfig, Stats, run};

/// Runs the configuration `cfg` gives for every seed of `seeds`; fails with every
/// failing seed's report (the first in full) and its one-line replay command,
/// naming the sweep as `what`. Returns the runs' counters, summed.
pub fn sweep(seeds: std::ops::Range<u64>, what: &str, cfg: impl Fn(u64) -> SimConfig) -> Stats {
    let mut total = Stats::default();
    let mut failures = Vec::new();
    for seed in seeds.clone() {
        match run(cfg(seed)) {
            Ok(summary) => total.accumulate(&summary.stats),
            Err(failure) => {
                if failures.is_empty() {
                    eprintln!("{failure}");
                }
                failures.push(failure.replay_command());
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of the seeds {seeds:?} failed {what}; replay with:\n{}",
        failures.len(),
        failures.join("\n")
    );
    total
}

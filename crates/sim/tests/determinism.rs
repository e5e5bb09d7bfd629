//! A seed names a run: the same seed gives the identical run (same trace, event for
//! event), and different seeds give different runs.

use keel_sim::{Persistence, SimConfig, StorageKind, run};

fn fingerprint(cfg: SimConfig) -> (u64, keel_sim::Stats) {
    let summary = run(cfg).unwrap_or_else(|f| panic!("{f}"));
    (summary.fingerprint, summary.stats)
}

#[test]
fn same_seed_same_run_other_seed_other_run() {
    for nodes in [3, 5] {
        let a = fingerprint(SimConfig::new(11, nodes));
        let b = fingerprint(SimConfig::new(11, nodes));
        assert_eq!(a, b, "two runs of seed 11 on {nodes} nodes differ");
        let c = fingerprint(SimConfig::new(12, nodes));
        assert_ne!(a.0, c.0, "seeds 11 and 12 on {nodes} nodes ran identically");
    }
}

#[test]
fn model_storage_runs_are_deterministic_too() {
    let cfg = SimConfig {
        storage: StorageKind::Model,
        ..SimConfig::new(5, 3)
    };
    assert_eq!(fingerprint(cfg.clone()), fingerprint(cfg));
}

#[test]
fn runs_do_real_work() {
    // A sweep of passing runs means little if the runs are idle: check that
    // typical ones elect leaders, commit, crash nodes and acknowledge writes. Three
    // seeds together, so that a change that merely moves one run's events (a
    // bigger snapshot, a longer entry) does not turn the check on its head.
    let mut s = keel_sim::Stats::default();
    for seed in 3..6 {
        s.accumulate(&fingerprint(SimConfig::new(seed, 5)).1);
    }
    assert!(s.leader_terms >= 2, "{s:?}");
    assert!(s.committed >= 50, "{s:?}");
    assert!(s.crashes >= 1 && s.faults >= 5, "{s:?}");
    assert!(s.acked >= 20, "{s:?}");
    // Both forms of the Ready contract, and several Readys per fsync.
    assert!(s.async_starts > 0 && s.async_starts < s.starts, "{s:?}");
    assert!(s.group_commits >= 5, "{s:?}");
    // Snapshots: taken, compacted behind, sent to a follower and installed there.
    assert!(s.snapshots_taken >= 5 && s.wal_compactions >= 1, "{s:?}");
    assert!(s.snapshots_installed >= 1, "{s:?}");
    // Reads in every mode and by every path, and paused nodes.
    assert!(s.reads_lease >= 10 && s.reads_leader_index >= 10, "{s:?}");
    assert!(s.reads_follower_index >= 5 && s.reads_local >= 10, "{s:?}");
    assert!(s.lease_fallbacks >= 1 && s.pauses >= 1, "{s:?}");
}

#[test]
fn asynchronous_runs_are_deterministic_too() {
    let cfg = SimConfig {
        persistence: Persistence::Async,
        ..SimConfig::new(6, 5)
    };
    assert_eq!(fingerprint(cfg.clone()), fingerprint(cfg));
}

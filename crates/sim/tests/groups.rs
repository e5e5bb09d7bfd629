//! Several Raft groups per node on one shared WAL (docs/sharding.md, step 4):
//! every node hosts a replica of each group; a node's turn writes every group's
//! `Ready` into its one WAL and syncs once; crashes, pauses and partitions strike
//! all of a node's groups at once; and each group is checked on its own — election
//! safety, log matching, leader completeness, state machine safety, durability,
//! linearizable reads, no lost acknowledged write, convergence.

mod common;

use keel_sim::{Bug, FailureKind, Invariant, SimConfig, Stats, run};

fn config(seed: u64, nodes: usize, groups: usize) -> SimConfig {
    SimConfig {
        groups,
        ..SimConfig::new(seed, nodes)
    }
}

/// Runs `seeds` with `groups` groups on `nodes` nodes; fails with every failing
/// seed's replay command. Returns the runs' counters, summed.
fn sweep(nodes: usize, groups: usize, seeds: std::ops::Range<u64>) -> Stats {
    common::sweep(
        seeds,
        &format!("with {groups} groups on {nodes} nodes"),
        |seed| config(seed, nodes, groups),
    )
}

#[test]
fn three_groups_on_three_nodes_pass_every_check() {
    let s = sweep(3, 3, 0..24);
    // The runs reached what they are meant to exercise, in every group at once.
    assert!(s.crashes >= 24 && s.torn_tails >= 1, "{s:?}");
    assert!(
        s.acked >= 24 * 3 * 5,
        "every group's liveness requests: {s:?}"
    );
    assert!(s.snapshots_taken >= 24 && s.wal_compactions >= 1, "{s:?}");
    assert!(s.snapshots_installed >= 1, "{s:?}");
    assert!(s.reads_leader_index >= 24 && s.reads_lease >= 24, "{s:?}");
}

#[test]
fn two_groups_on_five_nodes_pass_every_check() {
    sweep(5, 2, 100..112);
}

/// The point of a shared WAL: one fsync covers the writes of several groups.
/// A runtime that synced each group on its own would never do so. (Most turns
/// write one group only: inputs reach a node one event at a time, and only
/// those that wait out an fsync share the next one — a few in a hundred.)
#[test]
fn one_fsync_covers_several_groups() {
    let s = sweep(3, 4, 200..206);
    assert!(s.fsyncs > 0, "{s:?}");
    assert!(
        s.shared_fsyncs * 100 >= s.fsyncs,
        "at least one fsync in a hundred covers several groups: {} of {}",
        s.shared_fsyncs,
        s.fsyncs
    );
}

#[test]
fn multi_group_runs_are_deterministic() {
    let a = run(config(31, 3, 3)).unwrap_or_else(|f| panic!("{f}"));
    let b = run(config(31, 3, 3)).unwrap_or_else(|f| panic!("{f}"));
    assert_eq!((a.fingerprint, a.stats), (b.fingerprint, b.stats));
    let c = run(config(32, 3, 3)).unwrap_or_else(|f| panic!("{f}"));
    assert_ne!(a.fingerprint, c.fingerprint);
}

/// The per-group checkers are live: a node that forgets its vote at restart is
/// caught voting twice in some group's term.
#[test]
fn a_forgotten_vote_is_caught_in_a_multi_group_run() {
    let expected = [
        FailureKind::Safety(Invariant::ElectionSafety),
        FailureKind::Safety(Invariant::LeaderCompleteness),
        FailureKind::Safety(Invariant::CommittedPrefix),
        FailureKind::Safety(Invariant::StateMachineSafety),
        FailureKind::Safety(Invariant::LostAcknowledgedWrite),
        FailureKind::Safety(Invariant::LogMatching),
    ];
    for seed in 0..40 {
        let cfg = SimConfig {
            bug: Some(Bug::ForgetVote),
            ..config(seed, 3, 3)
        };
        if let Err(failure) = run(cfg)
            && expected.contains(&failure.kind)
        {
            let report = failure.to_string();
            assert!(report.contains("--groups 3"), "replayable: {report}");
            return;
        }
    }
    panic!("forget-vote was never caught in 40 seeds with 3 groups");
}

#[test]
fn more_than_one_group_needs_the_shared_real_wal_and_the_sync_contract() {
    let model = SimConfig {
        storage: keel_sim::StorageKind::Model,
        ..config(1, 3, 2)
    };
    assert!(model.validate().is_err());
    let asynchronous = SimConfig {
        persistence: keel_sim::Persistence::Async,
        ..config(1, 3, 2)
    };
    assert!(asynchronous.validate().is_err());
    assert!(config(1, 3, 0).validate().is_err());
    assert!(config(1, 3, 9).validate().is_err());
    assert!(config(1, 3, 8).validate().is_ok());
}

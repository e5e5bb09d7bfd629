//! A checker that never fails proves nothing: inject known bugs through the
//! simulator's knobs and check that the matching violation is reported — with a
//! replay command — for some seed of a small range, under each form of the `Ready`
//! contract the bug applies to. And a liveness bound that cannot be met must be
//! reported as such.

use keel_sim::{
    Bug, DEFAULT_CLOCK_DRIFT_PPM, FailureKind, Invariant, LivenessBound, Persistence, SimConfig,
    run,
};

/// Asserts that some seed in `seeds`, run with `bug` and `persistence`, fails in one
/// of the `expected` ways, with a report that names the seed and the command
/// replaying it.
fn first_caught(
    bug: Bug,
    persistence: Persistence,
    seeds: std::ops::Range<u64>,
    expected: &[FailureKind],
) {
    first_caught_with_drift(bug, persistence, DEFAULT_CLOCK_DRIFT_PPM, seeds, expected);
}

/// [`first_caught`], with the nodes' clocks drifting up to `drift_ppm`.
fn first_caught_with_drift(
    bug: Bug,
    persistence: Persistence,
    drift_ppm: u32,
    seeds: std::ops::Range<u64>,
    expected: &[FailureKind],
) {
    let nodes = 3;
    for seed in seeds.clone() {
        let cfg = SimConfig {
            bug: Some(bug),
            persistence,
            clock_drift_ppm: drift_ppm,
            ..SimConfig::new(seed, nodes)
        };
        if let Err(failure) = run(cfg)
            && expected.contains(&failure.kind)
        {
            let report = failure.to_string();
            let mode = match persistence {
                Persistence::Mixed => String::new(),
                other => format!(" --persistence {other}"),
            };
            let drift = if drift_ppm == DEFAULT_CLOCK_DRIFT_PPM {
                String::new()
            } else {
                format!(" --clock-drift-ppm {drift_ppm}")
            };
            let replay = format!(
                "replay: cargo run -p keel-sim --release -- --seed {seed} --nodes {nodes}{mode}\
                 {drift} --inject-bug {bug} --verbose"
            );
            assert!(report.contains(&replay), "no replay line in:\n{report}");
            assert!(report.contains(&format!("seed {seed},")), "{report}");
            return;
        }
    }
    panic!(
        "bug {bug} ({persistence} persistence) was never reported as one of {expected:?} in \
         seeds {seeds:?}"
    );
}

/// How a node that promised entries it had not made durable shows up once a crash
/// loses them.
const LOST_PROMISES: [FailureKind; 4] = [
    FailureKind::Safety(Invariant::LeaderCompleteness),
    FailureKind::Safety(Invariant::CommittedPrefix),
    FailureKind::Safety(Invariant::StateMachineSafety),
    FailureKind::Safety(Invariant::LostAcknowledgedWrite),
];

#[test]
fn forged_entries_break_log_matching() {
    first_caught(
        Bug::CorruptEntries,
        Persistence::Mixed,
        0..20,
        &[FailureKind::Safety(Invariant::LogMatching)],
    );
}

#[test]
fn forgetting_the_vote_breaks_election_safety() {
    first_caught(
        Bug::ForgetVote,
        Persistence::Mixed,
        0..400,
        &[FailureKind::Safety(Invariant::ElectionSafety)],
    );
}

#[test]
fn acknowledging_before_fsync_loses_committed_entries_synchronously() {
    first_caught(
        Bug::AckBeforeSync,
        Persistence::Sync,
        0..400,
        &LOST_PROMISES,
    );
}

#[test]
fn acknowledging_before_fsync_loses_committed_entries_asynchronously() {
    first_caught(
        Bug::AckBeforeSync,
        Persistence::Async,
        0..400,
        &LOST_PROMISES,
    );
}

#[test]
fn reporting_persistence_before_fsync_is_caught() {
    first_caught(
        Bug::PersistBeforeSync,
        Persistence::Async,
        0..20,
        &[FailureKind::Safety(Invariant::LocalDurability)],
    );
}

#[test]
fn an_unmeetable_liveness_bound_is_reported() {
    // A request acknowledged within a fraction of a tick meets even a zero bound,
    // so look for the first seed in which one does not.
    let failure = (1..20)
        .find_map(|seed| {
            let mut cfg = SimConfig::new(seed, 3);
            cfg.bounds.commit_ticks = 0;
            run(cfg).err()
        })
        .expect("some request takes more than zero ticks");
    assert_eq!(failure.kind, FailureKind::Liveness(LivenessBound::Commit));
    assert!(
        failure
            .to_string()
            .contains("not acknowledged within 0 ticks")
    );
}

#[test]
fn two_membership_changes_in_flight_are_caught() {
    // Thesis §4.1: configurations two changes apart need not share a majority.
    // With the core's one-change-in-flight rule switched off, the operator adds
    // and promotes a voter at once; some seed must show a safety violation.
    first_caught(
        Bug::ConcurrentConfChanges,
        Persistence::Mixed,
        0..400,
        &[
            FailureKind::Safety(Invariant::ElectionSafety),
            FailureKind::Safety(Invariant::LeaderCompleteness),
            FailureKind::Safety(Invariant::CommittedPrefix),
            FailureKind::Safety(Invariant::StateMachineSafety),
            FailureKind::Safety(Invariant::LostAcknowledgedWrite),
        ],
    );
}

#[test]
fn taking_a_snapshot_over_a_conflicting_log_is_caught() {
    // With the core's term check off, a follower holding another term's entry at
    // a snapshot's index keeps its log and claims the leader's committed prefix.
    first_caught(
        Bug::SnapshotIgnoresTerm,
        Persistence::Mixed,
        0..100,
        &[
            FailureKind::Safety(Invariant::CommittedPrefix),
            FailureKind::Safety(Invariant::LogMatching),
            FailureKind::Safety(Invariant::LeaderCompleteness),
            FailureKind::Safety(Invariant::StateMachineSafety),
            FailureKind::Safety(Invariant::LostAcknowledgedWrite),
        ],
    );
}

#[test]
fn compacting_the_log_before_its_snapshot_is_durable_is_caught() {
    // A crash during the snapshot write leaves a log that starts where no durable
    // snapshot covers it: the node cannot restart.
    first_caught(
        Bug::CompactBeforeSnapshot,
        Persistence::Mixed,
        0..50,
        &[FailureKind::Safety(Invariant::Durability)],
    );
}

/// How a read that a correct node would not serve shows up: the read checker.
const STALE_READS: [FailureKind; 2] = [
    FailureKind::Safety(Invariant::LinearizableRead),
    FailureKind::Safety(Invariant::FreshRead),
];

#[test]
fn follower_reads_without_a_read_index_are_caught() {
    // A follower that serves a linearizable read from its own state misses
    // whatever the leader committed and it has not heard of yet: almost every
    // seed shows it.
    first_caught(
        Bug::FollowerReadWithoutReadIndex,
        Persistence::Mixed,
        0..20,
        &STALE_READS,
    );
}

#[test]
fn a_lease_without_a_drift_margin_is_caught() {
    // With clocks up to 40% off, a slow leader cut off from fast followers trusts
    // its lease for up to 10/0.6 = 16.7 ticks after its last confirmed heartbeat,
    // while theirs runs out after 10/1.4 = 7.1 and they may elect a successor
    // (the margin, 80% of the lease at this drift, would have ended its lease
    // after 3.3). With the bug the fault planner only isolates leaders, one at a
    // time; about one seed in ten catches a lease read at the deposed leader after
    // its successor committed.
    first_caught_with_drift(
        Bug::LeaseWithoutDriftMargin,
        Persistence::Mixed,
        400_000,
        0..100,
        &STALE_READS,
    );
}

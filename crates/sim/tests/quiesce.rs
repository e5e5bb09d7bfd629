//! Quiescence of idle groups (docs/sharding.md, "Heartbeats: coalesced, and quiet
//! groups quiesce"): with `SimConfig::quiesce`, leaders quiesce groups the client
//! left idle, and node-level failure detection wakes the followers of a leader
//! whose node went silent. Every invariant the simulator checks must still hold
//! through crashes, pauses, partitions and loss, and idle groups must actually go
//! quiet.

mod common;

use common::sweep;
use keel_sim::{SimConfig, run};

fn config(seed: u64, nodes: usize, groups: usize, quiesce: bool, faults: bool) -> SimConfig {
    SimConfig {
        groups,
        quiesce,
        idle_stretches: true,
        faults,
        // Long enough for several active-then-idle cycles.
        steps: 8_000,
        ..SimConfig::new(seed, nodes)
    }
}

#[test]
fn quiescing_three_node_runs_with_faults_pass_every_check() {
    let s = sweep(0..16, "with quiescence", |seed| {
        config(seed, 3, 1, true, true)
    });
    assert!(s.quiesces >= 16, "groups went quiet: {s:?}");
    assert!(
        s.liveness_wakes >= 1,
        "node-level failure detection woke followers: {s:?}"
    );
    assert!(s.crashes >= 16 && s.pauses >= 1, "{s:?}");
    assert!(s.acked >= 16 * 5, "{s:?}");
    assert!(s.reads_lease >= 1 && s.lease_fallbacks >= 1, "{s:?}");
}

#[test]
fn quiescing_five_node_runs_with_faults_pass_every_check() {
    let s = sweep(100..108, "with quiescence", |seed| {
        config(seed, 5, 1, true, true)
    });
    assert!(s.quiesces >= 8 && s.liveness_wakes >= 1, "{s:?}");
}

#[test]
fn quiescing_multi_group_runs_pass_every_check() {
    let s = sweep(200..206, "with quiescence", |seed| {
        config(seed, 3, 3, true, true)
    });
    assert!(s.quiesces >= 6 * 3, "{s:?}");
}

/// The point of quiescence: in the quiet part of an idle stretch a group costs
/// (almost) no messages, where without it its leader heartbeats every follower
/// every interval and each answers. The same seeds without quiescence are the
/// control, so the check can fail.
#[test]
fn idle_groups_go_quiet() {
    let on = sweep(300..306, "with quiescence", |seed| {
        config(seed, 3, 1, true, false)
    });
    let off = sweep(300..306, "without quiescence", |seed| {
        config(seed, 3, 1, false, false)
    });
    assert!(
        on.quiet_ticks >= 100 && off.quiet_ticks >= 100,
        "{on:?}\n{off:?}"
    );
    // Heartbeat every 2 ticks to 2 followers, and their answers: 2 per tick.
    assert!(
        off.quiet_messages >= off.quiet_ticks,
        "without quiescence an idle group still heartbeats: {off:?}"
    );
    assert!(
        on.quiet_messages * 100 <= on.quiet_ticks,
        "quiet groups send almost nothing: {} messages in {} quiet ticks",
        on.quiet_messages,
        on.quiet_ticks
    );
    assert!(on.quiesces >= 6, "{on:?}");
}

#[test]
fn quiescing_runs_are_deterministic() {
    let cfg = config(7, 3, 1, true, true);
    let a = run(cfg.clone()).unwrap_or_else(|f| panic!("{f}"));
    let b = run(cfg).unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(a.fingerprint, b.fingerprint);
    assert_eq!(a.stats, b.stats);
}

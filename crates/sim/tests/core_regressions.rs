//! Regression tests for bugs the simulator found in the consensus core
//! (`keel-raft`), fixed there since. The core's own unit tests cover them too
//! (`crates/raft/src/tests/async_persistence.rs`); these keep the simulator's view.

use bytes::Bytes;
use keel_raft::{ConfState, Config, InitialState, Raft, Role};
use keel_sim::{FailureKind, Invariant, Persistence, SimConfig, run};

/// A single-voter core on an empty disk, as a fresh node starts.
fn single_voter() -> Raft {
    let init = InitialState {
        conf: ConfState::with_voters([1]),
        ..InitialState::default()
    };
    let cfg = Config {
        id: 1,
        group: 1,
        ..Config::default()
    };
    Raft::new(cfg, init, 7).expect("valid config")
}

/// Ticks `core` until it leads, handing every Ready over asynchronously and never
/// reporting anything durable (the storage thread's fsync is still in flight).
/// Returns whether it led.
fn lead_without_persisting(core: &mut Raft) -> bool {
    for _ in 0..100 {
        if core.role() == Role::Leader {
            return true;
        }
        core.tick();
        while core.has_ready() {
            let rd = core.ready();
            core.advance_async(rd);
        }
    }
    false
}

/// Ticks `core` until it leads, persisting every Ready synchronously.
fn lead_persisting(core: &mut Raft) {
    for _ in 0..100 {
        if core.role() == Role::Leader {
            return;
        }
        core.tick();
        while core.has_ready() {
            let rd = core.ready();
            core.advance(rd);
        }
    }
    panic!("no leader after 100 ticks");
}

/// **Fixed core bug: a single voter led a term that was not durable yet.**
///
/// `start_election` counts the node's own vote at once, so a group with one voter
/// wins as soon as it campaigns, before the `Ready` carrying its new term and
/// self-vote is durable. Under the synchronous contract that is harmless (nothing
/// else happens before the fsync). Under the asynchronous one the node leads and
/// accepts proposals in that term while the write is in flight; a crash before the
/// fsync brings it back in the old term, it campaigns for the same term again, wins
/// again, and accepts a *different* entry at the same (index, term). Two
/// incarnations led one term, and log matching is broken: any node that received
/// the first incarnation's entry — a learner, say, which the leader replicates to
/// at once — keeps it, and will apply it where everyone else applies the second.
///
/// Found by `keel-sim --nodes 1 --persistence async` (see the seed test below).
/// Fixed in the core: a candidate counts its own vote only once its term and vote
/// are durable (`on_persisted`), as voters do before answering.
#[test]
fn a_single_voter_must_not_lead_one_term_twice() {
    let mut core = single_voter();
    assert!(
        !lead_without_persisting(&mut core),
        "a lone voter must not lead before its vote is durable"
    );
    let first = core.propose(Bytes::from_static(b"first")).ok();
    // Power failure before the storage thread's fsync: nothing was durable.
    let mut core = single_voter();
    lead_persisting(&mut core);
    let second = core
        .propose(Bytes::from_static(b"second"))
        .expect("a leader whose term is durable accepts proposals");
    assert_ne!(
        first,
        Some(second),
        "two different entries were accepted at the same (index, term)"
    );
}

/// The same bug as found by the simulator: seed 70 of a 1-node cluster driven
/// asynchronously (on the commit that added this test).
#[test]
fn seed_70_single_node_async() {
    let cfg = SimConfig {
        persistence: Persistence::Async,
        ..SimConfig::new(70, 1)
    };
    if let Err(failure) = run(cfg) {
        assert_ne!(
            failure.kind,
            FailureKind::Safety(Invariant::LogMatching),
            "{failure}"
        );
    }
}

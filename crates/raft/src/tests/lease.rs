//! Leader leases (see `lease.rs`): a quorum-confirmed heartbeat round gives the
//! leader a lease measured from when the round was sent; voters hand what remains
//! of it to the candidates they vote for, and a new leader commits nothing until
//! it has run out.

use super::network::{Network, config};
use crate::{Config, Event, InjectedBug, Lease, NodeId, Role};

pub(super) const LEASE: u64 = 1_000;
pub(super) const DRIFT: u64 = 100;

pub(super) fn lease_config(id: NodeId) -> Config {
    Config {
        lease_duration: LEASE,
        max_clock_drift: DRIFT,
        ..config(id)
    }
}

pub(super) fn set_clocks(net: &mut Network, now: u64) {
    let ids: Vec<NodeId> = net.nodes.keys().copied().collect();
    for id in ids {
        net.node_mut(id).set_clock(now);
    }
}

pub(super) fn waited(net: &Network, id: NodeId) -> Option<u64> {
    net.events_of(id).iter().find_map(|e| match e {
        Event::WaitingForOldLease { remaining, .. } => Some(*remaining),
        _ => None,
    })
}

/// A 3-node group whose leader 1 has committed its NO-OP and holds a lease from a
/// heartbeat round sent at `now`.
pub(super) fn leader_with_lease(now: u64) -> Network {
    let mut net = Network::with_config(3, lease_config);
    set_clocks(&mut net, 0);
    net.elect(1);
    // Every node just started, so each assumes it may have acknowledged a lease
    // before a restart: the first leader waits one lease out.
    assert_eq!(waited(&net, 1), Some(LEASE));
    assert_ne!(net.node(1).log_term(net.node(1).commit_index()), Some(1));
    assert_eq!(
        net.node(1).lease(),
        None,
        "no lease before the first commit"
    );
    set_clocks(&mut net, now);
    net.tick(1, 1);
    net.stabilize();
    assert_eq!(
        net.node(1).log_term(net.node(1).commit_index()),
        Some(net.node(1).term()),
        "commits resume once the inherited lease ran out"
    );
    net
}

#[test]
fn a_quorum_confirmed_round_gives_a_lease_from_its_send_time() {
    let mut net = leader_with_lease(2_000);
    assert_eq!(
        net.node(1).lease(),
        Some(Lease {
            term: 1,
            valid_until: 2_000 + LEASE - DRIFT
        })
    );
    // A round nobody answers renews nothing.
    net.isolate(1);
    set_clocks(&mut net, 2_500);
    net.tick(1, 1);
    net.stabilize();
    assert_eq!(net.node(1).lease().map(|l| l.valid_until), Some(2_900));
    // One follower is enough with the leader for a quorum of three.
    net.heal();
    net.cut.insert((1, 3));
    set_clocks(&mut net, 2_600);
    net.tick(1, 1);
    net.stabilize();
    assert_eq!(net.node(1).lease().map(|l| l.valid_until), Some(3_500));
}

#[test]
fn the_drift_margin_is_what_the_injected_bug_removes() {
    let mut net = leader_with_lease(2_000);
    net.node_mut(1)
        .inject_bug(Some(InjectedBug::LeaseWithoutDriftMargin));
    assert_eq!(
        net.node(1).lease().map(|l| l.valid_until),
        Some(2_000 + LEASE)
    );
}

#[test]
fn a_new_leader_waits_out_the_lease_its_voters_acknowledged() {
    let mut net = leader_with_lease(2_000);
    // Leader 1 is cut off with a lease until 2_900; voters 2 and 3 received the
    // round at 2_000 and remember it until 3_000.
    net.isolate(1);
    set_clocks(&mut net, 2_400);
    net.expire_lease(&[2, 3]);
    net.elect(2);
    assert_eq!(waited(&net, 2), Some(600));
    net.propose(2, "x");
    net.stabilize();
    let committed_before = net.node(2).commit_index();
    assert_ne!(
        net.node(2).log_term(committed_before),
        Some(net.node(2).term())
    );
    set_clocks(&mut net, 2_999);
    net.tick(2, 1);
    net.stabilize();
    assert_eq!(
        net.node(2).commit_index(),
        committed_before,
        "still waiting"
    );
    set_clocks(&mut net, 3_000);
    net.tick(2, 1);
    net.stabilize();
    assert!(net.applied_data(2).contains(&"x".to_string()));
    assert_eq!(
        net.node(2).lease().map(|l| l.valid_until),
        Some(3_000 + LEASE - DRIFT),
        "its own lease starts with its first round after the wait"
    );
}

#[test]
fn a_transfer_ends_the_lease_and_the_target_does_not_wait() {
    let mut net = leader_with_lease(2_000);
    assert!(net.node(1).lease().is_some());
    net.node_mut(1).transfer_leader(2).expect("valid target");
    assert_eq!(net.node(1).lease(), None, "ended before TimeoutNow leaves");
    net.stabilize();
    assert_eq!(net.node(2).role(), Role::Leader);
    assert_eq!(waited(&net, 2), None);
    net.propose(2, "y");
    net.stabilize();
    assert!(net.applied_data(2).contains(&"y".to_string()));
}

#[test]
fn a_leader_that_stepped_down_hands_its_own_lease_on() {
    let mut net = leader_with_lease(2_000);
    // A round at 2_500 reaches only 3: 1's lease now runs from 2_500, while 2 last
    // heard a round sent at 2_000 (it remembers until 3_000).
    net.cut.insert((1, 2));
    set_clocks(&mut net, 2_500);
    net.tick(1, 1);
    net.stabilize();
    assert_eq!(net.node(1).lease().map(|l| l.valid_until), Some(3_400));
    // 1 steps down (as on a higher-term message) and votes for 2: its vote
    // carries its own lease, which runs until 3_500 on its clock.
    net.heal();
    net.cut.insert((2, 3));
    net.cut.insert((3, 2));
    set_clocks(&mut net, 2_600);
    let term = net.node(1).term();
    net.node_mut(1).become_follower(term + 1, 0);
    net.node_mut(2).campaign();
    net.stabilize();
    assert_eq!(net.node(2).role(), Role::Leader);
    assert_eq!(waited(&net, 2), Some(900));
}

#[test]
fn a_restarted_voter_assumes_it_acknowledged_a_lease() {
    let mut net = leader_with_lease(2_000);
    net.restart(3);
    net.node_mut(3).set_clock(5_000);
    set_clocks(&mut net, 5_000);
    net.isolate(1);
    net.expire_lease(&[2]);
    net.elect(2);
    // 2's own memory ran out at 3_000; 3 restarted at 5_000 and reports a full
    // lease.
    assert_eq!(waited(&net, 2), Some(LEASE));
}

#[test]
fn leases_are_off_by_default() {
    let mut net = Network::new(3);
    net.node_mut(1).set_clock(10);
    net.elect(1);
    net.stabilize();
    assert_eq!(waited(&net, 1), None);
    assert_eq!(net.node(1).lease(), None);
}

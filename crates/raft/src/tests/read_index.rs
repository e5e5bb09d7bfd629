//! ReadIndex: thesis §6.4.

use super::network::Network;
use crate::{ReadIndexError, ReadState, Role};

#[test]
fn a_node_that_knows_no_leader_refuses_read_index() {
    let mut net = Network::new(3);
    assert_eq!(
        net.node_mut(2).read_index(7),
        Err(ReadIndexError::NotLeader { leader: 0 })
    );
}

#[test]
fn a_follower_read_is_confirmed_by_the_leader() {
    // Follower reads: the follower asks the leader, which confirms leadership with
    // a heartbeat round and answers with its commit index.
    let mut net = Network::new(3);
    net.elect(1);
    net.propose(1, "a");
    net.stabilize();
    let commit = net.node(1).commit_index();
    net.node_mut(2).read_index(7).expect("knows the leader");
    net.stabilize();
    assert_eq!(
        net.read_states[&2],
        vec![ReadState {
            ctx: 7,
            index: commit
        }]
    );
    assert!(
        net.read_states.get(&1).is_none_or(Vec::is_empty),
        "the leader answers the follower, not itself"
    );
}

#[test]
fn a_follower_read_needs_the_leaders_quorum_round() {
    // A leader cut off from everyone but the asking follower cannot confirm: the
    // follower's read must not be answered from a deposed leader's commit index.
    let mut net = Network::new(3);
    net.elect(1);
    net.stabilize();
    net.cut.insert((1, 3));
    net.cut.insert((3, 1));
    net.cut.insert((2, 1));
    net.node_mut(2).read_index(5).expect("knows the leader");
    net.stabilize();
    assert!(net.read_states.get(&2).is_none_or(Vec::is_empty));
    net.cut.remove(&(2, 1));
    net.node_mut(2).read_index(6).expect("knows the leader");
    net.stabilize();
    // 1 and 2 form a quorum: both reads are confirmed by the round.
    let ctxs: Vec<u64> = net.read_states[&2].iter().map(|r| r.ctx).collect();
    assert!(ctxs.contains(&6), "{ctxs:?}");
}

#[test]
fn read_is_confirmed_by_a_quorum_heartbeat_round() {
    // §6.4 steps 2-3: record the commit index, then confirm leadership with a round
    // of heartbeats before answering.
    let mut net = Network::new(3);
    net.elect(1);
    net.propose(1, "a");
    net.stabilize();
    let commit = net.node(1).commit_index();
    net.node_mut(1).read_index(42).expect("leader");
    net.process(1);
    assert!(
        net.read_states.get(&1).is_none_or(Vec::is_empty),
        "not before the round"
    );
    net.stabilize();
    assert_eq!(
        net.read_states[&1],
        vec![ReadState {
            ctx: 42,
            index: commit
        }]
    );
}

#[test]
fn one_round_serves_every_waiting_read() {
    let mut net = Network::new(3);
    net.elect(1);
    for ctx in 1..=50 {
        net.node_mut(1).read_index(ctx).expect("leader");
    }
    let msgs = net.take_queue();
    let heartbeats = msgs
        .iter()
        .filter(|m| matches!(m.body, crate::MessageBody::Heartbeat { .. }))
        .count();
    assert_eq!(heartbeats, 2, "one heartbeat per follower for 50 reads");
    for m in msgs {
        net.deliver(m);
    }
    net.stabilize();
    assert_eq!(net.read_states[&1].len(), 50);
}

#[test]
fn partitioned_leader_cannot_confirm_reads() {
    // The point of the round: a deposed leader that does not know it yet must not
    // answer from stale state.
    let mut net = Network::new(3);
    net.elect(1);
    net.isolate(1);
    net.node_mut(1)
        .read_index(9)
        .expect("still thinks it leads");
    net.stabilize();
    net.expire_lease(&[2, 3]);
    net.elect(2);
    net.propose(2, "newer");
    net.stabilize();
    for _ in 0..5 {
        net.tick(1, 1);
        net.stabilize();
    }
    assert!(net.read_states.get(&1).is_none_or(Vec::is_empty));
}

#[test]
fn read_waits_for_the_first_commit_of_the_term() {
    // §6.4 step 1: a new leader's commit index may lag until its NO-OP commits.
    let mut net = Network::new(3);
    net.node_mut(1).campaign();
    // Run the election but hold back the NO-OP's replication.
    net.process(1);
    for _ in 0..2 {
        // Requests, then answers.
        for m in net.take_queue() {
            net.deliver(m);
        }
    }
    let appends = net.take_queue();
    assert_eq!(net.node(1).role(), Role::Leader);
    assert_eq!(net.node(1).commit_index(), 0);
    net.node_mut(1).read_index(5).expect("leader");
    net.process(1);
    for m in appends {
        net.deliver(m);
    }
    net.stabilize();
    net.tick(1, 1);
    net.stabilize();
    assert_eq!(net.read_states[&1], vec![ReadState { ctx: 5, index: 1 }]);
}

#[test]
fn stepping_down_drops_pending_reads() {
    let mut net = Network::new(3);
    net.elect(1);
    net.isolate(1);
    net.node_mut(1).read_index(1).expect("leader");
    net.tick(1, 25);
    assert_eq!(net.node(1).role(), Role::Follower);
    net.heal();
    net.stabilize();
    assert!(net.read_states.get(&1).is_none_or(Vec::is_empty));
}

#[test]
fn single_voter_confirms_at_once() {
    let mut net = Network::new(1);
    net.tick(1, 20);
    net.node_mut(1).read_index(3).expect("leader");
    net.process(1);
    assert_eq!(net.read_states[&1], vec![ReadState { ctx: 3, index: 1 }]);
}

//! Quiescence (see `quiesce.rs`): a settled, idle leader's last heartbeat stops its
//! followers' election timers; anything that needs the group wakes it.

use super::lease::{DRIFT, LEASE, leader_with_lease, set_clocks, waited};
use super::network::{Network, config};
use crate::{ConfChange, Config, Message, MessageBody, NodeId, QuiesceError, Role, Term};

/// A 3-node group led by 1 that has committed "x" everywhere and then stayed idle
/// for the default three heartbeat intervals (the harness's heartbeat is 1 tick).
fn idle_group() -> Network {
    let mut net = Network::new(3);
    net.elect(1);
    net.propose(1, "x");
    net.stabilize();
    net.run(1, 3);
    net
}

/// [`idle_group`], quiesced, with the mark and its answers delivered.
fn quiesced_group() -> Network {
    let mut net = idle_group();
    net.node_mut(1).quiesce().expect("idle and settled");
    net.stabilize();
    net
}

/// A quiesce mark from `from` to `to` in `term`.
fn mark(from: NodeId, to: NodeId, term: Term) -> Message {
    Message {
        group: 1,
        from,
        to,
        term,
        body: MessageBody::Heartbeat {
            commit: 0,
            read_seq: 0,
            lease: 0,
            quiesce: true,
        },
    }
}

#[test]
fn an_idle_settled_leader_quiesces_and_its_followers_follow() {
    let mut net = idle_group();
    assert!(net.node(1).can_quiesce());
    net.node_mut(1).quiesce().expect("idle and settled");
    let marks = net.take_queue();
    assert_eq!(marks.len(), 2, "one mark per follower");
    assert!(marks.iter().all(|m| matches!(
        m.body,
        MessageBody::Heartbeat {
            quiesce: true,
            lease: 0,
            ..
        }
    )));
    for m in marks {
        net.deliver(m);
    }
    net.stabilize();
    for id in 1..=3 {
        assert!(net.node(id).is_quiesced(), "node {id}");
        assert!(net.node(id).status().quiesced, "node {id}'s status");
    }
    assert!(!net.node(1).can_quiesce(), "already quiet");
    // The answers to the mark did not wake the leader, and it sends nothing more.
    net.tick(1, 100);
    assert!(
        net.take_queue().is_empty(),
        "a quiesced leader stays silent"
    );
    assert_eq!(net.node(1).role(), Role::Leader, "and runs no check-quorum");
}

#[test]
fn the_marks_acknowledgements_do_not_wake_the_leader() {
    let net = quiesced_group();
    assert!(net.node(1).is_quiesced());
}

#[test]
fn the_mark_stops_the_followers_election_timer() {
    let mut net = quiesced_group();
    // Ten times the longest randomized election timeout.
    for _ in 0..200 {
        net.tick(2, 1);
        net.tick(3, 1);
    }
    assert!(net.take_queue().is_empty(), "no campaign, no message");
    for id in 2..=3 {
        assert_eq!(net.node(id).role(), Role::Follower);
        assert_eq!(net.node(id).term(), 1);
        assert_eq!(net.node(id).leader(), 1);
    }
}

#[test]
fn not_before_the_group_was_idle_for_the_configured_intervals() {
    let mut net = Network::new(3);
    net.elect(1);
    net.propose(1, "x");
    net.stabilize();
    net.run(1, 2);
    assert_eq!(
        net.node_mut(1).quiesce(),
        Err(QuiesceError::RecentActivity {
            idle_ticks: 2,
            needed: 3
        })
    );
    net.run(1, 1);
    assert!(net.node(1).can_quiesce());
    // A read is activity too.
    net.node_mut(1).read_index(1).expect("leader");
    net.stabilize();
    assert!(matches!(
        net.node_mut(1).quiesce(),
        Err(QuiesceError::RecentActivity { idle_ticks: 0, .. })
    ));
}

#[test]
fn never_when_switched_off_and_never_on_a_follower() {
    let mut net = Network::with_config(3, |id| Config {
        quiesce_after_heartbeats: 0,
        ..config(id)
    });
    net.elect(1);
    net.run(1, 50);
    assert_eq!(net.node_mut(1).quiesce(), Err(QuiesceError::Disabled));
    assert_eq!(
        net.node_mut(2).quiesce(),
        Err(QuiesceError::NotLeader { leader: 1 })
    );
}

#[test]
fn not_with_a_lagging_follower() {
    let mut net = Network::new(3);
    net.elect(1);
    net.cut.insert((1, 3));
    net.propose(1, "x");
    net.stabilize();
    net.run(1, 5);
    assert_eq!(net.node(1).commit_index(), net.node(1).last_index());
    assert!(matches!(
        net.node_mut(1).quiesce(),
        Err(QuiesceError::PeerBehind { id: 3, .. })
    ));
    // Once it caught up, the group may go quiet.
    net.heal();
    net.run(1, 5);
    assert!(net.node(1).can_quiesce());
}

#[test]
fn not_with_uncommitted_entries() {
    let mut net = Network::new(3);
    net.elect(1);
    net.isolate(1);
    net.propose(1, "x");
    net.run(1, 5);
    assert!(matches!(
        net.node_mut(1).quiesce(),
        Err(QuiesceError::Uncommitted { .. })
    ));
}

#[test]
fn not_with_a_membership_change_in_flight() {
    let mut net = Network::new(3);
    net.elect(1);
    net.isolate(1);
    net.node_mut(1)
        .propose_conf_change(ConfChange::Remove(3))
        .expect("accepted");
    net.run(1, 5);
    assert!(matches!(
        net.node_mut(1).quiesce(),
        Err(QuiesceError::ConfChangePending { .. })
    ));
}

#[test]
fn not_with_reads_waiting_for_confirmation() {
    let mut net = idle_group();
    net.cut.insert((2, 1));
    net.cut.insert((3, 1));
    net.node_mut(1).read_index(7).expect("leader");
    net.run(1, 5);
    assert!(net.read_states.get(&1).is_none_or(|r| r.is_empty()));
    assert_eq!(
        net.node_mut(1).quiesce(),
        Err(QuiesceError::ReadsPending { count: 1 })
    );
}

#[test]
fn not_while_a_snapshot_is_being_sent() {
    let mut net = Network::new(3);
    net.auto_report_snapshots = false;
    net.elect(1);
    net.isolate(3);
    for i in 0..5 {
        net.propose(1, &format!("e{i}"));
    }
    net.stabilize();
    net.settle(1);
    let keep_from = net.node(1).applied_index() + 1;
    net.compact(1, keep_from);
    net.heal();
    // 3 answers a heartbeat, the leader finds its entries compacted away and
    // starts a snapshot, whose transfer never completes.
    for _ in 0..5 {
        net.tick(1, 1);
        while let Some(m) = net.queue.pop_front() {
            if !matches!(m.body, MessageBody::InstallSnapshot { .. }) {
                net.deliver(m);
            }
        }
    }
    assert_eq!(
        net.node_mut(1).quiesce(),
        Err(QuiesceError::SnapshotInFlight { to: 3 })
    );
}

#[test]
fn not_during_a_leadership_transfer() {
    let mut net = idle_group();
    net.cut.insert((1, 2));
    net.node_mut(1).transfer_leader(2).expect("voter");
    net.run(1, 5);
    assert_eq!(
        net.node_mut(1).quiesce(),
        Err(QuiesceError::TransferInProgress { to: 2 })
    );
}

#[test]
fn a_proposal_wakes_the_leader_and_replication_works() {
    let mut net = quiesced_group();
    net.propose(1, "y");
    assert!(!net.node(1).is_quiesced());
    net.stabilize();
    net.run(1, 2);
    for id in 1..=3 {
        assert!(!net.node(id).is_quiesced(), "node {id} woke");
        assert_eq!(net.applied_data(id), vec!["x", "y"], "node {id}");
    }
    // Heartbeats are back.
    net.tick(1, 1);
    assert!(
        net.take_queue()
            .iter()
            .any(|m| matches!(m.body, MessageBody::Heartbeat { quiesce: false, .. }))
    );
    // And the group goes quiet again once idle.
    net.run(1, 3);
    assert!(net.node(1).can_quiesce());
}

#[test]
fn a_follower_receiving_a_message_wakes_and_its_timer_runs_again() {
    let mut net = quiesced_group();
    // A pre-vote from 3 (whatever the reason): 2 refuses it, as it follows a live
    // leader, but wakes.
    let m = Message {
        group: 1,
        from: 3,
        to: 2,
        term: 2,
        body: MessageBody::RequestVote {
            last_log_index: net.node(3).last_index(),
            last_log_term: 1,
            pre_vote: true,
            transfer: false,
        },
    };
    net.node_mut(2).step(m).expect("valid");
    assert!(!net.node(2).is_quiesced());
    net.take_queue();
    net.tick(2, 20);
    assert_eq!(
        net.node(2).role(),
        Role::PreCandidate,
        "timed out: its leader said nothing since"
    );
}

#[test]
fn a_heartbeat_overtaken_by_the_mark_does_not_wake_the_follower() {
    let mut net = idle_group();
    // The last ordinary heartbeat, and the mark right after it.
    net.tick(1, 1);
    let before = net.take_queue();
    net.node_mut(1).quiesce().expect("idle and settled");
    let marks = net.take_queue();
    for m in marks {
        net.deliver(m);
    }
    net.stabilize();
    assert!(net.node(2).is_quiesced());
    for m in before {
        net.deliver(m);
    }
    net.stabilize();
    assert!(net.node(2).is_quiesced(), "old news");
    assert!(net.node(3).is_quiesced(), "old news");
    // A leader that wakes heartbeats in a new round, which does wake them.
    net.node_mut(1).wake();
    net.stabilize();
    assert!(!net.node(2).is_quiesced());
    assert!(!net.node(3).is_quiesced());
}

#[test]
fn a_read_at_a_quiesced_follower_wakes_the_group_and_is_answered() {
    let mut net = quiesced_group();
    net.node_mut(2).read_index(5).expect("knows its leader");
    assert!(!net.node(2).is_quiesced());
    net.stabilize();
    assert!(!net.node(1).is_quiesced(), "the ReadIndex request woke it");
    assert!(net.read_states[&2].iter().any(|r| r.ctx == 5));
}

#[test]
fn a_mark_from_a_term_that_is_over_does_not_quiesce() {
    let mut net = Network::new(3);
    net.elect(1);
    net.expire_lease(&[1, 2, 3]);
    net.elect(2);
    net.expire_lease(&[1, 2, 3]);
    net.elect(1);
    assert_eq!((net.node(3).term(), net.node(3).leader()), (3, 1));
    // 1's mark from term 2, delayed: 3 follows 1, but in term 3.
    net.node_mut(3).step(mark(1, 3, 2)).expect("valid");
    assert!(!net.node(3).is_quiesced());
}

#[test]
fn a_mark_in_a_term_the_follower_has_not_joined_yet_does_not_quiesce() {
    let mut net = Network::new(3);
    net.elect(1);
    // 3 follows 1 in term 1; a mark from 1 in term 2 (1 re-elected meanwhile) is
    // news of a new term, not from the leader 3 follows in its term.
    net.node_mut(3).step(mark(1, 3, 2)).expect("valid");
    assert_eq!((net.node(3).term(), net.node(3).leader()), (2, 1));
    assert!(!net.node(3).is_quiesced());
}

#[test]
fn a_mark_from_a_node_it_does_not_follow_does_not_quiesce() {
    let mut net = Network::new(3);
    net.elect(1);
    net.take_queue();
    // 3 votes for 2 in term 2 and knows no leader in that term yet.
    net.expire_lease(&[3]);
    let vote = Message {
        group: 1,
        from: 2,
        to: 3,
        term: 2,
        body: MessageBody::RequestVote {
            last_log_index: net.node(2).last_index(),
            last_log_term: 1,
            pre_vote: false,
            transfer: false,
        },
    };
    net.node_mut(3).step(vote).expect("valid");
    assert_eq!((net.node(3).term(), net.node(3).leader()), (2, 0));
    net.node_mut(3).step(mark(2, 3, 2)).expect("valid");
    assert_eq!(net.node(3).leader(), 2, "the heartbeat itself is accepted");
    assert!(!net.node(3).is_quiesced());
}

#[test]
fn woken_followers_of_a_live_leader_wake_it_and_nobody_campaigns() {
    let mut net = quiesced_group();
    // Node-level failure detection called leader 1's node silent, but it was
    // only slow: the woken followers ask it to wake.
    net.node_mut(2).wake();
    net.node_mut(3).wake();
    let asks: Vec<NodeId> = net
        .take_queue()
        .into_iter()
        .filter(|m| m.body == MessageBody::WakeLeader)
        .map(|m| {
            assert_eq!(m.to, 1);
            let from = m.from;
            net.deliver(m);
            from
        })
        .collect();
    assert_eq!(asks, vec![2, 3]);
    net.stabilize();
    assert!(!net.node(1).is_quiesced(), "a WakeLeader woke it");
    for _ in 0..25 {
        for id in 1..=3 {
            net.tick(id, 1);
        }
        net.stabilize();
    }
    assert_eq!(net.node(1).role(), Role::Leader);
    assert_eq!(net.node(1).term(), 1, "nobody campaigned");
}

#[test]
fn a_follower_woken_by_a_message_does_not_ask_its_leader() {
    let mut net = quiesced_group();
    net.node_mut(1).wake();
    net.stabilize();
    assert!(!net.node(2).is_quiesced());
    // Awake already: the runtime's wake sends nothing.
    net.node_mut(2).wake();
    assert!(net.take_queue().is_empty());
}

#[test]
fn a_woken_follower_campaigns_after_its_timeout() {
    let mut net = quiesced_group();
    // Leader 1's node goes silent; node-level failure detection wakes the others.
    net.isolate(1);
    net.node_mut(2).wake();
    net.node_mut(3).wake();
    for _ in 0..25 {
        net.tick(2, 1);
        net.tick(3, 1);
        net.stabilize();
    }
    let leaders: Vec<NodeId> = [2, 3]
        .into_iter()
        .filter(|&id| net.node(id).role() == Role::Leader)
        .collect();
    assert_eq!(leaders.len(), 1, "one of them took over");
    assert!(net.node(leaders[0]).term() > 1);
    net.propose(leaders[0], "after");
    net.stabilize();
    net.settle(leaders[0]);
    assert!(net.applied_data(2).contains(&"after".to_string()));
}

#[test]
fn a_lost_mark_leaves_the_follower_awake_and_it_wakes_the_group() {
    let mut net = idle_group();
    net.cut.insert((1, 3));
    net.node_mut(1).quiesce().expect("idle and settled");
    net.stabilize();
    net.heal();
    assert!(net.node(2).is_quiesced());
    assert!(!net.node(3).is_quiesced());
    // 3 times out; its pre-vote wakes the leader, whose heartbeats settle 3.
    for _ in 0..25 {
        net.tick(3, 1);
        net.stabilize();
    }
    assert_eq!(net.node(1).role(), Role::Leader);
    assert_eq!(net.node(1).term(), 1, "nobody was disrupted");
    assert_eq!(net.node(3).leader(), 1);
    assert!(!net.node(1).is_quiesced());
}

#[test]
fn a_quiesced_leader_holds_no_lease_and_a_read_falls_back_to_read_index() {
    let mut net = leader_with_lease(2_000);
    net.run(1, 3);
    assert!(net.node(1).lease().is_some());
    net.node_mut(1).quiesce().expect("idle and settled");
    assert_eq!(net.node(1).lease(), None, "quiescing ends the lease");
    net.stabilize();
    assert!(net.node(1).is_quiesced());
    assert_eq!(
        net.node(1).lease(),
        None,
        "answers to the mark or to earlier rounds bring none back"
    );
    // A lease read finds no lease and asks for a ReadIndex, which wakes it.
    set_clocks(&mut net, 2_100);
    net.node_mut(1).read_index(9).expect("leader");
    assert!(!net.node(1).is_quiesced());
    net.stabilize();
    assert!(net.read_states[&1].iter().any(|r| r.ctx == 9));
    assert_eq!(
        net.node(1).lease().map(|l| l.valid_until),
        Some(2_100 + LEASE - DRIFT),
        "a lease again, from the first round after waking"
    );
}

#[test]
fn a_quiesced_leader_still_hands_its_lease_on() {
    let mut net = leader_with_lease(2_000);
    // Rounds at 2_500 reach only 3: 1's lease runs from 2_500, while 2 last heard a
    // round sent at 2_000 (it remembers until 3_000).
    net.cut.insert((1, 2));
    set_clocks(&mut net, 2_500);
    net.run(1, 3);
    assert_eq!(net.node(1).lease().map(|l| l.valid_until), Some(3_400));
    net.node_mut(1).quiesce().expect("idle and settled");
    net.stabilize();
    // 1 steps down and votes for 2 (3 is cut off from 2): the vote must carry the
    // lease 1 ended when it quiesced, which runs until 3_500 on its clock.
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
fn a_transfer_wakes_the_leader_and_completes() {
    let mut net = quiesced_group();
    net.node_mut(1).transfer_leader(2).expect("voter");
    assert!(!net.node(1).is_quiesced());
    net.stabilize();
    assert_eq!(net.node(2).role(), Role::Leader);
}

#[test]
fn an_overflowing_idle_period_is_refused() {
    let cfg = Config {
        quiesce_after_heartbeats: u32::MAX,
        heartbeat_ticks: 2,
        ..config(1)
    };
    assert!(cfg.validate().is_err());
    assert!(config(1).validate().is_ok());
}

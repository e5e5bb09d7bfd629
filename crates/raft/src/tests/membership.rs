//! Membership changes, one server at a time, with learners: thesis §4.1–4.2.

use bytes::Bytes;

use super::network::{Network, entry};
use crate::{
    ConfChange, ConfChangeError, ConfState, Entry, EntryKind, Event, Message, MessageBody, Role,
};

fn change(net: &mut Network, leader: u64, c: ConfChange) -> u64 {
    let (index, _) = net
        .node_mut(leader)
        .propose_conf_change(c)
        .expect("change accepted");
    net.process(leader);
    index
}

fn conf_entry(index: u64, term: u64, c: ConfChange) -> Entry {
    Entry {
        term,
        index,
        kind: EntryKind::ConfChange,
        data: c.encode(),
    }
}

#[test]
fn learner_receives_the_log_but_never_votes_or_campaigns() {
    // Thesis §4.2.1: a new server joins as a non-voting member until caught up.
    let mut net = Network::new(3);
    net.elect(1);
    net.propose(1, "before");
    net.add_node(4);
    change(&mut net, 1, ConfChange::AddLearner(4));
    net.settle(1);
    assert_eq!(net.applied_data(4), vec!["before"]);
    assert_eq!(net.node(4).conf_state().learners, vec![4]);
    let status = net.node(1).status();
    let p4 = status.peers.iter().find(|p| p.id == 4).expect("tracked");
    assert!(p4.learner);
    assert_eq!(p4.match_index, status.last_index, "caught up: promotable");
    // A learner's election timer never fires an election.
    net.tick(4, 100);
    assert_eq!(net.node(4).role(), Role::Follower);
    // Commitment does not wait for it.
    net.isolate(4);
    let (index, _) = net.propose(1, "without 4");
    net.settle(1);
    assert!(net.node(1).commit_index() >= index);
}

#[test]
fn promoted_learner_counts_toward_quorums() {
    let mut net = Network::new(3);
    net.elect(1);
    net.add_node(4);
    change(&mut net, 1, ConfChange::AddLearner(4));
    net.settle(1);
    change(&mut net, 1, ConfChange::PromoteLearner(4));
    net.settle(1);
    assert_eq!(net.node(1).conf_state().voters, vec![1, 2, 3, 4]);
    assert!(
        net.events_of(1)
            .iter()
            .any(|e| matches!(e, Event::MemberPromoted { id: 4, .. }))
    );
    // With 4 voters, a majority is 3: the leader plus one follower is not enough.
    net.isolate(3);
    net.isolate(4);
    let (index, _) = net.propose(1, "needs three");
    net.settle(1);
    assert!(net.node(1).commit_index() < index);
    net.heal();
    net.settle(1);
    assert!(net.node(1).commit_index() >= index);
}

#[test]
fn only_one_change_may_be_in_flight() {
    // Thesis §4.1: a leader does not start a change until the previous one is
    // committed.
    let mut net = Network::new(3);
    net.elect(1);
    net.settle(1);
    net.isolate(1);
    let first = change(&mut net, 1, ConfChange::AddLearner(4));
    assert_eq!(
        net.node_mut(1)
            .propose_conf_change(ConfChange::AddLearner(5)),
        Err(ConfChangeError::InProgress { index: first })
    );
    assert_eq!(net.node(1).pending_conf_index(), first);
    net.heal();
    net.add_node(4);
    net.settle(1);
    assert_eq!(net.node(1).pending_conf_index(), 0);
    net.node_mut(1)
        .propose_conf_change(ConfChange::AddLearner(5))
        .expect("the first one committed");
}

#[test]
fn invalid_and_no_op_changes_are_refused() {
    let mut net = Network::new(3);
    assert_eq!(
        net.node_mut(1)
            .propose_conf_change(ConfChange::AddLearner(4)),
        Err(ConfChangeError::NotLeader { leader: 0 })
    );
    // Node 1 wins, but its NO-OP has not reached anyone yet.
    net.node_mut(1).campaign();
    for m in net.take_queue() {
        net.deliver(m);
    }
    for m in net.take_queue() {
        if matches!(m.body, MessageBody::RequestVoteResponse { .. }) {
            net.deliver(m);
        }
    }
    assert_eq!(net.node(1).role(), Role::Leader);
    // Thesis §4.1 (the 2015 correction): no change before an entry of the
    // leader's term commits.
    assert_eq!(
        net.node_mut(1)
            .propose_conf_change(ConfChange::AddLearner(4)),
        Err(ConfChangeError::NotCommittedInTerm { term: 1 })
    );
    net.settle(1);
    let n = net.node_mut(1);
    assert_eq!(
        n.propose_conf_change(ConfChange::Remove(9)),
        Err(ConfChangeError::UnknownNode { id: 9 })
    );
    assert_eq!(
        n.propose_conf_change(ConfChange::PromoteLearner(2)),
        Err(ConfChangeError::NotLearner { id: 2 })
    );
    assert_eq!(
        n.propose_conf_change(ConfChange::AddLearner(3)),
        Err(ConfChangeError::AlreadyMember { id: 3 })
    );
    assert_eq!(n.last_index(), 1, "nothing appended");
}

#[test]
fn configuration_takes_effect_when_appended_and_rolls_back_on_truncation() {
    // Thesis §4.1: a server uses the latest configuration in its log, committed
    // or not; when a conflicting leader truncates the entry, the previous
    // configuration applies again.
    let mut net = Network::new(3);
    let f = net.node_mut(3);
    f.step(Message {
        group: 1,
        from: 1,
        to: 3,
        term: 1,
        body: MessageBody::AppendEntries {
            prev_log_index: 0,
            prev_log_term: 0,
            entries: vec![entry(1, 1), conf_entry(2, 1, ConfChange::Remove(2))],
            leader_commit: 1,
        },
    })
    .expect("valid");
    assert_eq!(f.conf_state().voters, vec![1, 3], "in force uncommitted");
    let rd = f.ready();
    assert!(rd.events.iter().any(|e| matches!(
        e,
        Event::ConfChangeAppended {
            index: 2,
            change: ConfChange::Remove(2)
        }
    )));
    assert!(
        !rd.events
            .iter()
            .any(|e| matches!(e, Event::MemberRemoved { .. })),
        "not committed: no removal reported"
    );
    f.advance(rd);
    f.step(Message {
        group: 1,
        from: 2,
        to: 3,
        term: 2,
        body: MessageBody::AppendEntries {
            prev_log_index: 1,
            prev_log_term: 1,
            entries: vec![entry(2, 2)],
            leader_commit: 1,
        },
    })
    .expect("valid");
    assert_eq!(f.conf_state().voters, vec![1, 2, 3], "rolled back");
    f.validate();
    let rd = f.ready();
    f.advance(rd);
}

#[test]
fn removed_leader_steps_down_once_the_change_commits() {
    // Thesis §4.2.2: the leader manages the cluster until the change that removes
    // it commits, without counting itself, then steps down.
    let mut net = Network::new(3);
    net.elect(1);
    net.settle(1);
    net.isolate(2);
    let index = change(&mut net, 1, ConfChange::Remove(1));
    assert_eq!(net.node(1).role(), Role::Leader);
    net.settle(1);
    // Voters are {2, 3}: node 3 alone (the leader does not count) is not enough.
    assert!(net.node(1).commit_index() < index);
    assert_eq!(net.node(1).role(), Role::Leader);
    net.heal();
    net.settle(1);
    assert_eq!(net.node(1).role(), Role::Follower);
    assert!(
        net.events_of(1)
            .iter()
            .any(|e| matches!(e, Event::SteppedDownRemoved { .. }))
    );
    assert!(
        net.events_of(1)
            .iter()
            .any(|e| matches!(e, Event::MemberRemoved { id: 1, .. }))
    );
    // The removed node never campaigns again; the rest elect a leader.
    net.tick(1, 100);
    assert_eq!(net.node(1).role(), Role::Follower);
    net.expire_lease(&[2, 3]);
    net.elect(2);
    net.propose(2, "after");
    net.settle(2);
    assert_eq!(
        net.applied_data(3).last().map(String::as_str),
        Some("after")
    );
}

#[test]
fn removed_node_cannot_disrupt_the_cluster() {
    // Thesis §4.2.3: a removed server that times out sends vote requests with a
    // higher term; voters that hear from a current leader ignore them.
    let mut net = Network::with_config(3, |id| crate::Config {
        pre_vote: false,
        ..super::network::config(id)
    });
    net.elect(1);
    net.settle(1);
    net.isolate(3);
    change(&mut net, 1, ConfChange::Remove(3));
    net.settle(1);
    net.heal();
    // Node 3 never learned it was removed: it campaigns.
    net.node_mut(3).campaign();
    net.stabilize();
    assert_eq!(net.node(1).role(), Role::Leader);
    assert_eq!(net.node(1).term(), 1, "its higher term was ignored");
    assert_eq!(net.node(3).role(), Role::Candidate);
}

#[test]
fn restart_rebuilds_the_configuration_from_the_log() {
    let mut net = Network::new(3);
    net.elect(1);
    net.add_node(4);
    change(&mut net, 1, ConfChange::AddLearner(4));
    net.settle(1);
    change(&mut net, 1, ConfChange::PromoteLearner(4));
    net.settle(1);
    for id in [2, 4] {
        net.restart(id);
        assert_eq!(
            net.node(id).conf_state().voters,
            vec![1, 2, 3, 4],
            "node {id}"
        );
    }
    // And from a snapshot taken after the changes.
    net.settle(1);
    net.compact(2, u64::MAX);
    let meta = net.node(2).snapshot().clone();
    assert_eq!(meta.conf.voters, vec![1, 2, 3, 4]);
    net.disks.get_mut(&2).expect("disk").snapshot = Some(meta);
    net.disks.get_mut(&2).expect("disk").entries.clear();
    net.restart(2);
    assert_eq!(net.node(2).conf_state().voters, vec![1, 2, 3, 4]);
}

#[test]
fn garbage_in_a_conf_change_entry_changes_nothing() {
    let mut net = Network::new(3);
    let f = net.node_mut(2);
    f.step(Message {
        group: 1,
        from: 1,
        to: 2,
        term: 1,
        body: MessageBody::AppendEntries {
            prev_log_index: 0,
            prev_log_term: 0,
            entries: vec![Entry {
                term: 1,
                index: 1,
                kind: EntryKind::ConfChange,
                data: Bytes::from_static(b"\xff\x00junk"),
            }],
            leader_commit: 0,
        },
    })
    .expect("valid");
    assert_eq!(f.conf_state(), ConfState::with_voters([1, 2, 3]));
    let rd = f.ready();
    f.advance(rd);
}

#[test]
fn status_exposes_recent_activity_for_quorum_checks() {
    let mut net = Network::new(3);
    net.elect(1);
    net.settle(1);
    assert_eq!(net.node(1).recently_active_voters(), vec![1, 2, 3]);
    assert!(net.node(1).change_keeps_quorum(ConfChange::Remove(3)));
    net.isolate(3);
    net.isolate(2);
    // Two check-quorum rounds without answers: both look inactive (and the
    // leader steps down, with check-quorum on).
    for _ in 0..25 {
        net.tick(1, 1);
        net.stabilize();
    }
    assert!(net.node(1).recently_active_voters().is_empty() || net.node(1).role() != Role::Leader);
    let mut net = Network::with_config(3, |id| crate::Config {
        check_quorum: false,
        ..super::network::config(id)
    });
    net.elect(1);
    net.settle(1);
    net.isolate(3);
    for _ in 0..25 {
        net.tick(1, 1);
        net.stabilize();
    }
    assert_eq!(net.node(1).recently_active_voters(), vec![1, 2]);
    assert!(
        !net.node(1).change_keeps_quorum(ConfChange::Remove(2)),
        "only 1 of the remaining {{1, 3}} is reachable"
    );
    assert!(net.node(1).change_keeps_quorum(ConfChange::Remove(3)));
}

#[test]
fn node_removed_by_an_uncommitted_change_may_still_be_elected() {
    // Thesis §4.2.2: a server not in its latest configuration may still have to
    // lead (here its log is the most up to date); it wins with a majority of the
    // new configuration, not counting itself, and steps down once the removal
    // commits. A node whose removal is committed never campaigns.
    let mut net = Network::new(3);
    net.elect(1);
    net.settle(1);
    net.isolate(3);
    let index = change(&mut net, 1, ConfChange::Remove(1));
    net.settle(1);
    assert!(net.node(1).commit_index() < index, "needs node 3");
    net.restart(1);
    assert_eq!(net.node(1).conf_state().voters, vec![2, 3]);
    net.heal();
    net.expire_lease(&[2, 3]);
    net.node_mut(1).campaign();
    net.stabilize();
    assert!(
        net.events_of(1)
            .iter()
            .any(|e| matches!(e, Event::BecameLeader { term: 2 })),
        "{:?}",
        net.events_of(1)
    );
    net.settle(1);
    assert_eq!(net.node(1).role(), Role::Follower);
    assert!(net.node(1).commit_index() >= index, "the removal committed");
    net.node_mut(1).campaign();
    assert_eq!(net.node(1).role(), Role::Follower, "removal committed");
}

//! Asynchronous persistence (the `advance_async` / `on_persisted` form of the
//! Ready contract): thesis §10.2.1 lets the leader replicate while its own write
//! is in flight, and a majority of durable copies commits an entry whichever nodes
//! hold them.

use bytes::Bytes;

use super::network::{Network, entry};
use crate::{Message, MessageBody};

#[test]
fn leader_commits_on_followers_while_its_own_write_is_in_flight() {
    let mut net = Network::new(3);
    net.elect(1);
    net.async_nodes.insert(1);
    let (index, _) = net.propose(1, "x");
    assert!(
        net.node(1).status().persisted < index,
        "the leader's write is in flight"
    );
    net.stabilize();
    // Both followers stored it durably: a majority, so it is committed...
    assert_eq!(net.node(1).commit_index(), index);
    // ...but the leader applies only what is durable locally.
    assert!(net.applied_data(1).is_empty());
    net.persist(1);
    assert_eq!(net.applied_data(1), vec!["x"]);
}

#[test]
fn acknowledgements_wait_for_the_write_they_promise() {
    let mut net = Network::new(3);
    net.elect(1);
    net.async_nodes.insert(2);
    net.propose(1, "x");
    let appends: Vec<Message> = net.take_queue();
    for m in appends.into_iter().filter(|m| m.to == 2) {
        net.deliver(m);
    }
    let early: Vec<Message> = net.take_queue();
    assert!(
        early.iter().all(|m| !matches!(
            m.body,
            MessageBody::AppendEntriesResponse { reject: false, .. }
        )),
        "acknowledged before durable: {early:?}"
    );
    net.persist(2);
    let late = net.take_queue();
    assert!(late.iter().any(|m| matches!(
        m.body,
        MessageBody::AppendEntriesResponse { reject: false, .. }
    )));
}

#[test]
fn the_core_keeps_working_while_writes_are_in_flight() {
    let mut net = Network::new(3);
    net.elect(1);
    for id in 1..=3 {
        net.async_nodes.insert(id);
    }
    for i in 0..20 {
        net.node_mut(1)
            .propose(Bytes::from(format!("v{i}")))
            .expect("leader");
        net.process(1);
        // Deliver without persisting anywhere: nothing may commit.
        for m in net.take_queue() {
            net.deliver(m);
        }
    }
    assert_eq!(
        net.node(1).commit_index(),
        1,
        "only the NO-OP, persisted before"
    );
    for id in [2, 3] {
        net.persist(id);
    }
    net.stabilize();
    assert_eq!(
        net.node(1).commit_index(),
        21,
        "a majority of followers made it durable"
    );
    net.persist(1);
    net.tick(1, 1);
    for _ in 0..3 {
        for id in 1..=3 {
            net.persist(id);
        }
        net.stabilize();
    }
    let want: Vec<String> = (0..20).map(|i| format!("v{i}")).collect();
    for id in 1..=3 {
        assert_eq!(net.applied_data(id), want, "node {id}");
    }
}

/// An AppendEntries to node 2 from `leader`, the leader of `term`.
fn append(leader: u64, term: u64, prev: (u64, u64), entries: Vec<crate::Entry>) -> Message {
    Message {
        group: 1,
        from: leader,
        to: 2,
        term,
        body: MessageBody::AppendEntries {
            prev_log_index: prev.0,
            prev_log_term: prev.1,
            entries,
            // Low enough that the later appends may rewrite entries 2 and 3.
            leader_commit: 1,
        },
    }
}

fn lone_follower() -> crate::Raft {
    let init = crate::InitialState {
        conf: crate::ConfState::with_voters([1, 2, 3, 4, 5]),
        ..Default::default()
    };
    crate::Raft::new(super::network::config(2), init, 1).expect("valid")
}

#[test]
fn a_report_for_a_replaced_write_does_not_make_its_replacement_durable() {
    // Found by keel-sim: write A = 1..=3@2 is in flight when B = 2@3 cuts the log
    // back and C = 2..=3@2 rewrites it to the same (index, term) as before. A's
    // fsync completing says nothing about B and C: entries 2 and 3 must not count
    // as durable (nor be applied) until C is.
    let mut core = lone_follower();
    let hand_over = |core: &mut crate::Raft| {
        let rd = core.ready();
        let n = rd.number;
        core.advance_async(rd);
        n
    };
    core.step(append(
        1,
        2,
        (0, 0),
        vec![entry(1, 2), entry(2, 2), entry(3, 2)],
    ))
    .expect("valid");
    let a = hand_over(&mut core);
    core.step(append(3, 3, (1, 2), vec![entry(2, 3)]))
        .expect("valid");
    let _b = hand_over(&mut core);
    core.step(append(4, 4, (1, 2), vec![entry(2, 2), entry(3, 2)]))
        .expect("valid");
    let c = hand_over(&mut core);
    assert_eq!(
        core.log_term(2),
        Some(2),
        "C rewrote entry 2 back to term 2"
    );
    core.on_persisted(a);
    assert_eq!(
        core.status().persisted,
        1,
        "only entry 1 is durable in the current log"
    );
    let rd = core.ready();
    assert!(
        rd.committed_entries.iter().all(|e| e.index <= 1),
        "{:?}",
        rd.committed_entries
    );
    core.advance_async(rd);
    core.on_persisted(c);
    assert_eq!(core.status().persisted, 3);
}

#[test]
fn a_single_voter_leads_only_once_its_term_is_durable() {
    // Found by keel-sim: a lone voter that counted its own vote before its new term
    // was durable could lead, crash, and lead the same term again with different
    // entries.
    let init = crate::InitialState {
        conf: crate::ConfState::with_voters([1]),
        ..Default::default()
    };
    let mut core = crate::Raft::new(super::network::config(1), init, 7).expect("valid");
    core.campaign();
    let rd = core.ready();
    let n = rd.number;
    assert!(
        rd.hard_state.is_some_and(|hs| hs.vote == 1),
        "the term and vote to persist"
    );
    core.advance_async(rd);
    assert_eq!(
        core.role(),
        crate::Role::Candidate,
        "not leader before the vote is durable"
    );
    assert!(core.propose(Bytes::from_static(b"x")).is_err());
    core.on_persisted(n);
    assert_eq!(core.role(), crate::Role::Leader);
}

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

#[test]
fn a_stale_persistence_report_is_ignored() {
    // An entry replaced while its write was in flight must not count as durable.
    let mut net = Network::new(3);
    net.elect(1);
    net.async_nodes.insert(3);
    let term = net.node(1).term();
    let m = |entries, prev| Message {
        group: 1,
        from: 1,
        to: 3,
        term,
        body: MessageBody::AppendEntries {
            prev_log_index: prev,
            prev_log_term: term,
            entries,
            leader_commit: 1,
        },
    };
    let _ = net.take_queue();
    net.node_mut(3)
        .step(m(vec![entry(2, term)], 1))
        .expect("valid");
    net.process(3);
    let before = net.node(3).status().persisted;
    net.node_mut(3).on_persisted(2, term + 7);
    assert_eq!(
        net.node(3).status().persisted,
        before,
        "wrong term: ignored"
    );
    net.persist(3);
    assert_eq!(net.node(3).status().persisted, 2);
}

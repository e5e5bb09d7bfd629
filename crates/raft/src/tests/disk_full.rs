//! A node whose disk is full (`disk.rs`): keel's rule, outside the papers. It takes
//! no new entries and never acknowledges what it did not persist (Raft Figure 2's
//! "respond after storing" still holds), but keeps answering what needs no write.

use bytes::Bytes;

use super::network::Network;
use crate::{ConfChange, ConfChangeError, MessageBody, ProposeError, Role};

#[test]
fn a_full_leader_refuses_new_entries_but_still_confirms_reads() {
    let mut net = Network::new(3);
    net.elect(1);
    net.settle(1);
    net.node_mut(1).set_disk_full(true);
    assert!(net.node(1).disk_full());
    assert_eq!(
        net.node_mut(1).propose(Bytes::from_static(b"x")),
        Err(ProposeError::DiskFull)
    );
    assert_eq!(
        net.node_mut(1)
            .propose_conf_change(ConfChange::AddLearner(4)),
        Err(ConfChangeError::Propose(ProposeError::DiskFull))
    );
    let last = net.node(1).last_index();
    // ReadIndex needs no write: a quorum's heartbeat answers confirm it.
    net.node_mut(1).read_index(42).expect("read index accepted");
    net.settle(1);
    assert!(
        net.read_states[&1].iter().any(|rs| rs.ctx == 42),
        "the read was confirmed"
    );
    assert_eq!(net.node(1).last_index(), last, "nothing was appended");
    assert_eq!(net.node(1).role(), Role::Leader);
    // Space returns: proposals are taken again.
    net.node_mut(1).set_disk_full(false);
    let (index, _) = net.propose(1, "after");
    net.settle(1);
    assert!(net.node(1).commit_index() >= index);
    assert!(net.node(3).commit_index() >= index);
}

#[test]
fn a_full_follower_acknowledges_nothing_new_and_catches_up_when_space_returns() {
    let mut net = Network::new(3);
    net.elect(1);
    net.settle(1);
    let before = net.node(3).last_index();
    net.node_mut(3).set_disk_full(true);
    let (index, _) = net.propose(1, "a");
    let out = net.take_queue();
    for m in out {
        net.deliver(m);
    }
    // Node 3 answered nothing about the new entry...
    let from_3: Vec<_> = net
        .take_queue()
        .into_iter()
        .filter(|m| m.from == 3)
        .collect();
    assert!(
        !from_3.iter().any(|m| matches!(
            m.body,
            MessageBody::AppendEntriesResponse { index: i, reject: false, .. } if i >= index
        )),
        "{from_3:?}"
    );
    net.settle(1);
    // ...the other follower is enough to commit it...
    assert!(net.node(1).commit_index() >= index);
    assert_eq!(net.node(3).last_index(), before, "nothing new stored");
    assert!(net.node(3).commit_index() < index);
    let match_3 = net
        .node(1)
        .status()
        .peers
        .iter()
        .find(|p| p.id == 3)
        .map(|p| p.match_index);
    assert!(match_3 < Some(index), "the leader knows node 3 is behind");
    // ...and node 3 still follows: heartbeats keep it from campaigning.
    net.run(1, 15);
    assert_eq!(net.node(3).role(), Role::Follower);
    assert_eq!(net.node(1).role(), Role::Leader);
    // Space returns: the leader's next rounds catch it up.
    net.node_mut(3).set_disk_full(false);
    net.run(1, 9);
    assert_eq!(net.node(3).last_index(), net.node(1).last_index());
    assert_eq!(net.applied_data(3), net.applied_data(1));
}

#[test]
fn a_leader_with_all_followers_full_keeps_its_quorum_but_commits_nothing_new() {
    let mut net = Network::new(3);
    net.elect(1);
    net.settle(1);
    net.node_mut(2).set_disk_full(true);
    net.node_mut(3).set_disk_full(true);
    let (index, _) = net.propose(1, "stuck");
    // Several election timeouts: check-quorum counts heartbeat answers.
    net.run(1, 40);
    assert_eq!(net.node(1).role(), Role::Leader);
    assert!(net.node(1).commit_index() < index, "no follower stored it");
    net.node_mut(2).set_disk_full(false);
    net.settle(1);
    assert!(net.node(1).commit_index() >= index);
}

#[test]
fn a_full_node_neither_campaigns_nor_takes_over_on_request() {
    let mut net = Network::new(3);
    net.elect(1);
    net.settle(1);
    net.node_mut(2).set_disk_full(true);
    // A transfer to it: TimeoutNow is ignored, and the transfer aborts.
    net.node_mut(1).transfer_leader(2).expect("valid target");
    net.stabilize();
    assert_eq!(net.node(2).role(), Role::Follower);
    assert_eq!(net.node(1).role(), Role::Leader);
    net.run(1, 12);
    assert_eq!(net.node(1).lead_transferee(), 0, "the transfer aborted");
    // The leader disappears: the full node does not campaign, the other does.
    net.isolate(1);
    let term = net.node(2).term();
    net.run(2, 40);
    assert_eq!(net.node(2).role(), Role::Follower);
    assert_eq!(net.node(2).term(), term);
    for _ in 0..40 {
        net.tick(3, 1);
        net.stabilize();
        if net.node(3).role() == Role::Leader {
            break;
        }
    }
    assert_eq!(net.node(3).role(), Role::Leader, "the node with room leads");
}

#[test]
fn full_followers_still_take_a_new_leaders_noop_so_it_can_serve_reads() {
    // Thesis §6.4: a new leader serves reads only once an entry of its term is
    // committed. Its NO-OP carries no client data, so full followers take it.
    let mut net = Network::new(3);
    net.elect(1);
    net.settle(1);
    for id in 1..=3 {
        net.node_mut(id).set_disk_full(true);
    }
    // A full node does not campaign on its own; force one (as a transfer
    // started just before its disk filled up would).
    net.expire_lease(&[1, 3]);
    net.elect(2);
    net.settle(2);
    let term = net.node(2).term();
    let last = net.node(2).last_index();
    assert_eq!(net.node(2).log_term(last), Some(term), "its NO-OP");
    assert!(net.node(2).commit_index() >= last, "the NO-OP committed");
    assert_eq!(net.node(3).last_index(), last);
    net.node_mut(2).read_index(7).expect("read index accepted");
    net.settle(2);
    assert!(net.read_states[&2].iter().any(|rs| rs.ctx == 7));
    // Client data is still refused everywhere.
    assert_eq!(
        net.node_mut(2).propose(Bytes::from_static(b"x")),
        Err(ProposeError::DiskFull)
    );
}

//! Leadership transfer: thesis §3.10.

use super::network::Network;
use crate::{Event, MessageBody, ProposeError, Role, TransferError};

#[test]
fn transfer_to_an_up_to_date_voter_hands_over_at_once() {
    let mut net = Network::new(3);
    net.elect(1);
    net.settle(1);
    net.node_mut(1).transfer_leader(2).expect("valid target");
    net.stabilize();
    // The target campaigned without waiting for a timeout, and the voters, who
    // heard from the leader a moment ago, still voted (the transfer flag).
    assert_eq!(net.node(2).role(), Role::Leader);
    assert_eq!(net.node(2).term(), 2);
    assert_eq!(net.node(1).role(), Role::Follower);
    assert_eq!(net.node(1).lead_transferee(), 0);
}

#[test]
fn lagging_target_is_caught_up_first() {
    // §3.10 step 2: the leader brings the target's log up to date first.
    let mut net = Network::new(3);
    net.elect(1);
    net.isolate(3);
    for i in 0..5 {
        net.propose(1, &format!("v{i}"));
    }
    net.settle(1);
    net.heal();
    net.node_mut(1).transfer_leader(3).expect("valid target");
    let out = net.take_queue();
    assert!(
        out.iter()
            .all(|m| !matches!(m.body, MessageBody::TimeoutNow)),
        "not before it is caught up"
    );
    for m in out {
        net.deliver(m);
    }
    net.settle(1);
    assert_eq!(net.node(3).role(), Role::Leader);
    assert!(net.node(3).last_index() >= 7);
}

#[test]
fn proposals_are_refused_during_a_transfer_and_it_aborts_after_a_timeout() {
    // §3.10: the leader stops accepting client requests while transferring; if
    // the transfer does not complete within an election timeout, it aborts and
    // resumes accepting them.
    let mut net = Network::new(3);
    net.elect(1);
    net.settle(1);
    net.isolate(2);
    net.node_mut(1).transfer_leader(2).expect("valid target");
    assert_eq!(
        net.node_mut(1).propose(bytes::Bytes::from_static(b"x")),
        Err(ProposeError::TransferInProgress { to: 2 })
    );
    net.tick(1, 9);
    assert_eq!(net.node(1).lead_transferee(), 2);
    net.tick(1, 1);
    assert_eq!(net.node(1).lead_transferee(), 0);
    assert!(
        net.events_of(1)
            .iter()
            .any(|e| matches!(e, Event::TransferAborted { to: 2, .. }))
    );
    net.propose(1, "accepted again");
}

#[test]
fn transfer_to_a_learner_unknown_node_or_self_is_refused() {
    let mut net = Network::new(3);
    assert_eq!(
        net.node_mut(1).transfer_leader(2),
        Err(TransferError::NotLeader { leader: 0 })
    );
    net.elect(1);
    net.settle(1);
    net.add_node(4);
    net.node_mut(1)
        .propose_conf_change(crate::ConfChange::AddLearner(4))
        .expect("accepted");
    net.process(1);
    let n = net.node_mut(1);
    assert_eq!(n.transfer_leader(1), Err(TransferError::ToSelf { id: 1 }));
    assert_eq!(n.transfer_leader(4), Err(TransferError::NotVoter { id: 4 }));
    assert_eq!(n.transfer_leader(9), Err(TransferError::NotVoter { id: 9 }));
}

#[test]
fn without_the_transfer_flag_voters_in_lease_refuse() {
    // The contrast that makes the flag necessary (thesis §4.2.3 vs §3.10): a plain
    // campaign by the same node, with the leader alive, gets no votes.
    let mut net = Network::with_config(3, |id| crate::Config {
        pre_vote: false,
        ..super::network::config(id)
    });
    net.elect(1);
    net.settle(1);
    net.node_mut(2).campaign();
    net.stabilize();
    assert_ne!(net.node(2).role(), Role::Leader);
    assert_eq!(net.node(1).role(), Role::Leader);
}

#[test]
fn a_learner_ignores_timeout_now() {
    let mut net = Network::new(3);
    net.elect(1);
    net.settle(1);
    net.add_node(4);
    net.node_mut(1)
        .propose_conf_change(crate::ConfChange::AddLearner(4))
        .expect("accepted");
    net.settle(1);
    let term = net.node(1).term();
    net.node_mut(4)
        .step(crate::Message {
            group: 1,
            from: 1,
            to: 4,
            term,
            body: MessageBody::TimeoutNow,
        })
        .expect("valid");
    assert_eq!(net.node(4).role(), Role::Follower);
    assert_eq!(net.node(4).term(), term);
}

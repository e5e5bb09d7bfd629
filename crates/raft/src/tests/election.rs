//! Elections: Raft §5.1, §5.2, §5.4.1; thesis §4.2.3, §6.2, §9.6.

use super::network::{Network, config, entry};
use crate::{ConfState, Event, HardState, InitialState, Message, MessageBody, Raft, Role};

fn vote_request(
    from: u64,
    to: u64,
    term: u64,
    last_index: u64,
    last_term: u64,
    pre_vote: bool,
) -> Message {
    Message {
        group: 1,
        from,
        to,
        term,
        body: MessageBody::RequestVote {
            last_log_index: last_index,
            last_log_term: last_term,
            pre_vote,
            transfer: false,
        },
    }
}

fn granted(msgs: &[Message], to: u64) -> Option<bool> {
    msgs.iter().find_map(|m| match m.body {
        MessageBody::RequestVoteResponse { granted, .. } if m.to == to => Some(granted),
        _ => None,
    })
}

#[test]
fn follower_campaigns_after_randomized_timeout() {
    // §5.2: a follower that hears nothing for an election timeout becomes candidate.
    let mut net = Network::with_config(3, |id| crate::Config {
        pre_vote: false,
        ..config(id)
    });
    let timeout = net.node(1).randomized_election_timeout;
    net.tick(1, timeout - 1);
    assert_eq!(net.node(1).role(), Role::Follower);
    net.tick(1, 1);
    assert_eq!(net.node(1).role(), Role::Candidate);
    assert_eq!(
        net.node(1).term(),
        1,
        "§5.2: the candidate increments its term"
    );
    assert_eq!(net.node(1).vote, 1, "§5.2: and votes for itself");
}

#[test]
fn election_timeouts_are_randomized_within_bounds() {
    // §5.2: randomized timeouts in [election_ticks, 2 * election_ticks).
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..200 {
        let init = InitialState {
            conf: ConfState::with_voters([1, 2, 3]),
            ..InitialState::default()
        };
        let mut r = Raft::new(config(1), init, seed).expect("valid");
        for _ in 0..5 {
            r.reset_election_timeout();
            let t = r.randomized_election_timeout;
            assert!((10..20).contains(&t), "timeout {t} out of range");
            seen.insert(t);
        }
    }
    assert!(seen.len() > 5, "timeouts are not spread: {seen:?}");
}

#[test]
fn candidate_with_majority_becomes_leader_and_appends_noop() {
    // §5.2: a candidate that wins a majority becomes leader; §5.4.2/§8: it appends a
    // NO-OP of its term, which commits.
    let mut net = Network::new(3);
    net.elect(1);
    // Followers learn the commit index with the next message, at the latest on
    // the next tick.
    net.tick(1, 1);
    net.stabilize();
    let leader = net.node(1);
    assert_eq!(leader.term(), 1);
    assert_eq!(leader.last_index(), 1);
    assert_eq!(leader.commit_index(), 1);
    for id in 2..=3 {
        assert_eq!(net.node(id).leader(), 1);
        assert_eq!(net.node(id).commit_index(), 1, "followers learn the commit");
    }
    let events = &net.events[&1];
    assert!(events.contains(&Event::BecameLeader { term: 1 }));
}

#[test]
fn vote_is_granted_at_most_once_per_term() {
    // §5.2: each server votes for at most one candidate in a given term.
    let mut net = Network::new(3);
    net.node_mut(3)
        .step(vote_request(1, 3, 1, 0, 0, false))
        .expect("valid");
    net.node_mut(3)
        .step(vote_request(2, 3, 1, 0, 0, false))
        .expect("valid");
    let msgs = net.take_queue();
    assert_eq!(granted(&msgs, 1), Some(true));
    assert_eq!(granted(&msgs, 2), Some(false));
    // Asking again (a retransmission) by the same candidate is granted again.
    net.node_mut(3)
        .step(vote_request(1, 3, 1, 0, 0, false))
        .expect("valid");
    assert_eq!(granted(&net.take_queue(), 1), Some(true));
}

#[test]
fn vote_is_durable_before_the_response_leaves() {
    // Figure 2: persist currentTerm and votedFor before responding to RPCs.
    let mut net = Network::new(3);
    net.node_mut(2)
        .step(vote_request(1, 2, 1, 0, 0, false))
        .expect("valid");
    let rd = net.node_mut(2).ready();
    assert!(
        rd.messages
            .iter()
            .all(|m| !matches!(m.body, MessageBody::RequestVoteResponse { .. }))
    );
    assert!(rd.persisted_messages.iter().any(|m| matches!(
        m.body,
        MessageBody::RequestVoteResponse { granted: true, .. }
    )));
    assert_eq!(rd.hard_state.map(|h| (h.term, h.vote)), Some((1, 1)));
    net.node_mut(2).advance(rd);
}

#[test]
fn vote_denied_to_candidate_with_stale_log() {
    // §5.4.1: deny if the candidate's log is less up to date than ours.
    let init = InitialState {
        hard_state: HardState {
            term: 2,
            vote: 0,
            commit: 0,
        },
        conf: ConfState::with_voters([1, 2, 3]),
        entries: vec![entry(1, 1), entry(2, 2)],
        ..InitialState::default()
    };
    let mut r = Raft::new(config(3), init, 1).expect("valid");
    r.step(vote_request(1, 3, 3, 5, 1, false)).expect("valid");
    let rd = r.ready();
    let all: Vec<Message> = rd
        .messages
        .iter()
        .chain(&rd.persisted_messages)
        .cloned()
        .collect();
    assert_eq!(
        granted(&all, 1),
        Some(false),
        "lower last term loses despite longer log"
    );
    assert_eq!(r.term(), 3, "§5.1: the higher term is still adopted");
    r.advance(rd);
    r.step(vote_request(2, 3, 3, 2, 2, false)).expect("valid");
    let rd = r.ready();
    let all: Vec<Message> = rd
        .messages
        .iter()
        .chain(&rd.persisted_messages)
        .cloned()
        .collect();
    assert_eq!(granted(&all, 2), Some(true), "equal log is up to date");
    r.advance(rd);
}

#[test]
fn higher_term_makes_leader_step_down() {
    // §5.1: a server that sees a higher term reverts to follower.
    let mut net = Network::new(3);
    net.elect(1);
    let m = Message {
        group: 1,
        from: 2,
        to: 1,
        term: 5,
        body: MessageBody::AppendEntriesResponse {
            index: 0,
            reject: true,
            hint_index: 0,
            hint_term: 0,
        },
    };
    net.node_mut(1).step(m).expect("valid");
    assert_eq!(net.node(1).role(), Role::Follower);
    assert_eq!(net.node(1).term(), 5);
    assert_eq!(net.node(1).vote, 0, "a new term clears the vote");
}

#[test]
fn stale_term_append_is_rejected_with_current_term() {
    // §5.1: a request with a stale term is rejected; the reply carries our term so
    // the stale leader steps down.
    let mut net = Network::new(3);
    net.elect(1);
    net.expire_lease(&[2, 3]);
    net.elect(2);
    assert_eq!(net.node(2).term(), 2);
    let m = Message {
        group: 1,
        from: 1,
        to: 3,
        term: 1,
        body: MessageBody::AppendEntries {
            prev_log_index: 1,
            prev_log_term: 1,
            entries: vec![entry(2, 1)],
            leader_commit: 1,
        },
    };
    net.node_mut(3).step(m).expect("valid");
    let msgs = net.take_queue();
    let reply = msgs.iter().find(|m| m.to == 1).expect("a reply");
    assert_eq!(reply.term, 2);
    assert_eq!(net.node(3).last_index(), 2, "nothing was appended");
}

#[test]
fn split_vote_is_retried_in_a_later_term() {
    // §5.2: with split votes, candidates time out and start new elections.
    let mut net = Network::with_config(3, |id| crate::Config {
        pre_vote: false,
        ..config(id)
    });
    net.isolate(3);
    net.node_mut(1).campaign();
    net.node_mut(2).campaign();
    net.stabilize();
    assert_ne!(net.node(1).role(), Role::Leader);
    assert_ne!(net.node(2).role(), Role::Leader);
    net.heal();
    for _ in 0..100 {
        for id in 1..=3 {
            net.tick(id, 1);
        }
        net.stabilize();
        if (1..=3).any(|id| net.node(id).role() == Role::Leader) {
            break;
        }
    }
    let leaders = (1..=3)
        .filter(|&id| net.node(id).role() == Role::Leader)
        .count();
    assert_eq!(leaders, 1);
    assert!(net.node(1).term() >= 2);
}

#[test]
fn pre_vote_does_not_raise_terms() {
    // Thesis §9.6: a node cut off from the cluster keeps failing its pre-vote and so
    // never raises its term; when it returns it cannot depose the leader.
    let mut net = Network::new(3);
    net.elect(1);
    net.isolate(3);
    for _ in 0..10 {
        net.tick(3, 20);
        net.stabilize();
    }
    assert_eq!(net.node(3).term(), 1, "pre-vote kept the term");
    assert_eq!(net.node(3).role(), Role::PreCandidate);
    net.heal();
    for _ in 0..3 {
        net.tick(1, 1);
        net.stabilize();
    }
    assert_eq!(
        net.node(1).role(),
        Role::Leader,
        "the leader was not disrupted"
    );
    assert_eq!(net.node(1).term(), 1);
    assert_eq!(net.node(3).leader(), 1);
}

#[test]
fn without_pre_vote_a_returning_node_disrupts() {
    // The counterpart of the test above, showing what pre-vote prevents: the same
    // schedule without it raises the term and deposes the leader.
    let mut net = Network::with_config(3, |id| crate::Config {
        pre_vote: false,
        check_quorum: false,
        ..config(id)
    });
    net.elect(1);
    net.isolate(3);
    net.tick(3, 20);
    net.stabilize();
    assert_eq!(net.node(3).term(), 2);
    net.heal();
    net.tick(3, 40);
    net.stabilize();
    assert!(
        net.node(1).term() >= 3,
        "the leader was deposed by a higher term"
    );
}

#[test]
fn voters_in_leader_lease_ignore_vote_requests() {
    // Thesis §4.2.3: a server that heard from a leader within the minimum election
    // timeout does not grant votes (nor adopt the term), so a removed or flaky node
    // cannot disrupt a healthy cluster.
    let mut net = Network::new(3);
    net.elect(1);
    net.node_mut(2)
        .step(vote_request(3, 2, 7, 100, 7, false))
        .expect("valid");
    assert_eq!(net.node(2).term(), 1);
    assert!(net.take_queue().is_empty());
    // Once the lease has lapsed the request is considered (and the term adopted).
    net.isolate(1);
    net.tick(2, 10);
    net.node_mut(2)
        .step(vote_request(3, 2, 7, 100, 7, false))
        .expect("valid");
    assert_eq!(net.node(2).term(), 7);
}

#[test]
fn check_quorum_leader_steps_down_without_quorum() {
    // Thesis §6.2: a leader that hears from no quorum for an election timeout steps
    // down, so clients stop waiting on it.
    let mut net = Network::new(3);
    net.elect(1);
    net.isolate(1);
    net.tick(1, 10);
    assert_eq!(
        net.node(1).role(),
        Role::Leader,
        "first round: peers were active"
    );
    net.tick(1, 10);
    assert_eq!(net.node(1).role(), Role::Follower);
    assert!(net.events[&1].contains(&Event::LostQuorum { term: 1 }));
}

#[test]
fn check_quorum_leader_keeps_leading_with_quorum() {
    let mut net = Network::new(3);
    net.elect(1);
    net.isolate(3);
    for _ in 0..50 {
        net.tick(1, 1);
        net.stabilize();
    }
    assert_eq!(net.node(1).role(), Role::Leader);
}

#[test]
fn single_node_elects_itself() {
    let mut net = Network::new(1);
    net.tick(1, 20);
    assert_eq!(net.node(1).role(), Role::Leader);
    net.propose(1, "x");
    assert_eq!(net.applied_data(1), vec!["x"]);
}

#[test]
fn learners_and_non_members_do_not_campaign() {
    let init = InitialState {
        conf: ConfState {
            voters: vec![1, 2, 3],
            learners: vec![4],
        },
        ..InitialState::default()
    };
    let mut r = Raft::new(config(4), init, 3).expect("valid");
    for _ in 0..100 {
        r.tick();
    }
    assert_eq!(r.role(), Role::Follower);
    assert_eq!(r.term(), 0);
}

#[test]
fn candidate_steps_down_on_append_from_new_leader() {
    // §5.2: a candidate that receives AppendEntries from a leader of its term
    // returns to follower.
    let mut net = Network::with_config(3, |id| crate::Config {
        pre_vote: false,
        ..config(id)
    });
    net.elect(1);
    net.isolate(1);
    net.node_mut(2).campaign();
    net.process(2);
    assert_eq!(net.node(2).role(), Role::Candidate);
    let term = net.node(2).term();
    let m = Message {
        group: 1,
        from: 3,
        to: 2,
        term,
        body: MessageBody::Heartbeat {
            commit: 0,
            read_seq: 0,
            lease: 0,
            quiesce: false,
        },
    };
    net.node_mut(2).step(m).expect("valid");
    assert_eq!(net.node(2).role(), Role::Follower);
    assert_eq!(net.node(2).leader(), 3);
}

#[test]
fn restarted_node_remembers_its_vote() {
    // Figure 2: votedFor is persistent state; after a restart the node must not vote
    // for a second candidate in the same term.
    let mut net = Network::new(3);
    net.node_mut(3)
        .step(vote_request(1, 3, 1, 0, 0, false))
        .expect("valid");
    net.process(3);
    net.queue.clear();
    net.restart(3);
    net.node_mut(3)
        .step(vote_request(2, 3, 1, 0, 0, false))
        .expect("valid");
    assert_eq!(granted(&net.take_queue(), 2), Some(false));
}

#[test]
fn misrouted_messages_are_refused() {
    let mut net = Network::new(3);
    let mut m = vote_request(1, 2, 1, 0, 0, false);
    m.group = 9;
    assert!(net.node_mut(2).step(m).is_err());
    let m = vote_request(1, 3, 1, 0, 0, false);
    assert!(net.node_mut(2).step(m).is_err());
    let m = vote_request(0, 2, 1, 0, 0, false);
    assert!(net.node_mut(2).step(m).is_err());
    let m = vote_request(1, 2, 0, 0, 0, false);
    assert!(net.node_mut(2).step(m).is_err());
    assert_eq!(net.node(2).term(), 0);
}

/// The chaos harness's `no-noop` test bug (feature `test-bugs` only): a new leader
/// appends no NO-OP, and serves a read at the commit index it inherited at once.
#[cfg(feature = "test-bugs")]
#[test]
fn the_no_noop_test_bug_skips_the_term_start_entry() {
    let mut net = Network::new(3);
    net.elect(1);
    let last = net.node(1).log.last_index();
    net.expire_lease(&[2, 3]);
    net.node_mut(2)
        .inject_bug(Some(crate::InjectedBug::NoNoopAtTermStart));
    net.elect(2);
    assert_eq!(net.node(2).log.last_index(), last, "no NO-OP in term 2");
    net.node_mut(2).read_index(7).expect("the read is queued");
    net.stabilize();
    let served: Vec<u64> = net.read_states[&2].iter().map(|r| r.index).collect();
    assert_eq!(
        served,
        vec![net.node(2).log.committed],
        "the read was confirmed at the inherited commit index, with no entry of term 2"
    );
}

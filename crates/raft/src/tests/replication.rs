//! Log replication and commitment: Raft §5.3, §5.4.2 (Figure 8); thesis §10.2.1.

use bytes::Bytes;

use super::network::{Disk, Network, config, entry};
use crate::{ConfState, Config, HardState, Message, MessageBody, ProposeError, Role};

fn response(from: u64, to: u64, term: u64, index: u64) -> Message {
    Message {
        group: 1,
        from,
        to,
        term,
        body: MessageBody::AppendEntriesResponse {
            index,
            reject: false,
            hint_index: 0,
            hint_term: 0,
        },
    }
}

#[test]
fn committed_entries_are_applied_everywhere_in_order() {
    // §5.3: once committed, an entry is applied by every server, in log order.
    let mut net = Network::new(5);
    net.elect(1);
    for i in 0..20 {
        net.propose(1, &format!("v{i}"));
    }
    net.stabilize();
    // Followers learn the final commit index from the next heartbeat.
    net.tick(1, 1);
    net.stabilize();
    let want: Vec<String> = (0..20).map(|i| format!("v{i}")).collect();
    for id in 1..=5 {
        assert_eq!(net.applied_data(id), want, "node {id}");
    }
}

#[test]
fn consistency_check_rejects_and_leader_repairs_divergent_logs() {
    // §5.3 and Figure 7: followers missing entries or holding extra uncommitted ones
    // from old terms are brought to the leader's log; conflicting entries are
    // deleted.
    let mut net = Network::new(3);
    // Node 1 (future leader) has the longest, most recent log.
    net.disks.insert(
        1,
        Disk {
            hard_state: HardState {
                term: 3,
                vote: 0,
                commit: 0,
            },
            snapshot: None,
            entries: vec![entry(1, 1), entry(2, 1), entry(3, 3), entry(4, 3)],
        },
    );
    // Node 2 missed entries; node 3 holds divergent entries from term 2.
    net.disks.insert(
        2,
        Disk {
            hard_state: HardState {
                term: 1,
                vote: 0,
                commit: 0,
            },
            snapshot: None,
            entries: vec![entry(1, 1)],
        },
    );
    net.disks.insert(
        3,
        Disk {
            hard_state: HardState {
                term: 2,
                vote: 0,
                commit: 0,
            },
            snapshot: None,
            entries: vec![
                entry(1, 1),
                entry(2, 1),
                entry(3, 2),
                entry(4, 2),
                entry(5, 2),
                entry(6, 2),
            ],
        },
    );
    for id in 1..=3 {
        net.restart(id);
    }
    net.elect(1);
    net.tick(1, 1);
    net.stabilize();
    let leader_log = net.node(1).log_entries(1, u64::MAX);
    assert_eq!(leader_log.len(), 5, "4 entries + the term-4 NO-OP");
    for id in 2..=3 {
        assert_eq!(
            net.node(id).log_entries(1, u64::MAX),
            leader_log,
            "node {id}"
        );
        assert_eq!(net.disks[&id].entries, leader_log, "node {id} disk");
    }
}

#[test]
fn fast_backoff_skips_whole_conflicting_terms() {
    // §5.3 optimisation: the follower reports its conflicting term, so the leader
    // needs one round trip per term rather than one per entry.
    let mut net = Network::new(3);
    let mut long_old: Vec<_> = (1..=50).map(|i| entry(i, 1)).collect();
    long_old.extend((51..=100).map(|i| entry(i, 2)));
    net.disks.insert(
        3,
        Disk {
            hard_state: HardState {
                term: 2,
                vote: 0,
                commit: 0,
            },
            snapshot: None,
            entries: long_old,
        },
    );
    let mut leader_log: Vec<_> = (1..=50).map(|i| entry(i, 1)).collect();
    leader_log.extend((51..=60).map(|i| entry(i, 3)));
    for id in 1..=2 {
        net.disks.insert(
            id,
            Disk {
                hard_state: HardState {
                    term: 3,
                    vote: 0,
                    commit: 0,
                },
                snapshot: None,
                entries: leader_log.clone(),
            },
        );
    }
    for id in 1..=3 {
        net.restart(id);
    }
    net.elect(1);
    // Count the rejections node 3 sends while converging.
    let mut rejections = 0;
    net.tick(1, 1);
    net.process_all();
    while let Some(m) = net.queue.pop_front() {
        if let MessageBody::AppendEntriesResponse { reject: true, .. } = m.body
            && m.from == 3
        {
            rejections += 1;
        }
        net.deliver(m);
    }
    assert_eq!(
        net.node(3).log_entries(1, u64::MAX),
        net.node(1).log_entries(1, u64::MAX)
    );
    assert!(rejections <= 3, "took {rejections} rejections to converge");
}

#[test]
fn old_term_entries_are_not_committed_by_counting_replicas() {
    // §5.4.2 (Figure 8): a leader may only commit an entry of an earlier term
    // indirectly, by committing one of its own term.
    let mut net = Network::new(3);
    net.disks.insert(
        1,
        Disk {
            hard_state: HardState {
                term: 2,
                vote: 0,
                commit: 0,
            },
            snapshot: None,
            entries: vec![entry(1, 1), entry(2, 2)],
        },
    );
    net.restart(1);
    net.cut.insert((1, 2));
    net.cut.insert((1, 3));
    net.node_mut(1).campaign();
    net.process(1);
    // Deliver the vote requests and answers by hand; nothing else.
    let votes: Vec<Message> = net.take_queue();
    for m in votes {
        let to = m.to;
        net.node_mut(to).step(m).expect("valid");
    }
    for m in net.take_queue() {
        if m.to == 1 {
            net.node_mut(1).step(m).expect("valid");
        }
    }
    net.process(1);
    assert_eq!(net.node(1).role(), Role::Leader);
    let term = net.node(1).term();
    assert_eq!(net.node(1).last_index(), 3, "NO-OP appended at 3");
    // Both followers claim index 2 (the old-term entry): a majority, but not of this
    // term.
    net.node_mut(1)
        .step(response(2, 1, term, 2))
        .expect("valid");
    net.node_mut(1)
        .step(response(3, 1, term, 2))
        .expect("valid");
    net.process(1);
    assert_eq!(
        net.node(1).commit_index(),
        0,
        "must not commit index 2 by counting"
    );
    // One follower acknowledges the NO-OP of the current term: everything commits.
    net.node_mut(1)
        .step(response(2, 1, term, 3))
        .expect("valid");
    net.process(1);
    assert_eq!(net.node(1).commit_index(), 3);
}

#[test]
fn leader_counts_itself_only_after_its_own_fsync() {
    // Thesis §10.2.1: the leader may replicate before its own write is durable, but
    // only a durable copy counts toward the quorum. With one voter, nothing commits
    // until `advance` reports the entry durable.
    let mut net = Network::new(1);
    net.node_mut(1).campaign();
    net.process(1);
    let idx = net
        .node_mut(1)
        .propose(Bytes::from_static(b"x"))
        .expect("leader")
        .0;
    let rd = net.node_mut(1).ready();
    assert!(rd.entries.iter().any(|e| e.index == idx));
    assert!(
        rd.committed_entries.iter().all(|e| e.index < idx),
        "applied before durable"
    );
    assert!(net.node(1).commit_index() < idx);
    net.node_mut(1).advance(rd);
    assert_eq!(net.node(1).commit_index(), idx);
    let rd = net.node_mut(1).ready();
    assert!(rd.committed_entries.iter().any(|e| e.index == idx));
    net.node_mut(1).advance(rd);
}

#[test]
fn append_acknowledgement_waits_for_persistence() {
    // Figure 2: a follower must store entries durably before acknowledging them.
    let mut net = Network::new(3);
    net.elect(1);
    net.propose(1, "x");
    let msgs = net.take_queue();
    let append = msgs
        .into_iter()
        .find(|m| m.to == 2 && matches!(m.body, MessageBody::AppendEntries { .. }))
        .expect("append");
    net.node_mut(2).step(append).expect("valid");
    let rd = net.node_mut(2).ready();
    assert!(!rd.entries.is_empty());
    assert!(
        rd.messages
            .iter()
            .all(|m| !matches!(m.body, MessageBody::AppendEntriesResponse { .. }))
    );
    assert!(rd.persisted_messages.iter().any(|m| matches!(
        m.body,
        MessageBody::AppendEntriesResponse { reject: false, .. }
    )));
    net.node_mut(2).advance(rd);
}

#[test]
fn replicate_state_pipelines_within_the_window() {
    // Pipelined AppendEntries: in replicate state the leader keeps sending without
    // waiting for answers, up to `max_inflight_msgs` messages.
    let mut net = Network::with_config(3, |id| Config {
        max_inflight_msgs: 4,
        max_msg_bytes: 1,
        ..config(id)
    });
    net.elect(1);
    for i in 0..10 {
        net.node_mut(1)
            .propose(Bytes::from(format!("p{i}")))
            .expect("leader");
    }
    let msgs = net.take_queue();
    let to2 = msgs
        .iter()
        .filter(|m| m.to == 2 && matches!(m.body, MessageBody::AppendEntries { .. }))
        .count();
    assert_eq!(to2, 4, "window of 4 one-entry messages");
    for m in msgs {
        net.deliver(m);
    }
    net.stabilize();
    assert_eq!(net.node(2).last_index(), 11);
}

#[test]
fn probe_state_sends_one_message_at_a_time() {
    let mut net = Network::with_config(3, |id| Config {
        max_msg_bytes: 1,
        ..config(id)
    });
    net.elect(1);
    net.isolate(3);
    for i in 0..5 {
        net.propose(1, &format!("p{i}"));
    }
    net.stabilize();
    // Node 3 is in probe state now (its first probe was never answered).
    net.heal();
    net.node_mut(1)
        .propose(Bytes::from_static(b"more"))
        .expect("leader");
    let msgs = net.take_queue();
    let to3 = msgs
        .iter()
        .filter(|m| m.to == 3 && matches!(m.body, MessageBody::AppendEntries { .. }))
        .count();
    assert!(to3 <= 1, "probe sends at most one message, sent {to3}");
}

#[test]
fn lost_messages_are_resent_after_a_heartbeat() {
    // Messages can be lost (§5.3 "retries indefinitely"): when a follower makes no
    // progress across a heartbeat, the leader resends from its match index.
    let mut net = Network::new(3);
    net.elect(1);
    net.propose(1, "a");
    net.propose(1, "b");
    // Drop every in-flight message.
    let _ = net.take_queue();
    for _ in 0..4 {
        net.tick(1, 1);
        net.stabilize();
    }
    assert_eq!(net.node(2).last_index(), 3);
    assert_eq!(net.node(3).last_index(), 3);
    assert_eq!(net.node(1).commit_index(), 3);
}

#[test]
fn proposals_fail_cleanly_off_the_leader() {
    let mut net = Network::new(3);
    net.elect(2);
    assert_eq!(
        net.node_mut(1).propose(Bytes::from_static(b"x")),
        Err(ProposeError::NotLeader { leader: 2 })
    );
    assert_eq!(net.node(1).last_index(), 1, "nothing appended");
}

#[test]
fn uncommitted_log_is_bounded() {
    let mut net = Network::with_config(3, |id| Config {
        max_uncommitted_bytes: 200,
        ..config(id)
    });
    net.elect(1);
    net.isolate(1);
    let big = Bytes::from(vec![0u8; 100]);
    assert!(net.node_mut(1).propose(big.clone()).is_ok());
    match net.node_mut(1).propose(big.clone()) {
        Err(ProposeError::Overloaded { .. }) => {}
        other => panic!("expected Overloaded, got {other:?}"),
    }
    assert!(matches!(
        net.node_mut(1).propose(Bytes::from(vec![0u8; 500])),
        Err(ProposeError::TooLarge { .. })
    ));
    // Once the followers are back and the tail commits, proposals flow again.
    net.heal();
    net.tick(1, 1);
    net.stabilize();
    assert!(net.node_mut(1).propose(big).is_ok());
}

#[test]
fn heartbeat_commit_never_exceeds_the_follower_match() {
    // A follower must not mark committed an entry it may not hold yet.
    let mut net = Network::new(3);
    net.elect(1);
    net.isolate(3);
    net.propose(1, "a");
    net.stabilize();
    net.heal();
    let msgs = {
        net.node_mut(1).tick();
        net.take_queue()
    };
    for m in msgs {
        if let (3, MessageBody::Heartbeat { commit, .. }) = (m.to, &m.body) {
            assert!(
                *commit <= 1,
                "heartbeat to lagging node carries commit {commit}"
            );
        }
    }
}

#[test]
fn duplicated_old_append_does_not_truncate() {
    // Reordered delivery: an AppendEntries older than what the follower holds must
    // not remove newer entries.
    let mut net = Network::new(3);
    net.elect(1);
    net.propose(1, "a");
    let first = net.take_queue();
    for m in first.clone() {
        net.deliver(m);
    }
    net.propose(1, "b");
    net.stabilize();
    let before = net.node(2).last_index();
    for m in first {
        net.deliver(m);
    }
    net.stabilize();
    assert_eq!(net.node(2).last_index(), before);
}

#[test]
fn restarted_follower_catches_up() {
    let mut net = Network::new(3);
    net.elect(1);
    net.propose(1, "a");
    net.stabilize();
    net.isolate(3);
    for i in 0..10 {
        net.propose(1, &format!("b{i}"));
    }
    net.stabilize();
    net.restart(3);
    net.heal();
    for _ in 0..3 {
        net.tick(1, 1);
        net.stabilize();
    }
    assert_eq!(net.node(3).last_index(), net.node(1).last_index());
    assert_eq!(net.applied_data(3).len(), 11);
}

#[test]
fn conf_with_zero_id_is_rejected() {
    let init = crate::InitialState {
        conf: ConfState::with_voters([0, 1]),
        ..Default::default()
    };
    assert!(crate::Raft::new(config(1), init, 0).is_err());
}

#[test]
fn malformed_append_entries_are_dropped() {
    // Entries that do not continue from prev_log_index would corrupt the log.
    let mut net = Network::new(3);
    net.elect(1);
    let term = net.node(1).term();
    let before = net.node(2).log_entries(1, u64::MAX);
    for entries in [
        vec![entry(5, term)],
        vec![entry(2, term), entry(4, term)],
        vec![entry(2, term), entry(3, term - 1)],
    ] {
        let m = Message {
            group: 1,
            from: 1,
            to: 2,
            term,
            body: MessageBody::AppendEntries {
                prev_log_index: 1,
                prev_log_term: term,
                entries,
                leader_commit: 1,
            },
        };
        net.node_mut(2).step(m).expect("valid routing");
        net.process(2);
        net.node(2).validate();
    }
    assert_eq!(net.node(2).log_entries(1, u64::MAX), before);
}

#[test]
fn response_beyond_the_leaders_log_is_dropped() {
    let mut net = Network::new(3);
    net.elect(1);
    let term = net.node(1).term();
    net.node_mut(1)
        .step(response(2, 1, term, 1_000))
        .expect("valid routing");
    net.node_mut(1)
        .step(response(3, 1, term, 1_000))
        .expect("valid routing");
    net.process(1);
    net.node(1).validate();
    assert_eq!(net.node(1).commit_index(), 1);
}

#[test]
fn a_follower_that_lost_acknowledged_entries_is_caught_up_again() {
    // Outside the crash model (its disk lost the tail of its log, e.g. a torn
    // write truncated at start), but the leader must not stall on it: it keeps
    // probing at the follower's old match index, which the follower rejects.
    let mut net = Network::new(3);
    net.elect(1);
    for i in 0..5 {
        net.propose(1, &format!("p{i}"));
    }
    net.stabilize();
    let last = net.node(1).last_index();
    assert_eq!(net.node(3).last_index(), last);
    let disk = net.disks.get_mut(&3).expect("node 3");
    disk.entries.truncate(disk.entries.len() - 3);
    disk.hard_state.commit = disk.hard_state.commit.min(last - 3);
    net.restart(3);
    assert_eq!(net.node(3).last_index(), last - 3);
    // With node 2 cut off, only node 3 can make a new entry committed.
    net.isolate(2);
    net.propose(1, "after");
    for _ in 0..4 {
        net.tick(1, 1);
        net.stabilize();
    }
    assert_eq!(net.node(3).last_index(), last + 1, "node 3 caught up");
    assert_eq!(net.node(1).commit_index(), last + 1);
}

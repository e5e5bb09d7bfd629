//! Snapshots and log compaction: Raft §7, thesis §5 (and §5.4.3 for the
//! follower's "already has it" case).

use super::network::{Network, entry};
use crate::{
    CompactError, ConfState, HardState, InitialState, Message, MessageBody, Raft, Role,
    SnapshotMeta,
};

fn install(from: u64, to: u64, term: u64, meta: SnapshotMeta) -> Message {
    Message {
        group: 1,
        from,
        to,
        term,
        body: MessageBody::InstallSnapshot { meta },
    }
}

fn acks(msgs: &[Message]) -> Vec<u64> {
    msgs.iter()
        .filter_map(|m| match m.body {
            MessageBody::AppendEntriesResponse {
                index,
                reject: false,
                ..
            } => Some(index),
            _ => None,
        })
        .collect()
}

#[test]
fn compaction_drops_applied_entries_and_keeps_the_trailing_window() {
    // §7: a server compacts the committed, applied prefix of its log into a
    // snapshot; thesis §5.1: it may keep a window of entries after it.
    let mut net = Network::new(3);
    net.elect(1);
    for i in 0..10 {
        net.propose(1, &format!("v{i}"));
    }
    net.settle(1);
    let applied = net.node(1).applied_index();
    assert_eq!(applied, 11);
    let meta = net.compact(1, 8);
    assert_eq!((meta.index, meta.term), (11, 1));
    assert_eq!(meta.conf, ConfState::with_voters([1, 2, 3]));
    assert_eq!(net.node(1).first_index(), 8, "entries 8.. kept");
    assert_eq!(net.node(1).snapshot().index, 11);
    assert_eq!(net.node(1).log_term(6), None);
    net.node(1).validate();
    // Replication continues across the compaction point.
    net.propose(1, "after");
    net.settle(1);
    assert_eq!(
        net.applied_data(2).last().map(String::as_str),
        Some("after")
    );
}

#[test]
fn compaction_refuses_unapplied_or_mismatched_snapshots() {
    let mut net = Network::new(3);
    net.elect(1);
    net.propose(1, "x");
    net.settle(1);
    let node = net.node_mut(1);
    assert_eq!(
        node.snapshot_meta(5),
        Err(CompactError::NotApplied {
            index: 5,
            applied: 2
        })
    );
    let mut meta = node.snapshot_meta(2).expect("applied");
    meta.term = 9;
    assert!(matches!(
        node.compact(meta, 3),
        Err(CompactError::TermMismatch { index: 2, .. })
    ));
    assert_eq!(node.first_index(), 1, "nothing dropped");
}

#[test]
fn lagging_follower_gets_a_snapshot_then_entries() {
    // §7: the leader sends InstallSnapshot to a follower that needs entries it
    // discarded; afterwards replication resumes from the snapshot's index + 1.
    let mut net = Network::new(3);
    net.elect(1);
    net.isolate(3);
    for i in 0..10 {
        net.propose(1, &format!("v{i}"));
    }
    net.settle(1);
    let meta = net.compact(1, u64::MAX);
    assert_eq!(
        net.node(1).first_index(),
        meta.index + 1,
        "whole log dropped"
    );
    net.heal();
    net.propose(1, "tail");
    net.settle(1);
    assert!(
        net.events_of(1).iter().any(
            |e| matches!(e, crate::Event::SnapshotSent { to: 3, index } if *index == meta.index)
        ),
        "{:?}",
        net.events_of(1)
    );
    assert_eq!(net.installed[&3], vec![meta.clone()]);
    let follower = net.node(3);
    assert_eq!(follower.first_index(), meta.index + 1);
    assert_eq!(follower.commit_index(), net.node(1).commit_index());
    assert_eq!(net.disks[&3].snapshot.as_ref(), Some(&meta));
    // Only the tail is applied as entries; the rest came with the snapshot.
    assert_eq!(net.applied_data(3).last().map(String::as_str), Some("tail"));
    assert!(!net.applied_data(3).contains(&"v0".to_string()));
    let status = net.node(1).status();
    let p3 = status.peers.iter().find(|p| p.id == 3).expect("peer 3");
    assert_eq!(p3.state, "replicate");
}

/// Ticks the leader (1) and delivers everything for a few rounds, except InstallSnapshot messages, which
/// are returned (as if the runtime's transfer never completed).
fn pump_holding_snapshots(net: &mut Network, rounds: usize) -> Vec<Message> {
    let mut held = Vec::new();
    for _ in 0..rounds {
        net.tick(1, 1);
        for m in net.take_queue() {
            if matches!(m.body, MessageBody::InstallSnapshot { .. }) {
                held.push(m);
            } else {
                net.deliver(m);
            }
        }
    }
    held
}

#[test]
fn snapshot_state_sends_nothing_until_the_outcome_is_known() {
    // While a snapshot is in flight, AppendEntries would only be rejected: the
    // leader holds them back; a failed transfer makes it probe (and so send a new
    // snapshot) once the follower answers a heartbeat.
    let mut net = Network::new(3);
    net.auto_report_snapshots = false;
    net.elect(1);
    net.isolate(3);
    for i in 0..5 {
        net.propose(1, &format!("v{i}"));
    }
    net.settle(1);
    net.compact(1, u64::MAX);
    net.heal();
    net.tick(1, 1);
    let held = pump_holding_snapshots(&mut net, 4);
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].to, 3);
    // More proposals and heartbeats: nothing is sent to 3 meanwhile.
    net.propose(1, "more");
    net.tick(1, 1);
    let mut sent_to_3 = Vec::new();
    for _ in 0..4 {
        for m in net.take_queue() {
            if m.to == 3 && !matches!(m.body, MessageBody::Heartbeat { .. }) {
                sent_to_3.push(m.clone());
            }
            net.deliver(m);
        }
    }
    assert!(sent_to_3.is_empty(), "{sent_to_3:?}");
    // The transfer failed: after the next heartbeat answer, a new snapshot.
    net.node_mut(1).report_snapshot(3, false);
    net.tick(1, 1);
    let held = pump_holding_snapshots(&mut net, 4);
    assert_eq!(held.len(), 1, "{held:?}");
}

#[test]
fn follower_with_a_matching_entry_keeps_its_log() {
    // §7: "If the follower already has the entries the snapshot describes, it
    // keeps the entries following it" — and only commits through the snapshot.
    let mut net = Network::new(3);
    let mut f = net.nodes.remove(&2).expect("node 2");
    f.step(Message {
        group: 1,
        from: 1,
        to: 2,
        term: 1,
        body: MessageBody::AppendEntries {
            prev_log_index: 0,
            prev_log_term: 0,
            entries: vec![entry(1, 1), entry(2, 1), entry(3, 1)],
            leader_commit: 0,
        },
    })
    .expect("valid");
    let rd = f.ready();
    f.advance(rd);
    let meta = SnapshotMeta {
        index: 2,
        term: 1,
        conf: ConfState::with_voters([1, 2, 3]),
    };
    f.step(install(1, 2, 1, meta)).expect("valid");
    let rd = f.ready();
    assert!(rd.snapshot.is_none(), "nothing to install");
    assert_eq!(acks(&rd.persisted_messages), vec![2]);
    assert_eq!(f.last_index(), 3, "entry 3 kept");
    assert_eq!(f.commit_index(), 2);
    f.advance(rd);
}

#[test]
fn follower_with_a_conflicting_entry_takes_the_snapshot() {
    // §7: otherwise the follower discards its entire log; the snapshot's term is
    // what decides, not merely having an entry at its index.
    let init = InitialState {
        hard_state: HardState {
            term: 1,
            vote: 0,
            commit: 1,
        },
        conf: ConfState::with_voters([1, 2, 3]),
        entries: vec![entry(1, 1), entry(2, 1), entry(3, 1)],
        ..InitialState::default()
    };
    let mut f = Raft::new(super::network::config(2), init, 1).expect("valid");
    let meta = SnapshotMeta {
        index: 3,
        term: 2,
        conf: ConfState {
            voters: vec![1, 2, 3],
            learners: vec![4],
        },
    };
    f.step(install(1, 2, 2, meta.clone())).expect("valid");
    let rd = f.ready();
    assert_eq!(rd.snapshot.as_ref(), Some(&meta));
    assert!(rd.committed_entries.is_empty());
    assert!(
        rd.messages
            .iter()
            .all(|m| acks(std::slice::from_ref(m)).is_empty())
    );
    assert_eq!(
        acks(&rd.persisted_messages),
        vec![3],
        "the acknowledgement waits until the snapshot is durable"
    );
    assert!(rd.must_sync());
    assert_eq!(f.last_index(), 3);
    assert_eq!(f.log_term(3), Some(2));
    assert_eq!(f.commit_index(), 3);
    assert_eq!(
        f.conf_state(),
        meta.conf,
        "membership comes with the snapshot"
    );
    assert_eq!(f.status().persisted, 0, "not durable before the Ready is");
    f.advance(rd);
    assert_eq!(f.status().persisted, 3);
    f.validate();
}

#[test]
fn snapshot_at_or_below_commit_is_only_acknowledged() {
    let mut net = Network::new(3);
    net.elect(1);
    net.propose(1, "x");
    net.settle(1);
    let commit = net.node(2).commit_index();
    let meta = net.node(1).snapshot_meta(1).expect("applied");
    net.node_mut(2).step(install(1, 2, 1, meta)).expect("valid");
    let rd = net.node_mut(2).ready();
    assert!(rd.snapshot.is_none());
    assert_eq!(acks(&rd.persisted_messages), vec![commit]);
    net.node_mut(2).advance(rd);
}

#[test]
fn snapshot_from_a_stale_leader_is_refused() {
    // §5.1: a request from an older term is rejected.
    let mut net = Network::new(3);
    net.elect(1);
    net.expire_lease(&[2, 3]);
    net.elect(2);
    let meta = SnapshotMeta {
        index: 50,
        term: 1,
        conf: ConfState::with_voters([1, 2, 3]),
    };
    net.node_mut(3).step(install(1, 3, 1, meta)).expect("valid");
    let rd = net.node_mut(3).ready();
    assert!(rd.snapshot.is_none());
    assert!(net.node(3).commit_index() < 50);
    net.node_mut(3).advance(rd);
}

#[test]
fn asynchronous_snapshot_counts_durable_only_when_reported() {
    // The asynchronous form of the contract: the snapshot is durable only when
    // `on_persisted` covers its Ready, and later entries only after it.
    let mut net = Network::new(3);
    net.elect(1);
    net.isolate(3);
    for i in 0..4 {
        net.propose(1, &format!("v{i}"));
    }
    net.settle(1);
    let meta = net.compact(1, u64::MAX);
    net.heal();
    net.async_nodes.insert(3);
    net.propose(1, "tail");
    net.settle(1);
    assert_eq!(net.node(3).status().persisted, 0);
    assert!(net.disks[&3].snapshot.is_none(), "still in flight");
    assert!(net.applied_data(3).is_empty());
    net.persist(3);
    net.settle(1);
    net.persist(3);
    assert_eq!(net.disks[&3].snapshot.as_ref(), Some(&meta));
    assert_eq!(net.applied_data(3), vec!["tail"]);
    assert_eq!(net.node(3).status().persisted, net.node(3).last_index());
}

#[test]
fn restart_from_a_snapshot_and_the_log_after_it() {
    // Thesis §5.1: on restart a server loads its snapshot and replays the log
    // after it.
    let mut net = Network::new(3);
    net.elect(1);
    net.isolate(3);
    for i in 0..4 {
        net.propose(1, &format!("v{i}"));
    }
    net.settle(1);
    net.compact(1, u64::MAX);
    net.heal();
    net.propose(1, "tail");
    net.settle(1);
    net.restart(3);
    let n3 = net.node(3);
    assert_eq!(n3.first_index(), 6);
    assert_eq!(n3.last_index(), 6);
    assert_eq!(n3.snapshot().index, 5);
    n3.validate();
    // It still works as a voter: the others can lose the old leader.
    net.isolate(1);
    net.expire_lease(&[2, 3]);
    net.elect(3);
    assert_eq!(net.node(3).role(), Role::Leader);
}

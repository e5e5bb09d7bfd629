//! Writes of a client session are exactly-once, so the client retries them where
//! a write without a session would stop with OUTCOME_UNKNOWN, always with the same
//! session id and sequence number.

use std::time::Duration;

use keel_client::{ClusterMap, Error, MapCommand, Slot, slot_for_key};
use keel_proto::v1::ClientSession;

use crate::mock::{Behavior, HangupNode, MockNode, bounded, client, eventually, mock_map};

/// (group, seq, first_unacked) of each session write `node` received.
fn numbers_of(node: &MockNode) -> Vec<(u64, u64, u64)> {
    sessions_of(node)
        .iter()
        .map(|s| (s.group, s.seq, s.first_unacked))
        .collect()
}

/// The mock map with `slot` handed to a new group 2.
fn map_moving(slot: Slot) -> ClusterMap {
    let mut map = mock_map();
    let create = MapCommand::CreateGroup {
        members: [1, 2, 3].into(),
        target_replicas: 3,
    };
    map.apply(&create).expect("create group 2");
    map.apply(&MapCommand::BeginSlotMove { slot, to: 2 })
        .expect("begin");
    let epoch = map.version();
    map.apply(&MapCommand::CommitSlotMove { slot, epoch })
        .expect("commit");
    map
}

/// A key whose slot is not `slot`.
fn key_outside(slot: Slot) -> String {
    (0..)
        .map(|i| format!("other{i}"))
        .find(|k| slot_for_key(k.as_bytes()) != slot)
        .expect("a key elsewhere")
}

#[tokio::test]
async fn an_unknown_outcome_is_retried_in_its_group_whatever_a_node_says() {
    let leader = MockNode::start(1, Behavior::Serve).await;
    // The map would send the key to group 2, but the write's first attempt
    // (group 1, no map cached yet) may have been applied: a node's map-based
    // WRONG_GROUP or SLOT_MOVING settles nothing, so it stays in group 1 with
    // its number, and no map is even fetched.
    leader.set_map(map_moving(slot_for_key(b"k")));
    leader.script([
        Behavior::OutcomeUnknown,
        Behavior::WrongGroup { by_group: false },
        Behavior::SlotMoving { by_group: false },
    ]);
    let c = client(&[leader.addr()]);
    bounded(c.put("k", "v"))
        .await
        .expect("answered by its group");
    assert_eq!(numbers_of(&leader), [(1, 1, 1); 4]);
    assert_eq!(leader.calls("map"), 0);
}

#[tokio::test]
async fn a_write_its_group_did_not_apply_is_sent_anew_in_the_owners_session() {
    let leader = MockNode::start(1, Behavior::Serve).await;
    let slot = slot_for_key(b"k");
    leader.set_map(map_moving(slot));
    let other = key_outside(slot);
    let c = client(&[leader.addr()]);
    bounded(c.put(other.clone(), "v")).await.expect("group 1");
    // Group 1 refuses (its state machine answered, after an ambiguous first
    // try): the number is given up, the map fetched, and the write goes to
    // group 2 as that session's first write.
    leader.script([
        Behavior::OutcomeUnknown,
        Behavior::WrongGroup { by_group: true },
    ]);
    bounded(c.put("k", "v")).await.expect("rerouted");
    // The cached map now numbers each key in its owner's session.
    bounded(c.delete("k")).await.expect("group 2");
    bounded(c.put(other, "w")).await.expect("group 1");
    assert_eq!(
        numbers_of(&leader),
        [
            (1, 1, 1),
            (1, 2, 2),
            (1, 2, 2),
            (2, 1, 1),
            (2, 2, 2),
            (1, 3, 3)
        ]
    );
    assert_eq!(leader.calls("map"), 1, "fetched once, lazily");
}

#[tokio::test]
async fn a_slot_in_hand_off_is_retried_with_its_number_while_its_group_owns_it() {
    let leader = MockNode::start(1, Behavior::Serve).await;
    // Calls in order: the put, the map fetch it causes, the put again.
    leader.script([
        Behavior::SlotMoving { by_group: true },
        Behavior::Serve,
        Behavior::SlotMoving { by_group: true },
    ]);
    let c = client(&[leader.addr()]);
    bounded(c.put("k", "v"))
        .await
        .expect("served after the hand-off");
    // The bootstrap map keeps the slot in group 1: the move may still abort,
    // so every try repeats the write's number there (a new number could let
    // an older attempt apply too), and the map is fetched once (the second
    // answer names nothing newer within the refresh interval).
    assert_eq!(numbers_of(&leader), [(1, 1, 1), (1, 1, 1), (1, 1, 1)]);
    assert_eq!(leader.calls("map"), 1);
}

fn sessions_of(node: &MockNode) -> Vec<ClientSession> {
    node.sessions()
        .into_iter()
        .map(|s| s.expect("every write carries a session"))
        .collect()
}

#[tokio::test]
async fn a_write_that_timed_out_is_retried_elsewhere_with_the_same_number() {
    let stuck = MockNode::start(1, Behavior::Hang).await;
    let healthy = MockNode::start(2, Behavior::Serve).await;
    let c = client(&[stuck.addr(), healthy.addr()]);

    let revision = bounded(c.put("k", "v")).await.expect("retried");
    assert_eq!(revision, 1);
    eventually(|| stuck.calls("put") == 1).await;
    let (first, retry) = (sessions_of(&stuck), sessions_of(&healthy));
    assert_eq!(first, retry, "the retry repeats id and number");
    assert_eq!((retry[0].seq, retry[0].first_unacked), (1, 1));
    assert_eq!(retry[0].client_id.len(), 16);
}

#[tokio::test]
async fn a_write_whose_member_hung_up_is_retried() {
    let crashing = HangupNode::start(b"hangup-key").await;
    let healthy = MockNode::start(2, Behavior::Serve).await;
    let c = client(&[crashing.addr(), healthy.addr()]);

    bounded(c.put("hangup-key", "v")).await.expect("retried");
    assert_eq!(crashing.received(), 1);
    assert_eq!(healthy.calls("put"), 1);
}

#[tokio::test]
async fn outcome_unknown_and_internal_answers_are_retried_with_the_same_number() {
    let leader = MockNode::start(1, Behavior::Serve).await;
    leader.script([Behavior::OutcomeUnknown, Behavior::Internal]);
    let c = client(&[leader.addr()]);

    bounded(c.delete("k")).await.expect("retried");
    let seen = sessions_of(&leader);
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|s| *s == seen[0]), "{seen:?}");
}

#[tokio::test]
async fn numbers_count_up_and_acknowledged_ones_are_reported() {
    let leader = MockNode::start(1, Behavior::Serve).await;
    let c = client(&[leader.addr()]);
    for _ in 0..3 {
        bounded(c.put("k", "v")).await.expect("put");
    }
    // A clone shares the session; a new client has its own.
    bounded(c.clone().delete("k")).await.expect("delete");
    let other = client(&[leader.addr()]);
    bounded(other.put("k", "v")).await.expect("put");
    let seen = sessions_of(&leader);
    let numbers: Vec<(u64, u64)> = seen.iter().map(|s| (s.seq, s.first_unacked)).collect();
    assert_eq!(numbers, [(1, 1), (2, 2), (3, 3), (4, 4), (1, 1)]);
    assert!(seen[..4].iter().all(|s| s.client_id == seen[0].client_id));
    assert_ne!(seen[4].client_id, seen[0].client_id);
}

#[tokio::test]
async fn an_expired_session_is_replaced_when_the_write_was_not_applied() {
    let leader = MockNode::start(1, Behavior::Serve).await;
    let c = client(&[leader.addr()]);
    bounded(c.put("a", "1")).await.expect("put");
    leader.script([Behavior::SessionExpired]);
    bounded(c.put("b", "2"))
        .await
        .expect("sent again in a new session");
    let seen = sessions_of(&leader);
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[1].client_id, seen[0].client_id);
    assert_eq!(seen[1].seq, 2);
    assert_ne!(seen[2].client_id, seen[0].client_id);
    assert_eq!((seen[2].seq, seen[2].first_unacked), (1, 1));
}

#[tokio::test]
async fn an_expired_session_after_an_ambiguous_attempt_is_outcome_unknown() {
    let leader = MockNode::start(1, Behavior::Serve).await;
    leader.script([Behavior::OutcomeUnknown, Behavior::SessionExpired]);
    let c = client(&[leader.addr()]);
    let err = bounded(c.put("k", "v")).await.expect_err("unknown");
    assert!(err.outcome_unknown(), "{err:?}");
    assert_eq!(leader.calls("put"), 2, "not sent again in a new session");
}

#[tokio::test]
async fn a_session_refused_twice_ends_the_call_as_not_applied() {
    let leader = MockNode::start(1, Behavior::SessionExpired).await;
    let c = client(&[leader.addr()]);
    let err = bounded(c.put("k", "v")).await.expect_err("expired");
    assert!(matches!(err, Error::SessionExpired(_)), "{err:?}");
    assert!(err.is_definite_failure());
    assert_eq!(leader.calls("put"), 2);
}

#[tokio::test]
async fn a_deadline_after_an_ambiguous_attempt_is_outcome_unknown_not_unavailable() {
    let stuck = MockNode::start(1, Behavior::Hang).await;
    let c = client(&[stuck.addr()]).with_deadline(Duration::from_millis(1500));
    let err = bounded(c.put("k", "v")).await.expect_err("gave up");
    assert!(err.outcome_unknown(), "{err:?}");
}

#[tokio::test]
async fn a_read_that_keeps_timing_out_is_unavailable_not_unknown() {
    let stuck = MockNode::start(1, Behavior::Hang).await;
    let c = client(&[stuck.addr()]).with_deadline(Duration::from_millis(1500));
    let err = bounded(c.get("k", keel_client::ReadMode::Linearizable))
        .await
        .expect_err("gave up");
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
}

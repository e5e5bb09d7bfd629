//! Without a session, writes that may have been applied are never retried; reads
//! always are. (`sessions.rs` has the exactly-once retries of session writes.)

use keel_client::{Error, ReadMode};

use crate::mock::{
    Behavior, HangupNode, MockNode, bounded, client, eventually, refused_addr, sessionless_client,
};

#[tokio::test]
async fn write_that_timed_out_after_arriving_is_outcome_unknown_and_not_retried() {
    let stuck = MockNode::start(1, Behavior::Hang).await;
    let healthy = MockNode::start(2, Behavior::Serve).await;
    let c = sessionless_client(&[stuck.addr(), healthy.addr()]);

    let err = bounded(c.put("k", "v")).await.expect_err("timed out");
    assert!(err.outcome_unknown(), "{err:?}");
    assert!(!err.is_definite_failure());
    eventually(|| stuck.calls("put") == 1).await;
    assert_eq!(healthy.calls("put"), 0, "the write was retried");
}

#[tokio::test]
async fn after_a_write_timed_out_at_the_leader_the_next_call_starts_elsewhere() {
    // A leader that stops answering (paused, partitioned) must not get every
    // following write, each waiting out its timeout.
    let stuck = MockNode::start(1, Behavior::Hang).await;
    stuck.script([Behavior::Serve]);
    let healthy = MockNode::start(2, Behavior::Serve).await;
    let c = sessionless_client(&[stuck.addr(), healthy.addr()]);

    bounded(c.put("k", "1"))
        .await
        .expect("served: 1 is now the leader");
    let err = bounded(c.put("k", "2")).await.expect_err("timed out");
    assert!(err.outcome_unknown(), "{err:?}");
    bounded(c.put("k", "3")).await.expect("served elsewhere");
    assert_eq!(stuck.calls("put"), 2);
    assert_eq!(healthy.calls("put"), 1);
}

#[tokio::test]
async fn read_that_timed_out_is_retried_elsewhere() {
    let stuck = MockNode::start(1, Behavior::Hang).await;
    let healthy = MockNode::start(2, Behavior::Serve).await;
    let c = client(&[stuck.addr(), healthy.addr()]);

    let got = bounded(c.get("k", ReadMode::Linearizable))
        .await
        .expect("read retried");
    assert_eq!(got.kv, None);
    eventually(|| stuck.calls("get") == 1).await;
    assert_eq!(healthy.calls("get"), 1);
}

#[tokio::test]
async fn write_whose_member_hung_up_after_receiving_it_is_outcome_unknown() {
    let crashing = HangupNode::start(b"hangup-key").await;
    let healthy = MockNode::start(2, Behavior::Serve).await;
    let c = sessionless_client(&[crashing.addr(), healthy.addr()]);

    let err = bounded(c.put("hangup-key", "v"))
        .await
        .expect_err("hung up");
    assert!(err.outcome_unknown(), "{err:?}");
    assert_eq!(crashing.received(), 1, "the request did reach the member");
    assert_eq!(healthy.calls("put"), 0, "the write was retried");
}

#[tokio::test]
async fn read_whose_member_hung_up_is_retried() {
    let crashing = HangupNode::start(b"hangup-key").await;
    let healthy = MockNode::start(2, Behavior::Serve).await;
    let c = client(&[crashing.addr(), healthy.addr()]);

    bounded(c.get("hangup-key", ReadMode::Default))
        .await
        .expect("read retried");
    assert_eq!(crashing.received(), 1);
    assert_eq!(healthy.calls("get"), 1);
}

#[tokio::test]
async fn write_is_retried_when_the_connection_was_refused() {
    let healthy = MockNode::start(2, Behavior::Serve).await;
    // The first endpoint has nothing listening: the request never left.
    let c = client(&[refused_addr().await, healthy.addr()]);

    bounded(c.put("k", "v"))
        .await
        .expect("retried after refusal");
    assert_eq!(healthy.calls("put"), 1);
}

#[tokio::test]
async fn server_reported_outcome_unknown_is_not_retried() {
    let leader = MockNode::start(1, Behavior::Serve).await;
    leader.script([Behavior::OutcomeUnknown]);
    let c = sessionless_client(&[leader.addr()]);

    let err = bounded(c.put("k", "v")).await.expect_err("unknown");
    assert!(err.outcome_unknown(), "{err:?}");
    assert_eq!(leader.calls("put"), 1);

    // The same answer to a read is retried.
    leader.script([Behavior::OutcomeUnknown]);
    bounded(c.get("k", ReadMode::Default)).await.expect("read");
    assert_eq!(leader.calls("get"), 2);
}

#[tokio::test]
async fn internal_error_is_unknown_for_a_write_and_final_for_a_read() {
    let leader = MockNode::start(1, Behavior::Internal).await;
    let c = sessionless_client(&[leader.addr()]);

    let err = bounded(c.delete("k")).await.expect_err("internal");
    assert!(err.outcome_unknown(), "{err:?}");
    let err = bounded(c.get("k", ReadMode::Default))
        .await
        .expect_err("internal");
    assert!(matches!(err, Error::Internal(_)), "{err:?}");
    assert_eq!(leader.calls("delete"), 1);
    assert_eq!(leader.calls("get"), 1);
}

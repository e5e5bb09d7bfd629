//! Calls made together share one `Kv/Batch` stream per member, and each still
//! follows the retry rules on its own.

use futures::future::join_all;
use keel_client::{Client, ClientConfig, ReadMode};

use crate::mock::{
    Behavior, HangupNode, MockNode, bounded, client, eventually, sessionless_client,
};

#[tokio::test]
async fn concurrent_calls_share_one_stream_and_each_gets_its_own_answer() {
    let node = MockNode::start_batching(1, Behavior::Serve).await;
    let c = client(&[node.addr()]);
    let puts = (0..100).map(|i| {
        let c = c.clone();
        async move { c.put(format!("k{i}"), format!("v{i}")).await }
    });
    for r in bounded(join_all(puts)).await {
        r.expect("put");
    }
    let gets = (0..100).map(|i| {
        let c = c.clone();
        async move { (i, c.get(format!("k{i}"), ReadMode::Linearizable).await) }
    });
    for (i, r) in bounded(join_all(gets)).await {
        let kv = r.expect("get").kv.expect("present");
        assert_eq!(kv.value, format!("v{i}").into_bytes(), "answer of k{i}");
    }
    assert_eq!(node.calls("batch"), 1, "one stream for all calls");
    assert_eq!(node.calls("put"), 100);
    assert_eq!(node.calls("get"), 100);
}

#[tokio::test]
async fn a_member_without_batch_is_called_unary_and_asked_once() {
    let node = MockNode::start(1, Behavior::Serve).await;
    let c = client(&[node.addr()]);
    for i in 0..5 {
        bounded(c.put(format!("k{i}"), "v")).await.expect("put");
    }
    let got = bounded(c.get("k0", ReadMode::Linearizable))
        .await
        .expect("get");
    assert!(got.kv.is_some());
    assert_eq!(node.calls("batch"), 1, "UNIMPLEMENTED is remembered");
    assert_eq!(node.calls("put"), 5);
}

#[tokio::test]
async fn batching_can_be_turned_off() {
    let node = MockNode::start_batching(1, Behavior::Serve).await;
    let c = Client::new(ClientConfig {
        batching: false,
        ..ClientConfig::with_endpoints([node.addr()])
    })
    .expect("valid");
    bounded(c.put("k", "v")).await.expect("put");
    assert_eq!(node.calls("batch"), 0);
    assert_eq!(node.calls("put"), 1);
}

#[tokio::test]
async fn a_batched_not_leader_answer_is_followed() {
    let leader = MockNode::start_batching(2, Behavior::Serve).await;
    let follower = MockNode::start_batching(1, Behavior::NotLeader(leader.addr())).await;
    let c = sessionless_client(&[follower.addr()]);
    bounded(c.put("k", "v")).await.expect("redirected");
    assert_eq!(follower.calls("put"), 1);
    assert_eq!(leader.calls("put"), 1);
}

#[tokio::test]
async fn a_batched_write_that_got_no_answer_is_outcome_unknown() {
    let stuck = MockNode::start_batching(1, Behavior::Hang).await;
    let healthy = MockNode::start_batching(2, Behavior::Serve).await;
    let c = sessionless_client(&[stuck.addr(), healthy.addr()]);
    let err = bounded(c.put("k", "v")).await.expect_err("timed out");
    assert!(err.outcome_unknown(), "{err:?}");
    eventually(|| stuck.calls("put") == 1).await;
    assert_eq!(healthy.calls("put"), 0, "the write was retried");
}

#[tokio::test]
async fn a_batched_write_whose_member_hung_up_is_outcome_unknown_and_a_read_is_retried() {
    let crashing = HangupNode::start(b"hangup-key").await;
    let healthy = MockNode::start_batching(2, Behavior::Serve).await;
    let c = sessionless_client(&[crashing.addr(), healthy.addr()]);
    let err = bounded(c.put("hangup-key", "v"))
        .await
        .expect_err("hung up");
    assert!(err.outcome_unknown(), "{err:?}");
    assert_eq!(healthy.calls("put"), 0);

    let got = bounded(c.get("hangup-key", ReadMode::Linearizable))
        .await
        .expect("read retried elsewhere");
    assert_eq!(got.kv, None);
    assert_eq!(healthy.calls("get"), 1);
}

#[tokio::test]
async fn a_session_write_whose_batched_attempt_timed_out_is_retried_and_applied_once() {
    let node = MockNode::start_batching(1, Behavior::Serve).await;
    node.script([Behavior::Hang]);
    let c = client(&[node.addr()]);
    bounded(c.put("k", "v"))
        .await
        .expect("retried in its session");
    assert_eq!(node.calls("put"), 2);
    let sessions = node.sessions();
    assert_eq!(sessions.len(), 2);
    assert_eq!(
        sessions[0], sessions[1],
        "the retry repeats the sequence number"
    );
    assert!(sessions[0].is_some());
}

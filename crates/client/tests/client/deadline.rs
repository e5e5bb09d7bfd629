//! Giving up at the deadline, with an error that says nothing was applied.

use std::time::Duration;

use keel_client::{Error, ReadMode};
use tokio::time::Instant;

use crate::mock::{Behavior, MockNode, NEVER_HANGS, bounded, client, refused_addr};

#[tokio::test]
async fn gives_up_with_unavailable_when_no_leader_emerges() {
    let a = MockNode::start(1, Behavior::NoLeader).await;
    let b = MockNode::start(2, Behavior::NoLeader).await;
    let c = client(&[a.addr(), b.addr()]).with_deadline(Duration::from_millis(500));

    let started = Instant::now();
    let err = bounded(c.get("k", ReadMode::Default))
        .await
        .expect_err("no leader");
    let Error::Unavailable {
        attempts,
        ref last_error,
    } = err
    else {
        panic!("expected Unavailable, got {err:?}");
    };
    assert!(attempts >= 2, "only {attempts} attempts");
    assert!(last_error.contains("no leader"), "{last_error}");
    assert!(err.is_definite_failure());
    // Both members were tried: the client rotated.
    assert!(a.calls("get") >= 1 && b.calls("get") >= 1);
    assert!(started.elapsed() < NEVER_HANGS);
}

#[tokio::test]
async fn write_to_nothing_listening_is_unavailable_not_unknown() {
    let c = client(&[refused_addr().await, refused_addr().await])
        .with_deadline(Duration::from_millis(300));

    let err = bounded(c.put("k", "v")).await.expect_err("nobody there");
    assert!(
        matches!(err, Error::Unavailable { attempts, .. } if attempts >= 2),
        "{err:?}"
    );
    assert!(err.is_definite_failure());
}

#[tokio::test]
async fn overloaded_leader_is_retried_after_backoff() {
    let leader = MockNode::start(1, Behavior::Serve).await;
    leader.script([Behavior::Overloaded, Behavior::Overloaded]);
    let c = client(&[leader.addr()]);

    bounded(c.put("k", "v")).await.expect("put after backoff");
    assert_eq!(leader.calls("put"), 3);
}

#[tokio::test]
async fn overloaded_until_the_deadline_says_so() {
    let leader = MockNode::start(1, Behavior::Overloaded).await;
    let c = client(&[leader.addr()]).with_deadline(Duration::from_millis(300));

    let err = bounded(c.put("k", "v")).await.expect_err("overloaded");
    assert!(matches!(err, Error::Overloaded { .. }), "{err:?}");
    assert!(err.is_definite_failure());
    assert!(leader.calls("put") >= 2);
}

//! Fail-over with real processes: kill -9 of the leader, minority and majority
//! failures, full-cluster restart, and a follower catching up.

mod common;
mod placement;

use std::time::{Duration, Instant};

use common::workload::{assert_keys, value, write_keys};
use common::{TestCluster, eventually};
use keel_client::{Error, ReadMode};

const LEADER_TIMEOUT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_elects_another_and_loses_nothing() {
    let mut t = TestCluster::start(3);
    let old = t.wait_for_leader(LEADER_TIMEOUT).await;
    write_keys(&t, "k", 0..100, 8).await;
    t.cluster.kill(old).expect("kill leader");
    let killed = Instant::now();
    let new = t.wait_for_leader(LEADER_TIMEOUT).await;
    assert_ne!(new, old);
    eprintln!("new leader {new} after {:?}", killed.elapsed());
    assert_keys(&t, "k", 0..100, 8).await;
    // The cluster keeps accepting writes with one node down.
    t.client
        .put("after", "failover")
        .await
        .expect("write after fail-over");
    // The old leader comes back as a follower and catches up.
    t.cluster.spawn(old).expect("restart");
    t.wait_for_value_on(old, "after", "failover", Duration::from_secs(15))
        .await;
    t.assert_no_panics();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_keep_writing_with_any_two_down() {
    let mut t = TestCluster::start(5);
    let leader = t.wait_for_leader(LEADER_TIMEOUT).await;
    // Take down the leader and one follower: the worst pair.
    let follower = (1..=5).find(|&id| id != leader).expect("follower");
    t.cluster.kill(leader).expect("kill");
    t.cluster.kill(follower).expect("kill");
    t.wait_for_leader(LEADER_TIMEOUT).await;
    write_keys(&t, "five", 0..50, 8).await;
    assert_keys(&t, "five", 0..50, 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_majority_writes_fail_clearly_within_the_deadline() {
    let mut t = TestCluster::start(5);
    t.wait_for_leader(LEADER_TIMEOUT).await;
    t.client
        .put("before", "x")
        .await
        .expect("write with all up");
    for id in [1, 2, 3] {
        t.cluster.kill(id).expect("kill");
    }
    let deadline = Duration::from_secs(3);
    let client = t.client.with_deadline(deadline);
    let started = Instant::now();
    let err = client
        .put("during", "y")
        .await
        .expect_err("no majority, no write");
    let took = started.elapsed();
    // Never hangs: the call returns within its deadline (plus scheduling noise).
    assert!(took < deadline + Duration::from_secs(2), "took {took:?}");
    assert!(
        matches!(
            err,
            Error::Unavailable { .. } | Error::OutcomeUnknown { .. }
        ),
        "unexpected error: {err}"
    );
    assert!(!err.to_string().is_empty());
    // Reads fail too (they need a leader confirmed by a majority).
    let err = client
        .get("before", ReadMode::Linearizable)
        .await
        .expect_err("no majority");
    assert!(err.is_definite_failure(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_cluster_restart_keeps_all_data() {
    let mut t = TestCluster::start(3);
    t.wait_for_leader(LEADER_TIMEOUT).await;
    write_keys(&t, "r", 0..200, 8).await;
    for id in 1..=3 {
        t.cluster.kill(id).expect("kill");
    }
    for id in 1..=3 {
        t.cluster.spawn(id).expect("restart");
    }
    t.wait_for_leader(LEADER_TIMEOUT).await;
    assert_keys(&t, "r", 0..200, 8).await;
    t.assert_no_panics();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_down_during_a_thousand_writes_catches_up() {
    let mut t = TestCluster::start(3);
    let leader = t.wait_for_leader(LEADER_TIMEOUT).await;
    let follower = (1..=3).find(|&id| id != leader).expect("follower");
    t.cluster.kill(follower).expect("kill follower");
    write_keys(&t, "c", 0..1000, 8).await;
    let leader_status = t.status(leader).await.expect("leader answers");
    t.cluster.spawn(follower).expect("restart follower");
    // The log end: the published commit index can trail the last answer.
    let target = leader_status.last_index;
    eventually(
        Duration::from_secs(30),
        "the follower applies everything",
        || {
            let t = &t;
            async move {
                t.status(follower)
                    .await
                    .filter(|s| s.applied_index >= target)
                    .map(|_| ())
            }
        },
    )
    .await;
    for i in [0, 499, 999] {
        t.wait_for_value_on(
            follower,
            &format!("c{i}"),
            &value(i, 8),
            Duration::from_secs(5),
        )
        .await;
    }
}

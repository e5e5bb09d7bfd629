//! Quiescence with real processes (docs/sharding.md, "Heartbeats: coalesced,
//! and quiet groups quiesce"): an idle data group goes quiet on all its
//! replicas, a write to it wakes it and succeeds, and when the node leading it
//! is killed, node-level liveness wakes the quiesced followers so they elect a
//! new leader that takes writes.

use std::time::Duration;

use keel_client::{Client, ClientConfig, slot_for_key};
use keel_placement::Command;

use super::super::common::{TestCluster, eventually};
use super::hosting::{GROUP_TIMEOUT, agreed_leader, keel_shard, replica};
use super::map_on;
use super::moves::moved;

/// The test's key: one hash tag, so one slot, moved to the new group.
const KEY: &str = "{qz}key";

/// A client of every node still running.
fn client_of(t: &TestCluster, nodes: &[u64]) -> Client {
    Client::new(ClientConfig {
        deadline: Duration::from_secs(20),
        ..ClientConfig::with_endpoints(nodes.iter().map(|&id| t.cluster.grpc_addr(id).to_string()))
    })
    .expect("client")
}

/// Waits until every replica of `group` on `members` says it is quiesced.
async fn all_quiesced(t: &TestCluster, group: u64, members: &[u64]) {
    eventually(
        GROUP_TIMEOUT,
        &format!("group {group} quiesced on nodes {members:?}"),
        || async {
            for &id in members {
                if !replica(t, id, group).await?.quiesced {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_group_quiesces_wakes_for_writes_and_fails_over_when_its_leader_dies() {
    let mut t = TestCluster::start(3);
    let _ = map_on(&t, 1).await;
    let out = keel_shard(&t, 1, &["group", "create", "--members", "1,2,3"]);
    assert!(out.contains("created group 2"), "{out}");
    let _ = agreed_leader(&t, 2, &[1, 2, 3]).await;
    let slot = slot_for_key(KEY.as_bytes());
    t.client
        .change_map(&Command::BeginSlotMove { slot, to: 2 })
        .await
        .expect("begin the move");
    moved(&t, slot, 2).await;
    let client = client_of(&t, &[1, 2, 3]);
    client.put(KEY, "before").await.expect("first write");

    // Idle: every replica goes quiet, and the node says so in /metrics.
    all_quiesced(&t, 2, &[1, 2, 3]).await;
    let page = keel_testkit::prometheus::http_get(
        t.cluster.http_addr(1),
        "/metrics",
        Duration::from_secs(2),
    )
    .expect("metrics page");
    let gauge = keel_testkit::prometheus::sample(&page, "keel_quiesced_groups").unwrap_or(0.0);
    assert!(gauge >= 1.0, "keel_quiesced_groups is {gauge}");

    // A write to the quiesced group wakes it and succeeds.
    client
        .put(KEY, "woken")
        .await
        .expect("write to a quiesced group");
    let read = client
        .get(KEY, keel_client::ReadMode::Linearizable)
        .await
        .expect("read back");
    assert_eq!(read.kv.map(|kv| kv.value), Some("woken".into()));

    // Quiet again; then the leader's node dies. Its followers are quiesced:
    // only node-level liveness wakes them, and nothing here reads or writes
    // the group until they elected a new leader.
    all_quiesced(&t, 2, &[1, 2, 3]).await;
    let old = replica(&t, 1, 2).await.expect("node 1's replica").leader_id;
    t.cluster.kill(old).expect("kill the leader's node");
    let rest: Vec<u64> = (1..=3).filter(|&id| id != old).collect();
    let new = agreed_leader(&t, 2, &rest).await;
    assert_ne!(new, old, "a new leader among the living");
    let client = client_of(&t, &rest);
    client
        .put(KEY, "after failover")
        .await
        .expect("write after the failover");
    let read = client
        .get(KEY, keel_client::ReadMode::Linearizable)
        .await
        .expect("read back");
    assert_eq!(read.kv.map(|kv| kv.value), Some("after failover".into()));
    let events: String = rest
        .iter()
        .map(|&id| std::fs::read_to_string(t.cluster.event_log_path(id)).unwrap_or_default())
        .collect();
    assert!(
        events.contains(&format!(
            "Node {old} was silent for an election timeout: woke"
        )),
        "no node woke its quiesced replicas"
    );
    t.assert_no_panics();
}

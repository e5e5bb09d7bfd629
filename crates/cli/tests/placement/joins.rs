//! Nodes that join through placement (`keel serve --join … --join-as placed`):
//! one `JoinNode` command registers each and gives it its first replica —
//! here, every group being full, a new group with the least loaded nodes. The
//! second joiner's group has two members outside group 1, which reach each
//! other through the map's addresses and admit each other by it. A joined
//! node serves its group's keys, forwards group 1's (it is in no group 1
//! configuration), reports healthy, and hosts its group again after a restart.
//! `keel node remove` then moves its replica to another node and forgets it.

use std::time::Duration;

use keel_client::{ClientConfig, MapCommand, slot_for_key};

use super::super::common::{TestCluster, eventually, http, keel_bin};
use super::hosting::agreed_leader;
use super::members::{deleted, leads_with_voters};
use super::moves::moved;
use super::placed_calls::group_1_calls_through;
use super::{MAP_TIMEOUT, map_on};

/// A join, a new group's election and a slot move on a loaded machine.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// `(status, body)` of an HTTP call to node `id`.
pub(super) fn call(
    t: &TestCluster,
    id: u64,
    method: &str,
    path: &str,
    body: &[u8],
) -> (u16, String) {
    let (code, _, body) = http(t.cluster.http_addr(id), method, path, &[], body);
    (code, String::from_utf8_lossy(&body).into_owned())
}

/// Waits until node `id`'s map lists `group` with exactly `members`.
pub(super) async fn group_in_map(t: &TestCluster, id: u64, group: u64, members: &[u64]) {
    let client = t.node_client(id);
    eventually(
        JOIN_TIMEOUT,
        &format!("group {group} with members {members:?} in node {id}'s map"),
        || {
            let client = client.clone();
            async move {
                let map = client.cluster_map().await.ok()?;
                let got: Vec<u64> = map.groups().get(&group)?.members.iter().copied().collect();
                (got == members).then_some(())
            }
        },
    )
    .await;
}

/// Waits until node `id` answers `/healthz` with 200.
async fn healthy(t: &TestCluster, id: u64) {
    eventually(JOIN_TIMEOUT, &format!("node {id} healthy"), || async {
        (call(t, id, "GET", "/healthz", b"").0 == 200).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_joining_through_placement_form_groups_and_serve_them() {
    let mut t = TestCluster::start(3);
    let _ = map_on(&t, 1).await;
    t.wait_for_leader(MAP_TIMEOUT).await;

    // Node 4: every group is full, so it forms group 2 with nodes 1 and 2.
    let four = t
        .cluster
        .add_node(1, &["--join-as", "placed"])
        .expect("start node 4");
    group_in_map(&t, 1, 2, &[1, 2, four]).await;
    agreed_leader(&t, 2, &[1, 2, four]).await;
    // Node 5 forms group 3 with the least loaded: nodes 3 and 4. Nodes 4
    // and 5 are in no group 1 configuration: only the map says where they are
    // and lets their messages in.
    let five = t
        .cluster
        .add_node(2, &["--join-as", "placed"])
        .expect("start node 5");
    group_in_map(&t, 1, 3, &[3, four, five]).await;
    agreed_leader(&t, 3, &[3, four, five]).await;
    healthy(&t, four).await;
    healthy(&t, five).await;
    let events = std::fs::read_to_string(t.cluster.event_log_path(five)).unwrap_or_default();
    assert!(
        events.contains("placement gave it group(s) 3"),
        "node {five}'s events:\n{events}"
    );
    // Group 1 is unchanged: nodes 4 and 5 are not its members.
    let members = t.client.members().await.expect("members");
    let ids: Vec<u64> = members.members.iter().map(|m| m.id).collect();
    assert_eq!(ids, vec![1, 2, 3]);
    assert_ne!(members.leader_id, 0);
    // Asked of node 5, whose group 1 replica hears of nothing (it would know
    // no leader), the list is a group 1 member's: over gRPC and HTTP.
    let via_five = t
        .node_client(five)
        .members()
        .await
        .expect("members via node 5");
    let ids: Vec<u64> = via_five.members.iter().map(|m| m.id).collect();
    assert_eq!(ids, vec![1, 2, 3]);
    assert_eq!(via_five.leader_id, members.leader_id);
    let (code, body) = call(&t, five, "GET", "/v1/members", b"");
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains(&format!("\"leader_id\":{}", members.leader_id)),
        "{body}"
    );

    // A slot moves to group 3; node 5 serves it from its replica, and
    // forwards a key of group 1's to group 1's members.
    let key = "placed-key";
    let slot = slot_for_key(key.as_bytes());
    let other = (0..)
        .map(|i| format!("group1-key{i}"))
        .find(|k| slot_for_key(k.as_bytes()) != slot)
        .expect("keys spread over slots");
    t.client
        .change_map(&MapCommand::BeginSlotMove { slot, to: 3 })
        .await
        .expect("begin the move");
    moved(&t, slot, 3).await;
    for (k, v) in [(key, "in-group-3"), (other.as_str(), "in-group-1")] {
        eventually(
            JOIN_TIMEOUT,
            &format!("put {k} through node {five}"),
            || async {
                (call(&t, five, "PUT", &format!("/v1/kv/{k}"), v.as_bytes()).0 == 200).then_some(())
            },
        )
        .await;
    }
    for id in [1, four, five] {
        for (k, v) in [(key, "in-group-3"), (other.as_str(), "in-group-1")] {
            let (code, body) = call(&t, id, "GET", &format!("/v1/kv/{k}"), b"");
            assert_eq!(code, 200, "get {k} on node {id}: {body}");
            assert!(body.contains(v), "get {k} on node {id}: {body}");
        }
    }
    // The client library routes to group 3's members by the map too.
    let client = keel_client::Client::new(ClientConfig {
        deadline: Duration::from_secs(20),
        ..ClientConfig::with_endpoints([t.cluster.grpc_addr(four).to_string()])
    })
    .expect("client");
    client
        .put(key, "by-client")
        .await
        .expect("put through the client");

    // Restarted, node 5 hosts group 3 again (from its boot file) and serves.
    t.cluster.kill(five).expect("kill node 5");
    t.cluster.spawn(five).expect("restart node 5");
    agreed_leader(&t, 3, &[3, four, five]).await;
    healthy(&t, five).await;
    eventually(JOIN_TIMEOUT, "node 5 serving the key again", || async {
        let (code, body) = call(&t, five, "GET", &format!("/v1/kv/{key}"), b"");
        (code == 200 && body.contains("by-client")).then_some(())
    })
    .await;

    // `keel node remove`: node 5's replica of group 3 goes to the least
    // loaded other node (node 1), then node 5 is forgotten.
    let out = keel_node_remove(&t, five);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("done: add node 1 to group 3")
            && text(&out).contains(&format!("node {five} removed from the cluster map")),
        "{}",
        text(&out)
    );
    leads_with_voters(&t, 3, &[1, 3, four], &[1, 3, four]).await;
    deleted(&t, five, 3).await;
    let map = t.client.cluster_map().await.expect("map");
    assert!(!map.nodes().contains_key(&five));
    let (code, body) = call(&t, 1, "GET", &format!("/v1/kv/{key}"), b"");
    assert!(code == 200 && body.contains("by-client"), "{code} {body}");
    // A member of group 1 is left to `keel member remove`.
    let out = keel_node_remove(&t, 2);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("keel member remove 2"),
        "{}",
        text(&out)
    );
    // Group 1's member changes and leader transfer sent to node 4, which is
    // outside group 1 (`placed_calls.rs`).
    group_1_calls_through(&mut t, four).await;
    t.assert_no_panics();
}

/// Runs `keel node remove ID` through node 1.
fn keel_node_remove(t: &TestCluster, id: u64) -> std::process::Output {
    std::process::Command::new(keel_bin())
        .args(["node", "remove", &id.to_string()])
        .args(["--endpoints", &t.cluster.grpc_addr(1).to_string()])
        .output()
        .expect("run keel node remove")
}

/// A command's output, both streams.
fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

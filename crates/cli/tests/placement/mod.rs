//! The placement group with real processes: every node shows the same cluster
//! map (gRPC `Cluster.Map`, HTTP `/v1/cluster/map`, `keel shard map`), the map
//! survives losing the placement leader and a restart, and nodes outside the
//! placement group follow it. Operators' changes to the map: `change.rs`.

use std::process::Command;
use std::time::Duration;

use keel_client::ClusterMap;

mod change;
mod forward;
mod group1_map;
mod hosting;
mod joins;
mod leaders;
mod members;
mod moves;
mod nine;
mod placed_calls;
mod quiesce;
mod routing;
mod sessions;
mod slot_rpc;

use super::common::{TestCluster, eventually, http, keel_bin};

const MAP_TIMEOUT: Duration = Duration::from_secs(20);
const SLOTS: usize = 4096;

/// Node `id`'s cached map, once it has one.
async fn map_on(t: &TestCluster, id: u64) -> ClusterMap {
    let client = t.node_client(id);
    eventually(MAP_TIMEOUT, &format!("a cluster map on node {id}"), || {
        let client = client.clone();
        async move { client.cluster_map().await.ok() }
    })
    .await
}

/// Checks `map` is the initial map of a cluster of `nodes` nodes.
fn assert_initial(map: &ClusterMap, nodes: u64) {
    assert!(map.version() >= 1, "version {}", map.version());
    let ids: Vec<u64> = map.nodes().keys().copied().collect();
    assert_eq!(ids, (1..=nodes).collect::<Vec<_>>());
    let group = map.groups().get(&1).expect("group 1");
    assert_eq!(
        group.members.iter().copied().collect::<Vec<_>>(),
        (1..=nodes).collect::<Vec<_>>()
    );
    assert_eq!(u64::from(group.target_replicas), nodes);
    assert_eq!(map.slots_of(1).count(), SLOTS);
    assert!(map.moves().is_empty());
}

/// The times node `id` became the placement group's leader, by its event
/// log: the terms it led.
fn placement_terms_led(t: &TestCluster, id: u64) -> Vec<u64> {
    let text = std::fs::read_to_string(t.cluster.event_log_path(id)).unwrap_or_default();
    let prefix = format!("[placement group] Node {id} became the leader for term ");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|l| l.trim_end_matches('.').parse().ok())
        .collect()
}

/// The node that most recently became the placement group's leader (by term).
fn placement_leader(t: &TestCluster, nodes: &[u64]) -> Option<u64> {
    nodes
        .iter()
        .filter_map(|&id| {
            placement_terms_led(t, id)
                .into_iter()
                .max()
                .map(|term| (term, id))
        })
        .max()
        .map(|(_, id)| id)
}

/// Runs `keel shard map` with `args` against node `id`.
fn shard_map(t: &TestCluster, id: u64, args: &[&str]) -> String {
    let addr = t.cluster.grpc_addr(id).to_string();
    let out = Command::new(keel_bin())
        .args(["shard", "map", "--node", &addr, "--endpoints", &addr])
        .args(args)
        .output()
        .expect("run keel shard map");
    assert!(
        out.status.success(),
        "keel shard map failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_shows_the_same_map_and_a_restart_keeps_it() {
    let mut t = TestCluster::start(3);
    let first = map_on(&t, 1).await;
    assert_initial(&first, 3);
    for id in 2..=3 {
        assert_eq!(map_on(&t, id).await, first, "node {id}");
    }
    // HTTP: the same map, with its version.
    for id in 1..=3 {
        let (code, _, body) = http(t.cluster.http_addr(id), "GET", "/v1/cluster/map", &[], b"");
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(json["version"], first.version());
        let map = ClusterMap::decode(json["map"].to_string().as_bytes()).expect("a map");
        assert_eq!(map, first);
    }
    // The CLI, as text and as JSON.
    let text = shard_map(&t, 2, &[]);
    assert!(
        text.contains(&format!("map version {}", first.version())),
        "{text}"
    );
    assert!(text.contains("members 1,2,3"), "{text}");
    assert!(text.contains("target 3"), "{text}");
    assert!(text.contains("slots 0-4095 (4096)"), "{text}");
    assert!(text.contains("moves: none"), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&shard_map(&t, 3, &["--json"])).expect("json");
    assert_eq!(json["version"], first.version());
    // Placement events are labelled, and the group elected a leader.
    assert!(placement_leader(&t, &[1, 2, 3]).is_some());
    // A node killed and restarted comes back with the same map.
    t.cluster.kill(2).expect("kill");
    t.cluster.spawn(2).expect("restart");
    assert_eq!(map_on(&t, 2).await, first);
    // The placement group's files are where docs/operations.md says.
    let dir = t.cluster.data_dir(2);
    assert!(dir.join("state/18446744073709551615.redb").exists());
    assert!(dir.join("state.redb").exists());
    t.assert_no_panics();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_map_outlives_the_placement_leader_and_another_node() {
    let mut t = TestCluster::start(5);
    let map = map_on(&t, 1).await;
    assert_initial(&map, 5);
    for id in 2..=5 {
        assert_eq!(map_on(&t, id).await, map, "node {id}");
    }
    let all: Vec<u64> = (1..=5).collect();
    let leader = eventually(MAP_TIMEOUT, "a placement leader", || {
        let leader = placement_leader(&t, &all);
        async move { leader }
    })
    .await;
    let old_term = placement_terms_led(&t, leader)
        .into_iter()
        .max()
        .unwrap_or(0);
    let other = if leader == 1 { 2 } else { 1 };
    t.cluster.kill(leader).expect("kill placement leader");
    t.cluster.kill(other).expect("kill another");
    let survivors: Vec<u64> = (1..=5).filter(|&id| id != leader && id != other).collect();
    for &id in &survivors {
        assert_eq!(map_on(&t, id).await, map, "survivor {id}");
    }
    // The placement group elects a new leader among the survivors.
    eventually(MAP_TIMEOUT, "a new placement leader", || {
        let found = survivors.iter().any(|&id| {
            placement_terms_led(&t, id)
                .iter()
                .any(|&term| term > old_term)
        });
        async move { found.then_some(()) }
    })
    .await;
    t.assert_no_panics();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_outside_the_placement_group_follow_the_map() {
    // Four nodes: the placement group is nodes 1 to 3; node 4 follows.
    let mut t = TestCluster::start(4);
    let map = map_on(&t, 1).await;
    assert_initial(&map, 4);
    assert_eq!(map_on(&t, 4).await, map);
    assert!(
        !t.cluster
            .data_dir(4)
            .join("state/18446744073709551615.redb")
            .exists(),
        "node 4 hosts no placement replica"
    );
    // A node that joins later follows it too, and registers itself in it at
    // its advertised address (so it can be given replicas).
    t.wait_for_leader(MAP_TIMEOUT).await;
    let joined = t.cluster.add_node(1, &[]).expect("join");
    let address = t.cluster.grpc_addr(joined).to_string();
    let client = keel_client::Client::new(keel_client::ClientConfig {
        deadline: Duration::from_secs(2),
        request_timeout: Duration::from_secs(1),
        ..keel_client::ClientConfig::with_endpoints([address.clone()])
    })
    .expect("client");
    let registered = eventually(MAP_TIMEOUT, "the joined node registered", || {
        let client = client.clone();
        let address = address.clone();
        async move {
            let got = client.cluster_map().await.ok()?;
            let listed = got.nodes().get(&joined).map(|n| n.address.as_str());
            (listed == Some(address.as_str())).then_some(got)
        }
    })
    .await;
    assert!(registered.version() > map.version());
    // Registering changes no group. Group 1's leader may already have added
    // the new group 1 voter to the map's group 1 (`group1_mirror.rs`).
    let mut groups = registered.groups().clone();
    if let Some(first) = groups.get_mut(&1) {
        first.members.remove(&joined);
    }
    assert_eq!(&groups, map.groups(), "registering changes no group");
    // A follower that restarts while a placement member is down finds the
    // map at another member.
    t.cluster.kill(1).expect("kill");
    t.cluster.kill(4).expect("kill");
    t.cluster.spawn(4).expect("restart");
    let after = map_on(&t, 4).await;
    assert!(after.version() >= registered.version());
    assert!(after.nodes().contains_key(&joined));
    t.assert_no_panics();
}

/// The WAL segments node `id` has deleted, by its event log (`compacted its
/// log: … and N WAL segment(s) were deleted`, from either group's compaction:
/// the one that frees a segment last deletes it).
fn segments_deleted(t: &TestCluster, id: u64) -> usize {
    let text = std::fs::read_to_string(t.cluster.event_log_path(id)).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("compacted its log: "))
        .filter_map(|l| {
            l.split(", and ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quiet_placement_group_does_not_keep_the_wal_from_shrinking() {
    let mut t = TestCluster::start_with(3, super::common::workload::SNAPSHOT_FLAGS);
    map_on(&t, 1).await;
    // Several 1 MiB segments and several snapshot thresholds of group 1; the
    // placement group's few entries are in the first segment.
    super::common::workload::write_keys(&t, "k", 0..900, 4 << 10).await;
    for id in 1..=3 {
        eventually(
            Duration::from_secs(30),
            &format!("WAL segments deleted on node {id}"),
            || {
                let deleted = segments_deleted(&t, id);
                async move { (deleted > 0).then_some(()) }
            },
        )
        .await;
        let events = std::fs::read_to_string(t.cluster.event_log_path(id)).unwrap_or_default();
        assert!(
            events
                .lines()
                .any(|l| l.starts_with("[placement group] ") && l.contains("took a snapshot")),
            "node {id} took no placement snapshot"
        );
    }
    // The map survives a restart from the placement group's snapshot.
    let map = map_on(&t, 3).await;
    t.cluster.kill(3).expect("kill");
    t.cluster.spawn(3).expect("restart");
    assert_eq!(map_on(&t, 3).await, map);
    t.assert_no_panics();
}

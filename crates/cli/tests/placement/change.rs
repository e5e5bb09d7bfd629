//! Operators change the cluster map (`Cluster.ChangeMap`, `keel shard group
//! ...`) through any node, placement member or not, and every node's copy
//! follows; refused commands change nothing.

use std::process::{Command, Output};

use keel_client::ClusterMap;

use super::super::common::{TestCluster, eventually, http, keel_bin};
use super::{MAP_TIMEOUT, map_on, placement_leader};

/// Runs `keel shard <args>` with node `id` as the only endpoint.
pub(super) fn keel_shard(t: &TestCluster, id: u64, args: &[&str]) -> Output {
    let addr = t.cluster.grpc_addr(id).to_string();
    Command::new(keel_bin())
        .arg("shard")
        .args(args)
        .args(["--endpoints", &addr, "--timeout-ms", "10000"])
        .output()
        .expect("run keel shard")
}

/// Like [`keel_shard`], for a command that must succeed; its stdout.
pub(super) fn keel_shard_ok(t: &TestCluster, id: u64, args: &[&str]) -> String {
    let out = keel_shard(t, id, args);
    assert!(
        out.status.success(),
        "keel shard {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Like [`keel_shard`], for a command that must fail; its stderr.
pub(super) fn keel_shard_err(t: &TestCluster, id: u64, args: &[&str]) -> String {
    let out = keel_shard(t, id, args);
    assert!(
        !out.status.success(),
        "keel shard {args:?} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).expect("utf-8")
}

/// Waits until every node in `nodes` caches a map at `version` at least, and
/// returns node `nodes[0]`'s.
pub(super) async fn map_everywhere(t: &TestCluster, nodes: &[u64], version: u64) -> ClusterMap {
    let mut first = None;
    for &id in nodes {
        let client = t.node_client(id);
        let map = eventually(
            MAP_TIMEOUT,
            &format!("map version {version} on node {id}"),
            || {
                let client = client.clone();
                async move {
                    client
                        .cluster_map()
                        .await
                        .ok()
                        .filter(|m| m.version() >= version)
                }
            },
        )
        .await;
        first.get_or_insert(map);
    }
    first.expect("at least one node")
}

/// The members of `group` in `map` (empty if there is no such group).
fn members(map: &ClusterMap, group: u64) -> Vec<u64> {
    map.groups()
        .get(&group)
        .map(|g| g.members.iter().copied().collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_creates_changes_and_removes_a_group_through_a_follower() {
    let t = TestCluster::start(3);
    let nodes = [1, 2, 3];
    let initial = map_on(&t, 1).await;
    let leader = eventually(MAP_TIMEOUT, "a placement leader", || {
        let leader = placement_leader(&t, &nodes);
        async move { leader }
    })
    .await;
    // Sent to a node whose placement replica does not lead (as of the
    // events read above; if leadership moved since, the call is forwarded
    // from wherever it lands all the same).
    let via = if leader == 1 { 2 } else { 1 };

    let out = keel_shard_ok(&t, via, &["group", "create", "--members", "2,3"]);
    assert!(
        out.contains("created group 2 with members 2, 3 and target 2 replicas"),
        "{out}"
    );
    let created = initial.version() + 1;
    assert!(out.contains(&format!("map version {created}")), "{out}");
    for &id in &nodes {
        let map = map_everywhere(&t, &[id], created).await;
        assert_eq!(map.version(), created, "node {id}");
        assert_eq!(members(&map, 2), vec![2, 3], "node {id}");
        assert_eq!(map.groups()[&2].target_replicas, 2);
        assert_eq!(map.slots_of(2).count(), 0, "a later group owns no slots");
        assert_eq!(map.slots_of(1).count(), 4096);
    }
    let text = keel_shard_ok(
        &t,
        3,
        &["map", "--node", &t.cluster.grpc_addr(3).to_string()],
    );
    assert!(text.contains("members 2,3"), "{text}");

    // Refused commands say why and change nothing: the next change gets the
    // very next version.
    let err = keel_shard_err(&t, via, &["group", "create", "--members", "2,9"]);
    assert!(err.contains("node 9 is not registered"), "{err}");
    let err = keel_shard_err(&t, via, &["group", "remove", "1"]);
    assert!(err.contains("group 1 still owns 4096 slots"), "{err}");
    let err = keel_shard_err(&t, via, &["group", "set-replicas", "7", "3"]);
    assert!(err.contains("group 7 does not exist"), "{err}");
    let map = map_on(&t, leader).await;
    assert_eq!(map.version(), created, "refusals wrote nothing");

    let out = keel_shard_ok(&t, via, &["group", "set-replicas", "2", "3"]);
    assert!(
        out.contains(&format!(
            "group 2 now targets 3 replicas (map version {})",
            created + 1
        )),
        "{out}"
    );
    let map = map_everywhere(&t, &nodes, created + 1).await;
    assert_eq!(map.groups()[&2].target_replicas, 3);
    // Already true: nothing changes.
    let out = keel_shard_ok(&t, via, &["group", "set-replicas", "2", "3"]);
    assert!(out.contains("nothing changed"), "{out}");

    let json: serde_json::Value =
        serde_json::from_str(&keel_shard_ok(&t, via, &["group", "remove", "2", "--json"]))
            .expect("json");
    assert_eq!(json["changed"], true);
    assert_eq!(json["version"], created + 2);
    let map = map_everywhere(&t, &nodes, created + 2).await;
    assert!(members(&map, 2).is_empty(), "group 2 is gone");
    assert_eq!(map.slots_of(1).count(), 4096);
    t.assert_no_panics();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_outside_the_placement_group_forwards_changes_and_bad_input_changes_nothing() {
    // Four nodes: the placement group is nodes 1 to 3; node 4 is not in it.
    let t = TestCluster::start(4);
    let initial = map_on(&t, 4).await;
    let out = keel_shard_ok(
        &t,
        4,
        &["group", "create", "--members", "4", "--replicas", "3"],
    );
    assert!(out.contains("created group 2 with members 4"), "{out}");
    let map = map_everywhere(&t, &[4, 1], initial.version() + 1).await;
    assert_eq!(members(&map, 2), vec![4]);
    assert_eq!(map.groups()[&2].target_replicas, 3);

    // HTTP: a body that is no command is refused before anything is sent on.
    let addr = t.cluster.http_addr(4);
    let (code, _, body) = http(addr, "POST", "/v1/cluster/map", &[], b"{\"op\":\"x\"}");
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&body));
    let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(json["kind"], "invalid_argument");
    // A command in its stored form is applied, from this node too.
    let command =
        br#"{"format":1,"command":{"op":"set_target_replicas","group":2,"target_replicas":1}}"#;
    let (code, _, body) = http(addr, "POST", "/v1/cluster/map", &[], command);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(json["changed"], true);
    assert_eq!(json["version"], initial.version() + 2);
    let map = map_everywhere(&t, &[4, 2], initial.version() + 2).await;
    assert_eq!(map.groups()[&2].target_replicas, 1);
    t.assert_no_panics();
}

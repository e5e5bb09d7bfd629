//! The client sends each key to its group's leader (docs/sharding.md,
//! *Routing*): with groups 1 and 2 led by different nodes, writes that
//! alternate between their keys reach each group's leader directly — no
//! NOT_LEADER redirect and no forwarding per write, which the nodes' request
//! counters would show (every forwarded or redirected write is counted by two
//! nodes).

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use keel_client::{MapCommand, slot_for_key};
use keel_testkit::prometheus::{http_get, sample};

use super::super::common::{TestCluster, eventually, keel_bin};
use super::hosting::{agreed_leader, keel_shard};
use super::joins::call;
use super::moves::moved;
use super::{MAP_TIMEOUT, map_on};

/// Key-value requests of `op` node `id` has answered, whatever the outcome.
fn requests_on(t: &TestCluster, id: u64, op: &str) -> f64 {
    let page = http_get(t.cluster.http_addr(id), "/metrics", Duration::from_secs(5))
        .expect("metrics page");
    let prefix = format!("keel_client_request_seconds_count{{op=\"{op}\"");
    page.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn puts_everywhere(t: &TestCluster) -> f64 {
    (1..=3).map(|id| requests_on(t, id, "Put")).sum()
}

/// Waits until every node's replica of group 2 has the same digest at the
/// same applied index, holding exactly the one key written to its slot, and
/// returns the digest's hash.
async fn group_2_replicas_agree(t: &TestCluster) -> String {
    let what = "group 2's digest equal on every node, with one key";
    eventually(MAP_TIMEOUT, what, || async {
        let mut seen = Vec::new();
        for id in 1..=3 {
            let addr = t.cluster.grpc_addr(id).to_string();
            let d = t.client.group_digest(&addr, 2).await.ok()?;
            seen.push((d.applied_index, d.keys, d.hash));
        }
        let first = seen[0].clone();
        (first.1 == 1 && seen.iter().all(|s| *s == first)).then_some(first.2)
    })
    .await
}

/// The value of the series `series` (a metric name with its labels, if any)
/// on node `id` (`None`: no such series, or no answer).
fn gauge_on(t: &TestCluster, id: u64, series: &str) -> Option<f64> {
    let page = http_get(t.cluster.http_addr(id), "/metrics", Duration::from_secs(5)).ok()?;
    sample(&page, series)
}

/// Waits until every node's per-group gauges say `leader_1` leads group 1
/// and `leader_2` group 2 (and the node-level `keel_is_leader`, group 1's,
/// agrees), and every node lists the placement group's.
async fn per_group_gauges_show(t: &TestCluster, leader_1: u64, leader_2: u64) {
    let what = format!(
        "per-group gauges naming node {leader_1} group 1's leader and node {leader_2} \
         group 2's, on every node"
    );
    eventually(MAP_TIMEOUT, &what, || async {
        (1..=3)
            .all(|id| {
                let g = |s: &str| gauge_on(t, id, s);
                let one = Some(if id == leader_1 { 1.0 } else { 0.0 });
                let two = Some(if id == leader_2 { 1.0 } else { 0.0 });
                g("keel_group_is_leader{group=\"1\"}") == one
                    && g("keel_group_is_leader{group=\"2\"}") == two
                    && g("keel_is_leader") == one
                    && g("keel_group_term{group=\"placement\"}").is_some()
            })
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_goes_straight_to_its_groups_leader() {
    let mut t = TestCluster::start(3);
    let first = t.wait_for_leader(MAP_TIMEOUT).await;
    let _ = map_on(&t, 1).await;
    let out = keel_shard(&t, 1, &["group", "create", "--members", "1,2,3"]);
    assert!(out.contains("created group 2"), "{out}");
    let leader_2 = agreed_leader(&t, 2, &[1, 2, 3]).await;
    // Group 1's leader elsewhere than group 2's.
    let leader_1 = if leader_2 == first {
        let to = (1..=3).find(|&id| id != leader_2).expect("another node");
        t.client.transfer_leader(to).await.expect("transfer");
        t.wait_for_leader(MAP_TIMEOUT).await
    } else {
        first
    };
    assert_ne!(leader_1, leader_2, "a leader moved while the test set up");
    // Each node's metrics say which groups it leads.
    per_group_gauges_show(&t, leader_1, leader_2).await;
    // So does the dashboard's status, asked of any node.
    let status = http_get(
        t.cluster.http_addr(3),
        "/v1/cluster/status",
        Duration::from_secs(5),
    )
    .expect("cluster status");
    let status: serde_json::Value = serde_json::from_str(&status).expect("JSON");
    let leaders: Vec<(u64, u64)> = status["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| {
            (
                g["group"].as_u64().expect("group id"),
                g["leader"].as_u64().expect("leader id"),
            )
        })
        .collect();
    assert_eq!(leaders, [(1, leader_1), (2, leader_2)], "{status}");

    let slot = slot_for_key(b"two");
    t.client
        .change_map(&MapCommand::BeginSlotMove { slot, to: 2 })
        .await
        .expect("begin the move");
    moved(&t, slot, 2).await;
    // Group 1 no longer holds the whole key space: a backup of it alone
    // would lack the moved slot's keys, and is refused.
    let refused = match t.client.snapshot_save().await {
        Ok(_) => panic!("a backup of group 1 alone was started"),
        Err(e) => e.to_string(),
    };
    assert!(
        refused.contains("does not hold the whole key space"),
        "{refused}"
    );

    // A client that has never seen the map learns it and both leaders from
    // its first writes (a redirect or a forward each, at most).
    let client = t.client.clone();
    let key_2 = Bytes::from_static(b"two");
    let key_1 = (0u32..)
        .map(|i| Bytes::from(format!("one{i}")))
        .find(|k| slot_for_key(k) != slot)
        .expect("a key of group 1");
    for _ in 0..3 {
        for key in [&key_1, &key_2] {
            client
                .put(key.clone(), Bytes::from_static(b"warm"))
                .await
                .expect("put");
        }
    }

    let before = puts_everywhere(&t);
    let writes = 40;
    for n in 0..writes {
        let key = if n % 2 == 0 { &key_1 } else { &key_2 };
        client
            .put(key.clone(), Bytes::from(format!("v{n}")))
            .await
            .expect("put");
    }
    let requests = puts_everywhere(&t) - before;
    // One request per write; a router with one leader for both groups pays a
    // redirect on every other write (about 1.5 requests per write), and a
    // client sending everything to one node makes it forward half of them.
    assert!(
        requests <= f64::from(writes) + 4.0,
        "{writes} alternating writes took {requests} Put requests across the nodes"
    );

    // Group 2's replicas compare equal (its digest, asked of each node), and
    // hold its slot's key; a group a node does not host is refused.
    let group_2 = group_2_replicas_agree(&t).await;
    let addr = t.cluster.grpc_addr(1).to_string();
    let group_1 = t.client.digest(&addr).await.expect("group 1's digest");
    assert_ne!(
        group_1.hash, group_2,
        "group 2's digest is of its own replica"
    );
    let (code, body) = call(&t, 1, "GET", "/v1/digest?group=9", b"");
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("does not host group 9"), "{body}");

    // Group 2's leadership moves on request, asked of a node that does not
    // lead it (it finds the leader among group 2's members).
    let to = (1..=3)
        .find(|&id| id != leader_2 && id != leader_1)
        .expect("a third node");
    let out = Command::new(keel_bin())
        .args([
            "leader",
            "transfer",
            "--group",
            "2",
            "--to",
            &to.to_string(),
        ])
        .args(["--endpoints", &t.cluster.grpc_addr(leader_1).to_string()])
        .output()
        .expect("run keel leader transfer");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains(&format!("node {to} leads group 2 now")),
        "{said}"
    );
    assert_eq!(agreed_leader(&t, 2, &[1, 2, 3]).await, to);
    // A group the map does not have is refused, and nothing changes.
    let out = Command::new(keel_bin())
        .args(["leader", "transfer", "--group", "9"])
        .args(["--endpoints", &t.cluster.grpc_addr(leader_1).to_string()])
        .output()
        .expect("run keel leader transfer");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("has no group 9"),
        "{said}"
    );
    let leader_2 = to;

    // Stopped gracefully, group 2's leader hands that group over too (not
    // only group 1 and the placement group), so its slots need not wait out
    // an election timeout.
    let status = t
        .cluster
        .stop(leader_2, Duration::from_secs(20))
        .expect("stop")
        .expect("was running");
    assert!(status.success(), "{status:?}");
    let log = std::fs::read_to_string(t.cluster.event_log_path(leader_2)).unwrap_or_default();
    assert!(
        log.lines().any(|l| l.contains("[group 2]")
            && l.contains(&format!("Leader {leader_2} is handing leadership to Node"))),
        "{log}"
    );
    t.assert_no_panics();
}

//! Group 1's cluster calls sent to a node outside group 1 (one joined through
//! placement), whose own group 1 replica knows no leader: the node asks group
//! 1's members from its map (`api/group1_calls.rs`). A node joins group 1
//! through it (`keel serve --join` asks it for the member list and to add the
//! node), is promoted through it over HTTP, is handed group 1's leadership
//! through it over gRPC, and is removed through it while leading; group 1's
//! members show each step. The digest, which compares a node's own replica,
//! is refused there instead. Run at the end of `joins.rs`, on its cluster.

use std::time::Duration;

use keel_client::{Client, ClientConfig};

use super::super::common::{TestCluster, eventually};
use super::joins::call;

/// Joining, catching up and a leadership hand-off on a loaded machine.
const TIMEOUT: Duration = Duration::from_secs(60);

/// A client of node `id` alone, patient enough for a forwarded change.
fn client_of(t: &TestCluster, id: u64) -> Client {
    Client::new(ClientConfig {
        deadline: Duration::from_secs(20),
        ..ClientConfig::with_endpoints([t.cluster.grpc_addr(id).to_string()])
    })
    .expect("client")
}

/// Waits until node 1, a member of group 1, lists exactly `voters` and
/// `learners` and names a leader `leads` accepts; returns that leader.
async fn group_1_on_node_1(
    t: &TestCluster,
    voters: &[u64],
    learners: &[u64],
    leads: impl Fn(u64) -> bool,
) -> u64 {
    let client = t.node_client(1);
    let what = format!("group 1 with voters {voters:?} and learners {learners:?} on node 1");
    eventually(TIMEOUT, &what, || {
        let client = client.clone();
        let leads = &leads;
        async move {
            let list = client.members().await.ok()?;
            let ids = |voter: bool| -> Vec<u64> {
                let mut ids: Vec<u64> = list
                    .members
                    .iter()
                    .filter(|m| m.voter == voter)
                    .map(|m| m.id)
                    .collect();
                ids.sort_unstable();
                ids
            };
            (ids(true) == voters && ids(false) == learners && leads(list.leader_id))
                .then_some(list.leader_id)
        }
    })
    .await
}

/// Runs group 1's membership changes and a leader transfer through `placed`,
/// a node outside group 1, and checks each on node 1.
pub(super) async fn group_1_calls_through(t: &mut TestCluster, placed: u64) {
    let not_zero = |leader: u64| leader != 0;
    group_1_on_node_1(t, &[1, 2, 3], &[], not_zero).await;
    // Added as a learner through the placed node.
    let six = t
        .cluster
        .add_node(placed, &["--learner"])
        .expect("start a node joining through the placed node");
    group_1_on_node_1(t, &[1, 2, 3], &[six], not_zero).await;

    // Promoted through it over HTTP, once caught up (the leader refuses a
    // learner still behind).
    let path = format!("/v1/members/{six}/promote");
    eventually(TIMEOUT, "promote through the placed node", || async {
        let (code, body) = call(t, placed, "POST", &path, b"");
        (code == 200).then_some(()).or_else(|| {
            assert!(!body.contains("outside group 1"), "{code} {body}");
            None
        })
    })
    .await;
    group_1_on_node_1(t, &[1, 2, 3, six], &[], not_zero).await;

    // Handed group 1's leadership through it over gRPC.
    let client = client_of(t, placed);
    let leader = client.transfer_leader(six).await.expect("transfer");
    assert_eq!(leader, six);
    group_1_on_node_1(t, &[1, 2, 3, six], &[], |l| l == six).await;
    // Its dashboard's members are group 1's as they are now (node 6 leading
    // among them), not its inert replica's bootstrap view.
    let (code, body) = call(t, placed, "GET", "/v1/cluster/status", b"");
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let ids: Vec<u64> = status["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["id"].as_u64())
        .collect();
    assert_eq!(ids, [1, 2, 3, six], "{status}");
    assert_eq!(status["leader_id"].as_u64(), Some(six), "{status}");

    // Removed through it while leading: the leader hands over, then the new
    // one removes it.
    client.remove_member(six).await.expect("remove the leader");
    group_1_on_node_1(t, &[1, 2, 3], &[], |l| l != 0 && l != six).await;
    t.cluster.kill(six).expect("stop the removed node");

    // The digest compares a node's own replica: the placed node has none of
    // group 1 and says so rather than answer another node's.
    let (code, body) = call(t, placed, "GET", "/v1/digest", b"");
    assert_ne!(code, 200, "{body}");
    assert!(
        body.contains("no group 1 replica state to digest"),
        "{body}"
    );
    let (code, body) = call(t, 1, "GET", "/v1/digest", b"");
    assert_eq!(code, 200, "{body}");

    // Nor does it back group 1 up: its inert replica would stream an empty
    // file that restores as a valid, empty cluster.
    let refused = match client.snapshot_save().await {
        Ok(_) => panic!("a backup through the placed node was started"),
        Err(e) => e.to_string(),
    };
    assert!(refused.contains("outside group 1"), "{refused}");
}

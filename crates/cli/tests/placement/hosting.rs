//! Groups the cluster map creates get replicas on their members: each member
//! starts one from the group's initial members, the group elects a leader,
//! a restarted member hosts it again from its boot file, and `keel shard
//! status` shows it all.

use std::process::Command;
use std::time::Duration;

use keel_client::GroupStatus;

use super::super::common::{TestCluster, eventually, keel_bin};
use super::MAP_TIMEOUT;

/// Long enough for a new group's first election on a loaded machine.
const GROUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Node `id`'s replica of `group`, if it hosts one (and answers).
async fn replica(t: &TestCluster, id: u64, group: u64) -> Option<GroupStatus> {
    let client = t.node_client(id);
    let status = client
        .status(&t.cluster.grpc_addr(id).to_string())
        .await
        .ok()?;
    status.groups.into_iter().find(|g| g.group == group)
}

/// Waits until `group` has a leader among `members` that each member agrees
/// on (in the same term); returns it.
pub(super) async fn agreed_leader(t: &TestCluster, group: u64, members: &[u64]) -> u64 {
    eventually(
        GROUP_TIMEOUT,
        &format!("a leader of group {group}"),
        || async {
            let mut seen = Vec::new();
            for &id in members {
                seen.push(replica(t, id, group).await?);
            }
            let leader = seen.iter().find(|g| g.role == "leader")?;
            let agreed = seen
                .iter()
                .all(|g| g.leader_id == leader.leader_id && g.term == leader.term);
            // The leader's first entry of its term committed everywhere.
            let committed = seen.iter().all(|g| g.commit_index >= 1);
            (agreed && committed).then_some(leader.leader_id)
        },
    )
    .await
}

pub(super) fn keel_shard(t: &TestCluster, id: u64, args: &[&str]) -> String {
    let addr = t.cluster.grpc_addr(id).to_string();
    let out = Command::new(keel_bin())
        .arg("shard")
        .args(args)
        .args(["--endpoints", &addr, "--timeout-ms", "10000"])
        .output()
        .expect("run keel shard");
    assert!(
        out.status.success(),
        "keel shard {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_group_runs_on_its_members_and_comes_back_after_a_restart() {
    let mut t = TestCluster::start(3);
    let _ = super::map_on(&t, 1).await;
    let out = keel_shard(&t, 1, &["group", "create", "--members", "2,3"]);
    assert!(out.contains("created group 2"), "{out}");

    let leader = agreed_leader(&t, 2, &[2, 3]).await;
    assert!([2, 3].contains(&leader), "leader {leader}");
    // Node 1 is no member: it hosts no replica (while still hosting group 1
    // and the placement group).
    let node1 = t.node_client(1);
    let status = node1
        .status(&t.cluster.grpc_addr(1).to_string())
        .await
        .expect("node 1 answers");
    let hosted: Vec<u64> = status.groups.iter().map(|g| g.group).collect();
    assert_eq!(hosted, [1, u64::MAX], "node 1 hosts {hosted:?}");
    let r = replica(&t, leader, 2).await.expect("the leader's replica");
    assert_eq!(r.voters, [2, 3], "configured from the initial members");

    let text = eventually(
        MAP_TIMEOUT,
        "keel shard status naming group 2's leader",
        || {
            let text = keel_shard(&t, 1, &["status"]);
            let want = format!("group 2: 0 slots, 2 of 2 replicas, leader node {leader}");
            async move { text.contains(&want).then_some(text) }
        },
    )
    .await;
    assert!(
        text.contains("group 1: 4096 slots, 3 of 3 replicas"),
        "{text}"
    );

    // Kill -9 a member: it comes back hosting group 2 from its boot file and
    // log, and the group agrees on a leader again.
    let victim = if leader == 2 { 3 } else { 2 };
    t.cluster.restart(victim).expect("kill -9 and restart");
    let before = replica(&t, leader, 2).await.map_or(0, |g| g.term);
    agreed_leader(&t, 2, &[2, 3]).await;
    let back = replica(&t, victim, 2).await.expect("hosted after restart");
    assert!(back.term >= before, "term {} after {before}", back.term);
    let events = std::fs::read_to_string(t.cluster.event_log_path(victim)).unwrap_or_default();
    assert!(
        events.contains(&format!(
            "[group 2] Node {victim} hosts a replica of group 2 from now on"
        )),
        "{events}"
    );
    t.assert_no_panics();
}

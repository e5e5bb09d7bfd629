//! A data group's replicas follow its members in the map: a member added with
//! `keel shard group add-member` gets a replica that the group's leader adds
//! and promotes; the leader removed with `remove-member` hands leadership
//! over, is taken out of the group's configuration and deletes its replica
//! (files included); added back, it
//! starts a new life and catches up; and removing the group deletes every
//! replica.

use std::path::PathBuf;
use std::time::Duration;

use super::super::common::{TestCluster, eventually};
use super::hosting::{agreed_leader, keel_shard, replica};

/// Adding, promoting or removing a member, and a removed follower noticing
/// it was dropped (its grace after the last leader contact, plus elections).
const CHANGE_TIMEOUT: Duration = Duration::from_secs(60);

/// The files of node `id`'s replica of `group` that must go with it.
fn replica_files(t: &TestCluster, id: u64, group: u64) -> [PathBuf; 2] {
    let dir = t.cluster.data_dir(id);
    [
        dir.join("groups").join(format!("{group}.json")),
        dir.join("state").join(format!("{group}.redb")),
    ]
}

/// Waits until a replica of `group` among `nodes` leads with exactly `voters`
/// and no learners; returns the leader.
pub(super) async fn leads_with_voters(
    t: &TestCluster,
    group: u64,
    nodes: &[u64],
    voters: &[u64],
) -> u64 {
    eventually(
        CHANGE_TIMEOUT,
        &format!("group {group} led with voters {voters:?}"),
        || async {
            for &id in nodes {
                if let Some(r) = replica(t, id, group).await
                    && r.role == "leader"
                    && r.voters == voters
                    && r.learners.is_empty()
                {
                    return Some(id);
                }
            }
            None
        },
    )
    .await
}

/// Waits until node `id` hosts no replica of `group` and its files are gone.
pub(super) async fn deleted(t: &TestCluster, id: u64, group: u64) {
    eventually(
        CHANGE_TIMEOUT,
        &format!("node {id} deleting its replica of group {group}"),
        || async {
            let status = t
                .node_client(id)
                .status(&t.cluster.grpc_addr(id).to_string())
                .await
                .ok()?;
            let hosted = status.groups.iter().any(|g| g.group == group);
            let files = replica_files(t, id, group).iter().any(|p| p.exists());
            (!hosted && !files).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_groups_replicas_follow_its_members_in_the_map() {
    let t = TestCluster::start(3);
    let _ = super::map_on(&t, 1).await;
    let out = keel_shard(&t, 1, &["group", "create", "--members", "2,3"]);
    assert!(out.contains("created group 2"), "{out}");
    agreed_leader(&t, 2, &[2, 3]).await;

    // Node 1 joins: it hosts a replica, which the leader adds and promotes.
    let out = keel_shard(&t, 1, &["group", "add-member", "2", "1"]);
    assert!(out.contains("node 1 is now a member of group 2"), "{out}");
    leads_with_voters(&t, 2, &[1, 2, 3], &[1, 2, 3]).await;
    // Polled: a status call to a busy node may time out once.
    eventually(CHANGE_TIMEOUT, "node 1 hosting group 2", || async {
        replica(&t, 1, 2).await.map(|_| ())
    })
    .await;

    // The group's leader leaves: it hands leadership over, the next leader
    // takes it out of the configuration, and it deletes its replica and the
    // replica's files.
    let gone = leads_with_voters(&t, 2, &[1, 2, 3], &[1, 2, 3]).await;
    let stay: Vec<u64> = [1, 2, 3].into_iter().filter(|&n| n != gone).collect();
    let out = keel_shard(
        &t,
        stay[0],
        &["group", "remove-member", "2", &gone.to_string()],
    );
    assert!(
        out.contains(&format!("node {gone} is no longer a member of group 2")),
        "{out}"
    );
    leads_with_voters(&t, 2, &stay, &stay).await;
    deleted(&t, gone, 2).await;
    // The event log is written by its own writer: the line may land a moment
    // after the replica is gone.
    let line = format!("[group 2] Node {gone} deleted its replica of group 2.");
    eventually(CHANGE_TIMEOUT, "the deletion in the event log", || async {
        let events = std::fs::read_to_string(t.cluster.event_log_path(gone)).unwrap_or_default();
        events.contains(&line).then_some(())
    })
    .await;
    // Group 1 and the placement group are untouched there.
    let status = t
        .node_client(gone)
        .status(&t.cluster.grpc_addr(gone).to_string())
        .await
        .expect("the node answers");
    let hosted: Vec<u64> = status.groups.iter().map(|g| g.group).collect();
    assert_eq!(hosted, [1, u64::MAX], "node {gone} hosts {hosted:?}");

    // It comes back: a new life of its replica, added, promoted, caught up.
    let out = keel_shard(&t, 1, &["group", "add-member", "2", &gone.to_string()]);
    assert!(
        out.contains(&format!("node {gone} is now a member of group 2")),
        "{out}"
    );
    let leader = leads_with_voters(&t, 2, &[1, 2, 3], &[1, 2, 3]).await;
    let commit = replica(&t, leader, 2).await.map_or(0, |r| r.commit_index);
    eventually(CHANGE_TIMEOUT, "the new replica catching up", || async {
        let r = replica(&t, gone, 2).await?;
        (r.applied_index >= commit && r.voters == [1, 2, 3]).then_some(())
    })
    .await;

    // The group leaves the map (it owns no slots): every replica goes.
    let out = keel_shard(&t, 1, &["group", "remove", "2"]);
    assert!(out.contains("removed group 2"), "{out}");
    for id in [1, 2, 3] {
        deleted(&t, id, 2).await;
    }
    t.assert_no_panics();
}

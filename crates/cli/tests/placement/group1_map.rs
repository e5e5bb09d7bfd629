//! Group 1's members in the cluster map follow its Raft configuration
//! (`placement/group1_mirror.rs`): a node that joins group 1 (`keel serve
//! --join`, a learner promoted once caught up) is added to the map's group 1
//! once registered, and a member removed with `keel member remove` leaves it.
//! Nodes outside group 1 forward its keys by the map, so a map left at the
//! bootstrap members would send them to a removed node and never to a new one.

use super::super::common::TestCluster;
use super::joins::group_in_map;
use super::{MAP_TIMEOUT, map_on};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_1s_members_in_the_map_follow_its_configuration() {
    let mut t = TestCluster::start(3);
    let _ = map_on(&t, 1).await;
    t.wait_for_leader(MAP_TIMEOUT).await;

    let four = t.cluster.add_node(1, &[]).expect("start node 4");
    group_in_map(&t, 1, 1, &[1, 2, 3, four]).await;

    t.client.remove_member(2).await.expect("remove node 2");
    group_in_map(&t, 1, 1, &[1, 3, four]).await;
    // Every node's map says so, the new member's included.
    group_in_map(&t, four, 1, &[1, 3, four]).await;
}

//! Finding and following the leader.

use keel_client::ReadMode;

use crate::mock::{Behavior, MockNode, bounded, client, refused_addr};

#[tokio::test]
async fn follows_a_leader_hint_outside_the_endpoint_list_and_remembers_it() {
    let leader = MockNode::start(2, Behavior::Serve).await;
    let follower = MockNode::start(1, Behavior::NotLeader(leader.addr())).await;
    // Only the follower is configured; the leader is known from its hint alone.
    let c = client(&[follower.addr()]);

    bounded(c.put("k", "v")).await.expect("put via hint");
    assert_eq!(follower.calls("put"), 1);
    assert_eq!(leader.calls("put"), 1);

    // Later calls, and clones of the client, go straight to the leader.
    bounded(c.clone().put("k", "v2")).await.expect("put");
    bounded(c.get("k", ReadMode::Linearizable))
        .await
        .expect("get");
    assert_eq!(follower.calls("put"), 1);
    assert_eq!(follower.calls("get"), 0);
    assert_eq!(leader.calls("put"), 2);
    assert_eq!(leader.calls("get"), 1);
}

#[tokio::test]
async fn rotates_past_unreachable_and_leaderless_members() {
    let dead = refused_addr().await;
    let electing = MockNode::start(2, Behavior::NoLeader).await;
    let leader = MockNode::start(3, Behavior::Serve).await;
    let c = client(&[dead, electing.addr(), leader.addr()]);

    bounded(c.put("k", "v")).await.expect("put");
    assert_eq!(electing.calls("put"), 1);
    assert_eq!(leader.calls("put"), 1);
}

#[tokio::test]
async fn a_hint_without_an_address_rotates() {
    let confused = MockNode::start(1, Behavior::NotLeader(String::new())).await;
    let leader = MockNode::start(2, Behavior::Serve).await;
    let c = client(&[confused.addr(), leader.addr()]);

    bounded(c.delete("k")).await.expect("delete");
    assert_eq!(confused.calls("delete"), 1);
    assert_eq!(leader.calls("delete"), 1);
}

#[tokio::test]
async fn shutting_down_member_is_left_for_another() {
    let leaving = MockNode::start(1, Behavior::ShuttingDown).await;
    let leader = MockNode::start(2, Behavior::Serve).await;
    let c = client(&[leaving.addr(), leader.addr()]);

    bounded(c.put("k", "v")).await.expect("put");
    assert_eq!(leaving.calls("put"), 1);
    assert_eq!(leader.calls("put"), 1);
}

//! Membership changes with real processes, while clients write: growing 3 → 5
//! with `keel serve --join` (each new node catches up by snapshot, then is
//! promoted), removing the leader, replacing a failed node, the refusals (an add
//! while a voter is down, a removal that would lose quorum, a second change while
//! one is in flight), learners kept by `--learner` and promoted by hand, and a
//! graceful leave on SIGTERM. Every test ends with no acknowledged write lost and
//! identical state-machine digests on the remaining members.

mod common;

use std::time::Duration;

use common::workload::{
    CATCH_UP, LEADER_TIMEOUT, SNAPSHOT_FLAGS, Writer, assert_same_digests_of, assert_written,
    count, wait_applied, wait_for_event,
};
use common::{TestCluster, eventually};
use keel_client::{Error, MembersResponse};

/// Polls the leader's member list (up to `timeout`) until `f` holds for it.
async fn poll_members_until(
    t: &TestCluster,
    timeout: Duration,
    f: impl Fn(&MembersResponse) -> bool,
) -> bool {
    let c = t.client.with_deadline(Duration::from_millis(200));
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if c.members().await.is_ok_and(|m| f(&m)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

/// Whether the members list shows a change in progress before `call` returns
/// (under the catch-up deadline). While the voters a change needs are frozen it
/// cannot commit: it is refused at once, or it stays in flight until they are
/// back. So this waits as long as `call` is out, never for a fixed time that a
/// loaded machine could overrun.
async fn change_seen_in_flight<T>(t: &TestCluster, call: &tokio::task::JoinHandle<T>) -> bool {
    let c = t.client.with_deadline(Duration::from_secs(2));
    let deadline = std::time::Instant::now() + CATCH_UP;
    while std::time::Instant::now() < deadline && !call.is_finished() {
        if c.members().await.is_ok_and(|m| m.change_in_progress) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

async fn members(t: &TestCluster) -> MembersResponse {
    t.client.members().await.expect("members")
}

fn voters(m: &MembersResponse) -> Vec<u64> {
    m.members.iter().filter(|m| m.voter).map(|m| m.id).collect()
}

fn learners(m: &MembersResponse) -> Vec<u64> {
    m.members
        .iter()
        .filter(|m| !m.voter)
        .map(|m| m.id)
        .collect()
}

/// Waits until the leader's configuration has exactly `want` as voters.
async fn wait_for_voters(t: &TestCluster, want: &[u64]) {
    eventually(CATCH_UP, &format!("voters {want:?}"), || {
        let c = t.client.clone();
        async move {
            let m = c.members().await.ok()?;
            (voters(&m) == want && !m.change_in_progress).then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grow_three_to_five_under_writes_then_remove_the_leader() {
    let mut t = TestCluster::start_with(3, SNAPSHOT_FLAGS);
    t.wait_for_leader(LEADER_TIMEOUT).await;
    let writer = Writer::start(&t, "w", 4);
    // Enough history that the joiners need the leader's snapshot.
    wait_for_event(&t, 1, "took a snapshot at index", 1, CATCH_UP).await;

    let four = t.cluster.add_node(2, &[]).expect("start node 4");
    wait_for_voters(&t, &[1, 2, 3, four]).await;
    let five = t.cluster.add_node(3, &[]).expect("start node 5");
    wait_for_voters(&t, &[1, 2, 3, four, five]).await;
    for id in [four, five] {
        wait_for_event(&t, id, "installed the leader's snapshot", 1, CATCH_UP).await;
        assert!(count(&t, id, "joined cluster") == 1, "node {id} joined");
    }

    // Remove the leader: it hands over first, so writes barely pause.
    let leader = t.wait_for_leader(LEADER_TIMEOUT).await;
    let left = t.client.remove_member(leader).await.expect("remove leader");
    assert!(!left.members.iter().any(|m| m.id == leader));
    let rest: Vec<u64> = [1, 2, 3, four, five]
        .into_iter()
        .filter(|&id| id != leader)
        .collect();
    wait_for_voters(&t, &rest).await;
    wait_for_event(&t, leader, "was removed from the cluster", 1, CATCH_UP).await;
    t.cluster.kill(leader).expect("stop the removed node");
    let new_leader = t.wait_for_leader(LEADER_TIMEOUT).await;
    assert_ne!(new_leader, leader);

    // A node joining while a joined node leads: its log (bootstrap members only,
    // at first) does not mention the leader, which must still reach it.
    assert_eq!(
        t.client.transfer_leader(five).await.expect("transfer"),
        five
    );
    let six = t
        .cluster
        .add_node(four, &["--learner"])
        .expect("start node 6");
    eventually(CATCH_UP, "node 6 is a learner", || {
        let c = t.client.clone();
        async move {
            let m = c.members().await.ok()?;
            (learners(&m) == [six] && !m.change_in_progress).then_some(())
        }
    })
    .await;
    t.client.put("six", "sees it").await.expect("write");
    t.wait_for_value_on(six, "six", "sees it", CATCH_UP).await;
    let mut rest = rest;
    rest.push(six);

    let acked = writer.finish().await;
    assert!(acked.len() > 300, "writes kept flowing: {}", acked.len());
    wait_applied(&mut t, &rest).await;
    assert_written(&t, &acked).await;
    t.assert_no_panics();
    assert_same_digests_of(&mut t, &rest, acked.len() as u64 + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_a_failed_node_with_refusals_on_the_way() {
    let mut t = TestCluster::start_with(3, SNAPSHOT_FLAGS);
    let leader = t.wait_for_leader(LEADER_TIMEOUT).await;
    let others: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    let (alive, dead) = (others[0], others[1]);
    let writer = Writer::start(&t, "w", 2);
    t.cluster.kill(dead).expect("kill a follower");

    // Once the leader notices, adding a member is refused: the cluster is unhealthy.
    eventually(CATCH_UP, "the leader notices the dead follower", || {
        let s = t.status(leader);
        async move {
            let s = s.await?;
            let p = s.progress.iter().find(|p| p.id == dead)?;
            (!p.active).then_some(())
        }
    })
    .await;
    let refusal = match t.client.add_member(9, "127.0.0.1:9", false).await {
        Err(Error::Refused(m)) => m,
        other => panic!("an add while a voter is down must be refused: {other:?}"),
    };
    assert!(refusal.contains("unhealthy"), "{refusal}");
    assert!(refusal.contains(&dead.to_string()), "{refusal}");

    // Removing the live follower would leave {leader, dead}: one reachable voter.
    match t.client.remove_member(alive).await {
        Err(Error::Refused(m)) => assert!(m.contains("quorum"), "{m}"),
        other => panic!("removal that loses quorum must be refused: {other:?}"),
    }
    let m = members(&t).await;
    assert_eq!(voters(&m), vec![1, 2, 3], "nothing changed");
    assert!(learners(&m).is_empty(), "nothing changed");

    // Replace: remove the dead node, add a fresh one.
    t.client
        .remove_member(dead)
        .await
        .expect("remove the dead node");
    let mut want: Vec<u64> = vec![leader, alive];
    want.sort_unstable();
    wait_for_voters(&t, &want).await;
    let fresh = t.cluster.add_node(alive, &[]).expect("start a fresh node");
    want.push(fresh);
    wait_for_voters(&t, &want).await;

    let acked = writer.finish().await;
    wait_applied(&mut t, &want).await;
    assert_written(&t, &acked).await;
    t.assert_no_panics();
    assert_same_digests_of(&mut t, &want, acked.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_change_at_a_time_learners_and_a_graceful_leave() {
    let mut t = TestCluster::start_with(3, &["--leave-on-shutdown"]);
    t.wait_for_leader(LEADER_TIMEOUT).await;
    let learner = t
        .cluster
        .add_node(1, &["--learner"])
        .expect("start a learner");
    eventually(CATCH_UP, "the learner is in the configuration", || {
        let c = t.client.clone();
        async move {
            let m = c.members().await.ok()?;
            (learners(&m) == [learner] && !m.change_in_progress).then_some(())
        }
    })
    .await;
    t.client.put("k", "v").await.expect("write");
    t.wait_for_value_on(learner, "k", "v", CATCH_UP).await;
    // Caught up, but kept a learner: no automatic promotion.
    let m = members(&t).await;
    assert_eq!(voters(&m), vec![1, 2, 3]);
    let entry = m.members.iter().find(|m| m.id == learner).expect("listed");
    assert!(!entry.promote_when_caught_up);
    let status = t.status(learner).await.expect("the learner's status");
    assert_eq!(status.role, "learner");

    // A change that cannot commit (two voters are frozen, and the promotion
    // needs 3 of 4) blocks a second one. The first is sent just after the pause,
    // before the leader can notice; if it noticed anyway, start over.
    let mut attempts = 0;
    let second = loop {
        attempts += 1;
        // A promotion that went through in an earlier attempt (the voters came
        // back before we saw it pending) cannot be in flight again: fail with the
        // reason rather than loop for ever.
        let m = members(&t).await;
        assert!(
            attempts <= 20 && learners(&m) == [learner],
            "could not catch the promotion in flight in {attempts} attempts: {m:?}"
        );
        // Freeze the two voters that do not lead, as of now: leadership may
        // have moved during an earlier attempt.
        let leader = t.wait_for_leader(LEADER_TIMEOUT).await;
        let frozen: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
        for &id in &frozen {
            t.cluster.pause(id);
        }
        // If leadership moved just before the freeze, the leader is frozen and
        // every call below would wait on it (and could apply after the resume):
        // start over.
        let asked = t
            .client
            .with_deadline(Duration::from_secs(2))
            .members()
            .await;
        if asked.map(|m| m.leader_id).ok() != Some(leader) {
            for &id in &frozen {
                t.cluster.resume(id);
            }
            continue;
        }
        // A deadline long enough that the call comes back only when the
        // promotion is refused at once, or once the voters are back.
        let c = t.client.with_deadline(CATCH_UP);
        let first = tokio::spawn(async move { c.promote_member(learner).await });
        let pending = change_seen_in_flight(&t, &first).await;
        // Only with the promotion in flight: otherwise nothing stops this change
        // from being applied, and the next attempt would find a second learner.
        let second = if pending {
            Some(
                t.client
                    .with_deadline(Duration::from_secs(1))
                    .add_member(9, "127.0.0.1:9", true)
                    .await,
            )
        } else {
            None
        };
        for &id in &frozen {
            t.cluster.resume(id);
        }
        let first = first.await.expect("task");
        if let Some(second) = second
            && !matches!(first, Err(Error::Refused(_)))
        {
            break second;
        }
        t.wait_for_leader(LEADER_TIMEOUT).await;
    };
    match second {
        Err(Error::Refused(m)) => assert!(m.contains("in flight"), "{m}"),
        other => panic!("a second change while one is in flight must be refused: {other:?}"),
    }
    // The promotion commits once the voters are back (or, if a new leader
    // dropped it, is asked for again).
    let mut all = vec![1, 2, 3, learner];
    all.sort_unstable();
    eventually(CATCH_UP, "the learner promoted", || {
        let c = t.client.clone();
        let want = all.clone();
        async move {
            let m = c.members().await.ok()?;
            if voters(&m) == want && !m.change_in_progress {
                return Some(());
            }
            if !m.change_in_progress {
                let _ = c.promote_member(learner).await;
            }
            None
        }
    })
    .await;

    // SIGTERM with --leave-on-shutdown: the node hands leadership over (if it
    // leads) and leaves the configuration before it stops.
    let leader = t.wait_for_leader(LEADER_TIMEOUT).await;
    t.cluster
        .stop(leader, Duration::from_secs(15))
        .expect("graceful stop");
    let rest: Vec<u64> = all.iter().copied().filter(|&id| id != leader).collect();
    let left =
        poll_members_until(&t, CATCH_UP, |m| voters(m) == rest && !m.change_in_progress).await;
    if !left {
        t.dump_logs();
        panic!("node {leader} did not leave: {:?}", members(&t).await);
    }
    t.client
        .put("after", "leave")
        .await
        .expect("write after the leave");
    wait_applied(&mut t, &rest).await;
    t.assert_no_panics();
    assert_same_digests_of(&mut t, &rest, 2);
}

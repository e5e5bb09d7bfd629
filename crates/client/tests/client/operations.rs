//! Every operation against a healthy member.

use bytes::Bytes;
use keel_client::{
    Compare, Error, KeyValue, Precondition, ReadMode, ScanOptions, Txn, TxnOp, TxnOpResult,
};

use crate::mock::{Behavior, MockNode, bounded, client, mock_map};

#[tokio::test]
async fn put_get_delete_round_trip() {
    let node = MockNode::start(1, Behavior::Serve).await;
    let c = client(&[node.addr()]);

    let rev = bounded(c.put("k", "v1")).await.expect("put");
    let got = bounded(c.get("k", ReadMode::Linearizable))
        .await
        .expect("get");
    let kv = got.kv.expect("present");
    assert_eq!(
        (kv.key.as_ref(), kv.value.as_ref()),
        (&b"k"[..], &b"v1"[..])
    );
    assert_eq!(kv.version, rev);
    assert_eq!(got.revision, rev);

    let deleted = bounded(c.delete("k")).await.expect("delete");
    assert!(deleted.existed);
    assert!(deleted.revision > rev);
    let again = bounded(c.delete("k")).await.expect("delete");
    assert!(!again.existed);
    let gone = bounded(c.get("k", ReadMode::Stale)).await.expect("get");
    assert_eq!(gone.kv, None);
}

#[tokio::test]
async fn conflict_carries_the_current_version() {
    let node = MockNode::start(1, Behavior::Serve).await;
    let c = client(&[node.addr()]);

    // Create-only on a missing key succeeds, then fails with the version it made.
    let v = bounded(c.put_with("k", "a", Precondition::Absent))
        .await
        .expect("create");
    let err = bounded(c.put_with("k", "b", Precondition::Absent))
        .await
        .expect_err("exists");
    assert_eq!(
        err,
        Error::Conflict {
            current_version: Some(v)
        }
    );
    assert!(err.is_definite_failure());

    // Compare-and-set with a stale version fails, with the right one succeeds.
    let err = bounded(c.put_with("k", "c", Precondition::Version(v + 100)))
        .await
        .expect_err("stale version");
    assert_eq!(
        err,
        Error::Conflict {
            current_version: Some(v)
        }
    );
    let v2 = bounded(c.put_with("k", "c", Precondition::Version(v)))
        .await
        .expect("cas");
    assert!(v2 > v);

    // A conditional delete of a missing key reports that it does not exist.
    let err = bounded(c.delete_with("missing", Precondition::Version(3)))
        .await
        .expect_err("missing");
    assert_eq!(
        err,
        Error::Conflict {
            current_version: None
        }
    );
    // A conflict is final: exactly one call per attempt above reached the member.
    assert_eq!(node.calls("put"), 4);
    assert_eq!(node.calls("delete"), 1);
}

#[tokio::test]
async fn txn_follows_the_leader_and_is_not_retried_when_its_outcome_is_unknown() {
    let leader = MockNode::start(2, Behavior::Serve).await;
    let follower = MockNode::start(1, Behavior::NotLeader(leader.addr())).await;
    let c = client(&[follower.addr()]);

    let lock = || {
        Txn::new()
            .when(Compare::absent("lock"))
            .then(TxnOp::put("lock", "me"))
            .otherwise(TxnOp::get("lock"))
    };
    let took = bounded(c.txn(lock())).await.expect("txn");
    assert!(took.succeeded);
    assert_eq!(took.results, vec![TxnOpResult::Put]);
    let held = bounded(c.txn(lock())).await.expect("txn");
    assert!(!held.succeeded);
    assert_eq!(
        held.results,
        vec![TxnOpResult::Get(Some(KeyValue {
            key: Bytes::from_static(b"lock"),
            value: Bytes::from_static(b"me"),
            version: took.revision,
        }))]
    );

    // A transaction is a write: after an unknown outcome it is not sent again.
    leader.script([Behavior::OutcomeUnknown]);
    let calls = leader.calls("txn");
    let err = bounded(c.txn(lock())).await.expect_err("unknown");
    assert!(err.outcome_unknown(), "{err}");
    assert_eq!(leader.calls("txn"), calls + 1);
}

#[tokio::test]
async fn scan_pages_through_a_prefix() {
    let node = MockNode::start(1, Behavior::Serve).await;
    let c = client(&[node.addr()]);
    for k in ["a/1", "a/2", "a/3", "b/1"] {
        bounded(c.put(k, "x")).await.expect("put");
    }
    let mut keys = Vec::new();
    let mut options = ScanOptions::default().limit(2);
    loop {
        let page = bounded(c.scan("a/", &options)).await.expect("scan");
        keys.extend(page.kvs.iter().map(|kv| kv.key.clone()));
        match page.resume_after() {
            Some(after) => options = options.start_after(after),
            None => break,
        }
    }
    assert_eq!(
        keys,
        vec![
            Bytes::from_static(b"a/1"),
            Bytes::from_static(b"a/2"),
            Bytes::from_static(b"a/3")
        ]
    );
}

#[tokio::test]
async fn status_asks_the_named_member_and_members_lists_them() {
    let listed = MockNode::start(1, Behavior::Serve).await;
    let other = MockNode::start(2, Behavior::Serve).await;
    let c = client(&[listed.addr()]);

    let status = bounded(c.status(&other.addr())).await.expect("status");
    assert_eq!(status.id, 2);
    assert_eq!(other.calls("status"), 1);
    assert_eq!(listed.calls("status"), 0);

    let members = bounded(c.members()).await.expect("members");
    assert_eq!(members.leader_id, 1);
    assert_eq!(members.members[0].address, listed.addr());

    assert!(matches!(
        bounded(c.status("not an address")).await,
        Err(Error::InvalidArgument(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_share_one_client_across_tasks() {
    let leader = MockNode::start(2, Behavior::Serve).await;
    let follower = MockNode::start(1, Behavior::NotLeader(leader.addr())).await;
    let c = client(&[follower.addr()]);

    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move { c.put(format!("key-{i}"), "v").await })
        })
        .collect();
    for t in tasks {
        bounded(t).await.expect("task").expect("put");
    }
    let page = bounded(c.scan("key-", &ScanOptions::default()))
        .await
        .expect("scan");
    assert_eq!(page.kvs.len(), 16);
    // Every put reached the leader exactly once; the follower saw at most one
    // attempt per put (before the leader was known).
    assert_eq!(leader.calls("put"), 16);
    assert!(follower.calls("put") <= 16);
}

#[tokio::test]
async fn the_cluster_map_is_retried_until_a_node_has_one() {
    let node = MockNode::start(1, Behavior::Serve).await;
    // A node without a map answers NO_LEADER (retryable) until it has one.
    node.script([Behavior::NoLeader, Behavior::NoLeader]);
    let c = client(&[node.addr()]);
    let map = bounded(c.cluster_map()).await.expect("map");
    assert_eq!(map, mock_map());
    assert_eq!(map.version(), 4);
    assert_eq!(node.calls("map"), 3);
    let at = bounded(c.cluster_map_at(&node.addr())).await.expect("map");
    assert_eq!(at, map);
}

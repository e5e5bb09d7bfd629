//! Key operations reach a group the node they were sent to does not host: in
//! a 4-node cluster with group 2 on nodes 2, 3 and 4, `keel shard move
//! --wait` moves a slot to group 2 (the mover copies it), and node 1 forwards
//! gRPC, HTTP and Redis protocol requests for it to group 2's members. A call
//! marked as forwarded is never forwarded again. And the operator's move
//! commands: a move begun with `keel shard move` (to a group without a
//! leader, so that it stays in flight) shows in `keel shard map` and
//! `status`, and `keel shard abort-move` removes it.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use keel_placement::{Slot, slot_for_key};
use keel_proto::error::{Kind, error_detail};
use keel_proto::v1::kv_client::KvClient;
use keel_proto::v1::{AddRequest, GetRequest, PutRequest, TxnOp, TxnPut, TxnRequest, txn_op};

use super::super::common::{TestCluster, eventually, http};
use super::change::{keel_shard, keel_shard_err, keel_shard_ok};
use super::hosting::agreed_leader;
use super::{MAP_TIMEOUT, map_on};

/// How long a move may take here (the mover's own limit is 60 s).
const MOVE_TIMEOUT: Duration = Duration::from_secs(90);

/// The key whose slot moves to group 2, and a key of that slot by hash tag.
const KEY: &str = "forwarded";
const TAGGED: &str = "{forwarded}:n";

/// The epoch of `slot`'s move in node 1's map, once it shows one.
async fn epoch_of(t: &TestCluster, slot: Slot) -> u64 {
    let client = t.node_client(1);
    eventually(
        MAP_TIMEOUT,
        &format!("a move of slot {}", slot.get()),
        || {
            let client = client.clone();
            async move {
                let map = client.cluster_map().await.ok()?;
                map.moves().get(&slot).map(|m| m.epoch)
            }
        },
    )
    .await
}

/// Moves `KEY`'s slot to group 2 with `keel shard move --wait`, which must
/// report the commit, and waits until every node's map says so.
async fn move_slot_to_group_2(t: &TestCluster) {
    let slot = slot_for_key(KEY.as_bytes()).get().to_string();
    let out = keel_shard_ok(
        t,
        1,
        &["move", &slot, "--to", "2", "--wait", "--timeout", "90s"],
    );
    assert!(
        out.contains(&format!(
            "began moving slot {slot} from group 1 to group 2 (epoch "
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("slot {slot} now belongs to group 2")),
        "{out}"
    );
    let slot = slot_for_key(KEY.as_bytes());
    for node in 1..=4 {
        let client = t.node_client(node);
        eventually(MOVE_TIMEOUT, &format!("the move on node {node}"), || {
            let client = client.clone();
            async move {
                let map = client.cluster_map().await.ok()?;
                (map.owner(slot) == Some(2) && !map.moves().contains_key(&slot)).then_some(())
            }
        })
        .await;
    }
}

/// A key of group 1 (a slot other than `KEY`'s).
fn key_of_group_1() -> String {
    let moved = slot_for_key(KEY.as_bytes());
    (0..)
        .map(|i| format!("stays{i}"))
        .find(|k| slot_for_key(k.as_bytes()) != moved)
        .expect("keys spread over slots")
}

async fn kv(t: &TestCluster, id: u64) -> KvClient<tonic::transport::Channel> {
    KvClient::connect(format!("http://{}", t.cluster.grpc_addr(id)))
        .await
        .expect("connect")
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_forwards_keys_of_a_group_it_does_not_host_over_grpc_http_and_resp() {
    let t = TestCluster::start_with_redis(4, &[]);
    let _ = map_on(&t, 1).await;
    let out = keel_shard_ok(&t, 1, &["group", "create", "--members", "2,3,4"]);
    assert!(out.contains("created group 2"), "{out}");
    agreed_leader(&t, 2, &[2, 3, 4]).await;
    move_slot_to_group_2(&t).await;

    // HTTP through node 1, which hosts no replica of group 2: forwarded.
    let path = format!("/v1/kv/{KEY}");
    // Group 2 serves the slot once its OwnSlot entry applies, just after the
    // commit: until then it answers SLOT_MOVING (503).
    eventually(MOVE_TIMEOUT, "a PUT through node 1", || async {
        let (code, _, _) = http(t.cluster.http_addr(1), "PUT", &path, &[], b"via-http");
        (code == 200).then_some(())
    })
    .await;
    for node in [1, 3] {
        let (code, _, body) = http(t.cluster.http_addr(node), "GET", &path, &[], b"");
        let text = String::from_utf8_lossy(&body);
        assert_eq!(code, 200, "GET on node {node}: {text}");
        assert!(text.contains("via-http"), "node {node}: {text}");
    }
    let (code, _, _) = http(t.cluster.http_addr(1), "DELETE", &path, &[], b"");
    assert_eq!(code, 200);
    let (code, _, _) = http(t.cluster.http_addr(4), "GET", &path, &[], b"");
    assert_eq!(code, 404, "deleted in group 2, through node 1");

    // gRPC through node 1: put, get, add and a transaction, all forwarded.
    let mut node1 = kv(&t, 1).await;
    let put = PutRequest {
        key: b(KEY),
        value: b("via-grpc"),
        ..PutRequest::default()
    };
    node1.put(put).await.expect("forwarded put");
    let get = GetRequest {
        key: b(KEY),
        ..GetRequest::default()
    };
    let got = node1.get(get.clone()).await.expect("forwarded get");
    assert_eq!(got.into_inner().kv.expect("found").value, "via-grpc");
    let add = AddRequest {
        key: b(TAGGED),
        delta: 5,
    };
    let added = node1.add(add).await.expect("forwarded add");
    assert_eq!(added.into_inner().value, 5);
    let put_op = |key: &str, value: &str| TxnOp {
        op: Some(txn_op::Op::Put(TxnPut {
            key: b(key),
            value: b(value),
        })),
    };
    let txn = TxnRequest {
        success: vec![put_op(KEY, "via-txn"), put_op("{forwarded}:m", "m")],
        ..TxnRequest::default()
    };
    assert!(
        node1
            .txn(txn)
            .await
            .expect("forwarded txn")
            .into_inner()
            .succeeded
    );
    // Read back from group 2 itself, on a member.
    let mut node2 = kv(&t, 2).await;
    let got = node2.get(get.clone()).await.expect("get on a member");
    assert_eq!(got.into_inner().kv.expect("found").value, "via-txn");

    // A call another node already forwarded is never forwarded again: node 1
    // answers WRONG_GROUP itself.
    let mut marked = tonic::Request::new(get.clone());
    marked.metadata_mut().insert(
        "keel-group-forwarded",
        tonic::metadata::MetadataValue::from(2u64),
    );
    let status = node1.get(marked).await.expect_err("not forwarded twice");
    let detail = error_detail(&status).expect("a keel error");
    assert_eq!(detail.kind(), Kind::WrongGroup, "{detail:?}");

    // The Redis protocol through node 1 (no replica of group 2) and node 2
    // (hosting both groups).
    let other = key_of_group_1();
    let mut r1 = redis_conn(&t, 1);
    let mut r2 = redis_conn(&t, 2);
    let ok: String = redis::cmd("SET")
        .arg(KEY)
        .arg("via-resp")
        .query(&mut r1)
        .expect("SET through node 1");
    assert_eq!(ok, "OK");
    for (node, con) in [(1, &mut r1), (2, &mut r2)] {
        let v: Option<String> = redis::cmd("GET").arg(KEY).query(con).expect("GET");
        assert_eq!(v.as_deref(), Some("via-resp"), "GET through node {node}");
    }
    let n: i64 = redis::cmd("INCR").arg(TAGGED).query(&mut r1).expect("INCR");
    assert_eq!(n, 6, "the gRPC add's 5, plus one");
    let ok: String = redis::cmd("SET")
        .arg(&other)
        .arg("group-1")
        .query(&mut r1)
        .expect("SET of a group-1 key");
    assert_eq!(ok, "OK");
    // MGET and EXISTS across the groups are split and answered in key order.
    for con in [&mut r1, &mut r2] {
        let values: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&other)
            .arg("absent-key")
            .arg(KEY)
            .query(con)
            .expect("MGET across groups");
        assert_eq!(
            values,
            [
                Some("group-1".to_string()),
                None,
                Some("via-resp".to_string())
            ]
        );
        let n: i64 = redis::cmd("EXISTS")
            .arg(KEY)
            .arg(&other)
            .arg(KEY)
            .query(con)
            .expect("EXISTS across groups");
        assert_eq!(n, 3);
    }
    // MSET and DEL across groups are refused, and change nothing.
    for cmd in ["MSET", "DEL"] {
        let mut c = redis::cmd(cmd);
        if cmd == "MSET" {
            c.arg(KEY).arg("x").arg(&other).arg("y");
        } else {
            c.arg(KEY).arg(&other);
        }
        let e = c.query::<redis::Value>(&mut r1).expect_err("CROSSSLOT");
        let text = format!("{e:?} {e}").to_ascii_lowercase();
        assert!(text.contains("crossslot"), "{cmd}: {text}");
    }
    let v: Option<String> = redis::cmd("GET").arg(KEY).query(&mut r2).expect("GET");
    assert_eq!(
        v.as_deref(),
        Some("via-resp"),
        "the refused MSET changed nothing"
    );
    // A pipeline mixing the groups answers in order.
    let (a, c, d): (String, Option<String>, Option<String>) = redis::pipe()
        .cmd("SET")
        .arg(KEY)
        .arg("piped")
        .cmd("GET")
        .arg(&other)
        .cmd("GET")
        .arg(KEY)
        .query(&mut r1)
        .expect("pipeline");
    assert_eq!(
        (a.as_str(), c.as_deref(), d.as_deref()),
        ("OK", Some("group-1"), Some("piped"))
    );
    // SCAN covers both groups (every group owning slots is asked), from a
    // node hosting both and from one hosting only group 1; an exact MATCH
    // finds the moved key too.
    for (node, con) in [(1, &mut r1), (2, &mut r2)] {
        let keys = scan_all(con, "*");
        assert!(
            keys.contains(KEY) && keys.contains(&other),
            "SCAN through node {node}: {keys:?}"
        );
        assert_eq!(scan_all(con, KEY), BTreeSet::from([KEY.to_string()]));
    }
    t.assert_no_panics();
}

/// Every key SCAN with `pattern` returns, following cursors (small pages).
fn scan_all(con: &mut redis::Connection, pattern: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut cursor = 0u64;
    for _ in 0..1000 {
        let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(2)
            .query(con)
            .expect("SCAN");
        keys.extend(page);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
    panic!("SCAN did not end after 1000 pages");
}

fn redis_conn(t: &TestCluster, id: u64) -> redis::Connection {
    let client =
        redis::Client::open(format!("redis://{}/", t.cluster.redis_addr(id))).expect("redis url");
    client
        .get_connection_with_timeout(Duration::from_secs(10))
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_begins_a_move_sees_it_in_the_map_and_aborts_it() {
    let mut t = TestCluster::start(3);
    let _ = map_on(&t, 1).await;
    // Group 2 on node 3 alone, and node 3 down: group 2 has no leader, so no
    // mover takes the move further and it stays in flight until aborted.
    keel_shard_ok(&t, 1, &["group", "create", "--members", "3"]);
    agreed_leader(&t, 2, &[3]).await;
    t.cluster.kill(3).expect("kill node 3");
    let out = keel_shard_ok(&t, 2, &["move", "4000", "--to", "2"]);
    assert!(
        out.contains("began moving slot 4000 from group 1 to group 2 (epoch "),
        "{out}"
    );
    let epoch = epoch_of(&t, Slot::new(4000).expect("slot")).await;
    let line = format!("slot 4000 from group 1 to group 2 (epoch {epoch})");
    let text = eventually(MAP_TIMEOUT, "the move in keel shard map", || {
        let text = keel_shard_ok(&t, 1, &["map"]);
        let found = text.contains(&line);
        async move { found.then_some(text) }
    })
    .await;
    assert!(text.contains("moves:"), "{text}");
    let status = keel_shard_ok(&t, 1, &["status"]);
    assert!(status.contains("moves in flight:"), "{status}");
    assert!(status.contains(&line), "{status}");
    // Beginning it again changes nothing; another target, or the owner, is
    // refused.
    let again = keel_shard_ok(&t, 2, &["move", "4000", "--to", "2"]);
    assert!(again.contains("already moving"), "{again}");
    let e = keel_shard_err(&t, 2, &["move", "4000", "--to", "1"]);
    assert!(!e.is_empty());
    let e = keel_shard_err(&t, 2, &["move", "4096", "--to", "2"]);
    assert!(e.contains("out of range"), "{e}");
    let e = keel_shard_err(&t, 2, &["move", "10", "--to", "9"]);
    assert!(e.contains('9'), "{e}");

    // Aborted: gone from the map, group 1 keeps the slot; a second abort
    // finds nothing to abort.
    let out = keel_shard_ok(&t, 1, &["abort-move", "4000"]);
    assert!(
        out.contains(&format!(
            "aborted the move of slot 4000 to group 2 (epoch {epoch}); group 1 keeps it"
        )),
        "{out}"
    );
    let text = eventually(MAP_TIMEOUT, "no move in keel shard map", || {
        let text = keel_shard_ok(&t, 1, &["map"]);
        async move { text.contains("moves: none").then_some(text) }
    })
    .await;
    assert!(text.contains("slots 0-4095 (4096)"), "{text}");
    let e = eventually(MAP_TIMEOUT, "abort-move refused on node 1", || {
        let out = keel_shard(&t, 1, &["abort-move", "4000"]);
        let e = String::from_utf8_lossy(&out.stderr).into_owned();
        async move { (!out.status.success() && e.contains("no move of slot 4000")).then_some(e) }
    })
    .await;
    assert!(e.contains("nothing changed"), "{e}");

    // A rebalance dry run plans half the slots for group 2 and begins none.
    let plan = keel_shard_ok(&t, 1, &["rebalance", "--max-moves", "2", "--dry-run"]);
    assert!(plan.contains("2 move(s) planned"), "{plan}");
    assert!(plan.contains("slot 2048: group 1 -> group 2"), "{plan}");
    assert!(plan.contains("dry run: nothing was begun"), "{plan}");
    let text = keel_shard_ok(&t, 1, &["map"]);
    assert!(text.contains("moves: none"), "{text}");
    t.assert_no_panics();
}

//! Transactions and conditional writes against real `keel` processes: over gRPC
//! (the Rust client), the CLI, and HTTP through a follower.

mod common;

use std::process::Output;
use std::time::Duration;

use common::{TestCluster, http};
use keel_client::{Compare, CompareOp, Error, ReadMode, Txn, TxnOp, TxnOpResult};
use serde_json::{Value as Json, json};

const LEADER_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs `keel ARGS --endpoints ...` against the cluster.
fn keel(t: &TestCluster, args: &[&str]) -> Output {
    std::process::Command::new(common::keel_bin())
        .args(args)
        .arg("--endpoints")
        .arg(t.cluster.endpoints().join(","))
        .output()
        .expect("run keel")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_over_grpc_and_the_cli() {
    let mut t = TestCluster::start(3);
    let leader = t.wait_for_leader(LEADER_TIMEOUT).await;
    let c = &t.client;
    let lock = || {
        Txn::new()
            .when(Compare::absent("lock"))
            .then(TxnOp::put("lock", "me"))
            .otherwise(TxnOp::get("lock"))
    };

    // The first taker gets the lock; the second reads who holds it.
    let took = c.txn(lock()).await.expect("txn");
    assert!(took.succeeded);
    assert_eq!(took.results, vec![TxnOpResult::Put]);
    let held = c.txn(lock()).await.expect("txn");
    assert!(!held.succeeded);
    let [TxnOpResult::Get(Some(kv))] = held.results.as_slice() else {
        panic!("{held:?}");
    };
    assert_eq!((&kv.value[..], kv.version), (&b"me"[..], took.revision));

    // Several writes in one entry: all get its revision; gets see earlier writes.
    let r = c
        .txn(
            Txn::new()
                .when(Compare::version("lock", CompareOp::Equal, took.revision))
                .when(Compare::value("lock", "me"))
                .then(TxnOp::put("a", "1"))
                .then(TxnOp::put("b", "2"))
                .then(TxnOp::delete("lock"))
                .then(TxnOp::get("a")),
        )
        .await
        .expect("txn");
    assert!(r.succeeded);
    assert_eq!(r.results[2], TxnOpResult::Delete { existed: true });
    let TxnOpResult::Get(Some(a)) = &r.results[3] else {
        panic!("{r:?}");
    };
    assert_eq!(a.version, r.revision);
    for key in ["a", "b"] {
        let got = c.get(key, ReadMode::Linearizable).await.expect("get");
        assert_eq!(got.kv.expect("written").version, r.revision);
    }

    // Comparisons that fail with no else branch change nothing.
    let r2 = c
        .txn(
            Txn::new()
                .when(Compare::version("a", CompareOp::Greater, r.revision))
                .then(TxnOp::put("a", "changed")),
        )
        .await
        .expect("txn");
    assert!(!r2.succeeded && r2.results.is_empty());
    let a = c.get("a", ReadMode::Linearizable).await.expect("get");
    assert_eq!(&a.kv.expect("a").value[..], b"1");

    // Bad transactions are refused before anything is proposed.
    let last_index = t.status(leader).await.expect("status").last_index;
    let too_many = (0..129).fold(Txn::new(), |txn, _| txn.then(TxnOp::get("a")));
    let twice = Txn::new()
        .then(TxnOp::put("a", "x"))
        .then(TxnOp::delete("a"));
    let empty_key = Txn::new().when(Compare::absent(""));
    for bad in [too_many, twice, empty_key] {
        let err = c.txn(bad).await.expect_err("refused");
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    }
    assert_eq!(
        t.status(leader).await.expect("status").last_index,
        last_index
    );

    // The CLI: exit 0 when the comparisons hold, 4 when the else branch ran.
    let rev = r.revision.to_string();
    let cond = format!("version(a)={rev}");
    let out = keel(
        &t,
        &["txn", "--if", &cond, "--then", "put a 3", "--else", "get a"],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        stdout(&out).starts_with("OK: the comparisons held"),
        "{out:?}"
    );
    let out = keel(
        &t,
        &[
            "txn", "--json", "--if", &cond, "--then", "put a 4", "--else", "get a",
        ],
    );
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let j: Json = serde_json::from_str(stdout(&out).trim()).expect("json");
    assert_eq!(j["succeeded"], false);
    assert_eq!(j["results"][0]["value"], "3");
    let out = keel(&t, &["txn", "--if", "size(a)=1"]);
    assert_eq!(out.status.code(), Some(2), "bad syntax is a usage error");

    // Conditional writes from the CLI.
    let out = keel(&t, &["put", "--if-absent", "a", "x"]);
    assert_eq!(out.status.code(), Some(1), "a exists: {out:?}");
    let out = keel(&t, &["put", "--if-absent", "fresh", "x"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let fresh = c.get("fresh", ReadMode::Linearizable).await.expect("get");
    let v = fresh.kv.expect("created").version.to_string();
    let out = keel(&t, &["put", "--if-version", "1", "fresh", "y"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let out = keel(&t, &["cas", "fresh", "--version", &v, "y"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = keel(&t, &["del", "--if-version", &v, "fresh"]);
    assert_eq!(out.status.code(), Some(1), "stale version: {out:?}");

    // `keel wal dump` shows the transaction.
    let out = std::process::Command::new(common::keel_bin())
        .args(["wal", "dump", "--data-dir"])
        .arg(t.cluster.data_dir(leader))
        .output()
        .expect("run wal dump");
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.starts_with("TXN IF version(lock)=0 THEN SET lock me ELSE GET lock ")),
        "{}",
        stdout(&out)
    );
    t.assert_no_panics();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_and_conditional_writes_over_http() {
    // A small value limit, so a transaction's reads can exceed it cheaply.
    let mut t = TestCluster::start_with(3, &["--max-value-bytes", "1000"]);
    let leader = t.wait_for_leader(LEADER_TIMEOUT).await;
    let follower = t.follower_of(leader, LEADER_TIMEOUT).await;
    let f = t.cluster.http_addr(follower);
    let json_of = |body: &[u8]| -> Json { serde_json::from_slice(body).expect("json body") };

    // If-None-Match: * creates only; POST is create-only with 409.
    let (code, _, body) = http(f, "PUT", "/v1/kv/k", &[("If-None-Match", "*")], b"v1");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let v1 = json_of(&body)["version"].as_u64().expect("version");
    let (code, _, body) = http(f, "PUT", "/v1/kv/k", &[("If-None-Match", "*")], b"v2");
    assert_eq!(code, 412);
    assert_eq!(json_of(&body)["current_version"], v1);
    let (code, _, _) = http(f, "POST", "/v1/kv/k", &[], b"v2");
    assert_eq!(code, 409);

    // If-Match on PUT and DELETE.
    let stale = format!("\"{}\"", v1 + 100);
    let current = format!("\"{v1}\"");
    let (code, _, _) = http(f, "PUT", "/v1/kv/k", &[("If-Match", &stale)], b"v2");
    assert_eq!(code, 412);
    let (code, _, body) = http(f, "PUT", "/v1/kv/k", &[("If-Match", &current)], b"v2");
    assert_eq!(code, 200);
    let v2 = json_of(&body)["version"].as_u64().expect("version");
    let (code, _, body) = http(f, "DELETE", "/v1/kv/k", &[("If-Match", &current)], b"");
    assert_eq!(code, 412);
    assert_eq!(json_of(&body)["current_version"], v2);
    let (code, _, body) = http(
        f,
        "DELETE",
        "/v1/kv/k",
        &[("If-Match", &v2.to_string())],
        b"",
    );
    assert_eq!(code, 200);
    assert_eq!(json_of(&body)["deleted"], true);

    // A transaction, forwarded by the follower.
    let lock = json!({
        "compare": [{"key": "lock", "version": 0}],
        "success": [{"put": "lock", "value": "me"}, {"get": "lock"}],
        "failure": [{"get": "lock"}],
    });
    let post = |body: &Json| http(f, "POST", "/v1/txn", &[], body.to_string().as_bytes());
    let (code, _, body) = post(&lock);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let took = json_of(&body);
    let rev = took["revision"].as_u64().expect("revision");
    assert_eq!(
        took,
        json!({"succeeded": true, "revision": rev, "results": [
            {"put": "lock", "version": rev},
            {"get": "lock", "found": true, "value": "me", "version": rev},
        ]})
    );
    let (code, _, body) = post(&lock);
    assert_eq!(code, 200);
    let held = json_of(&body);
    assert_eq!(held["succeeded"], false);
    assert_eq!(held["results"][0]["version"], rev);

    // Malformed and over-limit transactions: 400, nothing proposed.
    let last_index = t.status(leader).await.expect("status").last_index;
    let many: Vec<Json> = (0..129).map(|_| json!({"get": "lock"})).collect();
    for bad in [
        json!({"success": many}),
        json!({"success": [{"put": "x", "value": "1"}, {"delete": "x"}]}),
        json!({"compare": [{"key": "lock", "value": "me", "op": "<"}]}),
        json!({"success": [{"put": "x", "value": "v".repeat(1001)}]}),
        json!({"success": [{"frobnicate": "x"}]}),
    ] {
        let (code, _, body) = post(&bad);
        assert_eq!(code, 400, "{bad}: {}", String::from_utf8_lossy(&body));
    }
    assert_eq!(
        t.status(leader).await.expect("status").last_index,
        last_index
    );

    // Gets that would return more than the limit (1000 + 4096 bytes): the whole
    // transaction, its put included, changes nothing.
    let (code, _, _) = http(f, "PUT", "/v1/kv/big", &[], &[b'x'; 1000]);
    assert_eq!(code, 200);
    let mut ops = vec![json!({"put": "side-effect", "value": "1"})];
    ops.extend((0..6).map(|_| json!({"get": "big"})));
    let (code, _, body) = post(&json!({ "success": ops }));
    assert_eq!(code, 400);
    assert!(
        String::from_utf8_lossy(&body).contains("nothing was changed"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (code, _, _) = http(f, "GET", "/v1/kv/side-effect", &[], b"");
    assert_eq!(code, 404);
    t.assert_no_panics();
}

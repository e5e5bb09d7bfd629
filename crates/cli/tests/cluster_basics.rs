//! Real `keel` processes on loopback: elections, replication, the HTTP API, the
//! event log and the WAL tools.

mod common;

use std::time::Duration;

use common::{TestCluster, eventually, http};
use keel_client::{Precondition, ReadMode, ScanOptions};

const LEADER_TIMEOUT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_exactly_one_leader() {
    let mut t = TestCluster::start(3);
    let leader = t.wait_for_leader(LEADER_TIMEOUT).await;
    let statuses = t.statuses().await;
    assert_eq!(statuses.len(), 3);
    let leaders: Vec<_> = statuses.iter().filter(|s| s.role == "leader").collect();
    assert_eq!(leaders.len(), 1, "{statuses:#?}");
    assert_eq!(leaders[0].id, leader);
    // Every node that knows a leader agrees on it for the leader's term.
    for s in &statuses {
        if s.term == leaders[0].term {
            assert!(s.leader_id == leader || s.leader_id == 0, "{s:?}");
        }
    }
    t.assert_no_panics();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_write_is_readable_on_every_node() {
    let mut t = TestCluster::start(3);
    t.wait_for_leader(LEADER_TIMEOUT).await;
    let rev = t.client.put("greeting", "hello").await.expect("put");
    assert!(rev > 0);
    let got = t
        .client
        .get("greeting", ReadMode::Linearizable)
        .await
        .expect("get");
    let kv = got.kv.expect("present");
    assert_eq!(&kv.value[..], b"hello");
    assert_eq!(
        kv.version, rev,
        "a value's version is the revision that wrote it"
    );
    for id in 1..=3 {
        t.wait_for_value_on(id, "greeting", "hello", Duration::from_secs(10))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_operations_and_preconditions() {
    let mut t = TestCluster::start(3);
    t.wait_for_leader(LEADER_TIMEOUT).await;
    let c = &t.client;
    let v1 = c
        .put_with("k", "a", Precondition::Absent)
        .await
        .expect("create");
    let err = c
        .put_with("k", "b", Precondition::Absent)
        .await
        .expect_err("must be refused");
    assert!(
        matches!(err, keel_client::Error::Conflict { current_version: Some(v) } if v == v1),
        "{err}"
    );
    let err = c
        .put_with("k", "b", Precondition::Version(v1 + 100))
        .await
        .expect_err("must be refused");
    assert!(err.is_definite_failure());
    let v2 = c
        .put_with("k", "b", Precondition::Version(v1))
        .await
        .expect("cas");
    assert!(v2 > v1);
    for i in 0..5 {
        c.put(format!("scan/{i}"), format!("v{i}"))
            .await
            .expect("put");
    }
    let page = c
        .scan("scan/", &ScanOptions::default().limit(3))
        .await
        .expect("scan");
    assert_eq!(page.kvs.len(), 3);
    assert!(page.more);
    let keys: Vec<_> = page
        .kvs
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).to_string())
        .collect();
    assert_eq!(keys, ["scan/0", "scan/1", "scan/2"]);
    let rest = c
        .scan(
            "scan/",
            &ScanOptions::default()
                .limit(10)
                .start_after(page.kvs[2].key.clone()),
        )
        .await
        .expect("scan");
    assert_eq!(rest.kvs.len(), 2);
    assert!(!rest.more);
    let d = c
        .delete_with("k", Precondition::Version(v1))
        .await
        .expect_err("must be refused");
    assert!(matches!(d, keel_client::Error::Conflict { .. }));
    let d = c.delete("k").await.expect("delete");
    assert!(d.existed);
    assert!(
        c.get("k", ReadMode::Linearizable)
            .await
            .expect("get")
            .kv
            .is_none()
    );
    let d = c.delete("k").await.expect("delete again");
    assert!(!d.existed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_on_leader_and_followers() {
    let mut t = TestCluster::start(3);
    let leader = t.wait_for_leader(LEADER_TIMEOUT).await;
    let follower = t.follower_of(leader, LEADER_TIMEOUT).await;
    let f = t.cluster.http_addr(follower);

    // A follower forwards writes to the leader.
    let (code, _, body) = http(f, "PUT", "/v1/kv/users/ada", &[], b"Ada Lovelace");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let put: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let version = put["version"].as_u64().expect("version");

    let (code, head, body) = http(f, "GET", "/v1/kv/users/ada", &[], b"");
    assert_eq!(code, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("etag: \"{version}\"")),
        "{head}"
    );
    let got: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(got["value"], "Ada Lovelace");
    assert_eq!(got["version"].as_u64(), Some(version));

    // POST creates only.
    let (code, _, _) = http(f, "POST", "/v1/kv/users/ada", &[], b"again");
    assert_eq!(code, 409);
    let (code, _, _) = http(f, "POST", "/v1/kv/users/bob", &[], b"Bob");
    assert_eq!(code, 201);

    // If-Match is compare-and-set on the version.
    let stale = (version + 1000).to_string();
    let (code, _, body) = http(f, "PUT", "/v1/kv/users/ada", &[("If-Match", &stale)], b"x");
    assert_eq!(code, 412, "{}", String::from_utf8_lossy(&body));
    let current = format!("\"{version}\"");
    let (code, _, _) = http(
        f,
        "PUT",
        "/v1/kv/users/ada",
        &[("If-Match", &current)],
        b"Countess",
    );
    assert_eq!(code, 200);

    // JSON bodies.
    let (code, _, _) = http(
        f,
        "PUT",
        "/v1/kv/users/cy",
        &[("Content-Type", "application/json")],
        br#"{"value":"Cy"}"#,
    );
    assert_eq!(code, 200);

    // Scan.
    let (code, _, body) = http(f, "GET", "/v1/kv?prefix=users/&limit=2", &[], b"");
    assert_eq!(code, 200);
    let scan: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(scan["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(scan["more"], true);
    assert_eq!(scan["items"][0]["key"], "users/ada");

    // Delete, then 404.
    let (code, _, _) = http(f, "DELETE", "/v1/kv/users/ada", &[], b"");
    assert_eq!(code, 200);
    let (code, _, _) = http(f, "GET", "/v1/kv/users/ada", &[], b"");
    assert_eq!(code, 404);

    // Status and health.
    let (code, _, body) = http(f, "GET", "/v1/status", &[], b"");
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(status["leader_id"].as_u64(), Some(leader));
    assert_eq!(status["role"], "follower");
    let (code, _, _) = http(f, "GET", "/healthz", &[], b"");
    assert_eq!(code, 200);

    // Stale reads are served locally with the applied index.
    let (code, _, body) = http(f, "GET", "/v1/kv/users/bob?mode=stale", &[], b"");
    assert!(code == 200 || code == 404, "{code}");
    if code == 200 {
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert!(v["revision"].as_u64().is_some());
    }

    // Metrics: the leader counted the proposals and fsyncs; the follower timed
    // the requests it served, by outcome.
    let (code, head, body) = http(t.cluster.http_addr(leader), "GET", "/metrics", &[], b"");
    assert_eq!(code, 200);
    assert!(head.to_ascii_lowercase().contains("openmetrics"), "{head}");
    let leader_metrics = String::from_utf8_lossy(&body);
    for needle in ["keel_is_leader 1", "keel_wal_fsync_seconds_count", "# EOF"] {
        assert!(
            leader_metrics.contains(needle),
            "{needle}: {leader_metrics}"
        );
    }
    let proposals = metric_value(&leader_metrics, "keel_proposals_total");
    assert!(proposals >= 6.0, "{proposals} proposals: {leader_metrics}");
    let (_, _, body) = http(f, "GET", "/metrics", &[], b"");
    let follower_metrics = String::from_utf8_lossy(&body);
    for needle in [
        "keel_is_leader 0",
        "keel_client_request_seconds_count{op=\"Put\",outcome=\"ok\"}",
        "keel_client_request_seconds_count{op=\"Put\",outcome=\"conflict\"} 2",
        "keel_client_request_seconds_count{op=\"Get\",outcome=\"ok\"}",
    ] {
        assert!(
            follower_metrics.contains(needle),
            "{needle}: {follower_metrics}"
        );
    }
    t.assert_no_panics();
}

/// The value of an unlabelled metric in Prometheus text.
fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_log_and_wal_dump_tell_what_happened() {
    let mut t = TestCluster::start(3);
    let leader = t.wait_for_leader(LEADER_TIMEOUT).await;
    t.client.put("name1", "Sam").await.expect("put");
    t.client.delete("name1").await.expect("delete");
    let events = t.cluster.event_log_path(leader);
    eventually(Duration::from_secs(5), "leader event in the event log", || {
        let text = std::fs::read_to_string(&events).unwrap_or_default();
        async move {
            (text.contains(&format!("Node {leader} became the leader for term"))
                && text.contains(&format!("Node {leader} (leader) committed the entry SET name1 Sam to the state machine.")))
            .then_some(())
        }
    })
    .await;
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    let fevents = t.cluster.event_log_path(follower);
    eventually(Duration::from_secs(5), "follower commit event", || {
        let text = std::fs::read_to_string(&fevents).unwrap_or_default();
        async move {
            text.contains(&format!(
                "Node {follower} (follower) committed the entry DEL name1 to the state machine."
            ))
            .then_some(())
        }
    })
    .await;

    // `keel wal dump` reads a live node's log without changing it.
    let out = std::process::Command::new(common::keel_bin())
        .args(["wal", "dump", "--data-dir"])
        .arg(t.cluster.data_dir(leader))
        .output()
        .expect("run wal dump");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.iter().any(|l| l.starts_with("NO-OP ")), "{text}");
    assert!(
        lines.iter().any(|l| l.starts_with("SET name1 Sam ")),
        "{text}"
    );
    // The client's session and the write's number in it (its first).
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("SET name1 Sam SESSION=") && l.contains("#1 ")),
        "{text}"
    );
    assert!(lines.iter().any(|l| l.starts_with("DEL name1 ")), "{text}");
    let out = std::process::Command::new(common::keel_bin())
        .args(["wal", "check", "--data-dir"])
        .arg(t.cluster.data_dir(leader))
        .output()
        .expect("run wal check");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

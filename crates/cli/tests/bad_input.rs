//! Bad input gets a clear error, changes no state, and panics nothing.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{TestCluster, http};
use keel_client::{Error, ReadMode, ScanOptions};

const LEADER_TIMEOUT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_without_side_effects() {
    let mut t = TestCluster::start(3);
    let leader = t.wait_for_leader(LEADER_TIMEOUT).await;
    t.client.put("stable", "1").await.expect("put");

    // Empty key, oversized key, oversized value: over gRPC...
    let c = &t.client;
    for (key, value) in [
        (String::new(), vec![1u8]),
        ("k".repeat(4097), vec![1u8]),
        ("big".to_string(), vec![0u8; (1 << 20) + 1]),
    ] {
        let err = c.put(key.clone(), value).await.expect_err("refused");
        assert!(
            matches!(err, Error::InvalidArgument(_)),
            "key len {}: {err}",
            key.len()
        );
        assert!(err.is_definite_failure());
    }
    // A key of exactly 4 KiB is fine.
    c.put("k".repeat(4096), "ok").await.expect("4 KiB key");

    // ...and over HTTP.
    let h = t.cluster.http_addr(leader);
    let long_key = format!("/v1/kv/{}", "k".repeat(4097));
    let (code, _, body) = http(h, "PUT", &long_key, &[], b"v");
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&body));
    let (code, _, _) = http(h, "PUT", "/v1/kv/big", &[], &vec![0u8; (1 << 20) + 1]);
    assert_eq!(code, 413);
    let (code, _, body) = http(
        h,
        "PUT",
        "/v1/kv/j",
        &[("Content-Type", "application/json")],
        b"{\"value\": ",
    );
    assert_eq!(code, 400);
    assert!(String::from_utf8_lossy(&body).contains("malformed JSON"));
    let (code, _, _) = http(h, "PUT", "/v1/kv/j", &[("If-Match", "not-a-number")], b"v");
    assert_eq!(code, 400);
    let (code, _, _) = http(h, "GET", "/v1/kv?limit=minus-one", &[], b"");
    assert_eq!(code, 400);
    let (code, _, _) = http(h, "GET", "/v1/kv/x?mode=sometimes", &[], b"");
    assert_eq!(code, 400);

    // Malformed HTTP.
    let mut s = TcpStream::connect(h).expect("connect");
    s.write_all(b"BLAH\r\n\x00\x01\x02 not http at all\r\n\r\n")
        .expect("write");
    let mut buf = Vec::new();
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 400"),
        "{text}"
    );

    // Garbage on the gRPC port (clients' and peers').
    for garbage in [
        &b"\x16\x03\x01 definitely not http2"[..],
        &[0xffu8; 4096][..],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x04garbage",
    ] {
        let mut s = TcpStream::connect(t.cluster.grpc_addr(leader)).expect("connect");
        let _ = s.write_all(garbage);
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf);
    }

    // Nothing was written by any of it; the node still works.
    c.put("still", "works").await.expect("node still serves");
    let all = c
        .scan("", &ScanOptions::default().limit(100))
        .await
        .expect("scan");
    let mut keys: Vec<String> = all
        .kvs
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect();
    keys.sort();
    let mut want = vec!["k".repeat(4096), "stable".to_string(), "still".to_string()];
    want.sort();
    assert_eq!(keys, want, "bad requests changed the state");
    let stable = c
        .get("stable", ReadMode::Linearizable)
        .await
        .expect("get")
        .kv
        .expect("present");
    assert_eq!(&stable.value[..], b"1");
    assert_eq!(t.cluster.running().len(), 3);
    t.assert_no_panics();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_from_another_cluster_are_rejected_and_logged() {
    let mut t = TestCluster::start(3);
    t.wait_for_leader(LEADER_TIMEOUT).await;
    // A node of a different cluster that believes node 1 of ours is its peer.
    let dir = tempfile::tempdir().expect("tempdir");
    let ours = t.cluster.grpc_addr(1);
    let ip = ours.ip();
    let port = keel_testkit::local_cluster::free_ports(ip, 1).expect("port")[0];
    let mut intruder = std::process::Command::new(common::keel_bin())
        .args(["serve", "--id", "2", "--data-dir"])
        .arg(dir.path())
        .args(["--listen", &port.to_string()])
        .args(["--initial-cluster", &format!("1={ours},2={port}")])
        .args(["--cluster-token", "someone-else"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start intruder");
    let log = t.cluster.log_path(1);
    common::eventually(Duration::from_secs(15), "node 1 logs the rejection", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        async move { text.contains("of another cluster").then_some(()) }
    })
    .await;
    let _ = intruder.kill();
    let _ = intruder.wait();
    // Our cluster is unaffected.
    t.client.put("ours", "fine").await.expect("write");
    t.assert_no_panics();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_from_a_removed_member_are_rejected_and_logged() {
    let mut t = TestCluster::start(3);
    let leader = t.wait_for_leader(LEADER_TIMEOUT).await;
    let gone = (1..=3).find(|&id| id != leader).expect("a follower");
    // Removed while down, it misses its removal and, restarted, campaigns.
    t.cluster.kill(gone).expect("kill");
    // A membership change has no session: its outcome may be unknown (a
    // connection broken by the kill), so the member list decides.
    common::eventually(Duration::from_secs(15), "the node is removed", || {
        let c = t.client.clone();
        async move {
            let _ = c.remove_member(gone).await;
            let m = c.members().await.ok()?;
            (!m.members.iter().any(|m| m.id == gone) && !m.change_in_progress).then_some(())
        }
    })
    .await;
    t.client.put("after", "removal").await.expect("write");
    t.cluster.spawn(gone).expect("restart the removed node");
    let survivors: Vec<u64> = (1..=3).filter(|&id| id != gone).collect();
    let logs: Vec<_> = survivors.iter().map(|&id| t.cluster.log_path(id)).collect();
    let wanted = format!("rejected messages from node {gone}, which is not a member");
    common::eventually(
        Duration::from_secs(15),
        "a member logs the removed node's refusal",
        || {
            let found = logs
                .iter()
                .any(|p| std::fs::read_to_string(p).is_ok_and(|text| text.contains(&wanted)));
            async move { found.then_some(()) }
        },
    )
    .await;
    // The removed node learns it from the refusals.
    let events = t.cluster.event_log_path(gone);
    common::eventually(
        Duration::from_secs(15),
        "the removed node notes its removal",
        || {
            let text = std::fs::read_to_string(&events).unwrap_or_default();
            async move { text.contains("was removed from the cluster").then_some(()) }
        },
    )
    .await;
    t.cluster.kill(gone).expect("stop the removed node");
    // The cluster is unaffected.
    t.client.put("still", "fine").await.expect("write");
    t.assert_no_panics();
}

#[test]
fn restart_with_contradicting_flags_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ip = common::unique_loopback();
    let port = keel_testkit::local_cluster::free_ports(ip, 1).expect("port")[0];
    let spawn = |id: &str, cluster: &str| {
        std::process::Command::new(common::keel_bin())
            .args(["serve", "--id", id, "--data-dir"])
            .arg(dir.path())
            .args(["--listen", &port.to_string()])
            .args(["--initial-cluster", cluster])
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawn")
    };
    let me = format!("1={port}");
    // First start: runs, records its identity, serves.
    let mut first = spawn("1", &me);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    // Listening is not enough: a node binds its ports before it records its
    // identity, and killed in between it would have recorded nothing to contradict.
    while TcpStream::connect_timeout(&port, Duration::from_millis(200)).is_err()
        || !dir.path().join("identity.json").exists()
    {
        assert!(
            first.try_wait().expect("wait").is_none(),
            "first start failed"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "node never listened or never recorded its identity"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = first.kill();
    let _ = first.wait();
    // Restarts that contradict the recorded identity exit with a clear error.
    let exits_with = |mut child: std::process::Child| -> (std::process::ExitStatus, String) {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                let mut err = String::new();
                let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
                return (status, err);
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("a contradicting restart kept running");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let (status, err) = exits_with(spawn("2", &format!("2={port}")));
    assert!(!status.success(), "a different --id must be refused");
    assert!(err.contains("belongs to node 1"), "{err}");
    let (status, err) = exits_with(spawn("1", &format!("{me},2=127.0.0.1:1")));
    assert!(!status.success());
    assert!(err.contains("contradicts"), "{err}");
}

//! Leadership transfer with real processes: `keel leader transfer`, and a leader
//! that hands over when it is stopped gracefully (thesis §3.10).

mod common;

use std::time::Duration;

use common::{TestCluster, eventually};

const LEADER_TIMEOUT: Duration = Duration::from_secs(15);

/// Waits until `id`'s event log contains `needle`.
async fn event_logged(t: &TestCluster, id: u64, needle: String) {
    let path = t.cluster.event_log_path(id);
    eventually(Duration::from_secs(10), &needle.clone(), || {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let found = text.contains(&needle);
        async move { found.then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_moves_on_request_and_on_graceful_shutdown() {
    let mut t = TestCluster::start(3);
    let first = t.wait_for_leader(LEADER_TIMEOUT).await;
    t.client.put("k", "before").await.expect("put");
    let target = (1..=3).find(|&id| id != first).expect("a follower");

    // Asked through a follower: the request finds the leader, which hands over.
    let via = (1..=3)
        .find(|&id| id != first && id != target)
        .expect("a third node");
    let out = std::process::Command::new(common::keel_bin())
        .args([
            "leader",
            "transfer",
            "--to",
            &target.to_string(),
            "--endpoints",
        ])
        .arg(t.cluster.grpc_addr(via).to_string())
        .output()
        .expect("run keel leader transfer");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("node {target} leads now")
    );
    assert_eq!(t.wait_for_leader(LEADER_TIMEOUT).await, target);
    event_logged(
        &t,
        first,
        format!("Leader {first} is handing leadership to Node {target}."),
    )
    .await;
    // Asked again for the node that leads now: already so, nothing to do.
    assert_eq!(
        t.client
            .transfer_leader(target)
            .await
            .expect("transfer again"),
        target
    );

    // Bad targets are refused clearly and change nothing.
    let out = std::process::Command::new(common::keel_bin())
        .args(["leader", "transfer", "--to", "9", "--endpoints"])
        .arg(t.cluster.grpc_addr(target).to_string())
        .output()
        .expect("run keel leader transfer");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a member"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A leader stopped with SIGTERM hands over first; the data stays.
    let status = t
        .cluster
        .stop(target, Duration::from_secs(20))
        .expect("stop")
        .expect("was running");
    assert!(status.success(), "{status:?}");
    let log = std::fs::read_to_string(t.cluster.event_log_path(target)).unwrap_or_default();
    assert!(
        log.contains(&format!("Leader {target} is handing leadership to Node")),
        "{log}"
    );
    let next = t.wait_for_leader(LEADER_TIMEOUT).await;
    assert_ne!(next, target);
    let got = t
        .client
        .get("k", keel_client::ReadMode::Linearizable)
        .await
        .expect("get");
    assert_eq!(got.kv.map(|kv| kv.value), Some("before".into()));
    t.assert_no_panics();
}

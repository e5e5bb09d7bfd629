//! A full data disk (issue 7), with real processes whose data directories are
//! small tmpfs mounts filled up by a filler file:
//!
//! - a full **leader** hands leadership to a follower, and writes go on there;
//! - a full **follower** stores nothing new, and the others carry on without it;
//! - with **every** node full, writes fail with DISK_FULL (gRPC and HTTP 507);
//!
//! and in every case reads keep working, the node takes writes again by itself
//! once the filler is deleted (no restart), and every acknowledged write is read
//! back from every node at the end. Needs root for the mounts: skipped, with the
//! reason printed, otherwise.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::tmpfs::Tmpfs;
use common::{TestCluster, eventually, http, keel_bin, unique_loopback};
use keel_client::{Error, ReadMode};
use keel_testkit::local_cluster::{ClusterSpec, LocalCluster};

/// Size of each node's tmpfs.
const TMPFS_SIZE: &str = "16m";
/// Writes are refused below this much free space (`--min-free-disk-bytes`).
const MIN_FREE: u64 = 2 << 20;
const WAIT: Duration = Duration::from_secs(30);

/// A 3-node cluster, each node's data directory on its own tmpfs. The mounts are
/// dropped after the cluster (its processes are killed first).
struct FullDiskCluster {
    t: TestCluster,
    mounts: Vec<Tmpfs>,
    _base: tempfile::TempDir,
    /// Keys written and acknowledged, with their values.
    acked: Vec<(String, String)>,
}

impl FullDiskCluster {
    /// `None` (after printing why) when tmpfs cannot be mounted here.
    fn start(test: &str) -> Option<FullDiskCluster> {
        let base = tempfile::Builder::new()
            .prefix("keel-disk-")
            .tempdir()
            .expect("tempdir");
        let mut mounts = Vec::new();
        for id in 1..=3 {
            match Tmpfs::mount(&base.path().join(format!("node-{id}")), TMPFS_SIZE) {
                Ok(m) => mounts.push(m),
                Err(reason) => {
                    eprintln!("SKIPPED {test}: {reason}");
                    return None;
                }
            }
        }
        let mut spec =
            ClusterSpec::on_free_ports(3, unique_loopback(), base.path().to_path_buf(), keel_bin())
                .expect("free ports");
        spec.extra_args = [
            "--wal-segment-bytes",
            "1048576",
            "--min-free-disk-bytes",
            &MIN_FREE.to_string(),
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        let cluster = LocalCluster::start(spec).expect("start cluster");
        Some(FullDiskCluster {
            t: TestCluster::adopt(cluster),
            mounts,
            _base: base,
            acked: Vec::new(),
        })
    }

    /// Writes `key` through the cluster client; it must succeed.
    async fn write(&mut self, key: &str, value: &str) {
        if let Err(e) = self.t.client.put(key.to_string(), value.to_string()).await {
            self.t.dump_logs();
            panic!("write of {key} failed: {e}");
        }
        self.acked.push((key.to_string(), value.to_string()));
    }

    /// Fills node `id`'s disk to half the floor, and waits until it says so.
    async fn fill(&self, id: u64) -> PathBuf {
        let filler = self.mounts[(id - 1) as usize].fill(MIN_FREE / 2);
        self.wait_disk_full(id, true).await;
        filler
    }

    /// Waits until node `id`'s `keel_disk_full` metric is `full`.
    async fn wait_disk_full(&self, id: u64, full: bool) {
        let addr = self.t.cluster.http_addr(id);
        let want = format!("keel_disk_full {}", u8::from(full));
        eventually(WAIT, &format!("node {id}: {want}"), || {
            let want = want.clone();
            async move {
                let (status, _, body) = http(addr, "GET", "/metrics", &[], b"");
                (status == 200 && String::from_utf8_lossy(&body).lines().any(|l| l == want))
                    .then_some(())
            }
        })
        .await;
    }

    /// Whether node `id`'s own state machine holds `key` (a local, stale read).
    async fn has_locally(&self, id: u64, key: &str) -> bool {
        let r = self
            .t
            .node_client(id)
            .get(key.to_string(), ReadMode::Stale)
            .await;
        r.expect("local read").kv.is_some()
    }

    /// Node `id`'s event log.
    fn events(&self, id: u64) -> String {
        std::fs::read_to_string(self.t.cluster.event_log_path(id)).unwrap_or_default()
    }

    /// Every acknowledged write is in every node's state machine.
    async fn assert_all_acked_everywhere(&self) {
        for id in 1..=3 {
            for (k, v) in &self.acked {
                self.t.wait_for_value_on(id, k, v, WAIT).await;
            }
        }
        self.t.assert_no_panics();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_leader_hands_over_and_takes_writes_again_once_space_returns() {
    let Some(mut c) = FullDiskCluster::start("full leader") else {
        return;
    };
    let leader = c.t.wait_for_leader(WAIT).await;
    for i in 0..20 {
        c.write(&format!("before-{i}"), "v").await;
    }
    let filler = c.fill(leader).await;
    assert!(
        c.events(leader)
            .contains(&format!("Node {leader} cannot write its log: disk full")),
        "event log of node {leader}:\n{}",
        c.events(leader)
    );
    // It hands leadership over; the cluster takes writes at the new leader.
    let new = eventually(WAIT, "a new leader", || {
        let t = &c.t;
        async move {
            for id in (1..=3).filter(|&id| id != leader) {
                if t.status(id).await.is_some_and(|s| s.role == "leader") {
                    return Some(id);
                }
            }
            None
        }
    })
    .await;
    assert_ne!(new, leader);
    for i in 0..20 {
        c.write(&format!("during-{i}"), "v").await;
    }
    // Reads go on: linearizable through the cluster, and local ones on the full
    // node of what it stored before.
    let r = c.t.client.get("during-3", ReadMode::Linearizable).await;
    assert_eq!(r.expect("read").kv.expect("found").value, b"v".as_slice());
    assert!(
        c.has_locally(leader, "before-7").await,
        "the full node still serves what it has"
    );
    // Space returns: the node catches up by itself, no restart.
    std::fs::remove_file(&filler).expect("remove filler");
    c.wait_disk_full(leader, false).await;
    assert!(
        c.events(leader).contains("has disk space again"),
        "{}",
        c.events(leader)
    );
    for i in 0..5 {
        c.write(&format!("after-{i}"), "v").await;
    }
    c.assert_all_acked_everywhere().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_follower_stores_nothing_new_and_catches_up_once_space_returns() {
    let Some(mut c) = FullDiskCluster::start("full follower") else {
        return;
    };
    let leader = c.t.wait_for_leader(WAIT).await;
    let follower = c.t.follower_of(leader, WAIT).await;
    c.write("before", "v").await;
    c.t.wait_for_value_on(follower, "before", "v", WAIT).await;
    let filler = c.fill(follower).await;
    // The other two commit without it.
    for i in 0..20 {
        c.write(&format!("during-{i}"), "v").await;
    }
    assert!(
        !c.has_locally(follower, "during-19").await,
        "a full follower stored a new entry"
    );
    assert!(
        c.has_locally(follower, "before").await,
        "the full follower still serves what it has"
    );
    let status = c.t.status(leader).await.expect("leader status");
    assert_eq!(status.role, "leader", "the leader kept its quorum");
    std::fs::remove_file(&filler).expect("remove filler");
    c.wait_disk_full(follower, false).await;
    c.write("after", "v").await;
    c.assert_all_acked_everywhere().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_every_disk_full_writes_fail_clearly_reads_work_and_space_brings_writes_back() {
    let Some(mut c) = FullDiskCluster::start("whole cluster full") else {
        return;
    };
    c.t.wait_for_leader(WAIT).await;
    c.write("before", "v").await;
    for id in 1..=3 {
        c.t.wait_for_value_on(id, "before", "v", WAIT).await;
    }
    let mut fillers = Vec::new();
    for id in 1..=3 {
        fillers.push(c.mounts[(id - 1) as usize].fill(MIN_FREE / 2));
    }
    for id in 1..=3 {
        c.wait_disk_full(id, true).await;
    }
    let leader = c.t.wait_for_leader(WAIT).await;
    // Through the Rust client: a definite failure that names the cause.
    let short = c.t.client.with_deadline(Duration::from_secs(2));
    match short.put("refused", "v").await {
        Err(e @ Error::DiskFull { .. }) => {
            assert!(e.is_definite_failure());
            assert!(e.to_string().contains("disk full"), "{e}");
        }
        other => panic!("expected DiskFull, got {other:?}"),
    }
    // Through HTTP: 507 Insufficient Storage, kind disk_full.
    let (status, _, body) = http(
        c.t.cluster.http_addr(leader),
        "PUT",
        "/v1/kv/refused",
        &[],
        b"v",
    );
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 507, "{body}");
    assert!(
        body.contains("disk_full") && body.contains("free space on"),
        "{body}"
    );
    // Reads work, linearizable ones included.
    let r = c.t.client.get("before", ReadMode::Linearizable).await;
    assert!(r.expect("read").kv.is_some());
    let r = c.t.client.get("refused", ReadMode::Linearizable).await;
    assert!(r.expect("read").kv.is_none(), "a refused write was applied");
    // Space returns everywhere: writes succeed again without a restart.
    for f in &fillers {
        std::fs::remove_file(f).expect("remove filler");
    }
    for id in 1..=3 {
        c.wait_disk_full(id, false).await;
    }
    c.write("after", "v").await;
    c.assert_all_acked_everywhere().await;
}

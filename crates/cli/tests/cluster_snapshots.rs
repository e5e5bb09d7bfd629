//! Snapshots with real processes: a follower that was down across several
//! snapshots catches up by one; kill -9 while a snapshot is sent and installed; a
//! damaged snapshot file is refused at start-up. Every test ends by comparing the
//! replicas' state-machine digests.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::TestCluster;
use common::workload::{
    CATCH_UP, LEADER_TIMEOUT, SNAPSHOT_FLAGS, assert_keys, assert_same_digests, count, events,
    poll_until, value, wait_converged, wait_for_event, write_keys,
};
use keel_client::ReadMode;

/// Polls (up to `CATCH_UP`) until `id` has started receiving a snapshot or has
/// installed one, so that a kill lands during the transfer.
async fn wait_for_transfer(t: &TestCluster, id: u64) {
    poll_until(CATCH_UP, || {
        has_partial(t, id) || count(t, id, "installed the leader's snapshot") > 0
    })
    .await;
}

fn snap_dir(t: &TestCluster, id: u64) -> PathBuf {
    keel_server::node::snapshot_dir(&t.cluster.data_dir(id))
}

/// Finished snapshot files of node `id`, oldest first.
fn snapshot_files(t: &TestCluster, id: u64) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(snap_dir(t, id))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "keel"));
    files.sort();
    files
}

fn has_partial(t: &TestCluster, id: u64) -> bool {
    std::fs::read_dir(snap_dir(t, id))
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".keel.partial"))
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_down_across_snapshots_catches_up_by_snapshot() {
    let started = Instant::now();
    let mut t = TestCluster::start_with(3, SNAPSHOT_FLAGS);
    let leader = t.wait_for_leader(LEADER_TIMEOUT).await;
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    // Enough for a few 1 MiB WAL segments on every node, under one snapshot.
    write_keys(&t, "pre", 0..150, 8 << 10).await;
    t.cluster.kill(follower).expect("kill follower");
    // ~3 thresholds of writes while it is down.
    write_keys(&t, "k", 0..650, 512).await;
    wait_for_event(&t, leader, "took a snapshot at index", 2, CATCH_UP).await;
    t.cluster.spawn(follower).expect("restart follower");
    wait_for_event(&t, follower, "installed the leader's snapshot", 1, CATCH_UP).await;
    wait_for_event(&t, leader, "sent its snapshot at index", 1, CATCH_UP).await;
    // The segments the installed snapshot covers go at once — unless the
    // placement group's first entries, in the same WAL, still pin the oldest
    // segment (its pressure snapshot comes within a second of the restart,
    // and on a loaded machine after the install): then they go with the
    // placement group's compaction.
    let compacted = poll_until(CATCH_UP, || {
        let log = events(&t, follower);
        log.contains("compacted its log after installing")
            || log.lines().any(|l| {
                l.contains("[placement group]")
                    && l.contains("compacted its log")
                    && !l.contains(" 0 WAL segment(s)")
            })
    })
    .await;
    assert!(
        compacted,
        "no compaction deleted segments after the install:\n{}",
        events(&t, follower)
    );
    write_keys(&t, "after", 0..10, 16).await;
    wait_converged(&mut t).await;
    // The leader's log on disk was cut behind its previous snapshot once its state
    // machine was durable that far (flushed every second).
    wait_for_event(&t, leader, "compacted its log", 1, CATCH_UP).await;
    let metric = |id: u64, name: &str| -> u64 {
        let (_, _, body) = common::http(t.cluster.http_addr(id), "GET", "/metrics", &[], b"");
        String::from_utf8_lossy(&body)
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0)
    };
    assert!(metric(leader, "keel_snapshot_sent_bytes_total ") > 0);
    assert!(metric(follower, "keel_snapshot_received_bytes_total ") > 0);
    assert_keys(&t, "k", 0..650, 512).await;
    let follower_client = t.node_client(follower);
    let r = follower_client
        .get("k0".to_string(), ReadMode::Stale)
        .await
        .expect("local read");
    assert!(r.kv.is_some(), "the follower's own state has k0");
    t.assert_no_panics();
    assert_same_digests(&mut t, 810);
    eprintln!("took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_snapshot_install_and_send_then_converge() {
    let started = Instant::now();
    let mut t = TestCluster::start_with(3, SNAPSHOT_FLAGS);
    let leader = t.wait_for_leader(LEADER_TIMEOUT).await;
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    t.cluster.kill(follower).expect("kill follower");
    // Big enough values that the transfer takes a while (several MiB).
    write_keys(&t, "k", 0..900, 8 << 10).await;
    wait_for_event(&t, leader, "took a snapshot at index", 2, CATCH_UP).await;

    // 1. The follower dies while receiving or installing.
    t.cluster.spawn(follower).expect("restart follower");
    wait_for_transfer(&t, follower).await;
    t.cluster
        .kill(follower)
        .expect("kill -9 follower during the transfer");
    let hit_install = count(&t, follower, "installed the leader's snapshot") > 0;
    eprintln!(
        "killed the follower {}",
        if hit_install {
            "after its install"
        } else {
            "while it received"
        }
    );

    // 2. The leader dies while sending.
    t.cluster.spawn(follower).expect("restart follower");
    wait_for_transfer(&t, follower).await;
    t.cluster
        .kill(leader)
        .expect("kill -9 leader during the transfer");
    let new_leader = t.wait_for_leader(LEADER_TIMEOUT).await;
    assert_ne!(new_leader, leader);
    write_keys(&t, "after", 0..50, 16).await;
    t.cluster.spawn(leader).expect("restart old leader");
    wait_converged(&mut t).await;
    assert_keys(&t, "k", 0..900, 8 << 10).await;
    assert_keys(&t, "after", 0..50, 16).await;
    t.assert_no_panics();
    assert_same_digests(&mut t, 950);
    eprintln!("took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_snapshot_is_refused_at_start_and_the_node_falls_back() {
    let started = Instant::now();
    let mut t = TestCluster::start_with(3, SNAPSHOT_FLAGS);
    let leader = t.wait_for_leader(LEADER_TIMEOUT).await;
    let victim = (1..=3).find(|&id| id != leader).expect("a follower");
    // Writes in waves until the follower holds two snapshot files: where its
    // snapshots fall depends on how its applies batch up (a snapshot is taken at
    // the applied index, which can be past the due point) and on its jitter, so
    // a fixed number of keys is not enough on a loaded machine.
    let mut written = 0;
    while !poll_until(Duration::from_secs(2), || {
        snapshot_files(&t, victim).len() >= 2
    })
    .await
    {
        assert!(
            written < 3000,
            "no second snapshot on the follower after {written} keys"
        );
        write_keys(&t, "k", written..written + 250, 256).await;
        written += 250;
    }
    t.cluster
        .stop(victim, Duration::from_secs(10))
        .expect("stop follower");
    let newest = snapshot_files(&t, victim).pop().expect("a snapshot");
    // Flip bytes in the middle of the file: a data chunk's checksum fails.
    let mut bytes = std::fs::read(&newest).expect("read snapshot");
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 16] {
        *b ^= 0x5a;
    }
    std::fs::write(&newest, &bytes).expect("corrupt snapshot");

    t.cluster.spawn(victim).expect("restart follower");
    wait_for_event(&t, victim, "refused a damaged snapshot", 1, CATCH_UP).await;
    let line = events(&t, victim)
        .lines()
        .find(|l| l.contains("refused a damaged snapshot"))
        .map(str::to_string)
        .unwrap_or_default();
    let name = newest
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(line.contains(&name), "the refusal names the file: {line}");
    assert!(
        line.contains("offset"),
        "the refusal names the offset: {line}"
    );
    // Set aside, so it is never loaded or sent. (The restarted node may since
    // have written a fresh snapshot at the same index, under the same name: that
    // one is whole.)
    let mut aside = newest.clone().into_os_string();
    aside.push(".corrupt");
    assert_eq!(
        std::fs::read(&aside).expect("the damaged file, renamed"),
        bytes,
        "the damaged bytes were set aside"
    );
    assert!(
        std::fs::read(&newest).map_or(true, |now| now != bytes),
        "the damaged file is no longer where snapshots are loaded from"
    );
    write_keys(&t, "after", 0..20, 16).await;
    t.wait_for_value_on(victim, "after19", &value(19, 16), CATCH_UP)
        .await;
    wait_converged(&mut t).await;
    assert_keys(&t, "k", 0..written, 256).await;
    t.assert_no_panics();
    assert_same_digests(&mut t, written as u64 + 20);
    eprintln!("took {:?}", started.elapsed());
}

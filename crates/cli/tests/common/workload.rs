//! Writes, checks and replica comparison shared by the cluster tests.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use keel_client::ReadMode;
use keel_storage::kv::{KvDigest, KvStore};
use keel_storage::vfs::StdVfs;

use super::{TestCluster, eventually};

/// How long a test waits for a leader.
pub const LEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a test waits for replicas to catch up.
pub const CATCH_UP: Duration = Duration::from_secs(15);

/// Small snapshot thresholds, so that a few hundred writes make several
/// snapshots, and a stopped or new node is sent one.
pub const SNAPSHOT_FLAGS: &[&str] = &[
    "--snapshot-entries",
    "200",
    "--snapshot-trailing-entries",
    "20",
    "--wal-segment-bytes",
    "1048576",
];

/// The value written for key number `i`: unique, `size` bytes of padding.
pub fn value(i: usize, size: usize) -> String {
    format!("{i:08}-{}", "v".repeat(size))
}

/// Writes keys `prefix{range}` in waves of 32, retrying a put whose outcome is
/// unknown or that found no leader (a node was killed or removed under it); every
/// key ends acknowledged.
pub async fn write_keys(t: &TestCluster, prefix: &str, range: std::ops::Range<usize>, size: usize) {
    let keys: Vec<usize> = range.collect();
    for wave in keys.chunks(32) {
        let writes = wave.iter().map(|&i| {
            let c = t.client.clone();
            let key = format!("{prefix}{i}");
            async move {
                let mut tries = 0;
                loop {
                    match c.put(key.clone(), value(i, size)).await {
                        Ok(_) => return,
                        Err(_) if tries < 20 => {
                            tries += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(e) => panic!("write {key} failed: {e}"),
                    }
                }
            }
        });
        join_all(writes).await;
    }
}

/// Every key `prefix{range}` reads back (linearizably) with its value.
pub async fn assert_keys(
    t: &TestCluster,
    prefix: &str,
    range: std::ops::Range<usize>,
    size: usize,
) {
    for i in range {
        let r = t
            .client
            .get(format!("{prefix}{i}"), ReadMode::Linearizable)
            .await
            .expect("read");
        let kv =
            r.kv.unwrap_or_else(|| panic!("acknowledged key {prefix}{i} lost"));
        assert_eq!(kv.value, value(i, size).as_bytes(), "{prefix}{i}");
    }
}

/// Node `id`'s event log so far.
pub fn events(t: &TestCluster, id: u64) -> String {
    std::fs::read_to_string(t.cluster.event_log_path(id)).unwrap_or_default()
}

/// How often `needle` occurs in node `id`'s event log.
pub fn count(t: &TestCluster, id: u64, needle: &str) -> usize {
    events(t, id).matches(needle).count()
}

/// Polls until node `id`'s event log holds `needle` `n` times.
pub async fn wait_for_event(t: &TestCluster, id: u64, needle: &str, n: usize, timeout: Duration) {
    eventually(
        timeout,
        &format!("{n}× {needle:?} in node {id}'s event log"),
        || {
            let found = count(t, id, needle) >= n;
            async move { found.then_some(()) }
        },
    )
    .await
}

/// Waits until each of `ids` has applied everything in the leader's log.
pub async fn wait_applied(t: &mut TestCluster, ids: &[u64]) {
    let leader = t.wait_for_leader(LEADER_TIMEOUT).await;
    // The end of the leader's log, not its commit index: the status a node
    // publishes can trail the answer to a write by one turn, so right after an
    // acknowledged write the published commit index may not include it yet,
    // while the turn that appended it has published its log end.
    let target = t.status(leader).await.expect("leader status").last_index;
    for &id in ids {
        eventually(
            CATCH_UP,
            &format!("node {id} applies index {target}"),
            || {
                let s = t.status(id);
                async move { (s.await?.applied_index >= target).then_some(()) }
            },
        )
        .await;
    }
}

/// Waits until every running node has applied everything in the leader's log.
pub async fn wait_converged(t: &mut TestCluster) {
    let ids = t.cluster.running();
    wait_applied(t, &ids).await;
}

/// The digest of the state machine in a stopped node's data directory.
pub fn digest(dir: &Path) -> KvDigest {
    let kv = KvStore::open(Arc::new(StdVfs::new()), &keel_server::node::state_path(dir))
        .expect("open state machine");
    kv.digest().expect("digest")
}

/// Stops nodes `ids` cleanly and compares the digests of their state machines
/// (keys, values and versions; the applied index may differ by a no-op).
pub fn assert_same_digests_of(t: &mut TestCluster, ids: &[u64], expected_keys: u64) {
    for &id in ids {
        t.cluster.stop(id, Duration::from_secs(10)).expect("stop");
    }
    let digests: Vec<(u64, KvDigest)> = ids
        .iter()
        .map(|&id| (id, digest(&t.cluster.data_dir(id))))
        .collect();
    for (id, d) in &digests {
        assert_eq!(d.keys, expected_keys, "node {id} key count: {digests:?}");
        assert_eq!(d.hash, digests[0].1.hash, "node {id} diverged: {digests:?}");
    }
}

/// [`assert_same_digests_of`] every node of the cluster.
pub fn assert_same_digests(t: &mut TestCluster, expected_keys: u64) {
    let ids: Vec<u64> = (1..=t.cluster.spec().nodes).collect();
    assert_same_digests_of(t, &ids, expected_keys);
}

/// Polls (up to `timeout`) until `f` holds; for waits inside a busy loop where a
/// panic on timeout is not wanted.
pub async fn poll_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !f() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    true
}

/// Writes in the background until stopped: several writers, each putting its own
/// keys one after another; a write whose outcome is unknown is retried until it
/// is acknowledged (putting the same value twice is harmless here).
pub struct Writer {
    stop: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<String>>>,
}

impl Writer {
    /// Starts `writers` writers of keys `{prefix}{writer}-{n}`.
    pub fn start(t: &TestCluster, prefix: &str, writers: usize) -> Writer {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tasks = (0..writers)
            .map(|w| {
                let c = t.client.clone();
                let stop = stop.clone();
                let prefix = format!("{prefix}{w}-");
                tokio::spawn(async move {
                    let mut acked = Vec::new();
                    let mut n = 0usize;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let key = format!("{prefix}{n}");
                        if c.put(key.clone(), value(n, 32)).await.is_ok() {
                            acked.push(key);
                            n += 1;
                        }
                    }
                    acked
                })
            })
            .collect();
        Writer { stop, tasks }
    }

    /// Stops the writers; returns every acknowledged key (its value is
    /// `value(n, 32)` for the key's number `n`).
    pub async fn finish(self) -> Vec<String> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut keys = Vec::new();
        for t in self.tasks {
            keys.extend(t.await.expect("writer task"));
        }
        keys
    }
}

/// Every key a [`Writer`] acknowledged reads back with its value.
pub async fn assert_written(t: &TestCluster, keys: &[String]) {
    for key in keys {
        let n: usize = key
            .rsplit('-')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("writer key ends in its number");
        let r = t
            .client
            .get(key.clone(), ReadMode::Linearizable)
            .await
            .expect("read");
        let kv =
            r.kv.unwrap_or_else(|| panic!("acknowledged key {key} lost"));
        assert_eq!(kv.value, value(n, 32).as_bytes(), "{key}");
    }
}

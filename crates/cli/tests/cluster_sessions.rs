//! Exactly-once writes with real processes: a counter built from compare-and-set
//! (read value and version, CAS version → value + 1) ends equal to the number of
//! increments the client saw succeed, although writes are retried after lost
//! replies (the `--fault-lose-write-reply-every` test fault), a leadership
//! transfer, and a killed leader.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::workload::{assert_same_digests, wait_converged};
use common::{TestCluster, eventually};
use keel_client::{Client, ClientConfig, Error, Precondition, ReadMode};
use keel_testkit::prometheus::{http_get, sample};

const LEADER_TIMEOUT: Duration = Duration::from_secs(15);
const PROGRESS: Duration = Duration::from_secs(60);

/// The counter at `key`: its value (0 if absent) and version (`None` if absent).
async fn read(client: &Client, key: &str) -> (u64, Option<u64>) {
    let got = client
        .get(key.to_owned(), ReadMode::Linearizable)
        .await
        .expect("linearizable read");
    match got.kv {
        None => (0, None),
        Some(kv) => {
            let text = std::str::from_utf8(&kv.value).expect("utf-8");
            (text.parse().expect("a number"), Some(kv.version))
        }
    }
}

/// One attempt to increment: read, then CAS. `Ok` if this client's CAS applied.
async fn increment(client: &Client, key: &str) -> Result<(), Error> {
    let (value, version) = read(client, key).await;
    let condition = version.map_or(Precondition::Absent, Precondition::Version);
    client
        .put_with(key.to_owned(), (value + 1).to_string(), condition)
        .await
        .map(drop)
}

/// The `keel_session_duplicates` counter of node `id`.
fn duplicates_on(t: &TestCluster, id: u64) -> f64 {
    let page = http_get(t.cluster.http_addr(id), "/metrics", Duration::from_secs(5))
        .expect("metrics page");
    sample(&page, "keel_session_duplicates_total").unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_retried_after_a_lost_reply_applies_once() {
    // Every third write the leader proposes gets OUTCOME_UNKNOWN after it applied.
    let mut t = TestCluster::start_with(3, &["--fault-lose-write-reply-every", "3"]);
    let leader = t.wait_for_leader(LEADER_TIMEOUT).await;

    // The control: without a session, a lost reply leaves the client guessing,
    // and an increment loop that tries again after any failure counts too few
    // successes (the counter moved more often than the client was told).
    let plain = Client::new(ClientConfig {
        sessions: false,
        ..ClientConfig::with_endpoints(t.cluster.endpoints())
    })
    .expect("client");
    let mut acked = 0;
    let mut unknown = 0;
    for _ in 0..9 {
        match increment(&plain, "control").await {
            Ok(()) => acked += 1,
            Err(e) if e.outcome_unknown() => unknown += 1,
            Err(Error::Conflict { .. }) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    let (control, _) = read(&plain, "control").await;
    assert!(unknown > 0, "the fault never fired");
    assert!(
        control > acked,
        "without sessions the counter ({control}) should exceed the {acked} acknowledged \
         increments"
    );

    // With a session (the client's default), each increment that applied is
    // reported as applied, retries and all.
    let n = 30;
    let mut conflicts = 0;
    for _ in 0..n {
        loop {
            match increment(&t.client, "counter").await {
                Ok(()) => break,
                Err(Error::Conflict { .. }) => conflicts += 1,
                Err(e) => panic!("increment failed: {e}"),
            }
        }
    }
    let (counter, _) = read(&t.client, "counter").await;
    assert_eq!(counter, n, "every increment applied exactly once");
    // A sole client only conflicts with itself: its own CAS applied twice.
    assert_eq!(conflicts, 0, "a retried CAS ran a second time");
    assert!(
        duplicates_on(&t, leader) >= 1.0,
        "no retry was answered from the session"
    );
    wait_converged(&mut t).await;
    assert_same_digests(&mut t, 2);
}

/// Increments until `stop`, counting the ones that applied in `done`. Any other
/// outcome than success or conflict (with the other incrementers) fails the test.
fn incrementer(
    client: Client,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            match increment(&client, "counter").await {
                Ok(()) => {
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Err(Error::Conflict { .. }) => {}
                Err(e) => panic!("increment failed: {e}"),
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_stay_exactly_once_across_a_transfer_and_a_killed_leader() {
    let mut t = TestCluster::start_with(3, &["--fault-lose-write-reply-every", "7"]);
    let first = t.wait_for_leader(LEADER_TIMEOUT).await;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    // Three tasks share one client (one session, writes in flight concurrently);
    // one has a client of its own.
    let other = Client::new(ClientConfig {
        deadline: Duration::from_secs(20),
        ..ClientConfig::with_endpoints(t.cluster.endpoints())
    })
    .expect("client");
    let mut tasks: Vec<_> = (0..3)
        .map(|_| incrementer(t.client.clone(), stop.clone(), done.clone()))
        .collect();
    tasks.push(incrementer(other, stop.clone(), done.clone()));

    let reached = |n: u64| {
        let done = done.clone();
        move || {
            let d = done.load(Ordering::Relaxed);
            async move { (d >= n).then_some(()) }
        }
    };
    eventually(PROGRESS, "30 increments", reached(30)).await;
    let to = (1..=3).find(|&id| id != first).expect("another node");
    t.client.transfer_leader(to).await.expect("transfer");
    eventually(PROGRESS, "60 increments", reached(60)).await;
    let leader = t.wait_for_leader(LEADER_TIMEOUT).await;
    t.cluster.kill(leader).expect("kill the leader");
    eventually(PROGRESS, "90 increments", reached(90)).await;
    t.cluster.spawn(leader).expect("restart");
    eventually(PROGRESS, "120 increments", reached(120)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("incrementer");
    }

    let (counter, _) = read(&t.client, "counter").await;
    assert_eq!(
        counter,
        done.load(Ordering::Relaxed),
        "the counter moved once per acknowledged increment"
    );
    let leader = t.wait_for_leader(LEADER_TIMEOUT).await;
    assert!(
        duplicates_on(&t, leader) >= 1.0,
        "no retry was deduplicated"
    );
    // Every replica, the restarted one included, holds the same sessions.
    wait_converged(&mut t).await;
    assert_same_digests(&mut t, 1);
    t.assert_no_panics();
}

//! Read modes with real processes: follower reads, lease reads, and a leader
//! paused (SIGSTOP) for longer than an election timeout while clients keep reading
//! through every node, the old leader included. Every read in a mode but `stale`
//! must be consistent with the writes: it returns at least the newest value
//! acknowledged before it began, and nothing written after it ended.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TestCluster;
use common::workload::{LEADER_TIMEOUT, poll_until};
use keel_client::{Client, ReadMode};

const KEY: &str = "register";

/// One operation on the register, timed on the test's clock.
#[derive(Clone, Debug)]
enum Op {
    /// Write of `value`, acknowledged at `acked` (None: failed or unknown).
    Write {
        value: u64,
        invoked: Instant,
        acked: Option<Instant>,
    },
    /// Read through node `node` in `mode`, returning `value` (0: absent).
    Read {
        node: u64,
        mode: ReadMode,
        value: u64,
        invoked: Instant,
        completed: Instant,
    },
}

type History = Arc<Mutex<Vec<Op>>>;

/// One writer: writes 1, 2, 3, ... one at a time, so values order the writes.
fn spawn_writer(
    client: Client,
    history: History,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut value = 0;
        while !stop.load(Ordering::Relaxed) {
            value += 1;
            let invoked = Instant::now();
            let acked = client
                .put(KEY, value.to_string())
                .await
                .ok()
                .map(|_| Instant::now());
            history.lock().expect("history").push(Op::Write {
                value,
                invoked,
                acked,
            });
        }
    })
}

fn spawn_reader(
    client: Client,
    node: u64,
    mode: ReadMode,
    history: History,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let invoked = Instant::now();
            let Ok(r) = client.get(KEY, mode).await else {
                // A failed read returned nothing: nothing to check.
                tokio::task::yield_now().await;
                continue;
            };
            let value =
                r.kv.map(|kv| {
                    String::from_utf8_lossy(&kv.value)
                        .parse::<u64>()
                        .expect("the writer writes numbers")
                })
                .unwrap_or(0);
            history.lock().expect("history").push(Op::Read {
                node,
                mode,
                value,
                invoked,
                completed: Instant::now(),
            });
        }
    })
}

fn acked_writes(history: &History) -> usize {
    history
        .lock()
        .expect("history")
        .iter()
        .filter(|op| matches!(op, Op::Write { acked: Some(_), .. }))
        .count()
}

/// Checks every non-stale read against the single writer's history; returns the
/// number of reads checked, by node.
fn check(history: &[Op]) -> std::collections::BTreeMap<u64, usize> {
    let writes: Vec<(u64, Instant, Option<Instant>)> = history
        .iter()
        .filter_map(|op| match *op {
            Op::Write {
                value,
                invoked,
                acked,
            } => Some((value, invoked, acked)),
            Op::Read { .. } => None,
        })
        .collect();
    let mut checked = std::collections::BTreeMap::new();
    for op in history {
        let Op::Read {
            node,
            mode,
            value,
            invoked,
            completed,
        } = *op
        else {
            continue;
        };
        let newest_acked_before = writes
            .iter()
            .filter(|(_, _, acked)| acked.is_some_and(|a| a < invoked))
            .map(|(v, _, _)| *v)
            .max()
            .unwrap_or(0);
        let newest_invoked_before_end = writes
            .iter()
            .filter(|(_, w_invoked, _)| *w_invoked < completed)
            .map(|(v, _, _)| *v)
            .max()
            .unwrap_or(0);
        assert!(
            value <= newest_invoked_before_end,
            "read through node {node} ({mode:?}) returned {value}, which was not written \
             before the read ended (newest: {newest_invoked_before_end})"
        );
        if mode == ReadMode::Stale {
            continue;
        }
        assert!(
            value >= newest_acked_before,
            "STALE READ through node {node} ({mode:?}): returned {value}, but {newest_acked_before} \
             was acknowledged before the read began"
        );
        *checked.entry(node).or_insert(0) += 1;
    }
    checked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_leader_serves_no_stale_reads_after_it_resumes() {
    let mut t = TestCluster::start(3);
    let old = t.wait_for_leader(LEADER_TIMEOUT).await;
    let history: History = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = vec![spawn_writer(
        t.client.with_deadline(Duration::from_secs(5)),
        history.clone(),
        stop.clone(),
    )];
    for node in 1..=3 {
        for mode in [ReadMode::Linearizable, ReadMode::Lease, ReadMode::Stale] {
            tasks.push(spawn_reader(
                t.node_client(node),
                node,
                mode,
                history.clone(),
                stop.clone(),
            ));
        }
    }
    let enough = |n: usize| {
        let h = history.clone();
        move || acked_writes(&h) >= n
    };
    assert!(
        poll_until(Duration::from_secs(20), enough(30)).await,
        "no writes acknowledged"
    );

    // Freeze the leader for well over an election timeout (300 ms by default):
    // reads sent to it meanwhile queue up and are answered the moment it resumes,
    // when it still believes it leads.
    t.cluster.pause(old);
    let paused = Instant::now();
    // Right after the SIGSTOP the others may still agree on the old leader.
    let deadline = Instant::now() + LEADER_TIMEOUT;
    while t.wait_for_leader(LEADER_TIMEOUT).await == old {
        assert!(
            Instant::now() < deadline,
            "no new leader while {old} is paused"
        );
    }
    let before = acked_writes(&history);
    assert!(
        poll_until(Duration::from_secs(20), enough(before + 30)).await,
        "no writes through the new leader"
    );
    let pause = paused.elapsed();
    t.cluster.resume(old);
    let before = acked_writes(&history);
    assert!(
        poll_until(Duration::from_secs(20), enough(before + 30)).await,
        "no writes after the old leader resumed"
    );
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("client task");
    }
    let history = history.lock().expect("history").clone();
    let checked = check(&history);
    eprintln!("paused node {old} for {pause:?}; non-stale reads checked by node: {checked:?}");
    assert!(
        checked.get(&old).copied().unwrap_or(0) > 0,
        "no read through the old leader was checked"
    );
    t.assert_no_panics();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_serve_linearizable_reads_and_the_leader_serves_lease_reads() {
    let mut t = TestCluster::start(3);
    let leader = t.wait_for_leader(LEADER_TIMEOUT).await;
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    let follower_client = t.node_client(follower);
    let leader_client = t.node_client(leader);
    for i in 0..20u64 {
        // Each read begins after the write was acknowledged, so it must see it.
        t.client.put(KEY, i.to_string()).await.expect("write");
        let at_follower = follower_client
            .get(KEY, ReadMode::Linearizable)
            .await
            .expect("follower read");
        assert_eq!(
            at_follower.kv.map(|kv| kv.value),
            Some(i.to_string().into())
        );
        let under_lease = leader_client
            .get(KEY, ReadMode::Lease)
            .await
            .expect("lease read");
        assert_eq!(
            under_lease.kv.map(|kv| kv.value),
            Some(i.to_string().into())
        );
    }
    let served = |id: u64, name: &str| {
        let page = keel_testkit::prometheus::http_get(
            t.cluster.http_addr(id),
            "/metrics",
            Duration::from_secs(2),
        )
        .expect("metrics page");
        keel_testkit::prometheus::sample(&page, name).unwrap_or(0.0)
    };
    assert!(
        served(leader, "keel_lease_reads_total") >= 20.0,
        "lease reads were not served under the lease"
    );
    t.assert_no_panics();
}

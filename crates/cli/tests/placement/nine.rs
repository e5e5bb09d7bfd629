//! Nine nodes, three groups, under load: three bootstrap nodes (group 1 and
//! the placement group), six spares that join through placement
//! (`--join-as spare`) and become groups 2 and 3 (`keel shard group create`),
//! 64 concurrent writers over slots spread across the groups, then a fourth
//! group created and slots moved to it while the writers run (and `keel
//! shard rebalance` moving some more). No acknowledged write is lost: every
//! key ends holding the last value its writer saw acknowledged, or a later
//! attempt whose outcome the writer did not learn.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_client::{Client, ClientConfig, ReadMode, Slot, slot_for_key};

use super::super::common::{TestCluster, eventually, keel_bin};
use super::hosting::{agreed_leader, keel_shard};
use super::{MAP_TIMEOUT, map_on};

/// Joins, elections and moves of nine debug-build nodes on two cores.
const TIMEOUT: Duration = Duration::from_secs(90);
/// Concurrent writers, as in issue 9's "64-client write load".
const WRITERS: usize = 64;
/// Keys per writer, each written in turn.
const KEYS_PER_WRITER: usize = 4;
/// Hash tags the keys are spread over: one slot each.
const TAGS: usize = 8;

/// Writer `w`'s key `k`: its hash tag picks one of [`TAGS`] slots.
fn key(w: usize, k: usize) -> String {
    format!("{{t{}}}w{w}k{k}", (w * KEYS_PER_WRITER + k) % TAGS)
}

/// The slot of hash tag `tag`.
fn tag_slot(tag: usize) -> Slot {
    slot_for_key(format!("{{t{tag}}}").as_bytes())
}

/// What the writers saw: per key, the last acknowledged value and the
/// attempts after it whose outcome is unknown.
#[derive(Default)]
struct Seen {
    acked: BTreeMap<String, String>,
    maybe: BTreeMap<String, BTreeSet<String>>,
}

async fn write_until(
    client: Client,
    w: usize,
    seen: Arc<Mutex<Seen>>,
    acks: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    let mut n = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let k = key(w, n % KEYS_PER_WRITER);
        let v = format!("w{w}n{n}");
        n += 1;
        let result = client.put(k.clone(), v.clone()).await;
        let mut s = seen.lock().expect("seen");
        match result {
            Ok(_) => {
                s.acked.insert(k.clone(), v);
                s.maybe.remove(&k);
                acks.fetch_add(1, Ordering::SeqCst);
            }
            Err(_) => {
                s.maybe.entry(k).or_default().insert(v);
            }
        }
    }
}

/// Waits until `acks` has grown by `more`.
async fn acks_grow(acks: &AtomicUsize, more: usize, what: &str) {
    let from = acks.load(Ordering::SeqCst);
    eventually(TIMEOUT, what, || async {
        (acks.load(Ordering::SeqCst) >= from + more).then_some(())
    })
    .await;
}

/// Moves `slot` to `to` with `keel shard move --wait` through node `via`.
fn move_slot(t: &TestCluster, via: u64, slot: Slot, to: u64) {
    let addr = t.cluster.grpc_addr(via).to_string();
    let out = std::process::Command::new(keel_bin())
        .args([
            "shard",
            "move",
            &slot.get().to_string(),
            "--to",
            &to.to_string(),
        ])
        .args(["--wait", "--endpoints", &addr, "--timeout-ms", "60000"])
        .output()
        .expect("run keel shard move");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(&format!("belongs to group {to}")),
        "keel shard move {slot} --to {to}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until node 1's map has no move in flight; returns it.
async fn settled(t: &TestCluster) -> keel_client::ClusterMap {
    let client = t.node_client(1);
    eventually(TIMEOUT, "no slot move in flight", || {
        let client = client.clone();
        async move {
            let map = client.cluster_map().await.ok()?;
            map.moves().is_empty().then_some(map)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nine_nodes_of_three_groups_take_a_fourth_and_move_slots_under_64_writers() {
    let mut t = TestCluster::start(3);
    let _ = map_on(&t, 1).await;
    t.wait_for_leader(MAP_TIMEOUT).await;
    let spares: Vec<u64> = (0..6)
        .map(|_| {
            t.cluster
                .add_node(1, &["--join-as", "spare"])
                .expect("start a spare")
        })
        .collect();
    assert_eq!(spares, (4..=9).collect::<Vec<_>>());
    let admin = t.node_client(1);
    eventually(TIMEOUT, "nine nodes in the map", || {
        let admin = admin.clone();
        async move {
            let map = admin.cluster_map().await.ok()?;
            (map.nodes().len() == 9).then_some(())
        }
    })
    .await;
    // Spares hold nothing until an operator gives them replicas.
    let out = keel_shard(&t, 1, &["group", "create", "--members", "4,5,6"]);
    assert!(out.contains("created group 2"), "{out}");
    let out = keel_shard(&t, 1, &["group", "create", "--members", "7,8,9"]);
    assert!(out.contains("created group 3"), "{out}");
    agreed_leader(&t, 2, &[4, 5, 6]).await;
    agreed_leader(&t, 3, &[7, 8, 9]).await;
    // The writers' slots spread over the three groups: tags 0-2 to group 2,
    // 3-5 to group 3, 6-7 stay in group 1.
    for tag in 0..6 {
        move_slot(&t, 1, tag_slot(tag), if tag < 3 { 2 } else { 3 });
    }

    let client = Client::new(ClientConfig {
        deadline: Duration::from_secs(30),
        ..ClientConfig::with_endpoints((1..=9).map(|id| t.cluster.grpc_addr(id).to_string()))
    })
    .expect("client");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let acks = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            tokio::spawn(write_until(
                client.clone(),
                w,
                seen.clone(),
                acks.clone(),
                stop.clone(),
            ))
        })
        .collect();
    acks_grow(&acks, 500, "500 writes over three groups").await;

    // A fourth group, one node of each existing group, takes slots from every
    // group while the writers run.
    let out = keel_shard(&t, 2, &["group", "create", "--members", "1,5,9"]);
    assert!(out.contains("created group 4"), "{out}");
    agreed_leader(&t, 4, &[1, 5, 9]).await;
    for tag in [0, 3, 6] {
        move_slot(&t, 5, tag_slot(tag), 4);
    }
    // And `keel shard rebalance` begins its own moves (the spread is far
    // from even: group 1 still owns almost every slot).
    let out = keel_shard(&t, 9, &["rebalance", "--max-moves", "4"]);
    assert!(out.contains("began"), "{out}");
    let map = settled(&t).await;
    acks_grow(&acks, 500, "500 writes after the moves").await;
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.expect("writer");
    }
    for tag in [0, 3, 6] {
        assert_eq!(map.owner(tag_slot(tag)), Some(4), "tag {tag}");
    }
    assert!(
        map.slots_of(1).count() < 4096 - 6 - 1,
        "the rebalance moved slots away from group 1"
    );

    // Nothing acknowledged was lost, read linearizably through any node.
    let seen = std::mem::take(&mut *seen.lock().expect("seen"));
    eprintln!(
        "{} writes acknowledged over {} keys; slots per group: {:?}",
        acks.load(Ordering::SeqCst),
        seen.acked.len(),
        map.slot_counts()
    );
    assert!(seen.acked.len() >= WRITERS * KEYS_PER_WRITER / 2);
    for (k, v) in &seen.acked {
        let got = client
            .get(k.clone(), ReadMode::Linearizable)
            .await
            .unwrap_or_else(|e| panic!("get {k}: {e}"))
            .kv
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
            .unwrap_or_else(|| panic!("{k} is missing"));
        let mut allowed = seen.maybe.get(k).cloned().unwrap_or_default();
        allowed.insert(v.clone());
        assert!(
            allowed.contains(&got),
            "{k} = {got}, expected one of {allowed:?}"
        );
    }
    t.assert_no_panics();
}

//! A slot moves between groups with real processes, driven by the mover on
//! the target group's leader (`docs/sharding.md`, *Moving a slot*): an
//! operator only begins the move. A writer keeps writing keys of the slot
//! throughout; afterwards every key holds its last acknowledged value (or a
//! later attempt whose answer was lost), the writer's acknowledged revisions
//! only grew across the hand-off, the source dropped its copy, and the slot
//! moves back the same way. An operator cannot commit a move by hand. A move
//! aborted after the source fenced the slot leaves the source serving it
//! again, with its data.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use keel_client::{Client, ClientConfig, ReadMode, Slot, slot_for_key};
use keel_placement::Command;
use keel_proto::error::Kind;
use keel_server::transport::slots::SlotPeerError;
use keel_storage::command::{MoveStep, SlotCommand};
use keel_storage::kv::SlotState;
use keel_storage::kv::slots::copy::CopyError;

use super::super::common::{TestCluster, eventually};
use super::hosting::agreed_leader;
use super::map_on;
use super::slot_rpc::{client_put, peer, propose_on};

/// How long a move may take here (the mover's own limit is 60 s).
const MOVE_TIMEOUT: Duration = Duration::from_secs(90);
const KEYS: usize = 1500;
const HOT_KEYS: usize = 40;

/// What the writer knows of each hot key: the last acknowledged value, and
/// the values attempted after it whose outcome is unknown.
#[derive(Clone, Default)]
struct Written {
    acked: BTreeMap<String, String>,
    maybe: BTreeMap<String, BTreeSet<String>>,
    revisions: Vec<u64>,
    failures: usize,
}

fn lock(written: &Mutex<Written>) -> MutexGuard<'_, Written> {
    written.lock().expect("writer's record poisoned")
}

fn key(i: usize) -> String {
    // One hash tag: every key in one slot.
    format!("{{mv}}key{i:05}")
}

/// A client of every node, with sessions (exactly-once writes, numbered per
/// group), as clients run by default.
fn writer_client(t: &TestCluster) -> Client {
    Client::new(ClientConfig {
        deadline: Duration::from_secs(20),
        ..ClientConfig::with_endpoints((1..=3).map(|id| t.cluster.grpc_addr(id).to_string()))
    })
    .expect("client")
}

/// Writes the hot keys in turn until `stop`, one write at a time.
async fn write_until(client: Client, written: Arc<Mutex<Written>>, stop: Arc<AtomicBool>) {
    let mut n = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let k = key(n % HOT_KEYS);
        let v = format!("w{n}");
        n += 1;
        match client.put(k.clone(), v.clone()).await {
            Ok(revision) => {
                let mut w = lock(&written);
                w.acked.insert(k.clone(), v);
                w.maybe.remove(&k);
                w.revisions.push(revision);
            }
            Err(_) => {
                let mut w = lock(&written);
                w.maybe.entry(k).or_default().insert(v);
                w.failures += 1;
            }
        }
    }
}

/// Waits until every node's map names `to` the owner of `slot` with no move
/// of it in flight.
pub(super) async fn moved(t: &TestCluster, slot: Slot, to: u64) {
    for id in 1..=3 {
        let client = t.node_client(id);
        eventually(
            MOVE_TIMEOUT,
            &format!("slot {slot} owned by group {to} on node {id}"),
            || {
                let client = client.clone();
                async move {
                    let map = client.cluster_map().await.ok()?;
                    (map.owner(slot) == Some(to) && !map.moves().contains_key(&slot)).then_some(())
                }
            },
        )
        .await;
    }
}

/// Waits until `group` holds nothing of `slot` (its copy was dropped).
async fn dropped(t: &TestCluster, group: u64, slot: Slot) {
    let source = peer(t, 1).await;
    eventually(
        MOVE_TIMEOUT,
        &format!("group {group} dropped slot {slot}"),
        || {
            let source = source.clone();
            async move {
                match source.fetch_page(group, slot, u64::MAX, None, 0).await {
                    Err(SlotPeerError::Refused(CopyError::NotSource { found, .. })) => {
                        (found == SlotState::Absent).then_some(())
                    }
                    _ => None,
                }
            }
        },
    )
    .await;
}

/// Every key holds what the writer last saw acknowledged (or a later attempt).
async fn check_keys(client: &Client, written: &Written) {
    for i in 0..KEYS {
        let k = key(i);
        let got = client
            .get(k.clone(), ReadMode::Linearizable)
            .await
            .unwrap_or_else(|e| panic!("get {k}: {e}"))
            .kv
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
        let mut allowed: BTreeSet<String> = written.maybe.get(&k).cloned().unwrap_or_default();
        allowed.insert(
            written
                .acked
                .get(&k)
                .cloned()
                .unwrap_or_else(|| format!("v{i}")),
        );
        let got = got.unwrap_or_else(|| panic!("{k} is missing"));
        assert!(
            allowed.contains(&got),
            "{k} = {got}, expected one of {allowed:?}"
        );
    }
}

/// Begins moving `slot` to `to` and lets a writer run through the move.
async fn move_under_writes(t: &TestCluster, slot: Slot, to: u64, written: &Arc<Mutex<Written>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write_until(writer_client(t), written.clone(), stop.clone()));
    eventually(MOVE_TIMEOUT, "some writes before the move", || async {
        (lock(written).revisions.len() >= 20).then_some(())
    })
    .await;
    t.client
        .change_map(&Command::BeginSlotMove { slot, to })
        .await
        .expect("begin the move");
    moved(t, slot, to).await;
    // Writes go on at the new owner.
    let before = lock(written).revisions.len();
    eventually(MOVE_TIMEOUT, "writes after the move", || async {
        (lock(written).revisions.len() >= before + 20).then_some(())
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    writer.await.expect("writer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_moves_to_another_group_under_writes_and_back() {
    let t = TestCluster::start(3);
    let _ = map_on(&t, 1).await;
    let slot = slot_for_key(key(0).as_bytes());
    let client = writer_client(&t);
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(100) {
        let puts = chunk.iter().map(|&i| {
            let client = client.clone();
            async move { client.put(key(i), Bytes::from(format!("v{i}"))).await }
        });
        for put in futures::future::join_all(puts).await {
            put.expect("preload");
        }
    }
    let created = t
        .client
        .change_map(&Command::CreateGroup {
            members: BTreeSet::from([1, 2, 3]),
            target_replicas: 3,
        })
        .await
        .expect("create group 2");
    assert_eq!(created.created_group, Some(2));
    let _ = agreed_leader(&t, 2, &[1, 2, 3]).await;

    // A hand-made commit is refused: only the mover commits a move.
    let refused = t
        .client
        .change_map(&Command::CommitSlotMove { slot, epoch: 1 })
        .await;
    assert!(
        matches!(refused, Err(keel_client::Error::InvalidArgument(_))),
        "{refused:?}"
    );

    let written = Arc::new(Mutex::new(Written::default()));
    move_under_writes(&t, slot, 2, &written).await;
    dropped(&t, 1, slot).await;
    let snapshot = lock(&written).clone();
    check_keys(&client, &snapshot).await;

    // And back: group 1 takes the slot from group 2 the same way.
    move_under_writes(&t, slot, 1, &written).await;
    dropped(&t, 2, slot).await;
    let w = lock(&written).clone();
    check_keys(&client, &w).await;
    // One writer, one write at a time: acknowledged revisions only grow,
    // across both hand-offs (the target's revisions start above the source's).
    assert!(
        w.revisions.windows(2).all(|p| p[0] < p[1]),
        "revisions went back: {:?}",
        w.revisions
    );
    t.assert_no_panics();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_move_leaves_the_source_serving_again() {
    let mut t = TestCluster::start(3);
    let _ = map_on(&t, 1).await;
    let key = Bytes::from_static(b"{ab}kept");
    let slot = slot_for_key(&key);
    writer_client(&t)
        .put(key.clone(), Bytes::from_static(b"before"))
        .await
        .expect("put");
    // Group 2 on nodes 2 and 3; with node 3 down it has no quorum, so no
    // leader of it drives the move: the test plays the fence by hand.
    let created = t
        .client
        .change_map(&Command::CreateGroup {
            members: BTreeSet::from([2, 3]),
            target_replicas: 2,
        })
        .await
        .expect("create group 2");
    assert_eq!(created.created_group, Some(2));
    let _ = agreed_leader(&t, 2, &[2, 3]).await;
    t.cluster.kill(3).expect("kill node 3");
    // Node 3 may have led group 1 (and placement): begin once the others agree
    // on a leader, so the call is not forwarded to the dead one.
    let _ = agreed_leader(&t, 1, &[1, 2]).await;
    let begun = t
        .client
        .change_map(&Command::BeginSlotMove { slot, to: 2 })
        .await
        .expect("begin the move");
    let epoch = begun.map.version();
    let fence = SlotCommand {
        slot,
        epoch,
        step: MoveStep::Fence,
    };
    let state = propose_on(&t, &[1, 2], 1, fence).await.expect("fenced");
    assert_eq!(state, SlotState::Fenced { epoch });
    // Whichever of nodes 1 and 2 leads group 1 refuses the write as moving;
    // none takes it.
    eventually(MOVE_TIMEOUT, "the fenced slot refusing writes", || async {
        for id in [1, 2] {
            match client_put(&t, id, &key).await {
                Err(Kind::SlotMoving) => return Some(()),
                Ok(()) => panic!("node {id} took a write of a fenced slot"),
                Err(_) => {}
            }
        }
        None
    })
    .await;

    // The operator aborts; group 1's leader sees the move ended with group 1
    // still the owner, and unfences the slot.
    let aborted = t
        .client
        .change_map(&Command::AbortSlotMove { slot, epoch })
        .await
        .expect("abort");
    eventually(MOVE_TIMEOUT, "a write after the abort", || async {
        for id in [1, 2] {
            if client_put(&t, id, &key).await.is_ok() {
                return Some(());
            }
        }
        None
    })
    .await;
    let got = writer_client(&t)
        .get(key.clone(), ReadMode::Linearizable)
        .await
        .expect("get")
        .kv
        .expect("the key is there");
    assert_eq!(got.value, "after");
    t.cluster.restart(3).expect("restart node 3");
    // Every node's map, once it has the abort (a copy may lag behind the
    // placement leader's for a moment), keeps group 1 the owner.
    let map = super::change::map_everywhere(&t, &[1, 2, 3], aborted.map.version()).await;
    assert_eq!(map.owner(slot), Some(1));
    assert!(map.moves().is_empty());
    t.assert_no_panics();
}

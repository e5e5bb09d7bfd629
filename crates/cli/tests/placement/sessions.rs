//! Client sessions per group with real processes (docs/sharding.md,
//! *Sessions across moves*): a slot moves from group 1 to group 2 (the
//! mover on group 2's leader copies, fences, seals, commits and owns it)
//! while a default client (sessions on) keeps writing keys of that slot;
//! then the same client writes keys of that slot and of others. Its writes of
//! the moved slot are numbered in group 2's session, the rest in group 1's,
//! under one client id, and every one of them succeeds — through the
//! hand-off, and many at once after it. A node refuses a session write whose
//! session names another group than the key's owner, proposing nothing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use keel_client::{Client, ClientConfig, MapCommand, Precondition, ReadMode, Slot, slot_for_key};
use keel_proto::error::{Kind, error_detail};
use keel_proto::v1::kv_client::KvClient;
use keel_proto::v1::{ClientSession, PutRequest};

use super::super::common::{TestCluster, eventually};
use super::hosting::{agreed_leader, keel_shard};
use super::moves::moved;
use super::{MAP_TIMEOUT, map_on};

/// What a writer saw: each acknowledged write, in order, and each failure.
#[derive(Clone, Default)]
struct Record {
    acked: Vec<(Bytes, Bytes)>,
    failed: Vec<String>,
}

/// Writes `keys` in turn with `client`, one write at a time, until `stop`.
async fn write_until(
    client: Client,
    keys: Vec<Bytes>,
    record: Arc<Mutex<Record>>,
    stop: Arc<AtomicBool>,
) {
    let mut n = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let key = keys[n % keys.len()].clone();
        let value = Bytes::from(format!("during-{n}"));
        n += 1;
        let result = client.put(key.clone(), value.clone()).await;
        let mut r = record.lock().expect("record");
        match result {
            Ok(_) => r.acked.push((key, value)),
            Err(e) => r.failed.push(format!("{key:?}: {e}")),
        }
    }
}

/// `n` keys named from `base` whose slot is (or, `inside` false, is not) `slot`.
fn keys_of(base: &str, slot: Slot, inside: bool, n: usize) -> Vec<Bytes> {
    (0u32..)
        .map(|i| Bytes::from(format!("{base}{i}")))
        .filter(|k| (slot_for_key(k) == slot) == inside)
        .take(n)
        .collect()
}

/// A raw gRPC put of `key` on node `id` in the session of `group`: the error
/// kind and whether the group itself answered, if refused.
async fn put_in_session(
    t: &TestCluster,
    id: u64,
    key: &Bytes,
    group: u64,
) -> Result<(), (Kind, bool)> {
    let mut kv = KvClient::connect(format!("http://{}", t.cluster.grpc_addr(id)))
        .await
        .expect("connect");
    let put = PutRequest {
        key: key.clone(),
        value: Bytes::from_static(b"raw"),
        session: Some(ClientSession {
            client_id: Bytes::from(vec![0x5e; 16]),
            seq: 1,
            first_unacked: 1,
            group,
        }),
        ..PutRequest::default()
    };
    match kv.put(put).await {
        Ok(_) => Ok(()),
        Err(status) => {
            Err(error_detail(&status)
                .map_or((Kind::Unspecified, false), |d| (d.kind(), d.by_group)))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_writes_go_to_each_keys_group_after_a_slot_moves() {
    let mut t = TestCluster::start(3);
    t.wait_for_leader(MAP_TIMEOUT).await;
    let _ = map_on(&t, 1).await;
    let out = keel_shard(&t, 1, &["group", "create", "--members", "1,2,3"]);
    assert!(out.contains("created group 2"), "{out}");
    let _ = agreed_leader(&t, 2, &[1, 2, 3]).await;

    let slot = slot_for_key(b"moved");
    let in_slot = keys_of("moved", slot, true, 4);
    let stays = keys_of("stays", slot, false, 4);
    // Before the move, everything is group 1's (and so is the client's
    // session: its numbers there are past 1 by the time group 2 sees it).
    let client = t.client.clone();
    for key in in_slot.iter().chain(&stays) {
        client
            .put(key.clone(), Bytes::from_static(b"before"))
            .await
            .expect("put before the move");
    }

    // The slot moves while the client keeps writing its keys: through the
    // hand-off (SLOT_MOVING) and after it (WRONG_GROUP, then group 2's
    // session), every write succeeds.
    let record = Arc::new(Mutex::new(Record::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write_until(
        client.clone(),
        in_slot[1..].to_vec(),
        record.clone(),
        stop.clone(),
    ));
    let acked = || record.lock().expect("record").acked.len();
    eventually(MAP_TIMEOUT, "writes before the move", || async {
        (acked() >= 10).then_some(())
    })
    .await;
    client
        .change_map(&MapCommand::BeginSlotMove { slot, to: 2 })
        .await
        .expect("begin the move");
    moved(&t, slot, 2).await;
    let before = acked();
    eventually(MAP_TIMEOUT, "writes after the move", || async {
        (acked() >= before + 10).then_some(())
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    writer.await.expect("writer");
    let during = record.lock().expect("record").clone();
    assert!(
        during.failed.is_empty(),
        "session writes failed: {:?}",
        during.failed
    );

    // A node refuses a session write whose session is another group's than
    // the key's owner, from its map (not the group's answer); in the owner's
    // session it goes through.
    for id in 1..=3 {
        assert_eq!(
            put_in_session(&t, id, &in_slot[0], 1).await,
            Err((Kind::WrongGroup, false)),
            "node {id}"
        );
        assert_eq!(
            put_in_session(&t, id, &stays[0], 2).await,
            Err((Kind::WrongGroup, false)),
            "node {id}"
        );
    }
    let leader_2 = agreed_leader(&t, 2, &[1, 2, 3]).await;
    put_in_session(&t, leader_2, &in_slot[0], 2)
        .await
        .expect("a session write in the owner's session");

    // Group 2 serves the slot with the values its keys were last
    // acknowledged with.
    let last: BTreeMap<Bytes, Bytes> = during.acked.into_iter().collect();
    for (key, value) in &last {
        let got = client
            .get(key.clone(), ReadMode::Linearizable)
            .await
            .expect("read a moved key");
        assert_eq!(got.kv.map(|kv| kv.value).as_ref(), Some(value), "{key:?}");
    }

    // The same client (one id, its group-1 numbers well past 1) writes both
    // groups' keys, one at a time and then all at once.
    for key in in_slot.iter().chain(&stays) {
        client
            .put(key.clone(), Bytes::from_static(b"after"))
            .await
            .unwrap_or_else(|e| panic!("put {key:?} after the move: {e}"));
    }
    let revision = client
        .put(in_slot[2].clone(), Bytes::from_static(b"cas-1"))
        .await
        .expect("put");
    client
        .put_with(
            in_slot[2].clone(),
            Bytes::from_static(b"cas-2"),
            Precondition::Version(revision),
        )
        .await
        .expect("compare-and-set in group 2");
    client
        .delete(in_slot[3].clone())
        .await
        .expect("delete in group 2");
    let burst = keys_of("burst", slot, true, 12)
        .into_iter()
        .zip(keys_of("burst", slot, false, 12))
        .flat_map(|(a, b)| [a, b]);
    let writes = burst.enumerate().map(|(i, key)| {
        let client = client.clone();
        async move {
            let value = Bytes::from(format!("v{i}"));
            client
                .put(key.clone(), value.clone())
                .await
                .map(|_| (key, value))
        }
    });
    let written: Vec<(Bytes, Bytes)> = futures::future::join_all(writes)
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("concurrent writes in both groups");

    // Everything reads back, through a fresh client too.
    let reader = Client::new(ClientConfig {
        deadline: Duration::from_secs(10),
        ..ClientConfig::with_endpoints((1..=3).map(|id| t.cluster.grpc_addr(id).to_string()))
    })
    .expect("client");
    let mut expected: Vec<(Bytes, Option<Bytes>)> =
        written.into_iter().map(|(k, v)| (k, Some(v))).collect();
    for key in [&in_slot[1], &stays[0], &stays[2], &stays[3]] {
        expected.push((key.clone(), Some(Bytes::from_static(b"after"))));
    }
    expected.push((in_slot[2].clone(), Some(Bytes::from_static(b"cas-2"))));
    expected.push((in_slot[3].clone(), None));
    for (key, value) in expected {
        let got = reader
            .get(key.clone(), ReadMode::Linearizable)
            .await
            .expect("read back");
        assert_eq!(got.kv.map(|kv| kv.value), value, "{key:?}");
    }
    t.assert_no_panics();
}

//! Client sessions per group with real processes (docs/sharding.md,
//! *Sessions across moves*): a slot is handed from group 1 to group 2 by
//! hand, through the slot-move commands in protocol order, and a default
//! client (sessions on) then writes keys of that slot and of others. Its
//! writes of the moved slot are numbered in group 2's session, the rest in
//! group 1's, under one client id, and all of them succeed — also many at
//! once. A node refuses a session write whose session names another group
//! than the key's owner, proposing nothing.

use std::time::Duration;

use bytes::Bytes;
use keel_client::{Client, ClientConfig, MapCommand, Precondition, ReadMode, Slot, slot_for_key};
use keel_proto::error::{Kind, error_detail};
use keel_proto::v1::kv_client::KvClient;
use keel_proto::v1::{ClientSession, PutRequest};
use keel_storage::command::{MoveStep, SlotCommand};
use keel_storage::kv::SlotState;
use keel_storage::kv::slots::copy::{FenceWitness, MAX_PAGE_BYTES, PageBuilder};

use super::super::common::{TestCluster, eventually};
use super::hosting::{agreed_leader, keel_shard};
use super::slot_rpc::{peer, propose};
use super::{MAP_TIMEOUT, map_on};

/// `n` keys named from `base` whose slot is (or, `inside` false, is not) `slot`.
fn keys_of(base: &str, slot: Slot, inside: bool, n: usize) -> Vec<Bytes> {
    (0u32..)
        .map(|i| Bytes::from(format!("{base}{i}")))
        .filter(|k| (slot_for_key(k) == slot) == inside)
        .take(n)
        .collect()
}

/// Hands `slot` from group 1 to group 2 the way the mover will: begin in the
/// map, fence in group 1, copy one page into group 2, seal, commit in the map,
/// own in group 2. Returns the map version of the commit.
async fn move_slot_by_hand(t: &TestCluster, slot: Slot) -> u64 {
    let begun = t
        .client
        .change_map(&MapCommand::BeginSlotMove { slot, to: 2 })
        .await
        .expect("begin the move");
    let epoch = begun.map.version();
    let step = |step: MoveStep| SlotCommand { slot, epoch, step };

    let fenced = propose(t, 1, step(MoveStep::Fence)).await.expect("fence");
    assert_eq!(fenced, SlotState::Fenced { epoch });
    let page = peer(t, 2)
        .await
        .fetch_page(1, slot, epoch, None, MAX_PAGE_BYTES)
        .await
        .expect("fetch the fenced slot");
    assert!(!page.more, "a handful of keys fits one page");
    let mut witness = FenceWitness::new(slot, epoch);
    witness.witness(&page.source).expect("read after the fence");

    let mut builder = PageBuilder::new(slot, epoch, 0, MAX_PAGE_BYTES);
    builder.add(page.puts, Vec::new()).expect("page");
    for cmd in builder.finish() {
        let state = propose(t, 2, cmd).await.expect("ingest");
        assert_eq!(state, SlotState::Staging { epoch });
    }
    let seal = witness.seal().expect("witnessed");
    let sealed = propose(t, 2, seal).await.expect("ingested");
    assert_eq!(sealed, SlotState::Ingested { epoch });

    let committed = t
        .client
        .change_map(&MapCommand::CommitSlotMove { slot, epoch })
        .await
        .expect("commit the move");
    let version = committed.map.version();
    assert_eq!(committed.map.owner(slot), Some(2));
    let owned = propose(
        t,
        2,
        step(MoveStep::Own {
            map_version: version,
        }),
    )
    .await
    .expect("own");
    assert_eq!(owned, SlotState::Serving);
    version
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
    let moved = keys_of("moved", slot, true, 4);
    let stays = keys_of("stays", slot, false, 4);
    // Before the move, everything is group 1's (and so is the client's
    // session: its numbers there are past 1 by the time group 2 sees it).
    let client = t.client.clone();
    for key in moved.iter().chain(&stays) {
        client
            .put(key.clone(), Bytes::from_static(b"before"))
            .await
            .expect("put before the move");
    }

    let version = move_slot_by_hand(&t, slot).await;
    for id in 1..=3 {
        let c = t.node_client(id);
        eventually(MAP_TIMEOUT, &format!("map {version} on node {id}"), || {
            let c = c.clone();
            async move {
                c.cluster_map()
                    .await
                    .ok()
                    .filter(|m| m.version() >= version)
            }
        })
        .await;
    }

    // A node refuses a session write whose session is another group's than
    // the key's owner, from its map (not the group's answer); in the owner's
    // session it goes through.
    for id in 1..=3 {
        assert_eq!(
            put_in_session(&t, id, &moved[0], 1).await,
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
    put_in_session(&t, leader_2, &moved[0], 2)
        .await
        .expect("a session write in the owner's session");

    // The copied data is group 2's now: the keys kept their values.
    let got = client
        .get(moved[1].clone(), ReadMode::Linearizable)
        .await
        .expect("read a moved key");
    assert_eq!(
        got.kv.map(|kv| kv.value),
        Some(Bytes::from_static(b"before"))
    );

    // The same client (one id, its group-1 numbers well past 1) writes both
    // groups' keys, one at a time and then all at once.
    for key in moved.iter().chain(&stays) {
        client
            .put(key.clone(), Bytes::from_static(b"after"))
            .await
            .unwrap_or_else(|e| panic!("put {key:?} after the move: {e}"));
    }
    let revision = client
        .put(moved[2].clone(), Bytes::from_static(b"cas-1"))
        .await
        .expect("put");
    client
        .put_with(
            moved[2].clone(),
            Bytes::from_static(b"cas-2"),
            Precondition::Version(revision),
        )
        .await
        .expect("compare-and-set in group 2");
    client
        .delete(moved[3].clone())
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
    for key in [&moved[1], &stays[0], &stays[2], &stays[3]] {
        expected.push((key.clone(), Some(Bytes::from_static(b"after"))));
    }
    expected.push((moved[2].clone(), Some(Bytes::from_static(b"cas-2"))));
    expected.push((moved[3].clone(), None));
    for (key, value) in expected {
        let got = reader
            .get(key.clone(), ReadMode::Linearizable)
            .await
            .expect("read back");
        assert_eq!(got.kv.map(|kv| kv.value), value, "{key:?}");
    }
    t.assert_no_panics();
}

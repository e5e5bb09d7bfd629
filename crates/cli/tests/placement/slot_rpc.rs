//! The slot-move peer calls with real processes (`SlotFetch`, `SlotCommand`
//! through `keel_server::transport::slots::SlotPeer`): read a slot of group 1
//! with its versions, ask its change index, stage a page of it in a new group 2, fence the slot so
//! client writes are refused as moving, and unfence it again. The test calls
//! as one of the members (the peer service admits only members), using that
//! member's identity from its data directory.

use std::time::Duration;

use bytes::Bytes;
use keel_placement::slot_for_key;
use keel_proto::error::{Kind, error_detail};
use keel_proto::v1::PutRequest;
use keel_proto::v1::kv_client::KvClient;
use keel_server::transport::slots::{SlotPeer, SlotPeerError};
use keel_server::transport::{LocalIdentity, PeerConnector};
use keel_storage::command::{Command, Expect, MoveStep, SlotCommand};
use keel_storage::kv::SlotState;
use keel_storage::kv::slots::Changes;
use keel_storage::kv::slots::copy::{CopyError, MAX_PAGE_BYTES, PageBuilder};

use super::super::common::{TestCluster, eventually};
use super::hosting::{agreed_leader, keel_shard};

const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// An epoch far beyond any map version this cluster reaches: the slot mover
/// leaves states of a move the map has not begun yet alone, so the states
/// this test sets by hand stay until it changes them.
const EPOCH: u64 = 1 << 40;

/// Node `id`'s identity as its peers know it, read from its data directory.
fn identity_of(t: &TestCluster, id: u64) -> LocalIdentity {
    let path = t.cluster.data_dir(id).join("identity.json");
    let text = std::fs::read_to_string(&path).expect("read identity.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("identity json");
    let field = |name: &str| json[name].as_u64().expect(name);
    LocalIdentity {
        node_id: field("node_id"),
        cluster_id: field("cluster_id"),
        incarnation: field("incarnation"),
    }
}

/// A connection to node `id`, calling as another member.
pub(super) async fn peer(t: &TestCluster, id: u64) -> SlotPeer {
    let caller = identity_of(t, id % 3 + 1);
    let addr = t.cluster.grpc_addr(id).to_string();
    SlotPeer::connect(&PeerConnector::plain(), &addr, caller)
        .await
        .expect("connect")
}

/// Proposes `cmd` in `group` on whichever node leads it, following
/// NOT_LEADER answers; the state machine's answer.
async fn propose(t: &TestCluster, group: u64, cmd: SlotCommand) -> Result<SlotState, String> {
    propose_on(t, &[1, 2, 3], group, cmd).await
}

/// [`propose`], asking only `nodes` (the others may be down).
pub(super) async fn propose_on(
    t: &TestCluster,
    nodes: &[u64],
    group: u64,
    cmd: SlotCommand,
) -> Result<SlotState, String> {
    eventually(
        CALL_TIMEOUT,
        &format!("{} in group {group}", cmd.step.name()),
        || {
            let cmd = cmd.clone();
            async move {
                for &id in nodes {
                    match peer(t, id)
                        .await
                        .propose(group, cmd.clone(), CALL_TIMEOUT)
                        .await
                    {
                        Ok(applied) => {
                            assert!(applied.applied_index > 0);
                            return Some(applied.result.map(|(state, _)| state));
                        }
                        Err(SlotPeerError::NotLeader { .. }) => continue,
                        Err(e) => panic!("proposing {} failed: {e}", cmd.step.name()),
                    }
                }
                None
            }
        },
    )
    .await
}

/// A client put of `key` on node `id`: the error kind if refused.
pub(super) async fn client_put(t: &TestCluster, id: u64, key: &Bytes) -> Result<(), Kind> {
    let addr = format!("http://{}", t.cluster.grpc_addr(id));
    let mut kv = KvClient::connect(addr).await.expect("connect");
    let put = PutRequest {
        key: key.clone(),
        value: Bytes::from_static(b"after"),
        ..PutRequest::default()
    };
    match kv.put(put).await {
        Ok(_) => Ok(()),
        Err(status) => Err(error_detail(&status).map_or(Kind::Unspecified, |d| d.kind())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_is_read_staged_fenced_and_unfenced_over_the_peer_calls() {
    let mut t = TestCluster::start(3);
    let leader = t.wait_for_leader(CALL_TIMEOUT).await;
    let _ = super::map_on(&t, 1).await;
    let out = keel_shard(&t, 1, &["group", "create", "--members", "1,2,3"]);
    assert!(out.contains("created group 2"), "{out}");
    let _ = agreed_leader(&t, 2, &[1, 2, 3]).await;

    // Three keys of one slot, written through the client API into group 1.
    let slot = slot_for_key(b"k0");
    let keys: Vec<Bytes> = (0u32..)
        .map(|i| Bytes::from(format!("k{i}")))
        .filter(|k| slot_for_key(k) == slot)
        .take(3)
        .collect();
    let client = t.node_client(leader);
    for key in &keys {
        client
            .put(key.clone(), Bytes::from_static(b"v"))
            .await
            .expect("put");
    }

    // Any member reads the slot (its ReadIndex makes the answer current).
    let source = peer(&t, 2).await;
    let page = source
        .fetch_page(1, slot, EPOCH, None, MAX_PAGE_BYTES)
        .await
        .expect("fetch page");
    let mut sorted = keys.clone();
    sorted.sort();
    let got: Vec<Bytes> = page.puts.iter().map(|p| p.key.clone()).collect();
    assert_eq!(got, sorted);
    assert!(page.puts.iter().all(|p| p.version > 0 && p.value == "v"));
    assert_eq!(page.source.state, SlotState::Serving);
    assert!(!page.more);
    let versions = source
        .fetch_versions(1, slot, EPOCH, None, 2)
        .await
        .expect("fetch versions");
    assert_eq!(versions.versions.len(), 2);
    assert!(versions.more);
    let values = source
        .fetch_values(1, slot, EPOCH, sorted.clone(), MAX_PAGE_BYTES)
        .await
        .expect("fetch values");
    assert_eq!(values.covered, 3);
    assert_eq!(values.puts, page.puts);

    // A key of another slot is a typed refusal; a group not hosted, NOT_FOUND.
    let other = (0u32..)
        .map(|i| Bytes::from(format!("x{i}")))
        .find(|k| slot_for_key(k) != slot)
        .expect("a key elsewhere");
    let e = source
        .fetch_values(1, slot, EPOCH, vec![other], MAX_PAGE_BYTES)
        .await
        .expect_err("outside the slot");
    assert!(
        matches!(e, SlotPeerError::Refused(CopyError::KeyOutsideSlot { .. })),
        "{e}"
    );
    let e = source
        .fetch_page(99, slot, EPOCH, None, MAX_PAGE_BYTES)
        .await
        .expect_err("no group 99");
    assert!(matches!(e, SlotPeerError::NotHosted(_)), "{e}");

    // A new group serves no slot: a fence there is refused, and nothing
    // changed, so a copy may begin at once.
    let fence_absent = SlotCommand {
        slot,
        epoch: EPOCH - 1,
        step: MoveStep::Fence,
    };
    assert!(
        propose(&t, 2, fence_absent).await.is_err(),
        "group 2 does not serve the slot"
    );

    // Group 2 stages the page: round 0, page 0 begins the copy. Staged data
    // is not served, so group 2 refuses to be a source, naming its state.
    let mut builder = PageBuilder::new(slot, EPOCH, 0, MAX_PAGE_BYTES);
    builder.add(page.puts.clone(), Vec::new()).expect("page");
    for cmd in builder.finish() {
        let state = propose(&t, 2, cmd).await.expect("ingested");
        assert_eq!(state, SlotState::Staging { epoch: EPOCH });
    }
    let e = peer(&t, 1)
        .await
        .fetch_page(2, slot, EPOCH, None, MAX_PAGE_BYTES)
        .await
        .expect_err("staging is no source");
    assert!(
        matches!(
            e,
            SlotPeerError::Refused(CopyError::NotSource {
                found: SlotState::Staging { epoch: EPOCH },
                ..
            })
        ),
        "{e}"
    );

    // A command that is not a slot-move command is refused; nothing changes.
    let put = Command::Put {
        key: keys[0].clone(),
        value: Bytes::from_static(b"sneaky"),
        expect: Expect::Any,
    }
    .encode();
    for id in 1..=3 {
        let e = peer(&t, id)
            .await
            .propose_encoded(1, put.clone(), CALL_TIMEOUT)
            .await
            .expect_err("not a slot command");
        assert!(matches!(e, SlotPeerError::Invalid(_)), "{e}");
    }
    let after = source
        .fetch_values(1, slot, EPOCH, vec![keys[0].clone()], MAX_PAGE_BYTES)
        .await
        .expect("fetch values");
    assert_eq!(after.puts[0].value, "v");

    // The change index over the wire: a start answers where tracking runs
    // from (nothing listed), and then names the keys written since.
    let started = source
        .fetch_changes(1, slot, EPOCH, None)
        .await
        .expect("start tracking");
    let Changes::Unknown { from } = started.changes else {
        panic!("a start listed keys: {started:?}");
    };
    let extra = (0u32..)
        .map(|i| Bytes::from(format!("extra{i}")))
        .find(|k| slot_for_key(k) == slot)
        .expect("another key of the slot");
    client
        .put(extra.clone(), Bytes::from_static(b"e"))
        .await
        .expect("put");
    client.delete(extra.clone()).await.expect("delete");
    let changed = source
        .fetch_changes(1, slot, EPOCH, Some(from))
        .await
        .expect("changes");
    assert_eq!(changed.changes, Changes::Listed(vec![extra]));
    assert!(changed.source.applied_index > from);

    // Fenced: client writes of the slot are refused as moving, and the
    // source answers with the fence as evidence.
    let step = |step: MoveStep| SlotCommand {
        slot,
        epoch: EPOCH,
        step,
    };
    let state = propose(&t, 1, step(MoveStep::Fence)).await.expect("fenced");
    assert_eq!(state, SlotState::Fenced { epoch: EPOCH });
    let leader = t.wait_for_leader(CALL_TIMEOUT).await;
    assert_eq!(
        client_put(&t, leader, &keys[0]).await,
        Err(Kind::SlotMoving)
    );
    let fenced = source
        .fetch_page(1, slot, EPOCH, None, MAX_PAGE_BYTES)
        .await
        .expect("fetch fenced");
    assert!(fenced.source.is_fenced_for(EPOCH));
    assert_eq!(fenced.puts, page.puts);
    // Fencing again at the same epoch is already in effect; at another
    // epoch the state machine refuses, typed as a refusal.
    let other_epoch = SlotCommand {
        epoch: EPOCH + 1,
        ..step(MoveStep::Fence)
    };
    assert!(propose(&t, 1, other_epoch).await.is_err());

    // Unfenced: the write goes through.
    let state = propose(&t, 1, step(MoveStep::Unfence))
        .await
        .expect("unfenced");
    assert_eq!(state, SlotState::Serving);
    let key = keys[0].clone();
    let t = &t;
    eventually(CALL_TIMEOUT, "a write after unfencing", || {
        let key = key.clone();
        async move { client_put(t, leader, &key).await.ok() }
    })
    .await;
    t.assert_no_panics();
}

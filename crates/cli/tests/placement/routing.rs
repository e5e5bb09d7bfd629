//! Requests go to the group the cluster map names for their key's slot. Here
//! an operator moves a slot to group 2, which runs on nodes 2 and 3 only (the
//! mover copies the data; see `moves.rs`): nodes 2 and 3 then answer for the
//! slot from group 2, with the data group 1 held, and so does node 1, which
//! hosts no replica of group 2, by forwarding to them (`forward.rs` has
//! more); other slots keep working; a
//! transaction across the two groups is CROSS_GROUP, and a scan merges both
//! groups' parts. The slot then moves back.

use keel_client::{Slot, slot_for_key};

use super::super::common::{TestCluster, eventually, http};
use super::hosting::agreed_leader;
use super::{MAP_TIMEOUT, map_on};

/// How long a move may take here (the mover's own limit is 60 s).
const MOVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(90);

/// A key of a slot other than `not`'s, named from `base`.
fn key_outside(base: &str, not: Slot) -> String {
    (0..)
        .map(|i| format!("{base}{i}"))
        .find(|k| slot_for_key(k.as_bytes()) != not)
        .expect("keys spread over slots")
}

/// `(status, kind)` of an HTTP answer; kind is empty on success.
fn call(t: &TestCluster, node: u64, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let (code, _, body) = http(t.cluster.http_addr(node), method, path, &[], body);
    let kind = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|j| j["kind"].as_str().map(str::to_string))
        .unwrap_or_default();
    (code, kind)
}

/// Waits until every node's map, at `version` or later, names `group` the
/// owner of `slot` with no move of it in flight.
async fn owned_everywhere(t: &TestCluster, slot: Slot, group: u64, version: u64) {
    for node in [1, 2, 3] {
        let client = t.node_client(node);
        eventually(
            MOVE_TIMEOUT,
            &format!("slot {slot} owned by group {group} on node {node}"),
            || {
                let client = client.clone();
                async move {
                    let map = client.cluster_map().await.ok()?;
                    let done = map.version() >= version
                        && map.owner(slot) == Some(group)
                        && !map.moves().contains_key(&slot);
                    done.then_some(())
                }
            },
        )
        .await;
    }
}

fn change_map(t: &TestCluster, command: &str) {
    let body = format!(r#"{{"format":1,"command":{command}}}"#);
    let (code, _, answer) = http(
        t.cluster.http_addr(1),
        "POST",
        "/v1/cluster/map",
        &[],
        body.as_bytes(),
    );
    assert_eq!(code, 200, "{command}: {}", String::from_utf8_lossy(&answer));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_map_routes_keys_and_each_group_serves_only_what_its_state_machine_owns() {
    let t = TestCluster::start(3);
    let initial = map_on(&t, 1).await;
    let moved_key = "routed";
    let slot = slot_for_key(moved_key.as_bytes());
    let other = key_outside("stays", slot);
    for key in [moved_key, other.as_str()] {
        // Group 1 may still be electing its first leader (503 until then).
        eventually(MAP_TIMEOUT, &format!("put {key}"), || async {
            let (code, _) = call(&t, 1, "PUT", &format!("/v1/kv/{key}"), b"before");
            (code == 200).then_some(())
        })
        .await;
    }
    // Group 2 on nodes 2 and 3; node 1 hosts no replica of it.
    change_map(
        &t,
        r#"{"op":"create_group","members":[2,3],"target_replicas":2}"#,
    );
    agreed_leader(&t, 2, &[2, 3]).await;
    // The operator only begins the move; group 2's leader copies the slot
    // and has placement commit it.
    change_map(
        &t,
        &format!(r#"{{"op":"begin_slot_move","slot":{},"to":2}}"#, slot.get()),
    );
    let epoch = initial.version() + 2;
    owned_everywhere(&t, slot, 2, epoch + 1).await;

    let path = format!("/v1/kv/{moved_key}");
    // Nodes 2 and 3 answer from group 2, which holds the data group 1 had;
    // node 1 does not host group 2 and forwards to them.
    for node in [1, 2, 3] {
        let (code, _, body) = http(t.cluster.http_addr(node), "GET", &path, &[], b"");
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        assert!(String::from_utf8_lossy(&body).contains("before"));
    }
    // Other slots are untouched, on every node.
    for node in [1, 2, 3] {
        let (code, kind) = call(&t, node, "PUT", &format!("/v1/kv/{other}"), b"again");
        assert_eq!(
            (code, kind.as_str()),
            (200, ""),
            "put {other} on node {node}"
        );
        let (code, _) = call(&t, node, "GET", &format!("/v1/kv/{other}"), b"");
        assert_eq!(code, 200);
    }
    // Across groups: refused, nothing changed.
    let txn = format!(
        r#"{{"success":[{{"put":"{moved_key}","value":"x"}},{{"put":"{other}","value":"x"}}]}}"#
    );
    let (code, kind) = call(&t, 2, "POST", "/v1/txn", txn.as_bytes());
    assert_eq!((code, kind.as_str()), (400, "cross_group"));
    // A scan fans out over both groups (group 2's part from node 2 itself,
    // from node 1 by asking a member) and merges the parts in key order.
    for node in [1, 2] {
        let (code, _, body) = http(
            t.cluster.http_addr(node),
            "GET",
            "/v1/kv?prefix=stays",
            &[],
            b"",
        );
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
        let items = json["items"].as_array().expect("items");
        assert_eq!(items.len(), 1, "{json}");
        assert_eq!(json["revision"], 0, "no single revision across groups");
    }

    // The slot moves back: group 1 serves it again, with the same data.
    change_map(
        &t,
        &format!(r#"{{"op":"begin_slot_move","slot":{},"to":1}}"#, slot.get()),
    );
    owned_everywhere(&t, slot, 1, epoch + 3).await;
    let (code, _, body) = http(t.cluster.http_addr(3), "GET", &path, &[], b"");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("before"));
    t.assert_no_panics();
}

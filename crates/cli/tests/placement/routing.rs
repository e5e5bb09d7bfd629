//! Requests go to the group the cluster map names for their key's slot, and
//! the map is only a hint: a group serves a slot only if its own state
//! machine says so. Here an operator hands a slot to group 2 in the map alone
//! (no data moved, so group 2's state machine holds nothing of it): requests
//! for that slot are refused with WRONG_GROUP everywhere — never answered by
//! group 1, which still holds the data, nor by group 2 — while other slots
//! keep working; a transaction across the two groups is CROSS_GROUP, and a
//! scan merges both groups' parts.

use keel_client::{Slot, slot_for_key};

use super::super::common::{TestCluster, eventually, http};
use super::hosting::agreed_leader;
use super::{MAP_TIMEOUT, map_on};

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
    // The map alone says group 2 owns the slot (an operator's raw command; a
    // real move copies the data first).
    change_map(
        &t,
        &format!(r#"{{"op":"begin_slot_move","slot":{},"to":2}}"#, slot.get()),
    );
    let epoch = initial.version() + 2;
    change_map(
        &t,
        &format!(
            r#"{{"op":"commit_slot_move","slot":{},"epoch":{epoch}}}"#,
            slot.get()
        ),
    );
    for node in [1, 2, 3] {
        super::change::map_everywhere(&t, &[node], epoch + 1).await;
    }

    let path = format!("/v1/kv/{moved_key}");
    // Node 1 does not host group 2: refused by routing. Nodes 2 and 3 route
    // to group 2, whose state machine does not serve the slot: refused too.
    for node in [1, 2, 3] {
        for method in ["GET", "PUT", "DELETE"] {
            let (code, kind) = call(&t, node, method, &path, b"after");
            assert_eq!(
                (code, kind.as_str()),
                (421, "wrong_group"),
                "{method} on node {node}"
            );
        }
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

    // The map hands the slot back: group 1 serves it again, with the data it
    // never stopped holding (nothing was ever answered from group 2).
    change_map(
        &t,
        &format!(r#"{{"op":"begin_slot_move","slot":{},"to":1}}"#, slot.get()),
    );
    let back = epoch + 2;
    change_map(
        &t,
        &format!(
            r#"{{"op":"commit_slot_move","slot":{},"epoch":{back}}}"#,
            slot.get()
        ),
    );
    super::change::map_everywhere(&t, &[1, 2, 3], back + 1).await;
    let (code, _, body) = http(t.cluster.http_addr(3), "GET", &path, &[], b"");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("before"));
    t.assert_no_panics();
}

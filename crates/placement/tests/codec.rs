//! The stored forms of the map and of commands: round trips, a pinned
//! encoding, and refusal of anything damaged, oversized or foreign.

mod common;

use common::{cluster, create, move_slot, ok, slot};
use keel_placement::{
    ClusterMap, Command, DecodeError, InvariantError, MAX_ENCODED_COMMAND_BYTES,
    MAX_ENCODED_MAP_BYTES,
};

/// A small map with two groups, a committed move and a move in flight.
fn sample() -> ClusterMap {
    let mut map = cluster(4);
    let g = create(&mut map, &[4], 1);
    move_slot(&mut map, slot(4095), g);
    ok(
        &mut map,
        Command::BeginSlotMove {
            slot: slot(7),
            to: g,
        },
    );
    ok(&mut map, Command::DrainNode { node: 3 });
    map
}

#[test]
fn the_map_encoding_is_pinned() {
    let text = String::from_utf8(sample().encode()).expect("JSON is UTF-8");
    assert_eq!(
        text,
        r#"{"format":1,"version":10,"next_group":3,"nodes":[{"id":1,"address":"10.0.0.1:7001","state":"active"},{"id":2,"address":"10.0.0.2:7001","state":"active"},{"id":3,"address":"10.0.0.3:7001","state":"draining"},{"id":4,"address":"10.0.0.4:7001","state":"active"}],"groups":[{"id":1,"members":[1,2,3],"target_replicas":3,"initial":[1,2,3]},{"id":2,"members":[4],"target_replicas":1,"initial":[4]}],"slots":[{"first":0,"last":4094,"group":1},{"first":4095,"last":4095,"group":2}],"moves":[{"slot":7,"from":1,"to":2,"epoch":9}]}"#
    );
}

/// Maps written before groups recorded their initial members still decode,
/// with no initial members, and encode as they were.
#[test]
fn a_map_without_initial_members_decodes() {
    let old = r#"{"format":1,"version":4,"next_group":2,"nodes":[{"id":1,"address":"10.0.0.1:7001","state":"active"}],"groups":[{"id":1,"members":[1],"target_replicas":1}],"slots":[{"first":0,"last":4095,"group":1}],"moves":[]}"#;
    let map = ClusterMap::decode(old.as_bytes()).expect("decodes");
    let group = &map.groups()[&1];
    assert!(group.initial.is_empty());
    assert_eq!(String::from_utf8(map.encode()).ok().as_deref(), Some(old));
}

/// A group remembers the members it was created with, whatever changes later.
#[test]
fn initial_members_never_change() {
    let mut map = cluster(4);
    let g = create(&mut map, &[4], 2);
    ok(&mut map, Command::AddGroupMember { group: g, node: 3 });
    ok(&mut map, Command::RemoveGroupMember { group: g, node: 4 });
    let group = &map.groups()[&g];
    assert_eq!(group.initial.iter().copied().collect::<Vec<_>>(), [4]);
    assert_eq!(group.members.iter().copied().collect::<Vec<_>>(), [3]);
}

#[test]
fn maps_round_trip() {
    for map in [ClusterMap::new(), cluster(3), sample()] {
        let decoded = ClusterMap::decode(&map.encode()).expect("decodes");
        assert_eq!(decoded, map);
        // Through serde directly too (a map embedded in another record).
        let json = serde_json::to_string(&map).expect("serializes");
        assert_eq!(serde_json::from_str::<ClusterMap>(&json).ok(), Some(map));
    }
}

#[test]
fn commands_round_trip_and_their_encoding_is_pinned() {
    let command = Command::BeginSlotMove {
        slot: slot(12),
        to: 3,
    };
    assert_eq!(
        String::from_utf8(command.encode()).ok().as_deref(),
        Some(r#"{"format":1,"command":{"op":"begin_slot_move","slot":12,"to":3}}"#)
    );
    assert_eq!(
        String::from_utf8(
            Command::JoinNode {
                node: 4,
                address: "a:1".into(),
                new_group_replicas: 3,
            }
            .encode()
        )
        .ok()
        .as_deref(),
        Some(
            r#"{"format":1,"command":{"op":"join_node","node":4,"address":"a:1","new_group_replicas":3}}"#
        )
    );
    let all = [
        Command::RegisterNode {
            node: 1,
            address: "a:1".into(),
        },
        Command::JoinNode {
            node: 1,
            address: "a:1".into(),
            new_group_replicas: 3,
        },
        Command::DrainNode { node: 1 },
        Command::RemoveNode { node: 1 },
        Command::CreateGroup {
            members: [1, 2].into(),
            target_replicas: 3,
        },
        Command::RemoveGroup { group: 2 },
        Command::SetTargetReplicas {
            group: 2,
            target_replicas: 5,
        },
        Command::AddGroupMember { group: 2, node: 1 },
        Command::RemoveGroupMember { group: 2, node: 1 },
        command,
        Command::CommitSlotMove {
            slot: slot(1),
            epoch: 4,
        },
        Command::AbortSlotMove {
            slot: slot(1),
            epoch: 4,
        },
    ];
    for c in all {
        assert_eq!(Command::decode(&c.encode()), Ok(c));
    }
}

#[test]
fn foreign_formats_are_refused_before_parsing_the_rest() {
    let newer = br#"{"format":2,"anything":"at all"}"#;
    let expected = DecodeError::UnsupportedFormat {
        format: 2,
        supported: 1,
    };
    assert_eq!(ClusterMap::decode(newer), Err(expected.clone()));
    assert_eq!(Command::decode(newer), Err(expected));
}

#[test]
fn oversized_input_is_refused_unread() {
    let big = vec![b' '; MAX_ENCODED_MAP_BYTES + 1];
    assert!(matches!(
        ClusterMap::decode(&big),
        Err(DecodeError::TooLarge { .. })
    ));
    let big = vec![b' '; MAX_ENCODED_COMMAND_BYTES + 1];
    assert!(matches!(
        Command::decode(&big),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test]
fn malformed_input_is_refused() {
    for bad in [
        &b""[..],
        b"null",
        b"{\"format\":1}",
        b"{\"format\":1,\"command\":{\"op\":\"explode\"}}",
        b"{\"format\":1,\"command\":{\"op\":\"drain_node\",\"node\":1,\"extra\":2}}",
        b"{\"format\":1,\"command\":{\"op\":\"commit_slot_move\",\"slot\":4096,\"epoch\":1}}",
    ] {
        assert!(
            matches!(Command::decode(bad), Err(DecodeError::Malformed(_))),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    assert!(matches!(
        ClusterMap::decode(br#"{"format":1,"version":0}"#),
        Err(DecodeError::Malformed(_))
    ));
}

/// Encodes `sample()` with `edit` applied to its text.
fn edited(from: &str, to: &str) -> Result<ClusterMap, DecodeError> {
    let text = String::from_utf8(sample().encode()).expect("JSON is UTF-8");
    assert!(text.contains(from), "the sample contains {from}");
    ClusterMap::decode(text.replacen(from, to, 1).as_bytes())
}

#[test]
fn maps_breaking_a_rule_are_refused() {
    let invalid = |r: Result<ClusterMap, DecodeError>| match r {
        Err(DecodeError::Invalid(e)) => e,
        other => panic!("expected an invalid map, got {other:?}"),
    };
    // A slot owned by a group that does not exist.
    assert_eq!(
        invalid(edited(
            r#""first":4095,"last":4095,"group":2"#,
            r#""first":4095,"last":4095,"group":9"#
        )),
        InvariantError::OwnerUnknown {
            slot: slot(4095),
            group: 9
        }
    );
    // Slot runs with a gap, an overlap, or stopping short.
    for (from, to) in [
        (r#""first":4095,"last":4095"#, r#""first":4096,"last":4096"#),
        (r#""first":0,"last":4094"#, r#""first":0,"last":4095"#),
        (r#","last":4095,"group":2}"#, r#","last":4094,"group":2}"#),
    ] {
        assert!(
            matches!(invalid(edited(from, to)), InvariantError::SlotRuns(_)),
            "{to}"
        );
    }
    // A move whose source is not the owner.
    assert!(matches!(
        invalid(edited(r#""from":1,"to":2"#, r#""from":2,"to":1"#)),
        InvariantError::BadMove { .. }
    ));
    // A move from the future.
    assert!(matches!(
        invalid(edited(r#""epoch":9"#, r#""epoch":11"#)),
        InvariantError::BadMove { .. }
    ));
    // A member that is not a registered node.
    assert!(matches!(
        invalid(edited(r#""members":[4]"#, r#""members":[5]"#)),
        InvariantError::BadGroup { .. }
    ));
    // A group id that was never allocated.
    assert!(matches!(
        invalid(edited(r#""next_group":3"#, r#""next_group":2"#)),
        InvariantError::BadGroup { .. }
    ));
    // Two nodes at one address, and one node listed twice.
    assert!(matches!(
        invalid(edited("10.0.0.2:7001", "10.0.0.1:7001")),
        InvariantError::BadNode { node: 2, .. }
    ));
    assert!(matches!(
        invalid(edited(r#"{"id":2,"#, r#"{"id":1,"#)),
        InvariantError::BadNode { node: 1, .. }
    ));
}

#[test]
fn a_map_at_every_limit_encodes_well_under_the_decode_limit() {
    use keel_placement::{MAX_ADDRESS_BYTES, MAX_GROUPS, MAX_MOVES, MAX_NODES, MAX_REPLICAS, Slot};
    let mut map = ClusterMap::new();
    let apply = |map: &mut ClusterMap, c: Command| {
        map.apply(&c).unwrap_or_else(|e| panic!("{c:?}: {e}"));
    };
    for node in 1..=MAX_NODES as u64 {
        let address = format!("{node}:{}", "9".repeat(MAX_ADDRESS_BYTES - 6));
        apply(&mut map, Command::RegisterNode { node, address });
    }
    for g in 0..MAX_GROUPS as u64 {
        let members = (0..MAX_REPLICAS as u64).map(|i| (g + i) % MAX_NODES as u64 + 1);
        apply(
            &mut map,
            Command::CreateGroup {
                members: members.collect(),
                target_replicas: 7,
            },
        );
    }
    // Owners alternate slot by slot: the most slot runs there can be.
    for n in (1..4096u16).step_by(2) {
        let slot = Slot::new(n).expect("in range");
        let epoch = map
            .apply(&Command::BeginSlotMove { slot, to: 2 })
            .expect("begins")
            .version;
        apply(&mut map, Command::CommitSlotMove { slot, epoch });
    }
    for n in 0..MAX_MOVES as u16 {
        let slot = Slot::new(n * 2).expect("in range");
        apply(&mut map, Command::BeginSlotMove { slot, to: 3 });
    }
    let bytes = map.encode();
    assert!(bytes.len() < 2 << 20, "{} bytes", bytes.len());
    assert!(bytes.len() < MAX_ENCODED_MAP_BYTES);
    assert_eq!(ClusterMap::decode(&bytes), Ok(map));
}

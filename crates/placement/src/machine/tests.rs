//! The placement machine's rules, one test each.

use std::collections::BTreeMap;

use super::*;
use crate::error::CommandError;
use crate::ids::{FIRST_DATA_GROUP, NodeId};
use crate::slot::Slot;

fn members(n: u64) -> BTreeMap<NodeId, String> {
    (1..=n)
        .map(|id| (id, format!("10.0.0.{id}:7001")))
        .collect()
}

fn three() -> PlacementMachine {
    PlacementMachine::bootstrap(&members(3)).expect("bootstrap")
}

fn register(node: NodeId) -> Vec<u8> {
    Command::RegisterNode {
        node,
        address: format!("10.0.0.{node}:7001"),
    }
    .encode()
}

#[test]
fn a_new_cluster_starts_with_group_1_on_every_member_owning_every_slot() {
    let m = three();
    assert_eq!(m.applied_index(), 0);
    let map = m.map();
    assert_eq!(map.nodes().len(), 3);
    let group = &map.groups()[&FIRST_DATA_GROUP];
    assert_eq!(group.members.iter().copied().collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(group.target_replicas, 3);
    assert!(Slot::all().all(|s| map.owner(s) == Some(FIRST_DATA_GROUP)));
    // Three registrations and one group: four changes.
    assert_eq!(map.version(), 4);
    assert_eq!(map.next_group_id(), FIRST_DATA_GROUP + 1);
}

#[test]
fn bootstrap_refuses_no_members_too_many_and_bad_addresses() {
    assert_eq!(
        PlacementMachine::bootstrap(&BTreeMap::new()),
        Err(BootstrapError::NoMembers)
    );
    assert_eq!(
        PlacementMachine::bootstrap(&members(8)),
        Err(BootstrapError::TooManyMembers {
            members: 8,
            limit: 7
        })
    );
    let mut same = members(2);
    same.insert(2, "10.0.0.1:7001".into());
    assert!(matches!(
        PlacementMachine::bootstrap(&same),
        Err(BootstrapError::Refused {
            node: 2,
            error: CommandError::AddressInUse { node: 1, .. }
        })
    ));
    let mut blank = members(1);
    blank.insert(4, String::new());
    assert!(matches!(
        PlacementMachine::bootstrap(&blank),
        Err(BootstrapError::Refused {
            node: 4,
            error: CommandError::InvalidAddress { .. }
        })
    ));
    assert!(PlacementMachine::bootstrap(&members(7)).is_ok());
}

#[test]
fn a_command_entry_changes_the_map_and_moves_the_applied_index() {
    let mut m = three();
    let outcome = m.apply(1, Some(&register(4))).expect("in order");
    let EntryOutcome::Applied(applied) = outcome else {
        panic!("{outcome:?}")
    };
    assert!(applied.changed);
    assert_eq!(applied.version, 5);
    assert_eq!(m.applied_index(), 1);
    assert!(m.map().nodes().contains_key(&4));
}

#[test]
fn a_refused_command_changes_nothing_but_the_applied_index() {
    let mut m = three();
    let before = m.map().clone();
    let remove = Command::RemoveNode { node: 1 }.encode();
    let outcome = m.apply(1, Some(&remove)).expect("in order");
    assert!(
        matches!(
            outcome,
            EntryOutcome::Refused(CommandError::NodeHoldsReplicas { node: 1, .. })
        ),
        "{outcome:?}"
    );
    assert_eq!(m.map(), &before);
    assert_eq!(m.applied_index(), 1);
}

#[test]
fn undecodable_and_empty_entries_change_nothing_but_the_applied_index() {
    let mut m = three();
    let before = m.map().clone();
    let outcome = m.apply(1, Some(b"{not json")).expect("in order");
    assert!(
        matches!(outcome, EntryOutcome::Undecodable(_)),
        "{outcome:?}"
    );
    let newer = br#"{"format":2,"command":{}}"#;
    let outcome = m.apply(2, Some(newer)).expect("in order");
    assert!(
        matches!(
            outcome,
            EntryOutcome::Undecodable(DecodeError::UnsupportedFormat { format: 2, .. })
        ),
        "{outcome:?}"
    );
    assert_eq!(m.apply(3, Some(b"")), Ok(EntryOutcome::NoCommand));
    assert_eq!(m.apply(4, None), Ok(EntryOutcome::NoCommand));
    assert_eq!(m.map(), &before);
    assert_eq!(m.applied_index(), 4);
}

#[test]
fn entries_apply_only_in_order() {
    let mut m = three();
    m.apply(1, None).expect("first");
    let before = m.clone();
    for index in [0, 1, 3, u64::MAX] {
        assert_eq!(
            m.apply(index, Some(&register(9))),
            Err(ApplyError::OutOfOrder {
                applied: 1,
                got: index
            })
        );
        assert_eq!(m, before, "a refused entry at {index} changed the machine");
    }
}

#[test]
fn a_snapshot_restores_the_same_machine() {
    let mut m = three();
    m.apply(1, Some(&register(4))).expect("in order");
    let create = Command::CreateGroup {
        members: [2, 3, 4].into_iter().collect(),
        target_replicas: 3,
    };
    m.apply(2, Some(&create.encode())).expect("in order");
    let slot = Slot::new(7).expect("in range");
    let begin = Command::BeginSlotMove { slot, to: 2 };
    m.apply(3, Some(&begin.encode())).expect("in order");
    let restored = PlacementMachine::restore(&m.snapshot()).expect("restore");
    assert_eq!(restored, m);
    assert_eq!(restored.applied_index(), 3);
    assert_eq!(restored.map().moves().len(), 1);
}

#[test]
fn damaged_or_foreign_snapshots_are_refused() {
    let good = String::from_utf8(three().snapshot()).expect("JSON");
    let refuse = |text: &str| PlacementMachine::restore(text.as_bytes());
    assert!(matches!(
        refuse("garbage"),
        Err(SnapshotError::Decode(DecodeError::Malformed(_)))
    ));
    assert!(matches!(
        refuse(&good.replacen(r#""format":1"#, r#""format":9"#, 1)),
        Err(SnapshotError::Decode(DecodeError::UnsupportedFormat {
            format: 9,
            ..
        }))
    ));
    assert!(matches!(
        refuse(&good.replacen(r#""applied":0"#, r#""applied":0,"extra":1"#, 1)),
        Err(SnapshotError::Decode(DecodeError::Malformed(_)))
    ));
    // The map inside has its own format number, checked as well.
    let inner = good.replacen(r#""map":{"format":1"#, r#""map":{"format":3"#, 1);
    assert_ne!(inner, good, "the map's format is where the test expects it");
    assert!(matches!(
        refuse(&inner),
        Err(SnapshotError::Decode(DecodeError::UnsupportedFormat {
            format: 3,
            ..
        }))
    ));
    // A map breaking a rule: slots owned by a group that does not exist.
    let orphan = good.replacen(r#""group":1"#, r#""group":5"#, 1);
    assert_ne!(orphan, good, "the slot run is where the test expects it");
    assert!(matches!(
        refuse(&orphan),
        Err(SnapshotError::Decode(DecodeError::Invalid(_)))
    ));
    let huge = vec![b' '; crate::ids::MAX_ENCODED_MAP_BYTES + 2048];
    assert!(matches!(
        PlacementMachine::restore(&huge),
        Err(SnapshotError::Decode(DecodeError::TooLarge { .. }))
    ));
}

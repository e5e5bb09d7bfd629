use super::*;
use crate::placement::test_maps::{hand_over, map_of, slot};

/// Nodes 1..=4; group 1 on all, group 2 on nodes 2, 3 and 4, owning slot 7.
fn map() -> ClusterMap {
    let mut map = map_of(4, &[&[1, 2, 3, 4], &[2, 3, 4]]);
    hand_over(&mut map, slot(7), 2);
    map
}

fn hosts_group_1(g: GroupId) -> bool {
    g == 1
}

#[test]
fn a_key_of_a_group_not_hosted_goes_to_its_members_never_to_this_node() {
    let map = map();
    let remote = remote_of(Some(&map), &[slot(7)], 1, hosts_group_1).expect("forwarded");
    assert_eq!(remote.group, 2);
    assert_eq!(remote.slot, slot(7));
    let ids: Vec<NodeId> = remote.members.iter().map(|(n, _)| *n).collect();
    assert_eq!(ids, [2, 3, 4]);
    assert_eq!(remote.members[0].1, "127.0.0.1:7002");
    // A node listed in the group but without its replica yet asks the others.
    let remote = remote_of(Some(&map), &[slot(7)], 3, hosts_group_1).expect("forwarded");
    let ids: Vec<NodeId> = remote.members.iter().map(|(n, _)| *n).collect();
    assert_eq!(ids, [2, 4]);
}

#[test]
fn hosted_groups_no_map_and_keys_of_two_groups_are_served_here() {
    let map = map();
    // Group 1's slot, and group 2's on a node that hosts it.
    assert_eq!(remote_of(Some(&map), &[slot(8)], 1, hosts_group_1), None);
    assert_eq!(remote_of(Some(&map), &[slot(7)], 2, |_| true), None);
    // No map, no keys, and keys of two groups (refused here: CROSS_GROUP).
    assert_eq!(remote_of(None, &[slot(7)], 1, hosts_group_1), None);
    assert_eq!(remote_of(Some(&map), &[], 1, hosts_group_1), None);
    assert_eq!(
        remote_of(Some(&map), &[slot(7), slot(8)], 1, hosts_group_1),
        None
    );
    // Several keys of the one remote group are forwarded together.
    assert!(remote_of(Some(&map), &[slot(7), slot(7)], 1, hosts_group_1).is_some());
}

#[test]
fn the_known_leader_is_asked_first_then_every_member_once() {
    let members = vec![(2, "a:2".to_string()), (3, "a:3".to_string())];
    assert_eq!(targets(None, &members), ["a:2", "a:3"]);
    assert_eq!(targets(Some("a:3"), &members), ["a:3", "a:2"]);
    assert_eq!(targets(Some("a:9"), &members), ["a:9", "a:2", "a:3"]);
    assert_eq!(targets(Some(""), &members), ["a:2", "a:3"]);
    assert!(targets(None, &[]).is_empty());
}

#[test]
fn hints_are_followed_answers_that_applied_nothing_move_on_and_the_rest_stop() {
    let hint = ErrorDetail::not_leader(3, "h:3");
    assert_eq!(next_step(&hint, 0), Step::Redirect("h:3".into()));
    assert_eq!(next_step(&hint, MAX_REDIRECTS), Step::NextMember);
    assert_eq!(
        next_step(&ErrorDetail::not_leader(0, ""), 0),
        Step::NextMember
    );
    assert_eq!(next_step(&ErrorDetail::no_leader(), 0), Step::NextMember);
    assert_eq!(
        next_step(&ErrorDetail::shutting_down(), 0),
        Step::NextMember
    );
    let wrong = ErrorDetail::wrong_group(7, 9, "not here");
    assert_eq!(next_step(&wrong, 0), Step::NextMember);
    // Definite answers, and a write that may have applied, stop.
    assert_eq!(next_step(&ErrorDetail::outcome_unknown("?"), 0), Step::Stop);
    assert_eq!(next_step(&ErrorDetail::conflict(4), 0), Step::Stop);
    assert_eq!(next_step(&ErrorDetail::refused("no"), 0), Step::Stop);
    assert_eq!(
        next_step(&ErrorDetail::invalid_argument("no"), 0),
        Step::Stop
    );
    assert_eq!(
        next_step(&ErrorDetail::slot_moving(7, "moving"), 0),
        Step::Stop
    );
}

#[test]
fn a_forwarded_call_is_marked_and_never_forwarded_again() {
    let mut request = tonic::Request::new(());
    assert_eq!(Hop::of(request.metadata()), Hop::Client);
    request.metadata_mut().insert(
        GROUP_FORWARDED_HEADER,
        tonic::metadata::MetadataValue::from(2u64),
    );
    assert_eq!(Hop::of(request.metadata()), Hop::Forwarded);
}

#[test]
fn leader_hints_are_kept_per_group_and_forgotten_when_wrong() {
    let hints = GroupLeaders::default();
    assert_eq!(hints.get(2), None);
    hints.set(2, "a:2");
    hints.set(3, "a:3");
    assert_eq!(hints.get(2).as_deref(), Some("a:2"));
    hints.forget(2, "a:9");
    assert_eq!(hints.get(2).as_deref(), Some("a:2"), "another address");
    hints.forget(2, "a:2");
    assert_eq!(hints.get(2), None);
    assert_eq!(hints.get(3).as_deref(), Some("a:3"));
}

#[test]
fn when_no_member_could_serve_the_client_learns_nothing_was_applied() {
    let remote = RemoteGroup {
        group: 2,
        slot: slot(7),
        members: vec![(2, "a:2".into())],
    };
    // Every member refused the slot: the client refreshes its map.
    let wrong = ErrorDetail::wrong_group(7, 9, "a:2 answered: not here");
    assert_eq!(exhausted(1, &remote, Some(wrong.clone())), wrong);
    // A hint that could not be followed is no hint for a client: it would
    // send the client to another group's leader.
    let hint = ErrorDetail::not_leader(3, "a:3");
    let e = exhausted(1, &remote, Some(hint));
    assert_eq!((e.kind(), e.leader_id), (Kind::NoLeader, 0));
    assert!(e.message.contains("group 2 (slot 7)"), "{}", e.message);
    let e = exhausted(1, &remote, Some(ErrorDetail::shutting_down()));
    assert_eq!(e.kind(), Kind::NoLeader);
    assert!(e.message.contains("nothing was applied"), "{}", e.message);
    assert_eq!(exhausted(1, &remote, None).kind(), Kind::NoLeader);
}

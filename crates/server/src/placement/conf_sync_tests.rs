use keel_placement::Command;

use super::*;

fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
    ids.iter().copied().collect()
}

fn conf(voters: &[NodeId], learners: &[NodeId]) -> ConfState {
    let mut c = ConfState::with_voters(voters.iter().copied());
    c.learners = learners.to_vec();
    c
}

#[test]
fn missing_members_are_added_one_at_a_time_before_anything_is_removed() {
    let step = next_step(&set(&[1, 2, 4]), &conf(&[1, 2, 3], &[]), 1);
    assert_eq!(step, Some(ConfStep::Add(4)));
    // Once 4 is in (a learner still counts), 3 goes.
    let step = next_step(&set(&[1, 2, 4]), &conf(&[1, 2, 3], &[4]), 1);
    assert_eq!(step, Some(ConfStep::Remove(3)));
    assert_eq!(next_step(&set(&[1, 2, 4]), &conf(&[1, 2, 4], &[]), 1), None);
}

#[test]
fn learners_go_before_voters_and_the_leader_hands_off_last() {
    let wanted = set(&[2]);
    assert_eq!(
        next_step(&wanted, &conf(&[1, 2, 3], &[5]), 1),
        Some(ConfStep::Remove(5))
    );
    assert_eq!(
        next_step(&wanted, &conf(&[1, 2, 3], &[]), 1),
        Some(ConfStep::Remove(3))
    );
    assert_eq!(
        next_step(&wanted, &conf(&[1, 2], &[]), 1),
        Some(ConfStep::HandOff)
    );
}

#[test]
fn the_last_voter_is_never_removed() {
    // The map lists only a node that is not in the group yet: add it first.
    assert_eq!(
        next_step(&set(&[2]), &conf(&[1], &[]), 1),
        Some(ConfStep::Add(2))
    );
    // A lone leader the map dropped has nobody to hand off to.
    assert_eq!(next_step(&set(&[2]), &conf(&[1], &[2]), 1), None);
    // An empty member set (never written by the map) changes nothing.
    assert_eq!(next_step(&set(&[]), &conf(&[1, 2], &[]), 1), None);
}

fn map_with_group(members: &[NodeId]) -> ClusterMap {
    let mut map = ClusterMap::new();
    for n in 1..=4 {
        map.apply(&Command::RegisterNode {
            node: n,
            address: format!("127.0.0.1:{}", 7000 + n),
        })
        .expect("register");
    }
    // Group 1 (every slot), then group 2 with `members`.
    for members in [set(&[1, 2, 3]), set(members)] {
        map.apply(&Command::CreateGroup {
            members,
            target_replicas: 3,
        })
        .expect("create");
    }
    map
}

/// A follower's status with `conf` made at `conf_index`, committed to `commit`.
fn status(conf: ConfState, conf_index: u64, commit: u64, role: Role) -> NodeStatus {
    NodeStatus {
        id: 3,
        role,
        term: 2,
        leader: 0,
        commit,
        applied: commit,
        last_index: commit.max(conf_index),
        peers: Vec::new(),
        conf,
        conf_index,
        quiesced: false,
    }
}

#[test]
fn a_member_in_the_map_is_never_deleted() {
    let map = map_with_group(&[1, 2, 3]);
    let gone = Duration::from_secs(3600);
    let out = status(conf(&[1, 2], &[]), 5, 9, Role::Follower);
    assert_eq!(deletion(&map, 2, 3, &out, gone), Deletion::Keep);
    let empty = status(conf(&[], &[]), 0, 0, Role::Follower);
    assert_eq!(deletion(&map, 2, 3, &empty, gone), Deletion::Keep);
}

#[test]
fn a_replica_out_of_the_map_goes_only_once_its_removal_is_committed() {
    let mut map = map_with_group(&[1, 2, 3]);
    map.apply(&Command::RemoveGroupMember { group: 2, node: 3 })
        .expect("remove");
    let fresh = Duration::ZERO;
    // Still in its configuration, with a leader: the leader removes it first.
    let inside = status(conf(&[1, 2, 3], &[]), 0, 4, Role::Follower);
    assert_eq!(deletion(&map, 2, 3, &inside, fresh), Deletion::Keep);
    // Its removal appended but not committed: the entry could still be lost.
    let appended = status(conf(&[1, 2], &[]), 7, 6, Role::Follower);
    assert_eq!(deletion(&map, 2, 3, &appended, fresh), Deletion::Keep);
    // Committed: nothing counts on it any more.
    let committed = status(conf(&[1, 2], &[]), 7, 7, Role::Follower);
    assert_eq!(deletion(&map, 2, 3, &committed, fresh), Deletion::Delete);
    // It missed its removal and no leader talks to it: ask the others.
    assert_eq!(
        deletion(&map, 2, 3, &inside, ORPHAN_GRACE),
        Deletion::AskPeers
    );
    // A leader never takes itself for an orphan.
    let leading = status(conf(&[1, 2, 3], &[]), 0, 4, Role::Leader);
    assert_eq!(deletion(&map, 2, 3, &leading, ORPHAN_GRACE), Deletion::Keep);
}

#[test]
fn a_group_gone_from_the_map_is_deleted_but_not_one_the_map_has_not_seen() {
    let mut map = map_with_group(&[1, 2, 3]);
    let c = status(conf(&[1, 2, 3], &[]), 0, 3, Role::Leader);
    // Group 3 is newer than this map: it says nothing about it.
    assert_eq!(deletion(&map, 3, 1, &c, Duration::ZERO), Deletion::Keep);
    map.apply(&Command::RemoveGroup { group: 2 })
        .expect("remove group");
    assert_eq!(deletion(&map, 2, 1, &c, Duration::ZERO), Deletion::Delete);
    // Group 1 and the placement group are never deleted from the map's view.
    assert_eq!(
        deletion(&map, KV_GROUP, 4, &c, ORPHAN_GRACE),
        Deletion::Keep
    );
    assert_eq!(
        deletion(&map, PLACEMENT_GROUP, 4, &c, ORPHAN_GRACE),
        Deletion::Keep
    );
}

//! Every group of the cluster map as its members' replicas describe it — the
//! report behind `keel shard status` and the dashboard's groups table
//! (`GET /v1/cluster/status`): the group's slots, its members, the leader the
//! reachable replicas agree on, and each replica's role, term, commit and
//! applied index, or why it has none (`unreachable`, `missing`).

use std::collections::BTreeMap;
use std::time::Duration;

use keel_placement::ClusterMap;
use keel_proto::v1::GroupStatus;
use serde::Serialize;

/// Each node's hosted groups (from its `Cluster.Status`), or `None` if it did
/// not answer.
pub type Answers = BTreeMap<u64, Option<Vec<GroupStatus>>>;

/// One group as the report shows it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct GroupReport {
    /// The group's id.
    pub group: u64,
    /// Slots the map says it owns.
    pub slots: usize,
    /// How many replicas placement wants it to have.
    pub target_replicas: u8,
    /// The leader a reachable replica claims to be in the highest term (0: none).
    pub leader: u64,
    /// Keys in the leader's replica (`None`: no leader answered).
    pub keys: Option<u64>,
    /// Log entries the leader applied per second while sampled (`None`: not
    /// sampled, or no leader answered both times).
    pub entries_per_sec: Option<u64>,
    /// Each map member's replica, in member order.
    pub replicas: Vec<ReplicaReport>,
}

/// One member's replica of a group.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ReplicaReport {
    /// The member's node id.
    pub node: u64,
    /// `leader`, `follower`, `learner`, …; `unreachable` if the node did not
    /// answer, `missing` if it answered without hosting the group.
    pub state: String,
    /// The replica's term.
    pub term: Option<u64>,
    /// Its commit index.
    pub commit_index: Option<u64>,
    /// Its applied index.
    pub applied_index: Option<u64>,
}

/// Every group of `map`, in id order, as `answers` describe its replicas.
pub fn group_reports(map: &ClusterMap, answers: &Answers) -> Vec<GroupReport> {
    let slots = map.slot_counts();
    map.groups()
        .iter()
        .map(|(&group, info)| {
            let replicas: Vec<ReplicaReport> = info
                .members
                .iter()
                .map(|&node| replica(node, group, answers.get(&node)))
                .collect();
            let leader = replicas
                .iter()
                .filter(|r| r.state == "leader")
                .max_by_key(|r| r.term)
                .map_or(0, |r| r.node);
            GroupReport {
                group,
                slots: slots.get(&group).copied().unwrap_or(0),
                target_replicas: info.target_replicas,
                leader,
                keys: hosted(answers, leader, group).map(|g| g.keys),
                entries_per_sec: None,
                replicas,
            }
        })
        .collect()
}

/// Node `node`'s replica of `group` in `answers`, if it answered with one.
fn hosted(answers: &Answers, node: u64, group: u64) -> Option<&GroupStatus> {
    answers
        .get(&node)?
        .as_ref()?
        .iter()
        .find(|g| g.group == group)
}

/// Each group's load: how far its leader's applied index moved between the
/// two rounds of answers, per second. A leader that changed between the
/// rounds (or did not answer both) gives none.
pub fn add_load(groups: &mut [GroupReport], before: &Answers, after: &Answers, elapsed: Duration) {
    let secs = elapsed.as_secs_f64();
    for g in groups.iter_mut().filter(|g| g.leader != 0) {
        let then = hosted(before, g.leader, g.group).filter(|r| r.role == "leader");
        let now = hosted(after, g.leader, g.group);
        if let (Some(then), Some(now), true) = (then, now, secs > 0.0) {
            let moved = now.applied_index.saturating_sub(then.applied_index);
            g.entries_per_sec = Some((moved as f64 / secs).round() as u64);
        }
    }
}

fn replica(node: u64, group: u64, answer: Option<&Option<Vec<GroupStatus>>>) -> ReplicaReport {
    let none = |state: &str| ReplicaReport {
        node,
        state: state.to_string(),
        term: None,
        commit_index: None,
        applied_index: None,
    };
    match answer {
        Some(Some(groups)) => match groups.iter().find(|g| g.group == group) {
            Some(g) => ReplicaReport {
                node,
                state: g.role.clone(),
                term: Some(g.term),
                commit_index: Some(g.commit_index),
                applied_index: Some(g.applied_index),
            },
            None => none("missing"),
        },
        _ => none("unreachable"),
    }
}

#[cfg(test)]
mod tests {
    use keel_placement::Command as MapCommand;

    use super::*;

    fn status(group: u64, role: &str, term: u64) -> GroupStatus {
        GroupStatus {
            group,
            role: role.into(),
            term,
            commit_index: 7,
            applied_index: 6,
            ..GroupStatus::default()
        }
    }

    #[test]
    fn replicas_show_their_role_or_why_they_cannot() {
        let answers: Answers = BTreeMap::from([
            (
                1,
                Some(vec![status(1, "leader", 3), status(2, "follower", 2)]),
            ),
            (2, Some(vec![status(1, "follower", 3)])),
            (3, None),
        ]);
        let r = replica(1, 2, answers.get(&1));
        assert_eq!((r.state.as_str(), r.term), ("follower", Some(2)));
        assert_eq!(replica(2, 2, answers.get(&2)).state, "missing");
        assert_eq!(replica(3, 2, answers.get(&3)).state, "unreachable");
        assert_eq!(replica(4, 2, answers.get(&4)).state, "unreachable");
    }

    /// A map of nodes 1 and 2 with groups 1 and 2 on both.
    fn two_groups() -> ClusterMap {
        let mut map = ClusterMap::new();
        for n in 1..=2 {
            map.apply(&MapCommand::RegisterNode {
                node: n,
                address: format!("127.0.0.1:{}", 7000 + n),
            })
            .expect("register");
        }
        for _ in 0..2 {
            map.apply(&MapCommand::CreateGroup {
                members: [1, 2].into(),
                target_replicas: 2,
            })
            .expect("create");
        }
        map
    }

    #[test]
    fn size_and_load_come_from_the_leader_of_both_rounds() {
        let at = |applied: u64, keys: u64| GroupStatus {
            applied_index: applied,
            keys,
            ..status(2, "leader", 4)
        };
        let map = two_groups();
        let before: Answers = BTreeMap::from([(1, Some(vec![at(100, 40)])), (2, None)]);
        let after: Answers = BTreeMap::from([(1, Some(vec![at(400, 55)])), (2, None)]);
        let mut groups = group_reports(&map, &after);
        add_load(&mut groups, &before, &after, Duration::from_millis(1500));
        let g2 = groups.iter().find(|g| g.group == 2).expect("group 2");
        assert_eq!(
            (g2.leader, g2.keys, g2.entries_per_sec),
            (1, Some(55), Some(200))
        );
        // A leader that did not lead in the first round gives no load.
        let before: Answers = BTreeMap::from([(1, None), (2, None)]);
        let mut groups = group_reports(&map, &after);
        add_load(&mut groups, &before, &after, Duration::from_secs(1));
        let g2 = groups.iter().find(|g| g.group == 2).expect("group 2");
        assert_eq!(g2.entries_per_sec, None);
    }

    #[test]
    fn the_leader_is_the_claim_in_the_highest_term() {
        let map = two_groups();
        let answers: Answers = BTreeMap::from([
            (1, Some(vec![status(2, "leader", 3)])),
            (2, Some(vec![status(2, "leader", 5)])),
        ]);
        let g2 = group_reports(&map, &answers)
            .into_iter()
            .find(|g| g.group == 2)
            .expect("group 2");
        assert_eq!(g2.leader, 2, "node 1's claim is a stale term's");
        assert_eq!(g2.replicas.len(), 2);
    }
}

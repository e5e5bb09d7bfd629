//! `keel shard status`: every group of the cluster map with its slots, its
//! members, and how each member's replica sees the group (role, term, leader,
//! commit and applied index), asked of every node the map lists at once.
//! A node that does not answer, or does not host a replica it should, says so.
//! The slot moves in flight (slot, from, to, epoch) close the report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use keel_client::{Client, ClusterMap, GroupStatus};
use serde::Serialize;

use crate::client_cmds::{ConnArgs, report};

#[derive(Args, Debug)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    conn: ConnArgs,
}

/// One group as the status shows it.
#[derive(Debug, Serialize, PartialEq, Eq)]
struct GroupReport {
    group: u64,
    /// Slots the map says it owns.
    slots: usize,
    target_replicas: u8,
    /// The leader the reachable replicas agree on in the highest term (0: none).
    leader: u64,
    replicas: Vec<ReplicaReport>,
}

/// One slot move in flight.
#[derive(Debug, Serialize, PartialEq, Eq)]
struct MoveReport {
    slot: u16,
    from: u64,
    to: u64,
    epoch: u64,
}

/// The map's moves in flight, by slot.
fn moves(map: &ClusterMap) -> Vec<MoveReport> {
    map.moves()
        .iter()
        .map(|(slot, m)| MoveReport {
            slot: slot.get(),
            from: m.from,
            to: m.to,
            epoch: m.epoch,
        })
        .collect()
}

/// One member's replica of a group.
#[derive(Debug, Serialize, PartialEq, Eq)]
struct ReplicaReport {
    node: u64,
    /// `leader`, `follower`, `learner`, …; `unreachable` if the node did not
    /// answer, `missing` if it answered without hosting the group.
    state: String,
    term: Option<u64>,
    commit_index: Option<u64>,
    applied_index: Option<u64>,
}

pub(crate) fn run(a: StatusArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let client = a.conn.client()?;
        let map = match client.cluster_map().await {
            Ok(map) => map,
            Err(e) => return Ok(report(&e)),
        };
        let answers = ask_every_node(&client, &map).await;
        let groups = reports(&map, &answers);
        let moves = moves(&map);
        if a.conn.json {
            let json = serde_json::json!({
                "map_version": map.version(),
                "groups": groups,
                "moves": moves,
            });
            println!("{}", serde_json::to_string_pretty(&json)?);
        } else {
            print!("{}", describe(map.version(), &groups, &moves));
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Each node's hosted groups, or `None` if it did not answer.
type Answers = BTreeMap<u64, Option<Vec<GroupStatus>>>;

async fn ask_every_node(client: &Client, map: &ClusterMap) -> Answers {
    let mut asks = tokio::task::JoinSet::new();
    for (&id, node) in map.nodes() {
        let (client, address) = (client.clone(), node.address.clone());
        asks.spawn(async move { (id, client.status(&address).await.ok().map(|s| s.groups)) });
    }
    let mut answers: Answers = map.nodes().keys().map(|&id| (id, None)).collect();
    while let Some(done) = asks.join_next().await {
        if let Ok((id, answer)) = done {
            answers.insert(id, answer);
        }
    }
    answers
}

fn reports(map: &ClusterMap, answers: &Answers) -> Vec<GroupReport> {
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
                replicas,
            }
        })
        .collect()
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

fn describe(version: u64, groups: &[GroupReport], moves: &[MoveReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "map version {version}");
    for g in groups {
        let leader = match g.leader {
            0 => "none".to_string(),
            n => format!("node {n}"),
        };
        let _ = writeln!(
            out,
            "group {}: {} slots, {} of {} replicas, leader {leader}",
            g.group,
            g.slots,
            g.replicas.len(),
            g.target_replicas
        );
        for r in &g.replicas {
            let _ = match (r.term, r.commit_index, r.applied_index) {
                (Some(term), Some(commit), Some(applied)) => writeln!(
                    out,
                    "  node {:<4} {:<13} term {term} commit {commit} applied {applied}",
                    r.node, r.state
                ),
                _ => writeln!(out, "  node {:<4} {}", r.node, r.state),
            };
        }
    }
    if moves.is_empty() {
        let _ = writeln!(out, "moves in flight: none");
    } else {
        let _ = writeln!(out, "moves in flight:");
        for m in moves {
            let _ = writeln!(
                out,
                "  slot {} from group {} to group {} (epoch {})",
                m.slot, m.from, m.to, m.epoch
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
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
            (1, Some(vec![status(1, "leader", 3), status(2, "follower", 2)])),
            (2, Some(vec![status(1, "follower", 3)])),
            (3, None),
        ]);
        let r = replica(1, 2, answers.get(&1));
        assert_eq!((r.state.as_str(), r.term), ("follower", Some(2)));
        assert_eq!(replica(2, 2, answers.get(&2)).state, "missing");
        assert_eq!(replica(3, 2, answers.get(&3)).state, "unreachable");
        assert_eq!(replica(4, 2, answers.get(&4)).state, "unreachable");
    }

    #[test]
    fn the_text_names_each_group_its_leader_and_replicas() {
        let groups = vec![GroupReport {
            group: 2,
            slots: 0,
            target_replicas: 3,
            leader: 0,
            replicas: vec![ReplicaReport {
                node: 3,
                state: "unreachable".into(),
                term: None,
                commit_index: None,
                applied_index: None,
            }],
        }];
        let text = describe(9, &groups, &[]);
        assert!(text.contains("group 2: 0 slots, 1 of 3 replicas, leader none"), "{text}");
        assert!(text.contains("node 3    unreachable"), "{text}");
        assert!(text.contains("moves in flight: none"), "{text}");
        let moving = [MoveReport {
            slot: 7,
            from: 1,
            to: 2,
            epoch: 12,
        }];
        let text = describe(9, &groups, &moving);
        assert!(
            text.contains("moves in flight:\n  slot 7 from group 1 to group 2 (epoch 12)"),
            "{text}"
        );
    }
}

//! `keel shard status`: every group of the cluster map with its slots, its
//! members, and how each member's replica sees the group (role, term, leader,
//! commit and applied index), asked of every node the map lists at once.
//! A node that does not answer, or does not host a replica it should, says so.
//! Each group's size (keys in its leader's replica) and load (log entries its
//! leader applied per second, from two rounds of asking `--load-sample-ms`
//! apart) come with it. The slot moves in flight (slot, from, to, epoch)
//! close the report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use keel_client::{Client, ClusterMap, GroupStatus};
use serde::Serialize;

use crate::client_cmds::{ConnArgs, report};

#[derive(Args, Debug)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Ask every node twice, this many milliseconds apart, to show each
    /// group's load (entries applied per second); 0 asks once and shows none.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    load_sample_ms: u64,
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
    /// Keys in the leader's replica (`None`: no leader answered).
    keys: Option<u64>,
    /// Log entries the leader applied per second while sampled (`None`: not
    /// sampled, or no leader answered both times).
    entries_per_sec: Option<u64>,
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
        let first = ask_every_node(&client, &map).await;
        let (answers, sampled) = if a.load_sample_ms == 0 {
            (first, None)
        } else {
            let start = Instant::now();
            tokio::time::sleep(Duration::from_millis(a.load_sample_ms)).await;
            let second = ask_every_node(&client, &map).await;
            let elapsed = start.elapsed();
            (second, Some((first, elapsed)))
        };
        let mut groups = reports(&map, &answers);
        if let Some((before, elapsed)) = &sampled {
            add_load(&mut groups, before, &answers, *elapsed);
        }
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
pub(crate) type Answers = BTreeMap<u64, Option<Vec<GroupStatus>>>;

/// Every node of `map` asked for its status at once: each one's hosted
/// groups, or `None` if it did not answer.
pub(crate) async fn ask_every_node(client: &Client, map: &ClusterMap) -> Answers {
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
fn add_load(groups: &mut [GroupReport], before: &Answers, after: &Answers, elapsed: Duration) {
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

fn describe(version: u64, groups: &[GroupReport], moves: &[MoveReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "map version {version}");
    for g in groups {
        let leader = match g.leader {
            0 => "none".to_string(),
            n => format!("node {n}"),
        };
        let size = g.keys.map_or(String::new(), |k| format!(", {k} keys"));
        let load = g
            .entries_per_sec
            .map_or(String::new(), |r| format!(", {r} entries/s"));
        let _ = writeln!(
            out,
            "group {}: {} slots, {} of {} replicas, leader {leader}{size}{load}",
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
    fn size_and_load_come_from_the_leader_of_both_rounds() {
        let at = |applied: u64, keys: u64| GroupStatus {
            applied_index: applied,
            keys,
            ..status(2, "leader", 4)
        };
        let mut map = ClusterMap::new();
        for n in 1..=2 {
            map.apply(&keel_client::MapCommand::RegisterNode {
                node: n,
                address: format!("127.0.0.1:{}", 7000 + n),
            })
            .expect("register");
        }
        for _ in 0..2 {
            map.apply(&keel_client::MapCommand::CreateGroup {
                members: [1, 2].into(),
                target_replicas: 2,
            })
            .expect("create");
        }
        let before: Answers = BTreeMap::from([(1, Some(vec![at(100, 40)])), (2, None)]);
        let after: Answers = BTreeMap::from([(1, Some(vec![at(400, 55)])), (2, None)]);
        let mut groups = reports(&map, &after);
        add_load(&mut groups, &before, &after, Duration::from_millis(1500));
        let g2 = groups.iter().find(|g| g.group == 2).expect("group 2");
        assert_eq!((g2.leader, g2.keys, g2.entries_per_sec), (1, Some(55), Some(200)));
        assert!(describe(5, &groups, &[]).contains("leader node 1, 55 keys, 200 entries/s"));
        // A leader that did not lead in the first round gives no load.
        let before: Answers = BTreeMap::from([(1, None), (2, None)]);
        let mut groups = reports(&map, &after);
        add_load(&mut groups, &before, &after, Duration::from_secs(1));
        let g2 = groups.iter().find(|g| g.group == 2).expect("group 2");
        assert_eq!(g2.entries_per_sec, None);
    }

    #[test]
    fn the_text_names_each_group_its_leader_and_replicas() {
        let groups = vec![GroupReport {
            group: 2,
            slots: 0,
            target_replicas: 3,
            leader: 0,
            keys: None,
            entries_per_sec: None,
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

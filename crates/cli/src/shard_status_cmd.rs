//! `keel shard status`: every group of the cluster map with its slots, its
//! members, and how each member's replica sees the group (role, term, leader,
//! commit and applied index), asked of every node the map lists at once.
//! A node that does not answer, or does not host a replica it should, says so.
//! Each group's size (keys in its leader's replica) and load (log entries its
//! leader applied per second, from two rounds of asking `--load-sample-ms`
//! apart) come with it. The slot moves in flight (slot, from, to, epoch)
//! close the report.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use keel_client::{Client, ClusterMap};
use keel_server::shard_report::{Answers, GroupReport, add_load, group_reports};
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
        let mut groups = group_reports(&map, &answers);
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
    use keel_server::shard_report::ReplicaReport;

    use super::*;

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
        let led = GroupReport {
            leader: 1,
            keys: Some(55),
            entries_per_sec: Some(200),
            ..groups[0].clone()
        };
        let text = describe(9, &[led], &[]);
        assert!(text.contains("leader node 1, 55 keys, 200 entries/s"), "{text}");
    }
}

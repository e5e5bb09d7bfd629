//! `keel shard map`: the cluster map as a node has cached it — nodes, groups
//! with their members and target replica counts, the slots each group owns,
//! and the slot moves in flight. `keel shard group ...` (changes to the map's
//! data groups) lives in `shard_group_cmd.rs`, `keel shard status` in
//! `shard_status_cmd.rs`, and `keel shard move|abort-move|rebalance` in
//! `shard_move_cmd.rs`.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use keel_client::ClusterMap;

use crate::client_cmds::{ConnArgs, report};
use crate::shard_group_cmd::GroupCommand;

#[derive(Subcommand, Debug)]
pub(crate) enum ShardCommand {
    /// Print the cluster map: version, nodes, groups (members, target replicas,
    /// slot ranges) and slot moves in flight.
    Map(MapArgs),
    /// Change the data groups in the cluster map: `create`, `remove`,
    /// `set-replicas`.
    Group {
        #[command(subcommand)]
        command: GroupCommand,
    },
    /// Print every group with its slots, leader and each member's replica
    /// (role, term, commit and applied index), asking every node at once.
    Status(crate::shard_status_cmd::StatusArgs),
    /// Begin moving a slot to another group (`--wait`: until it committed or
    /// was aborted).
    Move(crate::shard_move_cmd::MoveArgs),
    /// Abort the move of a slot in flight; its owner keeps it.
    AbortMove(crate::shard_move_cmd::AbortArgs),
    /// Plan the fewest moves that spread the slots evenly over the full groups
    /// and begin them (`--dry-run`: only print them).
    Rebalance(crate::shard_move_cmd::RebalanceArgs),
}

#[derive(Args, Debug)]
pub(crate) struct MapArgs {
    /// Ask this node (HOST:PORT) for its copy, instead of any endpoint.
    #[arg(long, value_name = "ADDR")]
    node: Option<String>,
    #[command(flatten)]
    conn: ConnArgs,
}

pub(crate) fn run(command: ShardCommand) -> anyhow::Result<ExitCode> {
    let a = match command {
        ShardCommand::Map(a) => a,
        ShardCommand::Group { command } => return crate::shard_group_cmd::run(command),
        ShardCommand::Status(a) => return crate::shard_status_cmd::run(a),
        ShardCommand::Move(a) => return crate::shard_move_cmd::run_move(a),
        ShardCommand::AbortMove(a) => return crate::shard_move_cmd::run_abort(a),
        ShardCommand::Rebalance(a) => return crate::shard_move_cmd::run_rebalance(a),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let client = a.conn.client()?;
        let map = match &a.node {
            Some(node) => client.cluster_map_at(node).await,
            None => client.cluster_map().await,
        };
        match map {
            Ok(map) => {
                if a.conn.json {
                    let json = serde_json::json!({"version": map.version(), "map": map});
                    println!("{}", serde_json::to_string_pretty(&json)?);
                } else {
                    print!("{}", describe(&map));
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => Ok(report(&e)),
        }
    })
}

/// The map as text, one section each for nodes, groups and moves.
fn describe(map: &ClusterMap) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "map version {}", map.version());
    let _ = writeln!(out, "nodes:");
    for (id, node) in map.nodes() {
        let state = match node.state {
            keel_client::NodeState::Active => "active",
            keel_client::NodeState::Draining => "draining",
        };
        let _ = writeln!(out, "  {id:<4} {:<24} {state}", node.address);
    }
    let _ = writeln!(out, "groups:");
    for (id, group) in map.groups() {
        let members: Vec<String> = group.members.iter().map(u64::to_string).collect();
        let slots: Vec<u16> = map.slots_of(*id).map(|s| s.get()).collect();
        let _ = writeln!(
            out,
            "  {id:<4} members {:<12} target {}  slots {} ({})",
            members.join(","),
            group.target_replicas,
            ranges(&slots),
            slots.len()
        );
    }
    if map.moves().is_empty() {
        let _ = writeln!(out, "moves: none");
    } else {
        let _ = writeln!(out, "moves:");
        for (slot, m) in map.moves() {
            let _ = writeln!(
                out,
                "  slot {} from group {} to group {} (epoch {})",
                slot.get(),
                m.from,
                m.to,
                m.epoch
            );
        }
    }
    out
}

/// Ascending slots as runs: `0-2047,3000` ("none" if empty).
fn ranges(slots: &[u16]) -> String {
    let mut runs: Vec<(u16, u16)> = Vec::new();
    for &s in slots {
        match runs.last_mut() {
            Some((_, last)) if u32::from(*last) + 1 == u32::from(s) => *last = s,
            _ => runs.push((s, s)),
        }
    }
    if runs.is_empty() {
        return "none".into();
    }
    runs.iter()
        .map(|&(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_print_as_runs() {
        assert_eq!(ranges(&[]), "none");
        assert_eq!(ranges(&[0, 1, 2, 3]), "0-3");
        assert_eq!(ranges(&[0, 1, 5, 7, 8]), "0-1,5,7-8");
    }
}

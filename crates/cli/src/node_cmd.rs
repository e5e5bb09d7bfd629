//! `keel node remove ID`: takes a node out of a sharded cluster without losing
//! a replica. The plan is the placement model's (`plan::node_removal`): drain
//! the node, then for each of its groups add a replacement and remove it, then
//! forget the node. The commands go to the placement group one at a time, and
//! after each member change this waits until the group's Raft configuration
//! has followed the map (the replacement a voter, the node gone) before the
//! next, so a group never loses a replica it still needs. `--dry-run` prints
//! the plan only.
//!
//! A node of group 1 is refused: group 1's members are its own Raft
//! configuration's, changed with `keel member remove`/`add`, not the map's.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use keel_client::{Client, ClusterMap, GroupId, GroupStatus, MapCommand};
use keel_placement::FIRST_DATA_GROUP;
use keel_placement::plan::node_removal;

use crate::client_cmds::{ConnArgs, report};
use crate::shard_status_cmd::ask_every_node;

#[derive(Subcommand, Debug)]
pub(crate) enum NodeCommand {
    /// Move a node's replicas to other nodes, then forget it (placement's
    /// removal plan, one step at a time; `--dry-run` prints the plan).
    Remove(RemoveArgs),
}

#[derive(Args, Debug)]
pub(crate) struct RemoveArgs {
    /// The node to remove.
    id: u64,
    /// Print the plan without carrying it out.
    #[arg(long)]
    dry_run: bool,
    /// How long one step may take to show in its group's configuration (a
    /// new replica catching up can take a while).
    #[arg(long, default_value_t = 120_000)]
    step_timeout_ms: u64,
    #[command(flatten)]
    conn: ConnArgs,
}

/// How often a step's progress is checked.
const POLL: Duration = Duration::from_millis(200);

pub(crate) fn run(command: NodeCommand) -> anyhow::Result<ExitCode> {
    let NodeCommand::Remove(a) = command;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(remove(a))
}

async fn remove(a: RemoveArgs) -> anyhow::Result<ExitCode> {
    let client = a.conn.client()?;
    let map = match client.cluster_map().await {
        Ok(map) => map,
        Err(e) => return Ok(report(&e)),
    };
    let steps = match steps_for(&map, a.id) {
        Ok(steps) => steps,
        Err(why) => {
            eprintln!("keel: {why}");
            return Ok(ExitCode::from(1));
        }
    };
    println!("removing node {} in {} step(s):", a.id, steps.commands.len());
    for command in &steps.commands {
        println!("  {}", describe(command));
    }
    if !steps.not_replaced.is_empty() {
        println!(
            "no other node can take its replica of group(s) {:?}: they shrink below their target",
            steps.not_replaced
        );
    }
    if a.dry_run {
        println!("dry run: nothing was changed");
        return Ok(ExitCode::SUCCESS);
    }
    let step_timeout = Duration::from_millis(a.step_timeout_ms);
    for command in steps.commands {
        if let Err(e) = client.change_map(&command).await {
            eprintln!("keel: {} failed: {e}", describe(&command));
            eprintln!("keel: run `keel node remove {}` again to go on", a.id);
            return Ok(report(&e));
        }
        let done = match &command {
            MapCommand::AddGroupMember { group, node } => {
                wait_for(&client, *group, step_timeout, |s| s.voters.contains(node)).await
            }
            MapCommand::RemoveGroupMember { group, node } => {
                wait_for(&client, *group, step_timeout, |s| {
                    !s.voters.contains(node) && !s.learners.contains(node)
                })
                .await
            }
            _ => Ok(()),
        };
        if let Err(why) = done {
            eprintln!("keel: {}: {why}", describe(&command));
            eprintln!("keel: run `keel node remove {}` again to go on", a.id);
            return Ok(ExitCode::from(1));
        }
        println!("done: {}", describe(&command));
    }
    println!("node {} removed from the cluster map", a.id);
    Ok(ExitCode::SUCCESS)
}

/// The removal plan of `node` in `map`, or why there is none.
fn steps_for(map: &ClusterMap, node: u64) -> Result<keel_placement::plan::RemovalPlan, String> {
    if !map.nodes().contains_key(&node) {
        return Err(format!(
            "node {node} is not in the cluster map (version {}): nothing to remove",
            map.version()
        ));
    }
    if map
        .groups()
        .get(&FIRST_DATA_GROUP)
        .is_some_and(|g| g.members.contains(&node))
    {
        return Err(format!(
            "node {node} is a member of group 1, whose members are its Raft configuration's: \
             use `keel member remove {node}` (and `keel member add` a replacement)"
        ));
    }
    node_removal(map, node).map_err(|e| format!("cannot remove node {node}: {e}"))
}

/// Waits until the leader of `group` (the replica claiming leadership in the
/// highest term, among every node of the current map) reports a
/// configuration `done` accepts.
async fn wait_for(
    client: &Client,
    group: GroupId,
    timeout: Duration,
    done: impl Fn(&GroupStatus) -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut last = "no leader answered".to_string();
    while Instant::now() < deadline {
        if let Some(leader) = leader_status(client, group).await {
            if done(&leader) {
                return Ok(());
            }
            last = format!(
                "its leader (node {}) reports voters {:?}, learners {:?}",
                leader.leader_id, leader.voters, leader.learners
            );
        }
        tokio::time::sleep(POLL).await;
    }
    Err(format!(
        "group {group}'s configuration did not follow the map within {timeout:?}: {last}"
    ))
}

/// The status of `group`'s leader, asking every node the map lists.
async fn leader_status(client: &Client, group: GroupId) -> Option<GroupStatus> {
    let map = client.cluster_map().await.ok()?;
    ask_every_node(client, &map)
        .await
        .into_values()
        .flatten()
        .flatten()
        .filter(|g| g.group == group && g.role == "leader")
        .max_by_key(|g| g.term)
}

/// One step, as the command prints it.
fn describe(command: &MapCommand) -> String {
    match command {
        MapCommand::DrainNode { node } => format!("drain node {node} (no new replicas)"),
        MapCommand::AddGroupMember { group, node } => {
            format!("add node {node} to group {group}")
        }
        MapCommand::RemoveGroupMember { group, node } => {
            format!("remove node {node} from group {group}")
        }
        MapCommand::RemoveNode { node } => format!("forget node {node}"),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use keel_placement::Command;

    use super::*;

    fn map() -> ClusterMap {
        let mut map = ClusterMap::new();
        for node in 1..=5 {
            map.apply(&Command::RegisterNode {
                node,
                address: format!("127.0.0.1:{}", 7000 + node),
            })
            .expect("register");
        }
        for members in [[1, 2, 3], [3, 4, 5]] {
            map.apply(&Command::CreateGroup {
                members: members.into(),
                target_replicas: 3,
            })
            .expect("create");
        }
        map
    }

    #[test]
    fn a_group_1_member_or_an_unknown_node_is_refused_with_the_way_out() {
        let map = map();
        let why = steps_for(&map, 2).expect_err("group 1");
        assert!(why.contains("keel member remove 2"), "{why}");
        let why = steps_for(&map, 9).expect_err("unknown");
        assert!(why.contains("not in the cluster map"), "{why}");
    }

    #[test]
    fn a_data_group_member_is_replaced_then_forgotten() {
        let steps = steps_for(&map(), 5).expect("a plan");
        let text: Vec<String> = steps.commands.iter().map(describe).collect();
        assert_eq!(
            text,
            [
                "drain node 5 (no new replicas)",
                "add node 1 to group 2",
                "remove node 5 from group 2",
                "forget node 5",
            ]
        );
    }
}

//! `keel shard group create|remove|set-replicas|add-member|remove-member`: an
//! operator's changes to the data groups in the cluster map, sent as map
//! commands (`Cluster.ChangeMap`) through any node to the placement group's
//! leader.
//!
//! The nodes follow the map: a member gets a replica, the group's leader
//! brings its Raft configuration in line with the members, and a replica the
//! map and its group dropped is deleted (docs/sharding.md, *Replicas from the
//! map*).

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use keel_client::{ChangeMapOutcome, MapCommand};

use crate::client_cmds::{ConnArgs, report};

#[derive(Subcommand, Debug)]
pub(crate) enum GroupCommand {
    /// Create a data group on registered, active nodes. It gets the next free
    /// group id and owns no slots (unless it is the first group ever). Each
    /// member starts a replica of it.
    Create(CreateArgs),
    /// Remove a data group that owns no slots and is no slot move's target;
    /// every replica of it is deleted.
    Remove(RemoveArgs),
    /// Change how many replicas a data group should have (1..=7).
    SetReplicas(SetReplicasArgs),
    /// Make a registered, active node a member of a data group: it gets a
    /// replica, which the group's leader adds and promotes once caught up.
    AddMember(MemberArgs),
    /// Take a node out of a data group: the group's leader removes it from
    /// the group's configuration, and the node then deletes its replica.
    RemoveMember(MemberArgs),
}

#[derive(Args, Debug)]
pub(crate) struct MemberArgs {
    /// The group's id.
    group: u64,
    /// The node's id.
    node: u64,
    #[command(flatten)]
    conn: ConnArgs,
}

#[derive(Args, Debug)]
pub(crate) struct CreateArgs {
    /// The nodes holding its replicas, comma-separated ids (e.g. 4,5,6).
    #[arg(long, value_delimiter = ',', required = true, value_name = "IDS")]
    members: Vec<u64>,
    /// Target replica count (default: the number of members).
    #[arg(long, value_name = "N")]
    replicas: Option<u8>,
    #[command(flatten)]
    conn: ConnArgs,
}

#[derive(Args, Debug)]
pub(crate) struct RemoveArgs {
    /// The group's id.
    group: u64,
    #[command(flatten)]
    conn: ConnArgs,
}

#[derive(Args, Debug)]
pub(crate) struct SetReplicasArgs {
    /// The group's id.
    group: u64,
    /// The new target replica count.
    replicas: u8,
    #[command(flatten)]
    conn: ConnArgs,
}

pub(crate) fn run(command: GroupCommand) -> anyhow::Result<ExitCode> {
    let (map_command, conn) = match command {
        GroupCommand::Create(a) => (create_command(&a.members, a.replicas)?, a.conn),
        GroupCommand::Remove(a) => (MapCommand::RemoveGroup { group: a.group }, a.conn),
        GroupCommand::SetReplicas(a) => (
            MapCommand::SetTargetReplicas {
                group: a.group,
                target_replicas: a.replicas,
            },
            a.conn,
        ),
        GroupCommand::AddMember(a) => (
            MapCommand::AddGroupMember {
                group: a.group,
                node: a.node,
            },
            a.conn,
        ),
        GroupCommand::RemoveMember(a) => (
            MapCommand::RemoveGroupMember {
                group: a.group,
                node: a.node,
            },
            a.conn,
        ),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let client = conn.client()?;
        match client.change_map(&map_command).await {
            Ok(outcome) => {
                if conn.json {
                    let json = serde_json::json!({
                        "changed": outcome.changed,
                        "version": outcome.map.version(),
                        "created_group": outcome.created_group,
                        "map": outcome.map,
                    });
                    println!("{}", serde_json::to_string_pretty(&json)?);
                } else {
                    println!("{}", describe(&map_command, &outcome));
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => Ok(report(&e)),
        }
    })
}

/// The `CreateGroup` command for `--members` and `--replicas`; a node listed
/// twice is a mistake worth saying, not something to drop silently.
fn create_command(members: &[u64], replicas: Option<u8>) -> anyhow::Result<MapCommand> {
    let mut set = BTreeSet::new();
    for &m in members {
        if !set.insert(m) {
            bail!("node {m} is listed twice in --members");
        }
    }
    let target_replicas = match replicas {
        Some(n) => n,
        None => u8::try_from(set.len())
            .with_context(|| format!("{} members is more than a group may have", set.len()))?,
    };
    Ok(MapCommand::CreateGroup {
        members: set,
        target_replicas,
    })
}

/// One line saying what the command did.
fn describe(command: &MapCommand, outcome: &ChangeMapOutcome) -> String {
    let version = outcome.map.version();
    if !outcome.changed {
        return format!("nothing changed (map version {version})");
    }
    match command {
        MapCommand::CreateGroup {
            members,
            target_replicas,
        } => {
            let group = outcome
                .created_group
                .map_or_else(|| "?".to_string(), |g| g.to_string());
            let members: Vec<String> = members.iter().map(u64::to_string).collect();
            format!(
                "created group {group} with members {} and target {target_replicas} replicas \
                 (map version {version})",
                members.join(", ")
            )
        }
        MapCommand::RemoveGroup { group } => {
            format!("removed group {group} (map version {version})")
        }
        MapCommand::SetTargetReplicas {
            group,
            target_replicas,
        } => format!("group {group} now targets {target_replicas} replicas (map version {version})"),
        MapCommand::AddGroupMember { group, node } => {
            format!("node {node} is now a member of group {group} (map version {version})")
        }
        MapCommand::RemoveGroupMember { group, node } => {
            format!("node {node} is no longer a member of group {group} (map version {version})")
        }
        other => format!("applied {other:?} (map version {version})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_default_to_the_member_count() {
        let c = create_command(&[4, 5, 6], None).expect("valid");
        assert_eq!(
            c,
            MapCommand::CreateGroup {
                members: [4, 5, 6].into(),
                target_replicas: 3
            }
        );
        let c = create_command(&[4], Some(3)).expect("valid");
        assert_eq!(
            c,
            MapCommand::CreateGroup {
                members: [4].into(),
                target_replicas: 3
            }
        );
    }

    #[test]
    fn member_changes_say_what_changed_or_that_nothing_did() {
        let outcome = |changed| ChangeMapOutcome {
            changed,
            map: keel_client::ClusterMap::new(),
            created_group: None,
        };
        let add = MapCommand::AddGroupMember { group: 2, node: 1 };
        assert_eq!(
            describe(&add, &outcome(true)),
            "node 1 is now a member of group 2 (map version 0)"
        );
        let remove = MapCommand::RemoveGroupMember { group: 2, node: 3 };
        assert_eq!(
            describe(&remove, &outcome(true)),
            "node 3 is no longer a member of group 2 (map version 0)"
        );
        assert_eq!(
            describe(&remove, &outcome(false)),
            "nothing changed (map version 0)"
        );
    }

    #[test]
    fn a_node_listed_twice_is_refused() {
        let e = create_command(&[2, 3, 2], None).expect_err("duplicate");
        assert!(e.to_string().contains("node 2"), "{e}");
    }
}

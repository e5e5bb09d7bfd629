//! `keel member list|add|remove|promote`: change who is in the cluster while it
//! serves.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use keel_client::Member;

use crate::client_cmds::{ConnArgs, report};

#[derive(Subcommand, Debug)]
pub(crate) enum MemberCommand {
    /// List the members: id, address, voter or learner, and (from the leader)
    /// how much of the log each holds.
    List(ListArgs),
    /// Add a member as a learner; it is promoted to voter once caught up unless
    /// --learner is given. Start the new node with `keel serve --join` (which also
    /// adds it, so this step is optional).
    Add(AddArgs),
    /// Remove a member. Removing the leader hands leadership over first.
    Remove(IdArgs),
    /// Make a caught-up learner a voter.
    Promote(IdArgs),
}

#[derive(Args, Debug)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    conn: ConnArgs,
}

#[derive(Args, Debug)]
pub(crate) struct AddArgs {
    /// The new member's id.
    id: u64,
    /// The new member's advertised gRPC address (HOST:PORT).
    address: String,
    /// Keep it a learner (never promote it automatically).
    #[arg(long)]
    learner: bool,
    #[command(flatten)]
    conn: ConnArgs,
}

#[derive(Args, Debug)]
pub(crate) struct IdArgs {
    /// The member's id.
    id: u64,
    #[command(flatten)]
    conn: ConnArgs,
}

pub(crate) fn run(command: MemberCommand) -> anyhow::Result<ExitCode> {
    let id = match &command {
        MemberCommand::Add(a) => Some(a.id),
        MemberCommand::Remove(a) | MemberCommand::Promote(a) => Some(a.id),
        MemberCommand::List(_) => None,
    };
    if id == Some(0) {
        anyhow::bail!("member ids are positive integers");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        match command {
            MemberCommand::List(a) => {
                let client = a.conn.client()?;
                match client.members().await {
                    Ok(r) => {
                        print_members(&r.members, r.leader_id, a.conn.json);
                        if r.change_in_progress && !a.conn.json {
                            println!(
                                "(a membership change at log index {} is being committed)",
                                r.config_index
                            );
                        }
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(e) => Ok(report(&e)),
                }
            }
            MemberCommand::Add(a) => {
                let client = a.conn.client()?;
                match client.add_member(a.id, &a.address, a.learner).await {
                    Ok(r) => {
                        if !a.conn.json {
                            println!(
                                "added node {} at {} as a learner{} (log index {})",
                                a.id,
                                a.address,
                                if a.learner {
                                    ""
                                } else {
                                    "; it becomes a voter once caught up"
                                },
                                r.index
                            );
                        }
                        print_members(&r.members, 0, a.conn.json);
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(e) => Ok(report(&e)),
                }
            }
            MemberCommand::Remove(a) => {
                let client = a.conn.client()?;
                match client.remove_member(a.id).await {
                    Ok(r) => {
                        if !a.conn.json {
                            println!("removed node {} (log index {})", a.id, r.index);
                        }
                        print_members(&r.members, 0, a.conn.json);
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(e) => Ok(report(&e)),
                }
            }
            MemberCommand::Promote(a) => {
                let client = a.conn.client()?;
                match client.promote_member(a.id).await {
                    Ok(r) => {
                        if !a.conn.json {
                            println!("node {} is a voter now (log index {})", a.id, r.index);
                        }
                        print_members(&r.members, 0, a.conn.json);
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(e) => Ok(report(&e)),
                }
            }
        }
    })
}

fn print_members(members: &[Member], leader: u64, json: bool) {
    if json {
        let list: Vec<_> = members
            .iter()
            .map(|m| {
                serde_json::json!({
                    "id": m.id,
                    "address": m.address,
                    "voter": m.voter,
                    "promote_when_caught_up": m.promote_when_caught_up,
                    "match_index": m.match_index,
                    "active": m.active,
                    "leader": m.id == leader,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({ "members": list, "leader_id": leader })
        );
        return;
    }
    println!(
        "{:>4}  {:<24} {:<8} {:>12}  ACTIVE",
        "ID", "ADDRESS", "ROLE", "MATCH"
    );
    for m in members {
        let role = match (m.voter, m.id == leader) {
            (true, true) => "leader",
            (true, false) => "voter",
            (false, _) if m.promote_when_caught_up => "learner+",
            (false, _) => "learner",
        };
        println!(
            "{:>4}  {:<24} {:<8} {:>12}  {}",
            m.id,
            m.address,
            role,
            m.match_index,
            if m.active { "yes" } else { "-" }
        );
    }
}

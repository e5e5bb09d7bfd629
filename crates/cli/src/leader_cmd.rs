//! `keel leader transfer`: hand leadership to another voter, for planned
//! maintenance without an election-timeout gap.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::client_cmds::{ConnArgs, report};

#[derive(Subcommand, Debug)]
pub(crate) enum LeaderCommand {
    /// Hand leadership to another voter and wait until it leads.
    Transfer(TransferArgs),
}

#[derive(Args, Debug)]
pub(crate) struct TransferArgs {
    /// The voter to hand leadership to; without it, the most caught-up one.
    #[arg(long)]
    to: Option<u64>,
    /// The group whose leadership moves (a data group's id from `keel shard
    /// status`); without it, group 1.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    group: Option<u64>,
    #[command(flatten)]
    conn: ConnArgs,
}

pub(crate) fn run(command: LeaderCommand) -> anyhow::Result<ExitCode> {
    let LeaderCommand::Transfer(args) = command;
    if args.to == Some(0) {
        anyhow::bail!("--to takes a member id (1 or more)");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let client = args.conn.client()?;
        let group = args.group.unwrap_or(1);
        match client
            .transfer_group_leader(group, args.to.unwrap_or(0))
            .await
        {
            Ok(leader) if args.group.is_none() => {
                println!("node {leader} leads now");
                Ok(ExitCode::SUCCESS)
            }
            Ok(leader) => {
                println!("node {leader} leads group {group} now");
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => Ok(report(&e)),
        }
    })
}

// The whole `keel` command line, shared by the `keel` binary (main.rs) and
// `keel-test-bugs` (test_bugs_main.rs), which differ only in their features.

mod certs_cmd;
mod client_cmds;
mod config_cmd;
mod config_file;
mod demo;
mod leader_cmd;
mod logging;
mod member_cmd;
mod node_cmd;
mod serve;
mod shard_cmd;
mod shard_group_cmd;
mod shard_move_cmd;
mod shard_status_cmd;
mod snapshot_cmd;
mod status_cmd;
mod txn_cmd;
mod txn_spec;
mod wal_cmd;

use std::process::ExitCode;

/// mimalloc instead of glibc malloc: the write path allocates many small,
/// short-lived buffers across threads, where glibc's arenas showed up at about a
/// fifth of a busy node's CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

/// The endpoints the demo cluster listens on, used when none are given.
pub(crate) const DEFAULT_ENDPOINTS: &str = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003";

#[derive(Parser, Debug)]
#[command(
    name = "keel",
    version,
    about = "A Raft-replicated, strongly consistent key-value store"
)]
struct Cli {
    /// What to do; without a command, `keel` runs the demo (a local 3-node cluster
    /// and a shell).
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a node.
    Serve(serve::ServeArgs),
    /// Start a local 3-node cluster and open an interactive shell.
    Demo(demo::DemoArgs),
    /// Write a key.
    Put(client_cmds::PutArgs),
    /// Read a key.
    Get(client_cmds::GetArgs),
    /// Delete a key.
    Del(client_cmds::DelArgs),
    /// List keys with a prefix.
    Scan(client_cmds::ScanArgs),
    /// Compare-and-set: write a key only if its version matches.
    Cas(client_cmds::CasArgs),
    /// Transaction: compare keys, then run the --then or the --else operations,
    /// atomically.
    Txn(txn_cmd::TxnArgs),
    /// Show every member's role, term, indexes and lag.
    Status(status_cmd::StatusArgs),
    /// Load-test a cluster (and optionally etcd, side by side).
    Bench(keel_bench::BenchArgs),
    /// Membership: `keel member list|add|remove|promote`.
    Member {
        #[command(subcommand)]
        command: member_cmd::MemberCommand,
    },
    /// Backups: `keel snapshot save FILE`, `keel snapshot restore FILE ...`.
    Snapshot {
        #[command(subcommand)]
        command: snapshot_cmd::SnapshotCommand,
    },
    /// Sharding: `keel shard map|status` show the cluster map and its groups;
    /// `keel shard group create|remove|set-replicas|add-member|remove-member`
    /// changes its data groups; `keel shard move|abort-move|rebalance` moves
    /// slots.
    Shard {
        #[command(subcommand)]
        command: shard_cmd::ShardCommand,
    },
    /// Nodes of a sharded cluster: `keel node remove ID` moves its replicas to
    /// other nodes, then forgets it.
    Node {
        #[command(subcommand)]
        command: node_cmd::NodeCommand,
    },
    /// Leadership: `keel leader transfer --to ID`.
    Leader {
        #[command(subcommand)]
        command: leader_cmd::LeaderCommand,
    },
    /// Configuration files: `keel config default|check`.
    Config {
        #[command(subcommand)]
        command: config_cmd::ConfigCommand,
    },
    /// Create a development CA and node and client certificates for TLS.
    Certs(certs_cmd::CertsArgs),
    /// Inspect a node's write-ahead log.
    Wal {
        #[command(subcommand)]
        command: wal_cmd::WalCommand,
    },
}

/// The matches of subcommand `name` (clap parsed it, so they are there).
fn subcommand<'a>(matches: &'a ArgMatches, name: &str) -> &'a ArgMatches {
    matches.subcommand_matches(name).unwrap_or(matches)
}

fn main() -> ExitCode {
    // The matches are kept: `serve` and `config check` need to know which values
    // were given on the command line (they override the environment and the file).
    let matches = Cli::command().try_get_matches().unwrap_or_else(|e| {
        let argv: Vec<_> = std::env::args_os().collect();
        match config_file::env_value_error(&Cli::command(), &e, &argv, &serve::process_env) {
            Some(msg) => {
                eprintln!("keel: {msg}");
                std::process::exit(2)
            }
            None => e.exit(),
        }
    });
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let command = cli
        .command
        .unwrap_or(Command::Demo(demo::DemoArgs::default()));
    let result = match command {
        Command::Serve(_) => serve::run(subcommand(&matches, "serve")),
        Command::Config { command } => config_cmd::run(&command, subcommand(&matches, "config")),
        Command::Demo(args) => demo::run(args),
        Command::Wal { command } => wal_cmd::run(command),
        Command::Certs(a) => certs_cmd::run(a),
        Command::Leader { command } => leader_cmd::run(command),
        Command::Member { command } => member_cmd::run(command),
        Command::Snapshot { command } => snapshot_cmd::run(command),
        Command::Shard { command } => shard_cmd::run(command),
        Command::Node { command } => node_cmd::run(command),
        Command::Put(a) => client_cmds::run(client_cmds::Op::Put(a)),
        Command::Get(a) => client_cmds::run(client_cmds::Op::Get(a)),
        Command::Del(a) => client_cmds::run(client_cmds::Op::Del(a)),
        Command::Scan(a) => client_cmds::run(client_cmds::Op::Scan(a)),
        Command::Cas(a) => client_cmds::run(client_cmds::Op::Cas(a)),
        Command::Txn(a) => txn_cmd::run(a),
        Command::Status(a) => status_cmd::run(a),
        Command::Bench(a) => keel_bench::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("keel: {e:#}");
            ExitCode::from(1)
        }
    }
}

//! `keel wal dump` and `keel wal check`: read a node's WAL without changing it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use keel_raft::EntryKind;
use keel_storage::command::Envelope;
use keel_storage::vfs::StdVfs;
use keel_storage::wal::{InspectedItem, LogStartKind, Verdict, WalRecord, inspect, inspect_all};

#[derive(Subcommand, Debug)]
pub(crate) enum WalCommand {
    /// Print the log, one entry a line: `NO-OP 1`, `SET name1 Sam 1`, `DEL name1 2`
    /// (operation, arguments, term).
    Dump {
        /// The node's data directory (or its `wal` subdirectory).
        #[arg(long)]
        data_dir: PathBuf,
        /// Prefix each line with the group and index, and show hard-state records.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Verify every checksum; exit 1 on corruption, naming file and offset.
    Check {
        /// The node's data directory (or its `wal` subdirectory).
        #[arg(long)]
        data_dir: PathBuf,
    },
}

fn wal_dir(data_dir: PathBuf) -> PathBuf {
    let sub = data_dir.join("wal");
    if sub.is_dir() { sub } else { data_dir }
}

/// The human-readable form of an entry, without the term.
pub(crate) fn entry_text(kind: EntryKind, data: &[u8]) -> String {
    match kind {
        EntryKind::NoOp => "NO-OP".to_string(),
        EntryKind::ConfChange => "CONFIG-CHANGE".to_string(),
        EntryKind::Normal => match Envelope::decode(data) {
            Ok(c) => c.to_string(),
            Err(e) => format!("UNDECODABLE ({e})"),
        },
    }
}

pub(crate) fn run(cmd: WalCommand) -> anyhow::Result<ExitCode> {
    let vfs = StdVfs::new();
    match cmd {
        WalCommand::Dump { data_dir, verbose } => {
            let dir = wal_dir(data_dir);
            let verdict = inspect_all(&vfs, &dir, |item| match item {
                InspectedItem::LogStart { group, start, .. } => {
                    let why = match start.kind {
                        LogStartKind::Compacted => "compacted after a snapshot",
                        LogStartKind::Installed => "a leader's snapshot was installed",
                    };
                    println!(
                        "# g{group} log starts after index {} (term {}): {why}",
                        start.index, start.term
                    );
                }
                InspectedItem::GroupRemoved { group, last, .. } => {
                    println!(
                        "# g{group} removed from this node at term {} (vote {}): its records \
                         above are void",
                        last.term, last.vote
                    );
                }
                InspectedItem::GroupCreated { group, .. } => {
                    println!(
                        "# g{group} created again on this node: a new life from the term and \
                         vote above"
                    );
                }
                InspectedItem::Record(r) => match &r.record {
                    WalRecord::Entry { group, entry } => {
                        let text = entry_text(entry.kind, &entry.data);
                        if verbose {
                            println!("g{group} #{} {text} {}", entry.index, entry.term);
                        } else {
                            println!("{text} {}", entry.term);
                        }
                    }
                    WalRecord::HardState { group, hard_state } if verbose => {
                        println!(
                            "# g{group} hard state: term {} vote {} commit {}",
                            hard_state.term, hard_state.vote, hard_state.commit
                        );
                    }
                    WalRecord::HardState { .. } => {}
                },
            })?;
            Ok(report(&verdict))
        }
        WalCommand::Check { data_dir } => {
            let dir = wal_dir(data_dir);
            let mut records = 0u64;
            let verdict = inspect(&vfs, &dir, |_| records += 1)?;
            if verdict == Verdict::Ok {
                println!("ok: {records} records in {}", dir.display());
            }
            Ok(report(&verdict))
        }
    }
}

fn report(v: &Verdict) -> ExitCode {
    match v {
        Verdict::Ok => ExitCode::SUCCESS,
        Verdict::TornTail(t) => {
            eprintln!(
                "warning: torn write at the end of the log ({} at offset {}, {} bytes); \
                 the node will truncate it on start",
                t.file.display(),
                t.offset,
                t.discarded_bytes
            );
            ExitCode::SUCCESS
        }
        Verdict::Corrupt {
            file,
            offset,
            reason,
        } => {
            eprintln!(
                "error: the log is corrupt at {} offset {offset}: {reason}; the node will refuse to start",
                file.display()
            );
            ExitCode::from(1)
        }
    }
}

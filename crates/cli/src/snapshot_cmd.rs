//! `keel snapshot save FILE` (a consistent backup of a running cluster) and
//! `keel snapshot restore FILE --data-dir DIR ...` (seed a member of a new cluster
//! from one).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use keel_server::backup::{RestoreOptions, restore};
use keel_server::parse_initial_cluster;
use keel_storage::snapshot::validate;
use keel_storage::vfs::StdVfs;

use crate::client_cmds::{ConnArgs, report};

#[derive(Subcommand, Debug)]
pub(crate) enum SnapshotCommand {
    /// Save a consistent point-in-time copy of the whole key space to FILE (taken
    /// by the leader after confirming it leads: it holds every write acknowledged
    /// before the command started).
    Save(SaveArgs),
    /// Seed an empty data directory from a saved FILE as one member of a new
    /// cluster; restore every member of the new cluster from the same file, then
    /// start them with `keel serve` (the same --id, --data-dir, --initial-cluster).
    Restore(RestoreArgs),
}

#[derive(Args, Debug)]
pub(crate) struct SaveArgs {
    /// Where to write the backup (must not exist).
    file: PathBuf,
    #[command(flatten)]
    conn: ConnArgs,
}

#[derive(Args, Debug)]
pub(crate) struct RestoreArgs {
    /// The backup file.
    file: PathBuf,
    /// The new member's data directory (absent or empty).
    #[arg(long)]
    data_dir: PathBuf,
    /// The new member's id.
    #[arg(long)]
    id: u64,
    /// The new cluster's members: `1=HOST:PORT,2=HOST:PORT,3=HOST:PORT`.
    #[arg(long)]
    initial_cluster: String,
    /// The new cluster's token.
    #[arg(long, default_value = "keel")]
    cluster_token: String,
}

pub(crate) fn run(command: SnapshotCommand) -> anyhow::Result<ExitCode> {
    match command {
        SnapshotCommand::Save(a) => save(a),
        SnapshotCommand::Restore(a) => {
            let opts = RestoreOptions {
                file: a.file,
                data_dir: a.data_dir,
                id: a.id,
                initial_cluster: parse_initial_cluster(&a.initial_cluster)?,
                cluster_token: a.cluster_token,
            };
            let r = restore(&opts)?;
            println!(
                "restored revision {} (term {}, {} keys) into {} as node {} of the new \
                 cluster {:016x}",
                r.index,
                r.term,
                r.keys,
                opts.data_dir.display(),
                opts.id,
                r.cluster_id
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn save(a: SaveArgs) -> anyhow::Result<ExitCode> {
    if a.file.exists() {
        bail!("{} exists; choose a new file name", a.file.display());
    }
    let tmp = partial_path(&a.file);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let received = rt.block_on(async {
        let client = a.conn.client()?;
        let mut stream = match client.snapshot_save().await {
            Ok(s) => s,
            Err(e) => return Ok(Err(report(&e))),
        };
        let mut out =
            File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        let mut meta = None;
        let mut written = 0u64;
        loop {
            let chunk = match stream.next().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    drop(out);
                    let _ = std::fs::remove_file(&tmp);
                    return Ok(Err(report(&e)));
                }
            };
            if chunk.offset != written {
                bail!(
                    "the server sent bytes at offset {} after {written} bytes",
                    chunk.offset
                );
            }
            out.write_all(&chunk.data)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            written += chunk.data.len() as u64;
            meta = Some((chunk.index, chunk.term, chunk.keys, chunk.total));
        }
        out.sync_all()
            .with_context(|| format!("cannot fsync {}", tmp.display()))?;
        let Some((index, term, keys, total)) = meta else {
            bail!("the server sent an empty backup");
        };
        if written != total {
            bail!("the backup ended after {written} of {total} bytes");
        }
        Ok(Ok((index, term, keys, total)))
    });
    let (index, term, keys, total) = match received {
        Ok(Ok(m)) => m,
        Ok(Err(code)) => return Ok(code),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    // Verify every checksum before the file gets its name.
    if let Err(e) = validate(&StdVfs::new(), &tmp) {
        let _ = std::fs::remove_file(&tmp);
        bail!("the received backup does not verify: {e}");
    }
    std::fs::rename(&tmp, &a.file)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), a.file.display()))?;
    println!(
        "saved revision {index} (term {term}, {keys} keys, {total} bytes) to {}",
        a.file.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn partial_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_os_string();
    name.push(".partial");
    PathBuf::from(name)
}

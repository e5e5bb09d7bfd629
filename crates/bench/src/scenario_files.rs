//! What the scenario subcommands (`keel bench snapshot`, `keel bench move`)
//! share on their command lines — where results, data and the binary are, and
//! the extra `keel serve` flags — and the directory each run works in.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;

/// The files and processes of a scenario run.
#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct ScenarioFiles {
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Put the cluster's data in a fresh directory under this one (removed at
    /// the end; default: the system's temporary directory).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// The keel binary (default: this executable).
    #[arg(long)]
    pub keel_bin: Option<PathBuf>,
    /// Keep the cluster's directory (data, process logs) after the run.
    #[arg(long)]
    pub keep_data: bool,
    /// An extra flag for every started `keel serve` (repeatable).
    #[arg(long, allow_hyphen_values = true)]
    pub keel_arg: Vec<String>,
}

/// The binary a run starts and the directory it works in (removed when this
/// is dropped, unless `--keep-data`).
#[derive(Debug)]
pub struct Workspace {
    /// The `keel` binary.
    pub bin: PathBuf,
    /// The run's own directory.
    pub dir: PathBuf,
    _removed_at_end: Option<tempfile::TempDir>,
}

impl ScenarioFiles {
    /// Finds the binary and makes the run's directory, named from `prefix`.
    pub fn workspace(&self, prefix: &str) -> anyhow::Result<Workspace> {
        let bin = match &self.keel_bin {
            Some(b) => b.clone(),
            None => {
                std::env::current_exe().context("cannot find the keel binary; pass --keel-bin")?
            }
        };
        let work = self.work_dir.clone().unwrap_or_else(std::env::temp_dir);
        let (dir, removed_at_end) = run_dir(&work, prefix, self.keep_data)?;
        Ok(Workspace {
            bin,
            dir,
            _removed_at_end: removed_at_end,
        })
    }
}

/// A fresh directory named from `prefix` under `work`: kept after the run
/// with `keep` (which is said on stderr), else removed when the returned
/// guard is dropped.
pub fn run_dir(
    work: &Path,
    prefix: &str,
    keep: bool,
) -> anyhow::Result<(PathBuf, Option<tempfile::TempDir>)> {
    let temp = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(work)
        .with_context(|| format!("cannot create a directory in {}", work.display()))?;
    if keep {
        let dir = temp.keep();
        eprintln!("The run's data and logs stay in {}.", dir.display());
        Ok((dir, None))
    } else {
        Ok((temp.path().to_path_buf(), Some(temp)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workspace_is_removed_at_the_end_unless_kept() {
        let base = tempfile::tempdir().expect("base");
        let files = ScenarioFiles {
            work_dir: Some(base.path().to_path_buf()),
            keel_bin: Some(PathBuf::from("/bin/keel")),
            ..ScenarioFiles::default()
        };
        let ws = files.workspace("keel-bench-test-").expect("workspace");
        assert_eq!(ws.bin, PathBuf::from("/bin/keel"));
        let dir = ws.dir.clone();
        assert!(dir.starts_with(base.path()) && dir.is_dir());
        drop(ws);
        assert!(!dir.exists());

        let kept = ScenarioFiles {
            keep_data: true,
            ..files
        };
        let ws = kept.workspace("keel-bench-test-").expect("workspace");
        let dir = ws.dir.clone();
        drop(ws);
        assert!(dir.is_dir());
    }
}

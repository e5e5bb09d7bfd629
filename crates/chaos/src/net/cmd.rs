//! Running the system tools the network setup needs (`ip`, `nft`, `apt-get`),
//! with errors that say which command failed and what it printed.

use std::io::Write as _;
use std::process::{Command, Stdio};

/// A system command that failed.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// It could not be started.
    #[error("cannot run {command}: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// It exited unsuccessfully.
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
}

/// Runs `program args...`, feeding `stdin` if given; returns its stdout.
pub fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, CmdError> {
    let command = format!("{program} {}", args.join(" "));
    let spawn = |source| CmdError::Spawn {
        command: command.clone(),
        source,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(spawn)?;
    }
    let out = child.wait_with_output().map_err(spawn)?;
    if !out.status.success() {
        return Err(CmdError::Failed {
            command,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `ip args...`.
pub fn ip(args: &[&str]) -> Result<String, CmdError> {
    run("ip", args, None)
}

/// Whether `program` is found on `PATH`.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Installs Debian packages with `apt-get` (as root; `apt-get update` first if the
/// first attempt fails for want of package lists).
pub fn apt_install(packages: &[&str]) -> Result<(), CmdError> {
    let mut args = vec!["install", "-y", "-q"];
    args.extend_from_slice(packages);
    let install = || {
        Command::new("apt-get")
            .args(&args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
    };
    let first = install();
    if matches!(&first, Ok(o) if o.status.success()) {
        return Ok(());
    }
    run("apt-get", &["update", "-q"], None)?;
    let out = install().map_err(|source| CmdError::Spawn {
        command: format!("apt-get {}", args.join(" ")),
        source,
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(CmdError::Failed {
            command: format!("apt-get {}", args.join(" ")),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

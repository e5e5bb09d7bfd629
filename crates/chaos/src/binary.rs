//! Finding the `keel` binary to run: `$KEEL_BIN`, else the workspace's own build,
//! brought up to date with `cargo build -p keel-cli` in the same target directory
//! and profile as the running executable (a no-op when it is current).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `keel` binary, building it if need be.
pub fn keel_bin() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("KEEL_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().map_err(|e| format!("current executable: {e}"))?;
    // target/<profile>/keel-chaos or target/<profile>/deps/<test>-<hash>
    let mut profile_dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if profile_dir.ends_with("deps") || profile_dir.ends_with("examples") {
        profile_dir.pop();
    }
    let target_dir = profile_dir
        .parent()
        .ok_or_else(|| format!("no target directory above {}", exe.display()))?;
    let profile = profile_dir
        .file_name()
        .and_then(|p| p.to_str())
        .unwrap_or("debug");
    let candidate = profile_dir.join("keel");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--quiet", "-p", "keel-cli", "--bin", "keel"])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    match profile {
        "debug" => {}
        "release" => {
            build.arg("--release");
        }
        other => {
            build.args(["--profile", other]);
        }
    }
    let built = build.status();
    match built {
        Ok(status) if status.success() && candidate.exists() => Ok(candidate),
        _ if candidate.exists() => Ok(candidate),
        Ok(status) => Err(format!(
            "cargo build -p keel-cli failed ({status}); set KEEL_BIN"
        )),
        Err(e) => Err(format!(
            "cannot run cargo ({e}); set KEEL_BIN to the keel binary"
        )),
    }
}

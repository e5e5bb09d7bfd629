//! Finding the `keel` binary to run: `$KEEL_BIN`, else the workspace's own build
//! in the same target directory and profile as the running executable. That
//! binary is used as it is when it is newer than every source file of the
//! workspace (as after `cargo test --workspace`, which builds it); otherwise it
//! is brought up to date with `cargo build -p keel-cli`. (Always running cargo
//! would be simpler, but a build of keel-cli alone unifies features differently
//! from a workspace build and so can rebuild much of the dependency tree.)

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `keel` binary, building it if need be.
pub fn keel_bin() -> Result<PathBuf, String> {
    workspace_bin("KEEL_BIN", "keel", &[])
}

/// The `keel-test-bugs` binary (keel with the deliberately broken variants of
/// `keel_server::test_bugs`): `$KEEL_BUG_BIN`, else built like [`keel_bin`] with
/// `--features test-bugs`. Building it leaves the `keel` binary alone.
pub fn keel_bug_bin() -> Result<PathBuf, String> {
    workspace_bin(
        "KEEL_BUG_BIN",
        "keel-test-bugs",
        &["--features", "test-bugs"],
    )
}

fn workspace_bin(env: &str, name: &str, extra: &[&str]) -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(env) {
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
    let candidate = profile_dir.join(name);
    if is_fresh(&candidate) {
        return Ok(candidate);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--quiet", "-p", "keel-cli", "--bin", name])
        .args(extra)
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
            "cargo build -p keel-cli --bin {name} failed ({status}); set {env}"
        )),
        Err(e) => Err(format!(
            "cannot run cargo ({e}); set {env} to the {name} binary"
        )),
    }
}

/// Whether `bin` exists and is newer than every file under the workspace's
/// crates (this one aside, since `keel` does not depend on it) and every
/// `Cargo.toml` (the lock file too).
fn is_fresh(bin: &Path) -> bool {
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return false;
    };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut newest = None;
    let mut visit = vec![workspace.join("crates")];
    for top in ["Cargo.toml", "Cargo.lock"] {
        newest = newest.max(modified(&workspace.join(top)));
    }
    while let Some(dir) = visit.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let skipped = ["target", "tests", "benches", "chaos"];
            if path.is_dir() && !skipped.iter().any(|s| name == *s) {
                visit.push(path);
            } else if path
                .extension()
                .is_some_and(|e| e == "rs" || e == "proto" || e == "toml")
            {
                newest = newest.max(modified(&path));
            }
        }
    }
    newest.is_some_and(|n| n <= built)
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

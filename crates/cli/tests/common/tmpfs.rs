//! Small tmpfs mounts for tests that need a disk that fills up: a mount guard that
//! unmounts on drop (even when the test fails), and a filler file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use keel_storage::vfs::{StdVfs, Vfs};

/// A tmpfs mounted at a directory; unmounted (lazily, so a process still holding
/// a file there cannot keep it busy) when dropped.
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `"8m"`) at `path`, creating it. `Err` says
    /// why not (not root, no `mount`, ...), for a test to print and skip.
    pub fn mount(path: &Path, size: &str) -> Result<Tmpfs, String> {
        if !rustix::process::geteuid().is_root() {
            return Err("mounting a tmpfs needs root".into());
        }
        std::fs::create_dir_all(path).map_err(|e| format!("create {}: {e}", path.display()))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            path: path.to_path_buf(),
        })
    }

    /// Free bytes on the mount.
    pub fn available(&self) -> u64 {
        StdVfs::new()
            .available_bytes(&self.path)
            .expect("statvfs")
            .expect("tmpfs reports its free space")
    }

    /// Writes a filler file until at most `leave` bytes are free, and returns its
    /// path (delete it to give the space back).
    pub fn fill(&self, leave: u64) -> PathBuf {
        let path = self.path.join("filler");
        let mut f = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&path)
            .expect("create filler");
        let chunk = vec![0x5a_u8; 64 << 10];
        loop {
            let free = self.available();
            if free <= leave {
                break;
            }
            let n = usize::try_from(free - leave)
                .map_or(chunk.len(), |left| left.min(chunk.len()))
                .max(4096);
            match f.write_all(&chunk[..n.min(chunk.len())]) {
                Ok(()) => {}
                Err(e) if keel_storage::vfs::is_no_space(&e) => break,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
        f.sync_all().expect("sync filler");
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

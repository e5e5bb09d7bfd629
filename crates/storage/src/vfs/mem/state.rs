//! The shared state behind [`super::MemVfs`]: a namespace and a table of inodes, each
//! with a visible and a durable version.

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Identifies a file's contents independently of its name(s), like a Unix inode.
pub(super) type InodeId = u64;

/// What a name refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Node {
    Dir,
    File(InodeId),
}

/// A write made since the file's last successful `sync_data`, kept so that a crash can
/// decide which of them reached the platter.
#[derive(Clone, Debug)]
pub(super) enum Pending {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

/// One file's contents.
#[derive(Debug, Default)]
pub(super) struct Inode {
    /// What reads see.
    pub(super) data: Vec<u8>,
    /// What survives a crash for certain.
    pub(super) durable: Vec<u8>,
    /// Changes from `durable` to `data`, oldest first; any subset may survive a crash.
    pub(super) pending: Vec<Pending>,
    /// Names in the visible namespace that refer to this inode.
    pub(super) links: u32,
    /// Open handles.
    pub(super) handles: u32,
    /// The handle holding the advisory lock.
    pub(super) lock_holder: Option<u64>,
    /// Fault injection: the next `sync_data` fails.
    pub(super) fail_next_sync: bool,
}

impl Inode {
    /// Applies a write to the visible contents and queues it for the crash model.
    pub(super) fn write(&mut self, offset: u64, data: &[u8]) {
        apply_write(&mut self.data, offset, data);
        self.pending.push(Pending::Write {
            offset,
            data: data.to_vec(),
        });
    }

    /// Changes the visible length and queues it for the crash model.
    pub(super) fn set_len(&mut self, len: u64) {
        resize(&mut self.data, len);
        self.pending.push(Pending::SetLen(len));
    }
}

/// Writes `data` at `offset` into `buf`, zero-filling any gap.
pub(super) fn apply_write(buf: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = to_usize(offset);
    let end = start + data.len();
    if buf.len() < end {
        buf.resize(end, 0);
    }
    buf[start..end].copy_from_slice(data);
}

/// Truncates or zero-extends `buf` to `len`.
pub(super) fn resize(buf: &mut Vec<u8>, len: u64) {
    buf.resize(to_usize(len), 0);
}

/// A file offset as a memory index. The simulated disk lives in memory, so an offset
/// that does not fit in `usize` could never have been written.
pub(super) fn to_usize(offset: u64) -> usize {
    usize::try_from(offset).expect("simulated file offsets fit in memory")
}

/// Everything a [`super::MemVfs`] knows.
#[derive(Debug, Default)]
pub(super) struct MemState {
    /// Bumped by every crash; handles opened before it are stale.
    pub(super) generation: u64,
    /// The namespace reads see.
    pub(super) visible: BTreeMap<PathBuf, Node>,
    /// The namespace that survives a crash.
    pub(super) durable: BTreeMap<PathBuf, Node>,
    pub(super) inodes: BTreeMap<InodeId, Inode>,
    pub(super) next_inode: InodeId,
    pub(super) next_handle: u64,
    /// Fault injection: total bytes of live files allowed.
    pub(super) space_limit: Option<u64>,
    /// Fault injection: mutating operations left before the disk halts.
    pub(super) halt_after: Option<u64>,
    /// Set once `halt_after` ran out: every operation fails until the next crash.
    pub(super) halted: bool,
}

/// The error every operation returns once the simulated machine has halted.
pub(super) fn halted_error() -> io::Error {
    io::Error::other("simulated machine halted (MemVfs::halt_after)")
}

/// Canonical form of a path: `a//b/./c` and `a/b/c` name the same entry.
pub(super) fn normalize(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

/// The directory containing `path`, or `None` for a root.
pub(super) fn parent(path: &Path) -> Option<&Path> {
    path.parent()
}

/// Whether `path` is a root (`/` or the empty relative root), which always exists.
pub(super) fn is_root(path: &Path) -> bool {
    path.as_os_str().is_empty() || path == Path::new("/")
}

pub(super) fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file or directory", path.display()),
    )
}

impl MemState {
    /// Counts one mutating operation against `halt_after`, failing once it runs out.
    pub(super) fn tick(&mut self) -> io::Result<()> {
        if self.halted {
            return Err(halted_error());
        }
        if let Some(left) = self.halt_after.as_mut() {
            if *left == 0 {
                self.halted = true;
                return Err(halted_error());
            }
            *left -= 1;
        }
        Ok(())
    }

    /// Fails if the machine halted; for operations that change nothing.
    pub(super) fn check_alive(&self) -> io::Result<()> {
        if self.halted {
            Err(halted_error())
        } else {
            Ok(())
        }
    }

    /// Whether `path` is an existing directory in the visible namespace.
    pub(super) fn is_dir(&self, path: &Path) -> bool {
        is_root(path) || self.visible.get(path) == Some(&Node::Dir)
    }

    /// Fails unless the parent directory of `path` exists.
    pub(super) fn require_parent(&self, path: &Path) -> io::Result<()> {
        match parent(path) {
            Some(dir) if !self.is_dir(dir) => Err(not_found(dir)),
            _ => Ok(()),
        }
    }

    /// Bytes held by files that are still reachable by name or by an open handle.
    pub(super) fn used_bytes(&self) -> u64 {
        self.inodes
            .values()
            .filter(|i| i.links > 0 || i.handles > 0)
            .map(|i| i.data.len() as u64)
            .sum()
    }

    /// Fails with `StorageFull` if growing `inode` to `new_len` exceeds the limit.
    pub(super) fn check_space(&self, inode: InodeId, new_len: u64) -> io::Result<()> {
        let Some(limit) = self.space_limit else {
            return Ok(());
        };
        let old_len = self.inodes.get(&inode).map_or(0, |i| i.data.len() as u64);
        if new_len <= old_len {
            return Ok(());
        }
        if self.used_bytes() - old_len + new_len > limit {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on simulated device",
            ));
        }
        Ok(())
    }

    /// Drops an inode nothing can reach any more: no visible or durable name, no
    /// handle. (A durable name keeps it because a crash can bring the name back.)
    pub(super) fn collect(&mut self, id: InodeId) {
        let Some(inode) = self.inodes.get(&id) else {
            return;
        };
        if inode.links > 0 || inode.handles > 0 {
            return;
        }
        if self.durable.values().any(|n| *n == Node::File(id)) {
            return;
        }
        self.inodes.remove(&id);
    }

    /// Removes the visible name `path` (a file), fixing link counts.
    pub(super) fn unlink(&mut self, path: &Path) -> Option<InodeId> {
        match self.visible.remove(path) {
            Some(Node::File(id)) => {
                if let Some(inode) = self.inodes.get_mut(&id) {
                    inode.links -= 1;
                }
                Some(id)
            }
            Some(Node::Dir) => {
                self.visible.insert(path.to_path_buf(), Node::Dir);
                None
            }
            None => None,
        }
    }

    /// Looks up the inode of the file at `path`.
    pub(super) fn file_at(&self, path: &Path) -> io::Result<InodeId> {
        match self.visible.get(path) {
            Some(Node::File(id)) => Ok(*id),
            Some(Node::Dir) => Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{}: is a directory", path.display()),
            )),
            None => Err(not_found(path)),
        }
    }
}

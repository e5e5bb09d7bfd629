//! [`MemVfs`]: a deterministic in-memory disk that can lose power.

mod crash;
mod file;
mod state;

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use file::MemFile;
use state::{MemState, Node, normalize, not_found, parent};

use super::{Vfs, VfsFile};

/// An in-memory filesystem for tests and the deterministic simulator.
///
/// Every file keeps what reads see and what is durable. [`VfsFile::sync_data`] makes a
/// file's contents durable; creating, renaming and removing a name become durable
/// only at [`Vfs::sync_dir`] of its parent. [`MemVfs::crash`] then simulates a power
/// failure: each file reverts to its durable contents plus, chosen by a seeded RNG,
/// some of the writes made since its last sync — each applied fully, not at all, or
/// torn (a prefix of it, or with some of its 512-byte sectors missing) — and every
/// un-synced directory operation is undone.
///
/// Cloning shares the disk (it is an `Arc`), so a simulator keeps one `MemVfs` across
/// simulated process restarts. Nothing in it depends on time or unseeded randomness.
///
/// Fault injection: [`MemVfs::fail_next_sync`], [`MemVfs::flip_bit`],
/// [`MemVfs::set_space_limit`] and [`MemVfs::halt_after`].
#[derive(Clone, Debug, Default)]
pub struct MemVfs {
    state: Arc<Mutex<MemState>>,
}

/// Locks the state. A panic while holding the lock can only come from a bug in this
/// module (no user code runs under it), so the poison is not worth recovering.
fn lock(state: &Mutex<MemState>) -> MutexGuard<'_, MemState> {
    state
        .lock()
        .expect("MemVfs state lock poisoned by an earlier panic")
}

impl MemVfs {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    /// Simulates a power failure followed by a reboot; `seed` decides which of the
    /// un-synced writes survive (see the type docs). All handles opened before the
    /// crash become stale: every call on them fails, as the process that held them
    /// is gone. Locks are released and [`MemVfs::halt_after`] is cleared; the space
    /// limit stays.
    pub fn crash(&self, seed: u64) {
        crash::crash(&mut lock(&self.state), seed);
    }

    /// Makes the next [`VfsFile::sync_data`] of the file at `path` fail with an I/O
    /// error. The writes it would have made durable stay un-synced.
    pub fn fail_next_sync(&self, path: &Path) -> io::Result<()> {
        let mut st = lock(&self.state);
        let id = st.file_at(&normalize(path))?;
        if let Some(inode) = st.inodes.get_mut(&id) {
            inode.fail_next_sync = true;
        }
        Ok(())
    }

    /// Flips bit `bit % 8` of the byte at `offset` of the file at `path`, in both its
    /// visible and its durable contents (media corruption, not a lost write).
    pub fn flip_bit(&self, path: &Path, offset: u64, bit: u8) -> io::Result<()> {
        let mut st = lock(&self.state);
        let id = st.file_at(&normalize(path))?;
        let inode = st.inodes.get_mut(&id).ok_or_else(|| not_found(path))?;
        let mask = 1u8 << (bit % 8);
        let at = state::to_usize(offset);
        let mut flipped = false;
        for buf in [&mut inode.data, &mut inode.durable] {
            if let Some(byte) = buf.get_mut(at) {
                *byte ^= mask;
                flipped = true;
            }
        }
        if flipped {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("offset {offset} is past the end of {}", path.display()),
            ))
        }
    }

    /// Limits the total size of all live files; growing past it fails with
    /// [`io::ErrorKind::StorageFull`]. `None` removes the limit.
    pub fn set_space_limit(&self, bytes: Option<u64>) {
        lock(&self.state).space_limit = bytes;
    }

    /// After `ops` more mutating operations (writes, syncs, length changes, namespace
    /// changes), every operation fails until [`MemVfs::crash`]: the process died at
    /// that point. Lets a test stop a multi-step update anywhere. `None` disarms it.
    pub fn halt_after(&self, ops: Option<u64>) {
        let mut st = lock(&self.state);
        st.halt_after = ops;
        st.halted = false;
    }

    /// The visible contents of the file at `path` (for tests and debugging).
    pub fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let st = lock(&self.state);
        let id = st.file_at(&normalize(path))?;
        Ok(st
            .inodes
            .get(&id)
            .map(|i| i.data.clone())
            .unwrap_or_default())
    }

    /// Total bytes of all live files.
    pub fn used_bytes(&self) -> u64 {
        lock(&self.state).used_bytes()
    }
}

impl Vfs for MemVfs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let path = normalize(path);
        let mut st = lock(&self.state);
        st.tick()?;
        // Ancestors first, so that each one's parent exists when it is added.
        let mut chain: Vec<&Path> = path.ancestors().filter(|p| !state::is_root(p)).collect();
        chain.reverse();
        for dir in chain {
            match st.visible.get(dir) {
                Some(Node::Dir) => {}
                Some(Node::File(_)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{}: is a file", dir.display()),
                    ));
                }
                None => {
                    st.visible.insert(dir.to_path_buf(), Node::Dir);
                }
            }
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let path = normalize(path);
        let st = lock(&self.state);
        st.check_alive()?;
        if !st.is_dir(&path) {
            return Err(not_found(&path));
        }
        // BTreeMap iteration is already sorted by path, hence by name within a dir.
        Ok(st
            .visible
            .keys()
            .filter(|p| parent(p) == Some(path.as_path()))
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect())
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn VfsFile>> {
        let path = normalize(path);
        let mut st = lock(&self.state);
        st.check_alive()?;
        let id = match st.file_at(&path) {
            Ok(id) => id,
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                st.require_parent(&path)?;
                st.tick()?;
                let id = st.next_inode;
                st.next_inode += 1;
                st.inodes.insert(id, state::Inode::default());
                st.visible.insert(path.clone(), Node::File(id));
                if let Some(inode) = st.inodes.get_mut(&id) {
                    inode.links = 1;
                }
                id
            }
            Err(e) => return Err(e),
        };
        let handle = st.next_handle;
        st.next_handle += 1;
        if let Some(inode) = st.inodes.get_mut(&id) {
            inode.handles += 1;
        }
        let generation = st.generation;
        drop(st);
        Ok(Arc::new(MemFile::new(
            Arc::clone(&self.state),
            id,
            handle,
            generation,
            path,
        )))
    }

    fn exists(&self, path: &Path) -> bool {
        let path = normalize(path);
        let st = lock(&self.state);
        state::is_root(&path) || st.visible.contains_key(&path)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let path = normalize(path);
        let mut st = lock(&self.state);
        st.check_alive()?;
        let id = st.file_at(&path)?;
        st.tick()?;
        st.unlink(&path);
        st.collect(id);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from, to) = (normalize(from), normalize(to));
        let mut st = lock(&self.state);
        st.check_alive()?;
        let id = st.file_at(&from)?;
        st.require_parent(&to)?;
        if st.is_dir(&to) {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{}: is a directory", to.display()),
            ));
        }
        st.tick()?;
        if from == to {
            return Ok(());
        }
        let replaced = st.unlink(&to);
        st.unlink(&from);
        st.visible.insert(to, Node::File(id));
        if let Some(inode) = st.inodes.get_mut(&id) {
            inode.links += 1;
        }
        if let Some(old) = replaced {
            st.collect(old);
        }
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let path = normalize(path);
        let mut st = lock(&self.state);
        st.check_alive()?;
        if !st.is_dir(&path) {
            return Err(not_found(&path));
        }
        st.tick()?;
        let in_dir = |p: &Path| parent(p) == Some(path.as_path());
        let now: Vec<(std::path::PathBuf, Node)> = st
            .visible
            .iter()
            .filter(|(p, _)| in_dir(p))
            .map(|(p, n)| (p.clone(), *n))
            .collect();
        let dropped: Vec<Node> = st
            .durable
            .iter()
            .filter(|(p, _)| in_dir(p) && !st.visible.contains_key(*p))
            .map(|(_, n)| *n)
            .collect();
        st.durable.retain(|p, _| !in_dir(p));
        st.durable.extend(now);
        for node in dropped {
            if let Node::File(id) = node {
                st.collect(id);
            }
        }
        Ok(())
    }

    /// What the space limit leaves, or `None` without a limit.
    fn available_bytes(&self, _path: &Path) -> io::Result<Option<u64>> {
        let st = lock(&self.state);
        Ok(st
            .space_limit
            .map(|limit| limit.saturating_sub(st.used_bytes())))
    }
}

#[cfg(test)]
mod tests;

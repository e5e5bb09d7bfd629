//! An open file of [`super::MemVfs`].

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use super::lock;
use super::state::{Inode, InodeId, MemState, to_usize};
use crate::vfs::VfsFile;

/// A handle on one inode, valid until the next simulated crash.
#[derive(Debug)]
pub(super) struct MemFile {
    state: Arc<Mutex<MemState>>,
    inode: InodeId,
    handle: u64,
    generation: u64,
    /// The name it was opened by, for error messages only.
    path: PathBuf,
}

impl MemFile {
    pub(super) fn new(
        state: Arc<Mutex<MemState>>,
        inode: InodeId,
        handle: u64,
        generation: u64,
        path: PathBuf,
    ) -> Self {
        MemFile {
            state,
            inode,
            handle,
            generation,
            path,
        }
    }

    /// Locks the disk and checks that this handle survived no crash.
    fn live(&self) -> io::Result<MutexGuard<'_, MemState>> {
        let st = lock(&self.state);
        if st.generation != self.generation {
            return Err(io::Error::other(format!(
                "{}: stale handle, the simulated machine crashed since it was opened",
                self.path.display()
            )));
        }
        st.check_alive()?;
        Ok(st)
    }

    /// Runs `f` on this handle's inode with the disk locked.
    fn with_inode<T>(
        &self,
        st: &mut MemState,
        f: impl FnOnce(&mut Inode) -> io::Result<T>,
    ) -> io::Result<T> {
        let inode = st.inodes.get_mut(&self.inode).ok_or_else(|| {
            io::Error::other(format!(
                "{}: inode vanished while open (MemVfs bug)",
                self.path.display()
            ))
        })?;
        f(inode)
    }

    fn current_len(&self, st: &mut MemState) -> io::Result<u64> {
        self.with_inode(st, |i| Ok(i.data.len() as u64))
    }
}

impl VfsFile for MemFile {
    fn len(&self) -> io::Result<u64> {
        let mut st = self.live()?;
        self.current_len(&mut st)
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut st = self.live()?;
        self.with_inode(&mut st, |i| {
            let end = offset.checked_add(buf.len() as u64);
            match end {
                Some(end) if end <= i.data.len() as u64 => {
                    let start = to_usize(offset);
                    buf.copy_from_slice(&i.data[start..start + buf.len()]);
                    Ok(())
                }
                _ => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "{}: read of {} bytes at {offset} past the end ({})",
                        self.path.display(),
                        buf.len(),
                        i.data.len()
                    ),
                )),
            }
        })
    }

    fn write_all_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut st = self.live()?;
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "write offset overflow"))?;
        st.check_space(self.inode, end)?;
        st.tick()?;
        self.with_inode(&mut st, |i| {
            i.write(offset, data);
            Ok(())
        })
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut st = self.live()?;
        st.check_space(self.inode, len)?;
        st.tick()?;
        self.with_inode(&mut st, |i| {
            i.set_len(len);
            Ok(())
        })
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        let mut st = self.live()?;
        if len <= self.current_len(&mut st)? {
            return Ok(());
        }
        st.check_space(self.inode, len)?;
        st.tick()?;
        self.with_inode(&mut st, |i| {
            i.set_len(len);
            Ok(())
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut st = self.live()?;
        st.tick()?;
        self.with_inode(&mut st, |i| {
            if std::mem::take(&mut i.fail_next_sync) {
                return Err(io::Error::other(format!(
                    "{}: injected fsync failure",
                    self.path.display()
                )));
            }
            i.durable.clone_from(&i.data);
            i.pending.clear();
            Ok(())
        })
    }

    fn try_lock(&self) -> io::Result<bool> {
        let mut st = self.live()?;
        self.with_inode(&mut st, |i| match i.lock_holder {
            Some(holder) if holder != self.handle => Ok(false),
            _ => {
                i.lock_holder = Some(self.handle);
                Ok(true)
            }
        })
    }

    fn unlock(&self) -> io::Result<()> {
        let mut st = self.live()?;
        self.with_inode(&mut st, |i| {
            if i.lock_holder == Some(self.handle) {
                i.lock_holder = None;
            }
            Ok(())
        })
    }
}

impl Drop for MemFile {
    fn drop(&mut self) {
        // Never panic in drop (it could be during unwinding): a poisoned lock still
        // holds usable bookkeeping for a handle count.
        let mut st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // After a crash the inode table was rebuilt; this handle owns nothing in it.
        if st.generation != self.generation {
            return;
        }
        if let Some(inode) = st.inodes.get_mut(&self.inode) {
            inode.handles -= 1;
            if inode.lock_holder == Some(self.handle) {
                inode.lock_holder = None;
            }
        }
        st.collect(self.inode);
    }
}

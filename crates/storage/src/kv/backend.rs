//! A [`redb::StorageBackend`] over a [`VfsFile`], so the state machine runs on the
//! simulated disk as well as the real one.

use std::io;
use std::ops::Bound;
use std::sync::Arc;

use redb::{BackendError, StorageBackend};

use crate::vfs::VfsFile;

/// redb's storage, delegated to one [`VfsFile`].
///
/// Locking: only whole-file locks are supported (redb's "level 2"), mapped to
/// [`VfsFile::try_lock`]. That is all redb's default `ExclusiveWriter` mode needs, and
/// it keeps two processes from opening one state machine.
#[derive(Debug)]
pub(crate) struct VfsBackend {
    file: Arc<dyn VfsFile>,
}

impl VfsBackend {
    pub(crate) fn new(file: Arc<dyn VfsFile>) -> Self {
        VfsBackend { file }
    }
}

/// Whether a lock range is the whole file, the only kind this backend locks.
fn whole_file(start: Bound<u64>, end: Bound<u64>) -> bool {
    matches!(start, Bound::Unbounded | Bound::Included(0)) && matches!(end, Bound::Unbounded)
}

impl StorageBackend for VfsBackend {
    fn len(&self) -> io::Result<u64> {
        self.file.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(offset, out)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(offset, data)
    }

    fn close(&self) -> io::Result<()> {
        self.file.unlock()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        if !whole_file(start, end) {
            return Err(BackendError::Unsupported);
        }
        self.file.try_lock().map_err(BackendError::Io)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        // Waiting for another process is never what a node wants: fail instead.
        match self.try_lock_range(start, end)? {
            true => Ok(()),
            false => Err(BackendError::Io(io::Error::new(
                io::ErrorKind::WouldBlock,
                "state machine file is locked by another process",
            ))),
        }
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        if !whole_file(start, end) {
            return Err(BackendError::Unsupported);
        }
        self.file.unlock().map_err(BackendError::Io)
    }
}

//! [`NoSyncVfs`]: the real filesystem with every fsync skipped.
//!
//! For benchmarks only. It lets the WAL bench time encoding, checksums and the
//! `pwrite` into the page cache without the `fdatasync` that makes them durable,
//! so the two costs can be told apart. Never use it where durability matters.

use std::io;
use std::path::Path;
use std::sync::Arc;

use keel_storage::vfs::{StdVfs, Vfs, VfsFile};

/// [`StdVfs`] whose `sync_data` and `sync_dir` return at once.
#[derive(Debug, Default)]
pub struct NoSyncVfs(StdVfs);

/// A file of [`NoSyncVfs`].
#[derive(Debug)]
struct NoSyncFile(Arc<dyn VfsFile>);

impl Vfs for NoSyncVfs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.0.create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.0.list_dir(path)
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn VfsFile>> {
        Ok(Arc::new(NoSyncFile(self.0.open(path, create)?)))
    }

    fn exists(&self, path: &Path) -> bool {
        self.0.exists(path)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.0.remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.0.rename(from, to)
    }

    fn sync_dir(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }
}

impl VfsFile for NoSyncFile {
    fn len(&self) -> io::Result<u64> {
        self.0.len()
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.0.read_exact_at(offset, buf)
    }

    fn write_all_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write_all_at(offset, data)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        self.0.allocate(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    fn try_lock(&self) -> io::Result<bool> {
        self.0.try_lock()
    }

    fn unlock(&self) -> io::Result<()> {
        self.0.unlock()
    }
}

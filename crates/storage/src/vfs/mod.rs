//! A small filesystem abstraction.
//!
//! The WAL and the state machine do all their I/O through [`Vfs`] and [`VfsFile`], so
//! that the deterministic simulator can run the real storage code on [`MemVfs`], a
//! simulated disk that loses un-synced writes on a simulated power failure, while a
//! real node uses [`StdVfs`].
//!
//! The interface is deliberately positional (`pread`/`pwrite` style, no cursor): a
//! handle can be shared between threads without a seek position to race on.

mod mem;
mod space;
mod std_vfs;

use std::fmt::Debug;
use std::io;
use std::path::Path;
use std::sync::Arc;

pub use mem::MemVfs;
pub use space::is_no_space;
pub use std_vfs::StdVfs;

/// A filesystem: a namespace of directories and files.
///
/// Durability rules follow Linux/ext4 at its weakest: a file's contents are durable
/// only after [`VfsFile::sync_data`], and a file's *existence* (creation, rename,
/// removal) only after [`Vfs::sync_dir`] on its parent directory.
pub trait Vfs: Send + Sync + Debug + 'static {
    /// Creates `path` and any missing parents. Succeeds if it already exists.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;

    /// The names (not paths) of the entries of directory `path`, sorted bytewise.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;

    /// Opens `path` for reading and writing. With `create`, a missing file is created
    /// empty; without it, a missing file is an [`io::ErrorKind::NotFound`] error.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn VfsFile>>;

    /// Whether a file or directory exists at `path`.
    fn exists(&self, path: &Path) -> bool;

    /// Removes the file at `path`. Open handles keep working on the removed file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;

    /// Atomically renames `from` to `to`, replacing any file at `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Makes the creations, renames and removals of entries in directory `path`
    /// durable (`fsync` on the directory).
    fn sync_dir(&self, path: &Path) -> io::Result<()>;

    /// Bytes an unprivileged writer can still allocate on the filesystem holding
    /// `path` (`statvfs`'s `f_bavail × f_frsize`), or `None` if this filesystem
    /// cannot tell.
    fn available_bytes(&self, path: &Path) -> io::Result<Option<u64>> {
        let _ = path;
        Ok(None)
    }
}

/// An open file. Every method takes `&self`: handles are shared between threads and
/// writes are positional.
#[allow(clippy::len_without_is_empty)] // a file is not a collection
pub trait VfsFile: Send + Sync + Debug {
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;

    /// Fills `buf` from `offset`; reading past the end is an
    /// [`io::ErrorKind::UnexpectedEof`] error.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;

    /// Writes all of `data` at `offset`, extending the file if needed (a gap reads as
    /// zeros).
    fn write_all_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;

    /// Truncates or extends the file to `len` bytes; new bytes read as zeros.
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// Grows the file to at least `len` bytes and reserves the space, so that later
    /// writes below `len` need no block allocation and cannot fail for lack of space.
    /// New bytes read as zeros; existing bytes are untouched. Never shrinks.
    fn allocate(&self, len: u64) -> io::Result<()>;

    /// Makes the contents (and the length) durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;

    /// Tries to take an exclusive advisory lock on the file, held until
    /// [`VfsFile::unlock`] or until the handle is dropped. `Ok(false)` if another
    /// handle (possibly in another process) holds it. Taking it again through the
    /// same handle succeeds.
    fn try_lock(&self) -> io::Result<bool>;

    /// Releases the lock taken by [`VfsFile::try_lock`], if held.
    fn unlock(&self) -> io::Result<()>;
}

/// Creates directory `path` and any missing parents, and makes each creation durable
/// by syncing the parent of every directory it created. (Syncing only the immediate
/// parent is a classic bug: a crash can then lose a freshly created grandparent and
/// everything below it.) Existing ancestors are not touched, so no permission beyond
/// what creation needs is required.
pub fn create_dir_all_durable(vfs: &dyn Vfs, path: &Path) -> io::Result<()> {
    let missing: Vec<&Path> = path
        .ancestors()
        .filter(|p| !p.as_os_str().is_empty())
        .take_while(|p| !vfs.exists(p))
        .collect();
    vfs.create_dir_all(path)?;
    // Deepest first: by the time a parent's entry is synced, the child's is too.
    for dir in missing {
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            vfs.sync_dir(parent)?;
        }
    }
    Ok(())
}

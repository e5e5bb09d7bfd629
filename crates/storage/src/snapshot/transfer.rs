//! Streaming a snapshot file between nodes: a chunked reader that can start at any
//! offset (to resume after a broken connection), and a receiver that appends chunks
//! to a staging file, verifies the result and publishes it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use keel_raft::{GroupId, Index, Term};

use super::error::SnapshotError;
use super::format::{FOOTER_LEN, HEADER_FIXED_LEN, PARTIAL_SUFFIX, file_name};
use super::reader::{SnapshotInfo, validate};
use super::store::{MAX_CHUNK_BYTES, SnapshotStore};
use crate::vfs::{Vfs, VfsFile};

/// Largest snapshot file a receiver accepts (1 TiB): a bound on what a peer can make
/// this node write, far beyond any real state machine.
pub const MAX_SNAPSHOT_BYTES: u64 = 1 << 40;

/// One piece of a snapshot file on its way to a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotChunk {
    /// Byte offset of `data` in the file.
    pub offset: u64,
    /// The bytes.
    pub data: Bytes,
    /// Total file length (so the receiver knows when it is done).
    pub total: u64,
}

impl SnapshotChunk {
    /// Whether this chunk ends the file.
    pub fn is_last(&self) -> bool {
        self.offset + self.data.len() as u64 == self.total
    }
}

/// Reads a snapshot file as a sequence of chunks from a given offset. Each call to
/// `next` reads one chunk from disk; nothing else is buffered.
#[derive(Debug)]
pub struct SnapshotChunks {
    file: Arc<dyn VfsFile>,
    path: PathBuf,
    len: u64,
    pos: u64,
    chunk_bytes: usize,
}

impl SnapshotChunks {
    /// Total file length.
    pub fn total(&self) -> u64 {
        self.len
    }

    /// Offset of the next chunk.
    pub fn offset(&self) -> u64 {
        self.pos
    }
}

impl Iterator for SnapshotChunks {
    type Item = Result<SnapshotChunk, SnapshotError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.len {
            return None;
        }
        let n = (self.len - self.pos).min(self.chunk_bytes as u64) as usize;
        let mut buf = vec![0u8; n];
        if let Err(e) = self.file.read_exact_at(self.pos, &mut buf) {
            // Stop after an error: the caller decides whether to start over.
            self.pos = self.len;
            return Some(Err(SnapshotError::io("read snapshot", &self.path)(e)));
        }
        let chunk = SnapshotChunk {
            offset: self.pos,
            data: Bytes::from(buf),
            total: self.len,
        };
        self.pos += n as u64;
        Some(Ok(chunk))
    }
}

/// Receives a snapshot from a peer into `<dir>/snap-<term>-<index>.keel.partial`.
///
/// Chunks must arrive in order: each starts exactly where the staging file ends
/// ([`SnapshotReceiver::offset`]); anything else is refused with a typed error and
/// changes nothing, so after a reconnect the sender resumes from `offset()`. The
/// staging file outlives the receiver value: [`SnapshotStore::receive`] for the same
/// snapshot picks up where it ends. [`SnapshotReceiver::finish`] verifies the whole
/// file, fsyncs and renames it into place.
///
/// It owns everything it needs (no borrow of the store), so a network task can
/// keep it across awaits and reconnects.
#[derive(Debug)]
pub struct SnapshotReceiver {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    group: GroupId,
    file: Arc<dyn VfsFile>,
    staging: PathBuf,
    term: Term,
    index: Index,
    total: u64,
    received: u64,
}

impl SnapshotStore {
    /// Reads the finished snapshot `file` in chunks of `chunk_bytes` (at most
    /// [`MAX_CHUNK_BYTES`]) starting at byte `offset` (0, or where a receiver said it
    /// stands after a reconnect).
    pub fn chunks(
        &self,
        file: &Path,
        offset: u64,
        chunk_bytes: usize,
    ) -> Result<SnapshotChunks, SnapshotError> {
        if chunk_bytes == 0 || chunk_bytes > MAX_CHUNK_BYTES {
            return Err(SnapshotError::Limit(format!(
                "chunk size {chunk_bytes} is outside 1..={MAX_CHUNK_BYTES}"
            )));
        }
        let handle = self
            .vfs()
            .open(file, false)
            .map_err(SnapshotError::io("open snapshot", file))?;
        let len = handle
            .len()
            .map_err(SnapshotError::io("stat snapshot", file))?;
        if offset > len {
            return Err(SnapshotError::PastEnd {
                end: offset,
                total: len,
            });
        }
        Ok(SnapshotChunks {
            file: handle,
            path: file.to_path_buf(),
            len,
            pos: offset,
            chunk_bytes,
        })
    }

    /// Starts (or resumes) receiving the snapshot at (`term`, `index`) of `total`
    /// bytes, as announced by the sender. An existing staging file for the same
    /// snapshot is kept and appended to; one longer than `total` is discarded.
    pub fn receive(
        &self,
        term: Term,
        index: Index,
        total: u64,
    ) -> Result<SnapshotReceiver, SnapshotError> {
        let min = HEADER_FIXED_LEN + 4 + FOOTER_LEN;
        if !(min..=MAX_SNAPSHOT_BYTES).contains(&total) {
            return Err(SnapshotError::Limit(format!(
                "announced snapshot length {total} is outside {min}..={MAX_SNAPSHOT_BYTES}"
            )));
        }
        let staging = self
            .dir()
            .join(format!("{}{}", file_name(term, index), ".partial"));
        debug_assert!(staging.to_string_lossy().ends_with(PARTIAL_SUFFIX));
        let file = self
            .vfs()
            .open(&staging, true)
            .map_err(SnapshotError::io("create staging file", &staging))?;
        let mut received = file
            .len()
            .map_err(SnapshotError::io("stat staging file", &staging))?;
        if received > total {
            file.set_len(0)
                .map_err(SnapshotError::io("truncate staging file", &staging))?;
            received = 0;
        }
        Ok(SnapshotReceiver {
            vfs: Arc::clone(self.vfs()),
            dir: self.dir().to_path_buf(),
            group: self.group(),
            file,
            staging,
            term,
            index,
            total,
            received,
        })
    }
}

impl SnapshotReceiver {
    /// The offset the next chunk must start at (= bytes received so far).
    pub fn offset(&self) -> u64 {
        self.received
    }

    /// The announced total length.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The staging file.
    pub fn staging_path(&self) -> &Path {
        &self.staging
    }

    /// Appends a chunk that starts at `offset`. Refuses (changing nothing) a chunk
    /// over [`MAX_CHUNK_BYTES`], one not starting at [`SnapshotReceiver::offset`],
    /// and one reaching past the announced length.
    pub fn write_chunk(&mut self, offset: u64, data: &[u8]) -> Result<(), SnapshotError> {
        if data.len() > MAX_CHUNK_BYTES {
            return Err(SnapshotError::ChunkTooLarge {
                len: data.len() as u64,
                max: MAX_CHUNK_BYTES as u64,
            });
        }
        if offset != self.received {
            return Err(SnapshotError::OutOfOrder {
                expected: self.received,
                offset,
            });
        }
        let end = offset + data.len() as u64;
        if end > self.total {
            return Err(SnapshotError::PastEnd {
                end,
                total: self.total,
            });
        }
        if let Err(e) = self.file.write_all_at(offset, data) {
            // A partial write may have extended the file; cut it back so that
            // `offset()` stays the truth for a retry.
            let _ = self.file.set_len(self.received);
            return Err(SnapshotError::io("write staging file", &self.staging)(e));
        }
        self.received = end;
        Ok(())
    }

    /// Verifies the complete file (structure, every checksum, group, index and
    /// term), fsyncs it and renames it to its final name. On damage the staging file
    /// is removed (the transfer must start over) and the error names file and
    /// offset.
    pub fn finish(self) -> Result<SnapshotInfo, SnapshotError> {
        if self.received != self.total {
            return Err(SnapshotError::Incomplete {
                received: self.received,
                total: self.total,
            });
        }
        let info = match validate(&*self.vfs, &self.staging) {
            Ok(info) => info,
            Err(e) => {
                if e.is_damage() {
                    let _ = self.vfs.remove_file(&self.staging);
                }
                return Err(e);
            }
        };
        let h = &info.header;
        if h.group != self.group || h.index != self.index || h.term != self.term {
            let _ = self.vfs.remove_file(&self.staging);
            return Err(SnapshotError::Mismatch {
                file: self.staging.clone(),
                group: self.group,
                index: self.index,
                term: self.term,
                found_group: h.group,
                found_index: h.index,
                found_term: h.term,
            });
        }
        self.file
            .sync_data()
            .map_err(SnapshotError::io("sync staging file", &self.staging))?;
        let path = self.dir.join(file_name(self.term, self.index));
        self.vfs
            .rename(&self.staging, &path)
            .map_err(SnapshotError::io("rename snapshot", &self.staging))?;
        self.vfs
            .sync_dir(&self.dir)
            .map_err(SnapshotError::io("sync snapshot directory", &self.dir))?;
        Ok(SnapshotInfo { path, ..info })
    }

    /// Gives up on this transfer and removes the staging file.
    pub fn abort(self) -> Result<(), SnapshotError> {
        self.vfs
            .remove_file(&self.staging)
            .map_err(SnapshotError::io("remove staging file", &self.staging))
    }
}

//! [`Wal`]: opening (recovery and repair) and appending.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use keel_raft::{Entry, GroupId, HardState, Index};

use super::batch::Batch;
use super::error::WalError;
use super::format::{
    FRAME_HEADER_LEN, FrameHeader, MAX_ENTRY_BYTES, SEGMENT_HEADER_LEN, frame_len,
};
use super::log::check_next;
use super::options::WalOptions;
use super::record::{self, HARD_STATE_RECORD_LEN};
use super::recovery::Recovery;
use super::repair;
use super::scan;
use super::segment;
use crate::vfs::{Vfs, VfsFile, create_dir_all_durable};

/// Name of the lock file in the WAL directory.
const LOCK_FILE: &str = "LOCK";
/// Segments sized for one oversized frame are rounded up to this.
const OVERSIZED_ROUNDING: u64 = 4096;

/// The segment frames are currently appended to.
#[derive(Debug)]
struct Active {
    file: Arc<dyn VfsFile>,
    path: PathBuf,
    seq: u64,
    /// Where the next frame goes.
    pos: u64,
    /// File length: frames must end at or before it.
    capacity: u64,
    /// Written since the last fsync.
    dirty: bool,
}

/// The write-ahead log of one node, shared by all its Raft groups.
///
/// Appends are buffered; [`Wal::sync`] writes them as one frame and fsyncs once, so
/// that one fsync covers everything a runtime loop iteration collected.
///
/// # Failure
///
/// Any I/O error during [`Wal::sync`] — a failed write, a full disk, a failed fsync
/// — **poisons** the WAL: that call returns the error and every later call returns
/// [`WalError::Poisoned`]. After a failed
/// fsync, Linux may already have dropped the dirty pages and marked them clean, so a
/// retry could "succeed" without the data ever reaching the disk. The caller must
/// stop the process (fail-stop); on restart, recovery finds out what is durable.
///
/// Dropping a `Wal` discards the un-synced batch.
#[derive(Debug)]
pub struct Wal {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    opts: WalOptions,
    /// Held for the lifetime of the `Wal` so no other process appends concurrently.
    _lock: Arc<dyn VfsFile>,
    active: Option<Active>,
    next_segment_seq: u64,
    next_frame_seq: u64,
    /// Last index of each group's log, counting buffered appends.
    last_index: BTreeMap<GroupId, Index>,
    batch: Batch,
    poisoned: bool,
}

impl Wal {
    /// Opens (creating if needed) the WAL in `dir` and recovers its contents.
    ///
    /// A torn write after the last valid frame is discarded — zeroed and synced, or,
    /// for a segment whose header never got written, removed — and reported in
    /// [`Recovery::torn_tail`]. Damage before the last valid frame fails with
    /// [`WalError::Corrupt`]. See `docs/wal-format.md` for the exact rules.
    pub fn open(
        vfs: Arc<dyn Vfs>,
        dir: &Path,
        opts: WalOptions,
    ) -> Result<(Wal, Recovery), WalError> {
        opts.validate()?;
        create_dir_all_durable(&*vfs, dir).map_err(WalError::io("create directory", dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = vfs
            .open(&lock_path, true)
            .map_err(WalError::io("open lock file", &lock_path))?;
        if !lock.try_lock().map_err(WalError::io("lock", &lock_path))? {
            return Err(WalError::Locked {
                dir: dir.to_path_buf(),
            });
        }

        let mut recovery = Recovery::default();
        let scan = scan::scan(&*vfs, dir, &mut |found| recovery.apply(found.record))?;
        if let Some(corruption) = scan.corrupt.clone() {
            return Err(corruption.into());
        }
        recovery.torn_tail = repair::repair(&*vfs, dir, &scan)?;

        let mut segments = scan.segments.clone();
        if let Some(incomplete) = &scan.incomplete {
            segments.truncate(incomplete.segment);
        }
        let active = match segments.last() {
            Some(seg) => {
                let file = vfs
                    .open(&seg.path, false)
                    .map_err(WalError::io("open segment", &seg.path))?;
                let capacity = file
                    .len()
                    .map_err(WalError::io("stat segment", &seg.path))?;
                let index = segments.len() - 1;
                let pos = match scan.last_frame {
                    Some(end) if end.segment == index => end.offset,
                    _ => SEGMENT_HEADER_LEN,
                };
                Some(Active {
                    file,
                    path: seg.path.clone(),
                    seq: seg.seq,
                    pos,
                    capacity,
                    dirty: false,
                })
            }
            None => None,
        };
        let wal = Wal {
            next_segment_seq: segments.last().map_or(1, |s| s.seq + 1),
            next_frame_seq: scan.last_frame.map_or(1, |f| f.seq + 1),
            last_index: recovery
                .groups
                .iter()
                .map(|(&g, rg)| (g, rg.last_index()))
                .collect(),
            vfs,
            dir: dir.to_path_buf(),
            opts,
            _lock: lock,
            active,
            batch: Batch::default(),
            poisoned: false,
        };
        Ok((wal, recovery))
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Last index of `group`'s log, including un-synced appends; 0 if empty.
    pub fn last_index(&self, group: GroupId) -> Index {
        self.last_index.get(&group).copied().unwrap_or(0)
    }

    /// Whether an earlier failure made the WAL unusable.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Buffers `entries` of `group` for the next [`Wal::sync`].
    ///
    /// Each entry follows the Raft rule: an index at or below the group's last index
    /// replaces that entry and everything after it; `last + 1` appends; anything
    /// else is a [`WalError::Gap`]. The whole call is checked before anything is
    /// buffered, so an error leaves the batch unchanged.
    pub fn append_entries(&mut self, group: GroupId, entries: &[Entry]) -> Result<(), WalError> {
        self.check_usable()?;
        let mut last = self.last_index(group);
        for e in entries {
            check_next(last, e.index).map_err(|_| WalError::Gap {
                group,
                last,
                index: e.index,
            })?;
            if e.data.len() as u64 > MAX_ENTRY_BYTES {
                return Err(WalError::EntryTooLarge {
                    group,
                    index: e.index,
                    bytes: e.data.len() as u64,
                    max: MAX_ENTRY_BYTES,
                });
            }
            last = e.index;
        }
        for e in entries {
            self.batch.push(record::entry_record_len(e), |buf| {
                record::encode_entry(buf, group, e);
            });
        }
        if !entries.is_empty() {
            self.last_index.insert(group, last);
        }
        Ok(())
    }

    /// Buffers `group`'s hard state for the next [`Wal::sync`]; the last one written
    /// wins on recovery.
    pub fn set_hard_state(&mut self, group: GroupId, hs: HardState) -> Result<(), WalError> {
        self.check_usable()?;
        self.batch.push(HARD_STATE_RECORD_LEN, |buf| {
            record::encode_hard_state(buf, group, &hs);
        });
        Ok(())
    }

    /// Whether there is anything for [`Wal::sync`] to write.
    pub fn has_pending(&self) -> bool {
        !self.batch.is_empty()
    }

    /// Writes the buffered records as one frame and makes it durable with one
    /// `fdatasync`. Does nothing if nothing is buffered. Any failure poisons the WAL
    /// (see the type docs).
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.check_usable()?;
        if self.batch.is_empty() {
            return Ok(());
        }
        let frames = self.batch.take();
        let result = self.write_frames(frames);
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    fn check_usable(&self) -> Result<(), WalError> {
        if self.poisoned {
            Err(WalError::Poisoned)
        } else {
            Ok(())
        }
    }

    fn write_frames(&mut self, frames: Vec<Vec<u8>>) -> Result<(), WalError> {
        for mut buf in frames {
            // A batch over the frame size limit is several frames; each is made
            // durable before the next is written, because recovery takes a bad frame
            // followed by a good one for corruption.
            self.sync_active()?;
            let payload_len = buf.len() - FRAME_HEADER_LEN as usize;
            let len = frame_len(payload_len as u64);
            buf.resize(usize::try_from(len).expect("frame fits in memory"), 0);
            let frame_seq = self.next_frame_seq;
            let active = self.room_for(len)?;
            let header = FrameHeader {
                payload_len: u32::try_from(payload_len).expect("frame payload is capped"),
                frame_seq,
                segment_seq: active.seq,
                payload_crc: crc32c::crc32c(&buf[FRAME_HEADER_LEN as usize..][..payload_len]),
            };
            buf[..FRAME_HEADER_LEN as usize].copy_from_slice(&header.encode());
            active
                .file
                .write_all_at(active.pos, &buf)
                .map_err(WalError::io("write", &active.path))?;
            active.pos += len;
            active.dirty = true;
            self.next_frame_seq += 1;
            self.batch.recycle(buf);
        }
        self.sync_active()
    }

    /// Fsyncs the active segment if it has un-synced frames.
    fn sync_active(&mut self) -> Result<(), WalError> {
        if let Some(active) = self.active.as_mut().filter(|a| a.dirty) {
            active
                .file
                .sync_data()
                .map_err(WalError::io("sync", &active.path))?;
            active.dirty = false;
        }
        Ok(())
    }

    /// The active segment, rolled over first if a frame of `len` bytes does not fit.
    fn room_for(&mut self, len: u64) -> Result<&mut Active, WalError> {
        let fits = self
            .active
            .as_ref()
            .is_some_and(|a| a.pos + len <= a.capacity);
        if !fits {
            // Frames of the old segment must be durable before any frame of the new
            // one: recovery would read a lost frame followed by a durable one as
            // corruption.
            self.sync_active()?;
            let needed = SEGMENT_HEADER_LEN + len;
            let capacity = if needed <= self.opts.segment_bytes {
                self.opts.segment_bytes
            } else {
                needed.div_ceil(OVERSIZED_ROUNDING) * OVERSIZED_ROUNDING
            };
            let seq = self.next_segment_seq;
            let (file, path) = segment::create(&*self.vfs, &self.dir, seq, capacity)?;
            self.next_segment_seq += 1;
            self.active = Some(Active {
                file,
                path,
                seq,
                pos: SEGMENT_HEADER_LEN,
                capacity,
                dirty: false,
            });
        }
        Ok(self
            .active
            .as_mut()
            .expect("an active segment was just ensured"))
    }
}

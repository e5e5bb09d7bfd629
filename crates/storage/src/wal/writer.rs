//! [`Wal`]: opening (recovery and repair) and appending.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use keel_raft::{Entry, GroupId, HardState, Index};

use super::batch::Batch;
use super::error::WalError;
use super::first;
use super::format::{
    FRAME_HEADER_LEN, FrameHeader, MAX_ENTRY_BYTES, SEGMENT_HEADER_LEN, frame_len,
};
use super::log::{LogStart, LogStartKind, RemovedGroup, check_next};
use super::options::WalOptions;
use super::record::{
    self, GROUP_REMOVED_RECORD_LEN, HARD_STATE_RECORD_LEN, LOG_START_RECORD_LEN, ScanRecord,
    WalRecord,
};
use super::recovery::Recovery;
use super::repair;
use super::scan;
use super::segment;
use super::summary::Segments;
use crate::vfs::{Vfs, VfsFile, create_dir_all_durable};

mod groups;

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
/// Any I/O error during [`Wal::sync`] — a failed write, a failed fsync — **poisons**
/// the WAL: that call returns the error and every later call returns
/// [`WalError::Poisoned`]. After a failed
/// fsync, Linux may already have dropped the dirty pages and marked them clean, so a
/// retry could "succeed" without the data ever reaching the disk. The caller must
/// stop the process (fail-stop); on restart, recovery finds out what is durable.
///
/// A full disk is the exception. Segments are preallocated, so the disk can only
/// run out when a new segment (or the `FIRST` file of a compaction) is created,
/// before any frame goes into it: that is [`WalError::NoSpace`], which leaves the
/// WAL usable and the records that did not fit buffered. Once space is freed, the
/// next [`Wal::sync`] writes them.
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
    /// Each group's log start, counting buffered ones.
    log_start: BTreeMap<GroupId, LogStart>,
    /// Each group's last hard state, counting buffered ones; restated by
    /// [`Wal::compact`] so that deleting old segments never loses one.
    hard_states: BTreeMap<GroupId, HardState>,
    /// Groups whose tombstone is durable or buffered (from recovery, or removed
    /// since), with their replica's last term and vote, and not created again:
    /// writes to them are refused, their entries count as covered, and
    /// [`Wal::compact`] restates their tombstones.
    removed: BTreeMap<GroupId, RemovedGroup>,
    /// What each kept segment holds: decides what compaction may delete.
    segments: Segments,
    /// Oldest segment kept (1 until the first compaction).
    first_seq: u64,
    batch: Batch,
    poisoned: bool,
}

/// What [`Wal::compact`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Compaction {
    /// The segment files deleted, oldest first.
    pub removed: Vec<PathBuf>,
    /// Sequence number of the oldest segment kept.
    pub first_segment: u64,
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

        let first_seq = first::read(&*vfs, dir)?;
        remove_below(&*vfs, dir, first_seq)?;
        let mut recovery = Recovery::default();
        let mut summaries = Segments::default();
        let mut first_at: BTreeMap<GroupId, (PathBuf, u64)> = BTreeMap::new();
        let scan = scan::scan(&*vfs, dir, first_seq, &mut |found| {
            let group = found.record.group();
            first_at
                .entry(group)
                .or_insert_with(|| (found.file.to_path_buf(), found.offset));
            if let ScanRecord::Wal(WalRecord::Entry { entry, .. }) = &found.record {
                let seq = found
                    .file
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(segment::parse_name)
                    .unwrap_or(u64::MAX);
                summaries.note_entry(seq, group, entry.index);
            }
            recovery.apply(found.record)
        })?;
        if let Some(corruption) = scan.corrupt.clone() {
            return Err(corruption.into());
        }
        for (group, rg) in &recovery.groups {
            if let Err(reason) = rg.check_anchored() {
                let (file, offset) = first_at.get(group).cloned().unwrap_or_default();
                return Err(WalError::Corrupt {
                    file,
                    offset,
                    reason: format!("group {group}: {reason}"),
                });
            }
        }
        recovery.torn_tail = repair::repair(&*vfs, dir, &scan)?;

        let mut segments = scan.segments.clone();
        if let Some(incomplete) = &scan.incomplete {
            segments.truncate(incomplete.segment);
        }
        for seg in &segments {
            let len = vfs
                .open(&seg.path, false)
                .and_then(|f| f.len())
                .map_err(WalError::io("stat segment", &seg.path))?;
            summaries.add(seg.seq, len);
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
            log_start: recovery
                .groups
                .iter()
                .filter_map(|(&g, rg)| rg.log_start.map(|ls| (g, ls)))
                .collect(),
            hard_states: recovery
                .groups
                .iter()
                .map(|(&g, rg)| (g, rg.hard_state))
                .collect(),
            removed: recovery.removed.clone(),
            segments: summaries,
            first_seq,
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
        self.check_writable(group)?;
        let mut last = self.last_index(group);
        let start = self.log_start(group).map_or(0, |s| s.index);
        for e in entries {
            if e.index != 0 && e.index <= start {
                return Err(WalError::BeforeLogStart {
                    group,
                    start,
                    index: e.index,
                });
            }
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
            self.segments
                .note_pending(group, entries.iter().map(|e| e.index));
        }
        Ok(())
    }

    /// Where `group`'s log starts (its last log-start record, buffered or durable).
    pub fn log_start(&self, group: GroupId) -> Option<LogStart> {
        self.log_start.get(&group).copied()
    }

    /// Buffers a log-start record for the next [`Wal::sync`]: `group`'s log now
    /// begins after `start.index` (see [`LogStartKind`] for what happens to the
    /// entries after it). Write it only once the snapshot covering `start.index` is
    /// durable (a snapshot file, or an installed state machine): after the sync,
    /// recovery no longer returns the entries it covers.
    ///
    /// Refused ([`WalError::LogStartBackwards`]) if it goes back before the current
    /// start, or restates its index with another term.
    pub fn set_log_start(&mut self, group: GroupId, start: LogStart) -> Result<(), WalError> {
        self.check_writable(group)?;
        if let Some(cur) = self.log_start(group)
            && (start.index < cur.index || (start.index == cur.index && start.term != cur.term))
        {
            return Err(WalError::LogStartBackwards {
                group,
                current: cur.index,
                index: start.index,
            });
        }
        self.push_log_start(group, start);
        let last = self.last_index(group);
        let last = match start.kind {
            LogStartKind::Installed => start.index,
            LogStartKind::Compacted => last.max(start.index),
        };
        self.last_index.insert(group, last);
        Ok(())
    }

    fn push_log_start(&mut self, group: GroupId, start: LogStart) {
        self.batch.push(LOG_START_RECORD_LEN, |buf| {
            record::encode_log_start(buf, group, &start);
        });
        self.log_start.insert(group, start);
    }

    /// Deletes the oldest segments whose entries are all covered: a segment goes if,
    /// for every group with entries in it, its highest entry index is at or below
    /// both `up_to(group)` (the caller's choice, e.g. the snapshot index minus a
    /// trailing window kept for slow followers) and the group's durable log start
    /// (entries no snapshot covers are never deleted). Only a prefix of the log is
    /// deleted, never the active segment.
    ///
    /// Steps, each durable before the next: sync anything buffered; restate every
    /// group's hard state and log start in the active segment (so nothing that only
    /// a deleted segment held is lost); write the `FIRST` file naming the oldest kept
    /// segment; delete the segments, oldest first, and sync the directory. A crash
    /// at any point recovers the same logs (see `docs/wal-format.md`). An I/O error
    /// poisons the WAL, as in [`Wal::sync`].
    pub fn compact(&mut self, up_to: impl Fn(GroupId) -> Index) -> Result<Compaction, WalError> {
        self.check_usable()?;
        self.sync()?;
        // No active segment means no segment at all: nothing to delete.
        let Some(active) = self.active.as_ref().map(|a| a.seq) else {
            return Ok(Compaction {
                removed: Vec::new(),
                first_segment: self.first_seq,
            });
        };
        // A segment with no entry (only hard states) is covered: its hard states are
        // restated below before it goes.
        let first_kept = self
            .segments
            .first_uncovered(self.first_seq, active, |g, max| {
                self.covered(g, max, &up_to)
            });
        if first_kept == self.first_seq {
            return Ok(Compaction {
                removed: Vec::new(),
                first_segment: self.first_seq,
            });
        }
        let result = self.delete_before(first_kept);
        self.poison_unless_no_space(&result);
        result
    }

    fn delete_before(&mut self, first_kept: u64) -> Result<Compaction, WalError> {
        let hard_states: Vec<(GroupId, HardState)> =
            self.hard_states.iter().map(|(&g, &h)| (g, h)).collect();
        for (g, hs) in hard_states {
            self.set_hard_state(g, hs)?;
        }
        // Tombstones too: a replica created again later must start from its old
        // term and vote, however long ago it was removed.
        for (&g, &last) in &self.removed {
            self.batch.push(GROUP_REMOVED_RECORD_LEN, |buf| {
                record::encode_group_removed(buf, g, last);
            });
        }
        let starts: Vec<(GroupId, LogStart)> =
            self.log_start.iter().map(|(&g, &s)| (g, s)).collect();
        for (g, s) in starts {
            // A restatement must never drop entries written after the original, so
            // it is always of the keep-the-rest kind.
            self.push_log_start(
                g,
                LogStart {
                    kind: LogStartKind::Compacted,
                    ..s
                },
            );
        }
        self.sync()?;
        first::write(&*self.vfs, &self.dir, first_kept)?;
        self.first_seq = first_kept;
        let removed = remove_below(&*self.vfs, &self.dir, first_kept)?;
        self.segments.drop_below(first_kept);
        Ok(Compaction {
            removed,
            first_segment: first_kept,
        })
    }

    /// Buffers `group`'s hard state for the next [`Wal::sync`]; the last one written
    /// wins on recovery.
    pub fn set_hard_state(&mut self, group: GroupId, hs: HardState) -> Result<(), WalError> {
        self.check_writable(group)?;
        self.hard_states.insert(group, hs);
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
        self.poison_unless_no_space(&result);
        result
    }

    /// Any failure but a full disk where nothing was left half done makes the WAL
    /// unusable (see the type docs).
    fn poison_unless_no_space<T>(&mut self, result: &Result<T, WalError>) {
        if let Err(e) = result
            && !e.is_no_space()
        {
            self.poisoned = true;
        }
    }

    fn check_usable(&self) -> Result<(), WalError> {
        if self.poisoned {
            Err(WalError::Poisoned)
        } else {
            Ok(())
        }
    }

    /// Usable, and `group` was not removed.
    fn check_writable(&self, group: GroupId) -> Result<(), WalError> {
        self.check_usable()?;
        if self.removed.contains_key(&group) {
            return Err(WalError::GroupRemoved { group });
        }
        Ok(())
    }

    fn write_frames(&mut self, frames: Vec<Vec<u8>>) -> Result<(), WalError> {
        let mut frames = frames.into_iter();
        while let Some(mut buf) = frames.next() {
            // A batch over the frame size limit is several frames; each is made
            // durable before the next is written, because recovery takes a bad frame
            // followed by a good one for corruption.
            self.sync_active()?;
            let payload_len = buf.len() - FRAME_HEADER_LEN as usize;
            let len = frame_len(payload_len as u64);
            if let Err(e) = self.ensure_room(len) {
                if e.is_no_space() {
                    // Neither this frame nor any after it was written: they wait
                    // for the next sync, which numbers them afresh.
                    self.batch
                        .restore(std::iter::once(buf).chain(frames).collect());
                }
                return Err(e);
            }
            buf.resize(usize::try_from(len).expect("frame fits in memory"), 0);
            let frame_seq = self.next_frame_seq;
            let active = self
                .active
                .as_mut()
                .expect("an active segment was just ensured");
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
            let seq = active.seq;
            active.pos += len;
            active.dirty = true;
            self.next_frame_seq += 1;
            self.segments.charge_pending(seq);
            self.batch.recycle(buf);
        }
        self.segments.clear_pending();
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

    /// Makes sure the active segment has room for a frame of `len` bytes, rolling
    /// over to a new segment first if it does not. A full disk here is
    /// [`WalError::NoSpace`] and leaves the active segment as it was.
    fn ensure_room(&mut self, len: u64) -> Result<(), WalError> {
        let fits = self
            .active
            .as_ref()
            .is_some_and(|a| a.pos + len <= a.capacity);
        if fits {
            return Ok(());
        }
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
        self.segments.add(seq, capacity);
        self.active = Some(Active {
            file,
            path,
            seq,
            pos: SEGMENT_HEADER_LEN,
            capacity,
            dirty: false,
        });
        Ok(())
    }
}

/// Removes the segments numbered below `first` (a finished or interrupted
/// compaction), oldest first, then syncs the directory once: a crash part-way leaves
/// some of them, which the next open removes since `FIRST` already excludes them.
fn remove_below(vfs: &dyn Vfs, dir: &Path, first: u64) -> Result<Vec<PathBuf>, WalError> {
    let mut removed = Vec::new();
    for seg in segment::list(vfs, dir)? {
        if seg.seq >= first {
            break;
        }
        vfs.remove_file(&seg.path)
            .map_err(WalError::io("remove compacted segment", &seg.path))?;
        removed.push(seg.path);
    }
    if !removed.is_empty() {
        vfs.sync_dir(dir)
            .map_err(WalError::io("sync directory", dir))?;
    }
    Ok(removed)
}

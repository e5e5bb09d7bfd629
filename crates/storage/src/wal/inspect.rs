//! Read-only inspection for `keel wal dump` and `keel wal check`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use keel_raft::GroupId;

use super::error::WalError;
use super::first;
use super::log::{
    LogStart, LogTrack, Removed, RemovedGroup, check_not_removed, on_created, on_removed,
};
use super::record::{ScanRecord, WalRecord};
use super::recovery::TornTail;
use super::scan;
use crate::vfs::Vfs;

/// A record as found on disk.
#[derive(Debug)]
pub struct InspectedRecord<'a> {
    /// The segment file.
    pub file: &'a Path,
    /// Byte offset of the record in that file.
    pub offset: u64,
    /// Sequence number of the frame (fsync batch) holding it.
    pub frame_seq: u64,
    /// The record.
    pub record: WalRecord,
}

/// Anything [`inspect_all`] finds: a [`WalRecord`], a log-start record, a group
/// tombstone or a group-created record.
#[derive(Debug)]
pub enum InspectedItem<'a> {
    /// An entry or a hard state.
    Record(InspectedRecord<'a>),
    /// A log start: `group`'s log now begins after `start.index`.
    LogStart {
        /// The segment file.
        file: &'a Path,
        /// Byte offset of the record in that file.
        offset: u64,
        /// Sequence number of the frame holding it.
        frame_seq: u64,
        /// The group.
        group: GroupId,
        /// Where its log starts.
        start: LogStart,
    },
    /// A group tombstone: this node's replica of `group` was deleted, and every
    /// earlier record of it is void (or a restatement of the tombstone in effect).
    GroupRemoved {
        /// The segment file.
        file: &'a Path,
        /// Byte offset of the record in that file.
        offset: u64,
        /// Sequence number of the frame holding it.
        frame_seq: u64,
        /// The group.
        group: GroupId,
        /// The replica's last term and vote.
        last: RemovedGroup,
    },
    /// A replica of `group` was created again: a new life, starting from the
    /// tombstone's term and vote with an empty log.
    GroupCreated {
        /// The segment file.
        file: &'a Path,
        /// Byte offset of the record in that file.
        offset: u64,
        /// Sequence number of the frame holding it.
        frame_seq: u64,
        /// The group.
        group: GroupId,
    },
}

/// The state of a WAL as [`inspect`] found it; the same judgement
/// [`super::Wal::open`] would make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every byte accounted for.
    Ok,
    /// A torn write after the last valid frame; opening would discard it.
    TornTail(TornTail),
    /// Damage before the last valid frame; opening would refuse.
    Corrupt {
        /// The segment file.
        file: PathBuf,
        /// Byte offset in that file.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
}

/// Walks every segment in `dir` in log order, calling `on_record` for each entry and
/// hard-state record, and returns the verdict. Log-start records (written by
/// compaction and snapshot installs) are checked but not reported; use
/// [`inspect_all`] to see them. Changes nothing and takes no lock, so it may run
/// beside a live node (whose newest frame may then look torn). Memory stays bounded
/// by one frame plus a few numbers per group. Records before a corruption are still
/// reported. `Err` only for I/O failures (e.g. a missing directory).
pub fn inspect(
    vfs: &dyn Vfs,
    dir: &Path,
    mut on_record: impl FnMut(&InspectedRecord<'_>),
) -> Result<Verdict, WalError> {
    inspect_all(vfs, dir, |item| {
        if let InspectedItem::Record(r) = item {
            on_record(r);
        }
    })
}

/// Each group's log shape, and where its first record is (named if it is never
/// anchored).
type Tracks = BTreeMap<GroupId, (LogTrack, PathBuf, u64)>;

/// `group`'s track, started at `file:offset` if this is its first record.
fn track<'t>(tracks: &'t mut Tracks, group: GroupId, file: &Path, offset: u64) -> &'t mut LogTrack {
    &mut tracks
        .entry(group)
        .or_insert_with(|| (LogTrack::default(), file.to_path_buf(), offset))
        .0
}

/// Like [`inspect`], reporting log-start records and group tombstones too.
pub fn inspect_all(
    vfs: &dyn Vfs,
    dir: &Path,
    mut on_item: impl FnMut(&InspectedItem<'_>),
) -> Result<Verdict, WalError> {
    let first_seq = match first::read(vfs, dir) {
        Ok(seq) => seq,
        Err(WalError::Corrupt {
            file,
            offset,
            reason,
        }) => {
            return Ok(Verdict::Corrupt {
                file,
                offset,
                reason,
            });
        }
        Err(e) => return Err(e),
    };
    let mut groups: Tracks = BTreeMap::new();
    let mut removed = Removed::new();
    let scan = scan::scan(vfs, dir, first_seq, &mut |found| {
        let group = found.record.group();
        let item = match found.record {
            ScanRecord::Wal(record) => {
                check_not_removed(&removed, group)?;
                // Every record makes the group live, as in recovery (which a
                // group-created record must not find).
                let track = track(&mut groups, group, found.file, found.offset);
                if let WalRecord::Entry { entry, .. } = &record {
                    track
                        .on_entry(entry.index)
                        .map_err(|r| format!("group {group}: {r}"))?;
                }
                InspectedItem::Record(InspectedRecord {
                    file: found.file,
                    offset: found.offset,
                    frame_seq: found.frame_seq,
                    record,
                })
            }
            ScanRecord::LogStart { group, start } => {
                check_not_removed(&removed, group)?;
                track(&mut groups, group, found.file, found.offset)
                    .on_start(start)
                    .map_err(|r| format!("group {group}: {r}"))?;
                InspectedItem::LogStart {
                    file: found.file,
                    offset: found.offset,
                    frame_seq: found.frame_seq,
                    group,
                    start,
                }
            }
            ScanRecord::GroupRemoved { group, last } => {
                // The group's earlier records are void: its log need not be anchored.
                if on_removed(&mut removed, group, last)? {
                    groups.remove(&group);
                }
                InspectedItem::GroupRemoved {
                    file: found.file,
                    offset: found.offset,
                    frame_seq: found.frame_seq,
                    group,
                    last,
                }
            }
            ScanRecord::GroupCreated { group } => {
                on_created(&mut removed, group, groups.contains_key(&group))?;
                // The new life is live from here on, as in recovery.
                track(&mut groups, group, found.file, found.offset);
                InspectedItem::GroupCreated {
                    file: found.file,
                    offset: found.offset,
                    frame_seq: found.frame_seq,
                    group,
                }
            }
        };
        on_item(&item);
        Ok(())
    })?;
    if let Some(c) = &scan.corrupt {
        return Ok(Verdict::Corrupt {
            file: c.file.clone(),
            offset: c.offset,
            reason: c.reason.clone(),
        });
    }
    for (group, (track, file, offset)) in &groups {
        if let Err(reason) = track.check_anchored() {
            return Ok(Verdict::Corrupt {
                file: file.clone(),
                offset: *offset,
                reason: format!("group {group}: {reason}"),
            });
        }
    }
    Ok(match scan.torn_tail() {
        Some(torn) => Verdict::TornTail(torn),
        None => Verdict::Ok,
    })
}

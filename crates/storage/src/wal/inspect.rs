//! Read-only inspection for `keel wal dump` and `keel wal check`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use keel_raft::{GroupId, Index};

use super::error::WalError;
use super::log::check_next;
use super::record::WalRecord;
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

/// Walks every segment in `dir` in log order, calling `on_record` for each record,
/// and returns the verdict. Changes nothing and takes no lock, so it may run beside
/// a live node (whose newest frame may then look torn). Memory stays bounded by one
/// frame plus one index per group. Records before a corruption are still reported.
/// `Err` only for I/O failures (e.g. a missing directory).
pub fn inspect(
    vfs: &dyn Vfs,
    dir: &Path,
    mut on_record: impl FnMut(&InspectedRecord<'_>),
) -> Result<Verdict, WalError> {
    let mut last: BTreeMap<GroupId, Index> = BTreeMap::new();
    let scan = scan::scan(vfs, dir, &mut |found| {
        if let WalRecord::Entry { group, entry } = &found.record {
            let last = last.entry(*group).or_default();
            check_next(*last, entry.index).map_err(|r| format!("group {group}: {r}"))?;
            *last = entry.index;
        }
        on_record(&InspectedRecord {
            file: found.file,
            offset: found.offset,
            frame_seq: found.frame_seq,
            record: found.record,
        });
        Ok(())
    })?;
    Ok(match (&scan.corrupt, scan.torn_tail()) {
        (Some(c), _) => Verdict::Corrupt {
            file: c.file.clone(),
            offset: c.offset,
            reason: c.reason.clone(),
        },
        (None, Some(torn)) => Verdict::TornTail(torn),
        (None, None) => Verdict::Ok,
    })
}

//! WAL tests on the simulated disk (and one on the real one). Helpers live here.

mod compaction;
mod corruption;
mod crash;
mod full;
mod inspect;
mod pressure;
mod removal;
mod roundtrip;
mod torn;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use keel_raft::{Entry, EntryKind, GroupId, HardState};

use super::format::{FRAME_HEADER_LEN, FrameHeader, SEGMENT_HEADER_LEN, frame_len};
use super::segment;
use super::{RecoveredGroup, Recovery, RemovedGroup, Wal, WalOptions};
use crate::vfs::{MemVfs, Vfs};

pub(super) const DIR: &str = "/node/wal";

pub(super) fn dir() -> &'static Path {
    Path::new(DIR)
}

pub(super) fn opts(segment_bytes: u64) -> WalOptions {
    WalOptions { segment_bytes }
}

pub(super) fn open(vfs: &MemVfs, segment_bytes: u64) -> (Wal, Recovery) {
    Wal::open(Arc::new(vfs.clone()), dir(), opts(segment_bytes)).expect("open WAL")
}

pub(super) fn entry(term: u64, index: u64, data: &[u8]) -> Entry {
    Entry {
        term,
        index,
        kind: EntryKind::Normal,
        data: Bytes::copy_from_slice(data),
    }
}

/// What a WAL should recover, built by the same rule from what was synced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Model {
    pub(super) groups: BTreeMap<GroupId, RecoveredGroup>,
    pub(super) removed: BTreeMap<GroupId, RemovedGroup>,
}

impl Model {
    pub(super) fn append(&mut self, group: GroupId, entries: &[Entry]) {
        let g = self.groups.entry(group).or_default();
        for e in entries {
            g.push(e.clone()).expect("model append");
        }
    }

    pub(super) fn hard_state(&mut self, group: GroupId, hs: HardState) {
        self.groups.entry(group).or_default().hard_state = hs;
    }

    /// A tombstone: the group's records are void from now on; its last term and
    /// vote are remembered.
    pub(super) fn remove(&mut self, group: GroupId) {
        if self.removed.contains_key(&group) {
            return;
        }
        let hs = self.groups.remove(&group).unwrap_or_default().hard_state;
        self.removed.insert(
            group,
            RemovedGroup {
                term: hs.term,
                vote: hs.vote,
            },
        );
    }

    /// A new life of a removed group: empty log, the tombstone's term and vote.
    pub(super) fn recreate(&mut self, group: GroupId) -> HardState {
        let last = self
            .removed
            .remove(&group)
            .expect("recreate a removed group");
        let hs = HardState {
            term: last.term,
            vote: last.vote,
            commit: 0,
        };
        self.groups.entry(group).or_default().hard_state = hs;
        hs
    }

    /// Whether recovery returned these logs, hard states and removed groups.
    pub(super) fn matches(&self, rec: &Recovery) -> bool {
        logs(&rec.groups) == logs(&self.groups) && rec.removed == self.removed
    }

    pub(super) fn last_index(&self, group: GroupId) -> u64 {
        self.groups
            .get(&group)
            .map_or(0, RecoveredGroup::last_index)
    }
}

/// What recovery promises of each group: hard state, entries and log start
/// (without the bookkeeping a model built another way may hold differently).
pub(super) fn logs(
    groups: &BTreeMap<GroupId, RecoveredGroup>,
) -> BTreeMap<GroupId, (HardState, Vec<Entry>, Option<super::LogStart>)> {
    groups
        .iter()
        .map(|(&g, rg)| (g, (rg.hard_state, rg.entries.clone(), rg.log_start)))
        .collect()
}

/// A compacted log start at `index` (with `term`).
pub(super) fn compacted(index: u64, term: u64) -> super::LogStart {
    super::LogStart {
        index,
        term,
        kind: super::LogStartKind::Compacted,
    }
}

/// Compacts with no trailing window; returns the segments deleted.
pub(super) fn compact_all(wal: &mut Wal) -> Vec<PathBuf> {
    wal.compact(|_| u64::MAX).expect("compact").removed
}

/// Keeps only the first `cut` bytes of the last frame, as a crash during its write
/// would; returns the frame and whether only zeros were lost (the frame is whole).
pub(super) fn tear_last_frame(vfs: &MemVfs, cut: u64) -> (FramePos, bool) {
    let f = frames(vfs).pop().expect("a frame");
    let original = vfs.read_file(&f.file).expect("read");
    let lost = &original[(f.offset + cut) as usize..(f.offset + f.len) as usize];
    let whole = lost.iter().all(|&b| b == 0);
    poke(
        vfs,
        &f.file,
        f.offset + cut,
        &vec![0u8; (f.len - cut) as usize],
    );
    (f, whole)
}

/// A frame's place on the simulated disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct FramePos {
    pub(super) file: PathBuf,
    pub(super) offset: u64,
    pub(super) len: u64,
    pub(super) payload_len: u64,
}

/// Every valid frame, in order, found by parsing the segment files directly.
pub(super) fn frames(vfs: &MemVfs) -> Vec<FramePos> {
    let mut out = Vec::new();
    for seg in segment::list(vfs, dir()).expect("list") {
        let data = vfs.read_file(&seg.path).expect("read segment");
        let mut pos = SEGMENT_HEADER_LEN as usize;
        while pos + FRAME_HEADER_LEN as usize <= data.len() {
            let Ok(h) = FrameHeader::decode(&data[pos..pos + FRAME_HEADER_LEN as usize]) else {
                break;
            };
            let len = frame_len(h.payload_len.into());
            out.push(FramePos {
                file: seg.path.clone(),
                offset: pos as u64,
                len,
                payload_len: h.payload_len.into(),
            });
            pos += len as usize;
        }
    }
    out
}

/// Overwrites bytes of a file on the simulated disk, durably (as a disk fault would).
pub(super) fn poke(vfs: &MemVfs, path: &Path, offset: u64, bytes: &[u8]) {
    let f = vfs.open(path, false).expect("open for poke");
    f.write_all_at(offset, bytes).expect("poke");
    f.sync_data().expect("sync poke");
}

/// The segment files present, by name.
pub(super) fn segment_names(vfs: &MemVfs) -> Vec<String> {
    vfs.list_dir(dir())
        .expect("list")
        .into_iter()
        .filter(|n| n.ends_with(".wal"))
        .collect()
}

/// Writes a frame holding `records` (encoded records, back to back) right after the
/// last frame, durably, numbered as the next frame: what a buggy or newer writer
/// would have produced. Returns where its payload starts.
pub(super) fn append_raw_frame(vfs: &MemVfs, records: &[u8]) -> (PathBuf, u64) {
    let last = frames(vfs).pop().expect("a frame to follow");
    let data = vfs.read_file(&last.file).expect("read segment");
    let head = &data[last.offset as usize..][..FRAME_HEADER_LEN as usize];
    let prev = FrameHeader::decode(head).expect("last frame header");
    let header = FrameHeader {
        payload_len: u32::try_from(records.len()).expect("small frame"),
        frame_seq: prev.frame_seq + 1,
        segment_seq: prev.segment_seq,
        payload_crc: crc32c::crc32c(records),
    };
    let mut frame = header.encode().to_vec();
    frame.extend_from_slice(records);
    frame.resize(frame_len(records.len() as u64) as usize, 0);
    let at = last.offset + last.len;
    assert!(
        at + frame.len() as u64 <= data.len() as u64,
        "frame must fit"
    );
    poke(vfs, &last.file, at, &frame);
    (last.file, at + FRAME_HEADER_LEN)
}

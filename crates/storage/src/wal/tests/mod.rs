//! WAL tests on the simulated disk (and one on the real one). Helpers live here.

mod compaction;
mod corruption;
mod crash;
mod full;
mod inspect;
mod roundtrip;
mod torn;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use keel_raft::{Entry, EntryKind, GroupId, HardState};

use super::format::{FRAME_HEADER_LEN, FrameHeader, SEGMENT_HEADER_LEN, frame_len};
use super::segment;
use super::{RecoveredGroup, Recovery, Wal, WalOptions};
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

    pub(super) fn last_index(&self, group: GroupId) -> u64 {
        self.groups
            .get(&group)
            .map_or(0, RecoveredGroup::last_index)
    }
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

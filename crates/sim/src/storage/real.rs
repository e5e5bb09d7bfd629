//! The real storage: `keel-storage`'s write-ahead log, redb key-value state machine
//! and snapshot files, all on one crash-simulating [`MemVfs`] — the code a node runs
//! on a real disk.
//!
//! A node hosting several groups opens one WAL, shared by their storages
//! ([`SharedWal`]): each group's records carry its id, any group's `sync` makes
//! every group's buffered records durable with one fsync, and a segment is
//! deleted only once every group's compaction covers it. Each group has its own
//! state machine and snapshot directory, as in the server (docs/sharding.md).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use keel_raft::{ConfState, Entry, EntryKind, GroupId, HardState, Index, SnapshotMeta, Term};
use keel_storage::kv::{ApplyOutcome, KvOptions, KvStore};
use keel_storage::snapshot::{MAX_CHUNK_BYTES, SnapshotFile, SnapshotOptions, SnapshotStore};
use keel_storage::vfs::{MemVfs, Vfs};
use keel_storage::wal::{LogStart, LogStartKind, Wal, WalOptions};

use super::{
    Found, NodeStorage, SnapshotData, StateView, StorageError, installed, snapshots_to_delete,
};
use crate::hash::StateDigest;

/// Where the WAL lives on the simulated disk.
const WAL_DIR: &str = "/data/wal";
/// Where group 1's state machine lives (other groups': [`kv_path`]).
const KV_PATH: &str = "/data/kv/state.redb";
/// Where snapshot files live, a directory per group.
const SNAP_DIR: &str = "/data/snap";

/// Where `group`'s state machine lives: group 1 keeps the single-group path, as
/// the server's does.
fn kv_path(group: GroupId) -> PathBuf {
    if group == 1 {
        PathBuf::from(KV_PATH)
    } else {
        PathBuf::from(format!("/data/kv/state/{group}.redb"))
    }
}

/// Small segments, so that runs cross segment boundaries (rollover, preallocation,
/// recovery across files) rather than living in one file, and compaction deletes
/// segments.
const SEGMENT_BYTES: u64 = 8 << 10;
/// A small page cache: the simulated data sets are tiny, and a node is rebuilt at
/// every restart.
const KV_CACHE_BYTES: usize = 256 << 10;
/// The smallest data chunk a snapshot file may have, so that files of a few
/// hundred keys have several.
const SNAPSHOT_CHUNK_BYTES: usize = 4 << 10;

/// One group's storage as opened, and what its disk holds (before
/// reconciliation).
type FoundGroup = (Box<dyn NodeStorage>, Found);

/// A node's simulated disk. Cloning shares it.
#[derive(Clone, Debug, Default)]
pub struct RealDisk {
    vfs: MemVfs,
}

impl RealDisk {
    /// Opens the WAL once (running its recovery), and for each of `groups` its
    /// state machine and snapshot directory (removing leftovers of interrupted
    /// snapshot writes and transfers), all sharing the WAL.
    pub fn open(&self, groups: &[GroupId]) -> Result<Vec<FoundGroup>, StorageError> {
        let vfs = Arc::new(self.vfs.clone());
        let opts = WalOptions {
            segment_bytes: SEGMENT_BYTES,
        };
        let (wal, mut recovery) = Wal::open(vfs.clone(), Path::new(WAL_DIR), opts)?;
        let wal = Rc::new(RefCell::new(SharedWal {
            wal,
            bounds: BTreeMap::new(),
        }));
        let mut opened = Vec::with_capacity(groups.len());
        for (i, &group) in groups.iter().enumerate() {
            let recovered = recovery.groups.remove(&group).unwrap_or_default();
            // One torn tail for the node, not one per group.
            let torn_tail = i == 0 && recovery.torn_tail.is_some();
            opened.push(self.open_group(&vfs, &wal, group, recovered, torn_tail)?);
        }
        Ok(opened)
    }

    fn open_group(
        &self,
        vfs: &Arc<MemVfs>,
        wal: &Rc<RefCell<SharedWal>>,
        group: GroupId,
        recovered: keel_storage::wal::RecoveredGroup,
        torn_tail: bool,
    ) -> Result<FoundGroup, StorageError> {
        let vfs = vfs.clone();
        let kv_opts = KvOptions {
            cache_bytes: KV_CACHE_BYTES,
            ..KvOptions::default()
        };
        let kv = KvStore::open_with(vfs.clone(), &kv_path(group), kv_opts)?;
        let snap_opts = SnapshotOptions {
            chunk_bytes: SNAPSHOT_CHUNK_BYTES,
            ..SnapshotOptions::default()
        };
        let snap_dir = Path::new(SNAP_DIR).join(group.to_string());
        let (snaps, _leftovers) = SnapshotStore::open(vfs.clone(), &snap_dir, group, snap_opts)?;
        let newest = snaps.newest_valid()?;
        if let Some(damage) = newest.refused.first() {
            // The simulated disk only loses unsynced writes; a finished snapshot file
            // is synced before it gets its name.
            return Err(StorageError::StateMachine(format!(
                "a finished snapshot file is damaged: {damage}"
            )));
        }
        let snapshot = match newest.snapshot {
            Some(info) => Some(SnapshotMeta {
                index: info.header.index,
                term: info.header.term,
                conf: decode_conf(&info.header.conf).ok_or_else(|| {
                    StorageError::StateMachine(format!(
                        "snapshot {} has an unreadable membership",
                        info.path.display()
                    ))
                })?,
            }),
            None => None,
        };
        let found = Found {
            hard_state: recovered.hard_state,
            log_start: recovered.log_start,
            entries: recovered.entries,
            snapshot,
            torn_tail,
        };
        Ok((
            Box::new(RealStorage {
                vfs,
                wal: wal.clone(),
                group,
                kv,
                snaps,
            }),
            found,
        ))
    }

    /// A power failure (see [`MemVfs::crash`]).
    pub fn crash(&self, seed: u64) {
        self.vfs.crash(seed);
    }

    /// The process dies after `ops` more mutating disk operations.
    pub fn die_after(&self, ops: u64) {
        self.vfs.halt_after(Some(ops));
    }
}

/// The membership in a snapshot header: the number of voters, the voters, the
/// number of learners, the learners, each a little-endian `u64`.
fn encode_conf(conf: &ConfState) -> Bytes {
    let mut b = BytesMut::new();
    for list in [&conf.voters, &conf.learners] {
        b.extend_from_slice(&(list.len() as u64).to_le_bytes());
        for id in list {
            b.extend_from_slice(&id.to_le_bytes());
        }
    }
    b.freeze()
}

/// Reads what [`encode_conf`] wrote.
fn decode_conf(b: &[u8]) -> Option<ConfState> {
    let mut words = b
        .chunks_exact(8)
        .map(|w| u64::from_le_bytes(w.try_into().expect("chunks of 8")));
    let mut list = || -> Option<Vec<u64>> {
        let n = words.next()?;
        (0..n).map(|_| words.next()).collect()
    };
    let (voters, learners) = (list()?, list()?);
    (b.len().is_multiple_of(8) && words.next().is_none()).then_some(ConfState { voters, learners })
}

/// A node's one WAL, shared by the storages of the groups it hosts.
#[derive(Debug)]
struct SharedWal {
    wal: Wal,
    /// Each group's latest compaction bound: a segment goes only once every
    /// group's entries in it are covered (0 until a group's first compaction).
    bounds: BTreeMap<GroupId, Index>,
}

/// One group's storage in one incarnation of a node: the node's shared WAL, and
/// the group's state machine and snapshot files.
#[derive(Debug)]
struct RealStorage {
    vfs: Arc<MemVfs>,
    wal: Rc<RefCell<SharedWal>>,
    group: GroupId,
    kv: KvStore,
    snaps: SnapshotStore,
}

impl RealStorage {
    fn file(&self, meta: &SnapshotMeta) -> SnapshotFile {
        SnapshotFile {
            path: self.snaps.path_of(meta.term, meta.index),
            term: meta.term,
            index: meta.index,
        }
    }

    /// Deletes old snapshot files, oldest first (see [`super::KEEP_SNAPSHOTS`]).
    fn purge(&self) -> Result<(), StorageError> {
        let files = self.snaps.list()?;
        let indexes: Vec<Index> = files.iter().map(|f| f.index).collect();
        let excess = snapshots_to_delete(&indexes, self.kv.applied_index());
        for f in &files[..excess] {
            self.vfs.remove_file(&f.path)?;
        }
        if excess > 0 {
            self.vfs.sync_dir(self.snaps.dir())?;
        }
        Ok(())
    }
}

impl NodeStorage for RealStorage {
    fn write(
        &mut self,
        entries: &[Entry],
        hard_state: Option<HardState>,
    ) -> Result<(), StorageError> {
        let mut shared = self.wal.borrow_mut();
        let wal = &mut shared.wal;
        wal.append_entries(self.group, entries)?;
        if let Some(hs) = hard_state {
            wal.set_hard_state(self.group, hs)?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        Ok(self.wal.borrow_mut().wal.sync()?)
    }

    fn apply(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        let outcomes = self.kv.apply(entries)?;
        // The workload only issues unconditional puts: each must land at its own
        // index. Anything else means the state machine misread a committed entry.
        for (e, outcome) in entries.iter().zip(&outcomes) {
            let expected = match e.kind {
                EntryKind::Normal => ApplyOutcome::Put { revision: e.index },
                EntryKind::NoOp | EntryKind::ConfChange => ApplyOutcome::NoOp,
            };
            if *outcome != expected {
                return Err(StorageError::StateMachine(format!(
                    "entry {}@{} applied as {outcome:?}, expected {expected:?}",
                    e.index, e.term
                )));
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StorageError> {
        Ok(self.kv.flush()?)
    }

    fn applied_index(&self) -> Index {
        self.kv.applied_index()
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        Ok(self.kv.get(key)?.map(|(value, _version)| value))
    }

    fn digest(&self) -> Result<StateDigest, StorageError> {
        let (all, more) = self.kv.scan(b"", None, usize::MAX)?;
        debug_assert!(!more, "an unlimited scan returns everything");
        let mut digest = StateDigest::default();
        for (k, v, version) in &all {
            digest.add(k, v, *version);
        }
        Ok(digest)
    }

    fn view(&self) -> Result<StateView, StorageError> {
        Ok(StateView::Real(Box::new(self.kv.read_view()?)))
    }

    fn write_snapshot(&mut self, view: StateView, meta: &SnapshotMeta) -> Result<(), StorageError> {
        let StateView::Real(view) = view else {
            return Err(StorageError::StateMachine(
                "a model view on real storage".into(),
            ));
        };
        // The file is named and headed by what the state machine recorded.
        if (view.applied_index(), view.applied_term()) != (meta.index, meta.term) {
            return Err(StorageError::StateMachine(format!(
                "the state machine is at {}@{}, the snapshot's metadata says {}@{}",
                view.applied_index(),
                view.applied_term(),
                meta.index,
                meta.term
            )));
        }
        self.snaps.write(&view, encode_conf(&meta.conf))?;
        drop(view);
        self.purge()
    }

    fn snapshot_data(&self, meta: &SnapshotMeta) -> Result<Option<SnapshotData>, StorageError> {
        let file = self.file(meta);
        if !self.snaps.list()?.contains(&file) {
            return Ok(None);
        }
        let mut data = BytesMut::new();
        for chunk in self.snaps.chunks(&file.path, 0, MAX_CHUNK_BYTES)? {
            data.extend_from_slice(&chunk?.data);
        }
        Ok(Some(SnapshotData::File(data.freeze())))
    }

    fn receive_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        data: &SnapshotData,
    ) -> Result<(), StorageError> {
        let SnapshotData::File(bytes) = data else {
            return Err(StorageError::StateMachine(
                "a model snapshot on real storage".into(),
            ));
        };
        let mut receiver = self
            .snaps
            .receive(meta.term, meta.index, bytes.len() as u64)?;
        for (i, chunk) in bytes.chunks(SNAPSHOT_CHUNK_BYTES).enumerate() {
            receiver.write_chunk((i * SNAPSHOT_CHUNK_BYTES) as u64, chunk)?;
        }
        receiver.finish()?;
        Ok(())
    }

    fn install_state(&mut self, meta: &SnapshotMeta) -> Result<(), StorageError> {
        let file = self.file(meta);
        self.snaps.install(&self.kv, &file)?;
        Ok(())
    }

    fn start_log_after(&mut self, meta: &SnapshotMeta) -> Result<(), StorageError> {
        Ok(self
            .wal
            .borrow_mut()
            .wal
            .set_log_start(self.group, installed(meta))?)
    }

    fn compact_log(&mut self, start: (Index, Term), up_to: Index) -> Result<(), StorageError> {
        let mut guard = self.wal.borrow_mut();
        let shared = &mut *guard;
        let wal = &mut shared.wal;
        if wal
            .log_start(self.group)
            .is_some_and(|cur| cur.index >= start.0)
        {
            return Ok(());
        }
        wal.set_log_start(
            self.group,
            LogStart {
                index: start.0,
                term: start.1,
                kind: LogStartKind::Compacted,
            },
        )?;
        let bound = shared.bounds.entry(self.group).or_default();
        *bound = (*bound).max(up_to);
        let bounds = &shared.bounds;
        wal.compact(|g| bounds.get(&g).copied().unwrap_or_default())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_round_trips_and_garbage_is_refused() {
        let conf = ConfState {
            voters: vec![1, 3],
            learners: vec![2],
        };
        assert_eq!(decode_conf(&encode_conf(&conf)), Some(conf));
        assert_eq!(
            decode_conf(&encode_conf(&ConfState::default())),
            Some(ConfState::default())
        );
        let b = encode_conf(&ConfState::with_voters([1, 2]));
        assert_eq!(decode_conf(&b[..b.len() - 8]), None, "truncated");
        assert_eq!(decode_conf(&[&b[..], &[0u8; 8]].concat()), None, "trailing");
        assert_eq!(decode_conf(&b[..5]), None, "not whole words");
    }
}

//! The real storage: `keel-storage`'s write-ahead log, redb key-value state machine
//! and snapshot files, all on one crash-simulating [`MemVfs`] — the code a node runs
//! on a real disk.

use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use keel_raft::{ConfState, Entry, EntryKind, HardState, Index, SnapshotMeta, Term};
use keel_storage::kv::{ApplyOutcome, KvOptions, KvStore};
use keel_storage::snapshot::{MAX_CHUNK_BYTES, SnapshotFile, SnapshotOptions, SnapshotStore};
use keel_storage::vfs::{MemVfs, Vfs};
use keel_storage::wal::{LogStart, LogStartKind, Wal, WalOptions};

use super::{
    Found, GROUP, NodeStorage, SnapshotData, StateView, StorageError, installed,
    snapshots_to_delete,
};
use crate::hash::StateDigest;

/// Where the WAL lives on the simulated disk.
const WAL_DIR: &str = "/data/wal";
/// Where the state machine lives.
const KV_PATH: &str = "/data/kv/state.redb";
/// Where snapshot files live.
const SNAP_DIR: &str = "/data/snap";

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

/// A node's simulated disk. Cloning shares it.
#[derive(Clone, Debug, Default)]
pub struct RealDisk {
    vfs: MemVfs,
}

impl RealDisk {
    /// Opens the WAL (running its recovery), the state machine and the snapshot
    /// directory (removing leftovers of interrupted snapshot writes and transfers).
    pub fn open(&self) -> Result<(Box<dyn NodeStorage>, Found), StorageError> {
        let vfs = Arc::new(self.vfs.clone());
        let opts = WalOptions {
            segment_bytes: SEGMENT_BYTES,
        };
        let (wal, recovery) = Wal::open(vfs.clone(), Path::new(WAL_DIR), opts)?;
        let kv_opts = KvOptions {
            cache_bytes: KV_CACHE_BYTES,
        };
        let kv = KvStore::open_with(vfs.clone(), Path::new(KV_PATH), kv_opts)?;
        let snap_opts = SnapshotOptions {
            chunk_bytes: SNAPSHOT_CHUNK_BYTES,
            ..SnapshotOptions::default()
        };
        let (snaps, _leftovers) =
            SnapshotStore::open(vfs.clone(), Path::new(SNAP_DIR), GROUP, snap_opts)?;
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
        let group = recovery.groups.get(&GROUP).cloned().unwrap_or_default();
        let found = Found {
            hard_state: group.hard_state,
            log_start: group.log_start,
            entries: group.entries,
            snapshot,
            torn_tail: recovery.torn_tail.is_some(),
        };
        Ok((
            Box::new(RealStorage {
                vfs,
                wal,
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

/// The WAL, state machine and snapshot files one incarnation of a node opened.
#[derive(Debug)]
struct RealStorage {
    vfs: Arc<MemVfs>,
    wal: Wal,
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
        self.wal.append_entries(GROUP, entries)?;
        if let Some(hs) = hard_state {
            self.wal.set_hard_state(GROUP, hs)?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        Ok(self.wal.sync()?)
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
        Ok(self.wal.set_log_start(GROUP, installed(meta))?)
    }

    fn compact_log(&mut self, start: (Index, Term), up_to: Index) -> Result<(), StorageError> {
        if self
            .wal
            .log_start(GROUP)
            .is_some_and(|cur| cur.index >= start.0)
        {
            return Ok(());
        }
        self.wal.set_log_start(
            GROUP,
            LogStart {
                index: start.0,
                term: start.1,
                kind: LogStartKind::Compacted,
            },
        )?;
        self.wal.compact(|_| up_to)?;
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

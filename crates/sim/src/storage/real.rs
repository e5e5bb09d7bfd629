//! The real storage: `keel-storage`'s write-ahead log and redb key-value state
//! machine, both on one crash-simulating [`MemVfs`] — the code a node runs on a real
//! disk.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use keel_raft::{Entry, EntryKind, HardState, Index};
use keel_storage::kv::{ApplyOutcome, KvOptions, KvStore};
use keel_storage::vfs::MemVfs;
use keel_storage::wal::{Wal, WalOptions};

use super::{GROUP, NodeStorage, Recovered, StorageError};
use crate::hash;

/// Where the WAL lives on the simulated disk.
const WAL_DIR: &str = "/data/wal";
/// Where the state machine lives.
const KV_PATH: &str = "/data/kv/state.redb";

/// Small segments, so that runs cross segment boundaries (rollover, preallocation,
/// recovery across files) rather than living in one file.
const SEGMENT_BYTES: u64 = 8 << 10;
/// A small page cache: the simulated data sets are tiny, and a node is rebuilt at
/// every restart.
const KV_CACHE_BYTES: usize = 256 << 10;

/// A node's simulated disk. Cloning shares it.
#[derive(Clone, Debug, Default)]
pub struct RealDisk {
    vfs: MemVfs,
}

impl RealDisk {
    /// Opens the WAL (running its recovery) and the state machine.
    pub fn open(&self) -> Result<(Box<dyn NodeStorage>, Recovered), StorageError> {
        let vfs = Arc::new(self.vfs.clone());
        let opts = WalOptions {
            segment_bytes: SEGMENT_BYTES,
        };
        let (wal, recovery) = Wal::open(vfs.clone(), Path::new(WAL_DIR), opts)?;
        let kv_opts = KvOptions {
            cache_bytes: KV_CACHE_BYTES,
        };
        let kv = KvStore::open_with(vfs, Path::new(KV_PATH), kv_opts)?;
        let group = recovery.groups.get(&GROUP).cloned().unwrap_or_default();
        let recovered = Recovered {
            hard_state: group.hard_state,
            entries: group.entries,
            applied: kv.applied_index(),
            torn_tail: recovery.torn_tail.is_some(),
        };
        Ok((Box::new(RealStorage { wal, kv }), recovered))
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

/// The WAL and state machine one incarnation of a node opened.
#[derive(Debug)]
struct RealStorage {
    wal: Wal,
    kv: KvStore,
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

    fn fingerprint(&self) -> Result<u64, StorageError> {
        let (all, more) = self.kv.scan(b"", None, usize::MAX)?;
        debug_assert!(!more, "an unlimited scan returns everything");
        Ok(all.iter().fold(0, |h, (k, v, version)| {
            hash::mix(hash::mix_bytes(hash::mix_bytes(h, k), v), *version)
        }))
    }
}

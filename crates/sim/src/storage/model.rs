//! The idealised storage model: the contract of the WAL, the state machine and the
//! snapshot files with nothing else. Written entries, hard states and log starts sit
//! in the process's buffer until `sync`, which makes them durable one at a time, in
//! order — so a process that dies mid-sync leaves a prefix of its batch, never a
//! torn record. State machine applies become durable at the next flush; a crash
//! rolls the state machine back to it. Snapshots and installs are durable at once
//! (each is one disk operation, atomic).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::Bytes;
use keel_raft::{Entry, EntryKind, HardState, Index, SnapshotMeta, Term};
use keel_storage::wal::{LogStart, LogStartKind};

use super::{
    Found, NodeStorage, SnapshotData, StateView, StorageError, installed, snapshots_to_delete,
};
use crate::hash::StateDigest;
use crate::workload;

/// One buffered write.
#[derive(Clone, Debug)]
enum Op {
    Entries(Vec<Entry>),
    HardState(HardState),
    LogStart(LogStart),
}

/// A snapshot of the model state machine, as a snapshot file would hold it.
#[derive(Clone, Debug)]
pub struct ModelSnapshot {
    /// What it covers.
    pub meta: SnapshotMeta,
    /// The state machine at `meta.index`.
    pub kv: KvModel,
}

impl ModelSnapshot {
    /// About the size a file of it would have.
    pub fn size(&self) -> u64 {
        let data: usize = self
            .kv
            .data
            .iter()
            .map(|(k, (v, _))| k.len() + v.len() + 8)
            .sum();
        64 + data as u64
    }
}

/// What the disk holds.
#[derive(Debug, Default)]
struct DiskState {
    hard_state: HardState,
    /// Where the log starts (`None`: at index 1).
    log_start: Option<LogStart>,
    /// The log after `log_start`, contiguous.
    log: Vec<Entry>,
    /// The state machine as the running process sees it.
    kv: KvModel,
    /// The state machine as of its last flush.
    kv_flushed: KvModel,
    /// Snapshots by `(index, term)` (old ones deleted as `KEEP_SNAPSHOTS` says).
    snapshots: BTreeMap<(Index, Term), Rc<ModelSnapshot>>,
    /// Disk operations left before the process dies (see [`ModelDisk::die_after`]).
    die_after: Option<u64>,
    /// Bumped at every crash; storage opened before it is stale.
    generation: u64,
}

impl DiskState {
    /// Counts one disk operation; `Err` once the process is dead.
    fn op(&mut self) -> Result<(), StorageError> {
        match &mut self.die_after {
            Some(0) => Err(StorageError::Died),
            Some(n) => {
                *n -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Makes one buffered write durable, with the WAL's rules.
    fn persist(&mut self, op: Op) -> Result<(), StorageError> {
        let start = self.log_start.map_or(0, |s| s.index);
        match op {
            Op::Entries(entries) => {
                let first = entries.first().map_or(start + 1, |e| e.index);
                let keep = first
                    .checked_sub(start + 1)
                    .and_then(|k| usize::try_from(k).ok())
                    .filter(|&k| k <= self.log.len())
                    .ok_or_else(|| {
                        StorageError::StateMachine(format!(
                            "model WAL: entry {first} does not follow the log (start {start}, \
                             {} entries)",
                            self.log.len()
                        ))
                    })?;
                self.log.truncate(keep);
                self.log.extend(entries);
            }
            Op::HardState(hs) => self.hard_state = hs,
            Op::LogStart(ls) => {
                if self.log_start.is_some_and(|cur| {
                    ls.index < cur.index || (ls.index == cur.index && ls.term != cur.term)
                }) {
                    return Err(StorageError::StateMachine(format!(
                        "model WAL: log start {}@{} goes back before {start}",
                        ls.index, ls.term
                    )));
                }
                match ls.kind {
                    LogStartKind::Installed => self.log.clear(),
                    LogStartKind::Compacted => self.log.retain(|e| e.index > ls.index),
                }
                self.log_start = Some(ls);
            }
        }
        Ok(())
    }

    /// Stores a snapshot (one atomic disk operation).
    fn store_snapshot(&mut self, snap: Rc<ModelSnapshot>) -> Result<(), StorageError> {
        self.op()?;
        self.snapshots
            .insert((snap.meta.index, snap.meta.term), snap);
        Ok(())
    }
}

/// A model disk. Cloning shares it.
#[derive(Clone, Debug, Default)]
pub struct ModelDisk {
    state: Rc<RefCell<DiskState>>,
}

impl ModelDisk {
    /// Opens the model storage: everything on the disk is durable by construction.
    pub fn open(&self) -> Result<(Box<dyn NodeStorage>, Found), StorageError> {
        let st = self.state.borrow();
        let found = Found {
            hard_state: st.hard_state,
            log_start: st.log_start,
            entries: st.log.clone(),
            snapshot: st.snapshots.values().next_back().map(|s| s.meta.clone()),
            torn_tail: false,
        };
        let storage = ModelStorage {
            disk: self.clone(),
            generation: st.generation,
            buffer: Vec::new(),
        };
        Ok((Box::new(storage), found))
    }

    /// A power failure: the process's write buffer is lost (it is dropped with the
    /// storage object) and the state machine rolls back to its last flush.
    pub fn crash(&self, _seed: u64) {
        let mut st = self.state.borrow_mut();
        st.die_after = None;
        st.generation += 1;
        st.kv = st.kv_flushed.clone();
    }

    /// The process dies after `ops` more disk operations.
    pub fn die_after(&self, ops: u64) {
        self.state.borrow_mut().die_after = Some(ops);
    }
}

/// Model storage opened by one incarnation of a node.
#[derive(Debug)]
struct ModelStorage {
    disk: ModelDisk,
    generation: u64,
    buffer: Vec<Op>,
}

impl ModelStorage {
    /// The disk, if this handle is still current.
    fn disk(&self) -> Result<std::cell::RefMut<'_, DiskState>, StorageError> {
        let st = self.disk.state.borrow_mut();
        if st.generation != self.generation {
            // Used after a crash: the process that opened it is gone.
            return Err(StorageError::Died);
        }
        Ok(st)
    }
}

impl NodeStorage for ModelStorage {
    fn write(
        &mut self,
        entries: &[Entry],
        hard_state: Option<HardState>,
    ) -> Result<(), StorageError> {
        if !entries.is_empty() {
            self.buffer.push(Op::Entries(entries.to_vec()));
        }
        if let Some(hs) = hard_state {
            self.buffer.push(Op::HardState(hs));
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        let ops = std::mem::take(&mut self.buffer);
        let mut st = self.disk()?;
        for op in ops {
            st.op()?;
            st.persist(op)?;
        }
        Ok(())
    }

    fn apply(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        let mut st = self.disk()?;
        for e in entries {
            st.op()?;
            st.kv.apply(e)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StorageError> {
        let mut st = self.disk()?;
        st.op()?;
        st.kv_flushed = st.kv.clone();
        Ok(())
    }

    fn applied_index(&self) -> Index {
        self.disk.state.borrow().kv.applied
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        Ok(self.disk()?.kv.data.get(key).map(|(v, _)| v.clone()))
    }

    fn digest(&self) -> Result<StateDigest, StorageError> {
        Ok(self.disk()?.kv.digest)
    }

    fn view(&self) -> Result<StateView, StorageError> {
        Ok(StateView::Model(self.disk()?.kv.clone()))
    }

    fn write_snapshot(&mut self, view: StateView, meta: &SnapshotMeta) -> Result<(), StorageError> {
        let StateView::Model(kv) = view else {
            return Err(StorageError::StateMachine(
                "a real view on the model".into(),
            ));
        };
        if kv.applied != meta.index {
            return Err(StorageError::StateMachine(format!(
                "model snapshot: the view is at index {}, the snapshot claims {}",
                kv.applied, meta.index
            )));
        }
        let mut st = self.disk()?;
        st.store_snapshot(Rc::new(ModelSnapshot {
            meta: meta.clone(),
            kv,
        }))?;
        let indexes: Vec<Index> = st.snapshots.keys().map(|k| k.0).collect();
        for _ in 0..snapshots_to_delete(&indexes, st.kv.applied) {
            st.op()?;
            st.snapshots.pop_first();
        }
        Ok(())
    }

    fn snapshot_data(&self, meta: &SnapshotMeta) -> Result<Option<SnapshotData>, StorageError> {
        let st = self.disk()?;
        Ok(st
            .snapshots
            .get(&(meta.index, meta.term))
            .map(|s| SnapshotData::Model(Rc::clone(s))))
    }

    fn receive_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        data: &SnapshotData,
    ) -> Result<(), StorageError> {
        let SnapshotData::Model(snap) = data else {
            return Err(StorageError::StateMachine(
                "a real snapshot on the model".into(),
            ));
        };
        if snap.meta != *meta {
            return Err(StorageError::StateMachine(format!(
                "model snapshot: received {:?} announced as {meta:?}",
                snap.meta
            )));
        }
        self.disk()?.store_snapshot(Rc::clone(snap))
    }

    fn install_state(&mut self, meta: &SnapshotMeta) -> Result<(), StorageError> {
        let mut st = self.disk()?;
        let snap = st
            .snapshots
            .get(&(meta.index, meta.term))
            .cloned()
            .ok_or_else(|| {
                StorageError::StateMachine(format!(
                    "model install: no snapshot {}@{} on the disk",
                    meta.index, meta.term
                ))
            })?;
        if st.kv.applied >= meta.index && st.kv.applied > 0 {
            return Err(StorageError::StateMachine(format!(
                "model install: snapshot {} is not ahead of the state machine ({})",
                meta.index, st.kv.applied
            )));
        }
        st.op()?;
        st.kv = snap.kv.clone();
        st.kv_flushed = snap.kv.clone();
        Ok(())
    }

    fn start_log_after(&mut self, meta: &SnapshotMeta) -> Result<(), StorageError> {
        self.buffer.push(Op::LogStart(installed(meta)));
        Ok(())
    }

    fn compact_log(&mut self, start: (Index, Term), _up_to: Index) -> Result<(), StorageError> {
        self.sync()?;
        let mut st = self.disk()?;
        if st.log_start.is_some_and(|cur| cur.index >= start.0) {
            return Ok(());
        }
        st.op()?;
        st.persist(Op::LogStart(LogStart {
            index: start.0,
            term: start.1,
            kind: LogStartKind::Compacted,
        }))
    }
}

/// An in-memory key-value state machine: values with their versions (the index
/// that wrote them), and the digest of it all.
#[derive(Clone, Debug, Default)]
pub struct KvModel {
    /// The data: value and version by key.
    pub data: BTreeMap<Bytes, (Bytes, Index)>,
    /// Last applied index.
    pub applied: Index,
    /// Digest of `data`, kept up to date.
    pub digest: StateDigest,
}

impl KvModel {
    /// Applies one committed entry.
    pub fn apply(&mut self, e: &Entry) -> Result<(), StorageError> {
        if e.index != self.applied + 1 {
            return Err(StorageError::StateMachine(format!(
                "model KV: entry {} applied after {}",
                e.index, self.applied
            )));
        }
        if e.kind == EntryKind::Normal {
            let (k, v) = workload::decode_put(&e.data).ok_or_else(|| {
                StorageError::StateMachine(format!("entry {} is not a put", e.index))
            })?;
            self.digest.add(&k, &v, e.index);
            if let Some((old, version)) = self.data.insert(k.clone(), (v, e.index)) {
                self.digest.remove(&k, &old, version);
            }
        }
        self.applied = e.index;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Recovered, reconcile};
    use keel_raft::ConfState;

    fn put(index: Index, term: u64, id: u64) -> Entry {
        workload::put_entry(index, term, id, 0)
    }

    /// Opens and reconciles, as a starting node does.
    fn open(disk: &ModelDisk) -> (Box<dyn NodeStorage>, Recovered) {
        let (mut s, found) = disk.open().expect("open");
        let rec = reconcile(&mut *s, found).expect("recoverable");
        (s, rec)
    }

    fn meta(index: Index, term: Term) -> SnapshotMeta {
        SnapshotMeta {
            index,
            term,
            conf: ConfState::with_voters([1, 2, 3]),
        }
    }

    #[test]
    fn only_synced_writes_survive_a_crash() {
        let disk = ModelDisk::default();
        let (mut s, rec) = open(&disk);
        assert!(rec.entries.is_empty());
        let hs = HardState {
            term: 1,
            vote: 1,
            commit: 0,
        };
        s.write(&[put(1, 1, 1)], Some(hs)).expect("write");
        s.sync().expect("sync");
        s.write(&[put(2, 1, 2)], None).expect("write");
        drop(s);
        disk.crash(0);
        let (_, rec) = open(&disk);
        assert_eq!(rec.hard_state, hs);
        assert_eq!(rec.entries.len(), 1, "the unsynced entry is gone");
    }

    #[test]
    fn dying_mid_sync_keeps_a_prefix_and_stale_handles_fail() {
        let disk = ModelDisk::default();
        let (mut s, _) = open(&disk);
        s.write(&[put(1, 1, 1)], None).expect("write");
        s.write(&[put(1, 2, 3), put(2, 2, 4)], None).expect("write");
        disk.die_after(1);
        assert!(matches!(s.sync(), Err(StorageError::Died)));
        disk.crash(0);
        assert!(
            s.get(b"x").is_err(),
            "a handle from before the crash is stale"
        );
        let (mut s, rec) = open(&disk);
        assert_eq!(rec.entries, vec![put(1, 1, 1)]);

        s.apply(&rec.entries).expect("apply");
        assert_eq!(s.applied_index(), 1);
        assert_eq!(
            s.get(&workload::key_of(1)).expect("get"),
            Some(workload::value_of(1, 0))
        );
    }

    #[test]
    fn unflushed_applies_roll_back_at_a_crash() {
        let disk = ModelDisk::default();
        let (mut s, _) = open(&disk);
        s.write(&[put(1, 1, 1), put(2, 1, 2)], None).expect("write");
        s.sync().expect("sync");
        s.apply(&[put(1, 1, 1)]).expect("apply");
        s.flush().expect("flush");
        s.apply(&[put(2, 1, 2)]).expect("apply");
        drop(s);
        disk.crash(0);
        let (s, rec) = open(&disk);
        assert_eq!(rec.applied, 1, "the unflushed apply is gone");
        assert_eq!(s.get(&workload::key_of(2)).expect("get"), None);
        assert_eq!(rec.entries.len(), 2, "the log still has it");
    }

    #[test]
    fn kv_digest_tracks_contents() {
        let mut a = KvModel::default();
        let mut b = KvModel::default();
        a.apply(&put(1, 1, 1)).expect("apply");
        assert_ne!(a.digest, b.digest);
        b.apply(&put(1, 1, 1)).expect("apply");
        assert_eq!(a.digest, b.digest);
        assert!(a.apply(&put(3, 1, 3)).is_err(), "gap");
    }

    #[test]
    fn a_compacted_log_restarts_from_its_snapshot() {
        let disk = ModelDisk::default();
        let (mut s, _) = open(&disk);
        let log: Vec<Entry> = (1..=6).map(|i| put(i, 1, i)).collect();
        s.write(&log, None).expect("write");
        s.sync().expect("sync");
        s.apply(&log[..4]).expect("apply");
        let view = s.view().expect("view");
        s.write_snapshot(view, &meta(4, 1)).expect("snapshot");
        s.compact_log((4, 1), 4).expect("compact");
        drop(s);
        disk.crash(0);
        // The state machine was never flushed: it is loaded from the snapshot.
        let (s, rec) = open(&disk);
        assert_eq!(rec.snapshot, Some(meta(4, 1)));
        assert!(rec.loaded_snapshot);
        assert_eq!(rec.applied, 4);
        assert_eq!(rec.entries, log[4..].to_vec());
        assert_eq!(
            s.get(&workload::key_of(3)).expect("get"),
            Some(workload::value_of(3, 0))
        );
    }

    #[test]
    fn the_log_must_not_start_past_every_durable_snapshot() {
        let disk = ModelDisk::default();
        let (mut s, _) = open(&disk);
        s.write(&[put(1, 1, 1), put(2, 1, 2)], None).expect("write");
        s.compact_log((2, 1), 2)
            .expect("compacted with no snapshot at all");
        drop(s);
        disk.crash(0);
        let (mut s, found) = disk.open().expect("open");
        let err = reconcile(&mut *s, found).expect_err("entries 1..=2 are nowhere");
        assert!(matches!(err, StorageError::Unrecoverable(_)), "{err}");
    }

    #[test]
    fn an_installed_snapshot_replaces_state_and_log_and_is_resumed_if_interrupted() {
        // A leader's snapshot at 5, received and installed by a follower whose log
        // (up to 3, another term at 3) does not continue it.
        let leader = ModelDisk::default();
        let (mut l, _) = open(&leader);
        let log: Vec<Entry> = (1..=5).map(|i| put(i, 2, i)).collect();
        l.write(&log, None).expect("write");
        l.sync().expect("sync");
        l.apply(&log).expect("apply");
        let view = l.view().expect("view");
        l.write_snapshot(view, &meta(5, 2)).expect("snapshot");
        let data = l.snapshot_data(&meta(5, 2)).expect("read").expect("kept");

        let follower = ModelDisk::default();
        let (mut f, _) = open(&follower);
        f.write(&[put(1, 2, 1), put(2, 2, 2), put(3, 1, 9)], None)
            .expect("write");
        f.sync().expect("sync");
        f.receive_snapshot(&meta(5, 2), &data).expect("receive");
        f.install_state(&meta(5, 2)).expect("install");
        f.start_log_after(&meta(5, 2)).expect("log start");
        assert_eq!(f.digest().expect("digest"), l.digest().expect("digest"));
        // The crash strikes before the log start is durable: start-up finishes it.
        drop(f);
        follower.crash(0);
        let (_, rec) = open(&follower);
        assert_eq!((rec.applied, rec.entries.len()), (5, 0));
        assert!(
            !rec.loaded_snapshot,
            "the state machine was installed already"
        );
        let (_, rec) = open(&follower);
        assert_eq!(rec.snapshot, Some(meta(5, 2)));
    }

    #[test]
    fn old_snapshots_go_but_not_those_the_state_machine_has_not_reached() {
        let disk = ModelDisk::default();
        let (mut s, _) = open(&disk);
        let log: Vec<Entry> = (1..=3).map(|i| put(i, 1, i)).collect();
        s.write(&log, None).expect("write");
        s.sync().expect("sync");
        // Received from a leader, not taken yet.
        let ahead = Rc::new(ModelSnapshot {
            meta: meta(9, 1),
            kv: KvModel::default(),
        });
        s.receive_snapshot(&meta(9, 1), &SnapshotData::Model(ahead))
            .expect("receive");
        for e in &log {
            s.apply(std::slice::from_ref(e)).expect("apply");
            let view = s.view().expect("view");
            s.write_snapshot(view, &meta(e.index, 1)).expect("snapshot");
        }
        assert!(s.snapshot_data(&meta(1, 1)).expect("read").is_none());
        assert!(s.snapshot_data(&meta(2, 1)).expect("read").is_some());
        assert!(s.snapshot_data(&meta(9, 1)).expect("read").is_some());
    }
}

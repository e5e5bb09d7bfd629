//! The idealised storage model: the contract of the WAL and the state machine with
//! nothing else. Written entries and hard states sit in the process's buffer until
//! `sync`, which makes them durable one at a time, in order — so a process that dies
//! mid-sync leaves a prefix of its batch, never a torn record. State machine applies
//! become durable at the next flush; a crash rolls the state machine back to it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::Bytes;
use keel_raft::{Entry, EntryKind, HardState, Index};

use super::{NodeStorage, Recovered, StorageError};
use crate::hash;
use crate::workload;

/// One buffered write.
#[derive(Clone, Debug)]
enum Op {
    Entries(Vec<Entry>),
    HardState(HardState),
}

/// What the disk holds.
#[derive(Debug, Default)]
struct DiskState {
    hard_state: HardState,
    log: Vec<Entry>,
    /// The state machine as the running process sees it.
    kv: KvModel,
    /// The state machine as of its last flush.
    kv_flushed: KvModel,
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
}

/// A model disk. Cloning shares it.
#[derive(Clone, Debug, Default)]
pub struct ModelDisk {
    state: Rc<RefCell<DiskState>>,
}

impl ModelDisk {
    /// Opens the model storage: everything on the disk is durable by construction.
    pub fn open(&self) -> Result<(Box<dyn NodeStorage>, Recovered), StorageError> {
        let st = self.state.borrow();
        let recovered = Recovered {
            hard_state: st.hard_state,
            entries: st.log.clone(),
            applied: st.kv.applied,
            torn_tail: false,
        };
        let storage = ModelStorage {
            disk: self.clone(),
            generation: st.generation,
            buffer: Vec::new(),
        };
        Ok((Box::new(storage), recovered))
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
            match op {
                Op::Entries(entries) => {
                    let first = entries.first().map_or(1, |e| e.index);
                    let keep = usize::try_from(first - 1).expect("index fits in memory");
                    if keep > st.log.len() {
                        return Err(StorageError::StateMachine(format!(
                            "model WAL: entry {first} leaves a gap after {}",
                            st.log.len()
                        )));
                    }
                    st.log.truncate(keep);
                    st.log.extend(entries);
                }
                Op::HardState(hs) => st.hard_state = hs,
            }
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
        Ok(self.disk()?.kv.data.get(key).cloned())
    }

    fn fingerprint(&self) -> Result<u64, StorageError> {
        Ok(self.disk()?.kv.fingerprint())
    }
}

/// An in-memory key-value state machine.
#[derive(Clone, Debug, Default)]
pub struct KvModel {
    /// The data.
    pub data: BTreeMap<Bytes, Bytes>,
    /// Last applied index.
    pub applied: Index,
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
            self.data.insert(k, v);
        }
        self.applied = e.index;
        Ok(())
    }

    /// A fingerprint of the contents (not of the applied index).
    pub fn fingerprint(&self) -> u64 {
        self.data
            .iter()
            .fold(0, |h, (k, v)| hash::mix_bytes(hash::mix_bytes(h, k), v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(index: Index, term: u64, id: u64) -> Entry {
        Entry {
            term,
            index,
            kind: EntryKind::Normal,
            data: workload::encode_put(&workload::key_of(id), &workload::value_of(id, 0)),
        }
    }

    #[test]
    fn only_synced_writes_survive_a_crash() {
        let disk = ModelDisk::default();
        let (mut s, rec) = disk.open().expect("open");
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
        let (_, rec) = disk.open().expect("reopen");
        assert_eq!(rec.hard_state, hs);
        assert_eq!(rec.entries.len(), 1, "the unsynced entry is gone");
    }

    #[test]
    fn dying_mid_sync_keeps_a_prefix_and_stale_handles_fail() {
        let disk = ModelDisk::default();
        let (mut s, _) = disk.open().expect("open");
        s.write(&[put(1, 1, 1)], None).expect("write");
        s.write(&[put(1, 2, 3), put(2, 2, 4)], None).expect("write");
        disk.die_after(1);
        assert!(matches!(s.sync(), Err(StorageError::Died)));
        disk.crash(0);
        assert!(
            s.get(b"x").is_err(),
            "a handle from before the crash is stale"
        );
        let (mut s, rec) = disk.open().expect("reopen");
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
        let (mut s, _) = disk.open().expect("open");
        s.write(&[put(1, 1, 1), put(2, 1, 2)], None).expect("write");
        s.sync().expect("sync");
        s.apply(&[put(1, 1, 1)]).expect("apply");
        s.flush().expect("flush");
        s.apply(&[put(2, 1, 2)]).expect("apply");
        drop(s);
        disk.crash(0);
        let (s, rec) = disk.open().expect("reopen");
        assert_eq!(rec.applied, 1, "the unflushed apply is gone");
        assert_eq!(s.get(&workload::key_of(2)).expect("get"), None);
        assert_eq!(rec.entries.len(), 2, "the log still has it");
    }

    #[test]
    fn kv_fingerprint_tracks_contents() {
        let mut a = KvModel::default();
        let mut b = KvModel::default();
        a.apply(&put(1, 1, 1)).expect("apply");
        assert_ne!(a.fingerprint(), b.fingerprint());
        b.apply(&put(1, 1, 1)).expect("apply");
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert!(a.apply(&put(3, 1, 3)).is_err(), "gap");
    }
}

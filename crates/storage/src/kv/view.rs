//! A consistent, read-only view of the state machine at one applied index.

use std::ops::Bound;
use std::sync::Arc;

use keel_raft::{Index, Term};
use redb::{
    Database, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata,
};

use keel_placement::Slot;

use super::error::{KvError, engine};
use super::keyspace::{SLOT_INDEX, as_slice, key_of_index, slot_range};
use super::sessions::{SESSION_CLOCK, SESSIONS};
use super::slots::{REVISION_OFFSET, SLOT_TABLE, SlotTable};
use super::{APPLIED_INDEX, APPLIED_TERM, DATA, KvStore, META, value};

/// A frozen view of the whole key space as of one applied index: a redb read
/// transaction. Applies keep committing while it is alive (redb is multi-version),
/// and it can be moved to another thread, so a snapshot is written from it in the
/// background without blocking writes.
///
/// While a view is alive, redb cannot reuse the pages it references, so the database
/// file grows by whatever is overwritten meanwhile; drop it when done.
pub struct KvReadView {
    // The table keeps the transaction's pages alive itself; the transaction is held
    // too so that its lifetime is explicit.
    table: ReadOnlyTable<&'static [u8], &'static [u8]>,
    /// Client sessions (`kv::sessions`), part of the replicated state.
    sessions: ReadOnlyTable<u128, &'static [u8]>,
    /// Opens the tables that only some readers need (slot index and table).
    txn: ReadTransaction,
    /// Keeps the database open even if an install swaps it out meanwhile (dropped
    /// last: fields drop in order).
    _db: Arc<Database>,
    applied_index: Index,
    applied_term: Term,
    session_clock_ms: u64,
    revision_offset: u64,
}

impl std::fmt::Debug for KvReadView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvReadView")
            .field("applied_index", &self.applied_index)
            .field("applied_term", &self.applied_term)
            .finish_non_exhaustive()
    }
}

impl KvStore {
    /// A consistent read view of the current applied state. Cheap to take; see
    /// [`KvReadView`] for what holding it costs.
    pub fn read_view(&self) -> Result<KvReadView, KvError> {
        let db = self.db();
        let txn = db.begin_read().map_err(engine)?;
        let table = txn.open_table(DATA).map_err(engine)?;
        let sessions = txn.open_table(SESSIONS).map_err(engine)?;
        let meta = txn.open_table(META).map_err(engine)?;
        let get = |name| -> Result<u64, KvError> {
            Ok(meta.get(name).map_err(engine)?.map_or(0, |g| g.value()))
        };
        let applied_index = get(APPLIED_INDEX)?;
        let applied_term = get(APPLIED_TERM)?;
        let session_clock_ms = get(SESSION_CLOCK)?;
        let revision_offset = get(REVISION_OFFSET)?;
        Ok(KvReadView {
            table,
            sessions,
            txn,
            _db: db,
            applied_index,
            applied_term,
            session_clock_ms,
            revision_offset,
        })
    }

    /// Term of the entry at the applied index, as recorded by the last apply or
    /// install (0 if unknown).
    pub fn applied_term(&self) -> Result<Term, KvError> {
        Ok(self.read_view()?.applied_term())
    }
}

impl KvReadView {
    /// The applied index this view shows the state of.
    pub fn applied_index(&self) -> Index {
        self.applied_index
    }

    /// Term of the entry at [`KvReadView::applied_index`] (0 if unknown).
    pub fn applied_term(&self) -> Term {
        self.applied_term
    }

    /// The value and version of `key` in the view, if present.
    pub fn get(&self, key: &[u8]) -> Result<Option<(bytes::Bytes, u64)>, KvError> {
        value::lookup(&self.table, key)
    }

    /// Calls `f` for every key in key order, strictly after `start_after` if given,
    /// with borrowed key and value bytes (nothing is collected: memory stays bounded
    /// by redb's page cache). `f` returns `false` to stop early.
    pub fn for_each(
        &self,
        start_after: Option<&[u8]>,
        mut f: impl FnMut(&[u8], u64, &[u8]) -> Result<bool, KvError>,
    ) -> Result<(), KvError> {
        let lower = start_after.map_or(Bound::Unbounded, Bound::Excluded);
        let range = self
            .table
            .range::<&[u8]>((lower, Bound::Unbounded))
            .map_err(engine)?;
        for item in range {
            let (key, stored) = item.map_err(engine)?;
            let (version, value) = value::decode(stored.value())?;
            if !f(key.value(), version, value)? {
                break;
            }
        }
        Ok(())
    }

    /// Calls `f` for every key of `slot` in key order, strictly after
    /// `start_after` if given (a key of the slot), found through the slot index:
    /// the cost is the slot's keys, not the group's. `f` returns `false` to stop.
    pub fn for_each_in_slot(
        &self,
        slot: Slot,
        start_after: Option<&[u8]>,
        mut f: impl FnMut(&[u8], u64, &[u8]) -> Result<bool, KvError>,
    ) -> Result<(), KvError> {
        let index = self.txn.open_table(SLOT_INDEX).map_err(engine)?;
        let (lower, upper) = slot_range(slot, start_after);
        let rows = index
            .range::<&[u8]>((as_slice(&lower), as_slice(&upper)))
            .map_err(engine)?;
        for row in rows {
            let (row, _) = row.map_err(engine)?;
            let key = key_of_index(row.value());
            let stored = self.table.get(key).map_err(engine)?.ok_or_else(|| {
                KvError::Corrupt(format!(
                    "slot index names key {} that does not exist",
                    crate::command::Escaped(key)
                ))
            })?;
            let (version, value) = value::decode(stored.value())?;
            if !f(key, version, value)? {
                break;
            }
        }
        Ok(())
    }

    /// The slot table as of this view.
    pub fn slot_table(&self) -> Result<SlotTable, KvError> {
        let table = self.txn.open_table(SLOT_TABLE).map_err(engine)?;
        SlotTable::load(&table)
    }

    /// The group's revision offset as of this view: a write at index `i` got
    /// revision `i + offset`.
    pub fn revision_offset(&self) -> u64 {
        self.revision_offset
    }

    /// Number of keys in the view.
    pub fn len(&self) -> Result<u64, KvError> {
        self.table.len().map_err(engine)
    }

    /// Whether the view holds no key.
    pub fn is_empty(&self) -> Result<bool, KvError> {
        Ok(self.len()? == 0)
    }

    /// The session clock (largest `now_ms` of any applied session entry).
    pub(crate) fn session_clock_ms(&self) -> u64 {
        self.session_clock_ms
    }

    /// Number of client sessions in the view.
    pub fn sessions_len(&self) -> Result<u64, KvError> {
        self.sessions.len().map_err(engine)
    }

    /// Calls `f` for every client session in id order with its stored row
    /// (`kv::sessions::row`); `f` returns `false` to stop early.
    pub(crate) fn for_each_session(
        &self,
        mut f: impl FnMut(u128, &[u8]) -> Result<bool, KvError>,
    ) -> Result<(), KvError> {
        for item in self.sessions.iter().map_err(engine)? {
            let (id, row) = item.map_err(engine)?;
            if !f(id.value(), row.value())? {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_is_send() {
        fn check<T: Send>() {}
        check::<KvReadView>();
    }
}

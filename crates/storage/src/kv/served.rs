//! Reads that answer only from slots the store serves (`docs/sharding.md`,
//! *Why it is safe*: reads stay linearizable across a move). The slot's state
//! is read in the same transaction as the data, so a read never answers from a
//! view in which its slot is fenced, staged or being released.
//!
//! While every slot has been served since the store was opened (every store
//! before any slot moved: group 1 of an unsharded cluster), the table is not
//! consulted at all, so those reads cost what they did before.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use keel_placement::{Slot, slot_for_key};
use redb::{ReadTransaction, ReadableDatabase};

use super::error::{KvError, engine};
use super::slots::{SLOT_TABLE, SLOT_TABLE_ROW, SlotState, SlotTable};
use super::{DATA, KeyValue, KvReadView, KvStore, value};

/// A read of a key whose slot the store does not serve: the slot and its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotServed {
    /// The key's slot.
    pub slot: Slot,
    /// What the store holds of it.
    pub state: SlotState,
}

impl KvStore {
    /// The value and version of `key` (as [`KvStore::get`]) if the store
    /// serves the key's slot, read together with the slot's state.
    pub fn get_served(
        &self,
        key: &[u8],
    ) -> Result<Result<Option<(Bytes, u64)>, NotServed>, KvError> {
        let db = self.db();
        let txn = db.begin_read().map_err(engine)?;
        let slot = slot_for_key(key);
        if let Some(state) = self.unserved_state(&txn, slot)? {
            return Ok(Err(NotServed { slot, state }));
        }
        let table = txn.open_table(DATA).map_err(engine)?;
        Ok(Ok(value::lookup(&table, key)?))
    }

    /// Like [`KvStore::scan`], skipping keys of slots the store does not serve
    /// (a slot staged for a move, or one being released after it), all read in
    /// one transaction. `limit` counts returned keys only.
    pub fn scan_served(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<KeyValue>, bool), KvError> {
        let db = self.db();
        let txn = db.begin_read().map_err(engine)?;
        let slots = if self.all_serving.load(Ordering::SeqCst) {
            None
        } else {
            Some(load_table(&txn)?)
        };
        let table = txn.open_table(DATA).map_err(engine)?;
        let mut out = Vec::with_capacity(limit.min(1024));
        let more = super::walk_range(&table, prefix, start_after, |key, stored| {
            if let Some(slots) = &slots
                && slots.get(slot_for_key(key)) != SlotState::Serving
            {
                return Ok(true);
            }
            if out.len() == limit {
                return Ok(false);
            }
            out.push(super::owned_item(key, stored)?);
            Ok(true)
        })?;
        Ok((out, more))
    }

    /// The slot table reads through `view` must respect: `None` while every
    /// slot has been served since the store was opened (nothing to check).
    /// Take the view first, then call this.
    pub fn served_slots(&self, view: &KvReadView) -> Result<Option<SlotTable>, KvError> {
        if self.all_serving.load(Ordering::SeqCst) {
            return Ok(None);
        }
        view.slot_table().map(Some)
    }

    /// The state of `slot` in `txn` if it is not served; `None` if it is (or
    /// every slot has been served since the store was opened).
    fn unserved_state(
        &self,
        txn: &ReadTransaction,
        slot: Slot,
    ) -> Result<Option<SlotState>, KvError> {
        // Checked after the transaction began: if the flag is still set, no
        // change of the table had committed before it.
        if self.all_serving.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let table = txn.open_table(SLOT_TABLE).map_err(engine)?;
        let stored = table
            .get(SLOT_TABLE_ROW)
            .map_err(engine)?
            .ok_or_else(|| KvError::Corrupt("the slot table is missing".into()))?;
        let state = SlotTable::decode_one(stored.value(), slot)
            .map_err(|e| KvError::Corrupt(e.to_string()))?;
        Ok((state != SlotState::Serving).then_some(state))
    }
}

fn load_table(txn: &ReadTransaction) -> Result<SlotTable, KvError> {
    let table = txn.open_table(SLOT_TABLE).map_err(engine)?;
    SlotTable::load(&table)
}
